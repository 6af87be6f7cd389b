"""`mirror serve`: trust the bundle, then answer for it over HTTP(S) until told to stop.

The HTTP server is cheroot (CherryPy's WSGI server): a fixed pool of worker threads with
keep-alive connections parked in a selector, so many idle clients cost no thread; the WSGI
body is an iterator, so a blob streams out chunk by chunk; `stop()` closes the listener
and gives requests in flight time to finish; TLS is its built-in `ssl` adapter.
"""

from __future__ import annotations

import contextlib
import errno
import io
import ipaddress
import os
import re
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mirror.bundle.parts import stamp
from mirror.bundle.reader import BundleReader
from mirror.bundle.trust import Trusted, TrustPolicy, open_trusted
from mirror.deadlines import HeadDeadline
from mirror.errors import OperationError, UsageError, VerificationError
from mirror.freshness import Freshness
from mirror.mirrorconfig import CERTS_DIR, HOSTS_FILE, MIRROR_FILE, hosts_toml, image_mirrors
from mirror.mirrorconfig import mirror_string as swap_string
from mirror.oci.names import IMAGES_BASE, check_repository_prefix
from mirror.serve.app import RegistryApp, StartResponse
from mirror.serve.store import ServedStore
from mirror.stores.bundle import BundleStore
from mirror.units import ascii_int

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

    from mirror.bundle.writer import ByteObserver as Observer

DEFAULT_LISTEN = "127.0.0.1:5000"
THREADS = 32  # requests served at once; idle keep-alive connections hold no thread
SHUTDOWN_GRACE = 10.0  # seconds a SIGTERM leaves requests in flight to finish
FORCED_GRACE = 5.0  # then, with their connections shut, seconds before serve exits anyway
# Connections the kernel queues before accept(). cheroot's default is 5: the sixth client
# connecting at once has its SYN dropped and retries a second later (curl -Z 8: 0.14 s
# became 1.05 s). Go's net/http, which docker-registry uses, asks for the system maximum.
BACKLOG = socket.SOMAXCONN
HEAD_CAP = 64 << 10  # bytes of a request line and headers; cheroot's default has no limit
BODY_CAP = 64 << 10  # a read-only registry takes no body worth keeping
HEAD_DEADLINE = 30.0  # seconds to send a whole request line and headers, however trickled


@dataclass(frozen=True)
class ServeOptions:
    bundle: Path
    pub: EllipticCurvePublicKey | None
    allow_unsigned: bool = False
    fips: bool = False
    listen: str = DEFAULT_LISTEN
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # mutual TLS: only clients with a cert it signed
    base_path: str = ""
    images_base_path: str = IMAGES_BASE
    memo: Path | None = None
    threads: int = THREADS
    # The import record of this host (beside its catalog): refuse an older bundle, as import
    # does; None with --allow-downgrade.
    freshness: Path | None = None
    advertise: str | None = None  # the host other nodes reach this server by (mirror config)


def check_options(opts: ServeOptions) -> tuple[str, int]:
    """Everything the flags alone can get wrong, refused before the bundle is read."""
    for flag, value in (
        ("--base-path", opts.base_path),
        ("--images-base-path", opts.images_base_path),
    ):
        check_repository_prefix(flag, value)
    if (opts.tls_cert is None) != (opts.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    if opts.tls_client_ca is not None and opts.tls_cert is None:
        raise UsageError("--tls-client-ca needs --tls-cert and --tls-key")
    for path in (opts.tls_cert, opts.tls_key, opts.tls_client_ca):
        if path is not None and not path.is_file():
            raise UsageError(f"{path}: no such file")
    if opts.advertise is not None and not _ADVERTISED.fullmatch(opts.advertise):
        raise UsageError(f"--advertise {opts.advertise!r}: a host name or address, no port")
    return parse_listen(opts.listen)


_ADVERTISED = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")
_LOOPBACK = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


def advertised_host(opts: ServeOptions, host: str) -> tuple[str, bool]:
    """The host the printed mirror configuration names, and whether other nodes could
    reach it: listening on all interfaces, this host's name, which may well be `localhost`
    (a hostname /etc/hosts maps to 127.0.0.1); containerd elsewhere would pull from itself."""
    if opts.advertise:
        return opts.advertise.strip("[]"), True
    shown = socket.getfqdn() if host in ("0.0.0.0", "::") else host
    try:
        loopback = ipaddress.ip_address(shown).is_loopback
    except ValueError:
        loopback = shown.lower() in _LOOPBACK
    return shown, not loopback


def parse_listen(value: str) -> tuple[str, int]:
    """HOST:PORT (IPv6 in brackets); port 0 picks a free one."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if "/" in value:  # a URL: serve's scheme comes from --tls-cert, not from here
        raise UsageError(
            f"--listen {value!r}: expected HOST:PORT without a scheme or path, such as "
            f"{DEFAULT_LISTEN} (--tls-cert makes it https)"
        )
    number = ascii_int(port, digits=5)
    if not sep or not host or number is None or number > 65535:
        raise UsageError(f"--listen {value!r}: expected HOST:PORT, such as {DEFAULT_LISTEN}")
    return host, number


def open_store(opts: ServeOptions, observer: Observer | None = None) -> tuple[ServedStore, Trusted]:
    """The same verdict as `verify` and `import` (fail-closed), then the store it allows."""
    policy = TrustPolicy(opts.pub, allow_unsigned=opts.allow_unsigned, fips=opts.fips)
    before = stamp(opts.bundle)
    trusted = open_trusted(opts.bundle, policy, memo=opts.memo, observer=observer)
    if stamp(opts.bundle) != before:
        raise VerificationError(f"{opts.bundle}: changed while it was being verified")
    if opts.freshness is not None:  # what import would refuse, serve refuses
        manifest = trusted.manifest
        Freshness(opts.freshness).check(manifest.name, trusted.signer, manifest.created)
    source = BundleStore.sealed(BundleReader(opts.bundle), trusted.manifest)
    store = ServedStore(
        source, trusted.manifest, base_path=opts.base_path,
        images_base=opts.images_base_path, proven=before,
    )  # fmt: skip
    return store, trusted


class Server:
    """One bound cheroot server; `run(stop)` serves until the event is set."""

    def __init__(
        self,
        app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]],
        host: str,
        port: int,
        *,
        tls: tuple[Path, Path] | None = None,
        client_ca: Path | None = None,
        threads: int = THREADS,
        head_deadline: float = HEAD_DEADLINE,
    ) -> None:
        self.tls = tls is not None
        self._server = _server_class()(
            (host, port),
            app,
            numthreads=threads,
            max=threads,
            server_name="mirror",
            request_queue_size=BACKLOG,
        )
        self._server.ConnectionClass = _connection_class()
        self._server.head_deadline = HeadDeadline(head_deadline)
        self._server.shutdown_timeout = SHUTDOWN_GRACE
        self._server.keep_alive_conn_limit = 1024
        self._server.timeout = 60
        self._server.max_request_header_size = HEAD_CAP
        self._server.max_request_body_size = BODY_CAP
        if tls is not None:
            self._server.ssl_adapter = _ssl_adapter(*tls, client_ca)
        try:
            self._server.prepare()
        except OSError as exc:
            raise OperationError(f"cannot listen on {host}:{port}: {_why_not(exc)}") from None

    @property
    def address(self) -> tuple[str, int]:
        addr = self._server.bind_addr
        return str(addr[0]), int(addr[1])

    def release(self) -> None:
        """Close the listener and end the worker threads of a server that never ran: cheroot
        starts its (non-daemon) pool when it binds, and a live pool keeps Python from exiting."""
        self._stop()

    def run(self, stop: threading.Event) -> None:
        """Serve until STOP is set, then stop accepting and let requests in flight finish."""
        worker = threading.Thread(target=self._server.serve, name="serve", daemon=True)
        worker.start()
        try:
            while not stop.wait(0.5) and worker.is_alive():
                pass
        finally:
            self._stop()
            worker.join(FORCED_GRACE)  # the accept loop ends once stop() has begun

    def _stop(self) -> None:
        """cheroot's stop, bounded. It lets requests in flight run for SHUTDOWN_GRACE, then
        shuts only the read side of the connections still held and joins their workers with
        no limit: one blocked sending to a client that stopped reading held serve forever
        (a SIGTERM unanswered for 30 s in CI). Past the grace, both sides are shut here,
        which fails that send, and the wait ends either way."""
        self._server.head_deadline.stop()
        workers = list(getattr(self._server.requests, "_threads", ()))  # stop() clears it
        stopper = threading.Thread(target=self._server.stop, name="serve-stop", daemon=True)
        stopper.start()
        stopper.join(SHUTDOWN_GRACE + 1)
        if not stopper.is_alive():
            return
        for worker in workers:
            sock = getattr(getattr(worker, "conn", None), "socket", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        stopper.join(FORCED_GRACE)


class _SocketWriter:
    """What cheroot writes responses to, handing each chunk to `sendall` as it is.

    cheroot's own writer is a pure-Python BufferedWriter that copies everything pending
    into a new bytes object on every send: for blobs that is most of serve's CPU.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.bytes_written = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self._sock.sendall(data)
        self.bytes_written += len(data)
        return len(data)

    def flush(self) -> None:
        """Nothing is buffered."""

    def close(self) -> None:
        self.closed = True  # the connection closes the socket itself


def _connection_class() -> type:
    """cheroot's connection with `_SocketWriter` for its responses (its documented hook),
    and requests whose head must arrive within the server's `head_deadline`."""
    from cheroot.server import HTTPConnection, HTTPRequest

    class Request(HTTPRequest):
        header_reader = _strict_header_reader()

        def parse_request(self) -> None:
            sock = self.conn.socket
            with self.server.head_deadline.reading(sock):
                if isinstance(sock, ssl.SSLSocket) and sock.cipher() is None:
                    sock.do_handshake()  # deferred from accept (DeferredHandshake)
                super().parse_request()
            if self.ready and (problem := _framing_problem(self)):
                self.simple_response("400 Bad Request", problem)
                self.close_connection, self.ready = True, False

    class Connection(HTTPConnection):
        RequestHandlerClass = Request

        def __init__(self, server: Any, sock: socket.socket, makefile: Any = None) -> None:
            if makefile is None:
                super().__init__(server, sock)
            else:
                super().__init__(server, sock, makefile)
            self.wfile = _SocketWriter(sock)
            self.parked = False  # waited in the selector for its first bytes

    return Connection


_ONCE = (b"host", b"content-length")  # a second one names another request (RFC 9112)


def _strict_header_reader() -> Any:
    """cheroot's header reader (its documented hook), refusing first what RFC 9112 says a
    server must answer 400: whitespace between a field's name and its colon (5.1), a
    folded line (5.2), and a second Host or a second Content-Length of another value
    (3.2, 6.3). cheroot kept the last of each and took the name stripped, so a proxy
    reading the first and serve the last would frame two different requests. The head is
    read through cheroot's own size-capped file, then parsed by cheroot from memory."""
    from cheroot.server import HeaderReader

    class StrictHeaderReader(HeaderReader):  # type: ignore[misc]
        def __call__(self, rfile: Any, hdict: dict[bytes, bytes] | None = None) -> Any:
            head: list[bytes] = []
            seen: dict[bytes, bytes] = {}
            while (line := rfile.readline()) not in (b"", b"\r\n"):
                head.append(line)
                if line[:1] in (b" ", b"\t"):
                    raise ValueError("a folded header line is not taken")
                name, colon, value = line.partition(b":")
                if colon and name != name.strip(b" \t"):
                    raise ValueError("whitespace before a header's colon")
                key, value = name.lower(), value.strip()
                if key in _ONCE and key in seen and (key == b"host" or seen[key] != value):
                    raise ValueError(f"{key.decode('latin-1')} sent twice")
                seen[key] = value
            return super().__call__(io.BytesIO(b"".join([*head, line])), hdict)

    return StrictHeaderReader()


def _framing_problem(req: Any) -> str:
    """What RFC 9112 says a server must refuse, and cheroot lets through: a body sent with
    Transfer-Encoding (cheroot leaves a chunked body on a kept connection unread, to be
    parsed as the next request; a read-only registry takes no body), a Content-Length that
    is not one number, an HTTP/1.1 request without Host."""
    headers = req.inheaders
    if b"Transfer-Encoding" in headers:
        return "a request body with Transfer-Encoding is not taken here"
    length = headers.get(b"Content-Length")
    if length is not None and not length.strip().isdigit():
        return "Content-Length is not one number"
    if req.request_protocol == b"HTTP/1.1" and b"Host" not in headers:
        return "an HTTP/1.1 request needs a Host header"
    return ""


def _server_class() -> type:
    """cheroot's WSGI server, with new connections parked until they send something.

    cheroot hands a new connection straight to a worker, which then waits up to its
    timeout (60 s) for a request line: 40 connections that said nothing held all 32
    workers, and `mirror serve` answered no one for a minute. A new connection now waits
    in the selector, as an idle keep-alive connection does, and takes a worker only once it
    is readable; idle ones are closed after the same timeout. (A client that sends a few
    bytes and stalls still holds a worker until the timeout: docs/SECURITY.md.)
    """
    from cheroot import wsgi

    class ParkingServer(wsgi.Server):
        def error_log(self, msg: str = "", level: int = 20, traceback: bool = False) -> None:
            """cheroot's own complaints (a cut response, a bad handshake): one escaped line
            on stderr, never a traceback a client could cause at will."""
            sys.stderr.write(f"serve: {_escaped(str(msg))[:500]}\n")

        def process_conn(self, conn: Any) -> None:
            pending = getattr(conn.socket, "pending", None)  # TLS: bytes already decrypted
            if not getattr(conn, "parked", True) and not (pending is not None and pending()):
                conn.parked = True
                self._connections.put(conn)  # type: ignore[attr-defined]  # to the selector
                return
            super().process_conn(conn)

    return ParkingServer


def _why_not(exc: OSError) -> str:
    """Why a bind failed, in the kernel's words (cheroot wraps them in its own)."""
    in_use = os.strerror(errno.EADDRINUSE)
    if exc.errno == errno.EADDRINUSE or in_use in str(exc):
        return f"{in_use} (--listen HOST:0 takes any free port)"
    return str(exc.strerror or exc)


def _ssl_adapter(cert: Path, key: Path, client_ca: Path | None) -> Any:
    """The server's pair; with a client CA, a handshake without a cert it signed fails."""
    from cheroot import errors
    from cheroot.ssl.builtin import BuiltinSSLAdapter

    class DeferredHandshake(BuiltinSSLAdapter):  # type: ignore[misc]
        """The handshake on the worker, under the head deadline, not on accept: a client
        that connected and said nothing held cheroot's acceptor for its 60 s timeout, and
        serve answered no one meanwhile (one silent client: a 59.7 s wait for the next)."""

        def wrap(self, sock: socket.socket) -> tuple[ssl.SSLSocket, dict[str, str]]:
            try:
                wrapped = self.context.wrap_socket(
                    sock, do_handshake_on_connect=False, server_side=True
                )
            except OSError as exc:
                raise errors.FatalSSLAlert(*exc.args) from exc
            return wrapped, {"wsgi.url_scheme": "https", "HTTPS": "on"}

    try:
        adapter = DeferredHandshake(str(cert), str(key))
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise UsageError(f"--tls-cert/--tls-key: cannot load them: {exc}") from None
    if client_ca is not None:
        from mirror.registry.http import add_ca  # the one way a CA file is read and named

        add_ca(adapter.context, str(client_ca))
        adapter.context.verify_mode = ssl.CERT_REQUIRED
    return adapter


class AccessLog:
    """Common log format lines for every request, written as each response ends."""

    def __init__(self, app: RegistryApp, write: Callable[[str], None]) -> None:
        self.app = app
        self.write = write

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        status = ["-"]

        def started(code: str, headers: list[tuple[str, str]]) -> Any:
            status[0] = code.split(" ", 1)[0]
            return start_response(code, headers)

        body = self.app(environ, started)
        return self._logged(body, environ, status)

    def _logged(
        self, body: Iterable[bytes], environ: dict[str, Any], status: list[str]
    ) -> Iterator[bytes]:
        sent, cut = 0, ""
        try:
            for chunk in body:
                sent += len(chunk)
                yield chunk
        except Exception as exc:  # headers are gone: the server cuts the connection
            cut = f" (cut short: {exc})"
            raise
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
            self.write(common_log_line(environ, status[0], sent) + _escaped(cut))


def common_log_line(environ: dict[str, Any], status: str, sent: int) -> str:
    """`host - - [time] "request" status bytes`, as Apache's and nginx's default logs; the
    request escaped as theirs is, so a decoded CR/LF in a path cannot forge a line."""
    query = environ.get("QUERY_STRING")
    target = environ.get("PATH_INFO", "") + (f"?{query}" if query else "")
    request = _escaped(f"{environ.get('REQUEST_METHOD')} {target} {environ.get('SERVER_PROTOCOL')}")
    when = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
    size = str(sent) if sent else "-"
    return f'{environ.get("REMOTE_ADDR", "-")} - - [{when}] "{request}" {status} {size}'


_UNPRINTABLE = re.compile(r'[\x00-\x1f\x7f-\x9f"\\\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]')


def _escaped(text: str) -> str:
    """Control characters, marks that reorder text, quotes and backslashes, escaped."""
    return _UNPRINTABLE.sub(lambda m: _ESCAPES.get(m[0]) or _hex(ord(m[0])), text)


def _hex(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_ESCAPES = {'"': '\\"', "\\": "\\\\"}


def mirror_config_text(store: ServedStore, opts: ServeOptions, host: str, port: int) -> str:
    """What `import --mirror-config` would write, for this server's own address."""
    shown = advertised_host(opts, host)[0]
    shown = f"[{shown}]" if ":" in shown else shown
    mirrors = image_mirrors(
        store.image_hosts, f"{shown}:{port}", opts.base_path, opts.images_base_path
    )
    if not mirrors:
        return ""
    scheme = "https" if opts.tls_cert else "http"
    parts = [f"# {MIRROR_FILE}", swap_string(mirrors)]
    for m in mirrors:
        folder = f"{CERTS_DIR}/{m.upstream}"
        client = (f"/etc/containerd/{folder}/client.cert", f"/etc/containerd/{folder}/client.key")
        toml = hosts_toml(m, scheme=scheme, client=client if opts.tls_client_ca else None)
        parts += [f"# {folder}/{HOSTS_FILE}", toml.rstrip()]
    return "\n".join(parts) + "\n"
