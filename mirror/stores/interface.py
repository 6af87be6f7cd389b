"""The write side of a store, after oras-go's `content.Storage` and `Target`.

`exists` lets the copy engine skip what the destination holds; `push` verifies as it
writes; `tag` names a root; `commit` makes it all visible at once. Mounting and tag
resolution are optional powers, detected at run time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Protocol, runtime_checkable

from mirror.oci.descriptor import Descriptor


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
class TagResolver(Protocol):
    """A target that can say what a tag points at now, so conflicts are caught early."""

    def resolve(self, ref: str) -> Descriptor | None: ...
