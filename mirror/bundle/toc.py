"""The trailing table of contents: where each member's frame starts, as zstd skippable frames.

`zstd -d` skips skippable frames, so tar never sees the table. The table is only a hint for
seeking: every byte read through it is checked against the signed manifest's digest and size.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from mirror.errors import VerificationError
from mirror.formats import jsondoc

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # a zstd frame's first bytes (RFC 8878)
TOC_MAGIC = 0x184D2A5B
FOOTER_MAGIC = 0x184D2A5C
FOOTER_TAG = b"MIRRTOC1"
FOOTER_SIZE = 24  # magic u32, length u32 (16), toc offset u64, tag 8 bytes
TOC_VERSION = 1
MAX_TOC = 256 * 1024 * 1024


@dataclass(frozen=True)
class TocEntry:
    path: str
    frame: int  # offset in the file of the zstd frame holding the member
    offset: int  # offset of the member's data in that frame's decompressed bytes
    size: int


def encode_toc(entries: list[TocEntry]) -> bytes:
    doc = {
        "version": TOC_VERSION,
        "members": [
            {"path": e.path, "frame": e.frame, "offset": e.offset, "size": e.size} for e in entries
        ],
    }
    payload = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("ascii")
    return struct.pack("<II", TOC_MAGIC, len(payload)) + payload


def encode_footer(toc_offset: int) -> bytes:
    return struct.pack("<IIQ", FOOTER_MAGIC, 16, toc_offset) + FOOTER_TAG


def decode_footer(data: bytes, file_size: int) -> int:
    """The TOC frame's offset, from the file's last FOOTER_SIZE bytes."""
    if len(data) != FOOTER_SIZE:
        raise VerificationError("bundle: too short to hold a table of contents")
    magic, length, offset = struct.unpack("<IIQ", data[:16])
    if magic != FOOTER_MAGIC or length != 16 or data[16:] != FOOTER_TAG:
        raise VerificationError("bundle: no table of contents footer (not a mirror bundle?)")
    if offset > file_size - FOOTER_SIZE - 8:
        raise VerificationError("bundle: table of contents offset is out of range")
    return int(offset)


def toc_length(head: bytes, toc_offset: int, file_size: int) -> int:
    magic, length = struct.unpack("<II", head)
    if magic != TOC_MAGIC:
        raise VerificationError("bundle: table of contents frame not found")
    if length > MAX_TOC or toc_offset + 8 + length > file_size - FOOTER_SIZE:
        raise VerificationError("bundle: table of contents length is out of range")
    return int(length)


def decode_toc(payload: bytes, toc_offset: int) -> dict[str, TocEntry]:
    try:
        doc = jsondoc.loads(payload)
        if doc["version"] != TOC_VERSION:
            raise ValueError("unknown version")
        out: dict[str, TocEntry] = {}
        for item in doc["members"]:
            entry = TocEntry(
                path=_str(item["path"]),
                frame=_int(item["frame"]),
                offset=_int(item["offset"]),
                size=_int(item["size"]),
            )
            if entry.frame >= toc_offset or entry.path in out:
                raise ValueError(f"bad entry for {entry.path}")
            out[entry.path] = entry
        return out
    except (ValueError, KeyError, TypeError) as exc:
        raise VerificationError(f"bundle: malformed table of contents: {exc}") from None


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"not a non-negative integer: {value!r}")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"not a string: {value!r}")
    return value
