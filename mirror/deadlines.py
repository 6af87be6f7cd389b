"""A time limit for the head of an HTTP message (request line or status line, and headers).

Socket timeouts count per read: a peer sending one byte every few seconds never trips
one, and holds whoever reads from it for as long as it likes. `serve` reads requests'
heads under it (a client trickling held a worker), and the HTTP client reads answers'
heads under it (a server trickling held an import for ever).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator


class HeadDeadline:
    """Sockets being read, each with the time its head must be done by. One watcher thread,
    started when the first socket is read and gone when none is, shuts the socket of any
    that is late: the blocked read then ends and the connection is closed."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._reading: dict[int, tuple[float, socket.socket]] = {}
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    @contextlib.contextmanager
    def reading(self, sock: socket.socket) -> Iterator[None]:
        with self._lock:
            self._reading[id(sock)] = (time.monotonic() + self.seconds, sock)
            if self._watcher is None and not self._stop.is_set():
                self._watcher = threading.Thread(target=self._watch, name="head-deadline")
                self._watcher.daemon = True
                self._watcher.start()
        try:
            yield
        finally:
            with self._lock:
                self._reading.pop(id(sock), None)

    def _watch(self) -> None:
        while not self._stop.wait(min(1.0, self.seconds / 4)):
            now = time.monotonic()
            with self._lock:
                if not self._reading:  # idle: the next reading() starts another watcher
                    self._watcher = None
                    return
                late = [sock for due, sock in self._reading.values() if due < now]
            for sock in late:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self._stop.set()
