"""A registry repository as a target: where a blob is pushed on the far side."""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO

from mirror.errors import IntegrityError, NotFoundError, RegistryError
from mirror.oci.descriptor import Descriptor, check_bytes
from mirror.registry.client import RegistryClient


class RegistryTarget:
    """Writes one repository: blobs (skipping or mounting), manifests by digest, then tags."""

    def __init__(self, client: RegistryClient, repo: str) -> None:
        self.client = client
        self.repo = repo
        self.where = f"{client.host}/{repo}"
        self._pushed: dict[str, bytes] = {}
        self._broken: set[str] = set()

    def exists(self, desc: Descriptor) -> bool:
        if desc.is_manifest:
            return self.client.manifest_exists(self.repo, desc)
        return self.client.blob_exists(self.repo, desc)

    def push(self, desc: Descriptor, stream: IO[bytes]) -> None:
        if desc.is_manifest:
            data = stream.read(desc.size + 1)
            check_bytes(desc, data, self.where)
            self.client.put_manifest(self.repo, desc.digest, data, desc.media_type)
            self._pushed[desc.digest] = data
        else:
            self.client.push_blob(self.repo, desc, stream, skip_present=False)

    def mount(self, desc: Descriptor, sibling: object) -> bool:
        """Link from another repository of the same registry instead of uploading again."""
        if not isinstance(sibling, RegistryTarget) or sibling.client is not self.client:
            return False
        return self.client.mount_blob(self.repo, desc, sibling.repo)

    def resolve(self, ref: str) -> Descriptor | None:
        """What the tag names now, read whole: one GET shows both the digest and that the
        manifest can be read back (a push killed mid-way can leave a tag whose HEAD answers
        while its content does not; Distribution then answers GET with 500)."""
        try:
            desc, data = self.client.get_manifest(self.repo, ref)
        except NotFoundError:
            return None
        except (RegistryError, IntegrityError):
            found = self.client.resolve(self.repo, ref)  # HEAD still names the digest
            if found is not None:
                self._broken.add(found.digest)
            return found
        self._pushed[desc.digest] = data
        return desc

    def readable(self, desc: Descriptor) -> bool:
        """False for a manifest `resolve` found named but unreadable: push it again."""
        return desc.digest not in self._broken

    def tag(self, desc: Descriptor, ref: str, annotations: Mapping[str, str]) -> None:
        # Re-PUT the bytes under the tag: Distribution has no "tag this digest" call.
        data = self._pushed.get(desc.digest) or self.client.get_manifest(self.repo, desc.digest)[1]
        self.client.put_manifest(self.repo, ref, data, desc.media_type)

    def commit(self) -> None:
        """Nothing to do: a registry makes each manifest visible as it is pushed."""
