"""Pure parsers and builders for the formats mirror carries: semver, Palette packs, Helm.

Nothing here touches the network; sources and targets call these on bytes they already hold.
"""

from __future__ import annotations

import io
import struct
import tarfile
import zlib
from collections.abc import Callable, Iterator
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
# What one archive may inflate to when only looked into: a 3 MiB .tgz of zeros inflated
# 4 GiB in 9 s, and the 512 MiB download cap let through some 500 GiB (15-30 minutes).
MAX_INFLATED = 1 << 30


class InflatedTooFar(ValueError):
    """A gzip stream that inflates past the bound its reader set."""


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

    def __init__(self, head: bytes, rest: BinaryIO, limit: int = MAX_INFLATED) -> None:
        self._rest = rest
        self._limit = limit  # bytes out, in all
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
        self._limit -= len(self._out)
        if self._limit < 0:
            raise InflatedTooFar("the archive inflates past the size allowed")
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


def open_tar_stream(stream: BinaryIO, limit: int = MAX_INFLATED) -> tarfile.TarFile:
    """A forward-only TarFile over a plain or gzipped tar stream, inflating at most `limit`
    bytes (then InflatedTooFar).

    tarfile's own `r|gz` mishandles the gzip FEXTRA field (Python < 3.12 reads it from the
    decompressed side), and `helm package` writes one, so gzip is unwrapped here.
    """
    head = stream.read(2)
    raw: io.RawIOBase = (
        _Gunzip(head, stream, limit) if head == b"\x1f\x8b" else _Prefixed(head, stream)
    )
    source = io.BufferedReader(raw, _INFLATE_OUT)
    return tarfile.open(fileobj=source, mode="r|", bufsize=262144)


_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_REGULAR = (b"0", b"\0", b"7")
_META = (b"x", b"g", b"L", b"K")  # pax and GNU long-name records: about the next header
_MAX_META = 64 * 1024
_SKIP = 1024 * 1024


class _Ended(Exception):
    """The archive ends here: truncated, or a header that is not one."""


def tar_files(stream: BinaryIO, want: Callable[[str, int], bool]) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of the regular files of a plain or gzipped tar that `want(name, size)`
    asks for, in archive order; a malformed archive simply ends the walk.

    A scan of a pack reads every header to find three files. tarfile builds each header
    field by field in Python and copies its stream buffer per header, most of what scanning
    the corpus's packs cost; here a header is a few slices. Bundles are read strictly
    elsewhere (bundle/tarfmt.py); this walker is for content that is only looked into.
    """
    head = stream.read(2)
    raw: io.RawIOBase = _Gunzip(head, stream) if head == b"\x1f\x8b" else _Prefixed(head, stream)
    src = io.BufferedReader(raw, _INFLATE_OUT)
    pax: dict[str, str] = {}
    long_name: str | None = None
    try:
        while (block := src.read(_BLOCK)) and len(block) == _BLOCK and block != _ZERO_BLOCK:
            size, kind = _header_size(block), block[156:157]
            if kind in _META:
                if size > _MAX_META:
                    return
                data = _take(src, size, size)
                if kind == b"x":
                    pax = pax_records(data.rstrip(b"\0"))
                elif kind == b"L":
                    long_name = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                continue
            name = pax.get("path") or long_name or _decoded(ustar_name(block))
            size = pax_number(pax["size"]) if "size" in pax else size
            if size < 0:  # only a pax record can say so; reading "-1" bytes reads it all
                return
            pax, long_name = {}, None
            if kind in _REGULAR and want(name, size):
                yield name, _take(src, size, size)
            else:
                _skip(src, size + (-size % _BLOCK))
    except (_Ended, OSError, EOFError, zlib.error, ValueError):
        return


def _header_size(block: bytes) -> int:
    """The size field, once the checksum says this is a header (unsigned or signed sum)."""
    recorded = tar_number(block[148:156])
    unsigned = sum(block) - sum(block[148:156]) + 8 * 32
    if recorded != unsigned and recorded != sum(struct.unpack("148b8x356b", block)) + 256:
        raise _Ended()
    return tar_number(block[124:136])


def _decoded(name: bytes) -> str:
    return name.decode("utf-8", "surrogateescape")  # as tarfile does


def tar_number(field: bytes) -> int:
    """A header's number: octal text, or base-256 for sizes over 8 GiB. ValueError for
    anything else, a negative number included (bundle/tarfmt.py reads with it too)."""
    if field[:1] and field[0] & 0x80:
        if field[0] & 0x40:
            raise ValueError("negative number in tar header")
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip(b" ")
    if text.strip(b"01234567"):  # int() would also take "1_0", "+7" and other spellings
        raise ValueError("not an octal number in tar header")
    return int(text, 8) if text else 0


def pax_number(text: str | bytes) -> int:
    """A pax decimal as GNU tar reads it: ASCII digits only. Python's int() also takes
    "1_7385", "+5", " 9" and non-ASCII digits, so two readers would see two sizes."""
    digits = text.encode() if isinstance(text, str) else text
    if not digits or digits.strip(b"0123456789"):
        raise ValueError(f"not a decimal number: {digits[:20]!r}")
    return int(digits)


def ustar_name(block: bytes) -> bytes:
    """A header's name, with the ustar prefix field when the magic says there is one."""
    name = block[0:100].split(b"\0", 1)[0]
    if block[257:263] == b"ustar\x00":  # POSIX ustar; GNU's magic has no prefix field
        prefix = block[345:500].split(b"\0", 1)[0]
        if prefix:
            return prefix + b"/" + name
    return name


def pax_records(data: bytes) -> dict[str, str]:
    """`LEN key=value\n` records, UTF-8; ValueError for a malformed one."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.index(b" ", pos)
        length = pax_number(data[pos:space])
        record = data[space + 1 : pos + length]
        if length <= 0 or not record.endswith(b"\n"):
            raise ValueError("malformed pax record")
        key, _, value = record[:-1].partition(b"=")
        records[key.decode("utf-8")] = value.decode("utf-8")
        pos += length
    return records


def _take(src: io.BufferedIOBase, size: int, keep: int) -> bytes:
    """The next member's data (the first `keep` bytes of it) and its padding."""
    data = src.read(keep)
    if len(data) != keep:
        raise _Ended()
    _skip(src, size - keep + (-size % _BLOCK))
    return data


def _skip(src: io.BufferedIOBase, n: int) -> None:
    while n > 0:
        chunk = src.read(min(n, _SKIP))
        if not chunk:
            raise _Ended()
        n -= len(chunk)
