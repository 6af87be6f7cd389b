"""The export cache is verified: a blob corrupted on disk is caught, dropped, refetched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mirror.cli import main


def test_corrupt_cache_blob_is_caught_dropped_and_refetched(
    seeded_registry: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: c\nregistries:\n"
        f"  - {{name: Lab, kind: oci, url: '{seeded_registry.url}', basePath: production,"
        " repositories: [images/web], tags: {include: ['^1\\.0\\.0$']}}\n"
    )
    cache = tmp_path / "cache"
    first, second = tmp_path / "a.tar.zst", tmp_path / "b.tar.zst"
    assert main(["export", str(spec), "-o", str(first), "--cache-dir", str(cache)]) == 0
    biggest = max((cache / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
    data = bytearray(biggest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    biggest.write_bytes(bytes(data))  # same size: only the hash can tell
    capsys.readouterr()

    args = ["export", str(spec), "-o", str(second), "--cache-dir", str(cache), "--json"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "corrupt cache entry" in err and len(err.strip().splitlines()) == 1
    assert not second.exists() and not biggest.exists()

    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["downloadedBytes"] == len(data)
    assert second.read_bytes() == first.read_bytes() or second.stat().st_size > 0
