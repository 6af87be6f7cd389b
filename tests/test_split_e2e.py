"""Split bundles: parts that fit the media, read as one file, joined by `cat` if wanted."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from faultproxy import Reg, write_spec

from mirror.bundle.parts import JoinedFile, parse_size, part_path, parts_of
from mirror.cli import main
from mirror.errors import UsageError


def _spec(tmp_path: Path, url: str) -> Path:
    repositories = ["images/web", "images/api-00"]
    return write_spec(tmp_path / "spec.yaml", url, repositories=repositories, provider=None)


def test_split_bundle_round_trip(
    seeded_registry: Any,
    registry: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    spec = _spec(tmp_path, seeded_registry.url)
    whole, split = tmp_path / "whole" / "b.tar.zst", tmp_path / "split" / "b.tar.zst"
    whole.parent.mkdir()
    split.parent.mkdir()
    cache = ["--cache-dir", str(tmp_path / "cache")]
    assert main(["export", str(spec), "-o", str(whole), *cache]) == 0
    capsys.readouterr()
    assert main(["export", str(spec), "-o", str(split), "--split-size", "128K", *cache]) == 0

    parts = parts_of(split)
    said = capsys.readouterr().out  # FILE itself is never written: the parts are named
    assert f"-> {split} (in {len(parts)} parts: b.tar.zst.001 to {parts[-1].name})" in said
    assert len(parts) > 2 and not split.exists()
    assert all(p.stat().st_size <= 128 * 1024 for p in parts)
    joined = b"".join(p.read_bytes() for p in parts)
    assert joined == whole.read_bytes()  # `cat FILE.0* > FILE` gives the unsplit bundle
    subprocess.run(["sha256sum", "-c", "b.tar.zst.parts.sha256"], cwd=split.parent, check=True)
    (tmp_path / "cat.tar.zst").write_bytes(joined)
    sums = (split.parent / "b.tar.zst.sha256").read_text().replace("b.tar.zst", "cat.tar.zst")
    (tmp_path / "cat.tar.zst.sha256").write_text(sums)
    subprocess.run(["sha256sum", "-c", "cat.tar.zst.sha256"], cwd=tmp_path, check=True)

    capsys.readouterr()
    assert main(["verify", str(parts[0]), "--allow-unsigned"]) == 2  # one part for the set
    assert capsys.readouterr().err == (
        f"mirror: error: {parts[0]} is one part of {split}: pass {split}, whose parts are read\n"
    )
    assert main(["verify", str(split), "--allow-unsigned"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(split), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["size"] == len(joined)
    imp = ["import", str(split), "--target", registry.url, "--allow-unsigned"]
    assert main([*imp, "--catalog", str(tmp_path / "c.json")]) == 0
    wanted = [s for s in seeded_registry.seeded if s.repository.endswith(("/web", "/api-00"))]
    assert len(wanted) >= 2
    target = Reg(registry.url)
    for item in wanted:  # each tag the split bundle carried, on the target byte for byte
        assert target.digest(item.repository, item.tag) == item.digest, item.ref
    assert sorted(target.catalog()) == sorted({s.repository for s in wanted})
    assert target.dangling() == []

    data = bytearray(parts[1].read_bytes())
    data[100] ^= 0x01
    parts[1].write_bytes(bytes(data))
    assert main(["verify", str(split), "--allow-unsigned"]) == 3
    parts[-1].unlink()
    assert main(["verify", str(split), "--allow-unsigned"]) == 3


def test_a_new_split_export_removes_stale_parts(seeded_registry: Any, tmp_path: Path) -> None:
    spec = _spec(tmp_path, seeded_registry.url)
    out = tmp_path / "b.tar.zst"
    cache = ["--cache-dir", str(tmp_path / "cache")]
    assert main(["export", str(spec), "-o", str(out), "--split-size", "64K", *cache]) == 0
    many = len(parts_of(out))
    assert main(["export", str(spec), "-o", str(out), "--split-size", "1M", *cache]) == 0
    assert len(parts_of(out)) < many and not part_path(out, many).exists()
    assert main(["verify", str(out), "--allow-unsigned"]) == 0


def test_joined_file_reads_and_seeks_across_parts(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40
    paths = []
    for n, start in enumerate(range(0, len(data), 3000), 1):
        p = tmp_path / f"x.{n:03d}"
        p.write_bytes(data[start : start + 3000])
        paths.append(p)
    with JoinedFile(paths) as f:
        assert f.read() == data
        f.seek(2990)
        assert f.read(20) == data[2990:3010]
        f.seek(-5, io.SEEK_END)
        assert f.read() == data[-5:]


@pytest.mark.parametrize(
    ("text", "size"),
    [("700M", 700 << 20), ("4G", 4 << 30), ("4GiB", 4 << 30), ("4GB", 4 * 10**9), ("65536", 65536)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "1K", "-5M", "4X"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(UsageError):
        parse_size(text)
