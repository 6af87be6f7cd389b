"""A server that trickles its answer, a byte at a time, is cut off (stop 31's import-side
sweep): the read timeout counts per read, so an answer's head at one byte every few seconds
held an import for ever, and a small answer's body the same. Heads must arrive within the
read timeout; bodies keep the rate floor, as blob downloads do."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from mirror.errors import RegistryError
from mirror.registry.http import Endpoint, Http
from mirror.registry.retry import RateFloor, RetryPolicy

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n"
BODY = b'{"repositories": ["a", "b", "c", "dd"]} '


@contextmanager
def trickling(head_pause: float, body_pause: float) -> Iterator[str]:
    """A one-port server answering every request with HEAD then BODY, a byte at a time."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    def answer(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            for data, pause in ((HEAD, head_pause), (BODY, body_pause)):
                for i in range(len(data)):
                    if stop.wait(pause):
                        return
                    try:
                        conn.sendall(data[i : i + 1])
                    except OSError:
                        return

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()


def _http(host: str, floor: RateFloor | None = None) -> Http:
    retry = RetryPolicy(sleep=lambda s: None)
    return Http(Endpoint("http", host), None, timeout=(2.0, 1.0), retry=retry, floor=floor)


@pytest.mark.timeout(60)
def test_a_head_trickled_a_byte_at_a_time_is_cut_off_within_the_read_timeout() -> None:
    with trickling(head_pause=0.2, body_pause=0.0) as host:  # each read brings a byte
        began = time.monotonic()
        with pytest.raises(RegistryError) as info:
            _http(host).request("GET", "/v2/_catalog")
        took = time.monotonic() - began
    assert took < 3 * (1.0 + 1.0) + 2, took  # three tries, each cut at ~1 s (+ a watch tick)
    assert host in str(info.value) and "after 3 tries" in str(info.value)


@pytest.mark.timeout(60)
def test_a_body_trickled_a_byte_at_a_time_is_cut_off_by_the_rate_floor() -> None:
    floor = RateFloor(min_rate=1000, grace=0.5)
    with trickling(head_pause=0.0, body_pause=0.1) as host:
        began = time.monotonic()
        with pytest.raises(RegistryError) as info:
            _http(host, floor).request("GET", "/v2/_catalog")
        took = time.monotonic() - began
    assert took < 3 * 1.5 + 2, took
    assert "trickles" in str(info.value) and "MIRROR_MIN_RATE" in str(info.value)


def test_an_answer_at_an_honest_pace_is_read_whole() -> None:
    with trickling(head_pause=0.0, body_pause=0.0) as host:
        resp = _http(host).request("GET", "/v2/_catalog")
    assert resp.json() == {"repositories": ["a", "b", "c", "dd"]}
