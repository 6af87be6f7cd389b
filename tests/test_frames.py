"""The frame walk verify proves the table of contents with, against zstd's own frames."""

from __future__ import annotations

import io
import os
import struct

import pytest
import zstandard

from mirror.bundle.frames import frame_map
from mirror.errors import VerificationError


def _walk(data: bytes) -> dict[int, tuple[int, int]]:
    return frame_map(io.BytesIO(data), len(data))


@pytest.mark.parametrize("checksum", [False, True])
def test_every_frame_is_found_where_zstd_put_it_with_its_content_start(checksum: bool) -> None:
    """Sizes that take each width of Frame_Content_Size: 1 byte (single segment), 2 bytes
    (stored minus 256), 4 bytes; compressible, incompressible and empty content."""
    contents = [b"", b"a" * 200, os.urandom(300), b"b" * 70_000, os.urandom(200_000)]
    cctx = zstandard.ZstdCompressor(level=3, write_checksum=checksum)
    frames = [cctx.compress(c) for c in contents]
    data, want, at, start = b"", {}, 0, 0
    for content, frame in zip(contents, frames, strict=True):
        want[at] = (start, len(content))
        data += frame
        at, start = at + len(frame), start + len(content)
    assert _walk(data) == want


def test_a_streamed_frame_with_its_size_declared_and_a_skippable_frame_between() -> None:
    out = io.BytesIO()
    with zstandard.ZstdCompressor().stream_writer(out, size=5000, closefd=False) as w:
        w.write(os.urandom(5000))
    first = out.getvalue()
    skippable = struct.pack("<II", 0x184D2A5B, 3) + b"xyz"
    second = zstandard.ZstdCompressor().compress(b"c" * 10)
    data = first + skippable + second
    assert _walk(data) == {0: (0, 5000), len(first) + len(skippable): (5000, 10)}


def test_after_a_frame_without_its_size_nothing_can_be_placed() -> None:
    """A streamed frame that does not declare its size: where later frames start in the
    archive is unknown without decompressing, so none of them is placed."""
    out = io.BytesIO()
    with zstandard.ZstdCompressor().stream_writer(out, closefd=False) as w:
        w.write(b"d" * 1000)
    sized = zstandard.ZstdCompressor().compress(b"e" * 10)
    data = sized + out.getvalue() + sized
    assert _walk(data) == {0: (0, 10)}


def test_a_frame_of_empty_blocks_is_refused_not_walked() -> None:
    """A million empty raw blocks decompress at C speed and would keep this walk in
    Python for seconds each: more blocks than a frame's size can need is refused."""
    empty, last = (0).to_bytes(3, "little"), (1).to_bytes(3, "little")
    head = struct.pack("<I", 0xFD2FB528) + bytes([0x20, 0])  # single segment, size 0
    frame = head + empty * 100_000 + last
    with pytest.raises(VerificationError, match="more blocks than its size"):
        _walk(frame)
    assert _walk(head + empty * 3 + last) == {0: (0, 0)}


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda d: b"\0" * 8 + d, "no zstd frame at byte 0"),
        (lambda d: d[:4] + bytes([d[4] | 0x08]) + d[5:], "reserved bit"),
        (lambda d: d[:-2], "runs into the table of contents"),
        (lambda d: d + b"\x28", "no zstd frame"),
    ],
    ids=["not-a-frame", "reserved-bit", "cut-short", "stray-byte"],
)
def test_what_is_no_frame_is_refused(damage: object, words: str) -> None:
    data = zstandard.ZstdCompressor().compress(os.urandom(1000))
    with pytest.raises(VerificationError, match=words):
        _walk(damage(data))  # type: ignore[operator]


def test_a_block_of_the_reserved_type_is_refused() -> None:
    data = bytearray(zstandard.ZstdCompressor().compress(os.urandom(1000)))
    header = 4 + 1 + 2  # magic, descriptor (single segment), a 2-byte content size
    data[header] |= 0x06  # block type 3
    with pytest.raises(VerificationError, match="reserved type"):
        _walk(bytes(data))
