"""Pack folders (`kind: pack`, `path: DIR`) as a source of OCI pack artifacts.

`path` is one pack folder (it holds pack.json) or a folder of pack folders. A relative path is
taken relative to the current working directory, as every other path on the command line is.
Each pack becomes the deterministic `NAME-VERSION.tar.gz` of `mirror.formats.pack`, wrapped the
way `oras push` wraps it, so the same folder gives the same digest on every run and machine.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from pathlib import Path

from mirror.discovery.interface import Found, Selection
from mirror.errors import UsageError
from mirror.formats.pack import build_pack_archive, load_pack_dir, pack_artifact
from mirror.oci.names import oci_tag, pack_repository
from mirror.spec import Registry
from mirror.stores.memory import MemorySource

ARCHIVE_PREFIX = "spectro-packs/archive"


def discover(reg: Registry) -> Selection:
    """Every pack under `reg.path`, filtered by the spec's repositories (names) and tags."""
    if not reg.path:
        raise UsageError(f"registry {reg.name}: kind pack needs a path or a url")
    root = Path(reg.path).expanduser()
    where = f"registry {reg.name}: pack folder {root}"
    if not root.is_dir():
        raise UsageError(f"{where}: not a directory")
    notes: list[str] = []
    packs: dict[tuple[str, str], Path] = {}
    for pack_dir in _pack_dirs(root, where, notes):
        info, warnings = load_pack_dir(pack_dir)
        notes += warnings
        other = packs.setdefault((info.name, info.version), pack_dir)
        if other != pack_dir:
            raise UsageError(f"{where}: {other} and {pack_dir} are both {info.ref}")
    wanted = pick(reg, _versions(packs))
    source = MemorySource(f"pack folder {root}")
    found = []
    for (name, version), pack_dir in sorted(packs.items()):
        if version not in wanted.get(name, ()):
            continue
        filename, archive = build_pack_archive(pack_dir)
        desc = source.add(pack_artifact(archive, filename))
        found.append(
            Found(
                registry=reg,
                repository=f"{ARCHIVE_PREFIX}/{name}",
                tag=oci_tag(version),
                path=pack_repository(reg.name, name),
                desc=desc,
                source=source,
                kind="pack",
            )
        )
    return Selection(found, notes)


def _pack_dirs(root: Path, where: str, notes: list[str]) -> list[Path]:
    """`root` itself when it is a pack, else its sub-folders that are; hidden ones are skipped."""
    if (root / "pack.json").is_file():
        return [root]
    out = []
    for child in sorted(root.iterdir()):
        if not child.is_dir() or child.name.startswith("."):
            continue
        if (child / "pack.json").is_file():
            out.append(child)
        else:
            notes.append(f"{where}: skipped {child.name}/: no pack.json")
    if not out:
        raise UsageError(f"{where}: no pack folders (directories holding a pack.json)")
    return out


def _versions(packs: Mapping[tuple[str, str], object]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, version in packs:
        out.setdefault(name, []).append(version)
    return out


def pick(reg: Registry, versions: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """The spec's filters over packs: `repositories` globs match names, `tags` match versions."""
    patterns = reg.repositories
    out = {}
    for name, vs in versions.items():
        if patterns and not any(fnmatch.fnmatchcase(name, p) for p in patterns):
            continue
        kept = reg.tags.apply(vs, f"registry {reg.name}")
        if kept:
            out[name] = kept
    if patterns and not any(fnmatch.fnmatchcase(n, p) for n in versions for p in patterns):
        raise UsageError(f"registry {reg.name}: no pack name matches {list(patterns)}")
    return out
