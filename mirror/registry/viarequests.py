"""Requests the wire does not send, sent by requests: through a proxy, following redirects
(after the wire's first hop), a body of unknown length, a URL requests would quote, and the
token service's. Imported by `Http` when such a request comes, not before: requests and
urllib3 cost ~50 ms of CPU to import, on every command's critical path.

Answers are `Answer`s and failures `TransportError`s, as the wire's are (answer.py).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
import urllib3

from mirror.deadlines import HeadDeadline
from mirror.registry.answer import (
    Answer,
    BodyError,
    Headers,
    TlsFailure,
    TransportError,
    Unreachable,
)

if TYPE_CHECKING:
    from mirror.registry.http import _TrustStore


class _HeadedAdapter(requests.adapters.HTTPAdapter):
    """Connections that read each answer's status line and headers within `heads`' time:
    the read timeout counts per read, and a server sending a byte every few seconds held
    an import for ever (the import-side sweep, stop 31). Bodies have the rate floor."""

    def __init__(self, heads: HeadDeadline) -> None:
        self._heads = heads
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _headed_pools(self._heads)


def _headed_pools(heads: HeadDeadline) -> dict[str, type]:
    """urllib3's two pool classes, with connections whose getresponse() runs under heads."""

    def headed(base: type[urllib3.connection.HTTPConnection]) -> type:
        def getresponse(self: Any) -> Any:
            sock = self.sock
            if sock is None:
                return base.getresponse(self)
            with heads.reading(sock):
                return base.getresponse(self)

        return type(f"Headed{base.__name__}", (base,), {"getresponse": getresponse})

    plain, tls = urllib3.connection.HTTPConnection, urllib3.connection.HTTPSConnection
    return {
        "http": type("Pool", (urllib3.HTTPConnectionPool,), {"ConnectionCls": headed(plain)}),
        "https": type("Pool", (urllib3.HTTPSConnectionPool,), {"ConnectionCls": headed(tls)}),
    }


class _TrustAdapter(_HeadedAdapter):
    """HTTPS through `_TrustStore`'s context: requests' documented hooks for pool settings."""

    def __init__(self, trust: _TrustStore, heads: HeadDeadline) -> None:
        self._trust = trust
        super().__init__(heads)

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> Any:
        host, pool = super().build_connection_pool_key_attributes(request, verify, cert)
        if verify is not False:
            home = self._trust.owns(urlsplit(request.url or "").netloc)
            ca = verify if isinstance(verify, str) else ""
            pool["ssl_context"] = self._trust.context(ca, home)
            pool.pop("ca_certs", None)
            pool.pop("ca_cert_dir", None)
        return host, pool

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        """requests' check that a CA path exists stays; the path itself is in the context."""
        super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]
        if verify is not False:  # the context holds every CA: urllib3 would load one per
            conn.ca_certs = conn.ca_cert_dir = None  # connection again, ~20 ms each


class Session(requests.Session):
    """requests.Session, trimmed for registry requests.

    The environment (proxies, REQUESTS_CA_BUNDLE) is read once per scheme and host,
    redirects included: requests scanned every variable twice on each request and looked
    for ~/.netrc. ~/.netrc is not consulted: registry credentials come from docker's
    config.json, its helpers or the environment. `send` without redirects skips the
    Session bookkeeping mirror never uses (cookies, hooks).
    """

    def __init__(self, trust: _TrustStore, heads: HeadDeadline) -> None:
        super().__init__()
        self.trust_env = False  # we read the environment ourselves, below
        self._env: dict[tuple[str, str], tuple[dict[str, str], bool | str]] = {}
        self.mount("https://", _TrustAdapter(trust, heads))
        self.mount("http://", _HeadedAdapter(heads))
        self.headers["User-Agent"] = "mirror"

    def environment(self, url: str) -> tuple[dict[str, str], bool | str]:
        parts = urlsplit(url)
        found = self._env.get((parts.scheme, parts.netloc))
        if found is None:
            ca = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            ca = ca if parts.scheme == "https" else None  # plain HTTP verifies nothing
            found = (requests.utils.get_environ_proxies(url), ca or True)
            self._env[(parts.scheme, parts.netloc)] = found
        return found

    def merge_environment_settings(  # type: ignore[override]
        self, url: str, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        env_proxies, env_verify = self.environment(url)
        return {
            "proxies": {**self.proxies, **env_proxies, **(proxies or {})},
            "stream": self.stream if stream is None else stream,
            "verify": env_verify if verify in (True, None) else verify,
            "cert": self.cert if cert is None else cert,
        }

    def rebuild_proxies(self, prepared_request: Any, proxies: Any) -> dict[str, str]:
        """A redirect (to blob storage, say) gets the proxies of the host it goes to."""
        env_proxies, _ = self.environment(str(prepared_request.url))
        rebuilt: dict[str, str] = super().rebuild_proxies(  # type: ignore[no-untyped-call]
            prepared_request, {**env_proxies, **self.proxies}
        )
        return rebuilt

    def send_one(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        data: Any,
        timeout: tuple[float, float],
        verify: bool | str,
        *,
        follow: bool = False,
        params: Mapping[str, str] | None = None,
    ) -> Answer:
        """One request, its body unread; `follow` follows redirects as requests does."""
        with _mapped():
            if follow or params is not None:
                resp = self.request(
                    method, url, headers=dict(headers), data=data, params=params,
                    stream=True, timeout=timeout, verify=verify, allow_redirects=follow,
                )  # fmt: skip
            else:  # straight to the adapter: Session.request's bookkeeping is not needed
                prepared = requests.PreparedRequest()
                prepared.prepare_method(method)
                prepared.prepare_url(url, None)
                merged = requests.structures.CaseInsensitiveDict(self.headers)
                merged.update(headers)
                prepared.prepare_headers(merged)
                prepared.prepare_body(data, None)
                settings = self.merge_environment_settings(url, None, True, verify, None)
                resp = self.get_adapter(url).send(prepared, timeout=timeout, **settings)
        headers_ = Headers(resp.headers.items())
        return Answer(resp.status_code, resp.reason or "", resp.url or url, headers_, _Raw(resp))


class _Raw:
    """urllib3's body, its failures made `BodyError`s, as the wire's are."""

    def __init__(self, resp: requests.Response) -> None:
        self._resp = resp

    def read(self, amt: int | None = None, decode_content: bool | None = None) -> bytes:
        with _body_failures():
            return bytes(self._resp.raw.read(amt, decode_content=decode_content))

    def read1(self, amt: int = 1 << 16, decode_content: bool | None = None) -> bytes:
        with _body_failures():
            return bytes(self._resp.raw.read1(amt, decode_content=decode_content))

    def close(self) -> None:
        self._resp.close()


@contextlib.contextmanager
def _body_failures() -> Iterator[None]:
    try:
        yield
    except (urllib3.exceptions.HTTPError, requests.RequestException) as exc:
        raise BodyError(type(exc).__name__, str(exc)) from None


@contextlib.contextmanager
def _mapped() -> Iterator[None]:
    """requests' failures in the transports' words (answer.py)."""
    try:
        yield
    except requests.exceptions.SSLError as exc:
        raise TlsFailure(str(exc)) from None
    except (
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
        requests.exceptions.ChunkedEncodingError,
    ) as exc:
        raise Unreachable(type(exc).__name__, str(exc)) from None
    except requests.exceptions.RequestException as exc:
        raise TransportError(str(exc)) from None
