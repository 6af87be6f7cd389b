"""No silent skips in CI (issue 17, item 6): the suite's own conftest, run on a tiny suite.

Under CI=true every skip (a missing corpus, skopeo, docker-registry, or anything else) fails
the run with its reason; elsewhere skips stay skips. Either way the run states its skip
count. An xfail is a stated known bug, not a skip, and is left alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")
ROOT = Path(__file__).resolve().parents[1]

SUITE = """
import pytest

def test_passes():
    pass

def test_skips_at_run_time():
    pytest.skip("the corpus is missing here")

@pytest.mark.skipif(True, reason="skopeo is not installed here")
def test_skipped_by_a_mark():
    pass

@pytest.mark.xfail(strict=True, reason="a known bug, stated")
def test_known_bug():
    assert False
"""

MODULE_SKIP = """
import pytest

pytest.skip("this whole module needs a tool that is missing", allow_module_level=True)

def test_never_runs():
    pass
"""


LAB = """
def test_one(registry):
    assert registry.url.startswith("http://127.0.0.1:")

def test_two(registry):
    assert registry.url.startswith("http://127.0.0.1:")
"""


def run_suite(
    tmp_path: Path, files: dict[str, str], *, ci: bool, extra: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    suite = tmp_path / ("ci" if ci else "local")
    suite.mkdir()
    shutil.copy(CONFTEST, suite / "conftest.py")
    (suite / "pytest.ini").write_text("[pytest]\nmarkers = registry: uses a lab registry\n")
    for name, text in files.items():
        (suite / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(ROOT)
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *extra, str(suite)],
        cwd=suite,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_locally_skips_are_skips_and_counted(tmp_path: Path) -> None:
    run = run_suite(tmp_path, {"test_suite.py": SUITE}, ci=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "skips: 2 (under CI=true each would fail the run)" in run.stdout
    assert "1 passed, 2 skipped, 1 xfailed" in run.stdout


@pytest.mark.parametrize("workers", [0, 2])
def test_under_ci_every_skip_fails_the_run_with_its_reason(tmp_path: Path, workers: int) -> None:
    """Also under `make test`'s two xdist workers, where the summary counts what every
    worker turned into a failure and every registry it started."""
    files = {"test_suite.py": SUITE, "test_lab.py": LAB}
    run = run_suite(tmp_path, files, ci=True, extra=("-n", str(workers), "--dist", "loadfile"))
    out = run.stdout
    assert run.returncode == 1, out + run.stderr
    assert "CI=true: a skipped test fails the run: the corpus is missing here" in out
    assert "CI=true: a skipped test fails the run: skopeo is not installed here" in out
    assert "skips: 0 (CI=true: a skip fails the run; 2 did)" in out
    assert "skipped under CI: test_suite.py::test_skips_at_run_time" in out
    assert "skipped under CI: test_suite.py::test_skipped_by_a_mark" in out
    assert "lab: started 2 real docker-registry processes (anon: 2)" in out
    # The run-time skip fails the test; a mark's skip happens at setup, so it is an error.
    assert "1 failed, 3 passed, 1 xfailed, 1 error" in out
    assert " skipped" not in out.splitlines()[-1]


def test_under_ci_a_module_skipped_at_collection_fails_the_run(tmp_path: Path) -> None:
    run = run_suite(tmp_path, {"test_module.py": MODULE_SKIP}, ci=True)
    out = run.stdout
    assert run.returncode != 0, out + run.stderr
    assert "a tool that is missing" in out
    assert "skips: 0 (CI=true: a skip fails the run; 1 did)" in out


@pytest.mark.parametrize("value", ["true", "1", "yes", "TRUE"])
def test_what_counts_as_ci(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import _on_ci

    monkeypatch.setenv("CI", value)
    assert _on_ci()
    monkeypatch.setenv("CI", "false")
    assert not _on_ci()
