"""Pack constraints across a selection: warn about what it leaves out, or add it.

A pack's `constraints.dependencies` live in pack.json, inside its tarball layer, so the
layer is read before the copy (and cached, so the copy does not fetch it again; a dry
run streams it without caching). Candidates for a missing dependency are looked up in
the same registry at `<basePath>/spectro-packs/archive/<name>`, newest fitting first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mirror.cache import BlobCache
from mirror.copy import parallel_map
from mirror.discovery.interface import Found
from mirror.discovery.oci import kind_of
from mirror.errors import NotFoundError
from mirror.formats import jsondoc
from mirror.formats.pack import (
    PackInfo,
    check_dependencies,
    read_pack_json_from_archive,
    resolve_dependencies,
)
from mirror.formats.semver import version_order
from mirror.oci import mediatypes as mt
from mirror.oci.descriptor import Descriptor
from mirror.stores.interface import origin
from mirror.stores.registry import RegistryStore

MAX_CANDIDATES = 3  # newest fitting versions probed per dependency: bounded work


@dataclass
class _Pool:
    """Packs seen so far: those selected and those the registry could add."""

    selected: dict[str, tuple[PackInfo, Found]] = field(default_factory=dict)
    available: dict[str, tuple[PackInfo, Found]] = field(default_factory=dict)
    probed: set[str] = field(default_factory=set)


@dataclass
class PackReport:
    notes: list[str] = field(default_factory=list)
    infos: dict[str, PackInfo] = field(default_factory=dict)  # by the pack's manifest digest
    added: list[Found] = field(default_factory=list)  # with `add`: required packs to copy too


def check_packs(
    found: Sequence[Found],
    cache: BlobCache,
    *,
    add: bool,
    store: bool,
    jobs: int = 8,
    known: Mapping[str, PackInfo] | None = None,
) -> PackReport:
    """Notes for the plan, and each pack's pack.json (read once, in parallel, here).

    With `add`, the packs the selected ones require are returned in `added`; the selection
    handed in is never changed.
    """
    pool = _Pool()
    packs = [f for f in found if f.kind == "pack"]
    infos = parallel_map(
        jobs, lambda f: pack_json(f, cache, store=store, known=known), packs, "pack"
    )
    report = PackReport()
    for f, info in zip(packs, infos, strict=True):
        if info is not None:
            pool.selected[info.ref] = (info, f)
            report.infos[f.desc.digest] = info
    names = [name_note(f, i) for f, i in zip(packs, infos, strict=True) if i is not None]
    if not pool.selected:
        return report
    report.notes = [n for n in names if n]
    report.notes += _dependency_notes(pool, report, cache, add, store)
    return report


def _dependency_notes(
    pool: _Pool,
    report: PackReport,
    cache: BlobCache,
    add: bool,
    store: bool,
) -> list[str]:
    """What the selected packs' constraints want; with `add`, required packs join it."""
    for _ in range(8):  # transitive, bounded
        if not _probe(pool, cache, store):
            break
    selected = [p for p, _ in pool.selected.values()]
    available = [p for p, _ in pool.available.values()]
    if not add:
        return [f"pack {i.message()}" for i in check_dependencies(selected, available)]
    added, remaining = resolve_dependencies(selected, available)
    notes = []
    for info in added:
        found = pool.available[info.ref][1]
        report.added.append(found)
        report.infos[found.desc.digest] = info
        notes.append(f"added pack {info.ref}: a required dependency")
        note = name_note(found, info)
        notes += [note] if note else []
    return notes + [f"pack {i.message()}" for i in remaining]


def name_note(found: Found, info: PackInfo) -> str | None:
    """Palette finds a pack by `.../<name>:<version>` as pack.json says: say where they differ."""
    name = found.path.rsplit("/", 1)[-1]
    wrong = [f"name {info.name!r}"] if name != info.name else []
    if found.tag not in (info.version, info.version.replace("+", "_")):
        wrong.append(f"version {info.version!r}")
    if not wrong:
        return None
    return (
        f"pack {found.ref}: pack.json says {' and '.join(wrong)}; Palette requires the "
        f"repository and tag to match (.../{info.name}:{info.version})"
    )


def _probe(pool: _Pool, cache: BlobCache, store: bool) -> bool:
    """Look up candidates for every gap not probed yet; True when something new was seen."""
    everything = [p for p, _ in [*pool.selected.values(), *pool.available.values()]]
    issues = check_dependencies(everything, [])
    new = False
    for issue in issues:
        name = issue.dependency.pack_name
        origin = pool.selected.get(issue.pack.ref) or pool.available.get(issue.pack.ref)
        if origin is None or not isinstance(_registry(origin[1]), RegistryStore):
            continue
        key = f"{origin[1].registry.name}/{name}"
        if key in pool.probed:
            continue
        pool.probed.add(key)
        for found in _candidates(origin[1], name, issue.dependency.allows):
            info = pack_json(found, cache, store=store)
            if info is not None and info.ref not in pool.selected:
                pool.available[info.ref] = (info, found)
                new = True
    return new


def _registry(found: Found) -> object:
    """The registry behind a found pack, through any wrapper in front of it."""
    return origin(found.source)


def _candidates(like: Found, name: str, allows: object) -> list[Found]:
    src = _registry(like)
    assert isinstance(src, RegistryStore)
    base = like.registry.base_path.strip("/")
    repo = f"spectro-packs/archive/{name}"
    full = f"{base}/{repo}" if base else repo
    try:
        tags = src.client.list_tags(full)
    except NotFoundError:
        return []
    fitting = [t for t in version_order(tags) if callable(allows) and allows(t)]
    out = []
    source = RegistryStore(src.client, full, src.known)
    for tag in fitting[:MAX_CANDIDATES]:
        desc, data = source.get_tag(tag)
        out.append(Found(like.registry, repo, tag, full, desc, source, kind_of(desc, data), ()))
    return out


def pack_json(
    found: Found, cache: BlobCache, *, store: bool, known: Mapping[str, PackInfo] | None = None
) -> PackInfo | None:
    """pack.json from the pack's tar layer: already read (`known`), the cache, or the source."""
    data = found.source.fetch_manifest(found.desc)
    layers = [Descriptor.from_json(d) for d in jsondoc.loads(data).get("layers") or []]
    for layer in layers:
        if layer.media_type != mt.OCI_LAYER_TAR:
            continue
        if known and layer.digest in known:
            return known[layer.digest]
        if store and not cache.has(layer):
            with found.source.fetch(layer) as stream:
                cache.put(layer, stream)
        if cache.has(layer):
            with cache.path(layer.digest).open("rb") as fh:
                return read_pack_json_from_archive(fh, found.ref)
        with found.source.fetch(layer) as stream:
            return read_pack_json_from_archive(stream, found.ref)  # type: ignore[arg-type]
    return None
