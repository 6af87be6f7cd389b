"""The read side of a store, after oras-go's `content.Fetcher` (one method, plus a helper)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import IO, Protocol

from mirror.oci.descriptor import Descriptor


class Source(Protocol):
    """Fetch content by descriptor. Streams are verified: a mismatch raises at EOF."""

    where: str

    def fetch(self, desc: Descriptor) -> AbstractContextManager[IO[bytes]]: ...

    def fetch_manifest(self, desc: Descriptor) -> bytes:
        """Small documents (capped), already checked against `desc`."""
        ...
