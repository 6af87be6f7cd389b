"""From a bundle spec to the artifacts to copy: one discovery per registry kind."""

from __future__ import annotations

from mirror.discovery import oci
from mirror.discovery.interface import Selection
from mirror.errors import UsageError
from mirror.registry.auth import resolve_credentials, unset_hint
from mirror.registry.client import RegistryClient
from mirror.registry.http import Endpoint
from mirror.settings import Net
from mirror.spec import BundleSpec, Registry
from mirror.stores.interface import KnownManifests


def client_for(reg: Registry, *, net: Net | None = None) -> RegistryClient:
    """Credentials from the spec's variables, else the login files for the host and the
    registry's basePath (a podman login to that namespace counts)."""
    if not reg.url:
        raise UsageError(f"registry {reg.name}: no url")
    host = Endpoint.parse(reg.url).host
    names = reg.auth.names if reg.auth is not None else None
    creds = resolve_credentials(host, names, reg.base_path)
    hint = unset_hint(names) if creds is None else None
    return RegistryClient(reg.url, credentials=creds, net=net, login_hint=hint)


def discover_all(
    spec: BundleSpec,
    *,
    net: Net | None = None,  # the run's CA file, read timeout and rate floor
    jobs: int = 8,
    known: KnownManifests | None = None,
) -> Selection:
    """Every registry's selection, in spec order; refs must be unique across registries.

    `known`: manifests an earlier run kept (the export cache): OCI registries are then
    asked with conditional GETs, and only for what is not already here.
    """
    out = Selection()
    for reg in spec.registries:
        part = _discover(reg, net or Net(), jobs, known)
        out.found.extend(part.found)
        out.notes.extend(part.notes)
    seen: dict[str, str] = {}
    for f in out.found:
        other = seen.setdefault(f.ref, f.registry.name)
        if other != f.registry.name:
            raise UsageError(f"{f.ref} would come from both {other} and {f.registry.name}")
    return out


def _discover(reg: Registry, net: Net, jobs: int, known: KnownManifests | None) -> Selection:
    if reg.kind == "oci":
        return oci.discover(reg, client_for(reg, net=net), jobs=jobs, known=known)
    if reg.kind == "pack" and reg.path:
        from mirror.discovery import packdir

        return packdir.discover(reg)
    if reg.kind == "pack":
        from mirror.discovery import legacy

        return legacy.discover(reg, net=net)
    if reg.kind == "helm":
        from mirror.discovery import helm

        return helm.discover(reg, jobs=jobs, net=net, known=known)
    raise UsageError(f"registry {reg.name}: unknown kind {reg.kind!r}")
