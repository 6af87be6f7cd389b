"""The plain case of a request, sent on http.client: one keep-alive connection per host.

requests and urllib3 spend ~2 ms of CPU on a blob's POST and PUT (URL parsing three times,
pools, cookies, hooks); http.client alone spends ~0.45 ms. An import of small images is
four such requests an image, so the layers were most of mirror's own CPU there, and
importing them cost every command ~50 ms of start-up. A request is plain when nothing
requests adds would change it: no proxy, a URL without userinfo or characters requests
would quote again, and a body of known length. A redirect's first hop is plain too; what
it points to is followed by requests (`viarequests.py`), as is anything else the wire
declines.

The answer is an `Answer` (answer.py) whose `raw` reads the http.client answer as urllib3's
would be read; a failure is a `TransportError`, worded by `Http._send`. One `Wire` belongs
to one thread: its connections are never shared.
"""

from __future__ import annotations

import http.client
import re
import select
import ssl
import zlib
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from mirror.deadlines import HeadDeadline
from mirror.registry.answer import (
    Answer,
    BodyError,
    Headers,
    TlsFailure,
    TransportError,
    Unreachable,
)

SMALL_BODY = 256 << 10  # a body read whole first, so head and body go in one send
BLOCK = 1 << 16  # a streamed body's pieces
# What requests would send as written: unreserved and reserved characters, and escapes.
_PLAIN = re.compile(r"[A-Za-z0-9\-._~!#$&'()*+,/:;=?@\[\]]*")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_NO_BODY = ("GET", "HEAD", "DELETE", "OPTIONS")
DEFAULT_HEADERS = {  # what requests sends on every request, mirror's name in place of its own
    "User-Agent": "mirror",
    "Accept-Encoding": "gzip, deflate",
    "Accept": "*/*",
    "Connection": "keep-alive",
}


def plain_url(url: str) -> bool:
    """A URL requests would send unchanged: no userinfo, nothing to quote, and no escape
    of a character it would unquote (`%41` is sent as `A` by requests)."""
    if not _PLAIN.fullmatch(_ESCAPE.sub("", url)):
        return False
    if any(chr(int(m.group(1), 16)) in _UNRESERVED for m in _ESCAPE.finditer(url)):
        return False
    return "@" not in url.split("/", 3)[2] if url.count("/") >= 2 else False


class Wire:
    """One thread's connections, one per scheme and host, with the contexts TLS needs."""

    def __init__(
        self,
        heads: HeadDeadline,
        context: Callable[[str, bool | str], ssl.SSLContext],
    ) -> None:
        self._heads = heads
        self._context = context  # (netloc, verify) -> the TLS context for that host
        self._conns: dict[tuple[str, str], _Plain] = {}

    def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        data: Any,
        timeout: tuple[float, float],
        verify: bool | str,
    ) -> Answer | None:
        """The answer, its body unread; None when the request is not a plain one."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not plain_url(url):
            return None
        body = _body(method, data)
        if body is None:
            return None
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        sent: dict[str, str | bytes] = {**DEFAULT_HEADERS, **headers}
        if body[1] is not None:
            sent["Content-Length"] = str(body[1])
        conn = self._connection(parts.scheme, parts.netloc, timeout, verify)
        try:
            conn.request(method, target, body=body[0], headers=sent)
            with self._heads.reading(conn.sock):
                answer = conn.getresponse()
        except BaseException as exc:
            conn.close()
            raise _transport_error(exc) from None
        return _answer(answer, conn, url)

    def _connection(
        self, scheme: str, netloc: str, timeout: tuple[float, float], verify: bool | str
    ) -> _Plain:
        """The host's idle connection, or a new one: one still reading an answer is left
        to it (closed with it), and one the server closed (readable while idle) is closed
        here and connected again by http.client."""
        conn = self._conns.get((scheme, netloc))
        if conn is not None and conn.busy():
            conn = None
        elif conn is not None and conn.dropped():
            conn.close()
        if conn is None:
            if scheme == "https":
                tls = self._context(netloc, verify)
                conn = _Tls(netloc, timeout=timeout[0], context=tls, blocksize=BLOCK)
            else:
                conn = _Plain(netloc, timeout=timeout[0], blocksize=BLOCK)
            conn.read_timeout = timeout[1]
            self._conns[(scheme, netloc)] = conn
        return conn

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()


class _Plain(http.client.HTTPConnection):
    """A connection that connects within the connect timeout and then reads within the
    read timeout. Its last answer, while not read to its end, keeps it busy."""

    read_timeout: float | None = None
    answer: http.client.HTTPResponse | None = None

    def connect(self) -> None:
        super().connect()  # http.client sets TCP_NODELAY, as urllib3 does
        assert self.sock is not None
        self.sock.settimeout(self.read_timeout)

    def getresponse(self) -> http.client.HTTPResponse:
        self.answer = super().getresponse()
        return self.answer

    def busy(self) -> bool:
        return self.answer is not None and not self.answer.isclosed()

    def dropped(self) -> bool:
        """Readable while idle: the server closed it (or sent what nobody asked for)."""
        if self.sock is None:
            return False  # http.client connects it again
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return bool(poller.poll(0))


class _Tls(_Plain, http.client.HTTPSConnection):
    """The same over TLS: HTTPSConnection.connect wraps the socket `_Plain` connected."""


def _body(method: str, data: Any) -> tuple[Any, int | None] | None:
    """The body and its length, as requests would send them; None for a body of unknown
    length (requests sends those chunked). A small stream is read whole first."""
    if data is None:
        return None, None if method in _NO_BODY else 0
    if isinstance(data, bytes):
        return data, len(data)
    if not hasattr(data, "read") or not hasattr(data, "__len__"):
        return None
    size = len(data)
    if size > SMALL_BODY:
        return data, size
    pieces, got = [], 0
    while got < size and (piece := data.read(size - got)):
        pieces.append(piece)
        got += len(piece)
    whole = b"".join(pieces)
    return whole, len(whole)


def _answer(answer: http.client.HTTPResponse, conn: _Plain, url: str) -> Answer:
    headers = Headers(answer.msg.items())
    raw = _Raw(answer, conn, headers.get("Content-Encoding", ""))
    if answer.length == 0:  # HEAD, 204, 304 or empty: read, and the connection is free
        answer.read()
    return Answer(answer.status, answer.reason, url, headers, raw)


class _Raw:
    """What callers read of an answer (urllib3's HTTPResponse's reading methods): read and
    read1, decoding gzip and deflate when asked; a failure is a `BodyError`."""

    def __init__(self, answer: http.client.HTTPResponse, conn: _Plain, encoding: str) -> None:
        self._answer = answer
        self._conn = conn
        coding = encoding.strip().lower()
        self._decoder = _Decoder(coding) if coding in _Decoder.CODINGS else None
        self._decoded = bytearray()  # decoded, not yet returned: grown in place

    def read(self, amt: int | None = None, decode_content: bool | None = None) -> bytes:
        if not decode_content or self._decoder is None:
            return self._guarded(lambda: self._answer.read(amt))
        while amt is None or len(self._decoded) < amt:
            piece = self._guarded(lambda: self._answer.read1(BLOCK))
            self._decoded += self._decoder.feed(piece)
            if not piece:
                break
        return self._take(len(self._decoded) if amt is None else amt)

    def read1(self, amt: int = BLOCK, decode_content: bool | None = None) -> bytes:
        if not decode_content or self._decoder is None:
            return self._guarded(lambda: self._answer.read1(amt))
        while not self._decoded:
            piece = self._guarded(lambda: self._answer.read1(amt))
            self._decoded += self._decoder.feed(piece)
            if not piece:
                break
        return self._take(amt)

    def _take(self, amt: int) -> bytes:
        out = bytes(self._decoded[:amt])
        del self._decoded[:amt]
        return out

    def _guarded(self, read: Callable[[], bytes]) -> bytes:
        try:
            piece = read()
        except (http.client.HTTPException, OSError, ValueError) as exc:  # ValueError: chunks
            self.close()
            raise BodyError(type(exc).__name__, str(exc)) from None
        left = self._answer.length
        if not piece and left:  # http.client ends a body cut short quietly: urllib3 did not
            self.close()
            raise BodyError("IncompleteRead", f"the connection closed {left} bytes short")
        if left == 0:  # read1 leaves an answer read to its end open, and http.client
            self._answer.close()  # would not send on its connection
        return piece

    def close(self) -> None:
        """An answer not read to its end takes its connection with it."""
        if not self._answer.isclosed():
            self._conn.close()
            self._answer.close()


class _Decoder:
    """gzip (members one after another, too) and deflate (zlib-wrapped or bare), as
    urllib3 decodes them; any other coding is passed through, as urllib3 does."""

    CODINGS = ("gzip", "x-gzip", "deflate")

    def __init__(self, encoding: str) -> None:
        self._gzip = encoding != "deflate"
        self._bare = False
        self._inflate = self._new()

    def _new(self) -> Any:
        bits = 16 + zlib.MAX_WBITS if self._gzip else (-1 if self._bare else 1) * zlib.MAX_WBITS
        return zlib.decompressobj(bits)

    def feed(self, data: bytes) -> bytes:
        if not data:
            return bytes(self._inflate.flush())
        try:
            out: bytes = self._inflate.decompress(data)
        except zlib.error:
            if self._gzip or self._bare:
                raise BodyError("DecodeError", "the answer's encoding is broken") from None
            self._bare = True  # deflate without its zlib header, as some servers send it
            self._inflate = self._new()
            return self.feed(data)
        while self._gzip and self._inflate.eof and self._inflate.unused_data:
            rest, self._inflate = self._inflate.unused_data, self._new()
            out += self._inflate.decompress(rest)
        return out


def _transport_error(exc: BaseException) -> BaseException:
    """The failure in the words `Http._send` maps: TLS, unreachable, or a bad header."""
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return TlsFailure(str(exc))
    if isinstance(exc, TimeoutError):
        return Unreachable("Timeout", str(exc) or "timed out")
    if isinstance(exc, OSError | http.client.HTTPException):
        return Unreachable("ConnectionError", f"{type(exc).__name__}: {exc}")
    if isinstance(exc, ValueError):  # http.client refused a header: never say its value
        return TransportError("a header has a line break or control character")
    return exc
