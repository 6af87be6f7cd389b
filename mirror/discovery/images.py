"""The image closure: which container images the selected packs and charts will run.

Discovery only, apart from every store: it reads pack and chart archives through any
`Source` (a registry, the export cache, the bundle) and returns what to copy. Export,
`mirror images` and `verify` call the same functions, so what export carries and what
verify demands cannot drift apart.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from mirror.copy import parallel_map
from mirror.formats import jsondoc, tar_files
from mirror.oci import mediatypes as mt
from mirror.oci.descriptor import Descriptor
from mirror.oci.reference import ImageRef, parse_reference
from mirror.stores.interface import Source

SPEC = "spec"  # neededBy for the spec's own `images:` list
MAX_ARCHIVE = 64 * 1024 * 1024  # a pack or chart layer bigger than this is not scanned
MAX_FILE = 4 * 1024 * 1024  # values.yaml, Chart.yaml, a nested chart
MAX_DEPTH = 3  # charts inside charts inside a pack
ANNOTATIONS = ("artifacthub.io/images", "helm.sh/images")
_CONTENT_LAYERS = (mt.OCI_LAYER_TAR, mt.HELM_CHART)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # safe either way


@dataclass(frozen=True)
class Need:
    """One image and every artifact (or the spec) that needs it."""

    ref: ImageRef
    needed_by: tuple[str, ...]
    original: str  # the text as first written, for messages and the manifest

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": str(self.ref),
            "host": self.ref.host,
            "repository": self.ref.repository,
            "tag": self.ref.tag,
            "digest": self.ref.digest,
            "neededBy": list(self.needed_by),
        }


@dataclass(frozen=True)
class Unresolved:
    """A listed reference that cannot be carried: a template or a malformed name."""

    text: str
    needed_by: tuple[str, ...]
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"ref": self.text, "neededBy": list(self.needed_by), "reason": self.reason}

    def warning(self) -> str:
        return f"image {self.text!r} needed by {', '.join(self.needed_by)}: {self.reason}"


@dataclass
class Scan:
    """What one artifact's content names: listed images, and image-looking values."""

    listed: list[str] = field(default_factory=list)
    maybe: list[str] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)  # a values.yaml that is not YAML: why


@dataclass
class Closure:
    images: list[Need] = field(default_factory=list)
    unresolved: list[Unresolved] = field(default_factory=list)
    maybe: list[Need] = field(default_factory=list)  # named in values only: not carried
    unread: list[str] = field(default_factory=list)  # whose list could not be read, and why

    @property
    def notes(self) -> list[str]:
        return [u.warning() for u in self.unresolved] + self.unread


# ---------------------------------------------------------------- building the closure


def build_closure(scans: Iterable[tuple[str, Scan]], spec_images: Sequence[str] = ()) -> Closure:
    """Normalize, deduplicate and attribute; the order is by reference, so it is stable."""
    needs: dict[ImageRef, tuple[str, list[str]]] = {}
    bad: dict[str, tuple[str, list[str]]] = {}
    maybe: dict[ImageRef, tuple[str, list[str]]] = {}
    sources = [(SPEC, Scan(listed=list(spec_images))), *scans]
    unread = [f"{who}: {why}" for who, scan in sources for why in scan.unread]
    for who, scan in sources:
        for text in scan.listed:
            try:
                _add(needs, parse_reference(text), text, who)
            except ValueError as exc:
                _add(bad, text, str(exc), who)
    for who, scan in sources:
        for text in scan.maybe:
            try:
                ref = parse_reference(text)
            except ValueError:
                continue
            if ref not in needs:
                _add(maybe, ref, text, who)
    return Closure(
        images=[Need(r, tuple(w), t) for r, (t, w) in sorted(needs.items(), key=_by_ref)],
        unresolved=[Unresolved(t, tuple(w), why) for t, (why, w) in sorted(bad.items())],
        maybe=[Need(r, tuple(w), t) for r, (t, w) in sorted(maybe.items(), key=_by_ref)],
        unread=unread,
    )


def _by_ref(item: tuple[ImageRef, Any]) -> str:
    return str(item[0])


def _add(into: dict[Any, tuple[str, list[str]]], key: Any, first: str, who: str) -> None:
    _, whos = into.setdefault(key, (first, []))
    if who not in whos:
        whos.append(who)


def scan_all(
    items: Sequence[tuple[str, Source, Descriptor]],
    origins: Sequence[str],
    *,
    jobs: int = 8,
    known: Mapping[str, LayerScan] | None = None,
) -> list[tuple[str, Scan]]:
    """Scan each (who, source, root) in parallel; the result keeps the input's order.

    `origins` is the spec's `imagesFrom`: "packs" (values.yaml lists), "charts" (annotations
    of charts and of the charts packs ship).
    """
    packs, charts = "packs" in origins, "charts" in origins

    def one(item: tuple[str, Source, Descriptor]) -> tuple[str, Scan]:
        who, source, root = item
        return who, scan_artifact(source, root, packs=packs, charts=charts, known=known)

    return parallel_map(jobs, one, items, "images")


# ---------------------------------------------------------------- reading content


@dataclass(frozen=True)
class LayerScan:
    """One pack or chart layer, read once: what its values.yaml lists and what its charts'
    annotations name, kept apart so `imagesFrom` can choose after the fact."""

    values: Scan
    charts: Scan

    @classmethod
    def of(cls, data: bytes, media_type: str) -> LayerScan:
        return cls.read(data, media_type)[0]

    @classmethod
    def read(cls, data: bytes, media_type: str) -> tuple[LayerScan, bytes | None]:
        """One walk of the archive: its values list, its charts' annotations, and the bytes
        of a pack's top-level pack.json (each walk inflates the layer and parses every tar
        header, which is most of what reading a pack costs)."""
        values, charts = Scan(), Scan()
        pack = media_type != mt.HELM_CHART
        pack_json = _scan_archive(data, values if pack else None, charts, depth=0)
        return cls(values, charts), pack_json

    def pick(self, *, packs: bool, charts: bool) -> Scan:
        parts = ([self.values] if packs else []) + ([self.charts] if charts else [])
        return Scan(
            [t for p in parts for t in p.listed],
            [t for p in parts for t in p.maybe],
            [t for p in parts for t in p.unread],
        )


def scan_artifact(
    source: Source,
    root: Descriptor,
    *,
    packs: bool,
    charts: bool,
    known: Mapping[str, LayerScan] | None = None,
) -> Scan:
    """A pack's values.yaml list (and its charts' annotations), or a chart's annotations.

    `known`: layers already scanned as they landed (the bundle target's copy workers).
    """
    scan = Scan()
    if not (packs or charts):
        return scan
    for layer in content_layers(source, root):
        done = known.get(layer.digest) if known is not None else None
        if done is None:
            with source.fetch(layer) as stream:
                data = stream.read(MAX_ARCHIVE + 1)
                while stream.read(1 << 20):  # a verifying stream checks itself at EOF
                    pass
            done = LayerScan.of(data, layer.media_type)
        part = done.pick(packs=packs, charts=charts)
        scan.listed += part.listed
        scan.maybe += part.maybe
        scan.unread += part.unread
    return scan


def content_layers(source: Source, root: Descriptor) -> list[Descriptor]:
    """The tar layers of a pack or chart manifest that are small enough to read."""
    if not root.is_manifest or root.media_type in mt.INDEXES:
        return []
    doc = jsondoc.loads(source.fetch_manifest(root))
    layers = [Descriptor.from_json(d) for d in doc.get("layers") or []]
    return [d for d in layers if d.media_type in _CONTENT_LAYERS and d.size <= MAX_ARCHIVE]


def _scan_archive(data: bytes, values: Scan | None, charts: Scan, *, depth: int) -> bytes | None:
    """Walk one archive once. `values`: a pack's top-level values.yaml list goes there (None
    for a chart); every Chart.yaml's annotations, and those of nested charts, go to `charts`.
    Returns a pack's top-level pack.json, if any, for the caller to parse."""
    if len(data) > MAX_ARCHIVE or depth > MAX_DEPTH:
        return None
    pack_json = None
    for name, body in _members(data, pack=values is not None):
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if not parts:
            continue
        leaf, top = parts[-1], depth == 0 and len(parts) <= 2
        if values is not None and top and leaf == "values.yaml":
            try:
                listed, maybe = values_images(body)
            except ValueError as exc:  # silent, it hid every image the pack lists
                values.unread.append(f"values.yaml is not YAML ({exc}): its images are unknown")
                continue
            values.listed += listed
            values.maybe += maybe
        elif values is not None and top and leaf == "pack.json" and pack_json is None:
            pack_json = body
        elif leaf == "Chart.yaml":
            charts.listed += chart_annotation_images(body)
        elif leaf.endswith(".tgz") and "charts" in parts[:-1]:
            _scan_archive(body, None, charts, depth=depth + 1)
    return pack_json


def _members(data: bytes, *, pack: bool) -> Iterator[tuple[str, bytes]]:
    """Wanted regular files of a .tar(.gz) under MAX_FILE; a broken archive simply ends."""
    return tar_files(
        io.BytesIO(data), lambda name, size: size <= MAX_FILE and _wanted(name, pack=pack)
    )


def _wanted(name: str, *, pack: bool) -> bool:
    leaf = name.rsplit("/", 1)[-1]
    if pack and leaf in ("values.yaml", "pack.json"):
        return True
    return leaf == "Chart.yaml" or leaf.endswith(".tgz")


def _yaml(data: bytes) -> Any:
    """None for what is not YAML: an annotation, a nested chart's file (they name nothing)."""
    try:
        return _parse(data)
    except ValueError:
        return None


def _parse(data: bytes) -> Any:
    """YAML, or a ValueError saying where it is not."""
    try:
        # The C loader when PyYAML has it: 85 corpus values.yaml took 2.1 s in Python, 0.2 s.
        return yaml.load(data.decode("utf-8", errors="replace"), Loader=_LOADER)
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        raise ValueError(jsondoc.yaml_problem(exc)) from None


def values_images(data: bytes) -> tuple[list[str], list[str]]:
    """`pack.content.images` (`- image: REF`), and the image-looking values elsewhere;
    a ValueError when values.yaml is not YAML."""
    doc = _parse(data)
    if not isinstance(doc, dict):
        return [], []
    pack = doc.get("pack")
    content = pack.get("content") if isinstance(pack, dict) else None
    items = content.get("images") if isinstance(content, dict) else None
    listed = []
    for item in items if isinstance(items, list) else []:
        value = item.get("image") if isinstance(item, dict) else item
        if isinstance(value, str | int | float) and str(value).strip():
            listed.append(str(value).strip())
    return listed, list(_fuzzy(doc, 0))


FUZZY_NODES = 200_000  # containers one values.yaml may make us visit (the corpus: < 5,000)


def _fuzzy(root: Any, depth: int) -> Iterator[str]:
    """Zarf-style guesses: `image: REF`, and `repository:` beside `tag:` (and `registry:`).

    Each container once, however many aliases name it, and at most FUZZY_NODES of them: a
    1 KB "billion laughs" values.yaml is a graph of a few nodes that a walk as a tree
    would visit 10^9 times, with the CPU held and Ctrl-C unheard."""
    seen: set[int] = set()
    todo: list[tuple[Any, int]] = [(root, depth)]
    while todo:
        node, level = todo.pop()
        if level > 32 or not isinstance(node, list | dict) or id(node) in seen:
            continue
        seen.add(id(node))
        if len(seen) > FUZZY_NODES:
            return
        values = node if isinstance(node, list) else node.values()
        todo += [(v, level + 1) for v in reversed(list(values))]
        if isinstance(node, dict):
            yield from _guesses(node)


def _guesses(node: dict[Any, Any]) -> Iterator[str]:
    image, repo, tag = node.get("image"), node.get("repository"), node.get("tag")
    if isinstance(image, str) and ("/" in image or ":" in image):
        yield image
    if isinstance(repo, str) and isinstance(tag, str | int | float) and str(tag):
        registry = node.get("registry")
        prefix = f"{registry}/" if isinstance(registry, str) and registry else ""
        yield f"{prefix}{repo}:{tag}"


def chart_annotation_images(data: bytes) -> list[str]:
    """`artifacthub.io/images` and `helm.sh/images`: YAML strings of `{name, image}` lists."""
    doc = _yaml(data)
    notes = doc.get("annotations") if isinstance(doc, dict) else None
    if not isinstance(notes, dict):
        return []
    out = []
    for key in ANNOTATIONS:
        value = notes.get(key)
        entries = _yaml(value.encode()) if isinstance(value, str) else value
        for entry in entries if isinstance(entries, list) else []:
            image = entry.get("image") if isinstance(entry, dict) else entry
            if isinstance(image, str) and image.strip():
                out.append(image.strip())
    return out
