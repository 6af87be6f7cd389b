"""Step 6 of verify: the OCI layout inside the bundle is whole.

While members stream, small JSON blobs are parsed into their child descriptors and dropped, so
memory holds graph edges, never content. At the end, every descriptor reachable from
index.json must name a member of the right size, and every artifact in the signed manifest
must be in index.json under its ref name.
"""

from __future__ import annotations

from typing import Any

from mirror.bundle.manifest import BundleManifest
from mirror.errors import IntegrityError, VerificationError
from mirror.formats import jsondoc
from mirror.oci import mediatypes as mt
from mirror.oci.descriptor import MAX_MANIFEST, MAX_NESTING, Descriptor

BLOBS = "blobs/sha256/"
OCI_LAYOUT = "oci-layout"
INDEX = "index.json"
MAX_INDEX = 64 * 1024 * 1024
# A blob's children, or None when it looked like JSON but is no manifest we can read.
Node = tuple[Descriptor, ...] | None


def wants(path: str, size: int) -> bool:
    """Whether a member may be a document the layout check needs; bounds what is buffered."""
    if path in (OCI_LAYOUT, INDEX):
        return size <= MAX_INDEX
    return path.startswith(BLOBS) and size <= MAX_MANIFEST


def looks_like_json(first_chunk: bytes) -> bool:
    return first_chunk.lstrip()[:1] == b"{"


def check_name(path: str, sha256: str) -> None:
    if path.startswith(BLOBS) and path[len(BLOBS) :] != sha256:
        raise IntegrityError(f"{path}: manifest.json gives it another sha256 ({sha256[:16]}...)")


def remember(path: str, data: bytes, docs: dict[str, bytes], edges: dict[str, Node]) -> None:
    if path in (OCI_LAYOUT, INDEX):
        docs[path] = data
        return
    try:
        doc = jsondoc.loads(data)
    except ValueError:
        return
    if isinstance(doc, dict):
        edges[path] = _children(doc)


def _children(doc: dict[str, Any]) -> Node:
    try:
        if isinstance(doc.get("manifests"), list):
            return tuple(Descriptor.from_json(d) for d in doc["manifests"])
        out = [Descriptor.from_json(doc["config"])] if doc.get("config") else []
        out += [Descriptor.from_json(d) for d in doc.get("layers") or []]
        return tuple(out)
    except (IntegrityError, TypeError):
        return None


def check(
    manifest: BundleManifest, docs: dict[str, bytes], sizes: dict[str, int], edges: dict[str, Node]
) -> None:
    _check_oci_layout(docs.get(OCI_LAYOUT))
    roots = _index_descriptors(docs.get(INDEX))
    refs = {(d.annotation(mt.ANN_REF_NAME), d.digest) for d in roots}
    for a in manifest.artifacts:
        if (a.ref, a.digest) not in refs:
            raise VerificationError(f"{INDEX}: artifact {a.ref} ({a.digest}) is not in it")
    for i in manifest.images:
        if (i.layout_ref, i.digest) not in refs:
            raise VerificationError(f"{INDEX}: image {i.layout_ref} ({i.digest}) is not in it")
    for r in manifest.referrers:
        if (r.layout_ref, r.digest) not in refs:
            raise VerificationError(f"{INDEX}: companion {r.layout_ref} ({r.digest}) is not in it")
    external = {e.digest: e.size for e in manifest.external}  # a delta's, held by the target
    for root in roots:
        _walk(root, sizes, edges, external)


def _walk(
    root: Descriptor, sizes: dict[str, int], edges: dict[str, Node], external: dict[str, int]
) -> None:
    """One artifact's graph, as import's copy walks it: every descriptor's size against the
    member's (each time it is named: a second naming may lie), and no manifest nested
    deeper than the copy engine follows, so verify refuses what import would."""
    stack = [(root, INDEX, 0)]
    seen: set[str] = set()
    while stack:
        desc, parent, depth = stack.pop()
        path = BLOBS + desc.hex
        if desc.digest in external and path not in sizes and not desc.is_manifest:
            if external[desc.digest] != desc.size:
                raise IntegrityError(f"{path}: {parent} and the manifest disagree on its size")
            continue
        if path not in sizes:
            raise VerificationError(f"{path}: named by {parent} but not in the bundle")
        if sizes[path] != desc.size:
            raise IntegrityError(f"{path}: {parent} says {desc.size} bytes, it has {sizes[path]}")
        if path in seen or desc.media_type not in mt.ALL_MANIFESTS:
            continue
        seen.add(path)
        if depth > MAX_NESTING:
            raise IntegrityError(f"{path}: manifests nested too deep below {root.digest}")
        if path not in edges or edges[path] is None:
            raise VerificationError(f"{path}: {parent} names it a manifest, but it is not one")
        stack.extend((child, path, depth + 1) for child in edges[path] or ())


def _check_oci_layout(data: bytes | None) -> None:
    doc = _json(OCI_LAYOUT, data)
    if not isinstance(doc.get("imageLayoutVersion"), str):
        raise VerificationError(f"{OCI_LAYOUT}: no imageLayoutVersion")


def _index_descriptors(data: bytes | None) -> list[Descriptor]:
    doc = _json(INDEX, data)
    manifests = doc.get("manifests")
    if not isinstance(manifests, list):
        raise VerificationError(f"{INDEX}: no manifests list")
    try:
        return [Descriptor.from_json(d) for d in manifests]
    except IntegrityError as exc:
        raise VerificationError(f"{INDEX}: {exc}") from None


def _json(path: str, data: bytes | None) -> dict[str, Any]:
    if data is None:
        raise VerificationError(f"{path}: missing from the bundle")
    try:
        doc = jsondoc.loads(data)
    except ValueError:
        raise VerificationError(f"{path}: not valid JSON") from None
    if not isinstance(doc, dict):
        raise VerificationError(f"{path}: not a JSON object")
    return doc
