"""Upstream image hosts as sources: where each image of the closure is pulled from.

An image names its real host (`ghcr.io/acme/tool:1.2`). The spec's `upstreams:` may send a
host elsewhere (a Harbor proxy project, an Artifactory remote, a lab registry), with a path
prefix for its repositories. Credentials are looked up for the host actually asked.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from mirror.copy import parallel_map
from mirror.discovery.images import Need
from mirror.errors import MirrorError, NotFoundError, RegistryError, UsageError, redact
from mirror.oci import mediatypes as mt
from mirror.oci.descriptor import Descriptor, successors
from mirror.registry.auth import Credentials, has_namespace_logins, resolve_credentials
from mirror.registry.client import RegistryClient
from mirror.registry.http import split_url
from mirror.settings import Net
from mirror.spec import BundleSpec
from mirror.stores.interface import KnownManifests
from mirror.stores.registry import RegistryStore


@dataclass(frozen=True)
class Resolved:
    """One image of the closure, found upstream: what to copy and how it was narrowed."""

    need: Need
    source: RegistryStore
    desc: Descriptor
    platforms: tuple[str, ...] = ()
    note: str | None = None

    @property
    def layout_ref(self) -> str:
        """Its name in the bundle's index.json: `host/path:tag`, or `host/path@digest`."""
        ref = self.need.ref
        return f"{ref.name}@{ref.digest}" if ref.digest else f"{ref.name}:{ref.tag}"


class Upstreams:
    """One registry client per upstream endpoint and login, made on first use, shared by
    threads. Logins are podman's: a login to a namespace (`podman login ghcr.io/acme`)
    serves the images under it, before the host's own."""

    def __init__(self, spec: BundleSpec, *, net: Net | None = None) -> None:
        self._spec = spec
        self._net = net
        self._clients: dict[tuple[str, Credentials | None], RegistryClient] = {}
        self._logins: dict[tuple[str, str], Credentials | None] = {}
        self._namespaced: dict[str, bool] = {}
        self._lock = threading.Lock()

    def locate(self, need: Need) -> tuple[RegistryClient, str]:
        """The client to ask and the repository to ask it for."""
        ref = need.ref
        mapped = self._spec.upstream(ref.host)
        if mapped is None:
            scheme_url, prefix = f"https://{ref.api_host}", ""
        else:
            scheme_url, prefix = split_upstream(mapped, ref.host)
        repo = f"{prefix}/{ref.repository}" if prefix else ref.repository
        with self._lock:
            key = (scheme_url, self._credentials(urlsplit(scheme_url).netloc, repo))
            client = self._clients.get(key)
            if client is None:
                client = RegistryClient(scheme_url, credentials=key[1], net=self._net)
                self._clients[key] = client
        return client, repo

    def _credentials(self, host: str, repo: str) -> Credentials | None:
        """Looked up once per host, or once per repository where the login files hold
        logins to namespaces of that host (a helper is not asked once per image)."""
        namespaced = self._namespaced.get(host)
        if namespaced is None:
            namespaced = self._namespaced[host] = has_namespace_logins(host)
        key = (host, repo if namespaced else "")
        if key not in self._logins:
            self._logins[key] = resolve_credentials(host, namespace=key[1])
        return self._logins[key]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


def split_upstream(url: str, host: str) -> tuple[str, str]:
    """`http://127.0.0.1:5001/ghcr.io` -> (`http://127.0.0.1:5001`, `ghcr.io`)."""
    text = url if "://" in url else f"https://{url}"
    try:
        parts = split_url(text)
    except ValueError:  # "Invalid IPv6 URL", a port past 65535
        raise UsageError(f"upstreams: {host}: not a registry URL: {redact(url)!r}") from None
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise UsageError(f"upstreams: {host}: not a registry URL: {redact(url)!r}")
    return f"{parts.scheme}://{parts.netloc}", parts.path.strip("/")


def resolve_all(
    needs: Sequence[Need],
    upstreams: Upstreams,
    *,
    platforms: Sequence[str] = (),
    known: KnownManifests | None = None,
    jobs: int = 8,
) -> list[Resolved]:
    """Every image's root manifest; the first that is missing or denied fails the export."""

    def one(need: Need) -> Resolved | MirrorError:
        try:
            return resolve(need, upstreams, platforms=platforms, known=known)
        except RegistryError as exc:
            return exc

    results = parallel_map(jobs, one, needs, "upstream")
    failed = [(n, r) for n, r in zip(needs, results, strict=True) if isinstance(r, MirrorError)]
    if failed:
        need, exc = failed[0]
        more = f" (and {len(failed) - 1} more images)" if len(failed) > 1 else ""
        error = NotFoundError if isinstance(exc, NotFoundError) else type(exc)
        raise error(
            f"image {need.ref} needed by {', '.join(need.needed_by)}: {exc}{more}"
        ) from None
    return [r for r in results if isinstance(r, Resolved)]


def resolve(
    need: Need,
    upstreams: Upstreams,
    *,
    platforms: Sequence[str] = (),
    known: KnownManifests | None = None,
) -> Resolved:
    """A digest pin is asked by digest (and checked); a tag by tag, conditionally if seen."""
    client, repo = upstreams.locate(need)
    source = RegistryStore(client, repo, known)
    if need.ref.digest:
        desc, data = client.get_manifest(repo, need.ref.digest)  # checks bytes against the pin
        source.remember(desc, data)
    else:
        desc, data = source.get_tag(need.ref.tag or "latest")
    return _narrow(need, source, desc, data, platforms)


def _narrow(
    need: Need,
    source: RegistryStore,
    desc: Descriptor,
    data: bytes,
    platforms: Sequence[str],
) -> Resolved:
    """Apply the platform filter without rewriting a manifest.

    An index whose platforms all pass is kept whole. For a tag, when exactly one child
    passes, that child is carried under the tag: a single-arch image, with its own digest.
    Anything else (a pin, or several children of many) is kept whole, with a note, since
    a narrower index would be a new manifest that no signature covers.
    """
    if desc.media_type not in mt.INDEXES:
        return Resolved(need, source, desc)
    children = successors(desc, data)
    all_platforms = tuple(c.platform for c in children if c.platform)
    if not platforms:
        return Resolved(need, source, desc, all_platforms)
    keep = [c for c in children if c.platform in platforms]
    if len(keep) == len(children):
        return Resolved(need, source, desc, all_platforms)
    if len(keep) == 1 and not need.ref.digest:
        child = keep[0]
        source.fetch_manifest(child)  # fetched and checked now, remembered for the copy
        note = f"image {need.ref}: kept only {child.platform} ({child.digest[:19]})"
        return Resolved(need, source, child, (child.platform or "",), note)
    why = "a digest pin" if need.ref.digest else f"{len(keep)} of {len(children)} platforms match"
    note = f"image {need.ref}: carried whole ({', '.join(all_platforms)}): {why}"
    return Resolved(need, source, desc, all_platforms, note)
