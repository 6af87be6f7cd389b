"""`export --no-cache`: write the bundle while blobs arrive, with a bounded spool.

The plan comes first (a dry run's rounds: every manifest is small and fetched whole), so
every blob's digest and size, hence the signed manifest.json written first, is known
before any blob's bytes. The writer then opens members in archive order; `Streamer`
fetches the next ones in parallel into temp files beside the output (named by the
streams.py sweep rule, so a killed run's spool is swept by the next export to that output),
at most `cap` bytes at a time. A blob bigger than the spool streams straight into the
archive when its turn comes. The writer hashes every member as it packs it.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator, Sequence
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
    from mirror.export import ExportOptions
    from mirror.stores.bundle import BundleStore

SPOOL_CAP = 256 << 20  # the most bytes fetched ahead of the writer, on disk at one time
SPOOL_SUFFIX = ".spool.tmp"  # ends in .tmp: streams.sweep_stale removes a killed run's
RESUME_HINT = "run it again without --no-cache to keep what arrives in the cache and resume"


class _Stopped(Exception):
    """The export ended (failed or done) while a prefetch was still running."""


class Streamer:
    """Members' bytes from the source registries, in archive order, fetched ahead.

    `open(desc)` is what `describe.members` calls for each blob; manifests come from
    memory (the plan holds them), blobs the cache already has from the cache, the rest
    from the spool or, outside `running()` or past the spool's size, from the source.
    """

    fresh: frozenset[str] = frozenset()  # nothing is pre-verified: the writer hashes all

    def __init__(
        self,
        graphs: Sequence[Graph],
        cache: BlobCache,
        spool_beside: Path,
        *,
        jobs: int,
        cap: int | None = None,
        attempts: int = 3,
    ) -> None:
        self.cache = cache
        self._beside = spool_beside
        self._jobs = jobs
        self._cap = SPOOL_CAP if cap is None else cap
        self._attempts = attempts
        self._manifests: dict[str, bytes] = {}
        self._sources: dict[str, Source] = {}
        for g in graphs:
            self._manifests.update((d.digest, data) for d, data in g.manifests)
            for b in g.blobs:
                self._sources.setdefault(b.digest, g.task.src)
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

    # -- what describe.members and the writer call ------------------------------------

    def open(self, desc: Descriptor) -> BinaryIO:
        data = self._manifests.get(desc.digest)
        if data is not None:
            return io.BytesIO(data)
        if self.cache.has(desc):
            return self.cache.open(desc)
        with self._lock:
            future = self._ahead.pop(desc.digest, None)
        self._top_up()
        if future is None:
            return io.BufferedReader(_Direct(self, desc), COPY_CHUNK)  # type: ignore[type-var]
        path = future.result()  # raises the prefetch's failure, already retried
        raw = io.FileIO(path, "rb")
        self._forget(path)  # unlinked now; its space returns when the writer closes it
        return _Spooled(raw, self, desc.size)

    @contextmanager
    def running(self, order: Sequence[Descriptor]) -> Iterator[Streamer]:
        """Fetch ahead while the writer packs `order`; afterwards no spool file remains."""
        self._order = [d for d in order if d.digest in self._sources]
        self._pool = ThreadPoolExecutor(max_workers=self._jobs, thread_name_prefix="spool")
        try:
            self._top_up()
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
                if desc.size > self._cap or self.cache.has(desc):
                    self._next += 1  # streamed directly, or read from the cache, in turn
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


def planned(
    report: CopyReport, target: BundleStore, cache: BlobCache, opts: ExportOptions
) -> Streamer:
    """After a dry run's rounds: name every ref as the manifest pusher would, and read the
    members from the sources."""
    for g in report.graphs:
        if g.task.tag is not None:
            target.tag(g.task.root, g.task.tag, g.task.annotations)
    return Streamer(report.graphs, cache, opts.output.resolve(), jobs=opts.settings.jobs)


def commit(target: BundleStore, streamer: Streamer, report: CopyReport) -> int:
    """Write the bundle as its blobs arrive; the bytes fetched from the network."""
    blobs = {b.digest: b for g in report.graphs for b in g.blobs if not target.external(b)}
    order = [blobs[d] for d in sorted(blobs)]  # the writer packs blobs by path: by digest
    try:
        with streamer.running(order):
            target.commit()
    except MirrorError as exc:
        say_how_to_resume(exc)
        raise
    return streamer.fetched_bytes
