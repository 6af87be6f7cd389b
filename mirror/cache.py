"""The export's content-addressed cache: the bundle's staging store, kept between runs.

A blob enters only after its digest and size were checked while it streamed in, under a
temporary name renamed into place; so an interrupted export, run again, fetches only what
is missing. The bundle writer hashes every blob again as it packs it (except those this very
process just verified on their way in), which catches a cache corrupted on disk between
runs; the entry is then dropped so the next run fetches it afresh.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import IO, BinaryIO

from mirror.oci.descriptor import Descriptor
from mirror.streams import VerifyingReader, atomic_file, drain


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mirror"


class BlobCache:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.stored_bytes = 0  # fetched into the cache by this process: "downloaded"
        self.fresh: set[str] = set()  # digests this process verified on their way in
        self._lock = threading.Lock()

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
        with atomic_file(self.path(desc.digest), durable=False) as out:
            drain(VerifyingReader(stream, desc, f"cache {desc.digest}"), out)
        with self._lock:
            self.stored_bytes += desc.size
            self.fresh.add(desc.digest)

    def open(self, desc: Descriptor) -> BinaryIO:
        return self.path(desc.digest).open("rb")

    def drop(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)
