"""`mirror serve` takes a burst of connections at once (issue 14's 8-client goal).

cheroot listens with a backlog of 5 by default. Eight clients connecting together then lose
a SYN and retry a second later: the bench's 8-client fetch took 1.05 s instead of 0.14 s.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mirror.serve.server import Server


def _app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Length", "0")])
    return []


def test_a_burst_of_connections_is_queued_not_dropped() -> None:
    """With the server bound but not yet accepting, the kernel must complete every
    handshake of a burst into its queue; past the backlog it drops SYNs instead."""
    server = Server(_app, "127.0.0.1", 0)
    host, port = server.address
    burst = [socket.socket() for _ in range(48)]
    try:
        for s in burst:
            s.setblocking(False)
            s.connect_ex((host, port))
        time.sleep(0.3)  # far less than the 1 s SYN retry, far more than a loopback handshake
        connected = sum(1 for s in burst if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                        and _established(s))  # fmt: skip
        assert connected == len(burst)
    finally:
        for s in burst:
            s.close()
        server.release()
    # cheroot's pool is not daemonic: one left running keeps the interpreter from exiting.
    assert [t.name for t in threading.enumerate() if t.name.startswith("CP Server")] == []


def _established(s: socket.socket) -> bool:
    try:
        s.getpeername()
    except OSError:
        return False
    return True


def test_a_start_that_fails_after_the_bind_leaves_no_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """serve binds, then prints where it listens; if printing fails (a closed stdout), the
    bound server's pool must end with it, or the process lives on after its error."""
    from faultproxy import mirror
    from test_bundle_support import build_bundle, make_keys

    from mirror.serve import server as server_module

    keys = make_keys(tmp_path)
    bundle = build_bundle(tmp_path / "b.tar.zst", keys)

    def broken(*_: Any) -> str:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(server_module, "mirror_config_text", broken)
    run = mirror("serve", bundle, "--key", keys.pub_path, "--listen", "127.0.0.1:0")
    assert run.rc == 1 and "No space left" in run.err, run.err
    assert [t.name for t in threading.enumerate() if t.name.startswith("CP Server")] == []


def _endless(environ: dict[str, Any], start_response: Any) -> Any:
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    chunk = bytes(1 << 20)
    while True:  # a big blob: far more than the socket buffers hold
        yield chunk


def test_a_client_that_stops_reading_does_not_hold_serve_after_sigterm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """cheroot's stop waits out its grace, shuts only the read side of connections still
    held, then joins their workers without a limit: a worker blocked sending to a client
    that stopped reading held serve forever (a SIGTERM unanswered for 30 s in CI)."""
    from mirror.serve import server as server_module

    monkeypatch.setattr(server_module, "SHUTDOWN_GRACE", 0.5)
    server = Server(_endless, "127.0.0.1", 0)
    host, port = server.address
    stop = threading.Event()
    runner = threading.Thread(target=server.run, args=(stop,), daemon=True)
    runner.start()
    client = socket.create_connection((host, port))
    try:
        client.sendall(b"GET /blob HTTP/1.1\r\nHost: x\r\n\r\n")
        client.recv(1024)  # the response began; from here on the client reads nothing
        time.sleep(0.5)  # the worker fills the socket buffers and blocks in send
        began = time.monotonic()
        stop.set()
        runner.join(15)
        assert not runner.is_alive(), "serve did not stop"
        assert time.monotonic() - began < 10
        deadline = time.monotonic() + 5  # the worker's send failed: it ends too
        while _pool_threads() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _pool_threads() == []
    finally:
        client.close()


def _pool_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("CP Server")]
