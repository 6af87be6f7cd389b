"""The wire: plain requests on http.client, against a scripted loopback server that shows
what arrived on which connection. Registries, TLS and trickles over the wire are covered by
the real-registry tests (test_export_tls, test_trickle, the e2e suites)."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mirror.errors import RegistryError
from mirror.registry.http import Endpoint, Http
from mirror.registry.retry import RetryPolicy
from mirror.registry.wire import SMALL_BODY, plain_url
from mirror.streams import LimitedReader


@dataclass
class Arrived:
    conn: int
    line: str
    headers: dict[str, str]
    body: bytes


Answer = Callable[[Arrived], bytes | Iterator[bytes]]
HANG_UP = b"x-then: hang-up"  # an answer's header: the server closes after it, unannounced


@dataclass
class Server:
    url: str
    arrived: list[Arrived] = field(default_factory=list)

    @property
    def connections(self) -> int:
        return len({a.conn for a in self.arrived})


def _read_request(f: io.BufferedReader, conn: int) -> Arrived | None:
    line = f.readline().decode("latin-1").strip()
    if not line:
        return None
    headers: dict[str, str] = {}
    while (h := f.readline().decode("latin-1")) not in ("\r\n", "\n", ""):
        name, _, value = h.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while size := int(f.readline().strip(), 16):
            body += f.read(size)
            f.readline()
        f.readline()
    else:
        body = f.read(int(headers.get("content-length", "0")))
    return Arrived(conn, line, headers, body)


@contextmanager
def scripted(answer: Answer) -> Iterator[Server]:
    """A keep-alive HTTP/1.1 server: each request is recorded, then answered with the
    bytes `answer` gives; an answer that says `Connection: close` ends its connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    server = Server(f"http://127.0.0.1:{listener.getsockname()[1]}")

    def serve(sock: socket.socket, conn: int) -> None:
        with contextlib.suppress(OSError), sock, sock.makefile("rb") as f:
            while (got := _read_request(f, conn)) is not None:
                server.arrived.append(got)
                out = answer(got)
                for piece in [out] if isinstance(out, bytes) else out:  # pieces: sent as made
                    sock.sendall(piece)
                head = out if isinstance(out, bytes) else b"..."
                if not head or any(h in head.lower() for h in (b"connection: close", HANG_UP)):
                    return

    def accept() -> None:
        n = 0
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            n += 1
            threading.Thread(target=serve, args=(sock, n), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield server
    finally:
        listener.close()


def ok(body: bytes = b"{}", *extra: str) -> bytes:
    head = [f"Content-Length: {len(body)}", *extra]
    return ("HTTP/1.1 200 OK\r\n" + "".join(f"{h}\r\n" for h in head) + "\r\n").encode() + body


def _http(server: Server) -> Http:
    return Http(Endpoint.parse(server.url), None)


def test_one_connection_carries_many_requests() -> None:
    with scripted(lambda a: ok(b'{"n": 1}')) as server:
        http = _http(server)
        for _ in range(20):
            assert http.request("GET", "/v2/").json() == {"n": 1}
        assert http.request("HEAD", "/v2/x").status_code == 200
        assert http.request("GET", "/v2/").json() == {"n": 1}  # after a HEAD's empty body
    assert len(server.arrived) == 22 and server.connections == 1


def test_a_connection_the_server_closed_is_not_reused() -> None:
    answers = iter([ok(b"1", "Connection: close"), ok(b"2"), ok(b"3")])
    with scripted(lambda a: next(answers)) as server:
        http = _http(server)
        assert [http.request("GET", "/a").content for _ in range(3)] == [b"1", b"2", b"3"]
    assert [a.conn for a in server.arrived] == [1, 2, 2]


def test_an_answer_left_half_read_takes_its_connection_with_it() -> None:
    big = bytes(range(256)) * 1024
    with scripted(lambda a: ok(big if a.line.startswith("GET /big") else b"small")) as server:
        http = _http(server)
        resp = http.request("GET", "/big", stream=True)
        assert resp.raw.read(10) == big[:10]
        resp.close()  # the other 262,134 bytes are never read
        assert http.request("GET", "/small").content == b"small"
    assert [a.conn for a in server.arrived] == [1, 2]


def test_a_connection_still_read_by_an_answer_is_not_sent_on() -> None:
    """The answer's body is still on its way (nothing waits in the socket to show it):
    another request goes on a new connection, and the first answer reads on undisturbed."""
    small_arrived = threading.Event()
    body = b"x" * 100_000

    def big() -> Iterator[bytes]:
        whole = ok(body)
        yield whole[: len(whole) - len(body) + 100]  # the head and what is read at once
        small_arrived.wait(5)
        yield body[100:]

    def answer(a: Arrived) -> bytes | Iterator[bytes]:
        if a.line.startswith("GET /small"):
            small_arrived.set()
            return ok(b"small")
        return big()

    with scripted(answer) as server:
        http = _http(server)
        held = http.request("GET", "/big", stream=True)
        assert held.raw.read(100) == body[:100]
        time.sleep(0.1)  # (nothing more comes until /small arrives)
        assert http.request("GET", "/small").content == b"small"
        assert held.raw.read() == body[100:]
    assert [a.conn for a in server.arrived] == [1, 2]


@pytest.mark.parametrize(
    "coding,encode",
    [
        ("gzip", gzip.compress),
        ("gzip", lambda b: gzip.compress(b[:5000]) + gzip.compress(b[5000:])),  # two members
        ("deflate", zlib.compress),
        ("deflate", lambda b: zlib.compress(b)[2:-4]),  # bare deflate, as some servers send
    ],
)
def test_encoded_answers_are_decoded_where_asked(coding: str, encode: Answer) -> None:
    doc = b"apiVersion: v1\nentries: {}\n" * 2000
    with scripted(lambda a: ok(encode(doc), f"Content-Encoding: {coding}")) as server:
        http = _http(server)
        assert http.request("GET", "/index.yaml", cap=1 << 20).content == doc
        resp = http.request("GET", "/index.yaml", stream=True)
        assert resp.raw.read(100, decode_content=True) == doc[:100]
        assert resp.raw.read(None, decode_content=True) == doc[100:]
        raw = http.request("GET", "/index.yaml", stream=True).raw.read()  # as blobs are read
        assert raw == encode(doc)
    assert server.arrived[0].headers["accept-encoding"] == "gzip, deflate"


def test_a_broken_encoding_is_a_damaged_body_not_a_crash() -> None:
    broken = ok(b"not gzip at all", "Content-Encoding: gzip")
    words = r"cut off \(DecodeError\) \(after 3 tries\)"
    with scripted(lambda a: broken) as server, pytest.raises(RegistryError, match=words):
        _http(server).request("GET", "/index.yaml")


def test_bodies_go_with_their_length_never_chunked() -> None:
    small, large = b"s" * 4096, b"L" * (SMALL_BODY + 1)
    with scripted(lambda a: ok(b"", "Location: /up")) as server:
        http = _http(server)
        http.request("PUT", "/a", data=LimitedReader(io.BytesIO(small), len(small)))
        http.request("PUT", "/b", data=LimitedReader(io.BytesIO(large), len(large)))
        http.request("PUT", "/c", data=small)
        http.request("POST", "/d")
        http.request("GET", "/e")
    assert [a.body for a in server.arrived[:3]] == [small, large, small]
    assert [a.headers.get("content-length") for a in server.arrived] == [
        "4096",
        str(len(large)),
        "4096",
        "0",
        None,
    ]
    assert not any("transfer-encoding" in a.headers for a in server.arrived)


def test_a_body_of_unknown_length_still_goes_through_requests() -> None:
    with scripted(lambda a: ok()) as server:
        _http(server).request("PUT", "/a", data=iter([b"ab", b"cd"]))
    assert server.arrived[0].body == b"abcd"
    assert server.arrived[0].headers["transfer-encoding"] == "chunked"


def test_repeated_answer_fields_are_joined_as_urllib3_joins_them() -> None:
    links = ok(b"{}", "Link: </a>; rel=next", "Link: </b>; rel=prev", "X-One: 1")
    with scripted(lambda a: links) as server:
        resp = _http(server).request("GET", "/v2/_catalog")
    assert resp.headers["link"] == "</a>; rel=next, </b>; rel=prev"
    assert resp.headers["X-ONE"] == "1"


def test_a_header_with_a_line_break_is_refused_without_its_value() -> None:
    with scripted(lambda a: ok()) as server, pytest.raises(RegistryError) as err:
        _http(server).request("GET", "/v2/", headers={"X-Token": "secret\r\nX-Evil: 1"})
    assert "secret" not in str(err.value) and server.arrived == []


def test_a_server_that_hangs_up_before_answering_is_a_lost_connection() -> None:
    with scripted(lambda a: b"") as server:  # no answer: the server closes the connection
        http = Http(Endpoint.parse(server.url), None, retry=RetryPolicy(sleep=lambda s: None))
        with pytest.raises(RegistryError, match=r"cannot reach 127\.0\.0\.1"):
            http.request("GET", "/v2/")
    assert [a.conn for a in server.arrived] == [1, 2, 3]  # replayable: tried again, anew


def test_an_idle_connection_the_server_dropped_is_not_used() -> None:
    """Closed while idle, unannounced: seen before sending, so even a request that cannot
    be sent twice (a POST that creates an upload) goes, on a new connection."""
    answers = iter([ok(b"1", "X-Then: hang-up"), ok(b"2")])
    with scripted(lambda a: next(answers)) as server:
        http = _http(server)
        assert http.request("GET", "/a").content == b"1"
        time.sleep(0.2)  # the server's close reaches us
        assert http.request("POST", "/b", once=True).content == b"2"
    assert [a.conn for a in server.arrived] == [1, 2]


@pytest.mark.parametrize("late", [False, True])
def test_a_body_sent_after_a_head_answer_does_not_poison_the_next_request(late: bool) -> None:
    """A HEAD's answer has no body, whatever its Content-Length says (a blob's size).
    Bytes a hostile or broken server sends after it must not be read as the next answer:
    sent with the head, they go with the HEAD answer's buffer; sent later, they make the
    idle connection readable, so it is dropped before sending. Either way even a request
    that cannot be sent twice gets its own answer."""
    junk = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfake"

    def head_then_junk() -> Iterator[bytes]:
        yield _head(4)
        time.sleep(0.1)
        yield junk

    answers = iter([head_then_junk() if late else _head(4) + junk, ok(b"real")])
    with scripted(lambda a: next(answers)) as server:
        http = _http(server)
        head = http.request("HEAD", "/v2/r/blobs/sha256:" + "0" * 64)
        assert head.status_code == 200 and head.content == b""
        time.sleep(0.3)  # whatever follows the head has arrived
        assert http.request("POST", "/b", once=True).content == b"real"
    assert [a.line.split()[0] for a in server.arrived] == ["HEAD", "POST"]
    assert [a.conn for a in server.arrived] == ([1, 2] if late else [1, 1])


def _head(size: int) -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode()


@pytest.mark.parametrize(
    "url,plain",
    [
        ("http://127.0.0.1:5000/v2/a/b/blobs/uploads/x?_state=ab%3D%3D&digest=sha256:0", True),
        ("https://[::1]:5000/v2/", True),
        ("http://h/v2/a b", False),  # requests quotes the space
        ("http://h/v2/caf\u00e9", False),
        ("http://h/v2/%41", False),  # requests sends it as /v2/A
        ("http://h/v2/%zz", False),
        ("http://user:pw@h/v2/", False),  # requests turns userinfo into basic auth
        ("http://h/v2/a@b", True),  # an @ in the path is not userinfo
        ("http://h/v2/<x>", False),
    ],
)
def test_plain_urls_are_the_ones_requests_sends_unchanged(url: str, plain: bool) -> None:
    assert plain_url(url) is plain


def test_a_url_requests_would_quote_still_arrives_quoted() -> None:
    with scripted(lambda a: ok()) as server:
        _http(server).request("GET", "/v2/a b/%41")
    assert server.arrived[0].line == "GET /v2/a%20b/A HTTP/1.1"


def test_a_proxy_in_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    with scripted(lambda a: ok(b'{"via": "proxy"}')) as proxy:
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        http = Http(Endpoint.parse("http://registry.test:5000"), None)
        assert http.request("GET", "/v2/").json() == {"via": "proxy"}
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # a host it exempts goes straight there
        with scripted(lambda a: ok(b'{"via": "direct"}')) as direct:
            assert _http(direct).request("GET", "/v2/").json() == {"via": "direct"}
    assert [a.line for a in proxy.arrived] == ["GET http://registry.test:5000/v2/ HTTP/1.1"]
    assert [a.line for a in direct.arrived] == ["GET /v2/ HTTP/1.1"]


def test_an_export_and_an_import_never_import_requests(
    registry_factory: Any, tmp_path: Path
) -> None:
    """Anonymous registries, no proxy: every request is plain (blob GETs included: no
    redirect came), so requests and urllib3 (~50 ms of start-up) are never imported."""
    from faultproxy import write_spec

    from mirror.lab.content import make_image, make_layer
    from mirror.lab.seed import client_for, seed_artifact

    src, dst = registry_factory("anon"), registry_factory("anon")
    seed_artifact(
        client_for(src), "production/app", "v1", make_image("app", layers=[make_layer("a", 4096)])
    )
    spec = write_spec(tmp_path / "s.yaml", src.url, repositories=["app"], provider=None)
    bundle = tmp_path / "b.tar.zst"
    steps = [
        [
            "export",
            str(spec),
            "-o",
            str(bundle),
            "--cache-dir",
            str(tmp_path / "c"),
            "--no-images",
            "--no-cache",
        ],
        [
            "import",
            str(bundle),
            "--target",
            dst.url,
            "--allow-unsigned",
            "--catalog",
            str(tmp_path / "cat.json"),
        ],
    ]
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    for argv in steps:
        code = (
            "import sys\n"
            "from mirror.cli import main\n"
            f"code = main({argv!r})\n"
            "print(code, 'requests' in sys.modules, 'urllib3' in sys.modules)\n"
        )
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        assert run.stdout.split()[-3:] == ["0", "False", "False"], (argv[0], run.stdout, run.stderr)


def test_a_body_cut_short_is_an_error_not_an_end() -> None:
    """http.client's read(n) and read1 return b"" when the connection closes before the
    declared length; a blob read so would look whole until its digest, a listing until
    its JSON. Declared 100 bytes, sent 10, then the server hangs up."""
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nX-Then: hang-up\r\n\r\n" + b"x" * 10
    with scripted(lambda a: cut) as server:
        http = Http(Endpoint.parse(server.url), None, retry=RetryPolicy(sleep=lambda s: None))
        for read in (lambda r: r.raw.read(50), lambda r: r.raw.read1(50) + r.raw.read1(50)):
            resp = http.request("GET", "/blob", stream=True)
            with pytest.raises(OSError, match="IncompleteRead"):
                read(resp) + resp.raw.read(50)
        with pytest.raises(RegistryError, match=r"cut off \(IncompleteRead\)"):
            http.request("GET", "/v2/_catalog")


def test_a_redirect_from_the_wire_leaves_credentials_at_home() -> None:
    """A blob GET's first hop is on the wire; requests follows the redirect. To another
    origin (object storage) it goes without Authorization; within the origin, with it."""
    from mirror.registry.auth import Credentials

    with scripted(lambda a: ok(b"blob")) as storage:

        def registry_answer(a: Arrived) -> bytes:
            if a.line.startswith("GET /v2/r/blobs/away"):
                where = f"{storage.url}/bucket/x?sig=1"
            elif a.line.startswith("GET /v2/r/blobs/home"):
                where = "/v2/r/blobs/here"
            else:
                return ok(b"home blob")
            head = f"Location: {where}\r\nContent-Length: 0\r\n\r\n"
            return b"HTTP/1.1 307 Temporary Redirect\r\n" + head.encode()

        with scripted(registry_answer) as registry:
            creds = Credentials("mirror", "s3cret")
            http = Http(Endpoint.parse(registry.url), creds, preemptive_basic=True)
            away = http.request("GET", "/v2/r/blobs/away", allow_redirects=True, stream=True)
            home = http.request("GET", "/v2/r/blobs/home", allow_redirects=True, stream=True)
            assert (away.raw.read(), home.raw.read()) == (b"blob", b"home blob")
    assert [a.line for a in storage.arrived] == ["GET /bucket/x?sig=1 HTTP/1.1"]
    assert "authorization" not in storage.arrived[0].headers
    first, *rest = registry.arrived
    assert first.headers["authorization"] == creds.basic_header()
    assert [a.line.split()[1] for a in rest] == ["/v2/r/blobs/home", "/v2/r/blobs/here"]
    assert all(a.headers.get("authorization") == creds.basic_header() for a in rest)


def test_a_chunked_answer_is_read_whole_and_frees_its_connection() -> None:
    """Registries behind nginx answer JSON chunked: no Content-Length, the length in each
    chunk's line. Read whole, read piece by piece, and then the connection serves again."""
    doc = b'{"repositories": ["a", "b"]}'
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunked += b"".join(
        b"%x\r\n%s\r\n" % (len(doc[i : i + 7]), doc[i : i + 7]) for i in range(0, len(doc), 7)
    )
    chunked += b"0\r\n\r\n"
    with scripted(lambda a: chunked) as server:
        http = _http(server)
        assert http.request("GET", "/v2/_catalog").json() == {"repositories": ["a", "b"]}
        resp = http.request("GET", "/v2/_catalog", stream=True)
        pieces = []
        while piece := resp.raw.read1(100):
            pieces.append(piece)
        assert b"".join(pieces) == doc and len(pieces) > 1
        assert http.request("GET", "/v2/_catalog").content == doc
    assert server.connections == 1


def test_a_chunked_body_cut_short_is_an_error() -> None:
    cut = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Then: hang-up\r\n\r\n64\r\n"
        + b"x" * 10
    )
    with scripted(lambda a: cut) as server:
        http = Http(Endpoint.parse(server.url), None, retry=RetryPolicy(sleep=lambda s: None))
        with pytest.raises(RegistryError, match=r"cut off \(IncompleteRead\)"):
            http.request("GET", "/v2/_catalog")
