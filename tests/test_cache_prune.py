"""`mirror cache prune`: least recently used blobs out first, down to the size; never
while an export is using the cache."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from faultproxy import BLOB_GET, FaultProxy, mirror, write_spec


def _blobs(cache: Path) -> dict[str, int]:
    root = cache / "blobs" / "sha256"
    if not root.is_dir():
        return {}
    return {p.name: p.stat().st_size for p in root.iterdir() if not p.name.startswith(".")}


def test_prune_removes_the_least_recently_used_down_to_the_size(
    faults: FaultProxy, tmp_path: Path
) -> None:
    """Everything the lab holds is exported and aged; a second export of one repository
    uses some of it again. Pruning to exactly what that export used keeps those blobs
    and removes the rest, oldest first."""
    cache = tmp_path / "cache"
    everything = write_spec(tmp_path / "all.yaml", faults.url)
    assert mirror("export", everything, "-o", tmp_path / "a.tar.zst", "--cache-dir", cache).rc == 0
    before = _blobs(cache)
    old = time.time() - 86_400
    for i, name in enumerate(sorted(before)):
        os.utime(cache / "blobs" / "sha256" / name, (old + i, old + i))
    one = write_spec(tmp_path / "one.yaml", faults.url, repositories=["images/web"], provider=None)
    run = mirror("export", one, "-o", tmp_path / "b.tar.zst", "--cache-dir", cache, "--json")
    assert run.rc == 0, run.err
    assert run.json()["downloadedBytes"] == 0  # all of it came from the cache, and was used
    recent = {n for n in before if (cache / "blobs/sha256" / n).stat().st_mtime > old + 3600}
    assert recent and len(recent) < len(before)
    keep = sum(before[n] for n in recent)

    expected = {
        "removedBlobs": len(before) - len(recent),
        "removedBytes": sum(before.values()) - keep,
        "keptBlobs": len(recent),
        "keptBytes": keep,
    }
    args = ["cache", "prune", "--max-size", str(keep), "--cache-dir", cache, "--json"]
    run = mirror(*args, "--dry-run")
    assert run.rc == 0, run.err
    assert run.json() == {**expected, "dryRun": True} and _blobs(cache) == before
    run = mirror(*args)
    assert run.rc == 0, run.err
    assert set(_blobs(cache)) == recent
    assert run.json() == {**expected, "dryRun": False}
    run = mirror("cache", "prune", "--cache-dir", cache)  # no size: a usage error, not "all"
    assert run.rc == 2 and "--max-size" in run.error_line() and set(_blobs(cache)) == recent
    typo = tmp_path / "cahce"
    run = mirror("cache", "prune", "--max-size", "0", "--cache-dir", typo)
    assert run.rc == 2 and f"{typo}: no export cache there" in run.error_line()
    assert not typo.exists()
    run = mirror("cache", "prune", "--max-size", "0", "--cache-dir", cache)
    assert run.rc == 0 and _blobs(cache) == {}
    assert f"removed {len(recent)} blobs" in run.out


def test_prune_refuses_while_an_export_uses_the_cache(faults: FaultProxy, tmp_path: Path) -> None:
    """A running export holds the cache: prune exits 1 with one line and removes nothing;
    the export finishes whole; afterwards prune works."""
    cache = tmp_path / "cache"
    spec = write_spec(tmp_path / "s.yaml", faults.url)
    faults.add("slow", method="GET", path=BLOB_GET, delay=0.2)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    argv = [sys.executable, "-m", "mirror", "export", str(spec), "-o", str(tmp_path / "b.tar.zst")]
    proc = subprocess.Popen(
        [*argv, "--cache-dir", str(cache)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while len(_blobs(cache)) < 3 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.02)
        held = _blobs(cache)
        assert len(held) >= 3, "no blob landed in time"
        run = mirror("cache", "prune", "--max-size", "0", "--cache-dir", cache, "--json")
        assert run.rc == 1
        assert "an export is using this cache" in run.error_line()
        assert set(held) <= set(_blobs(cache))
        faults.clear()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err
    run = mirror("cache", "prune", "--max-size", "0", "--cache-dir", cache, "--json")
    assert run.rc == 0 and run.json()["keptBlobs"] == 0 and _blobs(cache) == {}
