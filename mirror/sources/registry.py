"""A registry repository as a source: the read half of oras-go's `Repository`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from mirror.oci.descriptor import Descriptor, check_bytes
from mirror.registry.client import RegistryClient


class RegistrySource:
    """Reads one repository. Manifests are remembered: discovery already fetched the roots."""

    def __init__(self, client: RegistryClient, repo: str) -> None:
        self.client = client
        self.repo = repo
        self.where = f"{client.host}/{repo}"
        self._manifests: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def remember(self, desc: Descriptor, data: bytes) -> None:
        check_bytes(desc, data, self.where)
        with self._lock:
            self._manifests[desc.digest] = data

    def fetch_manifest(self, desc: Descriptor) -> bytes:
        with self._lock:
            hit = self._manifests.get(desc.digest)
        if hit is not None:
            return hit
        _, data = self.client.get_manifest(self.repo, desc.digest)
        check_bytes(desc, data, f"{self.where}@{desc.digest}")
        self.remember(desc, data)
        return data

    @contextmanager
    def fetch(self, desc: Descriptor) -> Iterator[IO[bytes]]:
        with self.client.open_blob(self.repo, desc) as stream:
            yield stream  # type: ignore[misc]
