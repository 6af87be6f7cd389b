"""Where registry credentials come from, and how a challenge is answered.

Docker's `config.json` is read here as the docker CLI reads it (`auths`, `credHelpers`,
`credsStore` and the helper protocol), and so is the containers tools' `auth.json` (podman,
skopeo and buildah log in there, in the same format). oras-py could find docker's, but
only through its private attributes, and a helper answering anything but JSON crashed it.
Token handling is ours too: oras-py 0.2.43 keeps one token per client and re-sends it
after `insufficient_scope`, which breaks a second repository.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import re
import selectors
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from mirror.errors import UsageError
from mirror.streams import read_capped

_PARAM = re.compile(r'([A-Za-z_]+)="([^"]*)"')


TOKEN_USERNAME = "<token>"  # a helper's Username when its Secret is an identity token


@dataclass(frozen=True)
class Credentials:
    """A username and password, or an identity token: the OAuth2 refresh token that
    `docker login` keeps for registries that hand one out (Azure's `az acr login`, for
    one). A token service is then asked by POST with it instead of by GET with basic."""

    username: str
    password: str = field(repr=False)
    identity_token: str | None = field(default=None, repr=False)

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


def env_text(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """A variable holding a login, which must be text: a value set in a Latin-1 locale is
    not UTF-8, and can travel neither in a basic-auth header as the registry expects it
    nor in Palette's JSON. One clear line instead of an internal error."""
    value = (os.environ if env is None else env).get(name)
    if value is not None and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"{name} is not UTF-8 text; set it in a UTF-8 locale") from None
    return value


def credentials_from_env(username_env: str, password_env: str) -> Credentials | None:
    """Spec-named variables; both or neither, so a typo doesn't silently go anonymous."""
    user, password = env_text(username_env), env_text(password_env)
    if user is None and password is None:
        return None
    if not user or password is None:
        raise UsageError(f"set both {username_env} and {password_env}, or neither")
    return Credentials(user, password)


def login_credentials(host: str, namespace: str = "") -> Credentials | None:
    """Credentials for `host` from the first login file that knows it (`_login_files`);
    `namespace` (a registry's base path) also finds podman's logins to a namespace.
    Docker Hub is known by each of its names (`_login_keys`)."""
    for path in _login_files():
        config = _read_config(path)
        if config is None:
            continue
        for key in _login_keys(host):
            found = _lookup(config, key, path, "" if "://" in key else namespace)
            if found is not None:
                return found
    return None


DOCKER_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
DOCKER_HUB_KEY = "https://index.docker.io/v1/"  # how `docker login` files Docker Hub


def _login_keys(host: str) -> tuple[str, ...]:
    """The names a login to `host` is filed under. For Docker Hub, whichever of its hosts
    is asked: `docker.io` (podman's and skopeo's, and their namespaces `docker.io/ns`),
    docker's `https://index.docker.io/v1/`, and the host as asked."""
    if host.lower() not in DOCKER_HUB_HOSTS:
        return (host,)
    return tuple(dict.fromkeys(("docker.io", DOCKER_HUB_KEY, host.lower())))


def has_namespace_logins(host: str) -> bool:
    """Whether any login file holds a login to a namespace of `host` (`HOST/ns`, podman's
    narrower form): only then must each repository be looked up on its own."""
    prefixes = tuple(f"{key}/" for key in _login_keys(host) if "://" not in key)
    for path in _login_files():
        config = _read_config(path)
        auths = _object(config.get("auths")) if config is not None else {}
        if any(key.startswith(prefixes) for key in auths):
            return True
    return False


PER_UID_AUTH = "/run/containers/{uid}/auth.json"  # containers/image, no XDG_RUNTIME_DIR


def _login_files() -> list[Path]:
    """$REGISTRY_AUTH_FILE when set (a choice made for this run), docker's config.json
    ($DOCKER_CONFIG, else ~/.docker), then where podman and skopeo keep logins:
    $XDG_RUNTIME_DIR/containers/auth.json, or /run/containers/UID/auth.json without
    XDG_RUNTIME_DIR (root's `podman login`; REGISTRY_AUTH_FILE replaces either for them),
    then $XDG_CONFIG_HOME/containers/auth.json (~/.config/ without it); last, what
    `helm registry login` wrote ($HELM_REGISTRY_CONFIG, else registry/config.json in
    Helm's config home)."""
    chosen = os.environ.get("REGISTRY_AUTH_FILE")
    docker = os.environ.get("DOCKER_CONFIG")
    files = [Path(chosen)] if chosen else []
    files.append((Path(docker) if docker else Path.home() / ".docker") / "config.json")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if not chosen:
        per_uid = Path(PER_UID_AUTH.format(uid=os.getuid()))
        files.append(Path(runtime) / "containers" / "auth.json" if runtime else per_uid)
    config = os.environ.get("XDG_CONFIG_HOME")
    files.append((Path(config) if config else Path.home() / ".config") / "containers" / "auth.json")
    helm = os.environ.get("HELM_REGISTRY_CONFIG")
    files.append(Path(helm) if helm else _helm_config_home() / "registry" / "config.json")
    return files


def _lookup(
    config: dict[str, object], host: str, path: Path, namespace: str = ""
) -> Credentials | None:
    """In one file: first the helper `credHelpers` names for the host, as docker and
    containers/image both ask it before the file's own entries (a stale `auths` entry
    beside it is not used); then podman's logins to a namespace that holds `namespace`,
    deepest first; then for the host as written, and with https:// and http:// before it,
    the inline `auths` entry, then the `credsStore` helper; last, an `auths` key written
    as a URL (`https://HOST/v1/`, older docker's form). A namespace's login is never the
    whole host's; a helper that knows nothing lets the rest of the file speak."""
    auths, helpers = _object(config.get("auths")), _object(config.get("credHelpers"))
    keys = (host,) if "://" in host else (host, f"https://{host}", f"http://{host}")
    for key in keys:
        helper = helpers.get(key)
        found = _ask_helper(helper, key, path) if isinstance(helper, str) and helper else None
        if found is not None:
            return found
    parts = [p for p in namespace.split("/") if p]
    for depth in range(len(parts), 0, -1):
        key = "/".join([host, *parts[:depth]])
        found = _entry(_object(auths.get(key)), key, path)
        if found is not None:
            return found
    store = config.get("credsStore")
    for key in keys:
        found = _entry(_object(auths.get(key)), key, path)
        if found is None and isinstance(store, str) and store:
            found = _ask_helper(store, key, path)
        if found is not None:
            return found
    for key, entry in auths.items():  # docker's ConvertToHostname, for keys with a scheme
        found = _entry(_object(entry), key, path) if urlsplit(key).netloc == host else None
        if found is not None:
            return found
    return None


HELPER_TIMEOUT = 60.0  # seconds a credential helper may take to answer `get`
HELPER_CAP = 64 << 10  # bytes of its answer: a username and a secret, in JSON
LOGIN_FILE_CAP = 16 << 20  # a login file: a few hundred bytes per registry


def _read_config(path: Path) -> dict[str, object] | None:
    """A login file's JSON object; None when there is no such file."""
    try:
        data = read_capped(path, LOGIN_FILE_CAP)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        doc = json.loads(data)
    except ValueError:
        raise UsageError(f"{path}: not valid JSON") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{path}: not a JSON object")
    return doc


def _object(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def _entry(entry: dict[str, object], key: str, path: Path) -> Credentials | None:
    """An `auths` entry: `auth`, `identitytoken`, or both (docker keeps the user beside it)."""
    inline, token = entry.get("auth"), entry.get("identitytoken")
    creds = _inline(inline, key, path) if isinstance(inline, str) and inline else None
    if not isinstance(token, str) or not token:
        return creds
    user, password = (creds.username, creds.password) if creds else ("", "")
    return Credentials(user, password, identity_token=token)


def _inline(auth: str, key: str, path: Path) -> Credentials:
    """An `auths` entry's `auth`: base64 of user:password (the secret never in a message)."""
    try:
        user, sep, password = base64.b64decode(auth, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        sep = ""
    if not sep:
        raise UsageError(f"{path}: the auth for {key} is not base64 user:password")
    return Credentials(user, password)


def _ask_helper(name: str, key: str, path: Path) -> Credentials | None:
    """`docker-credential-NAME get`, the server on stdin. Not installed, or not knowing the
    server (a non-zero exit), means no credentials; an answer out of protocol is an error."""
    if "/" in name or "\\" in name:
        raise UsageError(f"{path}: {name!r} is not a credential helper's name")
    binary = f"docker-credential-{name}"
    try:
        code, stdout = _run_helper(binary, key)
    except FileNotFoundError:
        return None
    if code != 0:
        return None
    try:
        answer = json.loads(stdout)
        user, secret = answer["Username"], answer["Secret"]
    except (ValueError, KeyError, TypeError):
        user = secret = None
    if not isinstance(user, str) or not isinstance(secret, str):
        raise UsageError(f"{binary} get: its answer for {key} is not Username and Secret JSON")
    if user == TOKEN_USERNAME:
        return Credentials("", "", identity_token=secret)
    return Credentials(user, secret)


def _run_helper(binary: str, key: str) -> tuple[int, bytes]:
    """`BINARY get`, KEY on stdin: its exit code and answer, within HELPER_TIMEOUT seconds
    and HELPER_CAP bytes (a helper is someone else's program: it may hang or babble)."""
    proc = subprocess.Popen(
        [binary, "get"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + HELPER_TIMEOUT
    stdin, stdout = proc.stdin, proc.stdout
    assert stdin is not None and stdout is not None  # both asked for as pipes
    try:
        with contextlib.suppress(BrokenPipeError):  # it may answer without reading
            stdin.write(key.encode())
            stdin.close()
        answer = _read_within(stdout.fileno(), deadline, f"{binary} get", key)
        return proc.wait(max(0.0, deadline - time.monotonic())), answer
    except subprocess.TimeoutExpired:
        raise UsageError(f"{binary} get: no answer for {key} in {HELPER_TIMEOUT:g} s") from None
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        stdout.close()


def _read_within(fd: int, deadline: float, who: str, key: str) -> bytes:
    """All of a pipe until its end, or a one-line error past the deadline or the cap."""
    chunks: list[bytes] = []
    size = 0
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise subprocess.TimeoutExpired(who, HELPER_TIMEOUT)
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > HELPER_CAP:
                raise UsageError(f"{who}: its answer for {key} is over {HELPER_CAP >> 10} KiB")
            chunks.append(chunk)


HELM_CONFIG_CAP = 16 << 20  # bytes of repositories.yaml: a few lines per repository


@dataclass(frozen=True)
class HelmRepoEntry:
    """What `helm repo add URL` saved for one repository that mirror uses: basic
    credentials (`--username`/`--password`), a CA file (`--ca-file`), and a client
    certificate with its key (`--cert-file`/`--key-file`), and whether the credentials
    go to chart URLs on other hosts too (`--pass-credentials`). `--insecure-skip-tls-verify`
    is only remembered, to say why Helm reaches a repository that mirror refuses."""

    credentials: Credentials | None
    ca_file: str | None
    client: tuple[str, str] | None = None
    pass_credentials_all: bool = False
    insecure_skip_tls_verify: bool = False


def helm_repository_entry(url: str) -> HelmRepoEntry | None:
    """The entry for the repository at `url` (a trailing slash aside) in Helm's
    repositories.yaml: where a Helm user's settings for it already are."""
    path = _helm_repository_config()
    try:
        data = read_capped(path, HELM_CONFIG_CAP)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None
    import yaml

    from mirror.formats import jsondoc

    try:
        doc = yaml.safe_load(data)
        jsondoc.check_yaml(doc)
    except (yaml.YAMLError, ValueError, RecursionError):  # ValueError: a 5,000-digit int
        raise UsageError(f"{path}: not valid YAML, or past mirror's bounds") from None
    entries = doc.get("repositories") if isinstance(doc, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and str(entry.get("url", "")).rstrip("/") == url.rstrip("/"):
            return _helm_entry(entry, path)
    return None


def _helm_entry(entry: dict[str, object], path: Path) -> HelmRepoEntry:
    user, password = _text(entry, "username"), _text(entry, "password")
    cert, key = _text(entry, "certFile"), _text(entry, "keyFile")
    if bool(cert) != bool(key):
        raise UsageError(f"{path}: {entry.get('url')}: certFile and keyFile go together")
    creds = Credentials(user, password) if user and password else None  # as Helm sends
    ca_file, client = _text(entry, "caFile") or None, (cert, key) if cert else None
    flags = ("pass_credentials_all", "insecure_skip_tls_verify")  # Helm's keys for them
    passing, insecure = (entry.get(flag) is True for flag in flags)
    return HelmRepoEntry(creds, ca_file, client, passing, insecure)


def _text(entry: dict[str, object], key: str) -> str:
    value = entry.get(key)
    return value if isinstance(value, str) else ""


def _helm_repository_config() -> Path:
    """$HELM_REPOSITORY_CONFIG, else repositories.yaml in Helm's config home."""
    chosen = os.environ.get("HELM_REPOSITORY_CONFIG")
    return Path(chosen) if chosen else _helm_config_home() / "repositories.yaml"


def _helm_config_home() -> Path:
    """Helm's config home on Linux: $HELM_CONFIG_HOME, $XDG_CONFIG_HOME/helm, ~/.config/helm."""
    home, xdg = os.environ.get("HELM_CONFIG_HOME"), os.environ.get("XDG_CONFIG_HOME")
    if home:
        return Path(home)
    return Path(xdg) / "helm" if xdg else Path.home() / ".config" / "helm"


def resolve_credentials(
    host: str,
    env: tuple[str, str] | None = None,
    namespace: str = "",
    *,
    helm: HelmRepoEntry | None = None,
) -> Credentials | None:
    """The one rule for every kind of server: the variables the spec (or the CLI) names,
    then, for a Helm repository, what Helm's repositories.yaml keeps for its URL (`helm`,
    read once by the caller, which takes its TLS settings too), then the login files for
    the host (and its `namespace`, podman's narrower logins), then anonymous."""
    if env is not None:
        creds = credentials_from_env(*env)
        if creds is not None:
            return creds
    if helm is not None and helm.credentials is not None:
        return helm.credentials
    return login_credentials(host, namespace)


def unset_hint(env: tuple[str, str] | None) -> str | None:
    """Where a 401 should send the user when the spec named variables that are not set."""
    return f"${env[0]} and ${env[1]}, which the spec's auth names, are not set" if env else None


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
