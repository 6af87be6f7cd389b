"""Where each zstd frame of a bundle starts: in the file, and in the archive it holds.

The table of contents is not signed. It says in which frame a member lies and where in that
frame's bytes it starts, and import, serve and inspect seek by it (serve without hashing
again, having verified the whole file at start). So verify proves each claim: the frame
starts there, and the member's first byte is where the streaming pass met it.

The walk reads frame and block headers only (RFC 8878, 3.1). A frame's content size is
taken from its header: the streaming pass decompressed every frame, and zstd refuses a
frame whose content is not the size it declares, so by then every declared size is true.
"""

from __future__ import annotations

from typing import BinaryIO

from mirror.errors import VerificationError

ZSTD_FRAME = 0xFD2FB528
SKIPPABLE_FIRST, SKIPPABLE_LAST = 0x184D2A50, 0x184D2A5F
_FCS_BYTES = (0, 2, 4, 8)  # by Frame_Content_Size_flag; flag 0 is 1 byte in a single segment
_DICT_BYTES = (0, 1, 2, 4)  # by Dictionary_ID_flag


def frame_map(f: BinaryIO, end: int) -> dict[int, tuple[int, int]]:
    """File offset of each frame before `end` -> (where its content starts in the archive,
    its content size). The walk ends at a frame that declares no size (the writer's last,
    the end-of-archive blocks): where any later content starts cannot be known without
    decompressing, so no later frame is placed."""
    out: dict[int, tuple[int, int]] = {}
    pos, start = 0, 0
    while pos < end:
        f.seek(pos)
        head = f.read(18)  # magic, descriptor, window, dictionary id, content size: at most
        magic = int.from_bytes(head[:4], "little") if len(head) >= 8 else -1
        if SKIPPABLE_FIRST <= magic <= SKIPPABLE_LAST:
            pos += 8 + int.from_bytes(head[4:8], "little")
            continue
        if magic != ZSTD_FRAME:
            raise VerificationError(f"bundle: no zstd frame at byte {pos}")
        size, header = _frame_header(head, pos)
        if size is None:
            return out
        # Blocks hold at most 128 KiB, at least 1 KiB but the last (the smallest window):
        # a frame of many more is made to make this walk slow, not by a compressor.
        blocks = size // 1024 + 16
        after = _blocks_end(f, pos + header, end, bool(head[4] & 0x04), blocks)
        out[pos] = (start, size)
        start += size
        pos = after
    if pos != end:
        raise VerificationError("bundle: the last frame runs into the table of contents")
    return out


def _frame_header(head: bytes, pos: int) -> tuple[int | None, int]:
    """(Frame_Content_Size or None, the header's length in bytes)."""
    fhd = head[4]
    if fhd & 0x08:
        raise VerificationError(f"bundle: the frame at byte {pos} sets a reserved bit")
    single = bool(fhd & 0x20)
    fcs_len = _FCS_BYTES[fhd >> 6] or (1 if single else 0)
    n = 5 + (0 if single else 1) + _DICT_BYTES[fhd & 0x03]
    if len(head) < n + fcs_len:
        raise VerificationError(f"bundle: the frame at byte {pos} is cut short")
    if not fcs_len:
        return None, n
    size = int.from_bytes(head[n : n + fcs_len], "little") + (256 if fcs_len == 2 else 0)
    return size, n + fcs_len


def _blocks_end(f: BinaryIO, pos: int, end: int, checksum: bool, most: int) -> int:
    """Past the frame's last block (and its checksum), reading each block's header only."""
    for _ in range(most):
        f.seek(pos)
        raw = f.read(3)
        if len(raw) < 3 or pos + 3 > end:
            raise VerificationError(f"bundle: a zstd block at byte {pos} is cut short")
        value = int.from_bytes(raw, "little")
        kind, size = (value >> 1) & 0x03, value >> 3
        if kind == 3:
            raise VerificationError(f"bundle: the zstd block at byte {pos} is of a reserved type")
        pos += 3 + (1 if kind == 1 else size)
        if value & 1:
            return pos + (4 if checksum else 0)
    raise VerificationError(f"bundle: a zstd frame before byte {pos} has more blocks than its size")
