"""Every error path that formats a URL, a header or a server's answer, run for real with a
credential in it: the secret must be absent from the exception and from the CLI's stderr
(with --debug too, whose traceback prints the exception again).

Issue 17 item 1. Each row names the path, triggers it against a small loopback server that
answers what the row needs (a challenge, an echo, a redirect), and says which words must
still show, so a row that never reached its path cannot pass by saying nothing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from faultproxy import isolated_env, mirror

from mirror.errors import MirrorError
from mirror.registry.client import RegistryClient
from mirror.registry.http import Endpoint

SECRET = "s3cr3t-T0KEN-4711"
BASIC = "Ym9iOnMzY3IzdC1UMEtFTi00NzEx"  # base64 of bob:s3cr3t-T0KEN-4711
ECHO = f"denied: Authorization: Bearer {SECRET}; X-Registry-Auth: {SECRET}"
Answer = tuple[int, dict[str, str], bytes]
Route = Callable[[str, str], Answer]


@pytest.fixture(scope="module", autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with isolated_env(tmp_path_factory, drop=("PALETTE_API_KEY",)):
        yield


class _Handler(BaseHTTPRequestHandler):
    route: Route
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        status, headers, body = type(self).route(self.command, self.path)
        self.send_response_only(status)
        for key, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(key, value)
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET


@contextmanager
def serving(route: Route) -> Iterator[str]:
    """A loopback server that answers every request with `route(method, path)`."""
    handler = type("Handler", (_Handler,), {"route": staticmethod(route)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _json(status: int, doc: Any, **headers: str) -> Answer:
    return status, {"Content-Type": "application/json", **headers}, json.dumps(doc).encode()


def _registry(answer: Callable[[str, str], Answer | None]) -> Route:
    """A registry that says hello on /v2/ and answers the rest as `answer` says (else 404)."""

    def route(method: str, path: str) -> Answer:
        if path == "/v2/":
            return _json(200, {}, **{"Docker-Distribution-API-Version": "registry/2.0"})
        return answer(method, path) or _json(404, {"errors": [{"code": "NOT_FOUND"}]})

    return route


# ---- the paths, each a real call into mirror ----------------------------------------------


def _no_retry(client: RegistryClient) -> RegistryClient:
    client.http.retry = replace(client.http.retry, attempts=1, lost_attempts=1)
    return client


def endpoint_with_userinfo_and_path(_: str) -> None:
    Endpoint.parse(f"https://bob:{SECRET}@127.0.0.1:5000/v2/x")


def token_realm_unreachable(url: str) -> None:
    _no_retry(RegistryClient(url)).list_tags("r")


def registry_echoes_a_header(url: str) -> None:
    _no_retry(RegistryClient(url)).list_tags("r")


def upload_redirected_elsewhere(url: str) -> None:
    import io

    from mirror.oci.descriptor import descriptor_for

    desc = descriptor_for(b"x", "application/octet-stream")
    _no_retry(RegistryClient(url)).push_blob("r", desc, io.BytesIO(b"x"))


def helm_url_not_helm(_: str) -> None:
    from mirror.discovery import helm
    from mirror.spec import Registry

    helm.discover(Registry(name="H", kind="helm", url=f"ftp://bob:{SECRET}@charts.test/x"))


def helm_download_url_unsupported(url: str) -> None:
    from mirror.discovery import helm
    from mirror.spec import Registry

    helm.discover(Registry(name="H", kind="helm", url=url))


def helm_chart_over_the_cap(url: str) -> None:
    from mirror.discovery import helm
    from mirror.spec import Registry

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(helm, "MAX_CHART", 1024)
        helm.discover(Registry(name="H", kind="helm", url=url))


def _index_or_big_chart(method: str, path: str) -> Answer:
    if path.endswith("/index.yaml"):
        return 200, {}, _helm_index(f"/c.tgz?sig={SECRET}")
    return 200, {}, b"x" * 4096


def helm_index_at_a_url_with_a_token(url: str) -> None:
    from mirror.discovery import helm
    from mirror.spec import Registry

    helm.discover(Registry(name="H", kind="helm", url=f"{url}/charts?token={SECRET}"))


def helm_redirects_forever(url: str) -> None:
    from mirror.discovery import helm
    from mirror.spec import Registry

    helm.discover(Registry(name="H", kind="helm", url=url))


def legacy_health_echo(url: str) -> None:
    from mirror.discovery import legacy
    from mirror.spec import Registry

    legacy.discover(Registry(name="Old", kind="pack", url=url))


def upstream_url_with_query(_: str) -> None:
    from mirror.discovery.upstream import split_upstream

    split_upstream(f"http://bob:{SECRET}@127.0.0.1:1/ghcr.io?token={SECRET}", "ghcr.io")


def palette_url_not_https(_: str) -> None:
    from mirror.palette import PaletteClient

    PaletteClient(f"ftp://bob:{SECRET}@palette.test", "key")


def palette_echoes_the_key(url: str) -> None:
    from mirror.palette import PaletteClient
    from mirror.registry.retry import RetryPolicy

    with PaletteClient(url, SECRET, retry=RetryPolicy(sleep=lambda s: None)) as client:
        client.existing()


def palette_redirects_with_a_signature(url: str) -> None:
    from mirror.palette import PaletteClient

    with PaletteClient(url, "key") as client:
        client.existing()


def _helm_index(chart_url: str) -> bytes:
    return (
        "apiVersion: v1\nentries:\n  c:\n  - name: c\n    version: 1.0.0\n"
        f"    urls: ['{chart_url}']\n    digest: {'0' * 64}\n"
    ).encode()


@dataclass(frozen=True)
class Row:
    call: Callable[[str], None]
    route: Route
    shows: str  # words the message must keep: proof the row reached its path


def _nothing(method: str, path: str) -> Answer:
    return 404, {}, b""


ROWS = {
    "endpoint-userinfo": Row(endpoint_with_userinfo_and_path, _nothing, "not a registry URL"),
    "token-realm-unreachable": Row(
        token_realm_unreachable,
        lambda m, p: (
            401,
            {
                "WWW-Authenticate": f'Bearer realm="http://bob:{SECRET}@127.0.0.1:1/token'
                f'?access_token={SECRET}",service="x"'
            },
            b"",
        ),
        "token service http://***@127.0.0.1:1/token",
    ),
    "registry-echo-403": Row(
        registry_echoes_a_header,
        _registry(lambda m, p: _json(403, {"errors": [{"code": "DENIED", "message": ECHO}]})),
        "403 denied: Authorization: Bearer ***",
    ),
    "registry-echo-500": Row(
        registry_echoes_a_header,
        _registry(
            lambda m, p: _json(500, {"errors": [{"code": "X", "message": f"token={SECRET}"}]})
        ),
        "500 token=***",
    ),
    "upload-redirect": Row(
        upload_redirected_elsewhere,
        _registry(
            lambda m, p: (
                (202, {"Location": f"http://bob:{SECRET}@other.test/u?sig={SECRET}"}, b"")
                if m == "POST"
                else None
            )
        ),
        "upload redirected to another host (other.test)",
    ),
    "helm-url": Row(helm_url_not_helm, _nothing, "not a Helm repository URL: ftp://***@"),
    "helm-download-url": Row(
        helm_download_url_unsupported,
        lambda m, p: (200, {}, _helm_index(f"ftp://bob:{SECRET}@cdn.test/c.tgz")),
        "unsupported download URL ftp://***@cdn.test/c.tgz",
    ),
    "helm-index-not-yaml": Row(
        helm_download_url_unsupported,
        lambda m, p: (200, {}, f"entries: {{c: [urls: https://bob:{SECRET}@x/c.tgz: [}}".encode()),
        "not a Helm repository: ",
    ),
    "helm-chart-over-cap": Row(
        helm_chart_over_the_cap, _index_or_big_chart, "/c.tgz?sig=***: 4096 bytes is over"
    ),
    "helm-index-404": Row(helm_index_at_a_url_with_a_token, _nothing, "no index.yaml at"),
    "helm-redirect-loop": Row(
        helm_redirects_forever,
        lambda m, p: (302, {"Location": f"/index.yaml?sig={SECRET}&n={len(p)}"}, b""),
        "redirects for",
    ),
    "legacy-health-not-json": Row(
        legacy_health_echo,
        lambda m, p: (
            503,
            {"Content-Type": "text/plain"},
            f"Authorization: Basic {BASIC}".encode(),
        ),
        "health check failed (503",
    ),
    "legacy-health-status": Row(
        legacy_health_echo,
        lambda m, p: _json(503, {"status": f"DOWN password={SECRET}"}),
        "health check failed (503",
    ),
    "upstream-url": Row(upstream_url_with_query, _nothing, "not a registry URL"),
    "palette-url": Row(palette_url_not_https, _nothing, "--palette-url 'ftp://***@"),
    "palette-echo": Row(
        palette_echoes_the_key,
        lambda m, p: _json(400, {"message": f"bad ApiKey: {SECRET}"}),
        "400: bad ApiKey: ***",
    ),
    "palette-echo-retried": Row(
        palette_echoes_the_key,
        lambda m, p: _json(503, {"errors": [{"message": f"ApiKey: {SECRET}"}]}),
        "Palette GET /v1/registries/metadata: ",
    ),
    "palette-redirect": Row(
        palette_redirects_with_a_signature,
        lambda m, p: (302, {"Location": f"https://bob:{SECRET}@sso.test/?sig={SECRET}"}, b""),
        "302 redirect to https://***@sso.test/?sig=***",
    ),
}


@pytest.mark.parametrize("name", sorted(ROWS))
def test_each_error_path_keeps_the_secret_out_of_its_message(name: str) -> None:
    row = ROWS[name]
    with serving(row.route) as url, pytest.raises(MirrorError) as info:
        row.call(url)
    message = str(info.value)
    assert SECRET not in message and BASIC not in message, message
    assert row.shows in message, message


# ---- the same paths through the CLI: stderr, with and without --debug ------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A running lab registry and an unsigned bundle of one image in it: (url, bundle)."""
    from conftest import require_registry

    from mirror.lab.registry import running_registry
    from mirror.lab.seed import client_for, seed_many, standard_items

    require_registry()
    work = tmp_path_factory.mktemp("redact")
    with running_registry(work) as reg:
        client = client_for(reg)
        seed_many(client, standard_items("production")[:1])
        client.close()
        spec = work / "spec.yaml"
        spec.write_text(f"registries:\n  - {{name: Lab, kind: oci, url: '{reg.url}'}}\n")
        out = work / "b.tar.zst"
        run = mirror("export", spec, "-o", out, "--cache-dir", work / "cache")
        assert run.rc == 0, run.err
        yield reg.url, out


def _import(target: str, *more: str) -> Callable[[str, tuple[str, Path], Path], list[str]]:
    def argv(url: str, lab: tuple[str, Path], tmp: Path) -> list[str]:
        where = target.format(url=url, lab=lab[0])
        catalog = ["--catalog", str(tmp / "c.json")]
        extra = [m.format(url=url, lab=lab[0]) for m in more]
        return ["import", str(lab[1]), "--target", where, "--allow-unsigned", *catalog, *extra]

    return argv


def _export(registry: str) -> Callable[[str, tuple[str, Path], Path], list[str]]:
    def argv(url: str, lab: tuple[str, Path], tmp: Path) -> list[str]:
        spec = tmp / "spec.yaml"
        spec.write_text(registry.format(url=url, lab=lab[0], secret=SECRET))
        return ["export", str(spec), "-o", str(tmp / "b.tar.zst"), "--cache-dir", str(tmp / "c")]

    return argv


@dataclass(frozen=True)
class CliRow:
    argv: Callable[[str, tuple[str, Path], Path], list[str]]
    route: Route
    code: int
    shows: str


def _catalog_echo(method: str, path: str) -> Answer:
    if path == "/health":
        return _json(200, {"status": "UP"})
    return _json(200, [{"auth": f"Bearer {SECRET}"}])


CLI_ROWS = {
    "import-target-userinfo": CliRow(
        _import(f"https://bob:{SECRET}@127.0.0.1:5000"),
        _nothing,
        2,
        "--target: credentials don't belong in a URL",
    ),
    "import-target-token": CliRow(
        _import(f"https://127.0.0.1:5000/v2/x?token={SECRET}"),
        _nothing,
        2,
        "not a registry URL: 'https://127.0.0.1:5000/v2/x?token=***'",
    ),
    "import-token-realm": CliRow(
        _import("{url}"), ROWS["token-realm-unreachable"].route, 1, "token service http://***@"
    ),
    "import-registry-echo": CliRow(
        _import("{url}"), ROWS["registry-echo-403"].route, 1, "/manifests/1.0.0: 403"
    ),
    "import-upload-redirect": CliRow(
        _import("{url}"), ROWS["upload-redirect"].route, 1, "upload redirected to another host"
    ),
    "import-palette-echo": CliRow(
        _import("{lab}", "--base-path", "again", "--palette-url", "{url}"),
        ROWS["palette-echo"].route,
        1,
        "400: bad ApiKey: ***",
    ),
    "export-helm-download-url": CliRow(
        _export("registries:\n  - {{name: H, kind: helm, url: '{url}'}}\n"),
        ROWS["helm-download-url"].route,
        1,
        "unsupported download URL ftp://***@cdn.test/c.tgz",
    ),
    "export-legacy-health": CliRow(
        _export("registries:\n  - {{name: Old, kind: pack, url: '{url}'}}\n"),
        ROWS["legacy-health-not-json"].route,
        1,
        "health check failed (503",
    ),
    "export-legacy-catalog": CliRow(
        _export("registries:\n  - {{name: Old, kind: pack, url: '{url}'}}\n"),
        _catalog_echo,
        1,
        "unrecognised catalog item",
    ),
    "usage-extra-argument": CliRow(
        lambda url, lab, tmp: ["verify", str(lab[1]), f"https://bob:{SECRET}@registry.test"],
        _nothing,
        2,
        "Got unexpected extra argument (https://***@registry.test)",
    ),
    "usage-bad-value": CliRow(
        lambda url, lab, tmp: ["import", str(lab[1]), "--target", url, "--jobs", f"token={SECRET}"],
        _nothing,
        2,
        "Invalid value for '--jobs'",
    ),
    "export-upstream-userinfo": CliRow(
        _export(
            "registries:\n  - {{name: Lab, kind: oci, url: '{lab}'}}\n"
            "upstreams:\n  ghcr.io: 'http://bob:{secret}@127.0.0.1:1/ghcr.io'\n"
        ),
        _nothing,
        2,
        "/upstreams/ghcr.io: credentials don't belong in a url",
    ),
}


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
@pytest.mark.parametrize("name", sorted(CLI_ROWS))
def test_each_error_path_keeps_the_secret_off_stderr(
    name: str,
    debug: bool,
    lab: tuple[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    row = CLI_ROWS[name]
    monkeypatch.setenv("PALETTE_API_KEY", SECRET)
    monkeypatch.setattr("mirror.registry.retry.time.sleep", lambda s: None)
    with serving(row.route) as url:
        argv = row.argv(url, lab, tmp_path)
        run = mirror(*(["--debug"] if debug else []), *argv)
    assert run.rc == row.code, run.err
    assert SECRET not in run.err + run.out and BASIC not in run.err + run.out, run.err
    last = run.err.strip().splitlines()[-1]
    assert last.startswith("mirror: error: ") and row.shows in last, run.err
    if debug:
        assert "Traceback" in run.err
