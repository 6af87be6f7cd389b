"""Bundle specs: what to take across the air gap, resolved against the default registries.

A spec names registries; an entry that names a default registry inherits its fields and may
override some. Every error is one line, `FILE: /json/pointer: reason`, so a user can go
straight to the bad line of a long spec (exit 2, `SpecError`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mirror.errors import SpecError, UsageError, redact
from mirror.formats import jsondoc
from mirror.formats.schema import schema_problem
from mirror.oci.reference import canonical_host, parse_reference
from mirror.streams import read_capped

REGISTRY_SCHEMA = "registry.schema.json"
SPEC_SCHEMA = "bundle-spec.schema.json"
_PACKAGE = Path(__file__).resolve().parent
_DEFAULTS_FILE = _PACKAGE / "data" / "default-registries.yaml"
_PRESET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True)
class TagFilter:
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    semver: str | None = None
    latest: int | None = None

    def apply(self, tags: Iterable[str], where: str) -> list[str]:
        """The tags this filter keeps, newest first; a bad regex or range is a usage error."""
        from mirror.formats.semver import select_tags

        try:
            return select_tags(
                tags,
                include=self.include,
                exclude=self.exclude,
                semver=self.semver,
                latest=self.latest,
            )
        except ValueError as exc:
            raise UsageError(f"{where}: {exc}") from None

    def to_json(self) -> dict[str, Any]:
        doc = {"include": list(self.include), "exclude": list(self.exclude)}
        return _with_range(doc, self.semver, self.latest)


@dataclass(frozen=True)
class ChartFilter:
    name: str = "*"
    semver: str | None = None
    latest: int | None = None

    def to_json(self) -> dict[str, Any]:
        return _with_range({"name": self.name}, self.semver, self.latest)


def _with_range(doc: dict[str, Any], semver: str | None, latest: int | None) -> dict[str, Any]:
    """The optional version bounds of a tag or chart filter, only when set."""
    if semver is not None:
        doc["semver"] = semver
    if latest is not None:
        doc["latest"] = latest
    return doc


@dataclass(frozen=True)
class AuthEnv:
    """Names of the environment variables that hold credentials; the spec never holds them."""

    username_env: str
    password_env: str

    @property
    def names(self) -> tuple[str, str]:
        return self.username_env, self.password_env


@dataclass(frozen=True)
class Registry:
    name: str
    kind: str
    url: str | None = None
    path: str | None = None
    base_path: str = ""
    fips: bool = False
    provider_type: str | None = None
    repositories: tuple[str, ...] = ()
    tags: TagFilter = TagFilter()
    platforms: tuple[str, ...] = ()
    auth: AuthEnv | None = None
    charts: tuple[ChartFilter, ...] = ()
    cosign_key: str | None = None  # a PEM file: artifacts from here must be signed by it

    def to_row(self, scope: str) -> dict[str, Any]:
        """The contract's `registries list --json` row; absent values are null, not ""."""
        return {
            "name": self.name,
            "kind": self.kind,
            "url": self.url,
            "basePath": self.base_path or None,
            "fips": self.fips,
            "scope": scope,
            "providerType": self.provider_type,
        }

    def to_json(self) -> dict[str, Any]:
        """Spec form (valid under registry.schema.json); the input of the spec digest."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.url is not None:
            out["url"] = self.url
        if self.path is not None:
            out["path"] = self.path
        out["basePath"] = self.base_path
        out["fips"] = self.fips
        if self.provider_type is not None:
            out["providerType"] = self.provider_type
        out["repositories"] = list(self.repositories)
        out["tags"] = self.tags.to_json()
        out["platforms"] = list(self.platforms)
        if self.auth is not None:
            out["auth"] = {
                "usernameEnv": self.auth.username_env,
                "passwordEnv": self.auth.password_env,
            }
        if self.charts:
            out["charts"] = [c.to_json() for c in self.charts]
        if self.cosign_key is not None:
            out["cosignKey"] = self.cosign_key
        return out


IMAGE_SOURCES = ("packs", "charts")


@dataclass(frozen=True)
class BundleSpec:
    name: str
    fips: bool
    registries: tuple[Registry, ...]
    allow_non_fips: bool = False
    source: str | None = field(default=None, compare=False)  # file it came from, for messages
    images: tuple[str, ...] = ()  # carried besides those that packs and charts name
    images_from: tuple[str, ...] = IMAGE_SOURCES
    upstreams: tuple[tuple[str, str], ...] = ()  # image host -> where to pull it from
    platforms: tuple[str, ...] = ()  # the images' platform filter; empty: all
    images_cosign_key: str | None = None  # a PEM file: every image must be signed by it

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.name,
            "fips": self.fips,
            "allowNonFips": self.allow_non_fips,
            "registries": [r.to_json() for r in self.registries],
        }
        # Only when set, so a v1 spec keeps the digest it always had.
        if self.images:
            doc["images"] = list(self.images)
        if self.images_from != IMAGE_SOURCES:
            doc["imagesFrom"] = list(self.images_from)
        if self.platforms:
            doc["platforms"] = list(self.platforms)
        if self.images_cosign_key is not None:
            doc["imagesCosignKey"] = self.images_cosign_key
        # upstreams say where to pull from, not what: they leave the selection's digest alone.
        return doc

    def upstream(self, host: str) -> str | None:
        return dict(self.upstreams).get(host)

    @property
    def digest(self) -> str:
        """Identity of the resolved spec: the same selection gives the same digest anywhere."""
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


# ---------------------------------------------------------------- reading


SPEC_CAP = 16 << 20  # bytes of one spec file: a few hundred lines is a large one


class _SpecLoader(yaml.SafeLoader):
    """safe_load, refusing a key twice in one mapping as YAML 1.2 does: PyYAML keeps the
    last, so a second `tags:` silently dropped the first one's filter."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base`: explicit keys override merged ones
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # a list as a key: SafeLoader's own error follows
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {str(key)[:40]!r} appears twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def _read_document(path: Path) -> Any:
    try:
        text = read_capped(path, SPEC_CAP).decode("utf-8")
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SpecError(f"{path}: cannot read: {reason}") from None
    if path.suffix.lower() == ".json":
        try:
            return jsondoc.loads(text, unique=True)
        except jsondoc.DocumentError as exc:
            raise SpecError(f"{path}: {exc}") from None
    try:
        doc = yaml.load(text, Loader=_SpecLoader)  # SafeLoader, with unique keys
        jsondoc.check_yaml(doc)
        return doc
    except jsondoc.DocumentError as exc:
        raise SpecError(f"{path}: {exc}") from None
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        raise SpecError(f"{path}: {jsondoc.yaml_problem(exc)}") from None


def _registry_from_json(d: Mapping[str, Any]) -> Registry:
    tags = d.get("tags") or {}
    auth = d.get("auth")
    return Registry(
        name=d["name"],
        kind=d["kind"],
        url=d.get("url"),
        path=d.get("path"),
        base_path=d.get("basePath", ""),
        fips=bool(d.get("fips", False)),
        provider_type=d.get("providerType"),
        repositories=tuple(d.get("repositories", ())),
        tags=TagFilter(
            include=tuple(tags.get("include", ())),
            exclude=tuple(tags.get("exclude", ())),
            semver=tags.get("semver"),
            latest=tags.get("latest"),
        ),
        platforms=tuple(d.get("platforms", ())),
        auth=AuthEnv(auth["usernameEnv"], auth["passwordEnv"]) if auth else None,
        charts=tuple(
            ChartFilter(c.get("name", "*"), c.get("semver"), c.get("latest"))
            for c in d.get("charts", ())
        ),
        cosign_key=d.get("cosignKey"),
    )


def _semantic_problem(d: Mapping[str, Any]) -> str | None:
    """What a schema cannot say: regexes compile, semver ranges parse, no secrets in urls."""
    url = d.get("url")
    if url and "@" in url.split("://", 1)[-1].split("/", 1)[0]:
        return "/url: credentials don't belong in a url; use auth.usernameEnv/passwordEnv"
    if url and (problem := _url_problem(url, d.get("kind"))):
        return f"/url: {problem}"
    tags = d.get("tags") or {}
    for key in ("include", "exclude"):
        for i, pattern in enumerate(tags.get(key, ())):
            try:
                re.compile(pattern)
            except re.error as exc:
                return f"/tags/{key}/{i}: bad regular expression {pattern!r}: {exc}"
    ranges = [("/tags/semver", tags.get("semver"))]
    ranges += [(f"/charts/{i}/semver", c.get("semver")) for i, c in enumerate(d.get("charts", ()))]
    for pointer, expr in ranges:
        problem = _semver_problem(expr)
        if problem:
            return f"{pointer}: {problem}"
    return None


def _url_problem(url: str, kind: str | None) -> str | None:
    """The url parsed now as the export will parse it: a bad one is this file's line, not
    an error without its place or, for a Helm repository, a traceback."""
    from mirror.registry.http import Endpoint, split_url

    try:
        if kind == "oci":
            Endpoint.parse(url)
            return None
        parts = split_url(url if "://" in url else f"https://{url}")
    except UsageError as exc:
        return str(exc)
    except ValueError as exc:
        return f"not a URL: {redact(url)!r} ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"not an http(s) URL: {redact(url)!r}"
    return None


def _public_key_problem(key: Path) -> str | None:
    """A cosign key that is there and reads as one, checked before any registry is asked."""
    from mirror.keys import load_public_key

    if not key.is_file():
        return f"no such file: {key}"
    try:
        load_public_key(key)
    except UsageError as exc:
        return str(exc)
    return None


def _semver_problem(expr: str | None) -> str | None:
    if expr is None:
        return None
    from mirror.formats.semver import Range

    try:
        Range(expr)
    except ValueError as exc:
        return f"bad semver range {expr!r}: {exc}"
    return None


def _resolve_entry(
    entry: dict[str, Any], index: int, defaults: Mapping[str, Registry], base_dir: Path
) -> tuple[Registry | None, str | None]:
    """Merge over the named default, check, and return (registry, None) or (None, problem)."""
    where = f"/registries/{index}"
    name = entry["name"]
    if name in defaults:
        merged = {**defaults[name].to_json(), **entry}
    elif "kind" not in entry:
        known = ", ".join(defaults)
        return None, (
            f"{where}/name: unknown registry {name!r}; known: {known} "
            "(or give kind and url to define a new one)"
        )
    else:
        merged = dict(entry)
    problem = schema_problem(REGISTRY_SCHEMA, merged, ("registries", index))
    if problem is None:
        sub = _semantic_problem(merged)
        problem = f"{where}{sub}" if sub else None
    if problem is None and "path" in entry:
        folder = (base_dir / entry["path"]).resolve()
        if not folder.is_dir():
            problem = f"{where}/path: no such directory: {folder}"
        merged["path"] = str(folder)
    if problem is None and "cosignKey" in entry:
        key = (base_dir / entry["cosignKey"]).resolve()
        if sub := _public_key_problem(key):
            problem = f"{where}/cosignKey: {sub}"
        merged["cosignKey"] = str(key)
    return (None, problem) if problem else (_registry_from_json(merged), None)


def _defaults_by_name() -> dict[str, Registry]:
    return {r.name: r for r in default_registries()}


def default_registries() -> list[Registry]:
    """The six registries of a Palette install, read from data so they change without code."""
    doc = yaml.safe_load(_DEFAULTS_FILE.read_text(encoding="utf-8"))
    entries = doc.get("registries") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise UsageError(f"{_DEFAULTS_FILE}: /registries: expected a list of registries")
    out = []
    for i, entry in enumerate(entries):
        problem = schema_problem(REGISTRY_SCHEMA, entry, ("registries", i))
        if problem:
            raise UsageError(f"{_DEFAULTS_FILE}: {problem}")
        out.append(_registry_from_json(entry))
    return out


def load_spec(path: Path) -> BundleSpec:
    """Read, validate and resolve one spec file (YAML, or JSON by its .json suffix)."""
    path = Path(path)
    doc = _read_document(path)
    if doc is None:
        raise SpecError(f"{path}: the spec is empty")
    problem = schema_problem(SPEC_SCHEMA, doc)
    if problem:
        raise SpecError(f"{path}: {problem}")
    defaults = _defaults_by_name()
    seen: dict[str, int] = {}
    registries = []
    for i, entry in enumerate(doc.get("registries", ())):
        if entry["name"] in seen:
            first = seen[entry["name"]]
            raise SpecError(
                f"{path}: /registries/{i}/name: duplicate registry {entry['name']!r} "
                f"(first at /registries/{first})"
            )
        seen[entry["name"]] = i
        registry, problem = _resolve_entry(entry, i, defaults, path.resolve().parent)
        if problem:
            raise SpecError(f"{path}: {problem}")
        assert registry is not None
        registries.append(registry)
    upstreams = doc.get("upstreams") or {}
    hosts: dict[str, str] = {}
    for host, url in upstreams.items():
        if "@" in url.split("://", 1)[-1].split("/", 1)[0]:
            raise SpecError(f"{path}: /upstreams/{host}: credentials don't belong in a url")
        if problem := _upstream_problem(url, host):
            raise SpecError(f"{path}: /upstreams/{host}: {problem}")
        same = hosts.setdefault(canonical_host(host), host)
        if same != host:
            raise SpecError(f"{path}: /upstreams/{host}: the same registry as {same!r}")
    for i, text in enumerate(doc.get("images", ())):
        if problem := _reference_problem(text):
            raise SpecError(f"{path}: /images/{i}: {problem}")
    return BundleSpec(
        name=doc.get("name", path.stem),
        fips=doc.get("fips", False),
        registries=tuple(registries),
        allow_non_fips=doc.get("allowNonFips", False),
        source=str(path),
        images=tuple(doc.get("images", ())),
        images_from=tuple(doc.get("imagesFrom", IMAGE_SOURCES)),
        upstreams=tuple(sorted((canonical_host(h), u) for h, u in upstreams.items())),
        platforms=tuple(doc.get("platforms", ())),
        images_cosign_key=_key_file(doc, path),
    )


def _upstream_problem(url: str, host: str) -> str | None:
    from mirror.discovery.upstream import split_upstream

    try:
        base, _ = split_upstream(url, host)
    except UsageError:
        return f"not a registry URL: {redact(url)!r} (expected http[s]://HOST[:PORT][/PREFIX])"
    return _url_problem(base, "oci")


def _reference_problem(text: str) -> str | None:
    """The spec's own images are the user's words: a bad one is exit 2, not the note an
    image a pack lists earns (`unresolvedImages`)."""
    try:
        parse_reference(text)
    except ValueError as exc:
        return f"{redact(text)[:200]!r}: {exc}"
    return None


def _key_file(doc: dict[str, Any], path: Path) -> str | None:
    """`imagesCosignKey`, resolved beside the spec, as a registry's `cosignKey` is."""
    if "imagesCosignKey" not in doc:
        return None
    key = (path.resolve().parent / doc["imagesCosignKey"]).resolve()
    if problem := _public_key_problem(key):
        raise SpecError(f"{path}: /imagesCosignKey: {problem}")
    return str(key)


# ---------------------------------------------------------------- presets and selection


def preset_dirs() -> list[Path]:
    """Packaged presets first (mirror/presets, a link to bundles/), then the checkout's."""
    return [_PACKAGE / "presets", _PACKAGE.parent / "bundles"]


def available_presets() -> list[str]:
    names = {p.stem for d in preset_dirs() if d.is_dir() for p in d.glob("*.yaml")}
    return sorted(names)


def load_preset(name: str) -> BundleSpec:
    if _PRESET_NAME.match(name):
        for folder in preset_dirs():
            candidate = folder / f"{name}.yaml"
            if candidate.is_file():
                return load_spec(candidate)
    known = ", ".join(available_presets()) or "none"
    raise UsageError(f"unknown preset {name!r}; available: {known}")


def _pool(specs: Sequence[BundleSpec]) -> dict[str, Registry]:
    pool: dict[str, Registry] = {}
    origin: dict[str, str] = {}
    for spec in specs:
        for registry in spec.registries:
            here = spec.source or spec.name
            if registry.name in pool and pool[registry.name] != registry:
                raise SpecError(
                    f"{here}: registry {registry.name!r} differs from the one in "
                    f"{origin[registry.name]}; give one of them another name"
                )
            pool.setdefault(registry.name, registry)
            origin.setdefault(registry.name, here)
    return pool


def _pick(pool: Mapping[str, Registry], names: Sequence[str], where: str) -> list[Registry]:
    unknown = [n for n in names if n not in pool]
    if unknown:
        raise UsageError(
            f"--registry {unknown[0]!r}: not in {where}; known: {', '.join(pool) or 'none'}"
        )
    return [pool[n] for n in dict.fromkeys(names)]


def select(
    specs: Sequence[BundleSpec],
    registry_names: Sequence[str],
    *,
    fips: bool,
    allow_non_fips: bool,
) -> BundleSpec:
    """The CLI's selection: specs and presets, narrowed by --registry, checked for FIPS.

    With no spec and no --registry, all defaults (only the FIPS ones in FIPS mode). In FIPS
    mode an explicitly chosen non-FIPS registry is refused unless allowed, as VerteX's
    "Allow non-FIPS packs" does.
    """
    fips_mode = fips or any(s.fips for s in specs)
    allow = allow_non_fips or any(s.allow_non_fips for s in specs)
    if specs:
        pool = _pool(specs)
        chosen = (
            _pick(pool, registry_names, "the given specs") if registry_names else [*pool.values()]
        )
    else:
        defaults = _defaults_by_name()
        if registry_names:
            chosen = _pick(defaults, registry_names, "the default registries")
        else:
            chosen = [r for r in defaults.values() if r.fips or not fips_mode]
    if fips_mode and not allow:
        refused = [r.name for r in chosen if not r.fips]
        if refused:
            raise UsageError(
                f"FIPS mode refuses non-FIPS registries: {', '.join(refused)}; "
                "pass --allow-non-fips to include them"
            )
    name = specs[0].name if len(specs) == 1 else "bundle"
    return BundleSpec(name, fips_mode, tuple(chosen), allow_non_fips=allow, **_image_fields(specs))


def _image_fields(specs: Sequence[BundleSpec]) -> dict[str, Any]:
    """The image settings of several specs, merged; one host pulled from two places is an error."""
    if not specs:
        return {}
    upstreams: dict[str, str] = {}
    for spec in specs:
        for host, url in spec.upstreams:
            if upstreams.setdefault(host, url) != url:
                raise SpecError(f"{spec.source or spec.name}: /upstreams/{host}: set differently")
    origins = {o for s in specs for o in s.images_from}
    keys = {s.images_cosign_key for s in specs if s.images_cosign_key is not None}
    if len(keys) > 1:
        raise SpecError("/imagesCosignKey: the specs name different keys; one key polices images")
    return {
        "images": tuple(dict.fromkeys(i for s in specs for i in s.images)),
        "images_from": tuple(o for o in IMAGE_SOURCES if o in origins),
        "upstreams": tuple(sorted(upstreams.items())),
        "platforms": tuple(dict.fromkeys(p for s in specs for p in s.platforms)),
        "images_cosign_key": next(iter(keys), None),
    }
