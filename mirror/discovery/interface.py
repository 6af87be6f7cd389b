"""The read side of a store, after oras-go's `content.Fetcher` (one method, plus a helper)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Protocol

from mirror.oci.descriptor import Descriptor

if TYPE_CHECKING:  # a type only: the spec's YAML loader is not needed on the import side
    from mirror.spec import Registry


class Source(Protocol):
    """Fetch content by descriptor. Streams are verified: a mismatch raises at EOF."""

    where: str

    def fetch(self, desc: Descriptor) -> AbstractContextManager[IO[bytes]]: ...

    def fetch_manifest(self, desc: Descriptor) -> bytes:
        """Small documents (capped), already checked against `desc`."""
        ...


class KnownManifests(Protocol):
    """Manifests an earlier run kept (the export cache), so a warm run asks only what changed."""

    def last_seen(self, ref: str) -> Descriptor | None:
        """What `host/repository:tag` named last time."""
        ...

    def saw(self, ref: str, desc: Descriptor) -> None: ...

    def manifest(self, desc: Descriptor) -> bytes | None:
        """The bytes of `desc` if kept, checked against its digest; else None."""
        ...


@dataclass(frozen=True)
class Found:
    """One artifact a source offers: where it came from and where it will land.

    `path` is the repository path the artifact lands at under the target's base path
    (the contract's "where imported content lands"); `repository` is relative to the
    source registry's basePath, as the manifest records it.
    """

    registry: Registry
    repository: str
    tag: str
    path: str
    desc: Descriptor
    source: Source
    kind: str
    platforms: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.path}:{self.tag}"


@dataclass
class Selection:
    found: list[Found] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
