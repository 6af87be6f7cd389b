"""What to copy from an HTTP Helm repository: index.yaml, chart filters, .tgz as OCI charts.

Each selected .tgz is downloaded whole (capped), checked against the index's sha256, and
rebuilt as the Helm OCI chart `helm push` would make, so a Helm repository crosses the air
gap in the same content-addressed form as everything else. Credentials go only to the
repository's own host, as Helm does without `--pass-credentials`; the index itself may not
be redirected to another host at all.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

from mirror.copy import parallel_map
from mirror.discovery.helmmemo import IndexMemo
from mirror.discovery.interface import Found, Selection
from mirror.errors import (
    AuthError,
    IntegrityError,
    NotFoundError,
    OperationError,
    RegistryError,
    UsageError,
    redact,
)
from mirror.formats.helm import ChartVersion, chart_artifact, chart_tag, parse_index, select_charts
from mirror.oci.artifact import OciArtifact
from mirror.oci.names import oci_tag, slug
from mirror.registry.answer import Answer
from mirror.registry.auth import (
    Credentials,
    credentials_from_env,
    helm_repository_entry,
    resolve_credentials,
)
from mirror.registry.http import Endpoint, Http, split_url
from mirror.registry.retry import RateFloor
from mirror.settings import Net
from mirror.spec import Registry
from mirror.stores.interface import KnownManifests
from mirror.stores.memory import MemorySource

MAX_INDEX = 256 * 1024 * 1024  # public indexes run to tens of MiB; more is hostile
MAX_CHART = 512 * 1024 * 1024
MAX_REDIRECTS = 5
_REPO_PART = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")


@dataclass(frozen=True)
class _Repo:
    """One Helm repository as seen from this export: where, as whom, and how to name it."""

    name: str
    base: str
    credentials: Credentials | None
    creds_hint: str
    verify: bool | str = True  # a CA file for a private repository, else the system's
    client: tuple[str, str] | None = None  # `helm repo add --cert-file --key-file`
    pass_credentials: bool = False  # `helm repo add --pass-credentials`
    insecure: bool = False  # `helm repo add --insecure-skip-tls-verify`: Helm's, not ours

    @property
    def where(self) -> str:
        return f"helm registry {self.name} ({_host(self.base)})"


def discover(
    reg: Registry,
    *,
    jobs: int = 4,
    net: Net | None = None,
    known: KnownManifests | None = None,
) -> Selection:
    """Select chart versions from the index, download them, and offer them as OCI charts.

    `known` (the export cache) keeps the index between runs: then it is asked for
    conditionally, and a 304 is answered with the versions parsed last time."""
    net = net or Net()
    repo = _repo(reg, net)
    http = _http(repo, net)
    memo = None
    if known is not None:
        user = repo.credentials.username if repo.credentials else None
        memo = IndexMemo(known.hint_dir("helm"), repo.base, user)
    versions = index_versions(http, repo, memo)
    picked, notes = _select(reg, versions)
    artifacts = _download_all(http, repo, picked, jobs)
    source = MemorySource(repo.where, artifacts)
    prefix = f"charts/{slug(reg.name)}"
    found = [
        Found(
            registry=reg,
            repository=cv.name,
            tag=chart_tag(cv.version),
            path=f"{prefix}/{cv.name}",
            desc=art.descriptor,
            source=source,
            kind="chart",
            index_entry=cv.entry,
        )
        for cv, art in zip(picked, artifacts, strict=True)
    ]
    return Selection(found, notes)


def index_versions(http: Http, repo: _Repo, memo: IndexMemo | None) -> list[ChartVersion]:
    """The index's chart versions: parsed, or as kept when the server says (304) or shows
    (the same bytes) that the index has not changed since the last run."""
    kept = memo.load() if memo is not None else None
    url = index_url(repo.base)
    got = _get(http, repo, url, MAX_INDEX, index=True, headers=kept.validators() if kept else {})
    if got.data is None and kept is not None:  # 304 Not Modified
        return kept.versions
    if got.data is None:
        raise RegistryError(f"{repo.where}: 304 Not Modified for an unconditional GET")
    digest = hashlib.sha256(got.data).hexdigest()
    if kept is not None and kept.index == digest:
        return kept.versions
    try:
        versions = parse_index(got.data, repo.base, repo.where)
    except OperationError as exc:
        raise RegistryError(f"not a Helm repository: {_first_line(str(exc))}") from None
    if memo is not None:
        memo.store(got.etag, got.modified, digest, versions)
    return versions


def _repo(reg: Registry, net: Net) -> _Repo:
    """The repository, as whom, and its TLS: what `helm repo add` saved for its URL counts
    (the spec's variables and --ca-file first)."""
    if not reg.url:
        raise UsageError(f"registry {reg.name}: a helm registry needs a url")
    base = reg.url if "://" in reg.url else f"https://{reg.url}"
    bad = UsageError(f"registry {reg.name}: not a Helm repository URL: {redact(reg.url)}")
    try:
        parts = split_url(base)
    except ValueError:  # "Invalid IPv6 URL", a port past 65535 (a spec has checked)
        raise bad from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad
    names = reg.auth.names if reg.auth is not None else None
    saved = helm_repository_entry(base)
    creds = resolve_credentials(_host(base), names, helm=saved)
    hint = (
        "no credentials in Helm's repositories.yaml or the login files; "
        "the spec can name auth variables"
    )
    if names is not None and credentials_from_env(*names) is not None:
        hint = f"credentials from ${names[0]}/${names[1]}"
    elif creds is not None and saved is not None and creds == saved.credentials:
        hint = "credentials from Helm's repositories.yaml"
    elif creds is not None:
        hint = "credentials from the login files"
    elif names is not None:
        hint = f"${names[0]}/${names[1]} not set"
    verify = net.ca_file or (saved.ca_file if saved else None) or True
    if saved is None:
        return _Repo(reg.name, base, creds, hint, verify)
    passing, insecure = saved.pass_credentials_all, saved.insecure_skip_tls_verify
    return _Repo(reg.name, base, creds, hint, verify, saved.client, passing, insecure)


def _select(reg: Registry, versions: list[ChartVersion]) -> tuple[list[ChartVersion], list[str]]:
    """Union of the spec's chart filters, each chart version once, in name/version order."""
    notes: list[str] = []
    if not reg.charts:
        names = {cv.name for cv in versions}
        notes.append(
            f"helm registry {reg.name}: no chart filters, taking every version of every chart "
            f"({len(versions)} versions of {len(names)} charts)"
        )
        return _placeable(select_charts(versions, name_glob="*"), reg.name, notes), notes
    picked: dict[tuple[str, str], ChartVersion] = {}
    for i, flt in enumerate(reg.charts):
        try:
            chosen = select_charts(
                versions, name_glob=flt.name, semver=flt.semver, latest=flt.latest
            )
        except ValueError as exc:
            raise UsageError(f"registry {reg.name}: charts[{i}]: {exc}") from None
        if not chosen:
            if not any(fnmatch.fnmatchcase(cv.name, flt.name) for cv in versions):
                raise NotFoundError(
                    f"helm registry {reg.name}: no chart in index.yaml matches {flt.name!r}"
                )
            notes.append(
                f"helm registry {reg.name}: charts[{i}] ({flt.name!r}, semver "
                f"{flt.semver or '*'}) selected no version"
            )
        for cv in chosen:
            picked.setdefault((cv.name, cv.version), cv)
    ordered = select_charts(list(picked.values()), name_glob="*")
    return _placeable(ordered, reg.name, notes), notes


def _placeable(versions: list[ChartVersion], reg_name: str, notes: list[str]) -> list[ChartVersion]:
    """Chart versions that can become `charts/<slug>/<name>:<tag>`; the rest are noted."""
    out = []
    for cv in versions:
        try:
            oci_tag(cv.version)
            ok = bool(_REPO_PART.fullmatch(cv.name))
        except UsageError:
            ok = False
        if ok:
            out.append(cv)
        else:
            notes.append(
                f"helm registry {reg_name}: skipped {cv.name!r} {cv.version!r}: "
                "not a valid OCI repository name and tag"
            )
    return out


def index_url(base: str) -> str:
    """`…/charts?sig=x` -> `…/charts/index.yaml?sig=x`, as Helm asks: a query (a signed
    URL's token) stays a query, not part of the path index.yaml is appended to."""
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/index.yaml"))


def _download_all(
    http: Http, repo: _Repo, picked: Sequence[ChartVersion], jobs: int
) -> list[OciArtifact]:
    """Parallel downloads on the engine's workers (the first failure stops the rest); the
    transport keeps one session per thread."""
    return parallel_map(jobs, lambda cv: _chart(http, repo, cv), picked, "helm")


def _chart(http: Http, repo: _Repo, cv: ChartVersion) -> OciArtifact:
    """One chart version: download, check the index digest, rebuild as a Helm OCI chart."""
    what = f"{repo.where}: chart {cv.name} {cv.version}"
    if not cv.urls:
        raise RegistryError(f"{what}: index.yaml gives no download URL")
    url = cv.urls[0]
    if _scheme(url) not in ("http", "https"):
        raise RegistryError(f"{what}: unsupported download URL {redact(url)}")
    tgz = _get(http, repo, url, MAX_CHART, index=False).data or b""
    if cv.digest is not None:
        got = hashlib.sha256(tgz).hexdigest()
        if got != cv.digest:
            raise IntegrityError(f"{what}: the .tgz has sha256 {got}, index.yaml says {cv.digest}")
    art = chart_artifact(tgz, created=cv.created, where=what)
    config = json.loads(art.blobs[0][1])
    if (config.get("name"), config.get("version")) != (cv.name, cv.version):
        raise IntegrityError(
            f"{what}: the archive's Chart.yaml says {config.get('name')} {config.get('version')}"
        )
    return art


HELM_TLS_SETTINGS = (
    "Helm's repositories.yaml for this URL (helm repo add --ca-file, --cert-file --key-file)"
)
HELM_INSECURE = (  # why `helm pull` works where mirror refuses
    "; Helm skips verifying this repository (insecure_skip_tls_verify), mirror never does"
)


def _http(repo: _Repo, net: Net) -> Http:
    """The one transport, with Helm's habit of sending basic credentials unasked."""
    parts = urlsplit(repo.base)
    host = parts.netloc.rsplit("@", 1)[-1]
    settings = HELM_TLS_SETTINGS + (HELM_INSECURE if repo.insecure else "")
    endpoint = Endpoint(parts.scheme, host, repo.verify, repo.client, settings)
    return Http(
        endpoint, repo.credentials, timeout=net.timeouts, preemptive_basic=True,
        floor=RateFloor.of(net),
    )  # fmt: skip


@dataclass(frozen=True)
class _Body:
    """A response's bytes (None: 304 Not Modified) and its validators."""

    data: bytes | None
    etag: str | None = None
    modified: str | None = None


def _get(
    http: Http,
    repo: _Repo,
    url: str,
    cap: int,
    *,
    index: bool,
    headers: dict[str, str] | None = None,
) -> _Body:
    """GET under the one retry rule; redirects followed by hand: the index stays home, and
    the transport sends credentials to the repository's own host only, or with Helm's
    `pass_credentials_all` to the host of the URL the index named too (not to a host a
    redirect names, as Go's client and so Helm drop them there). `headers` make it
    conditional (sent to the repository's host only): a 304 is then a body of None."""
    home = _host(repo.base)
    for hop in range(MAX_REDIRECTS + 1):
        try:
            split_url(url)  # a port past 65535, `http://[::1`: Python's own error, later
        except ValueError as exc:
            raise RegistryError(f"{repo.where}: not a URL: {redact(url)!r} ({exc})") from None
        sent = (headers or {}) if _host(url) == home else {}
        anywhere = repo.pass_credentials and hop == 0
        resp = http.request(
            "GET", url, headers=sent, stream=True, check=False, cap=cap, anywhere=anywhere
        )
        if resp.is_redirect:
            try:
                target = urljoin(url, resp.headers.get("Location", ""))
            except ValueError:
                location = redact(resp.headers.get("Location", ""))[:200]
                raise RegistryError(
                    f"{repo.where}: {redact(url)} redirects to {location!r}, which is no URL"
                ) from None
            if index and (_host(target) != home or _downgrade(url, target)):
                raise RegistryError(
                    f"{repo.where}: index.yaml redirects to another host ({_host(target)})"
                )
            url = target
            continue
        if resp.status_code == 304 and sent:
            return _Body(None)
        _check_status(resp, repo, url, index=index)
        return _Body(resp.content, resp.headers.get("ETag"), resp.headers.get("Last-Modified"))
    raise RegistryError(f"{repo.where}: more than {MAX_REDIRECTS} redirects for {redact(url)}")


def _check_status(resp: Answer, repo: _Repo, url: str, *, index: bool) -> None:
    """200 is the file; anything else is not (a 204, a 300 without Location, a 304 to an
    unconditional GET were read as an empty file: an empty index, a .tgz of no bytes)."""
    code = resp.status_code
    if code == 200:
        return
    shown = redact(url)
    if code < 400:
        raise RegistryError(f"{repo.where}: {code} for {shown}, where only 200 brings the file")
    if code in (401, 403):
        raise AuthError(f"{repo.where}: {code} for {shown} ({repo.creds_hint})")
    if code == 404 and index:
        raise NotFoundError(f"{repo.where}: no index.yaml at {shown}: not a Helm repository?")
    if code == 404:
        raise NotFoundError(f"{repo.where}: {shown} is not there (404)")
    raise RegistryError(f"{repo.where}: {code} for {shown}")


def _host(url: str) -> str:
    """host[:port], never the userinfo, for messages and same-host checks; empty for a URL
    Python cannot read (no host is ever that)."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return ""
    return f"{host}:{port}" if port not in (80, 443) else host


def _scheme(url: str) -> str:
    try:
        return urlsplit(url).scheme
    except ValueError:
        return ""


def _downgrade(src: str, dst: str) -> bool:
    return urlsplit(src).scheme == "https" and urlsplit(dst).scheme != "https"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text
