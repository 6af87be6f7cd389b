"""Real CNCF Distribution (Debian's `docker-registry`) on loopback, for tests, demo and bench.

A fake registry would agree with our client's bugs; the real one does not.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
import yaml

from mirror.errors import OperationError
from mirror.lab.certs import CertFiles, write_certs

if TYPE_CHECKING:
    from mirror.lab.tokenserver import TokenServer

FLAVOURS = ("anon", "basic", "tls", "mtls", "token")
INSTALL_HINT = "docker-registry not found: install it with `apt-get install docker-registry`"
_ENV_BINARY = "MIRROR_DOCKER_REGISTRY"
_START_ATTEMPTS = 5


def registry_binary() -> str | None:
    """Path of `docker-registry` (or $MIRROR_DOCKER_REGISTRY), None when it is not installed."""
    override = os.environ.get(_ENV_BINARY)
    if override:
        return override if os.access(override, os.X_OK) else None
    return shutil.which("docker-registry")


def free_port() -> int:
    """A port the kernel just handed out; a race is possible, so callers retry on EADDRINUSE."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LabRegistry:
    """One running registry process; `stop()` is safe to call any number of times."""

    url: str
    host: str
    flavour: str
    storage_dir: Path
    log_path: Path
    config_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    certs: CertFiles | None = None  # tls and mtls: the CA, and the client pair mtls asks for
    token_server: TokenServer | None = None
    _owns_storage: bool = field(default=False, repr=False)
    _cleanups: list[Any] = field(default_factory=list, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log_path, lines)

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the process group, kill it if it lingers, then drop temporary storage."""
        _terminate(self.process, timeout)
        while self._cleanups:
            self._cleanups.pop()()
        if self._owns_storage and self.storage_dir.exists():
            shutil.rmtree(self.storage_dir, ignore_errors=True)

    def __enter__(self) -> LabRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


def _htpasswd(path: Path, username: str, password: str) -> None:
    import bcrypt  # test extra: only the basic flavour needs it

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    path.write_text(f"{username}:{hashed}\n")
    path.chmod(0o600)


def _config(
    port: int, storage: Path, auth: dict[str, Any] | None, tls: dict[str, Any] | None
) -> dict[str, Any]:
    http: dict[str, Any] = {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)}
    if tls:
        http["tls"] = tls
    doc: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "fields": {"service": "mirror-lab-registry"}},
        "storage": {
            # As Debian's /etc/docker/registry/config.yml and the upstream image ship it.
            "cache": {"blobdescriptor": "inmemory"},
            "filesystem": {"rootdirectory": str(storage)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": http,
    }
    if auth:
        doc["auth"] = auth
    return doc


def _wait_ready(
    proc: subprocess.Popen[bytes],
    url: str,
    certs: CertFiles | None,
    log: Path,
    deadline: float,
) -> bool:
    """True once OUR process logged that it listens and /v2/ answers 200 or 401.

    /v2/ alone is not enough: when the port was taken meanwhile, another registry answers
    there while ours is dying of "address already in use".
    """
    listening = f"listening on {url.split('://', 1)[1]}"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if listening not in log.read_text(errors="replace"):
            time.sleep(0.02)
            continue
        try:
            resp = requests.get(
                f"{url}/v2/",
                timeout=1.0,
                verify=str(certs.ca_file) if certs else True,
                cert=(str(certs.client_cert), str(certs.client_key)) if certs else None,
            )
            if resp.status_code in (200, 401):
                return True
        except requests.RequestException:
            pass
        time.sleep(0.05)
    return False


def start_registry(
    workdir: Path | None = None,
    *,
    flavour: str = "anon",
    username: str = "mirror",
    password: str | None = None,
    storage_dir: Path | None = None,
    ready_timeout: float = 10.0,
    port: int | None = None,
    token_ttl: int | None = None,
) -> LabRegistry:
    """Start `docker-registry serve` on a free loopback port and wait until /v2/ answers.

    Each call gets its own run directory under `workdir` (a temp dir when None), so a test
    can run a source and a target side by side. Storage made here is removed by `stop()`;
    a `storage_dir` passed in is kept (benchmarks reuse a seeded store). A fixed `port`
    (the demo's, named by its preset) is tried once; a busy one fails at once.
    """
    if flavour not in FLAVOURS:
        raise OperationError(f"unknown lab registry flavour {flavour!r}: use one of {FLAVOURS}")
    binary = registry_binary()
    if binary is None:
        raise OperationError(INSTALL_HINT)
    if workdir is not None:
        workdir = workdir.resolve()  # the registry runs in its run dir: relative paths break
        workdir.mkdir(parents=True, exist_ok=True)
    storage_dir = storage_dir.resolve() if storage_dir is not None else None
    run_dir = Path(tempfile.mkdtemp(prefix=f"registry-{flavour}-", dir=workdir))
    owns = storage_dir is None
    storage = storage_dir or run_dir / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    password = password or secrets.token_urlsafe(12)
    auth, tls, certs, cleanups, token = _auth_and_tls(
        flavour, run_dir, username, password, token_ttl
    )
    scheme = "https" if tls else "http"
    last_log = ""
    fixed = port
    for _ in range(1 if fixed else _START_ATTEMPTS):
        port = fixed or free_port()
        config_path = run_dir / "config.yml"
        doc = _config(port, storage, auth, tls)
        config_path.write_text(yaml.safe_dump(doc, sort_keys=False))
        log_path = run_dir / "registry.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [binary, "serve", str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=run_dir,
                start_new_session=True,
            )
        url = f"{scheme}://127.0.0.1:{port}"
        if _wait_ready(proc, url, certs, log_path, time.monotonic() + ready_timeout):
            anon = flavour in ("anon", "tls", "mtls")
            return LabRegistry(
                url=url,
                host=f"127.0.0.1:{port}",
                flavour=flavour,
                storage_dir=storage,
                log_path=log_path,
                config_path=config_path,
                process=proc,
                username=None if anon else username,
                password=None if anon else password,
                ca_file=certs.ca_file if certs else None,
                certs=certs,
                token_server=token,
                _owns_storage=owns,
                _cleanups=cleanups,
            )
        _terminate(proc, 5.0)
        last_log = log_tail(log_path)
        if "address already in use" not in last_log:
            break
    for cleanup in cleanups:
        cleanup()
    if owns:
        shutil.rmtree(storage, ignore_errors=True)
    raise OperationError(f"lab registry ({flavour}) did not answer /v2/:\n{last_log}")


def _auth_and_tls(
    flavour: str, run_dir: Path, username: str, password: str, token_ttl: int | None = None
) -> tuple[
    dict[str, Any] | None, dict[str, Any] | None, CertFiles | None, list[Any], TokenServer | None
]:
    """Config sections, certificates, cleanups and token service that a flavour needs;
    `mtls` is `tls` that refuses a client without a certificate from the lab CA."""
    if flavour == "basic":
        htpasswd = run_dir / "htpasswd"
        _htpasswd(htpasswd, username, password)
        return {"htpasswd": {"realm": "mirror-lab", "path": str(htpasswd)}}, None, None, [], None
    if flavour in ("tls", "mtls"):
        certs = write_certs(run_dir / "certs")
        tls: dict[str, Any] = {"certificate": str(certs.cert_file), "key": str(certs.key_file)}
        if flavour == "mtls":
            tls["clientcas"] = [str(certs.ca_file)]
        return None, tls, certs, [], None
    if flavour == "token":
        from mirror.lab.tokenserver import start_token_server

        ttl = {"ttl": token_ttl} if token_ttl is not None else {}
        server = start_token_server(run_dir / "token", users={username: password}, **ttl)
        auth = {
            "token": {
                "realm": server.realm,
                "service": server.service,
                "issuer": server.issuer,
                "rootcertbundle": str(server.root_cert_file),
            }
        }
        return auth, None, None, [server.stop], server
    return None, None, None, [], None


@contextlib.contextmanager
def running_registry(workdir: Path | None = None, **kwargs: Any) -> Iterator[LabRegistry]:
    """`start_registry` whose process is stopped on exit, even when the body raises."""
    reg = start_registry(workdir, **kwargs)
    try:
        yield reg
    finally:
        reg.stop()
