"""Progress when stderr is not a terminal (issue 16, item 3): heartbeats, a plan before a
large copy, one summary line, and byte counts that agree between export, inspect and verify."""

from __future__ import annotations

import io
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from faultproxy import isolated_env, mirror, write_spec

from mirror.progress import Progress, heartbeat_seconds

PASSWORD = "progress"


@pytest.fixture(scope="module", autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with isolated_env(tmp_path_factory, set_env={"MIRROR_KEY_PASSWORD": PASSWORD}):
        yield


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_log_gets_heartbeats_and_a_summary_with_units() -> None:
    out, clock = io.StringIO(), _Clock()
    beat = threading.Event()
    with Progress("export", phase="fetch", stream=out, heartbeat=0.01, clock=clock) as p:
        p.planned(3, 3 * 1024 * 1024)
        p.advance(1024 * 1024)
        p.blob_done(None, "copied")  # type: ignore[arg-type]
        clock.now += 2.0
        # A beat may already have fired before the clock moved: wait for one after it.
        want = "export fetch: 1.0 MiB of 3.0 MiB (33%), 1 blobs, 2.0 s elapsed, 512.0 KiB/s"
        deadline = time.monotonic() + 10
        while want not in out.getvalue().splitlines() and time.monotonic() < deadline:
            beat.wait(0.01)
        p.summary(artifacts=2, blobs=3, nbytes=3 * 1024 * 1024)
    lines = out.getvalue().splitlines()
    assert want in lines
    assert (
        lines[-1]
        == "export: done: 2 artifacts, 3 blobs, 3145728 bytes (3.0 MiB) in 2.0 s (1.5 MiB/s)"
    )


def test_a_terminal_gets_bars_and_no_log_lines() -> None:
    out = io.StringIO()
    with Progress("verify", stream=out, enabled=True, heartbeat=0.01) as p:
        p.planned(0, 1000)
        p.advance(1000)
        time.sleep(0.05)
        p.summary(artifacts=1, blobs=1, nbytes=1000)
    assert "verify: done" not in out.getvalue() and "elapsed" not in out.getvalue()


def test_heartbeat_interval_comes_from_the_environment() -> None:
    assert heartbeat_seconds({}) == 15.0
    assert heartbeat_seconds({"MIRROR_HEARTBEAT": "2.5"}) == 2.5
    assert heartbeat_seconds({"MIRROR_HEARTBEAT": "0"}) == 0.0
    assert heartbeat_seconds({"MIRROR_HEARTBEAT": "soon"}) == 15.0
    out = io.StringIO()
    with Progress("import", stream=out, heartbeat=0.0) as p:  # 0: no heartbeat thread
        p.planned(1, 10)
        time.sleep(0.05)
    assert out.getvalue() == ""


def test_a_large_copy_says_its_size_before_it_starts() -> None:
    out = io.StringIO()
    p = Progress("export", stream=out, heartbeat=0, large=1 << 30)
    p.plan(12, 40, (1 << 30) - 1)
    assert out.getvalue() == ""  # small: the bar (or the summary) says enough
    p.plan(1200, 5000, 3 << 30)
    assert out.getvalue() == (
        "export: plan: 1200 artifacts, 5000 blobs, 3221225472 bytes (3.0 GiB) to copy "
        "(estimated from the manifests)\n"
    )


def _bytes(text: str) -> set[int]:
    return {int(n) for n in re.findall(r"\b(\d+) bytes \(\d+(?:\.\d)? [KMG]?i?B\)", text)}


def test_export_import_verify_show_life_and_agree_on_bytes(
    seeded_registry: Any, registry: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same bundle's byte count from each command's --json and text; lines in a log."""
    monkeypatch.setenv("MIRROR_HEARTBEAT", "0.02")
    monkeypatch.setattr("mirror.progress.LARGE_FETCH", 1)  # every copy counts as large here
    spec = write_spec(tmp_path / "s.yaml", seeded_registry.url, repositories=["images/*"])
    out = tmp_path / "b.tar.zst"
    run = mirror("export", spec, "-o", out, "--json")
    assert run.rc == 0, run.err
    exported = run.json()["bytes"]
    err = run.err.splitlines()
    plan = next(i for i, line in enumerate(err) if line.startswith("export: plan: "))
    assert "artifacts" in err[plan] and "bytes (" in err[plan] and "to copy" in err[plan]
    assert err[-1].startswith("export: done: ") and f"{exported} bytes (" in err[-1]
    assert re.search(r" in \d+\.\d s \(\d+\.\d [KMG]iB/s\)$", err[-1]), err[-1]
    assert plan < len(err) - 1
    assert any(line.startswith("export ") and " elapsed, " in line for line in err), err

    inspected = mirror("inspect", out, "--json").json()["totals"]["bytes"]
    verified = mirror("verify", out, "--allow-unsigned", "--json")
    assert verified.rc == 0, verified.err
    assert exported == inspected == verified.json()["bytes"]
    assert verified.err.splitlines()[-1].startswith("verify: done: ")

    texts = [
        mirror("export", spec, "-o", out).out,
        mirror("inspect", out).out,
        mirror("verify", out, "--allow-unsigned").out,
    ]
    for text in texts:
        assert exported in _bytes(text), text

    planned = mirror("import", out, "--target", registry.url, "--allow-unsigned", "--dry-run")
    assert planned.rc == 0, planned.err
    would = re.search(r"would push (\d+) blobs", planned.out)
    assert would and int(would[1]) > 0, planned.out  # and the log line counts the same
    assert "import: planned (dry run): " in planned.err.splitlines()[-1]
    assert f" artifacts, {would[1]} blobs, " in planned.err.splitlines()[-1], planned.err
    imported = mirror("import", out, "--target", registry.url, "--allow-unsigned")
    assert imported.rc == 0, imported.err
    assert imported.err.splitlines()[-1].startswith("import: done: ")
    assert re.search(r"^import push: .* elapsed, .*/s$", imported.err, re.M) or re.search(
        r"^import verify: .* elapsed", imported.err, re.M
    ), imported.err


def test_no_heartbeat_follows_the_summary() -> None:
    """The summary is a log's last line: a beat racing it must not land after it."""
    out = io.StringIO()
    with Progress("verify", stream=out, heartbeat=0.001) as p:
        p.planned(1, 10)
        time.sleep(0.02)  # beats are flowing
        p.summary(artifacts=1, blobs=1, nbytes=10)
        time.sleep(0.02)  # a beater still running would print again here
        lines = out.getvalue().splitlines()
    assert lines[-1].startswith("verify: done: ") and len(lines) > 1


def test_the_rate_is_the_phase_s_and_a_dry_run_says_planned() -> None:
    """A heartbeat's rate is what its phase moved since it began (a push after a long
    verify is not its average over both), and a dry run's summary is no "done"."""
    out, clock = io.StringIO(), _Clock()
    with Progress("import", phase="push", stream=out, heartbeat=0, clock=clock) as p:
        p.planned(0, 100 << 20, "verify")
        clock.now += 10.0
        p.planned(4, 4 << 20)
        p.advance(1 << 20)
        clock.now += 1.0
        assert p.heartbeat_line() == (
            "import push: 1.0 MiB of 4.0 MiB (25%), 0 blobs, 11.0 s elapsed, 1.0 MiB/s"
        )
        p.summary(artifacts=3, blobs=4, nbytes=4 << 20, dry_run=True)
    assert out.getvalue().splitlines()[-1] == (
        "import: planned (dry run): 3 artifacts, 4 blobs, 4194304 bytes (4.0 MiB) in 11.0 s"
    )


def test_each_bar_is_named_and_an_empty_round_draws_none() -> None:
    """Export's fetch rounds (the selection, then images, then signatures) are all
    "fetch"; the writer's is "pack". A round that moves nothing draws no 0-byte bar."""
    out = io.StringIO()
    with Progress("export", phase="fetch", stream=out, enabled=True, heartbeat=0) as p:
        for blobs, nbytes in ((2, 2048), (0, 0), (1, 1024)):
            p.planned(blobs, nbytes)
            p.advance(nbytes)
        p.planned(3, 3072, "pack")
        p.advance(3072)
    text = out.getvalue()
    assert text.count("export fetch:") >= 2 and "export pack:" in text
    assert "0.00iB" not in text and "export:" not in text
    assert "iB/s]" in text and "B/s]" not in text.replace("iB/s]", "")  # binary, as logs


def test_quiet_says_nothing_but_notes_and_errors(
    seeded_registry: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--quiet` (before or after the command): no heartbeat, plan or summary line in a
    log, no bar on a terminal; the result on stdout and a note or an error still show."""
    monkeypatch.setenv("MIRROR_HEARTBEAT", "0.01")
    monkeypatch.setattr("mirror.progress.LARGE_FETCH", 1)
    spec = write_spec(tmp_path / "s.yaml", seeded_registry.url, repositories=["images/*"])
    out = tmp_path / "b.tar.zst"
    loud = mirror("export", spec, "-o", out, "--json")
    assert loud.rc == 0 and "export: done: " in loud.err
    for args in (["--quiet", "export"], ["export", "--quiet"]):
        quiet = mirror(*args, spec, "-o", out, "--json")
        assert quiet.rc == 0, quiet.err
        assert quiet.json()["bytes"] == loud.json()["bytes"]
        assert [line for line in quiet.err.splitlines() if not line.startswith("note: ")] == []
    failed = mirror("-q", "verify", tmp_path / "nothing.tar.zst")
    assert failed.rc == 2 and failed.err.startswith("mirror: error: ")
    bars = io.StringIO()
    with Progress("verify", stream=bars, enabled=True, quiet=True) as p:
        p.planned(1, 1000)
        p.advance(1000)
        p.summary(artifacts=1, blobs=1, nbytes=1000)
    assert bars.getvalue() == ""
