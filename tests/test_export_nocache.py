"""`export --no-cache`: the bundle written while blobs arrive, the same bytes as the
cached path, a bounded spool, nothing left behind on failure or after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from faultproxy import BLOB_GET, FaultProxy, mirror, write_spec

from mirror.export import streaming

EPOCH = "1700000000"


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)  # the same content, the same bytes


@pytest.fixture(scope="module")
def reference(proxy: FaultProxy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The cached path's bundle of the lab, and its cache (`.parent / "cache"`)."""
    work = tmp_path_factory.mktemp("reference")
    spec = write_spec(work / "s.yaml", proxy.url)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOURCE_DATE_EPOCH", EPOCH)
        run = mirror("export", spec, "-o", work / "cached.tar.zst", "--cache-dir", work / "cache")
    assert run.rc == 0, run.err
    yield work / "cached.tar.zst"


def _blobs(cache: Path) -> list[Path]:
    root = cache / "blobs" / "sha256"
    return [p for p in root.iterdir() if not p.name.startswith(".")] if root.is_dir() else []


def _spool(folder: Path) -> list[Path]:
    """Temp files of ours beside the output: the spool, and the writer's own temp file."""
    return [p for p in folder.iterdir() if p.name.startswith(".") and ".mirror-" in p.name]


@contextmanager
def _watching(folder: Path) -> Iterator[list[int]]:
    """The most bytes the spool files in `folder` held at one time, polled every 2 ms."""
    peak = [0]
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            total = 0
            for p in folder.glob(f".*{streaming.SPOOL_SUFFIX}"):
                with suppress(OSError):
                    total += p.stat().st_size
            peak[0] = max(peak[0], total)
            time.sleep(0.002)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    try:
        yield peak
    finally:
        done.set()
        watcher.join()


def test_no_cache_bundle_is_byte_identical_to_the_cached_one(
    fixed_clock: None, faults: FaultProxy, tmp_path: Path, reference: Path
) -> None:
    """Packs, charts, images and referrers: the plan names the same members in the same
    order, so the archive is the same bytes; and no blob is written to the cache. A blob
    failing twice with 503 is retried as the cached path retries it."""
    spec = write_spec(tmp_path / "s.yaml", faults.url)
    cached, streamed = reference, tmp_path / "streamed.tar.zst"
    faults.add("status", method="GET", path=BLOB_GET, status=503, times=2)
    empty = tmp_path / "c2"
    run = mirror("export", spec, "-o", streamed, "--cache-dir", empty, "--no-cache", "--json")
    assert run.rc == 0, run.err
    assert streamed.read_bytes() == cached.read_bytes()
    assert _blobs(empty) == []
    assert run.json()["downloadedBytes"] > 0 and run.json()["cachedBytes"] == 0
    assert _spool(tmp_path) == []
    assert mirror("verify", streamed, "--allow-unsigned").rc == 0
    assert faults.seen("GET", BLOB_GET, status=503) == 2


def test_each_blob_is_asked_for_once_though_the_plan_reads_the_pack_layers(
    fixed_clock: None, faults: FaultProxy, tmp_path: Path, reference: Path
) -> None:
    """The plan reads each pack and chart layer (dependencies, images) and keeps it for the
    writer, while the other blobs already arrive: one GET per blob in all, the same bytes."""
    spec = write_spec(tmp_path / "s.yaml", faults.url)
    out = tmp_path / "b.tar.zst"
    run = mirror("export", spec, "-o", out, "--cache-dir", tmp_path / "c", "--no-cache")
    assert run.rc == 0, run.err
    gets = Counter(p.rsplit("sha256:", 1)[1] for p in faults.paths("GET", BLOB_GET))
    held = {p.name for p in _blobs(reference.parent / "cache")}  # blobs and manifests
    assert len(gets) > 20 and set(gets) <= held and set(gets.values()) == {1}
    assert out.read_bytes() == reference.read_bytes()


def test_the_spool_is_bounded_and_big_blobs_stream_straight_in(
    fixed_clock: None,
    faults: FaultProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reference: Path,
) -> None:
    """With an 80 KB spool, blobs of up to 80 KB are fetched ahead in parallel, never more
    than 80 KB at a time; bigger ones (100 and 200 KB in the lab) go straight into the
    archive. Measured from outside, on the files themselves."""
    cap = 80_000
    monkeypatch.setattr(streaming, "SPOOL_CAP", cap)
    spec = write_spec(tmp_path / "s.yaml", faults.url)
    cached = reference
    sizes = [p.stat().st_size for p in _blobs(reference.parent / "cache")]
    assert max(sizes) > cap and sum(s for s in sizes if s <= cap) > 2 * cap
    out = tmp_path / "out"
    out.mkdir()
    faults.add("slow", method="GET", path=BLOB_GET, delay=0.01)
    with _watching(out) as peak:
        args = ["export", spec, "-o", out / "b.tar.zst", "--no-cache", "--jobs", "4"]
        run = mirror(*args, "--cache-dir", tmp_path / "c2")
    assert run.rc == 0, run.err
    assert 0 < peak[0] <= cap
    assert (out / "b.tar.zst").read_bytes() == cached.read_bytes()
    assert _spool(out) == []


@pytest.mark.parametrize("which", ["spooled", "direct"])
def test_a_failure_mid_stream_leaves_nothing_and_says_how_to_resume(
    faults: FaultProxy, tmp_path: Path, reference: Path, monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    """One blob cut off half-way each time it is asked, after the archive is begun: a
    spooled one, or one bigger than the spool that streams straight in. Exit 1, one line
    that names the cache as the way to resume, and nothing at all at the output."""
    monkeypatch.setattr(streaming, "SPOOL_CAP", 80_000)
    blobs = sorted(_blobs(reference.parent / "cache"), key=lambda p: p.stat().st_size)
    victim = blobs[-1] if which == "direct" else next(b for b in blobs if b.stat().st_size > 20_000)
    spec = write_spec(tmp_path / "s.yaml", faults.url)
    out = tmp_path / "out"
    out.mkdir()
    faults.add("truncate", method="GET", path=BLOB_GET + victim.name)
    run = mirror("export", spec, "-o", out / "b.tar.zst", "--no-cache", "--cache-dir", tmp_path)
    assert run.rc != 0
    line = run.error_line()
    assert "without --no-cache" in line and "nothing was written" in line
    assert list(out.iterdir()) == []
    assert faults.seen("GET", BLOB_GET) > 0


@pytest.mark.slow
def test_a_killed_cacheless_export_leaves_a_spool_that_the_next_run_sweeps(
    faults: FaultProxy, tmp_path: Path
) -> None:
    """SIGKILL runs no cleanup: the spool files stay, named by the temp rule with the dead
    run's pid, and the next export to that output removes them."""
    spec = write_spec(tmp_path / "s.yaml", faults.url)
    out = tmp_path / "out"
    out.mkdir()
    bundle = out / "b.tar.zst"
    faults.add("slow", method="GET", path=BLOB_GET, delay=0.4)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    argv = [sys.executable, "-m", "mirror", "export", str(spec), "-o", str(bundle)]
    argv += ["--no-cache", "--cache-dir", str(tmp_path / "c"), "--jobs", "4"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not list(out.glob(f".*{streaming.SPOOL_SUFFIX}")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    debris = list(out.glob(f".*.mirror-{proc.pid}-*{streaming.SPOOL_SUFFIX}"))
    assert debris, "the kill came while nothing was spooled"
    assert not bundle.exists()

    time.sleep(1.0)  # requests the killed run left in the proxy's delay finish first
    faults.clear()
    run = mirror("export", spec, "-o", bundle, "--no-cache", "--cache-dir", tmp_path / "c")
    assert run.rc == 0, run.err
    assert sorted(p.name for p in out.iterdir()) == ["b.tar.zst", "b.tar.zst.sha256"]


@pytest.mark.parametrize("data", [b"", b"{}"])
def test_a_kept_layer_is_served_from_memory_even_when_empty(tmp_path: Path, data: bytes) -> None:
    """What the plan read and kept is the writer's, once it writes, whatever its length: an
    empty blob is b"", not "nothing kept" (which would go to the network or the cache)."""
    from mirror.cache import BlobCache
    from mirror.oci.descriptor import descriptor_for

    desc = descriptor_for(data, "application/vnd.oci.image.layer.v1.tar")
    streamer = streaming.Streamer(BlobCache(tmp_path / "cache"), tmp_path / "b.tar.zst", jobs=1)
    streamer.keep(desc, data)
    streamer.begin([], [desc])
    with streamer.open(desc) as stream:
        assert stream.read() == data
