"""One HTTP conversation with one registry: auth, retries, timeouts, errors.

Each thread has its own connections (a `Wire`, and a requests session once one is needed);
tokens are shared through `TokenCache`.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urljoin, urlsplit

import certifi

from mirror.deadlines import HeadDeadline
from mirror.errors import (
    AuthError,
    NotFoundError,
    OperationError,
    RegistryError,
    Secrets,
    UsageError,
    redact,
    shorten,
)
from mirror.registry.answer import Answer, BodyError, TlsFailure, TransportError, Unreachable
from mirror.registry.auth import Challenge, Credentials, TokenCache, parse_challenge
from mirror.registry.retry import DEFAULT, RateFloor, RetriesExhausted, RetryLater, RetryPolicy
from mirror.registry.wire import Wire

if TYPE_CHECKING:
    from mirror.registry.viarequests import Session
from mirror.settings import Net
from mirror.units import ascii_int

_HOST = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*)(:\d{1,5})?$")
TIMEOUT = Net().timeouts  # connect, read: oras-py 0.2.43 passes none and can hang forever.
BODY_CAP = 16 << 20  # a listing, an API answer: what is bigger is streamed by its caller
TOKEN_CAP = 1 << 20  # a token service's answer
ERROR_WORDS = 64 << 10  # read of a streamed answer's body when it is an error: its words
LOGIN_HINT = (  # where credentials come from (auth.resolve_credentials), said where they lack
    "docker login or podman login to it, the spec's auth variables, or "
    "MIRROR_TARGET_USERNAME and MIRROR_TARGET_PASSWORD for an import's target"
)


class _TrustStore:
    """What TLS trusts, as curl, docker and skopeo do: the system's store (where an internal
    CA is installed; SSL_CERT_FILE and SSL_CERT_DIR count) beside the bundle requests ships,
    the registry's own CAs where docker and podman keep them (CERTS_D/HOST/*.crt), and a CA
    file (--ca-file, REQUESTS_CA_BUNDLE): added to them, not instead of them, so one export
    can read a private registry and a public upstream. requests alone trusts its own
    bundle only, or the CA file only. A client certificate kept there too (HOST/NAME.cert
    with NAME.key) is offered to that host alone, never to a redirect's. One per `Http`,
    shared by its threads' sessions (an SSLContext is safe to share once built); built at
    the first HTTPS request, since loading the stores costs ~40 ms."""

    def __init__(self, host: str = "", client: tuple[str, str] | None = None) -> None:
        self._host = host
        self._client = client  # a pair named for this endpoint, before certs.d's
        self._lock = threading.Lock()
        self._contexts: dict[tuple[str, bool], ssl.SSLContext] = {}
        self.client: tuple[str, str] | None = None  # the pair offered, once a context is built

    def owns(self, netloc: str) -> bool:
        return bool(self._host) and netloc.lower() == self._host.lower()

    def context(self, ca: str, home: bool) -> ssl.SSLContext:
        with self._lock:
            found = self._contexts.get((ca, home))
            if found is None:
                found = ssl.create_default_context()  # the system's store, CERT_REQUIRED
                found.load_verify_locations(certifi.where())  # the bundle requests ships
                for extra in [*_host_cas(self._host), *([ca] if ca else [])]:
                    add_ca(found, extra)
                client = (self._client or _host_client(self._host)) if home else None
                if client is not None:
                    _add_client(found, *client)
                    self.client = client
                self._contexts[(ca, home)] = found
            return found


CERTS_D = ("/etc/containers/certs.d", "/etc/docker/certs.d", "~/.config/containers/certs.d")


def _host_files(host: str, suffix: str) -> list[str]:
    """The host's own TLS files, as docker and podman keep them: CERTS_D/HOST[:PORT]/*."""
    found: list[str] = []
    for root in CERTS_D if host else ():
        folder = os.path.join(os.path.expanduser(root), host)
        with contextlib.suppress(OSError):
            found += sorted(e.path for e in os.scandir(folder) if e.name.endswith(suffix))
    return found


def _host_cas(host: str) -> list[str]:
    return _host_files(host, ".crt")


def _host_client(host: str) -> tuple[str, str] | None:
    """The first client pair in the host's folders: NAME.cert with NAME.key. Either one
    alone is an error, as docker makes it (a CA named .cert is the usual mistake)."""
    certs, keys = _host_files(host, ".cert"), _host_files(host, ".key")
    for cert in certs:
        if cert[: -len(".cert")] + ".key" not in keys:
            raise UsageError(
                f"{cert}: no {os.path.basename(cert)[:-5]}.key beside it "
                "(a client certificate needs its key; a CA ends in .crt)"
            )
    for key in keys:
        if key[: -len(".key")] + ".cert" not in certs:
            raise UsageError(f"{key}: no {os.path.basename(key)[:-4]}.cert beside it")
    return (certs[0], certs[0][: -len(".cert")] + ".key") if certs else None


def _add_client(context: ssl.SSLContext, cert: str, key: str) -> None:
    """A client certificate and its key; a pair that does not load is named, never shown."""
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise UsageError(f"{cert}: not a client certificate with its key ({reason})") from None


def add_ca(context: ssl.SSLContext, ca: str) -> None:
    """A CA file (or hashed folder) added to the context; one that is not one is named.
    serve's --tls-client-ca is read by it too."""
    try:
        context.load_verify_locations(*((None, ca) if os.path.isdir(ca) else (ca,)))
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise UsageError(f"{ca}: not a CA bundle ({reason})") from None


class ConnectionLost(RegistryError):
    """The network dropped us; safe to try again when the request can be replayed."""


def split_url(url: str) -> SplitResult:
    """urlsplit, with the port checked now: Python raises "Invalid IPv6 URL" here and
    "Port out of range 0-65535" only when `.port` is read, later, as a traceback."""
    parts = urlsplit(url)
    parts.port  # noqa: B018  (read for its ValueError)
    return parts


@dataclass(frozen=True)
class Endpoint:
    """Where a registry lives: scheme, host[:port], whether TLS is verified (or the CA file
    to verify it with), a client certificate and key of its own, if any, and where else
    its user keeps such settings (named in the hints of a failed handshake)."""

    scheme: str
    host: str
    verify: bool | str = True
    client: tuple[str, str] | None = None
    tls_settings: str = ""

    @classmethod
    def parse(cls, url: str, *, ca_file: str | None = None) -> Endpoint:
        """`http://` is plain HTTP asked for on purpose; no scheme means https."""
        text = url if "://" in url else f"https://{url}"
        try:
            parts = split_url(text)
        except ValueError as exc:
            raise UsageError(f"not a registry URL: {redact(url)!r} ({exc})") from None
        host = parts.netloc.rsplit("@", 1)[-1]
        bad = parts.scheme not in ("http", "https") or not _HOST.match(host)
        if bad or parts.path.strip("/") or parts.query:
            hint = "expected [http[s]://]HOST[:PORT]"
            if parts.scheme in ("docker", "oci"):  # skopeo's and oras's habits
                hint += f"; drop {parts.scheme}://"
            elif not bad and parts.path.strip("/"):
                hint += "; a path goes in basePath (spec) or --base-path (import)"
            raise UsageError(f"not a registry URL: {redact(url)!r} ({hint})")
        return cls(parts.scheme, host, ca_file or True)

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}"


class Http:
    """The one HTTP transport: registries, Helm repositories, legacy pack servers and
    Palette's API all talk through it, under one retry rule and one credential rule.

    Credentials and `headers` go to the endpoint's own host only: a redirect or an absolute
    download URL on another host is asked anonymously, as Helm does without
    `--pass-credentials`. A request may say `anywhere=True` (Helm's `pass_credentials_all`,
    for a URL the repository's own index named): then the credentials go to its host too,
    unless that would send them in clear from an https endpoint.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        credentials: Credentials | None,
        *,
        timeout: tuple[float, float] = TIMEOUT,
        retry: RetryPolicy = DEFAULT,
        headers: Mapping[str, str] | None = None,
        preemptive_basic: bool = False,
        floor: RateFloor | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._credentials = credentials
        self.login_hint = LOGIN_HINT  # where a 401 without credentials sends the user
        self.secrets = Secrets()  # scrubbed from every error this client raises
        if credentials is not None:
            self.secrets.add(credentials.password, user=credentials.username)
            self.secrets.add(credentials.identity_token)
        self._timeout = timeout
        self._heads = HeadDeadline(timeout[1])  # an answer's head: within the read timeout
        self.floor = floor or RateFloor()  # an answer's body: not a trickle
        self.retry = retry
        self._headers = dict(headers or {})  # sent to the endpoint's own host only
        self._tokens = TokenCache()
        self._local = threading.local()
        self._trust = _TrustStore(endpoint.host, endpoint.client)
        self._basic = threading.Event()
        self._proxy_env = any(  # read once: ~10 us a request on the wire otherwise
            v and k.lower().endswith("_proxy") and k.lower() != "no_proxy"
            for k, v in os.environ.items()
        )
        if preemptive_basic and credentials is not None:  # Helm's way: no challenge first
            self._basic.set()

    def _wire(self) -> Wire:
        wire: Wire | None = getattr(self._local, "wire", None)
        if wire is None:
            wire = self._local.wire = Wire(self._heads, self._tls)
        return wire

    def _session(self) -> Session:
        """This thread's requests session, made (and requests imported) at its first use."""
        session: Session | None = getattr(self._local, "session", None)
        if session is None:
            from mirror.registry.viarequests import Session

            session = self._local.session = Session(self._trust, self._heads)
        return session

    def _tls(self, netloc: str, verify: bool | str) -> ssl.SSLContext:
        """The wire's TLS: `_TrustStore`'s context, as requests' adapter is given it."""
        ca = verify if isinstance(verify, str) else ""
        return self._trust.context(ca, self._trust.owns(netloc))

    def close(self) -> None:
        for name in ("wire", "session"):
            found = getattr(self._local, name, None)
            if found is not None:
                found.close()

    def url(self, path: str) -> str:
        return urljoin(self.endpoint.base + "/", path.lstrip("/")) if "://" not in path else path

    def request(
        self,
        method: str,
        path: str,
        *,
        scope: str | None = None,
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        stream: bool = False,
        allow_redirects: bool = False,
        ok: tuple[int, ...] = (200,),
        what: str = "",
        check: bool = True,
        cap: int | None = None,
        anywhere: bool = False,
        once: bool = False,
    ) -> Answer:
        """Send, answering auth challenges; retry transient failures when the body allows.

        This is where a request is retried, by the one rule in `registry/retry.py`.
        `check=False` hands any answer the rule does not retry to the caller to judge.
        `cap` reads the body here, at most `cap` bytes, so a body cut off mid-way is retried
        under the same budget as the request that fetched it; a request not streamed is
        read so too, at most BODY_CAP (a listing or an API answer must not take the memory).
        `once`: a request that must not be sent twice (one that creates something), not
        retried after it may have reached the server.
        """
        url = self.url(path)
        with self.secrets.scrubbing():  # a server may echo a password or token back
            replayable = not once and (data is None or isinstance(data, bytes))
            if not stream and cap is None:  # every answer read whole is read here, bounded
                cap = BODY_CAP
            for attempt in range(1, self.retry.attempts + 1):
                try:
                    resp = self._send_authed(
                        method, url, scope, headers, data, allow_redirects, anywhere
                    )
                    if cap is not None and resp.status_code not in self.retry.statuses:
                        _read_body(
                            resp,
                            cap,
                            lambda: f"{self.endpoint.host}: {redact(url)}",
                            self.floor,
                            head=method == "HEAD",
                        )
                except ConnectionLost as exc:
                    if not replayable:
                        raise  # not retried here: the engine may retry the whole blob
                    if not self.retry.retries_lost(attempt):
                        raise RetriesExhausted(f"{exc} (after {attempt} tries)") from None
                    self.retry.pause(attempt)
                    continue
                wait = resp.headers.get("Retry-After")
                if (
                    replayable
                    and self.retry.too_long(wait)
                    and resp.status_code in self.retry.statuses
                ):
                    resp.close()
                    raise RetriesExhausted(
                        f"{self.endpoint.host}: {method} {redact(urlsplit(url).path)}: "
                        f"{resp.status_code}, asked to wait {wait} s, more than the "
                        f"{self.retry.retry_after_cap:.0f} s mirror waits"
                    )
                if replayable and self.retry.retries_status(resp.status_code, attempt):
                    resp.close()
                    self.retry.pause(attempt, wait)
                    continue
                if resp.status_code in ok or (
                    not check and resp.status_code not in self.retry.statuses
                ):
                    return resp
                raise self._error(method, url, resp, what, retried=replayable)
            raise RegistryError(
                f"{self.endpoint.host}: {method} {redact(url)}: gave up"
            )  # pragma: no cover

    def _send_authed(
        self,
        method: str,
        url: str,
        scope: str | None,
        headers: Mapping[str, str] | None,
        data: Any,
        allow_redirects: bool,
        anywhere: bool = False,
    ) -> Answer:
        home = self._home(url)
        if not home and not (anywhere and self._no_downgrade(url)):  # they stay home
            return self._send(method, url, dict(headers or {}), data, allow_redirects)
        hdrs = {**(self._headers if home else {}), **(headers or {})}
        auth = self._auth_header(scope)
        if auth:
            hdrs["Authorization"] = auth
        resp = self._send(method, url, hdrs, data, allow_redirects)
        for _ in range(2):
            if resp.status_code != 401 or "WWW-Authenticate" not in resp.headers:
                return resp
            challenge = parse_challenge(resp.headers["WWW-Authenticate"])
            new_auth = self._answer(challenge, scope)
            if new_auth is None or new_auth == hdrs.get("Authorization"):
                return resp
            if data is not None and not isinstance(data, bytes):
                return resp  # a stream can't be replayed; callers authenticate first (HEAD/POST)
            resp.close()
            hdrs["Authorization"] = new_auth
            resp = self._send(method, url, hdrs, data, allow_redirects)
        return resp

    def _send(
        self, method: str, url: str, headers: dict[str, str], data: Any, allow_redirects: bool
    ) -> Answer:
        """One request through a transport, its failure in our words."""
        try:
            return self._transport(method, url, headers, data, allow_redirects)
        except TlsFailure as exc:
            if "WRONG_VERSION_NUMBER" in str(exc):
                raise RegistryError(
                    f"{self.endpoint.host} does not speak TLS; "
                    f"use http://{self.endpoint.host} for a plain-HTTP registry"
                ) from None
            raise RegistryError(self._tls_failure(exc)) from None
        except Unreachable as exc:
            reason = f"{exc.kind}: {_short(exc.reason)}"
            raise ConnectionLost(f"cannot reach {self.endpoint.host}: {reason}") from None
        except TransportError as exc:
            raise RegistryError(f"cannot reach {self.endpoint.host}: {_short(exc)}") from None

    def _transport(
        self, method: str, url: str, headers: dict[str, str], data: Any, allow_redirects: bool
    ) -> Answer:
        """The wire when the request is plain (and for a redirect's first hop), else
        requests. A redirect to another host or scheme goes without Authorization, as
        requests sends it. Only bodiless requests ask to follow (a blob GET handed to
        object storage): the method and body go on unchanged."""
        verify = self._verify(url)
        if not self._proxied(url):
            answer = self._wire().send(method, url, headers, data, self._timeout, verify)
            if answer is not None and not (allow_redirects and answer.is_redirect):
                return answer
            if answer is not None:  # followed from where it points, by requests
                answer.close()
                target = urljoin(url, answer.headers["Location"])
                if _origin(target) != _origin(url):
                    headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                url, verify = target, self._verify(target)
        return self._session().send_one(
            method, url, headers, data, self._timeout, verify, follow=allow_redirects
        )

    def _verify(self, url: str) -> bool | str:
        """The endpoint's CA file, else for https REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE (as
        requests reads them), else True: the trust store's own."""
        if self.endpoint.verify is not True or not url.startswith("https:"):
            return self.endpoint.verify
        return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True

    def _proxied(self, url: str) -> bool:
        """Whether the environment names a proxy for `url` (NO_PROXY considered); requests
        is imported to read them only when some proxy variable is set."""
        if not self._proxy_env:
            return False
        return bool(self._session().environment(url)[0])  # read once per scheme and host

    def _tls_failure(self, exc: Exception) -> str:
        """What to do about a failed handshake: trust its CA, or prove who we are. A server
        that refuses a client sends an alert, or (TLS 1.3, a race) just closes: EOF."""
        host, text, sent = self.endpoint.host, str(exc), self._trust.client
        alert = any(a in text for a in _CLIENT_ALERTS)
        closed = "EOF occurred in violation of protocol" in text
        if sent is not None and (alert or closed):
            return f"{host} refused the client certificate {sent[0]}" + (
                "" if alert else " (it closed the connection at the handshake)"
            )
        where = f"certs.d/{host}/ as client.cert and client.key, as for docker"
        also = self.endpoint.tls_settings
        where += f", or in {also}" if also else ""
        if alert:
            return f"{host} asks for a client certificate; put it and its key in {where}"
        if closed:
            return (
                f"{host} closed the connection at the TLS handshake; if it asks for a client "
                f"certificate, put it and its key in {where}"
            )
        return (
            f"{host}: TLS verification failed ({_short(exc)}); "
            "pass --ca-file with the registry's CA" + (f", or set it in {also}" if also else "")
        )

    def _home(self, url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme == self.endpoint.scheme and parts.netloc.rsplit("@", 1)[-1].lower() == (
            self.endpoint.host.lower()
        )

    def _no_downgrade(self, url: str) -> bool:
        return urlsplit(url).scheme == "https" or self.endpoint.scheme == "http"

    def _auth_header(self, scope: str | None) -> str | None:
        if self._basic.is_set() and self._credentials:
            return self._credentials.basic_header()
        token = self._tokens.get(scope or "")
        return f"Bearer {token}" if token else None

    def _answer(self, challenge: Challenge, scope: str | None) -> str | None:
        if challenge.scheme == "basic":
            if not self._credentials:
                return None
            self._basic.set()
            return self._credentials.basic_header()
        if challenge.scheme != "bearer" or "realm" not in challenge.params:
            return None
        # The challenge's scope is what the registry wants now; on insufficient_scope it
        # names the new one. Never re-send a token minted for another scope.
        wanted = challenge.params.get("scope") or scope or ""
        token = self._fetch_token(challenge, wanted)
        self._tokens.put(scope or "", token[0], token[1])
        if wanted != (scope or ""):
            self._tokens.put(wanted, token[0], token[1])
        return f"Bearer {token[0]}"

    def _fetch_token(self, challenge: Challenge, scope: str) -> tuple[str, float]:
        realm = challenge.params["realm"]
        params = {"service": challenge.params.get("service", "")}
        if scope:
            params["scope"] = scope
        creds = self._credentials
        plain = urlsplit(realm).scheme.lower() != "https"
        if creds is not None and self.endpoint.scheme == "https" and plain:
            raise AuthError(
                f"{self.endpoint.host}: its token service {redact(realm)} is plain HTTP; "
                "mirror sends no credentials there"
            )
        try:
            resp = self._ask_token_service(realm, params)
        except TransportError as exc:
            raise AuthError(f"token service {redact(realm)} unreachable: {_short(exc)}") from None
        _read_body(resp, TOKEN_CAP, lambda: f"token service {redact(realm)}", self.floor)
        if resp.status_code != 200:
            raise AuthError(
                f"{self.endpoint.host}: token service refused {scope or 'access'} "
                f"({resp.status_code}); check credentials"
            )
        try:
            body = resp.json()
            token = body.get("token") or body.get("access_token")
            expires = body.get("expires_in")
        except (ValueError, AttributeError):
            token, expires = None, None
        if not token or not isinstance(token, str):
            raise AuthError(f"{self.endpoint.host}: token service sent no token")
        self.secrets.add(token)
        if not (token.isascii() and token.isprintable()) or " " in token:
            raise AuthError(  # requests would quote the header, token and all, in its error
                f"{self.endpoint.host}: token service sent a token with a space, control or "
                "non-ASCII character"
            )
        return token, _lifetime(expires)

    def _ask_token_service(self, realm: str, params: dict[str, str]) -> Answer:
        """GET with basic credentials, or POST with an identity token: Distribution's OAuth2
        refresh-token form (its docs/spec/auth/oauth.md), as docker sends it. Through
        requests, which follows a token service's redirects; the caller reads the body, at
        most TOKEN_CAP."""
        creds = self._credentials
        session, verify = self._session(), self._verify(realm)
        if creds is not None and creds.identity_token:
            form = {**params, "grant_type": "refresh_token", "client_id": "mirror"}
            form["refresh_token"] = creds.identity_token
            return session.send_one("POST", realm, {}, form, self._timeout, verify, follow=True)
        # Our own header, UTF-8 as docker sends it (requests encodes a pair as Latin-1 and
        # fails on anything else); requests still drops it on a redirect to another host.
        basic = {"Authorization": creds.basic_header()} if creds else {}
        return session.send_one(
            "GET", realm, basic, None, self._timeout, verify, follow=True, params=params
        )

    def _error(
        self, method: str, url: str, resp: Answer, what: str, *, retried: bool = False
    ) -> RegistryError:
        code = resp.status_code
        where = f"{self.endpoint.host}: {method} {redact(urlsplit(url).path)}"
        _read_words(resp)
        # Scrubbed whole, then cut: a cut through an echoed password would show its start.
        detail = redact(self.secrets.scrub(_registry_message(resp)))  # one line, then cut
        detail = shorten(" ".join(detail.split()), 200)
        resp.close()
        if code in (401, 403):
            hint = "" if self._credentials else f"; no credentials configured ({self.login_hint})"
            return AuthError(f"{where}: {code} {detail or 'unauthorized'}{hint}")
        if code == 404:
            return NotFoundError(
                f"{where}: {what or 'not found'} (404{f': {detail}' if detail else ''})"
            )
        if retried and code in self.retry.statuses:  # the budget is spent: retry no more
            return RetriesExhausted(f"{where}: {code} {detail}".rstrip())
        if code in self.retry.statuses:  # a streamed upload: the engine retries it whole
            return RetryLater(f"{where}: {code} {detail}".rstrip(), resp.headers.get("Retry-After"))
        return RegistryError(f"{where}: {code} {detail}".rstrip())


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _lifetime(expires_in: object) -> float:
    """A token's `expires_in`: seconds, or 60 (the spec's default) for anything else."""
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        return 60.0
    return float(expires_in) if math.isfinite(expires_in) and expires_in > 0 else 60.0


def _read_body(
    resp: Answer, cap: int, where: Callable[[], str], floor: RateFloor, *, head: bool = False
) -> None:
    """Read the body into `resp.body`, refusing more than `cap` bytes before and while it
    streams, and a trickle (`floor`: each read returns what one recv brought, so a byte
    every few seconds is seen); a connection lost mid-way, or a trickle, is a
    `ConnectionLost`, which the caller's loop retries. `where` words an error only (its
    redaction took ~70 us, on every request of an import of small images).

    An answer to HEAD has no body, and its Content-Length is the size of the one a GET would
    bring (a blob's: gigabytes), not a claim to check against `cap`."""
    declared = None if head else ascii_int(resp.headers.get("Content-Length"))
    if declared is not None and declared > cap:
        resp.close()
        raise OperationError(f"{where()}: {declared} bytes is over the {_cap(cap)} cap")
    parts: list[bytes] = []
    total, started = 0, floor.clock()
    try:
        while chunk := resp.raw.read1(1 << 20, decode_content=True):
            total += len(chunk)
            if total > cap:
                raise OperationError(f"{where()}: more than the {_cap(cap)} cap")
            parts.append(chunk)
            if problem := floor.problem(started, total):
                raise ConnectionLost(f"{where()}: the answer trickles: {problem}")
    except OSError as exc:  # BodyError too
        kind = exc.kind if isinstance(exc, BodyError) else type(exc).__name__
        raise ConnectionLost(f"{where()}: the body was cut off ({kind})") from None
    finally:
        resp.close()
    resp.body = b"".join(parts)


def _cap(cap: int) -> str:
    return f"{cap >> 20} MiB" if cap >= 1 << 20 else f"{cap}-byte"


def _read_words(resp: Answer) -> None:
    """An error's body, when nothing read it yet (a streamed request): its first
    ERROR_WORDS bytes, enough for any registry's error JSON, never a whole download."""
    if resp.body is not None:
        return
    try:
        resp.body = resp.raw.read(ERROR_WORDS, decode_content=True) or b""
    except OSError:  # BodyError too
        resp.body = b""
    resp.close()  # an answer not read to its end takes its connection with it


def _registry_message(resp: Answer) -> str:
    """The words of a registry's error document (`{"errors": [{"code", "message"}]}`)."""
    try:
        doc = resp.json()
    except ValueError:
        return ""
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list):
        return ""
    words = (e.get("message") or e.get("code") if isinstance(e, dict) else e for e in errors[:20])
    return "; ".join(map(str, words))


# TLS alerts of a server that wants a client certificate: none sent, or not one it trusts.
_CLIENT_ALERTS = ("ALERT_BAD_CERTIFICATE", "CERTIFICATE_REQUIRED", "ALERT_UNKNOWN_CA")

_REASONS = (
    "certificate verify failed: ",
    "Connection refused",
    "Name or service not known",
    "Temporary failure in name resolution",
    "timed out",
    "Connection reset by peer",
    "Remote end closed connection without response",  # a reset before the answer
)


def _short(exc: Exception | str) -> str:
    """The reason a user can act on, not urllib3's nested repr."""
    text = redact(str(exc))
    for reason in _REASONS:
        at = text.find(reason)
        if at >= 0:
            tail = text[at + len(reason) :] if reason.endswith(": ") else ""
            return (reason.rstrip(": ") + (": " + tail.split(" (_ssl")[0] if tail else "")).strip()
    return text.strip("()'\" ")[:160]
