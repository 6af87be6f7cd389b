"""Write a bundle: a reproducible tar, compressed frame by frame, with a seek table at the end.

One zstd frame per large member (small members share frames), so a reader can decompress any
one member alone; `zstd -dc FILE | tar -x` still works because concatenated frames are one
stream. The writer verifies: each member is re-hashed as it streams, so a corrupt cache can
never produce a bundle whose manifest lies.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, cast

import zstandard

from mirror.bundle import tarfmt
from mirror.bundle.manifest import (
    MANIFEST_PATH,
    SIGNATURE_PATH,
    BundleManifest,
    parse_manifest,
)
from mirror.bundle.parts import split_output
from mirror.bundle.toc import ZSTD_MAGIC, TocEntry, encode_footer, encode_toc
from mirror.errors import IntegrityError, OperationError, UsageError
from mirror.streams import Staged

CHUNK = 1024 * 1024
SYNC_EVERY = 32 * 1024 * 1024  # written bytes between background fdatasyncs
SMALL_MEMBER = 256 * 1024  # smaller members share a frame ...
GROUP_LIMIT = 1024 * 1024  # ... of at most about this many uncompressed bytes
# Levels await the benchmark (docs/BENCHMARKS.md): gzip/zstd layers gain ~nothing from more.
LEVEL = 3
STORED = None  # a level meaning "no compressor": raw blocks (`StoredFrame`)
COMPRESSED_LEVEL: int | None = STORED
_COMPRESSED_MAGICS = (b"\x1f\x8b", ZSTD_MAGIC)
RAW_BLOCK = 128 * 1024  # zstd's Block_Maximum_Size
IOV_MAX = 1024  # pieces per writev(2) (Linux's limit)


class ByteObserver(Protocol):
    """The part of the copy engine's ByteObserver the writer reports to: bytes as they go."""

    def advance(self, nbytes: int) -> None: ...


@dataclass(frozen=True)
class Member:
    path: str
    size: int
    sha256: str  # bare hex
    open: Callable[[], BinaryIO]
    # Hashed on its way in by this very process (a blob just fetched into the cache): the
    # size is still checked, the hash is not computed twice.
    verified: bool = False


@dataclass(frozen=True)
class WrittenBundle:
    path: Path
    sha256: bytes  # raw digest of the file's bytes, for FILE.sig and FILE.sha256
    size: int


@dataclass(frozen=True)
class _Item:
    member: Member
    header: bytes

    @property
    def length(self) -> int:
        return len(self.header) + self.member.size + tarfmt.padding(self.member.size)


class _Flusher:
    """fdatasync the output on a thread of its own every SYNC_EVERY bytes, so the fsync that
    makes the bundle durable finds little left to write: on the bench host it took 0.12-0.14 s
    of a 300 MB export, with both cores otherwise idle. Errors wait for that fsync."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._due = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._run, name="bundle-sync", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        self._due.set()

    def close(self) -> None:
        self._done = True
        self._due.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self._due.wait()
            self._due.clear()
            if self._done:
                return
            with contextlib.suppress(OSError):
                os.fdatasync(self._fd)


class _Writable(Protocol):
    def write(self, data: bytes | memoryview, /) -> int: ...

    def writelines(self, parts: list[bytes | memoryview], /) -> None: ...


class StoredFrame:
    """One zstd frame of raw blocks (RFC 8878), for a member compressed already.

    zstd at level 1 took gzip layers to 0.995 of their size at best (docs/BENCHMARKS.md),
    and its streaming API cost a copy of every byte in and another out: on the bench's
    300 MB export, 0.3-0.4 s of CPU, a fifth of the whole. Raw blocks cost one 3-byte header
    per 128 KiB. No content checksum: the member's sha256 in manifest.json is what every
    reader checks, and the bundle's own sha256 covers these bytes.
    """

    def __init__(self, out: _Writable, size: int) -> None:
        self._out = out
        # Descriptor 0xC0: an 8-byte content size, not single-segment (a decoder needs only
        # a block's worth of window, 2^17: byte 0x38, whatever the member's size).
        out.write(ZSTD_MAGIC + b"\xc0\x38" + size.to_bytes(8, "little"))

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        parts: list[bytes | memoryview] = []
        for at in range(0, len(view), RAW_BLOCK):
            piece = view[at : at + RAW_BLOCK]
            parts += ((len(piece) << 3).to_bytes(3, "little"), piece)  # not last, raw, size
        self._out.writelines(parts)  # a header and its block in one system call, not two
        return len(view)

    def flush(self, flush_mode: int = zstandard.FLUSH_FRAME) -> int:
        """End the frame: an empty raw block marked last, as zstd itself ends one."""
        return self._out.write(b"\x01\x00\x00")


class _Sink:
    """The output file, counting and hashing every compressed byte on its way to disk.

    The hash runs on a thread of its own (hashlib releases the GIL), beside the
    compression, instead of after each write on the writer's thread; written bytes go
    to disk in the background as well (`_Flusher`).
    """

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.count = 0
        self._hash = hashlib.sha256()
        self._queue: queue.Queue[list[bytes | memoryview] | None] = queue.Queue(maxsize=8)
        self._batch: list[bytes | memoryview] = []  # handed to the hasher about 1 MiB at a time
        self._batched = 0
        self._thread = threading.Thread(target=self._hasher, name="bundle-hash", daemon=True)
        self._thread.start()
        fileno = getattr(raw, "fileno", None)
        self._flusher = _Flusher(fileno()) if callable(fileno) else None
        self._poked = 0

    def write(self, data: bytes | memoryview) -> int:
        chunk = data if _frozen(data) else bytes(data)
        self.raw.write(chunk)
        self._account(chunk)
        return len(chunk)

    def _account(self, chunk: bytes | memoryview) -> None:
        """Count, hash (on the hasher's thread) and sync in the background what was written."""
        self._batch.append(chunk)
        self._batched += len(chunk)
        if self._batched >= CHUNK:  # a stored frame writes 3 bytes, then 128 KiB: one
            self._hand_over()  # wake-up of the hasher per piece was 4% of an export's CPU
        self.count += len(chunk)
        if self._flusher is not None and self.count - self._poked >= SYNC_EVERY:
            self.raw.flush()
            self._poked = self.count
            self._flusher.poke()

    def writelines(self, parts: list[bytes | memoryview]) -> None:
        """Several pieces in one gathered write where the output is a plain file: a stored
        frame's 3-byte headers and 128 KiB blocks were two write(2) calls per block, each
        letting go of the GIL and waiting to take it back."""
        if not isinstance(self.raw, io.BufferedWriter):  # split parts: piece by piece
            for part in parts:
                self.write(part)
            return
        frozen = [p if _frozen(p) else bytes(p) for p in parts]
        self.raw.flush()  # what the buffer holds goes first
        _writev_all(self.raw.fileno(), frozen)
        for part in frozen:
            self._account(part)

    def _hand_over(self) -> None:
        self._queue.put(self._batch)
        self._batch, self._batched = [], 0

    def flush(self) -> None:
        """Frame ends flush us; the file itself is flushed and fsynced once, at the end."""

    def as_io(self) -> BinaryIO:
        return cast(BinaryIO, self)

    def digest(self) -> bytes:
        self.close()
        return self._hash.digest()

    def close(self) -> None:
        if self._flusher is not None:
            self._flusher.close()
            self._flusher = None
        if self._thread.is_alive():
            self._hand_over()
            self._queue.put(None)
            self._thread.join()

    def _hasher(self) -> None:
        while (batch := self._queue.get()) is not None:
            for chunk in batch:
                self._hash.update(chunk)


def _frozen(data: bytes | memoryview) -> bool:
    """Bytes and read-only views cannot change before the hasher reads them: no copy."""
    return type(data) is bytes or (type(data) is memoryview and data.readonly)


def _writev_all(fd: int, parts: list[bytes | memoryview]) -> None:
    """os.writev until every byte is written (a regular file may still take fewer)."""
    views = [memoryview(p) for p in parts]
    while views:
        done = os.writev(fd, views[:IOV_MAX])
        if done == 0 and any(views[:IOV_MAX]):
            raise OSError(f"writev wrote nothing of {sum(map(len, views))} bytes")
        while views and done >= len(views[0]):
            done -= len(views.pop(0))
        if views and done:
            views[0] = views[0][done:]


def write_bundle(
    output: Path,
    manifest: bytes,
    signature: bytes | None,
    members: Sequence[Member],
    *,
    mtime: int,
    observer: ByteObserver | None = None,
    level: int = LEVEL,
    compressed_level: int | None = COMPRESSED_LEVEL,
    threads: int = -1,
    split_size: int | None = None,
    described: BundleManifest | None = None,
    staged: Staged | None = None,
) -> WrittenBundle:
    """Write FILE atomically: a temp file beside it, fsync, rename; on any failure no FILE.

    `compressed_level`: for a lone member that starts with gzip or zstd magic; STORED
    writes it in raw blocks.

    With `split_size`, FILE.001, FILE.002, ... instead (bundle/parts.py), just as atomic.
    With `staged`, nothing is renamed: the caller publishes FILE with its sidecars.
    `described`: the manifest whose `to_bytes()` (schema-checked) gave `manifest`, so its
    member list is not parsed and validated a second time.
    """
    items = _plan(manifest, signature, members, mtime, described)
    own = staged is None
    files = Staged() if staged is None else staged
    try:
        out = split_output(output, split_size, files) if split_size else files.file(output)
        with out as raw:
            sink = _Sink(raw)  # type: ignore[arg-type]
            try:
                _write_all(sink, items, mtime, observer, level, compressed_level, threads)
            finally:
                sink.close()
        if own:
            files.publish()
    except OSError as exc:
        raise OperationError(f"{output}: writing the bundle failed: {exc.strerror}") from exc
    finally:
        if own:
            files.discard()
    return WrittenBundle(path=output, sha256=sink.digest(), size=sink.count)


def _plan(
    manifest: bytes,
    signature: bytes | None,
    members: Sequence[Member],
    mtime: int,
    described: BundleManifest | None,
) -> list[_Item]:
    """Members in bundle order, checked against the manifest before any byte is written."""
    listed = (described or parse_manifest(manifest)).member_map()
    given: dict[str, Member] = {}
    for m in members:
        reason = tarfmt.unsafe_reason(m.path)
        if reason or m.path in (MANIFEST_PATH, SIGNATURE_PATH):
            raise UsageError(f"{m.path}: not a valid bundle member name ({reason or 'reserved'})")
        if m.path in given:
            raise UsageError(f"{m.path}: given twice")
        record = listed.get(m.path)
        if record is None or (record.sha256, record.size) != (m.sha256, m.size):
            raise IntegrityError(f"{m.path}: not listed in manifest.json with this digest and size")
        given[m.path] = m
    missing = sorted(set(listed) - set(given))
    if missing:
        raise IntegrityError(f"{missing[0]}: listed in manifest.json but not given to the writer")

    head = [_bytes_member(MANIFEST_PATH, manifest)]
    if signature is not None:
        head.append(_bytes_member(SIGNATURE_PATH, signature))
    order = {"oci-layout": 0, "index.json": 1}
    rest = sorted(given.values(), key=lambda m: (order.get(m.path, 2), m.path))
    return [_Item(m, tarfmt.header(m.path, m.size, mtime)) for m in [*head, *rest]]


def _bytes_member(path: str, data: bytes) -> Member:
    return Member(path, len(data), hashlib.sha256(data).hexdigest(), lambda: io.BytesIO(data))


def _frames(items: list[_Item], signed: bool) -> Iterator[list[_Item]]:
    """manifest.json (+ .sig) alone in frame one; then big members alone, small ones grouped."""
    n_head = 2 if signed else 1
    yield items[:n_head]
    group: list[_Item] = []
    for item in items[n_head:]:
        if item.member.size >= SMALL_MEMBER:
            if group:
                yield group
                group = []
            yield [item]
            continue
        if group and sum(i.length for i in group) + item.length > GROUP_LIMIT:
            yield group
            group = []
        group.append(item)
    if group:
        yield group


def _write_all(
    sink: _Sink,
    items: list[_Item],
    mtime: int,
    observer: ByteObserver | None,
    level: int,
    compressed_level: int | None,
    threads: int,
) -> None:
    frames = _FrameMaker(sink, level, compressed_level, threads)
    toc: list[TocEntry] = []
    tar_offset = 0
    signed = len(items) > 1 and items[1].member.path == SIGNATURE_PATH
    for frame in _frames(items, signed):
        with contextlib.ExitStack() as stack:
            # Peek at a lone member to pick its level; grouped members open one at a time.
            lone = stack.enter_context(frame[0].member.open()) if len(frame) == 1 else None
            first = lone.read(CHUNK) if lone is not None else b""
            length = sum(i.length for i in frame)
            start, pos = sink.count, 0
            out = frames.open(length, compressed=first.startswith(_COMPRESSED_MAGICS))
            for item in frame:
                out.write(item.header)
                pos += len(item.header)
                toc.append(TocEntry(item.member.path, start, pos, item.member.size))
                if lone is not None:
                    _copy(item.member, lone, first, out, observer)
                else:
                    with item.member.open() as stream:
                        _copy(item.member, stream, b"", out, observer)
                pad = tarfmt.padding(item.member.size)
                out.write(bytes(pad))
                pos += item.member.size + pad
            out.flush(zstandard.FLUSH_FRAME)
            tar_offset += length
    with frames.normal.stream_writer(sink.as_io(), closefd=False) as end:
        end.write(tarfmt.end_of_archive(tar_offset))
    toc_offset = sink.count
    sink.write(encode_toc(toc))
    sink.write(encode_footer(toc_offset))


class _FrameWriter(Protocol):
    def write(self, data: bytes) -> int: ...

    def flush(self, flush_mode: int = ...) -> int: ...


class _FrameMaker:
    """Opens each frame at the level its first bytes call for."""

    def __init__(self, sink: _Sink, level: int, compressed: int | None, threads: int) -> None:
        def cctx(lvl: int) -> zstandard.ZstdCompressor:
            return zstandard.ZstdCompressor(level=lvl, threads=threads, write_checksum=True)

        self._sink = sink
        self.normal = cctx(level)
        self._low = None if compressed is STORED else cctx(compressed)

    def open(self, length: int, *, compressed: bool) -> _FrameWriter:
        if compressed and self._low is None:
            return StoredFrame(self._sink, length)
        ctx = self._low if compressed and self._low is not None else self.normal
        # Not a `with`: on failure the frame must not be "finished" (zstd would then raise
        # its own size error over ours); the whole temp file is discarded anyway.
        return ctx.stream_writer(self._sink.as_io(), size=length, closefd=False)


def _copy(
    member: Member,
    stream: BinaryIO,
    first: bytes,
    out: _FrameWriter,
    observer: ByteObserver | None,
) -> None:
    """Stream one member through, checking that it is exactly what the manifest says."""
    digest = None if member.verified else hashlib.sha256()
    seen = 0
    chunk = first or stream.read(min(CHUNK, member.size + 1))
    while chunk:
        seen += len(chunk)
        if seen > member.size:
            raise IntegrityError(f"{member.path}: more than the declared {member.size} bytes")
        if digest is not None:
            digest.update(chunk)
        out.write(chunk)
        if observer is not None:
            observer.advance(len(chunk))
        chunk = stream.read(min(CHUNK, member.size - seen + 1))
    if seen != member.size:
        raise IntegrityError(f"{member.path}: {seen} bytes, expected {member.size} (truncated)")
    if digest is not None and digest.hexdigest() != member.sha256:
        raise IntegrityError(f"{member.path}: content does not match sha256 {member.sha256}")
