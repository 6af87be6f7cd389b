"""A folder served over HTTP on loopback: a static Helm repository, or a target for fault tests."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import BaseRequestHandler
from typing import Any


class _QuietHandler(SimpleHTTPRequestHandler):
    """Keeps pytest output clean; failures show up in the client, not in access logs."""

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextlib.contextmanager
def serve_directory(path: Path) -> Iterator[str]:
    """Yield the base URL (no trailing slash) of `path` served on 127.0.0.1 at a free port."""
    if not path.is_dir():
        raise NotADirectoryError(str(path))
    with serve(functools.partial(_QuietHandler, directory=str(path)), "lab-http") as url:
        yield url


@contextlib.contextmanager
def serve(handler: Callable[..., BaseRequestHandler], name: str) -> Iterator[str]:
    """Any request handler on 127.0.0.1 at a free port, in a thread, shut down on exit."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name=name, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
