"""Legacy pack registries (`kind: pack`, `url`): the server the `spectro` CLI pushes packs to.

Palette documents only `GET /health` and `GET /v1/_catalog`, both behind basic auth. The
shape of the catalog and the `/v2/` content API are assumptions, written down in
docs/LEGACY-PACK-REGISTRY.md. Everything assumed about `/v1/` sits in `parse_catalog` and
`LegacyPackRegistry`, so a real server can correct it in one place.

On import a legacy pack becomes an OCI pack at `slug(N)/spectro-packs/archive/NAME:VERSION`.
A `/v2/` manifest already in Palette's OCI pack form (what `oras push` makes) is copied byte
for byte; any other single-archive manifest is re-wrapped into that form at discovery.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mirror.discovery.interface import Found, Selection
from mirror.discovery.packdir import pick
from mirror.errors import RegistryError, UsageError, redact
from mirror.formats.pack import pack_artifact, read_pack_json_from_archive
from mirror.oci import mediatypes as mt
from mirror.oci.artifact import OciArtifact
from mirror.oci.descriptor import Descriptor, parse_manifest
from mirror.oci.names import is_repository_path, oci_tag, pack_repository
from mirror.registry.auth import Credentials, resolve_credentials, unset_hint
from mirror.registry.client import RegistryClient
from mirror.registry.http import Endpoint, Http
from mirror.registry.retry import RateFloor, RetryPolicy
from mirror.settings import Net
from mirror.spec import Registry
from mirror.stores.interface import Source
from mirror.stores.memory import MemorySource
from mirror.stores.registry import RegistryStore

MAX_REWRAP = 512 * 1024 * 1024  # a pack archive re-wrapped at discovery is held in memory
DOC = "see docs/LEGACY-PACK-REGISTRY.md"
_LIST_KEYS = ("repositories", "packs", "items", "catalog", "entries", "results", "data")
_NAME_KEYS = ("name", "packName", "repository", "repo")
_ONE_VERSION_KEYS = ("version", "tag")
_MANY_VERSION_KEYS = ("versions", "tags")
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


@dataclass(frozen=True)
class LegacyEntry:
    """One pack the catalog names: its `/v2/` repository and versions (empty: ask `/v2/`)."""

    repository: str
    versions: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.repository.rsplit("/", 1)[-1]


def parse_catalog(doc: Any, where: str) -> list[LegacyEntry]:
    """Read `/v1/_catalog` tolerantly; the format is undocumented (ASSUMED, see the docs).

    Accepted: a list, or an object whose `repositories`/`packs`/`items`/... member is a list
    or a {name: [versions]} map. Items are names (`"nginx"`, `"nginx:1.2.0"`) or objects with
    a name (`name`/`packName`/`repository`) and `version`/`tag` or `versions`/`tags`.
    Anything else is refused, naming what was seen, rather than guessed at.
    """
    items: Any = doc
    if isinstance(doc, dict):
        key = next((k for k in _LIST_KEYS if k in doc), None)
        if key is None:
            raise RegistryError(f"{where}: unrecognised catalog, keys {sorted(doc)[:8]}; {DOC}")
        items = doc[key] if doc[key] is not None else []
        if isinstance(items, dict):
            items = [{"name": k, "versions": v} for k, v in items.items()]
    if not isinstance(items, list):
        raise RegistryError(f"{where}: unrecognised catalog, a {type(items).__name__}; {DOC}")
    merged: dict[str, set[str] | None] = {}
    for item in items:
        repo, versions = _catalog_item(item, where)
        _check_listed(repo, versions or (), where)
        if versions is None or merged.get(repo, set()) is None:
            merged[repo] = None
        else:
            merged[repo] = (merged.get(repo) or set()) | set(versions)
    return [LegacyEntry(r, tuple(sorted(v or ()))) for r, v in sorted(merged.items())]


def _catalog_item(item: Any, where: str) -> tuple[str, list[str] | None]:
    """(repository, versions or None for "all tags") from one catalog item."""
    if isinstance(item, str) and item.strip():
        name, sep, version = item.strip().rpartition(":")
        if sep and name and version and "/" not in version:
            return name, [version]
        return item.strip(), None
    if isinstance(item, dict):
        name = next((item[k] for k in _NAME_KEYS if isinstance(item.get(k), str)), "")
        one = next((item[k] for k in _ONE_VERSION_KEYS if isinstance(item.get(k), str)), None)
        many = next((item[k] for k in _MANY_VERSION_KEYS if isinstance(item.get(k), list)), None)
        if name.strip():
            if one:
                return name.strip(), [one]
            if many is not None:
                return name.strip(), [v for v in (_version(m) for m in many) if v]
            return name.strip(), None
    raise RegistryError(f"{where}: unrecognised catalog item {redact(str(item))[:80]!r}; {DOC}")


def _check_listed(repo: str, versions: Iterable[str], where: str) -> None:
    """Each listed name goes into a URL: `../../etc` sent GET /etc/tags/list, outside
    /v2/, with the server's credentials, as an OCI `_catalog` once did."""
    if not is_repository_path(repo):
        shown = redact(repr(repo))[:80]
        raise RegistryError(f"{where}: the catalog lists {shown}, which is not a repository name")
    for version in versions:
        try:
            oci_tag(version)
        except UsageError:
            shown = redact(repr(version))[:80]
            raise RegistryError(
                f"{where}: {repo}: the catalog lists version {shown}, which cannot be a tag"
            ) from None


def _version(item: Any) -> str | None:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        keys = (*_ONE_VERSION_KEYS, "name")
        return next((item[k] for k in keys if isinstance(item.get(k), str)), None)
    return None


class LegacyPackRegistry:
    """The documented `/v1/` side (health, catalog) and the assumed `/v2/` side of one server."""

    def __init__(
        self,
        url: str,
        credentials: Credentials | None,
        *,
        net: Net | None = None,
        login_hint: str | None = None,  # what a 401 without credentials says to do
    ) -> None:
        net = net or Net()
        self.endpoint = Endpoint.parse(url, ca_file=net.ca_file)
        self.where = f"legacy pack registry {self.endpoint.host}"
        self._credentials = credentials
        # Two attempts: a health check that fails should say so quickly, not after backoff.
        self._http = Http(
            self.endpoint,
            credentials,
            retry=RetryPolicy(attempts=2),
            timeout=net.timeouts,
            floor=RateFloor.of(net),
        )
        self._http.login_hint = login_hint or self._http.login_hint
        self.client = RegistryClient(url, credentials=credentials, net=net, login_hint=login_hint)

    def _headers(self) -> dict[str, str]:
        # Basic auth up front: the docs promise basic, and a 401 may come without a challenge.
        return {"Authorization": self._credentials.basic_header()} if self._credentials else {}

    def health(self) -> None:
        """`GET /health` must answer `{"status": "UP"}` (documented)."""
        resp = self._http.request(
            "GET", "/health", headers=self._headers(), ok=(200, 503), what="no /health endpoint"
        )
        try:
            status = str(resp.json().get("status"))
        except (ValueError, AttributeError):
            status = f"not JSON: {resp.text[:60]!r}"
        if resp.status_code != 200 or status.upper() != "UP":
            # The server's words are shown, so a header or token it echoes is hidden first.
            raise RegistryError(
                f"{self.where}: health check failed ({resp.status_code}, status {redact(status)})"
            )

    def catalog(self) -> list[LegacyEntry]:
        """`GET /v1/_catalog` (documented path, assumed format), following `Link: next`."""
        entries: list[LegacyEntry] = []
        path: str | None = "/v1/_catalog"
        for _ in range(1000):
            if path is None:
                break
            resp = self._http.request(
                "GET", path, headers=self._headers(), what="no /v1/_catalog endpoint"
            )
            try:
                doc = resp.json()
            except ValueError:
                raise RegistryError(f"{self.where}: /v1/_catalog is not JSON; {DOC}") from None
            entries += parse_catalog(doc, f"{self.where}: /v1/_catalog")
            match = _NEXT.search(resp.headers.get("Link", ""))
            path = match.group(1) if match else None
        return entries

    def versions(self, entry: LegacyEntry) -> list[str]:
        """The catalog's versions, else the `/v2/` tags (ASSUMED: tags are versions)."""
        return list(entry.versions) or self.client.list_tags(entry.repository)


def credentials_for(reg: Registry, host: str) -> Credentials | None:
    """The spec's variables, else Docker's config.json for the host (as for OCI registries)."""
    return resolve_credentials(host, reg.auth.names if reg.auth is not None else None)


def discover(reg: Registry, *, net: Net | None = None) -> Selection:
    """Health, catalog, then each selected pack's `/v2/` manifest, as OCI packs to land."""
    if not reg.url:
        raise UsageError(f"registry {reg.name}: kind pack needs a url or a path")
    host = Endpoint.parse(reg.url).host
    creds = credentials_for(reg, host)
    hint = unset_hint(reg.auth.names if reg.auth is not None else None) if creds is None else None
    server = LegacyPackRegistry(reg.url, creds, net=net, login_hint=hint)
    server.health()
    entries = _unique_names(server.catalog(), server.where)
    wanted = pick(reg, {e.name: server.versions(e) for e in entries})
    found: list[Found] = []
    notes: list[str] = []
    rewrapped = MemorySource(f"{server.where} (re-wrapped packs)")
    for entry in entries:
        source = RegistryStore(server.client, entry.repository)
        for version in wanted.get(entry.name, []):
            tag = oci_tag(version)
            desc, data = server.client.get_manifest(entry.repository, tag)
            src: Source = source
            if _is_oci_pack(desc, data):
                source.remember(desc, data)
            else:
                art = _rewrap(server.client, entry, tag, desc, data, server.where)
                desc, src = rewrapped.add(art), rewrapped
                notes.append(f"{server.where}: {entry.repository}:{tag} re-wrapped as an OCI pack")
            found.append(
                Found(
                    registry=reg,
                    repository=entry.repository,
                    tag=tag,
                    path=pack_repository(reg.name, entry.name),
                    desc=desc,
                    source=src,
                    kind="pack",
                )
            )
    return Selection(found, notes)


def _unique_names(entries: Iterable[LegacyEntry], where: str) -> list[LegacyEntry]:
    """Packs land by name, so two repositories ending in the same name would collide."""
    seen: dict[str, str] = {}
    out = []
    for e in entries:
        other = seen.setdefault(e.name, e.repository)
        if other != e.repository:
            raise RegistryError(f"{where}: {other} and {e.repository} would both land as {e.name}")
        out.append(e)
    return out


def _is_oci_pack(desc: Descriptor, data: bytes) -> bool:
    """Palette's OCI pack form: what `oras push REF NAME-VERSION.tar.gz` makes."""
    if desc.media_type not in mt.MANIFESTS:
        return False
    doc = parse_manifest(data, "manifest")
    config = (doc.get("config") or {}).get("mediaType")
    layers = [str(layer.get("mediaType")) for layer in doc.get("layers") or []]
    return mt.classify(desc.media_type, config, layers) == "pack"


def _rewrap(
    client: RegistryClient,
    entry: LegacyEntry,
    tag: str,
    desc: Descriptor,
    data: bytes,
    where: str,
) -> OciArtifact:
    """Keep the pack archive's bytes, replace the wrapping with the OCI pack form."""
    ref = f"{where}: {entry.repository}:{tag}"
    if desc.media_type not in mt.MANIFESTS:
        raise RegistryError(f"{ref}: a {desc.media_type}, not one pack archive; {DOC}")
    layers = [Descriptor.from_json(x) for x in parse_manifest(data, ref).get("layers") or []]
    titled = [x for x in layers if (x.annotation(mt.ANN_TITLE) or "").endswith((".tar.gz", ".tgz"))]
    layer = layers[0] if len(layers) == 1 else titled[0] if len(titled) == 1 else None
    if layer is None:
        raise RegistryError(f"{ref}: {len(layers)} layers, cannot tell the pack archive; {DOC}")
    if layer.size > MAX_REWRAP:
        raise RegistryError(f"{ref}: pack archive of {layer.size} bytes is too large to re-wrap")
    buf = io.BytesIO()
    with client.open_blob(entry.repository, layer) as stream:
        while chunk := stream.read(1024 * 1024):
            buf.write(chunk)
    archive = buf.getvalue()
    if read_pack_json_from_archive(io.BytesIO(archive), ref) is None:
        raise RegistryError(f"{ref}: its layer holds no readable pack.json; not a pack; {DOC}")
    title = layer.annotation(mt.ANN_TITLE) or ""
    suffix = ".tar.gz" if archive[:2] == b"\x1f\x8b" else ".tar"
    if not title.endswith((".tar.gz", ".tgz", ".tar")):
        title = f"{entry.name}-{tag}{suffix}"
    return pack_artifact(archive, title.rsplit("/", 1)[-1])
