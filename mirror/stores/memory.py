"""Content built in memory (packs from folders, charts from a Helm repository) as a source."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO

from mirror.errors import NotFoundError
from mirror.oci.artifact import OciArtifact
from mirror.oci.descriptor import Descriptor, check_bytes
from mirror.stores.interface import Source


class MemorySource:
    """Serves artifacts that a source module assembled; every read is checked anyway."""

    def __init__(self, where: str, artifacts: Iterable[OciArtifact] = ()) -> None:
        self.where = where
        self._blobs: dict[str, bytes] = {}
        for art in artifacts:
            self.add(art)

    def add(self, art: OciArtifact) -> Descriptor:
        desc = art.descriptor
        self._blobs[desc.digest] = art.manifest
        for blob, data in art.blobs:
            self._blobs[blob.digest] = data
        return desc

    def _get(self, desc: Descriptor) -> bytes:
        data = self._blobs.get(desc.digest)
        if data is None:
            raise NotFoundError(f"{self.where}: no content {desc.digest}")
        check_bytes(desc, data, self.where)
        return data

    def fetch_manifest(self, desc: Descriptor) -> bytes:
        return self._get(desc)

    @contextmanager
    def fetch(self, desc: Descriptor) -> Iterator[IO[bytes]]:
        yield io.BytesIO(self._get(desc))


class Remembering:
    """A source that keeps the small blobs it served, so a second reader does not refetch.

    A dry run reads each pack layer twice (pack.json for dependencies, values.yaml for
    images) and stores nothing on disk; this keeps those layers in memory instead, up to
    `budget` bytes in all.
    """

    def __init__(self, source: Source, *, cap: int = 4 << 20, budget: int = 256 << 20) -> None:
        self.origin = source
        self.where = source.where
        self._cap = cap
        self._budget = budget
        self._kept: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def fetch_manifest(self, desc: Descriptor) -> bytes:
        return self.origin.fetch_manifest(desc)

    @contextmanager
    def fetch(self, desc: Descriptor) -> Iterator[IO[bytes]]:
        with self._lock:
            kept = self._kept.get(desc.digest)
        if kept is None and (desc.size > self._cap or desc.size > self._budget):
            with self.origin.fetch(desc) as stream:
                yield stream
            return
        if kept is None:
            with self.origin.fetch(desc) as stream:
                kept = stream.read(desc.size + 1)
                stream.read(1)  # the verifying stream checks the digest at EOF
            check_bytes(desc, kept, self.where)
            with self._lock:
                if desc.digest not in self._kept and self._budget >= len(kept):
                    self._kept[desc.digest] = kept
                    self._budget -= len(kept)
        yield io.BytesIO(kept)
