"""bench/scale.py: its goals judged from numbers, and both scenarios run tiny for real."""

from __future__ import annotations

import os
import shutil
from contextlib import ExitStack
from pathlib import Path

import pytest
from test_bench_smoke import _report, _row, run

from bench.measure import DeviceOps, Measured, device_ops
from bench.scale import HelmBench, SmallBench, SmallRun, helm_bench, small_run
from bench.scenarios import Bench, is_tmpfs, isolated_env
from mirror.lab import registry_binary


def _helm(parse: float = 0.6, dry: float = 1.5) -> HelmBench:
    return HelmBench(18_000, 17_500_000, 0.1, parse, Measured(dry, 90_000), Measured(0.9, 80_000))


def _small(*ms: float, rss_kb: int = 100 * 1024) -> SmallBench:
    runs = [
        SmallRun(n, Measured(1.0, 1), Measured(n * m / 1000, rss_kb), None)
        for n, m in zip((500, 2000, 5000), ms, strict=True)
    ]
    return SmallBench(tuple(runs))


def test_scale_goals_are_judged_from_the_numbers() -> None:
    report = _report(helm=_helm(), small=_small(10.0, 11.0, 11.5))
    goals = {g.what: g for g in run.all_goals(report)}
    assert goals["Helm index parse (18,000 versions) / json.loads"].ok  # 6x
    assert goals["dry-run export of one chart / that parse"].ok  # 2.5x
    assert goals["import cost per small artifact at 2,000"].ok
    assert goals["import cost per artifact at 5,000 / at 500"].ok  # 1.15x
    assert goals["import peak RSS at 5,000 small artifacts"].ok
    slow = _report(helm=_helm(parse=0.9, dry=3.0), small=_small(10, 13, 13, rss_kb=200 << 10))
    missed = {g.what for g in run.all_goals(slow) if not g.ok}
    assert missed >= {
        "Helm index parse (18,000 versions) / json.loads",  # 9x
        "dry-run export of one chart / that parse",  # 3.3x
        "import cost per small artifact at 2,000",
        "import cost per artifact at 5,000 / at 500",  # 1.3x
        "import peak RSS at 5,000 small artifacts",
    }
    text = run.render(slow)
    assert "| MISS |" in _row(text, "import cost per small artifact at 2,000")
    assert "## 6. Scale" in text and "17.5 MB" in text
    assert "Scale" not in run.render(_report())  # not run: no section, no goals


def test_a_repeated_import_reports_its_median_and_spread() -> None:
    runs = (20.0, 26.0, 23.0)
    mid = SmallRun(2000, Measured(1.0, 1), Measured(23.0, 1), None, runs)
    report = _report(small=SmallBench((_small(10, 11, 11).runs[0], mid)))
    row = _row(run.render(report), "import cost per small artifact at 2,000")
    assert "11.5 ms (runs: 10.0-13.0 ms)" in row and "| PASS |" in row
    assert SmallRun(500, Measured(1.0, 1), Measured(5.0, 1), None).spread == ""


def test_the_target_disk_is_told_apart_from_the_client() -> None:
    """The in-memory import and the device's requests, per artifact over every import."""
    ops = DeviceOps(writes=2000 * 3 * 100, flushes=2000 * 3 * 29, discards=2000 * 3 * 32)
    mid = SmallRun(2000, Measured(1.0, 1), Measured(28.0, 1), None, (28.0, 27.0, 30.0),
                   in_memory=Measured(13.0, 1), device=ops)  # fmt: skip
    text = run.render(_report(small=SmallBench((mid,))))
    assert "in memory (tmpfs): 6.5 ms an artifact, 2.2x less than on disk" in text
    assert "completed 100 writes, 29 flushes and 32 discards an artifact" in text
    bare = SmallRun(2000, Measured(1.0, 1), Measured(28.0, 1), None)
    assert "tmpfs" not in run.render(_report(small=SmallBench((bare,))))


def test_device_counters_are_read_and_subtracted(tmp_path: Path) -> None:
    """Read off this host's block device, or None where the folder has none (tmpfs)."""
    assert device_ops(tmp_path / "missing") is None  # df refuses: no figure, no error
    before = device_ops(tmp_path)
    if before is None:  # tmpfs or overlay (a container): then never a count
        assert device_ops(tmp_path) is None
        return
    (tmp_path / "f").write_bytes(b"x" * 65536)
    os.sync()
    after = device_ops(tmp_path)
    assert after is not None and (after - before).writes >= 1
    assert (after - before).flushes >= 0 and after + DeviceOps(0, 0, 0) == after


def test_a_device_is_found_through_its_mapper_link(tmp_path: Path) -> None:
    """LVM's /dev/mapper/NAME is a link to dm-N, which is what /sys/class/block lists."""
    from bench.measure import _block

    assert _block("tmpfs") is None and _block("/dev/no-such-disk") is None
    found = sorted(p.name for p in Path("/sys/class/block").glob("*") if (p / "stat").is_file())
    for name in found[:1]:  # none in some containers: then only the above
        link = tmp_path / "vg-root"
        link.symlink_to(f"/dev/{name}")
        assert _block(str(link)) == Path(f"/sys/class/block/{name}")


@pytest.mark.slow
def test_scale_scenarios_run_tiny(tmp_path: Path) -> None:
    """Both scenarios end to end at toy sizes: real registries, real skopeo, counts checked."""
    if registry_binary() is None or shutil.which("skopeo") is None:
        pytest.skip("needs docker-registry and skopeo (make debs)")
    work = tmp_path / "work"
    with ExitStack() as stack:
        bench = Bench(work, stack, isolated_env(work, dict(os.environ)))
        helm = helm_bench(bench, 1, versions=200)
        small = small_run(bench, 12, skopeo=True, imports=2)
    assert helm.versions == 200 and 150_000 < helm.index_bytes < 250_000
    assert helm.parse_seconds > 0 and helm.dry_run.seconds > 0 and helm.warm.seconds > 0
    assert small.artifacts == 12 and small.skopeo is not None and small.skopeo.runs == 12
    assert len(small.times) == 2 and small.imported.seconds == sum(small.times) / 2
    if is_tmpfs(Path("/dev/shm")):  # the target's disk taken out: one more import
        assert small.in_memory is not None and small.in_memory.seconds > 0
    if device_ops(work) is not None:  # 12 images pushed: their files reach the disk
        assert small.device is not None and small.device.writes > 0
    text = run.render(_report(helm=helm, small=SmallBench((small,))))
    assert "| 12 |" in text and "200 chart versions" in text


@pytest.mark.slow
@pytest.mark.parametrize("no_cache", [False, True])
def test_the_volume_scenario_runs_tiny(tmp_path: Path, no_cache: bool) -> None:
    """bench/volume.py at 6 MB: the cached export keeps a cache the size of the bundle;
    the cacheless one keeps none and needs at most the largest blob + 256 MB beside it."""
    from bench.volume import run_volume

    if registry_binary() is None:
        pytest.skip("needs docker-registry (make debs)")
    work = tmp_path / "work"
    with ExitStack() as stack:
        bench = Bench(work, stack, isolated_env(work, dict(os.environ)))
        result = run_volume(bench, 6 << 20, 6, work / "layers", no_cache=no_cache)
    export = result["export"]
    assert result["images"] == 6 and export["noCache"] is no_cache
    assert export["bundleMB"] >= 5 and export["largestBlobMB"] >= 0.9
    if no_cache:
        assert export["cacheMB"] == 0
        assert export["peakExtraDiskMB"] <= export["largestBlobMB"] + 256
    else:
        assert export["cacheMB"] >= export["bundleMB"] - 1
    assert result["import"]["MBps"] > 0 and result["files"]["manifest.json"] > 1000


def test_no_in_memory_registry_without_room_for_it(tmp_path: Path) -> None:
    """Too little tmpfs (a container's 64 MB) skips the informational import, not the bench;
    with room, the registry runs on /dev/shm and its storage goes with the bench."""
    with ExitStack() as stack:
        bench = Bench(tmp_path, stack, isolated_env(tmp_path, dict(os.environ)))
        assert bench.registry_in_memory(need=1 << 60) is None
        room = bench.registry_in_memory(need=1 << 20)
        if not is_tmpfs(Path("/dev/shm")):  # then never one, whatever the room
            assert room is None
            return
        assert room is not None and room.running
        assert room.storage_dir.parent == Path("/dev/shm")
    assert not room.running and not room.storage_dir.exists()
