"""Content built in memory (packs from folders, charts from a Helm repository) as a source."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO

from mirror.errors import NotFoundError
from mirror.oci.artifact import OciArtifact
from mirror.oci.descriptor import Descriptor, check_bytes


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
