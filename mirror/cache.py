"""The export's content-addressed cache: the bundle's staging store, kept between runs.

A blob enters only after its digest and size were checked while it streamed in, under a
temporary name renamed into place; so an interrupted export, run again, fetches only what
is missing. The bundle writer hashes every blob again as it packs it (except those this very
process just verified on their way in), which catches a cache corrupted on disk between
runs; the entry is then dropped so the next run fetches it afresh.

Manifests are cached too, so a warm export asks the registry only what changed: each tag
is fetched with `If-None-Match` naming the digest it had last time (`tags.json`), and a
`304 Not Modified`, or an index's child named by digest, is answered from here, checked
against its digest.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from mirror.errors import IntegrityError, OperationError, UsageError
from mirror.oci.descriptor import MAX_MANIFEST, Descriptor, digest_of
from mirror.streams import (
    VerifyingReader,
    atomic_file,
    drain,
    read_hint,
    sweep_stale,
    verified,
    write_hint,
)

if TYPE_CHECKING:
    from mirror.stores.interface import Source

TAGS_FILE = "tags.json"  # "host/repository:tag" -> the descriptor it named last time
MAX_TAGS = 100_000


class BlobCache:
    def __init__(self, root: Path) -> None:
        self.root = root
        # A killed export leaves half-written blobs under temp names; they are never
        # read (only complete, renamed entries are), but they fill the disk.
        sweep_stale(root / "blobs" / "sha256")
        sweep_stale(root)
        self.stored_bytes = 0  # fetched into the cache by this process: "downloaded"
        self.fresh: set[str] = set()  # digests this process verified on their way in
        self._lock = threading.Lock()
        self._seen: dict[str, Descriptor] | None = None  # tags.json, loaded on first use

    def path(self, digest: str) -> Path:
        algo, _, hexpart = digest.partition(":")
        return self.root / "blobs" / algo / hexpart

    def has(self, desc: Descriptor) -> bool:
        try:
            return self.path(desc.digest).stat().st_size == desc.size
        except OSError:
            return False

    def put(self, desc: Descriptor, stream: IO[bytes]) -> None:
        # Not fsynced: the bundle writer re-hashes every entry, so a torn one is caught.
        try:
            with atomic_file(self.path(desc.digest), durable=False) as out:
                drain(verified(stream, desc, f"cache {desc.digest}"), out)
        except OSError as exc:  # a full disk says where: the cache, not the bundle
            raise OperationError(
                f"{self.root}: cannot write to the export cache: {exc.strerror or exc}"
            ) from None
        except UsageError as exc:  # a folder where a blob belongs: the cache's, not the user's
            raise OperationError(
                f"the export cache is damaged ({exc}); remove that entry or the cache folder"
            ) from None
        with self._lock:
            self.stored_bytes += desc.size
            self.fresh.add(desc.digest)

    def open(self, desc: Descriptor) -> BinaryIO:
        fh = self.path(desc.digest).open("rb")
        used(self.path(desc.digest))
        return fh

    def held(self) -> AbstractContextManager[bool]:
        """Hold the cache for a run: `mirror cache prune` waits for no export, it refuses."""
        from mirror.cacheprune import lock

        return lock(self.root, exclusive=False)

    def drop(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    def manifest(self, desc: Descriptor) -> bytes | None:
        """A manifest an earlier run kept, if it is exactly `desc`; else None.

        `desc` may come from tags.json, a hint: nothing bigger than a manifest can be is read.
        """
        if desc.size > MAX_MANIFEST:
            return None
        try:
            with self.path(desc.digest).open("rb") as fh:
                data = fh.read(desc.size + 1)
        except OSError:
            return None
        if len(data) != desc.size or digest_of(data) != desc.digest:
            return None
        used(self.path(desc.digest))
        return data

    def hint_dir(self, kind: str) -> Path:
        return self.root / kind

    def last_seen(self, ref: str) -> Descriptor | None:
        """What `host/repository:tag` named the last time it was looked up."""
        with self._lock:
            if self._seen is None:
                self._seen = _load_tags(self.root / TAGS_FILE)
            return self._seen.get(ref)

    def saw(self, ref: str, desc: Descriptor) -> None:
        self.last_seen(ref)  # loads the file first, so save() keeps its other tags
        with self._lock:
            assert self._seen is not None
            self._seen.pop(ref, None)
            self._seen[ref] = desc  # newest last: save() keeps the newest MAX_TAGS

    def save_seen(self) -> None:
        """Write tags.json, newest last; failing to only costs full manifest GETs next time."""
        with self._lock:
            if self._seen is None:
                return
            doc = {ref: d.to_json() for ref, d in list(self._seen.items())[-MAX_TAGS:]}
        write_hint(self.root / TAGS_FILE, doc)


class CacheFirst:
    """A source read through the cache: what an export already holds is not asked again."""

    def __init__(self, cache: BlobCache, source: Source) -> None:
        self.cache = cache
        self.origin = source
        self.where = source.where

    def fetch_manifest(self, desc: Descriptor) -> bytes:
        return self.cache.manifest(desc) or self.origin.fetch_manifest(desc)

    @contextmanager
    def fetch(self, desc: Descriptor) -> Iterator[IO[bytes]]:
        if not self.cache.has(desc):
            with self.origin.fetch(desc) as stream:
                yield stream
            return
        with self.cache.open(desc) as fh:
            yield VerifyingReader(fh, desc, f"cache {desc.digest}")  # type: ignore[misc]


def used(path: Path) -> None:
    """Record a use as the entry's modification time: `cache prune` drops the least
    recently used first, and access times are not kept on noatime mounts."""
    with contextlib.suppress(OSError):
        os.utime(path)


def _load_tags(path: Path) -> dict[str, Descriptor]:
    """Unreadable or foreign content is an empty memo: it is only ever a hint."""
    try:
        doc: Any = read_hint(path)
        return {str(ref): Descriptor.from_json(d) for ref, d in doc.items()}
    except (AttributeError, IntegrityError):
        return {}
