"""What a delta may leave out: what the far side reports it holds, or what was sent before.

`export --since FILE` takes an import receipt (the far side's own word), an earlier bundle
(or its parts) or that bundle's manifest.json. The last two need nothing to come back, so
they work over one-way links (a data diode, a courier who keeps the media): the delta leaves
out every blob the base carried, and the import checks that the target holds them before it
writes anything. Where a base's blob lands is known only relative to the far side's
`--base-path` and `--images-base-path`, so it is recorded as `~/PATH` or `~images/PATH`, and
import resolves it (`oci.names.resolve_held`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from mirror.bundle.manifest import MAX_MANIFEST_BYTES, BundleManifest, parse_manifest
from mirror.bundle.toc import ZSTD_MAGIC
from mirror.cache import BlobCache
from mirror.errors import MirrorError, NotFoundError, SpecError
from mirror.formats import jsondoc
from mirror.oci.descriptor import Descriptor, successors
from mirror.oci.names import host_segment
from mirror.receipt import Held, load_held
from mirror.streams import read_capped

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

MAX_DEPTH = 8


class Manifests(Protocol):
    """Where a base's manifests can be read by digest alone: the bundle, or the cache."""

    def descriptor(self, digest: str, media_type: str) -> Descriptor | None: ...

    def fetch_manifest(self, desc: Descriptor) -> bytes: ...


class CachedManifests:
    """The export cache as `Manifests`: what an earlier export of this host fetched."""

    def __init__(self, cache: BlobCache) -> None:
        self.cache = cache

    def descriptor(self, digest: str, media_type: str) -> Descriptor | None:
        """None when this host's cache lacks it: another host, a pruned cache, --no-cache."""
        try:
            size = self.cache.path(digest).stat().st_size
        except OSError:
            return None
        return Descriptor(media_type, digest, size)

    def fetch_manifest(self, desc: Descriptor) -> bytes:
        data = self.cache.manifest(desc)
        if data is None:
            raise NotFoundError(f"{desc.digest}: not in the export cache")
        return data


def load_bases(
    paths: Sequence[Path],
    manifests: Manifests | None = None,
    *,
    receipt_key: ec.EllipticCurvePublicKey | None = None,
    sent: Sequence[Path] = (),
) -> Held:
    """Receipts, bundles and manifest.json files, in any mix; `manifests` (the export cache)
    reads the graphs a bare manifest.json names.

    With `receipt_key`, every path is a receipt signed by it, whatever it looks like: a file
    from the far side that merely looks like a manifest.json must not slip past the check.
    `sent` are bases from `--state`: this host's own record, manifest.json files.
    """
    held = Held()
    for path in dict.fromkeys([*map(_joined, paths), *sent]):  # each part names its bundle
        # --state keeps manifest.json files; with a receipt key the rest are signed receipts
        signed = "signed" if receipt_key is not None else None
        kind = "manifest" if path in sent else (signed or _kind(path))
        if kind == "signed":
            part = load_held([path], receipt_key)
        elif kind == "receipt":
            part = load_held([path])
        else:
            part = _from_manifest(path, manifests, bundle=kind == "bundle")
        for digest in part.bundles:
            if digest not in held.bundles:
                held.bundles.append(digest)
        for digest, where in part.where.items():
            held.where.setdefault(digest, where)
    return held


def _joined(path: Path) -> Path:
    """FILE.001 (or any part) of a split bundle means FILE: a part alone is no archive."""
    from mirror.bundle.parts import parts_of

    stem, dot, number = path.name.rpartition(".")
    if not dot or not number.isdecimal() or len(number) < 3:
        return path
    whole = path.with_name(stem)
    return whole if path in parts_of(whole) else path


def _kind(path: Path) -> str:
    from mirror.bundle.parts import exists, open_bundle

    if not exists(path):
        raise SpecError(f"{path}: --since: no such receipt, bundle or manifest.json")
    try:
        with open_bundle(path) as fh:
            head = fh.read(4096)
    except (OSError, MirrorError) as exc:
        raise SpecError(f"{path}: --since: cannot read: {exc}") from None
    if head.startswith(ZSTD_MAGIC):
        return "bundle"
    return "receipt" if _is_receipt(path) else "manifest"


def _is_receipt(path: Path) -> bool:
    """A manifest.json is an object with `schemaVersion` and `members` and no `bundleDigest`.

    The document is read whole: sorted keys put `artifacts` first in both kinds, so a real
    manifest's first 4 KiB show neither key. Anything else (not JSON, too large, too deep)
    goes to the receipt reader, which refuses it in its own words.
    """
    from mirror.receipt import MAX_RECEIPT

    try:
        doc = jsondoc.loads(read_capped(path, MAX_RECEIPT))
    except (OSError, ValueError):
        return True
    if not isinstance(doc, dict) or "bundleDigest" in doc:
        return True
    return not ("schemaVersion" in doc and "members" in doc)


def _from_manifest(path: Path, manifests: Manifests | None, *, bundle: bool) -> Held:
    import hashlib

    from mirror.bundle.reader import BundleReader

    try:
        data = BundleReader(path).head()[0] if bundle else read_capped(path, MAX_MANIFEST_BYTES)
        manifest = parse_manifest(data)
    except (OSError, ValueError, MirrorError) as exc:
        raise SpecError(f"{path}: --since: not a bundle's manifest: {exc}") from None
    source: Manifests | None = manifests
    if bundle:
        from mirror.bundle.reader import BundleReader
        from mirror.stores.bundle import BundleStore

        source = BundleStore.sealed(BundleReader(path), manifest)
    held = Held(bundles=["sha256:" + hashlib.sha256(data).hexdigest()])
    for digest, media_type, where in _roots(manifest):
        root = source.descriptor(digest, media_type) if source is not None else None
        # Without its manifest (another host's cache, --no-cache), the root alone is known
        # held: the delta carries what is under it again.
        found = _graph(source, root) if source is not None and root is not None else [digest]
        for each in found:
            held.where.setdefault(each, where)
    return held


def _roots(manifest: BundleManifest) -> Iterator[tuple[str, str, str]]:
    """Each root the base carried, and where it lands relative to the far side's bases."""
    landing: dict[str, str] = {}
    for a in manifest.artifacts:
        landing[a.ref] = "~/" + a.ref[: -(len(a.tag) + 1)]
        yield a.digest, a.media_type, landing[a.ref]
    for i in manifest.images:
        landing[i.layout_ref] = f"~images/{host_segment(i.host)}/{i.repository}"
        yield i.digest, i.media_type, landing[i.layout_ref]
    for r in manifest.referrers:
        if r.owner in landing:
            yield r.digest, r.media_type, landing[r.owner]


def _graph(source: Manifests, root: Descriptor) -> list[str]:
    """Every digest under `root` that `source` can show; a manifest it lacks ends the walk
    there (its blobs are then simply not counted as held: the delta carries them)."""
    out, stack, seen = [], [(root, 0)], set()
    while stack:
        desc, depth = stack.pop()
        if desc.digest in seen or depth > MAX_DEPTH:
            continue
        seen.add(desc.digest)
        out.append(desc.digest)
        if not desc.is_manifest:
            continue
        try:
            data = source.fetch_manifest(desc)
        except MirrorError:
            continue
        stack.extend((child, depth + 1) for child in successors(desc, data))
    return out
