"""Where registry credentials come from, and how a challenge is answered.

oras-py is sound at finding credentials (docker `config.json`, `credHelpers`, `credsStore`),
so we use it for that alone. Token handling is ours: oras-py 0.2.43 keeps one token per
client and re-sends it after `insufficient_scope`, which breaks a second repository.
"""

from __future__ import annotations

import base64
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from mirror.errors import UsageError

_PARAM = re.compile(r'([A-Za-z_]+)="([^"]*)"')


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@dataclass(frozen=True)
class Challenge:
    scheme: str
    params: dict[str, str]

    @property
    def insufficient_scope(self) -> bool:
        return self.params.get("error") == "insufficient_scope"


def parse_challenge(header: str) -> Challenge:
    scheme, _, rest = header.strip().partition(" ")
    return Challenge(scheme.lower(), dict(_PARAM.findall(rest)))


def credentials_from_env(username_env: str, password_env: str) -> Credentials | None:
    """Spec-named variables; both or neither, so a typo doesn't silently go anonymous."""
    user, password = os.environ.get(username_env), os.environ.get(password_env)
    if user is None and password is None:
        return None
    if not user or password is None:
        raise UsageError(f"set both {username_env} and {password_env}, or neither")
    return Credentials(user, password)


def docker_credentials(host: str) -> Credentials | None:
    """Credentials for `host` from Docker's config.json and its credential helpers."""
    from oras.auth.basic import BasicAuth
    from oras.auth.utils import load_configs

    configs = []
    if os.environ.get("DOCKER_CONFIG"):
        configs.append(str(Path(os.environ["DOCKER_CONFIG"]) / "config.json"))
    backend = BasicAuth()
    backend._auth_config = load_configs([c for c in configs if Path(c).exists()])
    for candidate in (host, f"https://{host}", f"http://{host}"):
        if backend._load_auth(candidate):
            raw = base64.b64decode(backend._basic_auth).decode()
            user, _, password = raw.partition(":")
            return Credentials(user, password)
    return None


DOCKER_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
DOCKER_HUB_KEY = "https://index.docker.io/v1/"  # how `docker login` files Docker Hub


def resolve_credentials(host: str, env: tuple[str, str] | None = None) -> Credentials | None:
    """The one rule for every kind of server: the variables the spec (or the CLI) names,
    then docker's config.json and its helpers for the host, then anonymous."""
    if env is not None:
        creds = credentials_from_env(*env)
        if creds is not None:
            return creds
    creds = docker_credentials(host)
    if creds is None and host.lower() in DOCKER_HUB_HOSTS:
        creds = docker_credentials(DOCKER_HUB_KEY)
    return creds


class TokenCache:
    """Bearer tokens keyed by scope, shared by a client's threads behind one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}

    def get(self, scope: str) -> str | None:
        with self._lock:
            hit = self._tokens.get(scope)
        if hit and hit[1] > time.monotonic():
            return hit[0]
        return None

    def put(self, scope: str, token: str, expires_in: float) -> None:
        # Renew early so a token never expires mid-request: ten seconds before, or at half
        # its life for a short-lived one (a 2-second token is renewed after one).
        with self._lock:
            life = max(expires_in - 10, expires_in / 2)
            self._tokens[scope] = (token, time.monotonic() + life)
