"""What discovery returns: the artifacts to copy (`Found`), each with the store to read it from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mirror.oci.descriptor import Descriptor
from mirror.stores.interface import Source

if TYPE_CHECKING:  # a type only: the spec's YAML loader is not needed on the import side
    from mirror.spec import Registry


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
    # A chart from a Helm repository: its index entry, so a Helm folder can write it back.
    index_entry: Mapping[str, Any] | None = field(default=None, compare=False)

    @property
    def ref(self) -> str:
        return f"{self.path}:{self.tag}"


@dataclass
class Selection:
    found: list[Found] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
