"""What to copy from an OCI registry: repositories by glob or `_catalog`, tags by filter."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence

from mirror.copy import parallel_map
from mirror.discovery.interface import Found, Selection
from mirror.errors import NotFoundError
from mirror.formats.cosign import subject_of_tag
from mirror.oci import mediatypes as mt
from mirror.oci.descriptor import Descriptor, parse_manifest, successors
from mirror.registry.client import RegistryClient
from mirror.spec import Registry
from mirror.stores.interface import KnownManifests
from mirror.stores.registry import RegistryStore

_GLOB = re.compile(r"[*?\[]")


def discover(
    reg: Registry, client: RegistryClient, *, jobs: int = 8, known: KnownManifests | None = None
) -> Selection:
    """Resolve the spec's selection to root descriptors; fetched manifests are remembered.

    Repositories are listed and resolved in parallel (a registry of a thousand packs is a
    thousand tag lists); the result keeps the registry's order.
    """
    base = reg.base_path.strip("/")
    repos = _repositories(reg, client, base)
    one = lambda repo: _one_repository(reg, client, base, repo, known)  # noqa: E731
    parts = parallel_map(jobs, one, repos, "discover")
    out = Selection()
    for part in parts:
        out.found.extend(part.found)
        out.notes.extend(part.notes)
    return out


def _one_repository(
    reg: Registry, client: RegistryClient, base: str, repo: str, known: KnownManifests | None
) -> Selection:
    full = f"{base}/{repo}" if base else repo
    source = RegistryStore(client, full, known)
    # cosign's companion tags travel with what they sign (discovery/referrers.py), not as
    # artifacts of their own, whatever the tag filter says.
    listed = [t for t in source.tags() if subject_of_tag(t) is None]
    tags = reg.tags.apply(listed, f"registry {reg.name}")
    if not tags and literal_repositories(reg.repositories):
        raise NotFoundError(f"registry {reg.name}: no tag of {full} matches the spec's tag filter")
    part = Selection()
    for tag in tags:
        desc, data = source.get_tag(tag)
        item = _found(reg, source, repo, full, tag, desc, data, part.notes)
        if item is not None:
            part.found.append(item)
    return part


def _repositories(reg: Registry, client: RegistryClient, base: str) -> list[str]:
    """Repositories relative to basePath; literal names are taken as given, globs listed."""
    patterns = list(reg.repositories)
    literal = [p for p in patterns if not _GLOB.search(p)]
    globs = [p for p in patterns if _GLOB.search(p)]
    if patterns and not globs:
        return literal
    prefix = f"{base}/" if base else ""
    listed = [r[len(prefix) :] for r in client.catalog() if r.startswith(prefix)]
    picked = [r for r in listed if not globs or any(fnmatch.fnmatchcase(r, g) for g in globs)]
    out = sorted(set(picked) | set(literal))
    if patterns and not out:
        raise NotFoundError(
            f"registry {reg.name}: no repository under {base or '/'} matches {patterns}"
        )
    return out


def _found(
    reg: Registry,
    source: RegistryStore,
    repo: str,
    full: str,
    tag: str,
    desc: Descriptor,
    data: bytes,
    notes: list[str],
) -> Found | None:
    platforms: tuple[str, ...] = ()
    if desc.media_type in mt.INDEXES:
        children = successors(desc, data)
        platforms = tuple(c.platform for c in children if c.platform)
        if reg.platforms and not all(c.platform in reg.platforms for c in children):
            notes.append(
                f"skipped {full}:{tag}: an index of {', '.join(platforms) or 'unknown platforms'}; "
                f"keeping only {', '.join(reg.platforms)} would change its digest"
            )
            return None
    return Found(
        registry=reg,
        repository=repo,
        tag=tag,
        path=full,
        desc=desc,
        source=source,
        kind=kind_of(desc, data),
        platforms=platforms,
    )


def kind_of(desc: Descriptor, data: bytes) -> str:
    """What a manifest holds, by its config's and layers' media types; a manifest that is
    not a JSON object is an IntegrityError naming it (a hostile or broken registry)."""
    if desc.media_type in mt.INDEXES:
        return "image"
    doc = parse_manifest(data, f"manifest {desc.digest}")
    config, layers = doc.get("config"), doc.get("layers")
    config_type = config.get("mediaType") if isinstance(config, dict) else None
    listed = layers if isinstance(layers, list) else []
    types = [str(layer.get("mediaType")) for layer in listed if isinstance(layer, dict)]
    return mt.classify(desc.media_type, config_type, types)


def literal_repositories(patterns: Sequence[str]) -> bool:
    return bool(patterns) and not any(_GLOB.search(p) for p in patterns)
