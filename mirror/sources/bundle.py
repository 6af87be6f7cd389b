"""A bundle as a source: blobs read straight out of the archive, never extracted.

Each fetch seeks to the member's zstd frame through the table of contents and checks
the bytes against the signed manifest's sha256 and size as they stream, so the far side
needs no staging copy and a lying table of contents can only cause a refusal.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from mirror.bundle.manifest import BundleManifest
from mirror.bundle.reader import BundleReader
from mirror.errors import IntegrityError, OperationError
from mirror.oci.descriptor import MAX_MANIFEST, Descriptor, check_bytes


class BundleSource:
    def __init__(self, reader: BundleReader, manifest: BundleManifest) -> None:
        self.reader = reader
        self.where = str(reader.path)
        self._members = manifest.member_map()
        self._external = {e.digest for e in manifest.external}

    def descriptor(self, digest: str, media_type: str) -> Descriptor:
        """A root's descriptor, sized from the signed member list."""
        rec = self._members.get(_blob_path(digest))
        if rec is None:
            raise IntegrityError(f"{self.where}: {digest} is not in the bundle")
        return Descriptor(media_type, digest, rec.size)

    def lacks(self, desc: Descriptor) -> str | None:
        """A blob a delta leaves out: the copy engine checks a donor holds it before writing."""
        if desc.digest in self._external and _blob_path(desc.digest) not in self._members:
            return "not carried by this delta bundle: import the bundle its receipt came from first"
        return None

    @contextmanager
    def fetch(self, desc: Descriptor) -> Iterator[IO[bytes]]:
        path = _blob_path(desc.digest)
        reason = self.lacks(desc)
        if reason is not None:
            raise OperationError(f"{desc.digest}: {reason}")
        rec = self._members.get(path)
        if rec is None or rec.sha256 != desc.hex or rec.size != desc.size:
            raise IntegrityError(f"{self.where}: {path} is not in the signed manifest as named")
        with self.reader.open_member(path, rec.sha256, rec.size) as stream:
            yield stream  # type: ignore[misc]

    def fetch_manifest(self, desc: Descriptor) -> bytes:
        if desc.size > MAX_MANIFEST:
            raise IntegrityError(f"{self.where}: manifest {desc.digest} is too large")
        path = _blob_path(desc.digest)
        rec = self._members.get(path)
        if rec is None or rec.sha256 != desc.hex or rec.size != desc.size:
            raise IntegrityError(f"{self.where}: {path} is not in the signed manifest as named")
        data = self.reader.read_small(path, rec.sha256, rec.size)
        check_bytes(desc, data, self.where)
        return data


def _blob_path(digest: str) -> str:
    return "blobs/sha256/" + digest.split(":", 1)[-1]
