"""A folder served over HTTP on loopback: a static Helm repository, or a target for fault tests."""

from __future__ import annotations

import base64
import contextlib
import functools
import os
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import BaseRequestHandler
from typing import Any

from mirror.lab.certs import CertFiles


class _QuietHandler(SimpleHTTPRequestHandler):
    """Keeps pytest output clean; failures show up in the client, not in access logs.

    Files carry an ETag (mtime and size, as nginx makes it) and a matching If-None-Match
    is a 304, as on a real web server; the standard handler only knows If-Modified-Since.
    `seen` (when a list) records "METHOD path status" for tests that count requests."""

    seen: list[str] | None = None
    _etag: str | None = None

    def log_message(self, format: str, *args: Any) -> None:
        return

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.seen is not None:
            self.seen.append(f"{self.command} {self.path} {int(code)}")

    def send_head(self) -> Any:
        self._etag = None
        path = self.translate_path(self.path)
        if os.path.isfile(path):
            st = os.stat(path)
            self._etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
            asked = [t.strip() for t in self.headers.get("If-None-Match", "").split(",")]
            if self._etag in asked or "*" in asked:
                self.send_response(304)
                self.end_headers()
                return None
        return super().send_head()

    def end_headers(self) -> None:
        if self._etag is not None:
            self.send_header("ETag", self._etag)
        super().end_headers()


class _BasicHandler(_QuietHandler):
    """The same folder behind HTTP basic auth, as a private Helm repository is."""

    expected = ""  # the Authorization header that lets a request through

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != self.expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="lab"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()


@contextlib.contextmanager
def serve_directory(
    path: Path,
    *,
    basic: tuple[str, str] | None = None,
    seen: list[str] | None = None,
    tls: CertFiles | None = None,
    mtls: bool = False,
) -> Iterator[str]:
    """Yield the base URL (no trailing slash) of `path` served on 127.0.0.1 at a free port;
    with `basic` (user, password), only to requests that carry them; with `seen`, each
    request is appended to it as "GET /index.yaml 304"; with `tls`, over HTTPS, and with
    `mtls` too, only to clients that show a certificate from the lab CA."""
    if not path.is_dir():
        raise NotADirectoryError(str(path))
    handler: type[_QuietHandler] = _QuietHandler
    if basic is not None:
        token = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
        handler = type("Basic", (_BasicHandler,), {"expected": f"Basic {token}"})
    if seen is not None:
        handler = type("Seen", (handler,), {"seen": seen})
    files = functools.partial(handler, directory=str(path))
    with serve(files, "lab-http", tls=tls, mtls=mtls) as url:
        yield url


@contextlib.contextmanager
def serve(
    handler: Callable[..., BaseRequestHandler],
    name: str,
    *,
    tls: CertFiles | None = None,
    mtls: bool = False,
) -> Iterator[str]:
    """Any request handler on 127.0.0.1 at a free port, in a thread, shut down on exit;
    over HTTPS with `tls` (the lab CA's server certificate), asking clients for one of the
    lab CA's too with `mtls`."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    scheme = "http"
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.cert_file, tls.key_file)
        if mtls:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(tls.ca_file)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name=name, daemon=True)
    thread.start()
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
