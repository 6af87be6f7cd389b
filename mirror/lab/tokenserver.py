"""A tiny Docker token service on loopback, so the lab can run Distribution with token auth.

Tokens grant exactly the scopes asked for (to a user with the right password), so a token
for repository A is refused for repository B with `insufficient_scope`, as Distribution
and Harbor do: the trap oras-py 0.2.43 falls into.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from mirror.lab.certs import make_ca, make_leaf_cert

SERVICE = "mirror-lab-registry"
ISSUER = "mirror-lab-token-issuer"
TOKEN_TTL = 300


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class Grant:
    """One token the service issued: who, and for which scopes (a test's evidence)."""

    user: str
    scopes: tuple[str, ...]


def parse_scope(scope: str) -> dict[str, Any] | None:
    """`repository:name:pull,push` -> an access entry; names may hold ':' only before actions."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if not kind or not name or not actions:
        return None
    return {"type": kind, "name": name, "actions": sorted(set(actions.split(",")))}


def sign_jwt(claims: dict[str, Any], key: ec.EllipticCurvePrivateKey, chain_der: bytes) -> str:
    """ES256 JWT whose `x5c` carries the signing certificate, as Distribution expects."""
    header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(chain_der).decode()]}
    signing_input = (
        _b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    der = key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


@dataclass
class TokenServer:
    """Running token service; `grants` records every token issued, in order."""

    realm: str
    service: str
    issuer: str
    root_cert_file: Path
    _server: ThreadingHTTPServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _grants: list[Grant] = field(default_factory=list, repr=False)
    _refresh: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def grants(self) -> list[Grant]:
        with self._lock:
            return list(self._grants)

    def record(self, grant: Grant) -> None:
        with self._lock:
            self._grants.append(grant)

    def identity_token(self, user: str) -> str:
        """A new refresh token for `user`, as `docker login` to an OAuth2 registry keeps."""
        token = f"refresh-{secrets.token_urlsafe(16)}"
        with self._lock:
            self._refresh[token] = user
        return token

    def refresh_user(self, token: str) -> str | None:
        with self._lock:
            return self._refresh.get(token) if token else None

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()


def _handler(
    users: dict[str, str],
    key: ec.EllipticCurvePrivateKey,
    cert_der: bytes,
    box: list[TokenServer],
    ttl: int = TOKEN_TTL,
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def _user(self) -> str | None:
            scheme, _, value = self.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "basic":
                return None
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None
            ok = user in users and secrets.compare_digest(users[user], password)
            return user if ok else None

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            user = self._user()
            if url.path != "/token" or user is None:
                self._send(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad login"}]})
                return
            self._issue(user, query)

        def do_POST(self) -> None:
            """Distribution's OAuth2 form with a refresh token (docker's identity token)."""
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode(errors="replace"))
            refresh = form.get("refresh_token", [""])[0]
            user = box[0].refresh_user(refresh)
            grant = form.get("grant_type", [""])[0]
            if urlsplit(self.path).path != "/token" or grant != "refresh_token" or user is None:
                self._send(401, {"error": "invalid_grant"})
                return
            self._issue(user, form)

        def _issue(self, user: str, asked: dict[str, list[str]]) -> None:
            scopes = tuple(s for raw in asked.get("scope", []) for s in raw.split(" ") if s)
            access = [a for a in map(parse_scope, scopes) if a]
            now = int(time.time())
            claims = {
                "iss": ISSUER,
                "sub": user,
                "aud": asked.get("service", [SERVICE])[0],
                "exp": now + ttl,
                "nbf": now - 10,
                "iat": now,
                "jti": secrets.token_hex(16),
                "access": access,
            }
            token = sign_jwt(claims, key, cert_der)
            box[0].record(Grant(user, scopes))
            self._send(200, {"token": token, "access_token": token, "expires_in": ttl})

        def _send(self, status: int, doc: dict[str, Any]) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="mirror-lab-token"')
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def start_token_server(
    workdir: Path, *, users: dict[str, str], ttl: int = TOKEN_TTL
) -> TokenServer:
    """Make a CA and signing certificate, write the root bundle, serve /token on loopback."""
    import datetime as dt

    workdir.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = make_ca(dt.datetime.now(dt.UTC))
    key, cert = make_leaf_cert(ca_key, ca_cert, "mirror lab token signer")
    root = workdir / "token-root.pem"
    root.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    box: list[TokenServer] = []
    handler = _handler(dict(users), key, cert.public_bytes(serialization.Encoding.DER), box, ttl)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    realm = f"http://127.0.0.1:{server.server_address[1]}/token"
    box.append(TokenServer(realm, SERVICE, ISSUER, root, server, thread))
    thread.start()
    return box[0]
