"""Bad input and a hostile network, against real lab registries behind a fault proxy.

Issue 3's "Bad input": each failure is one clear line on stderr, no traceback, the contract's
exit code, and nothing at --output (no bundle, no temporary file, no sidecar). Transient
failures (429, 5xx, a dropped connection) are retried and the export still succeeds.
Import: a target that is not a registry, unreachable, or refusing credentials is one line
and exit 1; transient upload failures are retried.
"""

from __future__ import annotations

import hashlib
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faultproxy import (
    BLOB_GET,
    MANIFEST,
    UNKNOWN_MEDIA_TYPE,
    UPLOAD,
    FaultProxy,
    Reg,
    isolated_env,
    mirror,
    write_spec,
)

from mirror.lab.httpserver import serve_directory
from mirror.lab.registry import free_port

pytestmark = pytest.mark.timeout(120)
MIRROR = (sys.executable, "-m", "mirror")


@pytest.fixture(scope="module", autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with isolated_env(tmp_path_factory, drop=("REQUESTS_CA_BUNDLE",)):
        yield


@pytest.fixture
def outdir(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    return out


def export_to(outdir: Path, spec: Path, *more: object) -> Any:
    cache = outdir.parent / "cache"
    return mirror("export", spec, "--output", outdir / "b.tar.zst", "--cache-dir", cache, *more)


def assert_nothing_left(outdir: Path) -> None:
    assert sorted(p.name for p in outdir.iterdir()) == [], "something was left at --output"


def assert_cache_honest(cache: Path) -> None:
    """Whatever the cache keeps hashes to its name: a bad download never becomes an entry."""
    root = cache / "blobs" / "sha256"
    for path in root.iterdir() if root.is_dir() else []:
        if not path.name.startswith("."):
            assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, path


# ---- export: one line, right code, nothing left ---------------------------------------------


def test_unreachable_registry(outdir: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "s.yaml", f"http://127.0.0.1:{free_port()}")
    run = export_to(outdir, spec)
    assert run.rc == 1
    assert "127.0.0.1" in run.error_line()
    assert_nothing_left(outdir)


def test_401_without_credentials(registry_factory: Any, outdir: Path, tmp_path: Path) -> None:
    reg = registry_factory("basic")
    run = export_to(outdir, write_spec(tmp_path / "s.yaml", reg.url))
    assert run.rc == 1
    assert "401" in run.error_line()
    assert_nothing_left(outdir)


def test_403_from_the_registry(faults: FaultProxy, outdir: Path, tmp_path: Path) -> None:
    faults.add("status", status=403, path=r"/tags/list")
    run = export_to(outdir, write_spec(tmp_path / "s.yaml", faults.url))
    assert run.rc == 1
    assert "403" in run.error_line()
    assert_nothing_left(outdir)


def test_repository_that_is_not_there(seeded_registry: Any, outdir: Path, tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path / "s.yaml", seeded_registry.url, extra=', repositories: ["images/nope"]'
    )
    run = export_to(outdir, spec)
    assert run.rc == 1
    assert "images/nope" in run.error_line()
    assert_nothing_left(outdir)


def test_tag_that_is_not_there(seeded_registry: Any, outdir: Path, tmp_path: Path) -> None:
    """A named repository whose tag filter selects nothing is an error, not an empty bundle."""
    spec = write_spec(
        tmp_path / "s.yaml",
        seeded_registry.url,
        extra=', repositories: ["images/web"], tags: {include: ["^9\\\\.9\\\\.9$"]}',
    )
    run = export_to(outdir, spec)
    assert run.rc == 1
    assert "images/web" in run.error_line()
    assert_nothing_left(outdir)


def test_tag_listed_but_its_manifest_is_gone(
    faults: FaultProxy, outdir: Path, tmp_path: Path
) -> None:
    faults.add("status", status=404, method="GET", path=r"/images/web/manifests/1\.1\.0$")
    run = export_to(outdir, write_spec(tmp_path / "s.yaml", faults.url))
    assert run.rc == 1
    assert "images/web" in run.error_line() and "1.1.0" in run.error_line()
    assert_nothing_left(outdir)


def test_unknown_manifest_media_type(faults: FaultProxy, outdir: Path, tmp_path: Path) -> None:
    faults.add("rewrite", method="GET", path=r"/images/api-00/manifests/")
    run = export_to(outdir, write_spec(tmp_path / "s.yaml", faults.url))
    assert run.rc == 1
    line = run.error_line()
    assert UNKNOWN_MEDIA_TYPE in line and "api-00" in line
    assert_nothing_left(outdir)


def test_blob_digest_mismatch(faults: FaultProxy, outdir: Path, tmp_path: Path) -> None:
    """A flipped byte is a verification failure (contract: exit 3) naming the digest."""
    faults.add("corrupt", method="GET", path=BLOB_GET)
    run = export_to(outdir, write_spec(tmp_path / "s.yaml", faults.url))
    assert run.rc == 3
    line = run.error_line()
    assert "sha256:" in line and faults.host in line
    assert_nothing_left(outdir)
    assert_cache_honest(outdir.parent / "cache")


def test_manifest_digest_mismatch(faults: FaultProxy, outdir: Path, tmp_path: Path) -> None:
    """The registry's Docker-Content-Digest disagrees with the bytes: exit 3, one line."""
    faults.add("corrupt", method="GET", path=r"/images/web/manifests/2\.0\.0$")
    run = export_to(outdir, write_spec(tmp_path / "s.yaml", faults.url))
    assert run.rc == 3
    assert "images/web" in run.error_line()
    assert_nothing_left(outdir)


def test_truncated_blob(faults: FaultProxy, outdir: Path, tmp_path: Path) -> None:
    """Every blob cut in half, every resume too: a lost connection (exit 1, not a
    verification failure), resumed with Range from the byte reached (never fetched whole
    again) until the blob's one budget of tries is spent, then one line naming the blob;
    no partial cache entry."""
    from mirror.registry.retry import DEFAULT

    faults.add("truncate", method="GET", path=BLOB_GET)
    run = export_to(outdir, write_spec(tmp_path / "s.yaml", faults.url))
    assert run.rc == 1
    found = re.fullmatch(
        rf"mirror: error: {re.escape(faults.host)}/production/[\w/.-]+@(sha256:[0-9a-f]{{64}}): "
        rf"connection broken after \d+ bytes \(after {DEFAULT.lost_attempts} tries\)",
        run.error_line(),
    )
    assert found, run.error_line()
    with faults.state.lock:
        answers = [s.status for s in faults.state.seen if s.method == "GET" and found[1] in s.path]
    # One budget per blob: the whole GET, then resumes only, never the whole blob again.
    assert answers == [200] + [206] * (DEFAULT.lost_attempts - 1), answers
    assert_nothing_left(outdir)
    assert_cache_honest(outdir.parent / "cache")


def test_a_blob_cut_off_once_is_resumed_with_range(
    faults: FaultProxy, outdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body cut off mid-way is asked for again from the byte it reached (issue 12): the
    registry answers 206 with the rest, and the blob is not fetched whole a second time."""
    monkeypatch.setattr("mirror.registry.retry.time.sleep", lambda s: None)
    cut = faults.add("truncate", method="GET", path=BLOB_GET, times=1)
    run = export_to(outdir, write_spec(tmp_path / "s.yaml", faults.url))
    assert run.rc == 0, run.err
    assert cut.hits == 1
    assert faults.seen("GET", BLOB_GET, status=206) == 1  # the resumed request, and only it
    blob_gets = faults.paths("GET", BLOB_GET)
    assert len(blob_gets) == len(set(blob_gets)) + 1  # one blob asked twice, none three times
    assert_cache_honest(outdir.parent / "cache")


def test_persistent_429_gives_up_in_one_line(
    faults: FaultProxy, outdir: Path, tmp_path: Path
) -> None:
    faults.add("status", status=429, method="GET", path=BLOB_GET)
    run = export_to(outdir, write_spec(tmp_path / "s.yaml", faults.url))
    assert run.rc == 1
    assert "429" in run.error_line()
    assert_nothing_left(outdir)


def test_a_lasting_500_gives_up_after_the_bounded_retries_in_one_line(
    faults: FaultProxy, outdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A passing 500 is retried like a 503 (issue 12: one rule for every server); one that
    lasts fails after exactly the policy's attempts, in one line, leaving nothing."""
    from mirror.registry.retry import DEFAULT

    monkeypatch.setattr("mirror.registry.retry.time.sleep", lambda s: None)
    fault = faults.add("status", status=500, method="GET", path=r"/web/tags/list")
    run = export_to(outdir, write_spec(tmp_path / "s.yaml", faults.url))
    assert run.rc == 1
    assert "500" in run.error_line()
    assert fault.hits == len(faults.paths("GET", r"/web/tags/list")) == DEFAULT.attempts
    assert_nothing_left(outdir)


@pytest.mark.parametrize(
    ("action", "status", "path"),
    [
        ("status", 503, BLOB_GET),
        ("status", 500, BLOB_GET),  # twice, then the blob: the export survives
        ("status", 502, r"/tags/list"),
        ("status", 429, MANIFEST),
        ("drop", 0, r"/images/.*/blobs/sha256:"),
        ("drop", 0, r"/spectro-packs/.*/blobs/sha256:"),
        ("drop", 0, MANIFEST),
    ],
)
def test_transient_failures_are_retried(
    action: str, status: int, path: str, faults: FaultProxy, outdir: Path, tmp_path: Path
) -> None:
    fault = faults.add(action, status=status, method="GET", path=path, times=2)
    run = export_to(outdir, write_spec(tmp_path / "s.yaml", faults.url), "--jobs", "2")
    assert run.rc == 0, run.err
    assert fault.hits == 2
    assert mirror("verify", outdir / "b.tar.zst", "--allow-unsigned").rc == 0


def test_a_429_waits_as_long_as_retry_after_says(
    faults: FaultProxy, outdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`Retry-After: 1` is honoured (within the policy's jitter), through the injected clock."""
    waits: list[float] = []
    monkeypatch.setattr("mirror.registry.retry.time.sleep", waits.append)
    fault = faults.add("status", status=429, method="GET", path=MANIFEST, times=1)
    fault.retry_after = "1"
    run = export_to(outdir, write_spec(tmp_path / "s.yaml", faults.url), "--jobs", "1")
    assert run.rc == 0, run.err
    assert fault.hits == 1
    assert len(waits) == 1 and 0.75 <= waits[0] <= 1.25


@pytest.mark.parametrize(
    ("content", "pointer"),
    [
        ("name: t\nregistries: [{name: X, kind: oci, url: http://127.0.0.1:1, bogus: 1}]\n", ""),
        ("name: t\nregistries: [{name: X, kind: nope, url: http://127.0.0.1:1}]\n", "kind"),
        ("name: [unclosed\n", ""),
    ],
)
def test_spec_error_is_exit_2_naming_the_file(
    content: str, pointer: str, outdir: Path, tmp_path: Path
) -> None:
    spec = tmp_path / "broken.yaml"
    spec.write_text(content)
    run = export_to(outdir, spec)
    assert run.rc == 2
    line = run.error_line()
    assert "broken.yaml" in line and pointer in line
    assert_nothing_left(outdir)


def test_disk_full_while_writing_the_bundle(
    seeded_registry: Any, outdir: Path, tmp_path: Path
) -> None:
    """A write that fails part way (EFBIG under RLIMIT_FSIZE, like ENOSPC) leaves no temp file."""
    spec = write_spec(tmp_path / "s.yaml", seeded_registry.url)
    cache = outdir.parent / "cache"
    warm = mirror("export", spec, "--output", tmp_path / "warm.tar.zst", "--cache-dir", cache)
    assert warm.rc == 0, warm.err

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    res = subprocess.run(
        [*MIRROR, "export", spec, "--output", outdir / "b.tar.zst", "--cache-dir", cache],
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=limit,
        timeout=60,
    )
    assert res.returncode == 1, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert_nothing_left(outdir)


# ---- import: targets that fail ------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(seeded_registry: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("bundle")
    spec = write_spec(work / "s.yaml", seeded_registry.url)
    out = work / "b.tar.zst"
    run = mirror("export", spec, "--output", out, "--cache-dir", work / "cache")
    assert run.rc == 0, run.err
    return out


def import_to(bundle: Path, target: str, tmp_path: Path, *more: object) -> Any:
    return mirror(
        "import",
        bundle,
        "--target",
        target,
        "--allow-unsigned",
        "--catalog",
        tmp_path / "catalog.json",
        *more,
    )


def test_import_target_that_is_not_a_registry(bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("<html>hello</html>")
    with serve_directory(tmp_path / "site") as url:
        run = import_to(bundle, url, tmp_path)
    assert run.rc == 1
    assert "registry" in run.error_line()
    assert not (tmp_path / "catalog.json").exists()


def test_import_target_unreachable(bundle: Path, tmp_path: Path) -> None:
    run = import_to(bundle, f"http://127.0.0.1:{free_port()}", tmp_path)
    assert run.rc == 1
    assert "127.0.0.1" in run.error_line()
    assert not (tmp_path / "catalog.json").exists()


def test_import_target_refuses_without_credentials(
    bundle: Path, registry_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = registry_factory("basic")
    run = import_to(bundle, reg.url, tmp_path)
    assert run.rc == 1
    assert "401" in run.error_line()
    assert Reg(reg.url, auth=(reg.username, reg.password)).catalog() == []
    monkeypatch.setenv("MIRROR_TARGET_USERNAME", reg.username)
    monkeypatch.setenv("MIRROR_TARGET_PASSWORD", "wrong-" + reg.password)
    wrong = import_to(bundle, reg.url, tmp_path)
    assert wrong.rc == 1
    assert "401" in wrong.error_line() and reg.password not in wrong.err
    monkeypatch.delenv("MIRROR_TARGET_PASSWORD")
    half = import_to(bundle, reg.url, tmp_path)
    assert half.rc == 2
    assert "MIRROR_TARGET_PASSWORD" in half.error_line()


def test_import_retries_transient_upload_failures(
    bundle: Path, registry_factory: Any, tmp_path: Path
) -> None:
    target = registry_factory("anon")
    with FaultProxy.running(target.url) as proxy:
        put = proxy.add("status", status=503, method="PUT", path=UPLOAD, times=2)
        post = proxy.add("status", status=502, method="POST", path=UPLOAD, times=1)
        run = import_to(bundle, proxy.url, tmp_path, "--jobs", "2")
    assert run.rc == 0, run.err
    assert put.hits == 2 and post.hits == 1
    reg = Reg(target.url)
    assert reg.catalog() and reg.dangling() == []


def test_import_manifest_push_failing_for_good_leaves_no_dangling_tag(
    bundle: Path, registry_factory: Any, tmp_path: Path
) -> None:
    target = registry_factory("anon")
    with FaultProxy.running(target.url) as proxy:
        proxy.add("status", status=429, method="PUT", path=r"/images/web/manifests/")
        run = import_to(bundle, proxy.url, tmp_path)
    assert run.rc == 1
    assert "429" in run.error_line()
    reg = Reg(target.url)
    assert reg.tags("production/images/web") == []
    assert reg.dangling() == []
    assert not (tmp_path / "catalog.json").exists()


# ---- bounded faults (issue 15, item 3) -------------------------------------------------


def test_a_permanent_503_costs_one_retry_budget_not_nested_ones(
    faults: FaultProxy, outdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The HTTP layer's 5 tries are the whole budget: the engine does not retry them 3 times."""
    from mirror.registry.retry import DEFAULT

    monkeypatch.setattr("mirror.registry.retry.time.sleep", lambda s: None)
    fault = faults.add("status", status=503, method="GET", path=r"/images/web/blobs/sha256:")
    run = export_to(outdir, write_spec(tmp_path / "s.yaml", faults.url), "--jobs", "1")
    assert run.rc == 1 and "503" in run.error_line()
    assert fault.hits == DEFAULT.attempts
    assert_nothing_left(outdir)


def test_a_retry_after_past_the_cap_fails_fast(
    faults: FaultProxy, outdir: Path, tmp_path: Path
) -> None:
    fault = faults.add("status", status=429, method="GET", path=r"/images/web/manifests/2\.0\.0")
    fault.retry_after = "99999"
    started = time.monotonic()
    run = export_to(outdir, write_spec(tmp_path / "s.yaml", faults.url), "--jobs", "1")
    assert run.rc == 1
    assert "asked to wait 99999 s" in run.error_line()
    assert time.monotonic() - started < 10 and fault.hits == 1
    assert_nothing_left(outdir)


def test_a_trickling_blob_fails_within_the_stated_bound(
    faults: FaultProxy, outdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body far under the rate floor stops after the grace period, and is retried whole a
    bounded number of times; it never hangs."""
    monkeypatch.setenv("MIRROR_MIN_RATE", str(10 << 20))
    monkeypatch.setenv("MIRROR_RATE_GRACE", "0.2")
    fault = faults.add("slow", method="GET", path=r"/images/web/blobs/sha256:", delay=2.0)
    started = time.monotonic()
    run = export_to(outdir, write_spec(tmp_path / "s.yaml", faults.url), "--jobs", "1")
    took = time.monotonic() - started
    assert run.rc == 1
    assert "too slow" in run.error_line() and "MIRROR_MIN_RATE" in run.error_line()
    assert fault.hits == 3 and took < 20  # the engine's three whole-blob tries, then one line
    assert_nothing_left(outdir)


def test_a_transient_500_on_a_manifest_put_is_retried(
    bundle: Path, registry_factory: Any, tmp_path: Path
) -> None:
    target = registry_factory("anon")
    with FaultProxy.running(target.url) as proxy:
        put = proxy.add("status", status=500, method="PUT", path=MANIFEST, times=2)
        run = import_to(bundle, proxy.url, tmp_path, "--jobs", "1")
    assert run.rc == 0, run.err
    assert put.hits == 2
    assert Reg(target.url).dangling() == []
