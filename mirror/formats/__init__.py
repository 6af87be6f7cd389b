"""Pure parsers and builders for the formats mirror carries: semver, Palette packs, Helm.

Nothing here touches the network; sources and targets call these on bytes they already hold.
"""

from __future__ import annotations

import io
import tarfile
import zlib
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


_INFLATE_IN = 1024 * 1024  # compressed bytes per inflate call
_INFLATE_OUT = 1024 * 1024  # at most this many bytes out of one call
# tarfile's stream mode copies its whole buffer on every header read: keep it modest.
_TAR_READ = 64 * 1024


class _Gunzip(io.RawIOBase):
    """A forward-only gunzip that inflates a megabyte at a time.

    GzipFile feeds zlib 8 KiB at a time through three Python layers; finding pack.json in
    all of the corpus's pack layers spent a third of its time there. zlib's own gzip
    parser (wbits=31) reads every header field, FEXTRA included; members may be
    concatenated, as gzip allows.
    """

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._rest = rest
        self._inflater = zlib.decompressobj(31)
        self._pending = head  # compressed bytes not yet given to the inflater
        self._out = b""
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while self._offset >= len(self._out):
            if not self._inflate():
                return 0
        n = min(len(view), len(self._out) - self._offset)
        view[:n] = self._out[self._offset : self._offset + n]
        self._offset += n
        return n

    def _inflate(self) -> bool:
        """Refill the output; False at the end of the input."""
        if self._inflater.eof:
            self._pending = self._inflater.unused_data + self._pending
            if not self._pending:
                self._pending = self._rest.read(_INFLATE_IN)
                if not self._pending:
                    return False
            self._inflater = zlib.decompressobj(31)
        data = self._inflater.unconsumed_tail or self._pending or self._rest.read(_INFLATE_IN)
        if data is self._pending:
            self._pending = b""
        if not data:
            raise EOFError("gzip stream ends before its end marker")
        self._out, self._offset = self._inflater.decompress(data, _INFLATE_OUT), 0
        return True


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
    decompressed side), and `helm package` writes one, so gzip is unwrapped here.
    """
    head = stream.read(2)
    raw: io.RawIOBase = _Gunzip(head, stream) if head == b"\x1f\x8b" else _Prefixed(head, stream)
    source = io.BufferedReader(raw, _INFLATE_OUT)
    return tarfile.open(fileobj=source, mode="r|", bufsize=262144)
