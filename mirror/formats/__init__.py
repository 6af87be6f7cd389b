"""Pure parsers and builders for the formats mirror carries: semver, Palette packs, Helm.

Nothing here touches the network; sources and targets call these on bytes they already hold.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path
from typing import Any, BinaryIO


def schema_path(name: str) -> Path:
    """Where a JSON schema lives: the repo's `schemas/` in a checkout, else a packaged copy.

    A checkout (editable install) keeps schemas at the repository root; a wheel may ship them
    inside the package as `mirror/schemas/`. The first existing file wins; if neither exists
    the repo path is returned so the caller's error names the expected place.
    """
    package_dir = Path(__file__).resolve().parents[1]
    candidates = (package_dir.parent / "schemas" / name, package_dir / "schemas" / name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return candidates[0]


class _Prefixed(io.RawIOBase):
    """A stream with a few already-read bytes put back in front, without seeking."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n], self._head = self._head[:n], self._head[n:]
            return n
        data = self._rest.read(len(view))
        view[: len(data)] = data
        return len(data)


def open_tar_stream(stream: BinaryIO) -> tarfile.TarFile:
    """A forward-only TarFile over a plain or gzipped tar stream.

    tarfile's own `r|gz` mishandles the gzip FEXTRA field (Python < 3.12 reads it from the
    decompressed side), and `helm package` writes one, so gzip is unwrapped by GzipFile.
    """
    head = stream.read(2)
    joined = io.BufferedReader(_Prefixed(head, stream))
    source: BinaryIO = joined
    if head == b"\x1f\x8b":
        source = gzip.GzipFile(fileobj=joined, mode="rb")  # type: ignore[assignment]
    return tarfile.open(fileobj=source, mode="r|")
