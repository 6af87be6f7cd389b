"""Ctrl-C during `mirror import`: a prompt exit in one line, and nothing half-registered.

Issue 17, item 4. The import runs as a real process (`python -m mirror`), pushing through a
fault proxy that slows each blob upload, and gets SIGINT mid-push, as a terminal's Ctrl-C
would send it, or SIGTERM, as a service manager or `timeout` would. Both are exit 1, which
CONTRACT.md's table gives "interrupted": one line on stderr, no traceback, no tag over
missing blobs, no catalog and no receipt, and a second run finishes the job.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faultproxy import (
    UPLOAD,
    FaultProxy,
    Reg,
    export_chain_start,
    isolated_env,
    mirror,
    write_spec,
)

from mirror.lab import LabRegistry

pytestmark = pytest.mark.timeout(120)
MIRROR = (sys.executable, "-m", "mirror")
INTERRUPTED = 1  # CONTRACT.md: "operation failed: ... interrupted"
JOBS = 2


@pytest.fixture(scope="module", autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with isolated_env(tmp_path_factory):
        yield


@pytest.fixture(scope="module")
def bundle(seeded_registry: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole standard seed (images, packs, charts and the packs' images), unsigned."""
    work = tmp_path_factory.mktemp("bundle")
    out = work / "lab.tar.zst"
    spec = write_spec(work / "lab.yaml", seeded_registry.url)
    run = mirror("export", spec, "--output", out, "--cache-dir", work / "cache")
    assert run.rc == 0, run.err
    return out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupt_mid_push_exits_1_in_one_line_and_leaves_nothing_dangling(
    sig: signal.Signals, bundle: Path, seeded_registry: Any, registry: LabRegistry, tmp_path: Path
) -> None:
    catalog, receipt = tmp_path / "catalog.json", tmp_path / "receipt.json"
    with FaultProxy.running(registry.url) as proxy:
        proxy.add("slow", method="PUT", path=UPLOAD, delay=0.3)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        argv = [*MIRROR, "import", str(bundle), "--target", proxy.url, "--allow-unsigned"]
        argv += ["--jobs", str(JOBS), "--catalog", str(catalog), "--receipt", str(receipt)]
        proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        try:
            deadline = time.monotonic() + 30
            while proxy.seen("PUT", UPLOAD, status=201) < 3 and time.monotonic() < deadline:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.02)
            assert proxy.seen("PUT", UPLOAD, status=201) >= 3, "the import never got going"
            proc.send_signal(sig)
            sent = time.monotonic()
            uploads_before = proxy.seen("PUT", UPLOAD)
            _, err = proc.communicate(timeout=30)
            took = time.monotonic() - sent
            assert proxy.state.settle(10)
            uploads_after = proxy.seen("PUT", UPLOAD) - uploads_before
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert proc.returncode == INTERRUPTED, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [
        "mirror: error: interrupted; nothing partial was left, and a second run carries on "
        "from here"
    ], err
    # Each of the JOBS workers finishes the upload in hand (0.3 s) and starts no other:
    # queued blobs are cancelled, not drained (about 25 more uploads, 4 s, if they were).
    assert uploads_after <= JOBS, f"{uploads_after} uploads finished after SIGINT"
    assert took < 10, f"took {took:.1f} s to stop after SIGINT"

    reg = Reg(registry.url)
    assert reg.dangling() == []
    landed = [s for s in seeded_registry.seeded if reg.digest(s.repository, s.tag) == s.digest]
    assert len(landed) < len(seeded_registry.seeded), "the import finished before the Ctrl-C"
    assert not catalog.exists() and not receipt.exists()

    # Interrupted, not broken: the same import again completes, over what is there.
    again = mirror(
        "import", bundle, "--target", registry.url, "--allow-unsigned",
        "--catalog", catalog, "--receipt", receipt, "--json",
    )  # fmt: skip
    assert again.rc == 0, again.err
    assert again.json()["skippedBlobs"] > 0
    for s in seeded_registry.seeded:
        assert reg.digest(s.repository, s.tag) == s.digest, s.ref
    assert reg.dangling() == []
    assert catalog.exists() and receipt.exists()


def test_signals_wait_for_an_uninterrupted_block() -> None:
    """Renames and records that must land together: Ctrl-C and SIGTERM are held until the
    block ends, then stop the run as they would have, with the handlers put back."""
    from mirror.streams import uninterrupted

    before = signal.getsignal(signal.SIGTERM)
    done = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with pytest.raises(KeyboardInterrupt), uninterrupted():
            os.kill(os.getpid(), signum)
            time.sleep(0.05)  # the handler runs meanwhile, and only notes the signal
            done.append(signum)
    assert done == [signal.SIGINT, signal.SIGTERM]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is before
    with uninterrupted():  # no signal, no interrupt
        done.append(0)
    # Nested (a receipt published inside the import's records): the outermost block raises,
    # once, after everything in it ran.
    with pytest.raises(KeyboardInterrupt), uninterrupted():
        with uninterrupted():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        done.append(1)
    assert done[-1] == 1


def test_an_interrupt_while_the_records_are_written_lets_them_all_land(
    seeded_registry: Any, registry: LabRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C after the chain's record and before the receipt left a bundle 'applied'
    with no receipt, and every rerun refused as a replay: now all the records land, then
    the run stops (exit 1), and the receipt is there for `export --since`."""
    from mirror.cli import main
    from mirror.freshness import Freshness

    bundle = export_chain_start(seeded_registry.url, tmp_path)
    real = Freshness.record

    def stopped(self: Freshness, *a: Any, **k: Any) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, between two records
        time.sleep(0.05)
        real(self, *a, **k)

    monkeypatch.setattr(Freshness, "record", stopped)
    catalog, receipt = tmp_path / "far" / "cat.json", tmp_path / "receipt.json"
    imp = ["import", str(bundle), "--target", registry.url, "--allow-unsigned"]
    imp += ["--catalog", str(catalog), "--receipt", str(receipt)]
    assert main(imp) == INTERRUPTED
    assert catalog.exists() and receipt.exists()
    assert (catalog.parent / "imported-chains.json").exists()


def test_the_records_wait_for_the_catalog_folders_lock(
    seeded_registry: Any, registry: LabRegistry, tmp_path: Path
) -> None:
    """Two imports each read, change and write the records beside the catalog: while one
    holds the folder's lock, the other writes none of them."""
    import threading

    from mirror.catalog import records_lock
    from mirror.cli import main

    packs = ["spectro-packs/archive/*"]
    spec = write_spec(tmp_path / "s.yaml", seeded_registry.url, repositories=packs)
    bundle = tmp_path / "b.tar.zst"
    assert main(["export", str(spec), "-o", str(bundle), "--cache-dir", str(tmp_path / "c")]) == 0
    catalog = tmp_path / "far" / "cat.json"
    imp = ["import", str(bundle), "--target", registry.url, "--allow-unsigned"]
    codes: list[int] = []
    with records_lock(catalog):
        worker = threading.Thread(
            target=lambda: codes.append(main([*imp, "--catalog", str(catalog)]))
        )
        worker.start()
        worker.join(3.0)
        assert worker.is_alive() and not list(catalog.parent.glob("*.json"))
    worker.join(30)
    assert codes == [0] and catalog.exists()
    assert (catalog.parent / "imported-bundles.json").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_during_the_first_imports_is_the_one_line(signum: int) -> None:
    """Ctrl-C in the first ~0.2 s (the command line's imports) was a traceback of import
    machinery, SIGTERM a silent death (-15): the console script handles both from the start.
    The signal is sent exactly as `mirror.cli` begins to import."""
    code = (
        "import builtins, os, signal, mirror.entry\n"
        "real = builtins.__import__\n"
        "def hook(name, *a, **k):\n"
        "    if name == 'mirror.cli':\n"
        f"        os.kill(os.getpid(), {int(signum)})\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = hook\n"
        "mirror.entry.run()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == INTERRUPTED, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "mirror: error: interrupted; nothing partial was left, and a second run carries on "
        "from here"
    ]


def test_a_crash_before_the_chain_s_record_leaves_a_rerun_that_finishes(
    seeded_registry: Any, registry: LabRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL cannot be held off: the sweep killed an import between the chain's record and
    the receipt, and every rerun was refused as a replay with no receipt ever written. The
    chain's record is the last write now; a failure at the receipt (standing in for the kill)
    leaves a rerun that finishes."""
    import mirror.importer as importer
    from mirror.cli import main

    bundle = export_chain_start(seeded_registry.url, tmp_path)
    receipt = tmp_path / "receipt.json"
    imp = ["import", str(bundle), "--target", registry.url, "--allow-unsigned"]
    imp += ["--catalog", str(tmp_path / "far" / "cat.json"), "--receipt", str(receipt)]

    def lost(*args: Any, **kwargs: Any) -> None:
        raise OSError(5, "Input/output error", str(receipt))

    monkeypatch.setattr(importer, "write_receipt", lost)
    assert main(imp) == 1 and not receipt.exists()
    monkeypatch.undo()
    assert main(imp) == 0 and receipt.exists()
    assert main(imp) == 3  # applied now: a replay
