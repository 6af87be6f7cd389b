"""A loopback HTTP proxy in front of a real lab registry that injects faults on request.

The registry stays real (its answers, its Location headers, its digests); the proxy only
bends what a test asks it to: a status N times, a flipped byte, a cut-off body, a slow or
hanging answer, a manifest rewritten to an unknown media type. It also logs every request,
so a test can prove what the client did not do (fetch a blob in a dry run, re-upload one).

It forwards the Host header unchanged, so the registry builds upload Locations that point
back at the proxy. Responses are HTTP/1.0 with `Connection: close`: simple and unambiguous.

`strict_ranges=True` makes the proxy hold chunked uploads to the OCI distribution spec, which
Distribution 2.8 does not: each PATCH must say `Content-Range: START-END` where START is the
next byte of that upload session and END = START + its body's length - 1 (inclusive). Any
other PATCH is answered `416 Range Not Satisfiable`, is not forwarded, and is recorded in
`proxy.range_errors`.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest

ACTIONS = (
    "status",
    "corrupt",
    "truncate",
    "slow",
    "hang",
    "rewrite",
    "drop",
    "mangle",
    "cut",
    "overlong",
    "relocate",
    "paginate",
)
_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "te"}
UNKNOWN_MEDIA_TYPE = "application/vnd.example.unknown.manifest.v1+json"
BLOB_GET = r"/blobs/sha256:"
UPLOAD = r"/blobs/uploads/"
MANIFEST = r"/manifests/"


@dataclass
class Fault:
    """One rule. `path` is a regex searched in the request path; `times=None` is forever.

    - status:   answer `status` without forwarding (401 carries a Basic challenge), with
                `body` if given, else a registry error naming the status;
    - corrupt:  forward, then flip one byte in the middle of the body (length kept);
    - truncate: forward, declare the full length, send half the body, close;
    - slow:     forward after `delay` seconds, then send the body in slices, `delay` apart;
    - hang:     sleep `delay` seconds before forwarding;
    - rewrite:  answer a manifest GET with a manifest of an unknown media type;
    - drop:     close the connection without answering;
    - mangle:   flip one byte in the middle of the request's body, then forward it;
    - cut:      forward only the first half of the request's body (an upload cut short);
    - overlong: forward, then send the body with `extra` bytes after it (length to match);
    - relocate: forward, then point the answer's Location at `to` (`HOST:PORT`) instead;
    - paginate: a tag list of at most `page` tags after the client's `last`, with a `Link`
                to the next page, as registries that cap `n` do (Distribution 2.8 answers
                every tag at once and ignores `n` on tags/list; it paginates `_catalog`).
    """

    action: str
    method: str | None = None
    path: str = ""
    times: int | None = None
    status: int = 503
    delay: float = 0.0
    hits: int = 0
    retry_after: str = "0"  # what a 429 says
    extra: bytes = b"EXTRA"  # what `overlong` sends after the body
    to: str = ""  # where `relocate` sends the client
    page: int = 1  # tags per page for `paginate`
    body: bytes = b""  # what `status` answers, when not the usual error JSON

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method is not None and self.method != method:
            return False
        return re.search(self.path, path) is not None


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    status: int


@dataclass
class _State:
    upstream: tuple[str, int]
    faults: list[Fault] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    strict_ranges: bool = False
    offsets: dict[str, int] = field(default_factory=dict)  # upload session -> next byte
    range_errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    idle: threading.Condition = field(default_factory=threading.Condition)
    in_flight: int = 0
    arrived: int = 0  # requests since the last clear(), in arrival order
    hold_after: int | None = None  # requests past this many are held, never answered
    held: int = 0
    release: threading.Event = field(default_factory=threading.Event)

    def settle(self, timeout: float) -> bool:
        """Wait for requests already inside the proxy; they still reach the registry."""
        with self.idle:
            return self.idle.wait_for(lambda: self.in_flight == 0, timeout)


class FaultProxy:
    """`with FaultProxy.running(upstream_url) as proxy:`; `proxy.url` is what clients use."""

    def __init__(self, upstream: str, *, strict_ranges: bool = False) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise ValueError(f"upstream must be http://HOST:PORT, got {upstream!r}")
        self.state = _State((parts.hostname, parts.port), strict_ranges=strict_ranges)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="faultproxy", daemon=True
        )

    @classmethod
    @contextmanager
    def running(cls, upstream: str, *, strict_ranges: bool = False) -> Iterator[FaultProxy]:
        proxy = cls(upstream, strict_ranges=strict_ranges)
        proxy._thread.start()
        try:
            yield proxy
        finally:
            proxy.state.release.set()  # held requests end (unanswered) before shutdown
            proxy._server.shutdown()
            proxy._server.server_close()
            proxy._thread.join(5)
            # A killed client's last PUT may sit in a `slow` fault and land later; Distribution
            # writes link files in place, so a check racing that write would read half a file.
            assert proxy.state.settle(30), "a request stayed in the fault proxy for 30 s"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def add(self, action: str, **kwargs: Any) -> Fault:
        if action not in ACTIONS:
            raise ValueError(f"unknown fault {action!r}")
        fault = Fault(action, **kwargs)
        with self.state.lock:
            self.state.faults.append(fault)
        return fault

    def clear(self) -> None:
        """Drop every fault and forget the request log (and, strict, the upload offsets)."""
        with self.state.lock:
            self.state.faults.clear()
            self.state.seen.clear()
            self.state.offsets.clear()
            self.state.range_errors.clear()
            self.state.arrived = self.state.held = 0
            self.state.hold_after = None
            held, self.state.release = self.state.release, threading.Event()
        held.set()  # whatever an earlier hold kept waiting ends now

    def hold_after(self, n: int) -> None:
        """Answer the next N requests, then hold every later one unanswered until clear():
        a process killed at that moment has had exactly N requests answered."""
        with self.state.lock:
            self.state.hold_after = self.state.arrived + n

    @property
    def held(self) -> int:
        with self.state.lock:
            return self.state.held

    @property
    def arrived(self) -> int:
        with self.state.lock:
            return self.state.arrived

    @property
    def range_errors(self) -> list[str]:
        """Strict mode: every PATCH refused with 416, and why."""
        with self.state.lock:
            return list(self.state.range_errors)

    def paths(self, method: str, path: str = "") -> list[str]:
        """The request paths seen, in order, for a method and a path regex."""
        with self.state.lock:
            return [
                s.path for s in self.state.seen if s.method == method and re.search(path, s.path)
            ]

    def seen(self, method: str | None = None, path: str = "", status: int | None = None) -> int:
        with self.state.lock:
            return sum(
                1
                for s in self.state.seen
                if (method is None or s.method == method)
                and re.search(path, s.path)
                and (status is None or s.status == status)
            )


class _Handler(BaseHTTPRequestHandler):
    state: _State
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _handle(self) -> None:
        with self.state.idle:
            self.state.in_flight += 1
        try:
            self._handle_counted()
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (a read timeout, a kill): the proxy says nothing on stderr,
            # which an in-process `mirror()` captures as its own.
            self.close_connection = True
        finally:
            with self.state.idle:
                self.state.in_flight -= 1
                self.state.idle.notify_all()

    def _handle_counted(self) -> None:
        body = self._read_body()
        if self._hold(body):
            return
        strict = self.state.strict_ranges and self.command == "PATCH"
        if strict and not self._range_ok(body):
            return
        fault = self._take_fault()
        action = fault.action if fault else ""
        if action == "mangle" and body:
            mid = len(body) // 2
            body = body[:mid] + bytes([body[mid] ^ 0xFF]) + body[mid + 1 :]
        if action == "cut" and body:
            body = body[: len(body) // 2]
        if fault and action == "status":
            self._answer_status(fault.status, fault.retry_after, fault.body)
            return
        if fault and action == "drop":
            self._log(0)
            self.close_connection = True
            return
        # A slow GET sends its body in slices (below); anything else waits before forwarding.
        if fault and (action == "hang" or (action == "slow" and self.command != "GET")):
            time.sleep(fault.delay)
        if fault and action == "paginate" and self.command == "GET":
            self._paginate(fault.page)
            return
        status, headers, payload = self._forward(body)
        if fault and action == "overlong":
            payload += fault.extra
        if fault and action == "relocate":
            headers = [
                (k, _relocated(v, fault.to) if k.lower() == "location" else v) for k, v in headers
            ]
        if strict:
            self._took_chunk(status, headers, len(body))
        if fault and action == "rewrite" and self.command == "GET" and status == 200:
            payload, headers = _unknown_manifest(headers)
        if fault and action == "corrupt" and len(payload) > 0:
            mid = len(payload) // 2
            payload = payload[:mid] + bytes([payload[mid] ^ 0xFF]) + payload[mid + 1 :]
        self._log(status)
        self._send(status, headers, payload, fault)

    def _hold(self, body: bytes) -> bool:
        """Past hold_after: hold the request until clear() or shutdown, then close.

        A GET is forwarded and half its body sent first, so a client killed meanwhile dies
        in the middle of writing what it was downloading; anything else is held unsent.
        """
        with self.state.lock:
            self.state.arrived += 1
            gate, release = self.state.hold_after, self.state.release
            held = gate is not None and self.state.arrived > gate
            self.state.held += held
        if not held:
            return False
        if self.command == "GET":
            status, headers, payload = self._forward(body)
            self._log(status)
            self._send(status, headers, payload, Fault("truncate"), flush_only=True)
        release.wait(60)
        self.close_connection = True
        return True

    def _paginate(self, page: int) -> None:
        """The registry's whole tag list, answered a page at a time with a `Link`."""
        path, _, query = self.path.partition("?")
        status, headers, payload = self._forward(b"", path)
        if status != 200:
            self._log(status)
            self._send(status, headers, payload, None)
            return
        doc = json.loads(payload)
        tags = sorted(doc.get("tags") or [])
        last = parse_qs(query).get("last", [""])[0]
        rest = [t for t in tags if t > last] if last else tags
        doc["tags"] = rest[:page]
        keep = [(k, v) for k, v in headers if k.lower() not in ("link", "content-type")]
        keep.append(("Content-Type", "application/json"))
        if len(rest) > page:
            after = urlencode({"n": page, "last": rest[page - 1]})
            keep.append(("Link", f'<{path}?{after}>; rel="next"'))
        self._log(200)
        self._send(200, keep, json.dumps(doc).encode(), None)

    def _range_ok(self, body: bytes) -> bool:
        """Strict mode: the OCI spec's rule for a chunk; else a 416, not forwarded."""
        session = self.path.split("?", 1)[0]
        header = self.headers.get("Content-Range")
        with self.state.lock:
            start = self.state.offsets.get(session, 0)
        expected = f"{start}-{start + len(body) - 1}"
        if body and header is not None and header.strip() == expected:
            return True
        with self.state.lock:
            self.state.range_errors.append(
                f"PATCH {session}: Content-Range {header!r}, expected {expected!r}"
            )
        self._answer_range_error(start, session)
        return False

    def _took_chunk(self, status: int, headers: list[tuple[str, str]], size: int) -> None:
        """The registry took a chunk: its session (and where the answer moves it) goes on.

        A session is the upload's path without its query; Distribution moves only `_state`
        in the query on every answer, but a registry may move the path too.
        """
        if status != 202:
            return
        session = self.path.split("?", 1)[0]
        location = next((v for k, v in headers if k.lower() == "location"), "")
        with self.state.lock:
            offset = self.state.offsets.get(session, 0) + size
            self.state.offsets[session] = offset
            moved = urlsplit(location).path
            if moved:
                self.state.offsets[moved] = offset

    def _answer_range_error(self, start: int, session: str) -> None:
        payload = json.dumps(
            {"errors": [{"code": "RANGE_INVALID", "message": "chunk out of order"}]}
        ).encode()
        self._log(416)
        self.send_response_only(416)
        self.send_header("Location", session)
        self.send_header("Range", f"0-{max(start - 1, 0)}")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)

    def _take_fault(self) -> Fault | None:
        path = self.path.split("?", 1)[0]
        with self.state.lock:
            for fault in self.state.faults:
                if fault.matches(self.command, path):
                    fault.hits += 1
                    return fault
        return None

    def _log(self, status: int) -> None:
        with self.state.lock:
            self.state.seen.append(Seen(self.command, self.path, status))

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _forward(
        self, body: bytes, path: str | None = None
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self.state.upstream, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            headers.pop("Content-Length", None)
            if body or self.command in ("PUT", "POST", "PATCH"):
                headers["Content-Length"] = str(len(body))
            conn.request(self.command, path or self.path, body=body, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
            return resp.status, [(k, v) for k, v in resp.getheaders()], payload
        finally:
            conn.close()

    def _answer_status(self, status: int, retry_after: str = "0", body: bytes = b"") -> None:
        payload = (
            body
            or json.dumps(
                {"errors": [{"code": "INJECTED", "message": f"injected {status}"}]}
            ).encode()
        )
        self._log(status)
        self.send_response_only(status)
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="faultproxy"')
        if status == 429:
            self.send_header("Retry-After", retry_after)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _send(
        self,
        status: int,
        headers: list[tuple[str, str]],
        payload: bytes,
        fault: Fault | None,
        *,
        flush_only: bool = False,
    ) -> None:
        action = fault.action if fault else ""
        self.send_response_only(status)
        for key, value in headers:
            if key.lower() in _HOP or (key.lower() == "content-length" and self.command != "HEAD"):
                continue
            self.send_header(key, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        if action == "truncate":
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = not flush_only
            return
        if action == "slow" and fault is not None:
            step = max(1, len(payload) // 4)
            for start in range(0, len(payload), step):
                time.sleep(fault.delay / 4)
                self.wfile.write(payload[start : start + step])
                self.wfile.flush()
            return
        self.wfile.write(payload)


def _relocated(location: str, to: str) -> str:
    """The same upload URL (a relative one made absolute) on another HOST:PORT."""
    parts = urlsplit(location)
    return urlunsplit(("http", to, parts.path, parts.query, parts.fragment))


def _unknown_manifest(headers: list[tuple[str, str]]) -> tuple[bytes, list[tuple[str, str]]]:
    """A well-formed manifest of a media type nobody knows, with a digest that matches it."""
    payload = json.dumps({"schemaVersion": 2, "mediaType": UNKNOWN_MEDIA_TYPE}).encode()
    digest = "sha256:" + hashlib.sha256(payload).hexdigest()
    keep = [
        (k, v)
        for k, v in headers
        if k.lower() not in ("content-type", "docker-content-digest", "etag")
    ]
    return payload, [*keep, ("Content-Type", UNKNOWN_MEDIA_TYPE), ("Docker-Content-Digest", digest)]


# ---- helpers the end-to-end tests share --------------------------------------------------

ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)


@dataclass(frozen=True)
class Run:
    """One in-process `mirror` invocation: exit code, stdout, stderr."""

    rc: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout must be exactly one JSON document."""
        return json.loads(self.out)

    def error_line(self) -> str:
        """The one line of error, after checking there is exactly one and no traceback."""
        lines = [line for line in self.err.splitlines() if line.strip()]
        assert "Traceback" not in self.err, self.err
        assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{self.err}"
        assert lines[0].startswith("mirror: error: "), lines[0]
        return lines[0]


def mirror(*argv: object) -> Run:
    """Call `mirror.cli.main` in-process with stdout and stderr captured."""
    import contextlib
    import io

    from mirror.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return Run(rc, out.getvalue(), err.getvalue())


def write_spec(
    path: Path,
    url: str,
    *,
    base: str = "production",
    extra: str = "",
    repositories: Sequence[str] = (),
    provider: str | None = "pack",
) -> Path:
    """The brief's lab spec: one OCI registry at URL under BASE, optionally only REPOSITORIES
    (globs allowed); `extra` adds YAML to the registry entry: `, tags: {...}`."""
    fields = f'name: Lab, kind: oci, url: "{url}", basePath: {base}'
    if provider:
        fields += f", providerType: {provider}"
    if repositories:
        fields += f", repositories: [{', '.join(repr(r) for r in repositories)}]"
    from mirror.lab.upstream import upstreams_yaml

    # The corpus packs' images live in the same lab registry under their hosts' names.
    path.write_text(f"name: t\nregistries: [{{{fields}{extra}}}]\n{upstreams_yaml(url)}")
    return path


class Reg:
    """Just enough of the registry API to check what a target holds, independent of mirror."""

    def __init__(
        self, url: str, *, verify: bool | str = True, auth: tuple[str, str] | None = None
    ) -> None:
        import requests

        self.url = url
        self.s = requests.Session()
        self.s.trust_env = False  # else REQUESTS_CA_BUNDLE silently overrides `verify`
        self.s.verify = verify
        self.s.auth = auth

    def catalog(self) -> list[str]:
        resp = self.s.get(f"{self.url}/v2/_catalog?n=1000", timeout=10)
        resp.raise_for_status()
        return list(resp.json().get("repositories") or [])

    def tags(self, repo: str) -> list[str]:
        resp = self.s.get(f"{self.url}/v2/{repo}/tags/list", timeout=10)
        if resp.status_code == 404:
            return []
        resp.raise_for_status()
        return list(resp.json().get("tags") or [])

    def manifest(self, repo: str, ref: str) -> tuple[str, str, bytes] | None:
        """(digest, media type, bytes) or None; the digest is computed, not trusted."""
        url = f"{self.url}/v2/{repo}/manifests/{ref}"
        for pause in (0.2, 0.5, 0.0):
            resp = self.s.get(url, headers={"Accept": ACCEPT}, timeout=10)
            # Distribution rewrites a link file in place (truncate, then write), so a read
            # that meets a write of the same tag answers 500 for a moment. A 404 is the
            # answer that matters here, and a lasting 500 still fails below.
            if resp.status_code < 500 or not pause:
                break
            time.sleep(pause)
        if resp.status_code == 404:
            return None
        if resp.status_code >= 500:
            raise AssertionError(f"{repo}@{ref}: HTTP {resp.status_code}: {resp.text[:300]}")
        resp.raise_for_status()
        digest = "sha256:" + hashlib.sha256(resp.content).hexdigest()
        return digest, resp.headers.get("Content-Type", ""), resp.content

    def digest(self, repo: str, ref: str) -> str | None:
        got = self.manifest(repo, ref)
        return got[0] if got else None

    def blob_ok(self, repo: str, digest: str) -> bool:
        resp = self.s.head(f"{self.url}/v2/{repo}/blobs/{digest}", timeout=10)
        return resp.status_code == 200

    def graph_blobs(self, repo: str, ref: str) -> tuple[set[str], set[str]]:
        """(child manifest digests, blob digests) under a manifest; raises if one is missing."""
        got = self.manifest(repo, ref)
        if got is None:
            raise AssertionError(f"{repo}@{ref}: manifest missing")
        doc = json.loads(got[2])
        manifests: set[str] = set()
        blobs: set[str] = set()
        for child in doc.get("manifests") or []:
            manifests.add(child["digest"])
            more_m, more_b = self.graph_blobs(repo, child["digest"])
            manifests |= more_m
            blobs |= more_b
        for desc in ([doc["config"]] if "config" in doc else []) + (doc.get("layers") or []):
            blobs.add(desc["digest"])
        return manifests, blobs

    def dangling(self, prefix: str = "") -> list[str]:
        """Every tag whose manifest, child manifest or blob does not answer: should be none
        (in the repositories whose names start with PREFIX)."""
        problems = []
        for repo in (r for r in self.catalog() if r.startswith(prefix)):
            for tag in self.tags(repo):
                try:
                    _, blobs = self.graph_blobs(repo, tag)
                except AssertionError as exc:
                    problems.append(str(exc))
                    continue
                problems += [
                    f"{repo}:{tag} -> {b}" for b in sorted(blobs) if not self.blob_ok(repo, b)
                ]
        return problems


@contextmanager
def isolated_env(
    tmp_path_factory: pytest.TempPathFactory,
    *,
    set_env: dict[str, str] | None = None,
    drop: tuple[str, ...] = (),
) -> Iterator[None]:
    """A module's environment: no docker config, cache, catalog or target credentials of
    the machine running the tests leaks in; `set_env` and `drop` adjust the rest."""
    home = tmp_path_factory.mktemp("home")
    (home / "docker").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOCKER_CONFIG", str(home / "docker"))
        mp.setenv("XDG_CACHE_HOME", str(home / "cache"))
        mp.setenv("XDG_DATA_HOME", str(home / "data"))
        mp.setenv("XDG_CONFIG_HOME", str(home / "config"))  # Helm's logins and repositories
        mp.setenv("XDG_RUNTIME_DIR", str(home / "run"))  # podman's logins
        for key, value in (set_env or {}).items():
            mp.setenv(key, value)
        for name in ("MIRROR_TARGET_USERNAME", "MIRROR_TARGET_PASSWORD", *drop):
            mp.delenv(name, raising=False)
        yield


def export_chain_start(url: str, work: Path) -> Path:
    """The first bundle of an `export --state` chain of the packs at `url`, unsigned."""
    from mirror.cli import main

    spec = write_spec(work / "s.yaml", url, repositories=["spectro-packs/archive/*"])
    out = work / "b-{seq}.tar.zst"
    args = ["export", str(spec), "-o", str(out), "--state", str(work / "state")]
    assert main([*args, "--cache-dir", str(work / "c")]) == 0
    (bundle,) = work.glob("b-*.tar.zst")
    return bundle
