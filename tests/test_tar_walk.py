"""`formats.tar_files`, the scan's own tar walk, agrees with tarfile on every archive it reads.

It replaced tarfile in the pack and chart scan for speed, so each test here sets it beside
tarfile on the same bytes: the real corpus packs and their 82 charts, every header format
tar writes, and archives that end early or lie.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from mirror.formats import tar_files
from mirror.formats.pack import build_pack_archive


def _tarfile_files(data: bytes) -> list[tuple[str, bytes]]:
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for m in tar:
            if m.isfile():
                fh = tar.extractfile(m)
                assert fh is not None
                out.append((m.name, fh.read()))
    return out


def _ours(data: bytes) -> list[tuple[str, bytes]]:
    return list(tar_files(io.BytesIO(data), lambda name, size: True))


def _archive(files: dict[str, bytes], fmt: int, *, gz: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        folder = tarfile.TarInfo("dir")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)  # not a file: skipped by both
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, "values.yaml"
        tar.addfile(link)
    return gzip.compress(buf.getvalue()) if gz else buf.getvalue()


LONG = "charts/" + "sub/" * 30 + "values.yaml"  # past ustar's 100 and 255 characters
FILES = {
    "pack.json": b'{"name": "p"}',
    "values.yaml": b"x" * 1000,
    "charts/" + "a" * 120 + "/Chart.yaml": b"name: a\n",  # ustar: prefix + name
    LONG: b"image: r/x:1\n",
    "caf\u00e9/values.yaml": b"",  # pax for the non-ASCII name
}


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
@pytest.mark.parametrize("gz", [False, True])
def test_every_header_format_reads_as_tarfile_reads_it(fmt: int, gz: bool) -> None:
    files = dict(FILES)
    if fmt == tarfile.USTAR_FORMAT:  # ustar can hold neither the long path nor the accent
        files = {k: v for k, v in files.items() if k != LONG and k.isascii()}
    data = _archive(files, fmt, gz=gz)
    assert _ours(data) == _tarfile_files(data)
    assert sorted(name for name, _ in _ours(data)) == sorted(files)


def test_the_corpus_packs_and_their_charts_read_as_tarfile_reads_them(corpus: Path) -> None:
    packs = charts = 0
    for folder in sorted(p for p in corpus.iterdir() if p.is_dir()):
        archive = build_pack_archive(folder)[1]
        assert _ours(archive) == _tarfile_files(archive), folder.name
        packs += 1
        for tgz in sorted(folder.glob("charts/*.tgz")):
            data = tgz.read_bytes()
            assert _ours(data) == _tarfile_files(data), tgz
            charts += 1
    assert packs == 85 and charts == 82


def test_want_sees_name_and_size_and_skipped_bodies_are_not_returned() -> None:
    data = _archive(FILES, tarfile.PAX_FORMAT, gz=True)
    asked: list[tuple[str, int]] = []

    def want(name: str, size: int) -> bool:
        asked.append((name, size))
        return name == "values.yaml"

    assert list(tar_files(io.BytesIO(data), want)) == [("values.yaml", FILES["values.yaml"])]
    assert sorted(asked) == sorted((k, len(v)) for k, v in FILES.items())


def test_an_archive_that_ends_early_gives_what_came_before() -> None:
    data = _archive(FILES, tarfile.PAX_FORMAT)
    whole = _ours(data)
    cut = data.index(b"x" * 1000) + 500  # inside values.yaml's data
    assert _ours(data[:cut]) == whole[:1]  # pack.json, then the walk ends
    assert _ours(gzip.compress(data)[:-4]) == whole  # cut in its trailer: every file came out
    half = _ours(gzip.compress(data)[: len(gzip.compress(data)) // 2])
    assert half == whole[: len(half)] and len(half) < len(whole)
    assert _ours(b"") == [] and _ours(b"\x1f\x8b not gzip") == []


def test_a_header_with_a_bad_checksum_ends_the_walk() -> None:
    data = bytearray(_archive(FILES, tarfile.GNU_FORMAT))
    second = data.index(b"values.yaml\0")  # the second file's header
    data[second + 148 : second + 156] = b"0000000\0"
    assert [name for name, _ in _ours(bytes(data))] == ["pack.json"]


def test_a_pax_record_too_large_to_be_a_header_ends_the_walk() -> None:
    info = tarfile.TarInfo("values.yaml")
    info.pax_headers = {"comment": "c" * 70000}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(b""))
    assert _tarfile_files(buf.getvalue()) == [("values.yaml", b"")]  # tarfile reads it whole
    assert _ours(buf.getvalue()) == []  # we refuse a 70 KB header before reading it


def test_a_negative_pax_size_ends_the_walk_instead_of_reading_everything() -> None:
    """Read as a length, "-1" means "all of it": the walk would hold the rest in memory."""
    info = tarfile.TarInfo("values.yaml")
    info.pax_headers = {"size": "-1"}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(b""))
        more = tarfile.TarInfo("pack.json")
        more.size = 20 << 20
        tar.addfile(more, io.BytesIO(bytes(more.size)))

    class Counted(io.BytesIO):
        taken = 0

        def read(self, n: int | None = -1) -> bytes:
            data = super().read(n)
            Counted.taken += len(data)
            return data

    assert list(tar_files(Counted(buf.getvalue()), lambda name, size: True)) == []
    assert Counted.taken < 4 << 20  # not the 20 MB that follow


def test_a_name_that_is_not_utf8_reads_as_tarfile_reads_it() -> None:
    """A name in some other encoding (latin-1 here) comes through with surrogate escapes,
    as tarfile gives it, instead of ending the walk; the files after it are still read."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, body in (("caf\udce9/values.yaml", b"a: 1\n"), ("pack.json", b"{}")):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    data = buf.getvalue()
    assert b"caf\xe9/" in data
    assert _ours(data) == _tarfile_files(data)
    assert [name for name, _ in _ours(data)] == ["caf\udce9/values.yaml", "pack.json"]
