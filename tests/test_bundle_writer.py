"""write_bundle and BundleReader: plain tar.zst for standard tools, seekable for us, atomic."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import zstandard
from test_bundle_support import (
    MTIME,
    build_bundle,
    make_keys,
    make_layout,
    manifest_doc,
    members_of,
    sha,
)

from mirror.bundle import reader as reader_module
from mirror.bundle.reader import BundleReader
from mirror.bundle.toc import FOOTER_SIZE, ZSTD_MAGIC
from mirror.bundle.writer import RAW_BLOCK, SMALL_MEMBER, Member, write_bundle
from mirror.errors import IntegrityError, OperationError, VerificationError


def _big_layout() -> tuple[dict[str, bytes], bytes]:
    """Two members big enough for frames of their own, plus the small JSON ones."""
    layout = make_layout([os.urandom(3 * SMALL_MEMBER), b"x" * (2 * SMALL_MEMBER)])
    return layout.files, layout.root


def _write(out: Path, files: dict[str, bytes], root: bytes, **kw: object) -> Path:
    data = manifest_doc(files, root).to_bytes()
    write_bundle(out, data, None, members_of(files), mtime=MTIME, **kw)  # type: ignore[arg-type]
    return out


def test_standard_tools_read_it_in_order(tmp_path: Path) -> None:
    files, root = _big_layout()
    bundle = build_bundle(tmp_path / "b.tar.zst", make_keys(tmp_path), layout=make_layout())
    listing = subprocess.run(
        f"zstd -dc {bundle} | tar -tvf -", shell=True, check=True, capture_output=True, text=True
    )
    lines = listing.stdout.splitlines()
    names = [line.split()[-1] for line in lines]
    assert names[:4] == ["manifest.json", "manifest.json.sig", "oci-layout", "index.json"]
    assert names[4:] == sorted(names[4:])
    assert all(line.startswith("-rw-r--r-- 0/0") for line in lines)
    assert "2023-11-14" in lines[0]  # mtime is the fixed one
    assert listing.stderr == ""  # no "lone zero block" or trailing garbage warnings

    bundle2 = _write(tmp_path / "big.tar.zst", files, root)
    dest = tmp_path / "x"
    dest.mkdir()
    subprocess.run(f"zstd -dqc {bundle2} | tar -xf - -C {dest}", shell=True, check=True)
    for path, data in files.items():
        assert (dest / path).read_bytes() == data


def _raw_frame(data: bytes, at: int) -> tuple[bytes, int]:
    """Parse a frame of raw blocks at `at` by RFC 8878 alone: its content and its length."""
    assert data[at : at + 6] == ZSTD_MAGIC + b"\xc0\x38"  # 8-byte size, 128 KiB window
    size = int.from_bytes(data[at + 6 : at + 14], "little")
    pos, content = at + 14, bytearray()
    while True:
        head = int.from_bytes(data[pos : pos + 3], "little")
        last, kind, n = head & 1, (head >> 1) & 3, head >> 3
        assert kind == 0 and n <= RAW_BLOCK  # Raw_Block, within Block_Maximum_Size
        content += data[pos + 3 : pos + 3 + n]
        pos += 3 + n
        if last:
            assert len(content) == size
            return bytes(content), pos - at


def test_compressed_members_go_in_raw_blocks_and_read_back_everywhere(tmp_path: Path) -> None:
    """gzip and zstd members are stored, not recompressed: zstd gained them nothing and
    cost two copies of every byte. Everything else is still compressed, with a checksum."""
    gz = gzip.compress(os.urandom(RAW_BLOCK * 9 + 5), mtime=0)
    zst = zstandard.ZstdCompressor().compress(os.urandom(3 * SMALL_MEMBER))
    plain = b"plain text, very compressible " * (SMALL_MEMBER // 8)
    layout = make_layout([b"small gzip layer", gz, zst, plain])  # the first is gzipped again
    out = _write(tmp_path / "b.tar.zst", layout.files, layout.root)
    data, toc = out.read_bytes(), BundleReader(out).toc()
    for blob in (gz, zst):
        entry = toc["blobs/sha256/" + sha(blob)]
        content, length = _raw_frame(data, entry.frame)
        assert content[entry.offset : entry.offset + len(blob)] == blob
        assert length - len(content) <= 14 + 3 * (len(content) // RAW_BLOCK + 4)  # ~0.002%
        params = zstandard.get_frame_parameters(data[entry.frame :])
        assert (params.content_size, params.window_size) == (len(content), RAW_BLOCK)
        assert not params.has_checksum  # the member's sha256 is what readers check
        one = zstandard.ZstdDecompressor().decompressobj().decompress(data[entry.frame :])
        assert one == content  # zstd's own decoder, this frame alone
    entry = toc["blobs/sha256/" + sha(plain)]
    params = zstandard.get_frame_parameters(data[entry.frame :])
    assert params.has_checksum and data[entry.frame + 4] != 0xC0
    dest = tmp_path / "x"
    dest.mkdir()
    subprocess.run(
        f"zstd -tq {out} && zstd -dqc {out} | tar -xf - -C {dest}", shell=True, check=True
    )
    for path, blob in layout.files.items():
        assert (dest / path).read_bytes() == blob
        with BundleReader(out).open_member(path, sha(blob), len(blob)) as s:
            assert s.read() == blob
    # A level instead of STORED compresses them again (the bench's level sweep).
    again = _write(tmp_path / "c.tar.zst", layout.files, layout.root, compressed_level=1)
    entry = BundleReader(again).toc()["blobs/sha256/" + sha(gz)]
    assert zstandard.get_frame_parameters(again.read_bytes()[entry.frame :]).has_checksum


def test_output_is_byte_identical_whatever_the_order_and_threads(tmp_path: Path) -> None:
    files, root = _big_layout()
    a = _write(tmp_path / "a.tar.zst", files, root)
    reversed_files = dict(reversed(list(files.items())))
    b = _write(tmp_path / "b.tar.zst", reversed_files, root, threads=1)
    c = _write(tmp_path / "c.tar.zst", files, root, threads=3)
    assert a.read_bytes() == b.read_bytes() == c.read_bytes()


def test_written_digest_and_size_are_the_files(tmp_path: Path) -> None:
    files, root = _big_layout()
    data = manifest_doc(files, root).to_bytes()
    out = tmp_path / "b.tar.zst"
    advanced: list[int] = []

    class Obs:
        def advance(self, nbytes: int) -> None:
            advanced.append(nbytes)

    written = write_bundle(out, data, None, members_of(files), mtime=MTIME, observer=Obs())
    assert written.sha256.hex() == sha(out.read_bytes())
    assert written.size == out.stat().st_size
    assert sum(advanced) >= sum(len(d) for d in files.values())


def test_reader_head_toc_and_members(tmp_path: Path) -> None:
    files, root = _big_layout()
    out = _write(tmp_path / "b.tar.zst", files, root)
    reader = BundleReader(out)
    manifest, sig = reader.head()
    assert sig is None
    assert manifest == manifest_doc(files, root).to_bytes()
    toc = reader.toc()
    assert set(toc) == {*files, "manifest.json"}
    assert toc["manifest.json"].frame == 0
    big = [p for p, d in files.items() if len(d) >= SMALL_MEMBER]
    assert len({toc[p].frame for p in big}) == len(big)  # one frame each
    small = [p for p, d in files.items() if len(d) < SMALL_MEMBER]
    small_frames = {toc[p].frame for p in small}
    # Grouped: consecutive small members share a frame; only a big member (members are
    # sorted by name, so by random digest) can split a run of them.
    assert len(small_frames) <= len(big) + 1 < len(small)

    results: dict[str, bytes] = {}

    def read(path: str) -> None:
        with reader.open_member(path, sha(files[path]), len(files[path])) as s:
            results[path] = s.read()

    threads = [threading.Thread(target=read, args=(p,)) for p in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == files


def test_open_member_checks_digest_and_toc(tmp_path: Path) -> None:
    files, root = _big_layout()
    out = _write(tmp_path / "b.tar.zst", files, root)
    reader = BundleReader(out)
    path = next(p for p, d in files.items() if len(d) >= SMALL_MEMBER)
    bad_digest = reader.open_member(path, "0" * 64, len(files[path]))
    with pytest.raises(IntegrityError, match="does not match"), bad_digest as s:
        while s.read(65536):
            pass
    bad_size = reader.open_member(path, sha(files[path]), len(files[path]) + 1)
    with pytest.raises(IntegrityError, match="table of contents says"), bad_size:
        pass
    absent = reader.open_member("blobs/sha256/" + "0" * 64, "0" * 64, 1)
    with pytest.raises(VerificationError, match="not in the bundle"), absent:
        pass


def test_lying_toc_is_caught_by_the_digest(tmp_path: Path) -> None:
    """Point one member's TOC entry at another member of the same size: digest check fails."""
    files = {**make_layout().files}
    a, b = b"A" * 1000, b"B" * 1000
    files["blobs/sha256/" + sha(a)] = a
    files["blobs/sha256/" + sha(b)] = b
    out = _write(tmp_path / "b.tar.zst", files, make_layout().root)
    raw = out.read_bytes()
    toc = BundleReader(out).toc()
    pa, pb = "blobs/sha256/" + sha(a), "blobs/sha256/" + sha(b)
    old = f'"offset":{toc[pa].offset},"path":"{pa}"'.encode()
    new = f'"offset":{toc[pb].offset},"path":"{pa}"'.encode()
    assert old in raw and len(old) == len(new)
    out.write_bytes(raw.replace(old, new))
    member = BundleReader(out).open_member(pa, sha(a), len(a))
    with pytest.raises(IntegrityError, match="does not match"), member as s:
        s.read()


def test_not_a_bundle(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.zst"
    junk.write_bytes(zstandard.ZstdCompressor().compress(b"\0" * 1024 + os.urandom(4096)))
    with pytest.raises(VerificationError, match="not the first member"):
        BundleReader(junk).head()
    with pytest.raises(VerificationError, match="table of contents"):
        BundleReader(junk).toc()


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"Y" * 100, "does not match"), (b"X" * 99, "truncated"), (b"X" * 101, "more than")],
)
def test_corrupt_cache_leaves_nothing(tmp_path: Path, content: bytes, message: str) -> None:
    files = make_layout().files
    good = b"X" * 100
    path = "blobs/sha256/" + sha(good)
    files[path] = good
    data = manifest_doc(files, make_layout().root).to_bytes()
    members = [m for m in members_of(files) if m.path != path]
    members.append(Member(path, 100, sha(good), lambda: io.BytesIO(content)))
    out = tmp_path / "b.tar.zst"
    with pytest.raises(IntegrityError, match=f"{path}.*{message}"):
        write_bundle(out, data, None, members, mtime=MTIME)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("cut", [1, RAW_BLOCK, RAW_BLOCK + 1])
def test_a_stored_member_cut_short_or_too_long_leaves_nothing(tmp_path: Path, cut: int) -> None:
    good = b"\x1f\x8b" + os.urandom(2 * SMALL_MEMBER)  # gzip magic: a raw-block frame
    files = {**make_layout().files, "blobs/sha256/" + sha(good): good}
    data = manifest_doc(files, make_layout().root).to_bytes()
    path = "blobs/sha256/" + sha(good)
    for bad, message in ((good[:-cut], "truncated"), (good + b"\0" * cut, "more than")):
        members = [m for m in members_of(files) if m.path != path]
        members.append(Member(path, len(good), sha(good), lambda b=bad: io.BytesIO(b)))
        with pytest.raises(IntegrityError, match=f"{path}.*{message}"):
            write_bundle(tmp_path / "b.tar.zst", data, None, members, mtime=MTIME)
        assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), OSError(28, "No space left on device")])
def test_interrupt_or_full_disk_leaves_nothing(tmp_path: Path, exc: BaseException) -> None:
    files = make_layout().files
    data = manifest_doc(files, make_layout().root).to_bytes()

    class Boom(io.BytesIO):
        def read(self, n: int | None = -1) -> bytes:
            raise exc

    def opener() -> BinaryIO:
        return Boom()

    members = members_of(files)
    members[-1] = Member(members[-1].path, members[-1].size, members[-1].sha256, opener)
    out = tmp_path / "b.tar.zst"
    expected = KeyboardInterrupt if isinstance(exc, KeyboardInterrupt) else OperationError
    with pytest.raises(expected):
        write_bundle(out, data, None, members, mtime=MTIME)
    assert list(tmp_path.iterdir()) == []


def test_members_must_match_the_manifest(tmp_path: Path) -> None:
    files = make_layout().files
    data = manifest_doc(files, make_layout().root).to_bytes()
    members = members_of(files)
    with pytest.raises(IntegrityError, match="not given to the writer"):
        write_bundle(tmp_path / "b", data, None, members[:-1], mtime=MTIME)
    extra = Member("blobs/sha256/" + "1" * 64, 1, "1" * 64, lambda: io.BytesIO(b"1"))
    with pytest.raises(IntegrityError, match="not listed"):
        write_bundle(tmp_path / "b", data, None, [*members, extra], mtime=MTIME)
    assert list(tmp_path.iterdir()) == []


def test_footer_points_at_the_toc(tmp_path: Path) -> None:
    out = build_bundle(tmp_path / "b.tar.zst", None, detached=False)
    tail = out.read_bytes()[-FOOTER_SIZE:]
    assert tail.endswith(b"MIRRTOC1")
    # zstd itself must accept the whole file, skippable frames included.
    subprocess.run(["zstd", "-t", "-q", str(out)], check=True)


def test_read_small_matches_streaming_and_decompresses_a_shared_frame_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files, root = _big_layout()
    out = _write(tmp_path / "b.tar.zst", files, root)
    reader = BundleReader(out)
    calls = []
    real = reader_module.decompressing

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(reader_module, "decompressing", counting)
    toc = reader.toc()
    small = sorted(p for p, d in files.items() if len(d) < SMALL_MEMBER)
    for path in [*small, *small]:
        assert reader.read_small(path, sha(files[path]), len(files[path])) == files[path]
    assert len(calls) == len({toc[p].frame for p in small})  # once per shared frame
    big = next(p for p, d in files.items() if len(d) >= SMALL_MEMBER)
    assert reader.read_small(big, sha(files[big]), len(files[big])) == files[big]
    with pytest.raises(IntegrityError):
        reader.read_small(small[0], "0" * 64, len(files[small[0]]))


def test_the_small_member_cache_keeps_json_members_not_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the reader keeps is the frames' small members, never the frames themselves
    (5,000 small images once kept 64 MB of frames): JSON ones (read again: manifests and
    configs) for good, the others (small layers) until read, so each is read without
    decompressing its frame again from the start (an import of 1,000 small images: 0.33 s
    of CPU down to 0.06 s)."""
    layers = [os.urandom(3000 + i) for i in range(6)]
    layout = make_layout(layers)
    files, root = layout.files, layout.root
    out = _write(tmp_path / "b.tar.zst", files, root)
    reader = BundleReader(out)
    calls = []
    real = reader_module.decompressing
    monkeypatch.setattr(
        reader_module, "decompressing", lambda *a, **k: calls.append(a) or real(*a, **k)
    )
    small = sorted(p for p, d in files.items() if len(d) < SMALL_MEMBER)
    assert any(not files[p].startswith(b"{") for p in small)
    for path in reversed(small):  # the first pass decompresses each shared frame once
        assert reader.read_small(path, sha(files[path]), len(files[path])) == files[path]
    assert len(calls) == len({reader.toc()[p].frame for p in small})
    for path in small:  # the second pass reads non-JSON members by streaming
        assert reader.read_small(path, sha(files[path]), len(files[path])) == files[path]
    kept = sum(len(d) for p, d in files.items() if p in small and d.startswith(b"{"))
    assert 0 < reader._cached == kept < sum(len(files[p]) for p in small)


def test_written_bytes_go_to_disk_while_the_bundle_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A background fdatasync every SYNC_EVERY bytes, before the last member is packed, so
    the closing fsync finds little left; the bundle is the same bytes as without it."""
    from mirror.bundle import writer

    files, root = _big_layout()
    plain = _write(tmp_path / "plain.tar.zst", files, root).read_bytes()
    synced: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(writer, "SYNC_EVERY", 64 * 1024)
    monkeypatch.setattr(writer.os, "fdatasync", lambda fd: (synced.append(fd), real(fd))[1])
    members = members_of(files)
    last = members[-1]

    def last_opens() -> BinaryIO:  # the last member waits (5 s at most) for a sync to land
        deadline = time.monotonic() + 5
        while not synced and time.monotonic() < deadline:
            time.sleep(0.01)
        return last.open()

    members[-1] = Member(last.path, last.size, last.sha256, last_opens)
    out = tmp_path / "b.tar.zst"
    write_bundle(out, manifest_doc(files, root).to_bytes(), None, members, mtime=MTIME)
    assert out.read_bytes() == plain
    assert synced, "no fdatasync while members were still to come"


def test_a_described_manifest_is_trusted_for_its_list_but_members_are_still_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`described` spares parsing and validating manifest.json a second time; what the
    members are is still held against its list."""
    from mirror.bundle import writer

    files = make_layout().files
    doc = manifest_doc(files, make_layout().root)
    data = doc.to_bytes()

    def no_parse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("parsed again")

    monkeypatch.setattr(writer, "parse_manifest", no_parse)
    members = members_of(files)
    with pytest.raises(IntegrityError, match="not given to the writer"):
        write_bundle(tmp_path / "b", data, None, members[:-1], mtime=MTIME, described=doc)
    write_bundle(tmp_path / "b", data, None, members, mtime=MTIME, described=doc)
    assert BundleReader(tmp_path / "b").head()[0] == data


def test_gathered_writes_finish_what_writev_leaves_and_refuse_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stored frame's headers and blocks go out in one writev(2) per piece of input; a
    short write is finished, one that writes nothing is an error, not a spin."""
    from mirror.bundle import writer

    got = bytearray()

    def short(fd: int, views: list[memoryview]) -> int:
        take = bytes(views[0][:2])  # at most two bytes of the first piece
        got.extend(take)
        return len(take)

    monkeypatch.setattr(writer.os, "writev", short)
    writer._writev_all(99, [b"abc", memoryview(b"defgh"), b"", b"ij"])
    assert bytes(got) == b"abcdefghij"
    monkeypatch.setattr(writer.os, "writev", lambda fd, views: 0)
    with pytest.raises(OSError, match="wrote nothing"):
        writer._writev_all(99, [b"abc"])


def test_a_full_disk_in_a_gathered_write_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mirror.bundle import writer

    def full(fd: int, views: list[memoryview]) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer.os, "writev", full)
    gz = gzip.compress(os.urandom(RAW_BLOCK * 3), mtime=0)  # stored: written by writev
    layout = make_layout([gz])
    with pytest.raises(OperationError, match="No space left"):
        _write(tmp_path / "b.tar.zst", layout.files, layout.root)
    assert list(tmp_path.iterdir()) == []
