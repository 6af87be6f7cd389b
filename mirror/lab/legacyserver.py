"""A loopback legacy pack registry: `/health`, `/v1/_catalog` and a read-only `/v2/`.

Only `/health` and `/v1/_catalog` are documented for the real server; the catalog shape and
the `/v2/` layout here are the assumptions of docs/LEGACY-PACK-REGISTRY.md, made pluggable
(`catalog`, `wrap`, `healthy`) so tests can play servers that differ from them.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from mirror.formats.pack import build_pack_archive, load_pack_dir, pack_artifact
from mirror.lab.httpserver import serve
from mirror.oci.artifact import OciArtifact
from mirror.oci.descriptor import digest_of
from mirror.oci.names import oci_tag

Packs = Sequence[tuple[str, str]]  # (name, version) pairs, sorted
CatalogStyle = Callable[[Packs], Any]
Wrap = Callable[[bytes, str], OciArtifact]


def catalog_names(packs: Packs) -> Any:
    """Distribution-like: names only, versions come from `/v2/<name>/tags/list`."""
    return {"repositories": sorted({name for name, _ in packs})}


def catalog_packs(packs: Packs) -> Any:
    """One entry per pack version, with name and version fields."""
    return {"packs": [{"name": n, "version": v} for n, v in packs]}


@dataclass
class _Store:
    username: str
    password: str
    healthy: bool
    catalog: Any
    manifests: dict[tuple[str, str], tuple[str, bytes]] = field(default_factory=dict)
    blobs: dict[tuple[str, str], bytes] = field(default_factory=dict)
    tags: dict[str, list[str]] = field(default_factory=dict)

    def add(self, repo: str, tag: str, art: OciArtifact) -> None:
        digest = art.descriptor.digest
        for ref in (tag, digest):
            self.manifests[(repo, ref)] = (art.media_type, art.manifest)
        for desc, data in art.blobs:
            self.blobs[(repo, desc.digest)] = data
        self.tags.setdefault(repo, []).append(tag)


def _load(folder: Path, wrap: Wrap) -> tuple[list[tuple[str, str]], list[tuple[str, OciArtifact]]]:
    packs, arts = [], []
    dirs = [folder] if (folder / "pack.json").is_file() else sorted(folder.iterdir())
    for pack_dir in dirs:
        if not (pack_dir / "pack.json").is_file():
            continue
        info, _ = load_pack_dir(pack_dir)
        filename, archive = build_pack_archive(pack_dir)
        packs.append((info.name, info.version))
        arts.append((oci_tag(info.version), wrap(archive, filename)))
    order = sorted(range(len(packs)), key=lambda i: packs[i])
    return [packs[i] for i in order], [arts[i] for i in order]


_MANIFEST = re.compile(r"^/v2/(?P<repo>.+)/manifests/(?P<ref>[^/]+)$")
_BLOB = re.compile(r"^/v2/(?P<repo>.+)/blobs/(?P<ref>sha256:[0-9a-f]{64})$")
_TAGS = re.compile(r"^/v2/(?P<repo>.+)/tags/list$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    store: _Store  # set on the per-server subclass

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _authorized(self) -> bool:
        raw = f"{self.store.username}:{self.store.password}".encode()
        want = "Basic " + base64.b64encode(raw).decode()
        return hmac.compare_digest(self.headers.get("Authorization", ""), want)

    def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, code: int, doc: Any, headers: dict[str, str] | None = None) -> None:
        self._send(code, json.dumps(doc).encode(), headers)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if not self._authorized():
            err = {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
            self._json(401, err, {"WWW-Authenticate": 'Basic realm="legacy pack registry"'})
            return
        store = self.store
        if path == "/health":
            self._json(200 if store.healthy else 503, {"status": "UP" if store.healthy else "DOWN"})
        elif path == "/v1/_catalog":
            self._json(200, store.catalog)
        elif path == "/v2/":
            self._json(200, {}, {"Docker-Distribution-API-Version": "registry/2.0"})
        else:
            self._v2(path)

    def _v2(self, path: str) -> None:
        store = self.store
        if (m := _TAGS.match(path)) and m["repo"] in store.tags:
            self._json(200, {"name": m["repo"], "tags": store.tags[m["repo"]]})
        elif (m := _MANIFEST.match(path)) and (m["repo"], m["ref"]) in store.manifests:
            media, data = store.manifests[(m["repo"], m["ref"])]
            self._send(200, data, {"Content-Type": media, "Docker-Content-Digest": digest_of(data)})
        elif (m := _BLOB.match(path)) and (m["repo"], m["ref"]) in store.blobs:
            data = store.blobs[(m["repo"], m["ref"])]
            self._send(200, data, {"Content-Type": "application/octet-stream"})
        else:
            self._json(404, {"errors": [{"code": "NOT_FOUND", "message": f"{path} not found"}]})


@contextlib.contextmanager
def serve_legacy(
    packs_dir: Path,
    *,
    username: str = "spectro",
    password: str = "legacy-secret",
    catalog: CatalogStyle = catalog_names,
    wrap: Wrap = pack_artifact,
    healthy: bool = True,
) -> Iterator[str]:
    """Serve the packs under `packs_dir` (one pack folder or a folder of them) on 127.0.0.1.

    Each pack is `/v2/<name>:<version as OCI tag>`, wrapped by `wrap` (default: the ORAS
    pack form). Every endpoint needs basic auth. Yields the base URL, without a slash.
    """
    packs, arts = _load(packs_dir, wrap)
    store = _Store(username, password, healthy, catalog(packs))
    for (name, _), (tag, art) in zip(packs, arts, strict=True):
        store.add(name, tag, art)
    handler = type("LegacyHandler", (_Handler,), {"store": store})
    with serve(handler, "lab-legacy") as url:
        yield url
