"""`export --no-cache`: write the bundle while blobs arrive, with a bounded spool.

The plan comes first (a dry run's rounds: every manifest is small and fetched whole), so
every blob's digest and size, hence the signed manifest.json written first, is known
before any blob's bytes. The fetching does not wait for it: once the first round's graphs
are known (`add`), their blobs start to arrive while the plan reads pack and chart layers
for dependencies and images; those layers are kept in memory (`keep`), read once. The
writer then opens members in archive order (`begin`); `Streamer` fetches the next ones in
parallel into temp files beside the output (named by the streams.py sweep rule, so a killed
run's spool is swept by the next export to that output), at most `cap` bytes at a time. A
blob bigger than the spool, or one not fetched ahead, streams straight into the archive
when its turn comes. Every source stream is verified as it is read (a `Source` promises
it), so the writer hashes only what comes from the cache.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO

from mirror.cache import BlobCache
from mirror.copy import CopyReport, Graph
from mirror.errors import (
    AuthError,
    IntegrityError,
    MirrorError,
    RegistryError,
)
from mirror.oci.descriptor import Descriptor
from mirror.registry.retry import RetriesExhausted
from mirror.stores.interface import Source
from mirror.streams import COPY_CHUNK, temp_beside

if TYPE_CHECKING:
    from mirror.stores.bundle import BundleStore

SPOOL_CAP = 256 << 20  # the most bytes fetched ahead of the writer, on disk at one time
KEEP_CAP = 32 << 20  # pack and chart layers the plan read, kept in memory for the writer
KEEP_SMALL = 64 << 10  # a blob up to this size is read whole and kept when first opened
SPOOL_SUFFIX = ".spool.tmp"  # ends in .tmp: streams.sweep_stale removes a killed run's
RESUME_HINT = "run it again without --no-cache to keep what arrives in the cache and resume"


class _Stopped(Exception):
    """The export ended (failed or done) while a prefetch was still running."""


class Streamer:
    """Members' bytes from the source registries, in archive order, fetched ahead.

    `open(desc)` is what `describe.members` calls for each blob; manifests and kept layers
    come from memory, blobs the cache held when the plan named them from the cache, the
    rest from the spool or, past the spool's size or its turn, from the source.
    """

    def __init__(
        self,
        cache: BlobCache,
        spool_beside: Path,
        *,
        jobs: int,
        skip: Callable[[Descriptor], bool] = lambda d: False,
        cap: int | None = None,
        attempts: int = 3,
    ) -> None:
        self.cache = cache
        self._beside = spool_beside
        self._jobs = jobs
        self._skip = skip  # blobs not written at all (a delta's external ones)
        self._cap = SPOOL_CAP if cap is None else cap
        self._attempts = attempts
        self._manifests: dict[str, bytes] = {}
        self._sources: dict[str, Source] = {}  # blobs to fetch: not in the cache
        self._fresh: set[str] = set()
        self._kept: dict[str, bytes] = {}
        self._kept_bytes = 0
        self._writing = False  # begun: the writer's opens are the last reads of each blob
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._order: list[Descriptor] = []
        self._next = 0  # the next blob of `_order` to consider for prefetch
        self._reserved = 0  # spool bytes held by fetched-ahead blobs not yet consumed
        self._ahead: dict[str, Future[Path]] = {}
        self._spooled: set[Path] = set()
        self._pool: ThreadPoolExecutor | None = None
        self.fetched_bytes = 0  # from the network by this export
        self.peak_spool = 0  # the most bytes the spool held at one time (for the bench)

    @property
    def fresh(self) -> Collection[str]:
        """Verified by this process on the way in: the plan's manifests, fetched blobs."""
        return self._fresh

    # -- what the plan calls ---------------------------------------------------------

    def add(self, graphs: Sequence[Graph], *, later: Callable[[Descriptor], bool]) -> None:
        """A round's graphs, as the plan finds them: their blobs (but those `later` says the
        plan reads itself) start to arrive now, in archive order."""
        with self._lock:
            new = self._register(graphs)
            self._order += sorted((d for d in new if not later(d)), key=lambda d: d.digest)
        self._top_up()

    def keep(self, desc: Descriptor, data: bytes) -> None:
        """A layer the plan fetched and read whole (verified): the writer takes it from here."""
        if self._hold(desc, data):
            with self._lock:
                self.fetched_bytes += len(data)

    def _hold(self, desc: Descriptor, data: bytes) -> bool:
        with self._lock:
            if desc.digest in self._kept or self._kept_bytes + len(data) > KEEP_CAP:
                return False
            self._kept[desc.digest] = data
            self._kept_bytes += len(data)
            return True

    def begin(self, graphs: Sequence[Graph], order: Sequence[Descriptor]) -> None:
        """The whole plan and the writer's order: fetch ahead along it from now on."""
        with self._lock:
            self._register(graphs)
            self._order = [d for d in order if self._fetches(d)]
            self._next = 0
            self._writing = True
        self._top_up()

    def _register(self, graphs: Sequence[Graph]) -> list[Descriptor]:
        new = []
        for g in graphs:
            self._manifests.update((d.digest, data) for d, data in g.manifests)
            for b in g.blobs:
                if b.digest in self._sources or self._skip(b) or self.cache.has(b):
                    continue  # decided once: what the cache holds is read from it
                self._sources[b.digest] = g.task.src
                new.append(b)
        self._fresh.update(self._manifests, self._sources)
        return new

    def _fetches(self, desc: Descriptor) -> bool:
        d = desc.digest
        return d in self._sources and d not in self._kept and d not in self._ahead

    # -- what describe.members and the writer call ------------------------------------

    def open(self, desc: Descriptor) -> BinaryIO:
        with self._lock:  # the writer reads each member once, and last: kept bytes go
            data = self._manifests.get(desc.digest)
            if data is None:  # not `or`: an empty blob is kept as b""
                kept = self._kept.pop if self._writing else self._kept.get
                data = kept(desc.digest, None)
            future = self._ahead.pop(desc.digest, None) if data is None else None
        if data is not None:
            return io.BytesIO(data)
        if desc.digest not in self._sources:
            return self.cache.open(desc)
        self._top_up()
        stream = self._stream(desc, future)
        if self._writing or desc.size > KEEP_SMALL:
            return stream
        with stream:  # before the writer (describe reads a chart's config): keep it for it
            data = stream.read()
        self._hold(desc, data)
        return io.BytesIO(data)

    def _stream(self, desc: Descriptor, future: Future[Path] | None) -> BinaryIO:
        if future is None:
            return io.BufferedReader(_Direct(self, desc), COPY_CHUNK)  # type: ignore[type-var]
        path = future.result()  # raises the prefetch's failure, already retried
        raw = io.FileIO(path, "rb")
        self._forget(path)  # unlinked now; its space returns when the writer closes it
        return _Spooled(raw, self, desc.size)

    @contextmanager
    def running(self) -> Iterator[Streamer]:
        """Fetch ahead while the plan and the writer run; afterwards no spool file remains."""
        self._pool = ThreadPoolExecutor(max_workers=self._jobs, thread_name_prefix="spool")
        try:
            yield self
        finally:
            self._stop.set()
            self._pool.shutdown(wait=True, cancel_futures=True)
            for path in list(self._spooled):
                self._forget(path)

    # -- prefetch ---------------------------------------------------------------------

    def _top_up(self) -> None:
        """Start fetching the next blobs in order while they fit in the spool."""
        with self._lock:
            while self._pool is not None and self._next < len(self._order):
                desc = self._order[self._next]
                if desc.size > self._cap or not self._fetches(desc):
                    self._next += 1  # streamed directly in turn, or already on its way
                    continue
                if self._reserved + desc.size > self._cap:
                    return
                self._reserved += desc.size
                self._next += 1
                self._ahead[desc.digest] = self._pool.submit(self._spool, desc)

    def _release(self, size: int) -> None:
        with self._lock:
            self._reserved -= size
        self._top_up()

    def _spool(self, desc: Descriptor) -> Path:
        for attempt in range(1, self._attempts + 1):
            fd, name = temp_beside(self._beside, SPOOL_SUFFIX)
            path = Path(name)
            with self._lock:
                self._spooled.add(path)
            try:
                with os.fdopen(fd, "wb") as out, self._sources[desc.digest].fetch(desc) as src:
                    self._copy(src, out)
                with self._lock:
                    self.fetched_bytes += desc.size
                    self.peak_spool = max(self.peak_spool, self._reserved)
                return path
            except (AuthError, IntegrityError, RetriesExhausted, _Stopped):
                self._forget(path)
                raise
            except RegistryError:
                self._forget(path)
                if attempt == self._attempts:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _copy(self, src: IO[bytes], out: IO[bytes]) -> None:
        while chunk := src.read(COPY_CHUNK):
            if self._stop.is_set():
                raise _Stopped()
            out.write(chunk)

    def _forget(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        with self._lock:
            self._spooled.discard(path)


class _Spooled(io.BufferedReader):
    """A spooled blob, already unlinked: closing it gives its bytes back to the spool."""

    def __init__(self, raw: io.FileIO, owner: Streamer, size: int) -> None:
        super().__init__(raw, COPY_CHUNK)
        self._owner: Streamer | None = owner
        self._size = size

    def close(self) -> None:
        super().close()
        owner, self._owner = self._owner, None
        if owner is not None:
            owner._release(self._size)


class _Direct(io.RawIOBase):
    """A blob streamed from its source as the writer reads it (bigger than the spool)."""

    def __init__(self, owner: Streamer, desc: Descriptor) -> None:
        super().__init__()
        self._stack = ExitStack()
        self._stream = self._stack.enter_context(owner._sources[desc.digest].fetch(desc))
        with owner._lock:
            owner.fetched_bytes += desc.size

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        data = self._stream.read(len(b))
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._stack.close()
        super().close()


def say_how_to_resume(exc: MirrorError) -> None:
    """A cacheless export failed: say nothing was written, and how to resume (same class,
    so the exit code still says what kind of failure it was)."""
    exc.args = (f"{exc}; nothing was written ({RESUME_HINT})",)


def planned(target: BundleStore, report: CopyReport) -> None:
    """After the plan's rounds: name every ref as the manifest pusher would have."""
    for g in report.graphs:
        if g.task.tag is not None:
            target.tag(g.task.root, g.task.tag, g.task.annotations)


def commit(target: BundleStore, streamer: Streamer, report: CopyReport) -> int:
    """Write the bundle as its blobs arrive; the bytes fetched from the network."""
    blobs = {b.digest: b for g in report.graphs for b in g.blobs if not target.external(b)}
    order = [blobs[d] for d in sorted(blobs)]  # the writer packs blobs by path: by digest
    streamer.begin(report.graphs, order)
    try:
        target.commit()
    except MirrorError as exc:
        say_how_to_resume(exc)
        raise
    return streamer.fetched_bytes
