"""Read a bundle without unpacking it: the head for inspect, any member through the seek table.

Nothing here trusts the table of contents: it only says where to look. Every member read is
checked against the digest and size the caller got from the signed manifest.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

import zstandard

from mirror.bundle import tarfmt
from mirror.bundle.manifest import MANIFEST_PATH, MAX_MANIFEST_BYTES, SIGNATURE_PATH
from mirror.bundle.parts import open_bundle, total_size
from mirror.bundle.toc import (
    FOOTER_SIZE,
    TocEntry,
    decode_footer,
    decode_toc,
    toc_length,
)
from mirror.errors import IntegrityError, OperationError, VerificationError
from mirror.streams import Readable

CHUNK = 1024 * 1024
SMALL_FRAME = 2 * 1024 * 1024  # the writer groups small members up to about 1 MiB a frame
SMALL_CACHE = 32 * 1024 * 1024  # small JSON members kept per reader, at most
# Other small members (small layers) waiting to be read: less, as they are freed in any
# order; at 32 MB, 5,000 small images took an import from 89 to 153 MB of RSS.
LAYER_CACHE = 8 * 1024 * 1024
SMALL_MEMBER = 64 * 1024  # ... each at most this big (manifests, configs, small layers)
MAX_SIGNATURE_BYTES = 4096


class _Guarded:
    """A decompressing stream whose zstd errors become verification failures."""

    def __init__(self, raw: zstandard.ZstdDecompressionReader, where: str) -> None:
        self._raw = raw
        self._where = where

    def read(self, n: int = -1, /) -> bytes:
        try:
            return self._raw.read(n)
        except zstandard.ZstdError as exc:
            raise VerificationError(f"{self._where}: corrupt zstd data: {exc}") from None

    def close(self) -> None:
        """Free the native decompression buffers now, not when the collector gets to them."""
        self._raw.close()  # type: ignore[no-untyped-call]


def decompressing(raw: Readable, where: str, across_frames: bool = True) -> _Guarded:
    reader = zstandard.ZstdDecompressor().stream_reader(
        cast(BinaryIO, raw), read_size=CHUNK, read_across_frames=across_frames, closefd=False
    )
    return _Guarded(reader, where)


class MemberStream:
    """Exactly one member's bytes; the digest is checked before the last chunk is handed out."""

    def __init__(
        self, raw: Readable, path: str, sha256: str, size: int, *, verify: bool = True
    ) -> None:
        self._raw = raw
        self._path = path
        self._sha256 = sha256
        self._left = size
        self._size = size
        self._hash = hashlib.sha256() if verify else None

    def __len__(self) -> int:
        return self._left

    def read(self, n: int = -1, /) -> bytes:
        if self._left <= 0:
            return b""
        want = self._left if n is None or n < 0 else min(n, self._left)
        chunk = tarfmt.read_exact(self._raw, min(want, 4 * CHUNK))
        if not chunk:
            raise IntegrityError(
                f"{self._path}: truncated after {self._size - self._left} of {self._size} bytes"
            )
        self._left -= len(chunk)
        if self._hash is None:
            return chunk
        self._hash.update(chunk)
        if self._left == 0 and self._hash.hexdigest() != self._sha256:
            raise IntegrityError(f"{self._path}: content does not match sha256 {self._sha256}")
        return chunk


class BundleReader:
    """Random access into one bundle; each call opens its own handle, so threads may share it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._toc: dict[str, TocEntry] | None = None
        self._toc_offset = 0
        self._lock = threading.Lock()
        self._frame_lock = threading.Lock()
        self._lengths: dict[int, int] | None = None
        self._by_frame: dict[int, list[TocEntry]] | None = None
        self._small: dict[str, bytes] = {}  # small members of the frames read so far
        self._read_frames: set[int] = set()
        self._cached = 0  # bytes of JSON members kept
        self._waiting = 0  # bytes of other members kept until read

    def _open(self) -> BinaryIO:
        try:
            return open_bundle(self.path)
        except OSError as exc:
            raise OperationError(f"{self.path}: cannot open: {exc.strerror}") from None

    def head(self) -> tuple[bytes, bytes | None]:
        """manifest.json and manifest.json.sig (None when unsigned), read from the first frame."""
        with self._open() as f:
            return read_head(decompressing(f, str(self.path)))

    def toc(self) -> dict[str, TocEntry]:
        with self._lock:
            if self._toc is None:
                self._toc, self._toc_offset = self._read_toc()
            return self._toc

    def toc_offset(self) -> int:
        """Where the table's frame starts: the archive's frames all lie before it."""
        self.toc()
        return self._toc_offset

    def _read_toc(self) -> tuple[dict[str, TocEntry], int]:
        with self._open() as f:
            size = total_size(self.path)
            if size < FOOTER_SIZE + 8:
                raise VerificationError(f"{self.path}: too short to be a bundle")
            f.seek(size - FOOTER_SIZE)
            offset = decode_footer(f.read(FOOTER_SIZE), size)
            f.seek(offset)
            length = toc_length(f.read(8), offset, size)
            payload = f.read(length)
            if len(payload) != length:
                raise VerificationError(f"{self.path}: table of contents is truncated")
            return decode_toc(payload, offset), offset

    def read_small(self, path: str, sha256: str, size: int) -> bytes:
        """A small member (a manifest, a config) whole, checked.

        Small members share frames, and their digests scatter them over every frame, so
        reading each alone would decompress its frame from the start every time. The first
        read of a shared frame decompresses it once and keeps its small members: JSON ones
        (manifests, configs, indexes: read again) for the reader's life, within SMALL_CACHE
        bytes, others (a small layer, read once per target) until read, within LAYER_CACHE
        bytes. The
        frame itself is not kept (64 MB of them made 5,000 small images a 184 MB import);
        reading each small layer from its frame's start took an import of 1,000 small images
        2,000 opens and ~0.5 GB of decompression (bench/FINDINGS.md, stop 32).
        """
        entry = self._entry(path, size)
        data = self._small_member(entry)
        if data is None:
            with self.open_member(path, sha256, size) as stream:
                return tarfmt.read_exact(stream, size)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise IntegrityError(f"{path}: content does not match sha256 {sha256}")
        return data

    def _small_member(self, entry: TocEntry) -> bytes | None:
        # One lock around the whole read: threads asking for the same frame wait for the
        # first one instead of all decompressing it (a frame takes about a millisecond).
        with self._frame_lock:
            hit = self._small.get(entry.path)
            if hit is not None and hit[:1] != b"{":  # not JSON: handed out once
                del self._small[entry.path]
                self._waiting -= len(hit)
            if hit is not None or entry.frame in self._read_frames:
                return hit  # None: not kept, stream it
            length = self._frame_lengths().get(entry.frame, SMALL_FRAME + 1)
            if length > SMALL_FRAME:
                return None  # a big member's own frame: stream it instead
            with self._open() as f, closing(decompressing(f, str(self.path), False)) as z:
                f.seek(entry.frame)
                frame = tarfmt.read_exact(z, length)
            self._read_frames.add(entry.frame)
            for e in self._frame_members().get(entry.frame, ()):
                if e.size > SMALL_MEMBER:
                    continue  # not copied out of the frame only to be dropped
                body = frame[e.offset : e.offset + e.size]
                if len(body) != e.size:
                    continue
                json = body[:1] == b"{"
                if json and self._cached + e.size <= SMALL_CACHE:
                    self._small[e.path] = body
                    self._cached += e.size
                elif not json and e.path != entry.path and self._waiting + e.size <= LAYER_CACHE:
                    self._small[e.path] = body  # handed out now: this one is not kept
                    self._waiting += e.size
            return frame[entry.offset : entry.offset + entry.size]

    def _frame_members(self) -> dict[int, list[TocEntry]]:
        if self._by_frame is None:
            grouped: dict[int, list[TocEntry]] = {}
            for e in self.toc().values():
                grouped.setdefault(e.frame, []).append(e)
            self._by_frame = grouped
        return self._by_frame

    def _frame_lengths(self) -> dict[int, int]:
        """Where each frame's last member ends; zstd's reader would run on into the next."""
        if self._lengths is None:
            ends: dict[int, int] = {}
            for e in self.toc().values():
                end = e.offset + e.size + tarfmt.padding(e.size)
                ends[e.frame] = max(end, ends.get(e.frame, 0))
            self._lengths = ends
        return self._lengths

    def _entry(self, path: str, size: int) -> TocEntry:
        entry = self.toc().get(path)
        if entry is None:
            raise VerificationError(f"{path}: not in the bundle's table of contents")
        if entry.size != size:
            raise IntegrityError(f"{path}: table of contents says {entry.size} bytes, not {size}")
        return entry

    @contextmanager
    def open_member(
        self, path: str, sha256: str, size: int, *, verify: bool = True
    ) -> Iterator[MemberStream]:
        """One member, decompressing only its frame; size and sha256 checked as it streams.

        `verify=False` skips the sha256 (never the size): for `serve`, which proved the
        whole file at start and checks before each read that it is still that file.
        """
        entry = self._entry(path, size)
        with self._open() as f, closing(decompressing(f, path, across_frames=False)) as stream:
            f.seek(entry.frame)
            skip = entry.offset
            while skip > 0:
                got = len(stream.read(min(skip, CHUNK)))
                if not got:
                    raise IntegrityError(f"{path}: table of contents points past its frame")
                skip -= got
            yield MemberStream(stream, path, sha256, size, verify=verify)


@dataclass(frozen=True)
class Head:
    manifest: bytes
    signature: bytes | None
    pending: tarfmt.Entry | None  # the header read after the head, or None at the archive's end


def read_head(stream: Readable) -> tuple[bytes, bytes | None]:
    """The first member (must be manifest.json) and the signature right after it, if any."""
    head = read_head_entries(stream, peek_next=False)
    return head.manifest, head.signature


def read_head_entries(stream: Readable, *, peek_next: bool = True) -> Head:
    """Like read_head, for a caller that goes on to read the members after the head."""
    entry = tarfmt.next_entry(stream)
    if entry is None or entry.path != MANIFEST_PATH or entry.kind != "file":
        raise VerificationError(f"{MANIFEST_PATH} is not the first member")
    manifest = read_small(stream, entry, MAX_MANIFEST_BYTES)
    entry = tarfmt.next_entry(stream)
    if entry is None or entry.path != SIGNATURE_PATH:
        return Head(manifest, None, entry)
    if entry.kind != "file":
        raise VerificationError(f"{SIGNATURE_PATH}: {entry.kind} entries are not allowed")
    signature = read_small(stream, entry, MAX_SIGNATURE_BYTES)
    return Head(manifest, signature, tarfmt.next_entry(stream) if peek_next else None)


def read_small(stream: Readable, entry: tarfmt.Entry, cap: int) -> bytes:
    if entry.size > cap:
        raise VerificationError(f"{entry.path}: {entry.size} bytes is larger than allowed ({cap})")
    data = tarfmt.read_exact(stream, entry.size)
    if len(data) != entry.size:
        raise VerificationError("archive is truncated")
    tarfmt.skip_padding(stream, entry.size)
    return data
