"""The fault matrix (issue 15, item 7): every fault, passing and lasting, for export and import.

A fault proxy in front of a real lab registry bends one kind of request: the blob GETs of an
export, the blob uploads of an import. A passing fault (once) must end in success; a lasting
one in one line, the contract's exit code, within the bound docs/SECURITY.md states for it
("Faults and their bounds"), with nothing partial left: no file at --output, no tag over a
missing blob, no catalog entry.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from faultproxy import BLOB_GET, UPLOAD, FaultProxy, Reg, isolated_env, mirror, write_spec

from mirror.lab import LabRegistry, start_registry
from mirror.lab.content import image_family
from mirror.lab.seed import client_for, seed_many

pytestmark = [pytest.mark.slow, pytest.mark.registry, pytest.mark.timeout(120)]

# The settings every case runs under, and the bounds docs/SECURITY.md gives in their terms.
READ_TIMEOUT = 1.5  # MIRROR_READ_TIMEOUT
GRACE = 0.3  # MIRROR_RATE_GRACE
MIN_RATE = 1 << 20  # MIRROR_MIN_RATE
RETRY_AFTER = 1  # what the 429s say
SLACK = 10.0  # process start-up and a loaded machine: the bounds below are the docs' own
BACKOFF = 1.25 * (0.5 + 1 + 2 + 4)  # the waits between 5 tries, at most (0.25 s x 2^try)
SHORT_BACKOFF = 1.25 * (0.5 + 1)  # between 3 tries


@dataclass(frozen=True)
class Fault:
    action: str
    options: dict[str, Any]
    bound: float  # seconds a lasting one may take, by the docs' formula
    tries: int  # the most times the faulted request may be seen
    waits: float = 0.0  # seconds a lasting one must have waited, as the answers asked


FAULTS = {
    "5xx": Fault("status", {"status": 503}, BACKOFF, 5),
    "429": Fault("status", {"status": 429, "retry_after": str(RETRY_AFTER)}, 5 * RETRY_AFTER, 5, 3),
    "reset": Fault("drop", {}, SHORT_BACKOFF, 3),
    "stall": Fault("hang", {"delay": READ_TIMEOUT + 1.5}, 3 * READ_TIMEOUT + SHORT_BACKOFF, 3),
    "trickle": Fault("slow", {"delay": 2.0}, 3 * (GRACE + READ_TIMEOUT), 3),
    # Resumed with Range from the byte reached, under the blob's one lost-connection budget:
    # a body cut short every time ends after 3 requests, like a reset.
    "truncation": Fault("truncate", {}, SHORT_BACKOFF, 3),
    "wrong bytes": Fault("corrupt", {}, 1.0, 1),
}
# On an import the bytes travel in the request, so truncation and wrong bytes bend the body
# the target receives; a trickle is an answer that comes late but comes. A streamed upload
# cannot be replayed by the HTTP layer: the engine tries the whole blob 3 times, waiting
# between them as the HTTP layer would (Retry-After, or its backoff).
UPLOAD_FAULTS = {
    "5xx": Fault("status", {"status": 503}, SHORT_BACKOFF, 3, 0.75 * 1.5),
    "429": Fault("status", {"status": 429, "retry_after": str(RETRY_AFTER)}, 2.5, 3, 1.5),
    "reset": Fault("drop", {}, 1.0, 3),
    "stall": FAULTS["stall"],
    "trickle": Fault("slow", {"delay": READ_TIMEOUT / 2}, 7 * READ_TIMEOUT, 7),
    "truncation": Fault("cut", {}, 1.0, 3),
    "wrong bytes": Fault("mangle", {}, 1.0, 3),
}

# What a lasting fault ends in: exit code, and a regex its one line matches.
RESET = r"127\.0\.0\.1:\d+: (\w+: )?Remote end closed connection without response[^'\"]*$"
EXPORT_FAILS = {
    "5xx": (1, r"503"),
    "429": (1, r"429"),
    "reset": (1, RESET),
    "stall": (1, r"127\.0\.0\.1"),
    "trickle": (1, r"too slow.*MIRROR_MIN_RATE"),
    "truncation": (1, r"sha256:"),
    "wrong bytes": (3, r"sha256:"),
}
IMPORT_FAILS = {
    "5xx": (1, r"503"),
    "429": (1, r"429"),
    "reset": (1, RESET),
    "stall": (1, r"127\.0\.0\.1"),
    "trickle": (0, ""),  # slow but alive is not a failure
    "truncation": (1, r"sha256:|400|DIGEST"),
    "wrong bytes": (1, r"sha256:|400|DIGEST"),
}
# A passing fault ends in success, except wrong bytes from a source: exit 3, never retried.
EXPORT_PASSING = {name: (3 if name == "wrong bytes" else 0) for name in FAULTS}


@pytest.fixture(scope="module", autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    env = {
        "MIRROR_READ_TIMEOUT": str(READ_TIMEOUT),
        "MIRROR_RATE_GRACE": str(GRACE),
        "MIRROR_MIN_RATE": str(MIN_RATE),
    }
    with isolated_env(tmp_path_factory, set_env=env, drop=("REQUESTS_CA_BUNDLE",)):
        yield


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRegistry]:
    """Two small images sharing a base layer: seven blobs, a second's export."""
    from conftest import require_registry

    require_registry()
    reg = start_registry(tmp_path_factory.mktemp("source"), flavour="anon")
    client = client_for(reg)
    try:
        family = image_family("m-", 2, base_size=4096, mid_size=2048, top_size=1024, seed="fm")
        seed_many(client, [(f"production/images/{n}", "1.0.0", a, "image") for n, a in family])
    finally:
        client.close()
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def bundle(source: LabRegistry, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("bundle")
    out = work / "b.tar.zst"
    spec = write_spec(work / "s.yaml", source.url)
    run = mirror("export", spec, "--output", out, "--cache-dir", work / "cache")
    assert run.rc == 0, run.err
    return out


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRegistry]:
    """One target for the whole matrix; each case lands under its own --base-path."""
    reg = start_registry(tmp_path_factory.mktemp("target"), flavour="anon")
    try:
        yield reg
    finally:
        reg.stop()


def _ids(name: str, lasting: bool) -> str:
    return f"{name}-{'lasting' if lasting else 'passing'}"


CASES = [(n, lasting) for n in FAULTS for lasting in (False, True)]


@pytest.mark.parametrize(("name", "lasting"), CASES, ids=[_ids(*c) for c in CASES])
def test_export_under_each_fault(
    name: str, lasting: bool, source: LabRegistry, tmp_path: Path
) -> None:
    fault = FAULTS[name]
    out = tmp_path / "out"
    out.mkdir()
    with FaultProxy.running(source.url) as proxy:
        spec = write_spec(tmp_path / "s.yaml", proxy.url)
        bent = proxy.add(
            fault.action, method="GET", path=BLOB_GET, times=None if lasting else 1, **fault.options
        )
        started = time.monotonic()
        run = mirror(
            "export",
            spec,
            "--output",
            out / "b.tar.zst",
            "--cache-dir",
            tmp_path / "c",
            "--jobs",
            "1",
        )
        took = time.monotonic() - started
    if not lasting:
        assert run.rc == EXPORT_PASSING[name], run.err
        assert bent.hits == 1
    else:
        code, says = EXPORT_FAILS[name]
        assert run.rc == code, run.err
        assert re.search(says, run.error_line()), run.err
        assert 0 < bent.hits <= fault.tries
        assert fault.waits <= took < fault.bound + SLACK, f"{name}: {took:.1f} s"
    if run.rc == 0:
        assert mirror("verify", out / "b.tar.zst", "--allow-unsigned").rc == 0
        assert sorted(p.name for p in out.iterdir()) == ["b.tar.zst", "b.tar.zst.sha256"]
    else:
        assert list(out.iterdir()) == [], "a failed export left something at --output"
        assert run.error_line()


@pytest.mark.parametrize(("name", "lasting"), CASES, ids=[_ids(*c) for c in CASES])
def test_import_under_each_fault(
    name: str, lasting: bool, bundle: Path, target: LabRegistry, tmp_path: Path
) -> None:
    fault = UPLOAD_FAULTS[name]
    base = re.sub(r"[^a-z0-9]+", "-", _ids(name, lasting))
    catalog = tmp_path / "catalog.json"
    with FaultProxy.running(target.url) as proxy:
        bent = proxy.add(
            fault.action, method="PUT", path=UPLOAD, times=None if lasting else 1, **fault.options
        )
        started = time.monotonic()
        run = mirror(
            "import", bundle, "--target", proxy.url, "--allow-unsigned",
            "--catalog", catalog, "--base-path", base, "--jobs", "1",
        )  # fmt: skip
        took = time.monotonic() - started
    reg = Reg(target.url)
    tags = {r: reg.tags(r) for r in reg.catalog() if r.startswith(base + "/")}
    if not lasting:
        assert run.rc == 0, run.err
        assert bent.hits == 1
    else:
        code, says = IMPORT_FAILS[name]
        assert run.rc == code, run.err
        assert fault.waits <= took < fault.bound + SLACK, f"{name}: {took:.1f} s"
        assert bent.hits <= fault.tries
        if code:
            assert re.search(says, run.error_line()), run.err
            assert 0 < bent.hits <= fault.tries
    assert reg.dangling() == []
    if run.rc == 0:
        assert sorted(tags) == [f"{base}/production/images/m-00", f"{base}/production/images/m-01"]
        assert all(t == ["1.0.0"] for t in tags.values())
        assert catalog.exists()
    else:
        assert not catalog.exists()


def test_an_upload_asked_to_wait_past_the_cap_fails_at_once(
    bundle: Path, target: LabRegistry, tmp_path: Path
) -> None:
    """A streamed upload's 429 that asks for more than 30 s is not waited for, nor retried."""
    with FaultProxy.running(target.url) as proxy:
        bent = proxy.add("status", status=429, method="PUT", path=UPLOAD, retry_after="99999")
        started = time.monotonic()
        run = mirror(
            "import", bundle, "--target", proxy.url, "--allow-unsigned", "--jobs", "1",
            "--catalog", tmp_path / "catalog.json", "--base-path", "past-the-cap",
        )  # fmt: skip
    assert run.rc == 1 and "asked to wait 99999 s" in run.error_line()
    assert bent.hits == 1 and time.monotonic() - started < SLACK
    assert not (tmp_path / "catalog.json").exists()
