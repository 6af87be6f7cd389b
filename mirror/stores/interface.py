"""What every store offers, after oras-go's `content.Fetcher`, `content.Storage` and `Target`.

A store is read (`Source`: `fetch`, `fetch_manifest`) and written (`Target`: `exists`, `push`,
`tag`, `commit`). One class per store kind does both where the kind allows: a registry
(`stores/registry.py`), the bundle (`stores/bundle.py`), content built in memory
(`stores/memory.py`); the Helm folder (`stores/helmdir.py`) is written. `push` verifies as it
writes; `tag` names a root; `commit` makes it all visible at once. Mounting and tag
resolution are optional powers, detected at run time.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Protocol, runtime_checkable

from mirror.oci.descriptor import Descriptor


@runtime_checkable
class Source(Protocol):
    """Fetch content by descriptor. Streams are verified: a mismatch raises at EOF."""

    where: str

    def fetch(self, desc: Descriptor) -> AbstractContextManager[IO[bytes]]: ...

    def fetch_manifest(self, desc: Descriptor) -> bytes:
        """Small documents (capped), already checked against `desc`."""
        ...


def origin(source: Source) -> Source:
    """The store behind a wrapper (the export cache in front of a registry, a dry run's
    memory): wrappers name what they wrap as `origin`."""
    while (inner := getattr(source, "origin", None)) is not None:
        source = inner
    return source


class Target(Protocol):
    where: str

    def exists(self, desc: Descriptor) -> bool: ...

    def push(self, desc: Descriptor, stream: IO[bytes]) -> None: ...

    def tag(self, desc: Descriptor, ref: str, annotations: Mapping[str, str]) -> None: ...

    def commit(self) -> None: ...


@runtime_checkable
class Mounter(Protocol):
    """A target that can link a blob from a sibling store instead of uploading it again."""

    def mount(self, desc: Descriptor, sibling: object) -> bool: ...


@runtime_checkable
class ReferencePusher(Protocol):
    """A target that stores a root manifest and names it in one step (oras-go's
    `registry.ReferencePusher`); the engine still calls it only once the children are in."""

    def push_reference(self, desc: Descriptor, stream: IO[bytes], ref: str) -> None: ...


@runtime_checkable
class TagResolver(Protocol):
    """A target that can say what a tag points at now, so conflicts are caught early."""

    def resolve(self, ref: str) -> Descriptor | None: ...


class KnownManifests(Protocol):
    """Manifests an earlier run kept (the export cache), so a warm run asks only what changed."""

    def last_seen(self, ref: str) -> Descriptor | None:
        """What `host/repository:tag` named last time."""
        ...

    def saw(self, ref: str, desc: Descriptor) -> None: ...

    def manifest(self, desc: Descriptor) -> bytes | None:
        """The bytes of `desc` if kept, checked against its digest; else None."""
        ...

    def hint_dir(self, kind: str) -> Path:
        """A private folder for `kind`'s hints between runs (a Helm index's validators)."""
        ...
