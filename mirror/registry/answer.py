"""What a transport hands `Http`: an answer and, when there is none, why.

Two transports send requests: the wire (http.client, `wire.py`) and requests
(`viarequests.py`, for proxies, redirects and what the wire declines). Both answer with an
`Answer` and fail with a `TransportError`, so the layer above has one vocabulary and
requests is imported only when a request needs it (~50 ms of start-up with urllib3).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Protocol

REDIRECTS = (301, 302, 303, 307, 308)


class TransportError(Exception):
    """No answer: the reason, in the transport's words (`Http` words it for the user)."""


class TlsFailure(TransportError):
    """The TLS handshake failed: an unknown CA, a refused client certificate, not TLS."""


class Unreachable(TransportError):
    """Refused, reset, timed out or cut off before the answer: worth another try."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind, self.reason = kind, reason


class BodyError(OSError):
    """An answer's body cut off or not decodable, as it was read."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind = kind


class Body(Protocol):
    """An answer's body as urllib3 reads it: `decode_content` undoes gzip and deflate."""

    def read(self, amt: int | None = None, decode_content: bool | None = None) -> bytes: ...

    def read1(self, amt: int = ..., decode_content: bool | None = None) -> bytes: ...

    def close(self) -> None: ...


class Headers(dict[str, str]):
    """Header fields by name, any case; a repeated field's values joined with ", " (as
    urllib3 and RFC 9110 join them)."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__()
        for name, value in pairs:
            key = name.lower()
            joined = f"{dict.__getitem__(self, key)}, {value}" if key in self else value
            super().__setitem__(key, joined)

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return dict.get(self, name.lower(), default)


class Answer:
    """A status, its fields and a body: read by `raw` as it streams, or whole (`content`)."""

    def __init__(self, status: int, reason: str, url: str, headers: Headers, raw: Body) -> None:
        self.status_code = status
        self.reason = reason
        self.url = url
        self.headers = headers
        self.raw = raw
        self.body: bytes | None = None  # the whole body, once read

    @property
    def content(self) -> bytes:
        if self.body is None:
            try:
                self.body = self.raw.read(None, decode_content=True)
            finally:
                self.raw.close()
        return self.body

    @property
    def text(self) -> str:
        charset = self.headers.get("Content-Type", "").partition("charset=")[2].strip(' "')
        try:
            return self.content.decode(charset or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know
            return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON; a ValueError when it is not."""
        return json.loads(self.content)

    @property
    def is_redirect(self) -> bool:
        return self.status_code in REDIRECTS and "Location" in self.headers

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> Answer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
