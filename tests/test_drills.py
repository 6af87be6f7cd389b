"""Kill drills (issue 15, item 7): export and import SIGKILLed at 20 seeded moments each.

A moment is "after N requests": the fault proxy answers N requests, then holds every later
one, and the process is killed a seeded fraction of a second after the N-th arrived (so a
moment past the last request lands in the bundle's writing, or after the exit). Request
counts, not wall time, pick the moment, so a drill does the same thing on a slow machine.

After each kill: the output is absent or verifies, and no tag on the target points at a
missing manifest or blob. After a rerun, which must succeed: no temporary file is left,
neither the killed run's nor the rerun's.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faultproxy import FaultProxy, Reg, isolated_env, mirror, write_spec

from mirror.lab import start_registry
from mirror.lab.content import image_family
from mirror.lab.seed import client_for, seed_many
from mirror.streams import TEMP_MARK

pytestmark = [pytest.mark.slow, pytest.mark.registry, pytest.mark.timeout(120)]
MOMENTS = 20
SEED = 15
MIRROR = (sys.executable, "-m", "mirror")
IMAGES = [f"production/images/d-{i:02}" for i in range(3)]


@pytest.fixture(scope="module", autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with isolated_env(tmp_path_factory, drop=("REQUESTS_CA_BUNDLE",)):
        yield


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One source and one target registry, each behind a proxy, and a bundle of the source:
    three small images, so a drill's run takes about a second."""
    from conftest import require_registry

    require_registry()
    work = tmp_path_factory.mktemp("drills")
    source = start_registry(work / "source", flavour="anon")
    target = start_registry(work / "target", flavour="anon")
    client = client_for(source)
    try:
        family = image_family(
            "d-", len(IMAGES), base_size=4096, mid_size=2048, top_size=1024, seed="kd"
        )
        seed_many(client, [(f"production/images/{n}", "1.0.0", a, "image") for n, a in family])
    finally:
        client.close()
    try:
        with FaultProxy.running(source.url) as sp, FaultProxy.running(target.url) as tp:
            spec = write_spec(work / "s.yaml", sp.url)
            bundle = work / "b.tar.zst"
            run = mirror("export", spec, "--output", bundle, "--cache-dir", work / "c")
            assert run.rc == 0, run.err
            export_requests = sp.arrived
            run = _import(bundle, tp.url, work, "calibrate")
            assert run.rc == 0, run.err
            yield {
                "spec": spec, "bundle": bundle, "source": sp, "target": tp, "reg": target,
                "requests": {"export": export_requests, "import": tp.arrived},
            }  # fmt: skip
    finally:
        target.stop()
        source.stop()


def _import(bundle: Path, url: str, work: Path, base: str) -> Any:
    return mirror(
        "import", bundle, "--target", url, "--allow-unsigned", "--catalog", work / "catalog.json",
        "--receipt", work / "receipt.json", "--base-path", base,
    )  # fmt: skip


def _moment(kind: str, index: int, requests: int) -> tuple[int, float]:
    """The index-th seeded moment: after how many requests, then how many seconds more."""
    rng = random.Random(f"{SEED}-{kind}")
    moments = [(rng.randint(0, requests), rng.uniform(0.0, 0.3)) for _ in range(MOMENTS)]
    return moments[index]


def _kill_at(argv: list[Any], proxy: FaultProxy, after: int, extra: float) -> int:
    """Run ARGV with the proxy holding requests past AFTER; SIGKILL it at that moment."""
    proxy.clear()
    proxy.hold_after(after)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [str(a) for a in argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        while proxy.arrived < after and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(extra)
    finally:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=10)
        proxy.clear()  # the held requests end, unanswered
    assert proc.returncode in (0, -signal.SIGKILL), err.decode()
    return proc.returncode


def _temps(*folders: Path) -> list[Path]:
    """Every file a mirror process writes under a temporary name, in FOLDERS and below."""
    return [p for f in folders for p in f.rglob(f".*{TEMP_MARK}*")]


@pytest.mark.parametrize("index", range(MOMENTS))
def test_an_export_killed_at_a_seeded_moment(
    index: int, lab: dict[str, Any], tmp_path: Path
) -> None:
    after, extra = _moment("export", index, lab["requests"]["export"])
    out, cache = tmp_path / "out", tmp_path / "cache"
    out.mkdir()
    argv = [*MIRROR, "export", lab["spec"], "--output", out / "b.tar.zst", "--cache-dir", cache]
    _kill_at([*argv, "--jobs", "2"], lab["source"], after, extra)

    left = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    if "b.tar.zst" in left:  # it finished: what is there must be whole
        assert mirror("verify", out / "b.tar.zst", "--allow-unsigned").rc == 0
    else:
        assert left == [], f"a killed export left {left} at --output"

    run = mirror("export", lab["spec"], "--output", out / "b.tar.zst", "--cache-dir", cache)
    assert run.rc == 0, run.err
    assert mirror("verify", out / "b.tar.zst", "--allow-unsigned").rc == 0
    assert _temps(out, cache) == []


@pytest.mark.parametrize("index", range(MOMENTS))
def test_an_import_killed_at_a_seeded_moment(
    index: int, lab: dict[str, Any], tmp_path: Path
) -> None:
    after, extra = _moment("import", index, lab["requests"]["import"])
    base = f"drill-{index:02}"
    proxy: FaultProxy = lab["target"]
    argv = [
        *MIRROR, "import", lab["bundle"], "--target", proxy.url, "--allow-unsigned",
        "--catalog", tmp_path / "catalog.json", "--receipt", tmp_path / "receipt.json",
        "--base-path", base, "--jobs", "2",
    ]  # fmt: skip
    finished = _kill_at(argv, proxy, after, extra) == 0
    reg = Reg(lab["reg"].url)
    assert reg.dangling(base + "/") == [], "a killed import left a tag over missing content"
    if (tmp_path / "catalog.json").exists():  # registered only once everything landed
        assert all(reg.tags(f"{base}/{repo}") == ["1.0.0"] for repo in IMAGES)
    else:
        assert not finished and not (tmp_path / "receipt.json").exists()

    run = _import(lab["bundle"], proxy.url, tmp_path, base)
    assert run.rc == 0, run.err
    for repo in IMAGES:
        assert reg.tags(f"{base}/{repo}") == ["1.0.0"]
    assert reg.dangling(base + "/") == []
    assert _temps(tmp_path) == []


def test_an_import_sweeps_what_killed_imports_left_beside_its_files(
    lab: dict[str, Any], tmp_path: Path
) -> None:
    """A kill during the catalog's or the receipt's write leaves a temp file; the next
    import removes it by the naming rule, and nothing else."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = [
        tmp_path / f".catalog.json{TEMP_MARK}{dead.pid}-k1.tmp",
        tmp_path / f".receipt.json{TEMP_MARK}{dead.pid}-k2.tmp",
        tmp_path / f".imported-chains.json{TEMP_MARK}{dead.pid}-k3.tmp",
    ]
    kept = [
        tmp_path / f".catalog.json{TEMP_MARK}{os.getpid()}-live.tmp",  # a live writer's
        tmp_path / ".catalog.json.mine.tmp",  # not ours by the rule
        tmp_path / "notes.txt",
    ]
    for path in stale + kept:
        path.write_bytes(b"x" * 100)
    run = _import(lab["bundle"], lab["target"].url, tmp_path, "swept")
    assert run.rc == 0, run.err
    assert [p for p in stale if p.exists()] == []
    assert all(p.exists() for p in kept)


def test_a_writer_of_another_pid_namespace_keeps_its_temp_files(tmp_path: Path) -> None:
    """Two containers sharing one cache: the other's pid means nothing here (looks dead),
    so its in-flight temp files were swept and its export failed. A temp file is locked
    while its writer has it open: the sweep leaves it, and takes it once the lock is gone."""
    import fcntl

    from mirror.cache import BlobCache

    folder = tmp_path / "cache" / "blobs" / "sha256"
    folder.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    theirs = folder / f".{'a' * 64}{TEMP_MARK}{dead.pid}-other.tmp"
    with theirs.open("wb") as fh:  # their live writer: open, locked, writing
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        fh.write(b"x" * 100)
        BlobCache(tmp_path / "cache")
        assert theirs.exists()
    BlobCache(tmp_path / "cache")  # closed without a rename: its writer died
    assert not theirs.exists()


def test_a_killed_export_s_sidecar_temps_are_swept_too(tmp_path: Path) -> None:
    """A SIGKILL while FILE.sig and FILE.sha256 were staged left their temp files for good:
    the sweep before an export took only FILE's own (`.FILE.mirror-...`)."""
    from mirror.streams import sweep_stale

    dead = subprocess.Popen(["true"])
    dead.wait()
    names = ["b.tar.zst", "b.tar.zst.sig", "b.tar.zst.sha256", "b.tar.zst.parts.sha256"]
    stale = [tmp_path / f".{n}{TEMP_MARK}{dead.pid}-x.tmp" for n in names]
    other = tmp_path / f".other.tar.zst{TEMP_MARK}{dead.pid}-x.tmp"  # another output's
    for path in [*stale, other]:
        path.write_bytes(b"x")
    sweep_stale(tmp_path, "b.tar.zst")
    assert not any(p.exists() for p in stale) and other.exists()
