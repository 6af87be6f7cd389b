"""Helm repositories and charts: index.yaml in and out, chart metadata, Helm OCI charts.

`chart_artifact` rebuilds what `helm push` uploads. Helm loads the chart, then marshals
`chart.Metadata` with Go's encoding/json: only the struct's fields, in struct order, empty
ones omitted, strings sanitized as the loader does (whitespace becomes a space, unprintable
characters go) and `<`, `>`, `&` escaped. `_helm_config` follows that field by field, so the
config blob should match helm's byte for byte; YAML scalars Helm would read as strings
(`version: 1.10`) go through PyYAML's float first, as they do through Go's YAML decoder.
The manifest carries helm's `org.opencontainers.image.*` annotations, except `created`,
which helm sets to the push time: pass `created=` to add it.

index.yaml is read with fastyaml-rs (Rust, safe-load only, depth, alias and document
limits of its own): a public index runs to 20 MB, which PyYAML's C loader takes half a
minute over. It has no timestamp type, so an entry keeps `created:
2024-05-15T10:20:30.123456784+02:00` as written (a datetime would cut it to microseconds);
`ChartVersion.entry` is the entry as the repository wrote it. Chart.yaml, at most 1 MiB,
stays on PyYAML's safe loader: its YAML 1.1 reading (`yes`, octal, merge keys) is what
Helm's Go decoder does, and the config blob follows it. Neither builds objects from tags.
"""

from __future__ import annotations

import fnmatch
import io
import json
import re
import tarfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import fast_yaml
import yaml

from mirror.errors import ConflictError, OperationError
from mirror.formats import InflatedTooFar, jsondoc, open_tar_stream
from mirror.formats.semver import Range, parse_version, version_order
from mirror.oci import mediatypes as mt
from mirror.oci.artifact import OciArtifact, single_layer_artifact

MAX_CHART_YAML = 1024 * 1024
MAX_CHART_INFLATED = 100 * 1024 * 1024  # what Helm's loader lets a chart inflate to, by default
_HEX64 = re.compile(r"^[a-f0-9]{64}$")
_INDEX_OWN_KEYS = ("urls", "created", "digest", "removed")
_SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MAX_ALIAS_BYTES = 8 * 1024 * 1024  # real indexes use no aliases; a billion laughs stops here
_MAX_SCAN = 1 << 30  # fastyaml-rs's own ceiling; an index is capped at 256 MiB before this


@dataclass(frozen=True)
class ChartVersion:
    """One chart version of a repository index; `metadata` holds its Chart.yaml fields."""

    name: str
    version: str
    urls: tuple[str, ...]
    digest: str | None
    created: str | None
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    # The index entry as its repository wrote it, every field but `urls`; empty when built here.
    entry: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def tag(self) -> str:
        return chart_tag(self.version)


def _safe_yaml(data: bytes | str, loader: type[yaml.SafeLoader] = _SAFE_LOADER) -> Any:
    """safe_load, through the C parser when PyYAML has it (same constructors, same safety);
    a document past jsondoc's bounds (nested too deep, aliases expanding too far, an int
    of 5,000 digits) is a YAMLError, not a RecursionError or a walk that never ends."""
    try:
        doc = yaml.load(data, Loader=loader)  # a SafeLoader subclass: safe_load
        jsondoc.check_yaml(doc)
    except RecursionError:
        raise yaml.YAMLError(f"nested deeper than {jsondoc.MAX_DEPTH} levels") from None
    except jsondoc.DocumentError as exc:
        raise yaml.YAMLError(str(exc)) from None
    except ValueError:
        raise yaml.YAMLError("a number with too many digits") from None
    return doc


def _index_yaml(data: bytes) -> Any:
    """One YAML document, safe-loaded and bounded: nested at most jsondoc.MAX_DEPTH, aliases
    expanding to at most 8 MiB. Look-ahead is the whole document, so an index written as one
    JSON object (valid YAML, which Helm reads) parses too."""
    try:
        return fast_yaml.safe_load(
            data,
            max_depth=jsondoc.MAX_DEPTH,
            max_alias_bytes=_MAX_ALIAS_BYTES,
            max_scan_ahead=max(1, min(len(data), _MAX_SCAN)),
            max_documents=1,
        )
    except RecursionError:
        raise ValueError(f"nested deeper than {jsondoc.MAX_DEPTH} levels") from None


def _plain(value: Any) -> Any:
    """YAML values as JSON-able ones: timestamps become RFC 3339 strings, keys strings."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _scalar_str(value: Any) -> str:
    """A YAML scalar read into a Go string field, as sigs.k8s.io/yaml converts it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(_plain(value))


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_PLAIN_RELATIVE = re.compile(r"^[^/.?#:;][^?#:;]*$")


def _resolver(base_url: str) -> Callable[[str], str]:
    """Helm's ResolveReferenceURL: relative to the repository URL, keeping its query.

    The base is worked out once per index, not once per chart version."""
    parts = urlsplit(base_url)
    base = parts._replace(path=parts.path.rstrip("/") + "/", query="", fragment="").geturl()

    def resolve(ref: str) -> str:
        if _SCHEME.match(ref):  # what urlsplit calls a scheme, without its cost
            return ref
        plain = _PLAIN_RELATIVE.match(ref) and "/." not in ref  # what urljoin only appends
        resolved = base + ref if plain else urljoin(base, ref)
        return f"{resolved}?{parts.query}" if parts.query and "?" not in ref else resolved

    return resolve


def _chart_version(key: str, item: Any, resolve: Callable[[str], str]) -> ChartVersion | None:
    """One entry as it came from the parser (JSON types, times as written): only what is
    used is converted; `metadata` and `entry` keep the rest as it is."""
    if not isinstance(item, dict) or item.get("version") is None:
        return None
    urls = item.get("urls")
    digest = str(_plain(item.get("digest")) or "").removeprefix("sha256:").lower()
    created = item.get("created")
    return ChartVersion(
        name=_scalar_str(item.get("name") or key),
        version=_scalar_str(item["version"]),
        urls=tuple(resolve(str(_plain(u))) for u in urls if u) if isinstance(urls, list) else (),
        digest=digest if _HEX64.match(digest) else None,
        created=str(_plain(created)) if created else None,
        metadata=metadata_of(item),
        entry={str(k): v for k, v in item.items() if k != "urls"},
    )


def metadata_of(entry: Mapping[str, Any]) -> dict[str, Any]:
    """An index entry's Chart.yaml fields: the entry less what only an index has."""
    return {str(k): v for k, v in entry.items() if k not in _INDEX_OWN_KEYS}


def parse_index(data: bytes, base_url: str | None, where: str) -> list[ChartVersion]:
    """Every chart version of an index.yaml; entries that are not chart versions are skipped.
    Its urls resolved against `base_url`, or kept as written when that is None."""
    try:
        doc = _index_yaml(data)
    except ValueError as exc:  # fastyaml-rs's errors, not-UTF-8 included, are ValueErrors
        raise OperationError(f"{where}: index.yaml is not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("entries"), dict):
        raise OperationError(f"{where}: index.yaml has no 'entries' mapping")
    resolve = _resolver(base_url) if base_url is not None else str
    out = []
    for key, items in sorted(doc["entries"].items(), key=lambda kv: str(kv[0])):
        for item in items if isinstance(items, list) else []:
            cv = _chart_version(str(key), item, resolve)
            if cv is not None:
                out.append(cv)
    return out


def _index_entry(cv: ChartVersion, filename: str, generated: str) -> dict[str, Any]:
    """The repository's own entry when there is one (only `urls` changes), else one built."""
    if cv.entry:
        return {**_plain(dict(cv.entry)), "urls": [filename]}
    entry = {k: v for k, v in _plain(dict(cv.metadata)).items() if k not in _INDEX_OWN_KEYS}
    entry.update(name=cv.name, version=cv.version, urls=[filename])
    entry["created"] = cv.created or generated
    if cv.digest:
        entry["digest"] = cv.digest
    return entry


def entry_matches(entry: Mapping[str, Any], name: str, version: str, digest: str) -> bool:
    """Whether an index entry describes this chart: its name (if given), version, digest."""
    got = str(entry.get("digest") or digest).removeprefix("sha256:").lower()
    return (
        _scalar_str(entry.get("name") or name) == name
        and _scalar_str(entry.get("version")) == version
        and got == digest
    )


def write_index(charts: Sequence[tuple[ChartVersion, str]], generated: str) -> bytes:
    """A static index.yaml for charts stored beside it; the same input gives the same bytes."""
    by_name: dict[str, dict[str, tuple[ChartVersion, str]]] = {}
    for cv, filename in charts:
        versions = by_name.setdefault(cv.name, {})
        seen = versions.get(cv.version)
        if seen and (seen[0].digest, seen[1]) != (cv.digest, filename):
            raise ConflictError(f"index.yaml: {cv.name} {cv.version} given twice, differently")
        versions[cv.version] = (cv, filename)
    entries = {
        name: [_index_entry(*versions[v], generated) for v in version_order(versions)]
        for name, versions in sorted(by_name.items())
    }
    doc = {"apiVersion": "v1", "entries": entries, "generated": generated}
    text = yaml.safe_dump(doc, sort_keys=True, default_flow_style=False, allow_unicode=True)
    return text.encode("utf-8")


def _chart_files(tgz: bytes, where: str) -> dict[str, bytes]:
    """Chart.yaml and requirements.yaml from the chart's top directory (size-capped).

    Like helm's loader, the first path component is dropped whatever it is, so charts
    packed as `./Chart.yaml` (pack-central has one) load too.
    """
    wanted = ("Chart.yaml", "requirements.yaml")
    found: dict[str, bytes] = {}
    try:
        with open_tar_stream(io.BytesIO(tgz), MAX_CHART_INFLATED) as tar:
            for member in tar:
                parts = member.name.split("/")  # helm drops the first part, whatever it is
                if len(parts) != 2 or parts[1] not in wanted or parts[1] in found:
                    continue
                if not member.isfile() or member.size > MAX_CHART_YAML:
                    raise OperationError(f"{where}: {member.name} is not a file under 1 MiB")
                fh = tar.extractfile(member)
                found[parts[1]] = fh.read(MAX_CHART_YAML) if fh else b""
    except InflatedTooFar:
        raise OperationError(
            f"{where}: the chart inflates past {MAX_CHART_INFLATED >> 20} MiB, Helm's own "
            "bound for a chart"
        ) from None
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise OperationError(f"{where}: not a chart archive: {exc}") from None
    return found


def chart_metadata(tgz: bytes, where: str = "chart") -> dict[str, Any]:
    """The Chart.yaml of a chart archive, as a plain dict; name and version always strings."""
    files = _chart_files(tgz, where)
    if "Chart.yaml" not in files:
        raise OperationError(f"{where}: no <chart>/Chart.yaml in the archive")
    try:
        doc = _safe_yaml(files["Chart.yaml"])
    except yaml.YAMLError as exc:
        raise OperationError(f"{where}: Chart.yaml is not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or doc.get("name") is None or doc.get("version") is None:
        raise OperationError(f"{where}: Chart.yaml needs a name and a version")
    out: dict[str, Any] = _plain(doc)
    out["name"], out["version"] = _scalar_str(doc["name"]), _scalar_str(doc["version"])
    if "requirements.yaml" in files:  # apiVersion v1: Helm reads dependencies from here
        try:
            req = _safe_yaml(files["requirements.yaml"])
        except yaml.YAMLError:
            req = None
        if isinstance(req, dict) and isinstance(req.get("dependencies"), list):
            out["dependencies"] = _plain(req["dependencies"])
    return out


def _sanitize(value: Any) -> str:
    """Helm's sanitizeString: whitespace becomes a space, unprintable characters are dropped."""
    text = _scalar_str(value)
    return "".join(" " if c.isspace() else c for c in text if c.isspace() or c.isprintable())


def _strings(value: Any, clean: bool = True) -> list[str]:
    items = value if isinstance(value, list) else []
    return [_sanitize(v) if clean else _scalar_str(v) for v in items if v is not None]


def _omit_empty(pairs: list[tuple[str, Any]], keep: tuple[str, ...] = ()) -> dict[str, Any]:
    return {k: v for k, v in pairs if k in keep or v not in ("", [], {}, False, None)}


def _dependency(d: Any) -> dict[str, Any]:
    d = d if isinstance(d, dict) else {}
    imports = d.get("import-values")
    return _omit_empty(
        [
            ("name", _sanitize(d.get("name"))),
            ("version", _sanitize(d.get("version"))),
            ("repository", _sanitize(d.get("repository"))),
            ("condition", _sanitize(d.get("condition"))),
            ("tags", _strings(d.get("tags"))),
            ("enabled", d.get("enabled") is True),
            ("import-values", imports if isinstance(imports, list) else []),
            ("alias", _scalar_str(d.get("alias"))),
        ],
        keep=("name", "repository"),
    )


def _helm_config(meta: Mapping[str, Any]) -> dict[str, Any]:
    """chart.Metadata as helm marshals it: struct field order, omitempty, sanitized."""
    maintainers = [
        {k: _sanitize(m.get(k)) for k in ("name", "email", "url") if _sanitize(m.get(k))}
        for m in meta.get("maintainers") or []
        if isinstance(m, dict)
    ]
    annotations = meta.get("annotations")
    return _omit_empty(
        [
            ("name", _sanitize(meta.get("name"))),
            ("home", _sanitize(meta.get("home"))),
            ("sources", _strings(meta.get("sources"))),
            ("version", _scalar_str(meta.get("version"))),
            ("description", _sanitize(meta.get("description"))),
            ("keywords", _strings(meta.get("keywords"))),
            ("maintainers", maintainers),
            ("icon", _sanitize(meta.get("icon"))),
            ("apiVersion", _scalar_str(meta.get("apiVersion")) or "v1"),
            ("condition", _sanitize(meta.get("condition"))),
            ("tags", _sanitize(meta.get("tags"))),
            ("appVersion", _sanitize(meta.get("appVersion"))),
            ("deprecated", meta.get("deprecated") is True),
            (
                "annotations",
                {str(k): _scalar_str(v) for k, v in sorted(annotations.items())}
                if isinstance(annotations, dict)
                else {},
            ),
            ("kubeVersion", _sanitize(meta.get("kubeVersion"))),
            ("dependencies", [_dependency(d) for d in meta.get("dependencies") or []]),
            ("type", _scalar_str(meta.get("type"))),
        ]
    )


def go_json(doc: Any) -> bytes:
    """encoding/json's compact output for values built in Go's field order."""
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode("utf-8")


def _oci_annotations(config: Mapping[str, Any], created: str | None) -> dict[str, str]:
    """generateOCIAnnotations from helm's pkg/registry/chart.go."""
    out: dict[str, str] = {}
    for key, value in (
        ("description", config.get("description", "")),
        ("title", config.get("name", "")),
        ("version", config.get("version", "")),
        ("url", config.get("home", "")),
        ("created", created or ""),
        ("source", (config.get("sources") or [""])[0]),
    ):
        if value.strip():
            out[f"org.opencontainers.image.{key}"] = value
    authors = ", ".join(
        m.get("name", "") + (f" ({m['email']})" if m.get("email") else "")
        for m in config.get("maintainers", [])
    )
    if authors.strip():
        out["org.opencontainers.image.authors"] = authors
    for key, value in config.get("annotations", {}).items():
        if key not in (mt.ANN_TITLE, "org.opencontainers.image.version"):
            out[key] = value
    return out


def chart_artifact(tgz: bytes, *, created: str | None = None, where: str = "chart") -> OciArtifact:
    """The Helm OCI chart `helm push` makes of this .tgz (without a provenance layer)."""
    config = _helm_config(chart_metadata(tgz, where))
    return single_layer_artifact(
        go_json(config),
        mt.HELM_CONFIG,
        tgz,
        mt.HELM_CHART,
        annotations=_oci_annotations(config, created),
    )


def chart_tag(version: str) -> str:
    """OCI tags cannot hold `+`; helm pushes `1.0.0+build` as `1.0.0_build`."""
    return version.replace("+", "_")


def select_charts(
    versions: Sequence[ChartVersion],
    *,
    name_glob: str,
    semver: str | None = None,
    latest: int | None = None,
) -> list[ChartVersion]:
    """Chart versions whose name matches the glob; semver and `latest` apply per chart name."""
    rng = Range(semver) if semver is not None else None
    if latest is not None and latest < 0:
        raise ValueError(f"latest must be >= 0, not {latest}")
    by_name: dict[str, dict[str, ChartVersion]] = {}
    for cv in versions:
        if not fnmatch.fnmatchcase(cv.name, name_glob):
            continue
        v = parse_version(cv.version)
        if rng is not None and (v is None or not rng.matches(v)):
            continue
        by_name.setdefault(cv.name, {}).setdefault(cv.version, cv)
    out: list[ChartVersion] = []
    for _name, chosen in sorted(by_name.items()):
        order = version_order(chosen)
        out += [chosen[v] for v in (order if latest is None else order[:latest])]
    return out
