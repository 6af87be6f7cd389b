"""The little of POSIX tar a bundle needs, written and read by hand.

Writing: `tarfile` makes the headers (ustar, with a pax header only when a field overflows),
so `tar -x` reads them. Reading: our own parser, because `tarfile` buffers whole pax headers
and skips data by reading it; here every size an archive claims is checked before anything is
read or allocated.
"""

from __future__ import annotations

import posixpath
import tarfile
from dataclasses import dataclass

from mirror.errors import VerificationError
from mirror.formats import pax_number, pax_records, tar_number, ustar_name
from mirror.streams import Readable

BLOCK = 512
RECORD = 10240  # tar's default record: GNU tar and bsdtar pad archives to it
MAX_PAX = 64 * 1024
_TYPES = {
    b"0": "file",
    b"\0": "file",
    b"7": "file",
    b"1": "hardlink",
    b"2": "symlink",
    b"3": "character device",
    b"4": "block device",
    b"5": "directory",
    b"6": "FIFO",
}


def header(path: str, size: int, mtime: int) -> bytes:
    """One regular file's header: root-owned, 0644, fixed mtime, so output is reproducible."""
    info = tarfile.TarInfo(path)
    info.size = size
    info.mtime = mtime
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


def padding(size: int) -> int:
    return -size % BLOCK


def end_of_archive(offset: int) -> bytes:
    """Two zero blocks, then zeros up to the next record boundary, as tar itself writes."""
    end = offset + 2 * BLOCK
    return bytes(2 * BLOCK + (-end % RECORD))


@dataclass(frozen=True)
class Entry:
    path: str
    kind: str  # "file", "symlink", ...
    size: int


def read_exact(stream: Readable, n: int) -> bytes:
    parts: list[bytes] = []
    left = n
    while left > 0:
        chunk = stream.read(left)
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def next_entry(stream: Readable) -> Entry | None:
    """The next member's header (pax records applied), or None at the end-of-archive blocks.

    Leaves the stream at the member's first data byte.
    """
    pax: dict[str, str] = {}
    while True:
        block = _read_block(stream)
        if block == bytes(BLOCK):
            if _read_block(stream) != bytes(BLOCK):
                raise VerificationError("archive: a lone zero block where a header should be")
            return None
        _check_checksum(block)
        typeflag = block[156:157]
        size = _number(block[124:136])
        if typeflag == b"x":
            if size > MAX_PAX:
                raise VerificationError(f"archive: pax header of {size} bytes is too large")
            pax = _pax_records(read_exact(stream, size + padding(size))[:size])
            continue
        if typeflag in (b"g", b"L", b"K"):
            raise VerificationError(f"archive: unsupported tar header type {typeflag!r}")
        name = _name(block)
        path = pax.get("path", name)
        if "size" in pax:
            try:
                size = pax_number(pax["size"])
            except ValueError:
                raise VerificationError(f"{path}: bad pax size") from None
        kind = _TYPES.get(typeflag, f"type {typeflag!r}")
        return Entry(path=path, kind=kind, size=size)


def skip_padding(stream: Readable, size: int) -> None:
    pad = padding(size)
    if pad and len(read_exact(stream, pad)) != pad:
        raise VerificationError("archive is truncated")


def unsafe_reason(path: str) -> str | None:
    """Why a member name could escape or confuse an extraction directory, if it could."""
    if not path:
        return "empty name"
    if path.startswith("/"):
        return "absolute path"
    if "\\" in path or "\0" in path:
        return "backslash or NUL in name"
    parts = path.split("/")
    if ".." in parts:
        return "'..' in path"
    if posixpath.normpath(path) != path or "" in parts or "." in parts:
        return "path is not in normal form"
    return None


def _read_block(stream: Readable) -> bytes:
    block = read_exact(stream, BLOCK)
    if len(block) != BLOCK:
        raise VerificationError("archive is truncated")
    return block


def _check_checksum(block: bytes) -> None:
    try:
        recorded = _number(block[148:156])
    except VerificationError:
        raise VerificationError("archive: corrupt tar header") from None
    actual = sum(block[:148]) + 8 * 32 + sum(block[156:])
    if recorded != actual:
        raise VerificationError("archive: tar header checksum mismatch")


def _number(field: bytes) -> int:
    if field[:1] and field[0] & 0xC0 == 0xC0:  # base-256 with its sign bit set
        raise VerificationError("archive: negative number in tar header")
    try:
        return tar_number(field)
    except ValueError:
        raise VerificationError("archive: corrupt number in tar header") from None


def _name(block: bytes) -> str:
    name = ustar_name(block)
    try:
        return name.decode("utf-8")
    except UnicodeDecodeError:
        raise VerificationError(f"archive: member name {name!r} is not UTF-8") from None


def _pax_records(data: bytes) -> dict[str, str]:
    try:
        return pax_records(data)
    except ValueError:  # UnicodeDecodeError is one
        raise VerificationError("archive: malformed pax header") from None
