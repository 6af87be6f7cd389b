"""`mirror serve` against hostile clients (the stop-30 sweep of serve): a trickled request
head, an endless header, numbers past int()'s limit, a forged log line, and a bundle that
changes while a blob streams.
"""

from __future__ import annotations

import contextlib
import io
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from mirror.errors import IntegrityError
from mirror.serve.server import AccessLog, Server


def _app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Length", "2")])
    return [b"{}"]


@contextmanager
def _serving(app: Any = _app, **options: Any) -> Iterator[tuple[str, int, Server]]:
    server = Server(app, "127.0.0.1", 0, **options)
    stop = threading.Event()
    runner = threading.Thread(target=server.run, args=(stop,), daemon=True)
    runner.start()
    try:
        yield (*server.address, server)
    finally:
        stop.set()
        runner.join(30)


def _ask(host: str, port: int, raw: bytes, timeout: float = 5) -> bytes:
    with socket.create_connection((host, port), timeout=timeout) as s:
        with contextlib.suppress(OSError):  # the server may answer and close before the end
            s.sendall(raw)
            s.shutdown(socket.SHUT_WR)
        out = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(65536):
                out += chunk
    return out


def test_a_request_head_past_64_kib_is_refused_not_buffered() -> None:
    """cheroot's header limit was 0 (none): 400 MB of one header took 570 MB of RSS."""
    with _serving() as (host, port, _):
        big = b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * (100 << 10) + b"\r\n\r\n"
        assert _ask(host, port, big).startswith(b"HTTP/1.1 413")
        path = b"GET /v2/" + b"a" * (100 << 10) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        assert _ask(host, port, path).startswith(b"HTTP/1.1 414")
        assert _ask(host, port, b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n").endswith(b"{}")


def test_a_trickled_request_head_is_cut_at_its_deadline() -> None:
    """A byte every few seconds reset cheroot's per-read timeout for ever; the whole head
    now has a deadline, and the server answers others meanwhile."""
    with _serving(head_deadline=1.0) as (host, port, _):
        slow = socket.create_connection((host, port), timeout=10)
        slow.sendall(b"GET /v2/ HTTP/1.1\r\nX-a: ")
        began, closed = time.monotonic(), False
        while time.monotonic() - began < 8:
            try:
                slow.sendall(b"a")
                if slow.recv(1, socket.MSG_DONTWAIT) == b"":
                    closed = True
                    break
            except BlockingIOError:
                pass
            except OSError:
                closed = True
                break
            time.sleep(0.2)
        slow.close()
        assert closed and time.monotonic() - began < 4
        assert _ask(host, port, b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n").endswith(b"{}")


def test_an_access_log_line_cannot_be_forged_by_a_path() -> None:
    from mirror.serve.server import common_log_line

    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": '/v2/x\r\n10.6.6.6 - - [x] "GET /forged HTTP/1.1" 200 1\x00\x1b[31m',
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
    }
    line = common_log_line(environ, "404", 10)
    assert "\n" not in line and "\r" not in line and "\x00" not in line and "\x1b" not in line
    assert '\\x0d\\x0a10.6.6.6 - - [x] \\"GET /forged' in line and line.endswith('" 404 10')
    # A path's %9B (C1's escape) and %E2%80%AE (U+202E reorders what follows) too.
    environ["PATH_INFO"] = "/v2/\x9b2J/\u202eflipped"
    assert "\\x9b2J/\\u202eflipped" in common_log_line(environ, "404", 10)


class _Store:
    """What RegistryApp asks of a ServedStore for one blob; changed after `good` looks."""

    def __init__(self, data: bytes, good: int) -> None:
        self.data, self.good, self.looks = data, good, 0

    def check_unchanged(self) -> None:
        self.looks += 1
        if self.looks > self.good:
            raise IntegrityError("bundle: changed since it was verified; restart mirror serve")

    def size_of(self, digest: str) -> int:
        return len(self.data)

    @contextmanager
    def open_blob(self, digest: str) -> Iterator[io.BytesIO]:
        self.check_unchanged()
        yield io.BytesIO(self.data)


@pytest.mark.parametrize("ranged", [False, True], ids=["whole", "range"])
def test_a_bundle_changed_mid_stream_cuts_the_response_before_its_last_chunk(
    ranged: bool,
) -> None:
    """A range of a blob changed on disk while it streamed went out whole, as a 206 no
    digest could judge. The stamp is looked at again before the last chunk: the body is
    cut short (the server drops the connection) and the log line says why."""
    from mirror.serve.app import CHUNK, RegistryApp

    store = _Store(b"x" * (3 * CHUNK), good=2)  # _stream's look and open_blob's pass
    logged: list[str] = []
    log = AccessLog(RegistryApp(store), logged.append)  # type: ignore[arg-type]
    environ = {"REQUEST_METHOD": "GET", "HTTP_RANGE": "bytes=0-" if ranged else ""}
    resp = log.app._stream("sha256:x", "application/octet-stream", environ)
    assert resp.status.startswith("206" if ranged else "200")
    got: list[bytes] = []
    with pytest.raises(IntegrityError, match="changed since it was verified"):
        for chunk in log._logged(resp.body, environ, [resp.status[:3]]):
            got.append(chunk)
    assert 0 < sum(map(len, got)) < 3 * CHUNK
    assert "cut short: bundle: changed" in logged[-1]


_HEAD = b"GET /v2/ HTTP/1.1\r\nHost: x\r\n"


@pytest.mark.parametrize(
    ("raw", "refused"),
    [
        (_HEAD + b"Content-Length: 41\r\nContent-Length: 0\r\n\r\nGET /v2/ HTTP/1.1\r\n", True),
        (_HEAD + b"Host: y\r\n\r\n", True),
        (_HEAD + b"host: x\r\n\r\n", True),
        (_HEAD + b"Content-Length : 0\r\n\r\n", True),
        (_HEAD + b"X-A: 1\r\n 2\r\n\r\n", True),
        (_HEAD + b"Content-Length: 0\r\nContent-Length: 0\r\n\r\n", False),
        (_HEAD + b"Accept: a\r\nAccept: b\r\n\r\n", False),
    ],
    ids=["two-lengths", "two-hosts", "host-again", "space-colon", "folded", "same-length", "lists"],
)
def test_heads_that_frame_two_ways_are_refused_and_the_connection_closed(
    raw: bytes, refused: bool
) -> None:
    """cheroot kept the last Content-Length and Host and took `Content-Length :` as the
    field: a proxy reading the first would forward one request where serve saw two
    (RFC 9112 3.2, 5.1, 5.2, 6.3 say 400; docker-registry answers 400)."""
    with _serving() as (host, port, _):
        statuses = re.findall(rb"HTTP/1\.1 (\d{3})", _ask(host, port, raw))
    assert statuses == ([b"400"] if refused else [b"200"]), statuses


@pytest.mark.parametrize(
    ("query", "status"),
    [("n=%C2%B2", "400"), ("n=" + "9" * 5000, "200"), ("n=%D9%A3", "400"), ("n=7", "200")],
    ids=["superscript", "5000-digits", "arabic-indic", "plain"],
)
def test_page_sizes_are_ascii_numbers_of_any_length(query: str, status: str) -> None:
    from mirror.serve.app import RegistryApp

    class Empty:
        repos: dict[str, Any] = {}

    seen: list[str] = []
    app = RegistryApp(Empty())  # type: ignore[arg-type]
    body = app({"REQUEST_METHOD": "GET", "PATH_INFO": "/v2/_catalog", "QUERY_STRING": query},
               lambda s, h: seen.append(s))  # fmt: skip
    assert seen[0].startswith(status), (seen, b"".join(body))


@pytest.mark.parametrize("n", ["1", "01", "0000001", "0" * 5000 + "1"])
def test_leading_zeros_do_not_lift_the_page_size(n: str) -> None:
    """n=0000001 is one: it was read as no limit (every name, no Link) for being long."""
    import json

    from mirror.serve.app import RegistryApp

    class Three:
        repos: dict[str, Any] = {"a": None, "b": None, "c": None}

    heads: list[tuple[str, list[tuple[str, str]]]] = []
    app = RegistryApp(Three())  # type: ignore[arg-type]
    query = f"n={n}"
    body = app({"REQUEST_METHOD": "GET", "PATH_INFO": "/v2/_catalog", "QUERY_STRING": query},
               lambda s, h: heads.append((s, h)))  # fmt: skip
    assert json.loads(b"".join(body)) == {"repositories": ["a"]}
    assert ("Link", '</v2/_catalog?n=1&last=a>; rel="next"') in heads[0][1]


def test_a_range_of_5000_digits_is_ignored_not_a_500() -> None:
    from mirror.serve.app import _range

    assert _range("bytes=" + "9" * 5000 + "-", 10) is None
    assert _range("bytes=0-" + "9" * 5000, 10) is None
    assert _range("bytes=2-4", 10) == (2, 5)


def test_whatever_a_route_raises_is_an_oci_error_not_a_traceback() -> None:
    from mirror.serve.app import RegistryApp

    class Broken:
        @property
        def repos(self) -> dict[str, Any]:
            raise KeyError("surprise")

    seen: list[str] = []
    app = RegistryApp(Broken())  # type: ignore[arg-type]
    body = b"".join(app({"REQUEST_METHOD": "GET", "PATH_INFO": "/v2/_catalog"},
                        lambda s, h: seen.append(s)))  # fmt: skip
    assert seen[0].startswith("500") and b'"UNKNOWN"' in body and b"KeyError" in body


def test_a_silent_client_does_not_hold_the_tls_acceptor(tmp_path: Path) -> None:
    """cheroot shook hands on accept, with its 60 s timeout: one client that connected and
    said nothing kept every other TLS client waiting 59.7 s. The handshake now runs on the
    worker, under the head deadline."""
    import ssl

    from mirror.lab.certs import write_certs

    certs = write_certs(tmp_path / "certs")
    server = Server(_app, "127.0.0.1", 0, tls=(certs.cert_file, certs.key_file))
    stop = threading.Event()
    runner = threading.Thread(target=server.run, args=(stop,), daemon=True)
    runner.start()
    host, port = server.address
    silent = [socket.create_connection((host, port)) for _ in range(3)]
    try:
        time.sleep(0.3)
        ctx = ssl.create_default_context(cafile=str(certs.ca_file))
        with (
            socket.create_connection((host, port), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
            assert tls.recv(64).startswith(b"HTTP/1.1 200")
    finally:
        for s in silent:
            s.close()
        stop.set()
        runner.join(30)


@pytest.mark.parametrize(
    ("raw", "answer"),
    [
        (b"GET /v2/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"5\r\nhello\r\n0\r\n\r\nGET /v2/_catalog HTTP/1.1\r\nHost: x\r\n\r\n", b"400"),
        (b"GET /v2/ HTTP/1.1\r\n\r\n", b"400"),
        (b"GET /v2/ HTTP/1.0\r\n\r\n", b"200"),
        (b"GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd", b"200"),
    ],
    ids=["chunked-get", "no-host", "http-1.0", "sized-body"],
)  # fmt: skip
def test_a_body_cheroot_would_leave_on_the_connection_is_refused(raw: bytes, answer: bytes) -> None:
    """cheroot drains a Content-Length body but leaves a chunked one unread on a kept
    connection, where it was parsed as the next request (a desync behind a proxy). Such a
    request, and HTTP/1.1 without Host, is a 400 and the connection closes."""
    with _serving() as (host, port, _):
        reply = _ask(host, port, raw)
    assert reply.startswith(b"HTTP/1.1 " + answer), reply[:80]
    assert len(re.findall(rb"(?:^|\r\n)HTTP/1\.1 \d{3} ", reply)) == 1  # one answer, no second


def test_the_printed_mirror_config_names_a_host_other_nodes_can_reach(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Listening on 0.0.0.0, the configuration named socket.getfqdn(), which is `localhost`
    where /etc/hosts maps the hostname to 127.0.0.1: containerd elsewhere would pull from
    itself. --advertise names the host; without it, a loopback name is said to be one."""
    from mirror.errors import UsageError
    from mirror.serve.server import ServeOptions, advertised_host, check_options

    opts = ServeOptions(bundle=Path("b"), pub=None, listen="0.0.0.0:5000")
    monkeypatch.setattr("socket.getfqdn", lambda: "localhost")
    assert advertised_host(opts, "0.0.0.0") == ("localhost", False)
    monkeypatch.setattr("socket.getfqdn", lambda: "node-7.lab")
    assert advertised_host(opts, "0.0.0.0") == ("node-7.lab", True)
    assert advertised_host(opts, "127.0.0.1") == ("127.0.0.1", False)
    chosen = ServeOptions(bundle=Path("b"), pub=None, listen="0.0.0.0:5000", advertise="[fd00::7]")
    assert advertised_host(chosen, "0.0.0.0") == ("fd00::7", True)
    for bad in ("http://x", "x:5000", "a b", ""):
        with pytest.raises(UsageError, match="--advertise"):
            check_options(ServeOptions(bundle=Path("b"), pub=None, advertise=bad or " "))
