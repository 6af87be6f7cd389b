"""Shared fixtures: real docker-registry processes, a static Helm repository, the corpus.

A missing `docker-registry`, corpus or skopeo skips the tests that need it on a workstation.
Under CI (CI=true) no skip is silent: every skipped test fails the run with its reason
(`pytest_runtest_makereport` below), since CI must prove the real thing ran. Every run ends
with a line giving the skip count; CI's is 0. (xfail is not a skip: it is a known bug the
suite states, and a strict xfail fails the run the day it passes.)
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mirror.lab import INSTALL_HINT, LabRegistry, registry_binary, start_registry
from mirror.lab.content import corpus_dir
from mirror.lab.httpserver import serve_directory
from mirror.lab.seed import Seeded, client_for, seed_standard

RegistryFactory = Callable[..., LabRegistry]
_STARTED = pytest.StashKey[list[tuple[str, int]]]()
_UNPLANNED = pytest.StashKey[list[str]]()  # CI=true: skips turned into failures
_REGISTRY_FIXTURES = {
    "registry",
    "basic_registry",
    "tls_registry",
    "token_registry",
    "registry_factory",
    "seeded_registry",
}


def _loopback_only() -> None:
    """Tests never reach an address outside loopback: a connect elsewhere fails at once.

    Covers everything in this process (requests, urllib3, http.client); the CLI tests that
    run a subprocess point every upstream at the lab through the spec's `upstreams:`.
    """
    import ipaddress
    import socket

    original = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            try:
                loopback = ipaddress.ip_address(host.split("%")[0]).is_loopback
            except ValueError:
                loopback = host == "localhost"
            if not loopback:
                raise ConnectionRefusedError(f"test guard: {host} is outside loopback")
        original(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign]


def _responses_reach_requests() -> None:
    """`responses` stands in for a server by replacing requests' adapter; a plain request
    goes on the wire (http.client) and would pass it by. While the adapter is replaced,
    the wire declines, and the request goes through requests, as any non-plain one does.
    Tests with real servers (most) use the wire."""
    import requests

    from mirror.registry.wire import Wire

    real_adapter, real_send = requests.adapters.HTTPAdapter.send, Wire.send

    def send(self: Wire, *args: Any, **kwargs: Any) -> Any:
        if requests.adapters.HTTPAdapter.send is not real_adapter:
            return None
        return real_send(self, *args, **kwargs)

    Wire.send = send  # type: ignore[method-assign]


def pytest_configure(config: pytest.Config) -> None:
    _loopback_only()
    _responses_reach_requests()


@pytest.fixture(autouse=True)
def _own_xdg_dirs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test gets its own cache and data folders: nothing leaks between tests, or into
    the home folder of whoever runs them (subprocesses inherit the same variables)."""
    root = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("XDG_CACHE_HOME", str(root / "cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(root / "data"))
    # Nor the logins of whoever runs them: podman's auth.json is read after docker's.
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(root / "run"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    # Nor Helm's: repositories.yaml and registry/config.json live in its config home.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(root / "config"))
    for name in ("HELM_CONFIG_HOME", "HELM_REPOSITORY_CONFIG", "HELM_REGISTRY_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    # No heartbeat lines by the clock: a slow run under load must not change what a test
    # reads on stderr. Tests of the heartbeat set their own interval.
    monkeypatch.setenv("MIRROR_HEARTBEAT", "0")


def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_registry() -> str:
    """The binary's path; skip (or, under CI, fail) with how to install it."""
    binary = registry_binary()
    if binary is None:
        if _on_ci():
            pytest.fail(f"{INSTALL_HINT} (CI=true: lab tests must run)", pytrace=False)
        pytest.skip(INSTALL_HINT)
    return binary


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a lab registry, so `-m 'not registry'` deselects them."""
    for item in items:
        if _REGISTRY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.registry)


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _fail_skip_on_ci(
    config: pytest.Config, report: pytest.TestReport | pytest.CollectReport
) -> None:
    """CI=true: a skip becomes a failure that says what was skipped and why."""
    if not (report.skipped and _on_ci()) or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    config.stash.setdefault(_UNPLANNED, []).append(f"{report.nodeid}: {reason}")
    report.outcome = "failed"
    report.longrepr = f"CI=true: a skipped test fails the run: {reason}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    _fail_skip_on_ci(item.config, report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """A module skipped whole at collection (`allow_module_level`, `importorskip`)."""
    report = yield
    _fail_skip_on_ci(collector.config, report)
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    """An xdist worker hands its registries and CI skips to the controller, which prints."""
    out = getattr(session.config, "workeroutput", None)
    if out is not None:
        out["lab_started"] = session.config.stash.get(_STARTED, [])
        out["unplanned"] = session.config.stash.get(_UNPLANNED, [])


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist's controller: what a finished worker started and turned from skip to failure."""
    out, config = getattr(node, "workeroutput", {}), node.config
    config.stash.setdefault(_STARTED, []).extend(tuple(s) for s in out.get("lab_started", []))
    config.stash.setdefault(_UNPLANNED, []).extend(out.get("unplanned", []))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The skip count, always; then how many real docker-registry processes ran, by flavour
    (in every worker, under `make test`'s xdist)."""
    skipped = len(terminalreporter.stats.get("skipped", []))
    unplanned = config.stash.get(_UNPLANNED, [])
    if _on_ci():
        terminalreporter.write_line(
            f"skips: {skipped} (CI=true: a skip fails the run; {len(unplanned)} did)"
        )
        for line in unplanned:
            terminalreporter.write_line(f"  skipped under CI: {line}")
    else:
        terminalreporter.write_line(f"skips: {skipped} (under CI=true each would fail the run)")
    started = config.stash.get(_STARTED, [])
    if not started:
        return
    counts: dict[str, int] = {}
    for flavour, _ in started:
        counts[flavour] = counts.get(flavour, 0) + 1
    detail = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    terminalreporter.write_line(
        f"lab: started {len(started)} real docker-registry processes ({detail})"
    )


def _record(config: pytest.Config, reg: LabRegistry) -> None:
    config.stash.setdefault(_STARTED, []).append((reg.flavour, reg.pid))


@pytest.fixture
def registry_factory(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[RegistryFactory]:
    """`start(flavour="anon", **kwargs)`: as many registries as a test needs, all stopped after."""
    require_registry()
    workdir = tmp_path_factory.mktemp("lab")
    started: list[LabRegistry] = []

    def start(flavour: str = "anon", **kwargs: Any) -> LabRegistry:
        reg = start_registry(workdir, flavour=flavour, **kwargs)
        started.append(reg)
        _record(request.config, reg)
        return reg

    try:
        yield start
    finally:
        for reg in reversed(started):
            reg.stop()


@pytest.fixture
def registry(registry_factory: RegistryFactory) -> LabRegistry:
    return registry_factory("anon")


@pytest.fixture
def basic_registry(registry_factory: RegistryFactory) -> LabRegistry:
    return registry_factory("basic")


@pytest.fixture
def tls_registry(registry_factory: RegistryFactory) -> LabRegistry:
    return registry_factory("tls")


@pytest.fixture
def token_registry(registry_factory: RegistryFactory) -> LabRegistry:
    """Distribution with token auth; `.token_server.grants` shows every token issued."""
    return registry_factory("token")


@dataclass(frozen=True)
class SeededRegistry:
    registry: LabRegistry
    everything: list[Seeded]

    @property
    def seeded(self) -> list[Seeded]:
        """What the source registry offers under `production/`."""
        return [s for s in self.everything if s.kind != "upstream"]

    @property
    def images(self) -> list[Seeded]:
        """The images the seeded packs list, where their upstream hosts stand in."""
        return [s for s in self.everything if s.kind == "upstream"]

    @property
    def url(self) -> str:
        return self.registry.url

    @property
    def host(self) -> str:
        return self.registry.host

    def of_kind(self, kind: str) -> list[Seeded]:
        return [s for s in self.seeded if s.kind == kind]


@pytest.fixture(scope="module")
def seeded_registry(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[SeededRegistry]:
    """An anonymous registry holding `seed_standard` under `production/`; read-only by habit."""
    require_registry()
    reg = start_registry(tmp_path_factory.mktemp("seeded"), flavour="anon")
    _record(request.config, reg)
    try:
        client = client_for(reg)
        try:
            seeded = seed_standard(client, "production")
        finally:
            client.close()
        yield SeededRegistry(reg, seeded)
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def corpus() -> Path:
    path = corpus_dir()
    if path is None:
        pytest.skip("../shared/corpus/pack-central is missing (set MIRROR_CORPUS to point at it)")
    return path


@dataclass(frozen=True)
class HelmRepo:
    url: str
    path: Path
    charts: list[Path]


@pytest.fixture(scope="module")
def helm_repo(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> Iterator[HelmRepo]:
    """A static Helm repository (index.yaml + .tgz) of a few corpus charts, served on loopback."""
    pytest.importorskip("mirror.formats.helm", reason="mirror.formats.helm not written yet")
    from mirror.lab.corpus import build_helm_repo, unique_charts

    work = tmp_path_factory.mktemp("helm")
    picked = [tgz for _, _, tgz in unique_charts(corpus, 6, smallest=True)]
    # Copy first: the corpus is shared and read-only.
    staged = work / "staged"
    staged.mkdir()
    sources = [Path(shutil.copy(tgz, staged / tgz.name)) for tgz in picked]
    repo = build_helm_repo(work / "repo", sources)
    with serve_directory(repo) as url:
        yield HelmRepo(url, repo, sorted(repo.glob("*.tgz")))


@pytest.fixture(scope="module")
def proxy(seeded_registry: SeededRegistry) -> Iterator[Any]:
    """A fault-injecting proxy in front of the module's seeded registry (tests/faultproxy.py)."""
    from faultproxy import FaultProxy

    with FaultProxy.running(seeded_registry.url) as p:
        yield p


@pytest.fixture
def faults(proxy: Any) -> Iterator[Any]:
    """The module's proxy with no fault and no request log, before and after each test."""
    proxy.clear()
    yield proxy
    proxy.clear()
