"""Palette packs: pack.json, pack folders, pack archives and the OCI artifact they travel in.

Archive layout. Palette's docs build a pack archive with
`tar -czvf NAME-VERSION.tar.gz NAME-VERSION` from a folder named after the pack, then
`oras push .../spectro-packs/archive/NAME:VERSION NAME-VERSION.tar.gz`. So the archive holds
one top directory, `NAME-VERSION/`, with the folder's files under it. We name that directory
from pack.json, not from the folder on disk, so two checkouts of the same pack (pack-central
folders are often named differently from their pack) give the same bytes.

Determinism. Entries are sorted, directories precede their contents, every entry has mtime 0,
uid/gid 0 and empty user/group names, modes are 0755 (directories and executables) or 0644,
and the gzip header carries mtime 0 and no file name. Version-control and OS litter (.git,
.svn, .hg, .DS_Store) and a `NAME-VERSION.tar.gz` left in the folder by the docs' script are
left out. Symlinks are stored as links; one that leaves the folder is refused. The bytes then
depend only on the folder's contents (and on zlib, which is stable in practice).

The OCI form is what ORAS 1.0 pushes, minus its `org.opencontainers.image.created` manifest
annotation, which would make every push differ.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:  # jsonschema is imported where a document is validated
    import jsonschema

from mirror.errors import UsageError
from mirror.formats import InflatedTooFar, jsondoc, open_tar_stream
from mirror.formats.packcheck import LAYERS, pack_warnings
from mirror.formats.schema import known_valid, schema_problem, validator
from mirror.formats.semver import parse_version, version_order
from mirror.oci import mediatypes as mt
from mirror.oci.artifact import OciArtifact, single_layer_artifact

DEPENDENCY_TYPES = ("required", "optional", "notSupported")
MAX_PACK_JSON = 1024 * 1024
__all__ = [
    "DEPENDENCY_TYPES",
    "LAYERS",
    "DependencyIssue",
    "PackDependency",
    "PackInfo",
    "build_pack_archive",
    "check_dependencies",
    "load_pack_dir",
    "pack_artifact",
    "parse_pack_json",
    "read_pack_json_from_archive",
    "resolve_dependencies",
]
_SKIP_NAMES = frozenset({".git", ".svn", ".hg", ".DS_Store"})


@dataclass(frozen=True)
class PackDependency:
    """One entry of `constraints.dependencies`; empty min/max mean no bound (both inclusive)."""

    pack_name: str
    layer: str
    min_version: str
    max_version: str
    type: str

    def allows(self, version: str) -> bool:
        """Whether `version` is within [min, max]; a bound that is not semver is ignored."""
        low, high = parse_version(self.min_version), parse_version(self.max_version)
        if low is None and high is None:
            return True
        v = parse_version(version)
        if v is None:
            return False
        return (low is None or v >= low) and (high is None or v <= high)

    def describe(self) -> str:
        bounds = [f">={self.min_version}" if self.min_version else ""]
        bounds.append(f"<={self.max_version}" if self.max_version else "")
        return " ".join([self.pack_name, *(b for b in bounds if b)])


@dataclass(frozen=True)
class PackInfo:
    """What mirror needs from a pack.json; fields missing from the file are empty."""

    name: str
    display_name: str
    version: str
    layer: str
    addon_type: str
    cloud_types: tuple[str, ...]
    charts: tuple[str, ...]
    kube_manifests: tuple[str, ...]
    annotations: tuple[tuple[str, str], ...]
    dependencies: tuple[PackDependency, ...]

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    def summary(self) -> dict[str, Any]:
        """The keys recorded per pack in the bundle manifest and shown by `inspect`."""
        return {
            "name": self.name,
            "version": self.version,
            "layer": self.layer,
            "cloudTypes": list(self.cloud_types),
            "displayName": self.display_name,
        }


PACK_SCHEMA = "pack.schema.json"


def _schema_errors(doc: dict[str, Any]) -> list[jsonschema.ValidationError]:
    """jsonschema's errors, walked only for a pack.json the compiled check does not pass."""
    if known_valid(PACK_SCHEMA, doc):
        return []
    return list(validator(PACK_SCHEMA).iter_errors(doc))


def _str(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key)
    return value if isinstance(value, str) else ""


def _strs(doc: dict[str, Any], key: str) -> tuple[str, ...]:
    value = doc.get(key)
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str))


def _dependencies(doc: dict[str, Any]) -> tuple[PackDependency, ...]:
    constraints = doc.get("constraints")
    raw = constraints.get("dependencies") if isinstance(constraints, dict) else None
    out = []
    for dep in raw if isinstance(raw, list) else []:
        if isinstance(dep, dict) and isinstance(dep.get("packName"), str):
            out.append(
                PackDependency(
                    pack_name=dep["packName"],
                    layer=_str(dep, "layer"),
                    min_version=_str(dep, "minVersion").strip(),
                    max_version=_str(dep, "maxVersion").strip(),
                    type=_str(dep, "type"),
                )
            )
    return tuple(out)


def _fatal(doc: dict[str, Any], where: str) -> None:
    """Raise for what makes a pack unusable: no name or version, or one no registry accepts."""
    for key in ("name", "version"):
        value = doc.get(key)
        if value is None:
            raise UsageError(f"{where}: pack.json has no {key}")
        if not isinstance(value, str) or not value.strip():
            raise UsageError(f"{where}: pack.json {key} must be a non-empty string, not {value!r}")
    for key in ("name", "version"):
        if schema_problem(PACK_SCHEMA, doc[key], definition=f"properties/{key}") is not None:
            what = "repository name" if key == "name" else "tag"
            raise UsageError(f"{where}: pack.json {key} {doc[key]!r} is not a valid OCI {what}")


def parse_pack_json(
    data: bytes, where: str, *, warnings: bool = True
) -> tuple[PackInfo, list[str]]:
    """Parse and check a pack.json: UsageError for an unusable one, warnings for messy ones
    (none looked for without `warnings`: an export's scan reads only what a pack needs)."""
    if len(data) > MAX_PACK_JSON:
        raise UsageError(f"{where}: pack.json is larger than {MAX_PACK_JSON} bytes")
    try:
        doc = jsondoc.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{where}: pack.json is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{where}: pack.json is not a JSON object")
    _fatal(doc, where)
    annotations = doc.get("annotations")
    info = PackInfo(
        name=doc["name"],
        display_name=_str(doc, "displayName"),
        version=doc["version"],
        layer=_str(doc, "layer"),
        addon_type=_str(doc, "addonType"),
        cloud_types=_strs(doc, "cloudTypes"),
        charts=_strs(doc, "charts"),
        kube_manifests=_strs(doc, "kubeManifests"),
        annotations=tuple(
            sorted((str(k), str(v)) for k, v in annotations.items())
            if isinstance(annotations, dict)
            else ()
        ),
        dependencies=_dependencies(doc),
    )
    if not warnings:
        return info, []
    schema_errors = [e for e in _schema_errors(doc) if e.path]
    return info, [f"{where}: {w}" for w in pack_warnings(doc, schema_errors)]


def _read_capped(path: Path) -> bytes:
    with path.open("rb") as fh:
        data = fh.read(MAX_PACK_JSON + 1)
    return data


def load_pack_dir(path: Path) -> tuple[PackInfo, list[str]]:
    """Load a pack folder: pack.json and values.yaml are required, as Palette requires them."""
    if not path.is_dir():
        raise UsageError(f"{path}: not a pack directory")
    for required in ("pack.json", "values.yaml"):
        if not (path / required).is_file():
            raise UsageError(f"{path}: pack directory has no {required}")
    info, warnings = parse_pack_json(_read_capped(path / "pack.json"), str(path))
    listed = [("charts", c) for c in info.charts] + [
        ("kubeManifests", m) for m in info.kube_manifests
    ]
    root = path.resolve()
    for key, rel in listed:
        target = (path / rel).resolve()
        if not target.is_relative_to(root):
            warnings.append(f"{path}: {key} entry {rel!r} points outside the pack")
        elif not target.exists():
            warnings.append(f"{path}: {key} entry {rel!r} is missing")
    return info, warnings


def _walk(root: Path, rel: str = "") -> list[tuple[str, Path]]:
    """Every path under root, sorted, parents before children, litter skipped."""
    out: list[tuple[str, Path]] = []
    for entry in sorted(os.scandir(root / rel) if rel else os.scandir(root), key=lambda e: e.name):
        if entry.name in _SKIP_NAMES:
            continue
        child = f"{rel}/{entry.name}" if rel else entry.name
        out.append((child, Path(entry.path)))
        if entry.is_dir(follow_symlinks=False):
            out += _walk(root, child)
    return out


def _tarinfo(name: str, path: Path, root: Path) -> tarfile.TarInfo:
    st = path.lstat()
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    if stat.S_ISLNK(st.st_mode):
        link = os.readlink(path)
        if os.path.isabs(link) or not (path.parent / link).resolve().is_relative_to(root):
            raise UsageError(f"{path}: symlink to {link!r} leaves the pack directory")
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, link, 0o777
    elif stat.S_ISDIR(st.st_mode):
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    elif stat.S_ISREG(st.st_mode):
        info.size, info.mode = st.st_size, 0o755 if st.st_mode & 0o111 else 0o644
    else:
        raise UsageError(f"{path}: not a regular file, directory or symlink")
    return info


def build_pack_archive(pack_dir: Path) -> tuple[str, bytes]:
    """The pack folder as `NAME-VERSION.tar.gz`, byte-identical for identical contents."""
    info, _ = load_pack_dir(pack_dir)
    top = f"{info.name}-{info.version}"
    filename = f"{top}.tar.gz"
    root = pack_dir.resolve()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_tarinfo(top, pack_dir, root))
        for rel, path in _walk(pack_dir):
            if rel == filename:
                continue
            member = _tarinfo(f"{top}/{rel}", path, root)
            if member.isreg():
                with path.open("rb") as fh:
                    tar.addfile(member, fh)
            else:
                tar.addfile(member)
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return filename, out.getvalue()


def pack_artifact(archive: bytes, filename: str) -> OciArtifact:
    """The OCI artifact `oras push REF FILENAME` makes of a pack archive."""
    return single_layer_artifact(
        b"{}", mt.UNKNOWN_CONFIG, archive, mt.OCI_LAYER_TAR, {mt.ANN_TITLE: filename}
    )


def read_pack_json_from_archive(stream: BinaryIO, where: str) -> PackInfo | None:
    """pack.json from a streamed .tar.gz or .tar (top level or one directory down), or None.

    Reads only up to that member; the caller drains the rest if it is hashing the stream.
    A malformed archive or pack.json gives None: a pack's metadata is a label, not a gate.
    """
    try:
        with open_tar_stream(stream) as tar:
            for member in tar:
                parts = [p for p in member.name.split("/") if p not in ("", ".")]
                if not parts or parts[-1] != "pack.json" or len(parts) > 2:
                    continue
                if not member.isfile() or member.size > MAX_PACK_JSON:
                    return None
                fh = tar.extractfile(member)
                if fh is None:
                    return None
                return parse_pack_json(fh.read(MAX_PACK_JSON + 1), where, warnings=False)[0]
    except (tarfile.TarError, OSError, EOFError, zlib.error, UsageError, InflatedTooFar):
        return None
    return None


@dataclass(frozen=True)
class DependencyIssue:
    """A selected pack's constraint that the selection breaks; `candidates` can fix it."""

    pack: PackInfo
    dependency: PackDependency
    kind: str  # "missing" | "version" | "not-supported"
    candidates: tuple[PackInfo, ...]  # from `available`, satisfying, newest first

    @property
    def best(self) -> PackInfo | None:
        return self.candidates[0] if self.candidates else None

    def message(self) -> str:
        dep = self.dependency
        head = f"{self.pack.ref} ({dep.type})"
        if self.kind == "not-supported":
            return f"{head}: selection includes {dep.describe()}, which it does not support"
        what = "is not selected" if self.kind == "missing" else "is selected at another version"
        fix = f"; available: {self.best.ref}" if self.best else "; not available in the source"
        return f"{head}: needs {dep.describe()}, which {what}{fix}"


def _newest_first(packs: Sequence[PackInfo]) -> list[PackInfo]:
    by_version = {p.version: p for p in packs}
    return [by_version[v] for v in version_order(by_version)]


def check_dependencies(
    selected: Sequence[PackInfo], available: Sequence[PackInfo]
) -> list[DependencyIssue]:
    """Constraints the selection breaks: required packs or versions left out, unsupported ones in.

    Optional dependencies only constrain the version of a pack that is selected anyway; types
    other than required|optional|notSupported (pack-central uses "upgrade") are not enforced.
    """
    chosen = {(p.name, p.version) for p in selected}
    issues = []
    for pack in selected:
        for dep in pack.dependencies:
            present = [p for p in selected if p.name == dep.pack_name]
            fitting = [p for p in present if dep.allows(p.version)]
            if dep.type == "notSupported":
                if fitting:
                    issues.append(DependencyIssue(pack, dep, "not-supported", ()))
                continue
            if dep.type not in ("required", "optional") or fitting:
                continue
            if dep.type == "optional" and not present:
                continue
            candidates = [
                p
                for p in available
                if p.name == dep.pack_name
                and dep.allows(p.version)
                and (p.name, p.version) not in chosen
            ]
            kind = "version" if present else "missing"
            issues.append(DependencyIssue(pack, dep, kind, tuple(_newest_first(candidates))))
    return issues


def resolve_dependencies(
    selected: Sequence[PackInfo], available: Sequence[PackInfo]
) -> tuple[list[PackInfo], list[DependencyIssue]]:
    """For `--with-dependencies`: add the newest fitting pack per required gap, repeatedly.

    Returns the packs added and the issues that remain (unavailable, or not-supported).
    """
    current, added = list(selected), list[PackInfo]()
    for _ in range(len(available) + 1):
        issues = check_dependencies(current, available)
        fixes = {i.best for i in issues if i.dependency.type == "required" and i.best}
        if not fixes:
            return added, issues
        new = sorted(fixes, key=lambda p: (p.name, p.version))
        current += new
        added += new
    return added, check_dependencies(current, available)
