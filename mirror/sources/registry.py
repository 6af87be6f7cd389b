"""A registry repository as a source: the read half of oras-go's `Repository`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from mirror.oci.descriptor import Descriptor, check_bytes
from mirror.registry.client import RegistryClient
from mirror.sources.interface import KnownManifests


class RegistrySource:
    """Reads one repository. Manifests are remembered: discovery already fetched the roots;
    a manifest named by digest that an earlier run kept (`known`) is not fetched again."""

    def __init__(
        self, client: RegistryClient, repo: str, known: KnownManifests | None = None
    ) -> None:
        self.client = client
        self.repo = repo
        self.where = f"{client.host}/{repo}"
        self.known = known
        self._manifests: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._tags: list[str] | None = None

    def tags(self) -> list[str]:
        """The repository's tags, listed once: discovery and companions share the list."""
        if self._tags is None:
            self._tags = self.client.list_tags(self.repo)
        return self._tags

    def get_tag(self, tag: str) -> tuple[Descriptor, bytes]:
        """The manifest a tag names now, asked as a conditional GET when it was seen before."""
        ref = f"{self.where}:{tag}"
        last = self.known.last_seen(ref) if self.known is not None else None
        kept = self.known.manifest(last) if self.known is not None and last else None
        desc, data = self.client.get_manifest(
            self.repo, tag, (last, kept) if last is not None and kept is not None else None
        )
        self.remember(desc, data)
        if self.known is not None:
            self.known.saw(ref, desc)
        return desc, data

    def remember(self, desc: Descriptor, data: bytes) -> None:
        check_bytes(desc, data, self.where)
        with self._lock:
            self._manifests[desc.digest] = data

    def fetch_manifest(self, desc: Descriptor) -> bytes:
        with self._lock:
            hit = self._manifests.get(desc.digest)
        if hit is None and self.known is not None:
            hit = self.known.manifest(desc)  # content-addressed: checked against desc
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
