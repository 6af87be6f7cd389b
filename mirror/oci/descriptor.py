"""The descriptor: the one value that names content everywhere in mirror."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from mirror.errors import IntegrityError
from mirror.formats import jsondoc
from mirror.oci import mediatypes as mt

_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")  # fullmatch: `$` would let a final "\n" in
MAX_MANIFEST = 4 * 1024 * 1024  # Distribution's own cap; a bigger "manifest" is hostile.
MAX_NESTING = 8  # manifests below a root that copy and verify follow (an index of indexes...)


@dataclass(frozen=True)
class Descriptor:
    """Media type, digest and size: enough to fetch, verify and place any node of a graph."""

    media_type: str
    digest: str
    size: int
    annotations: tuple[tuple[str, str], ...] = field(default=(), compare=False)
    platform: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not _DIGEST.fullmatch(self.digest):
            raise IntegrityError(f"unsupported or malformed digest {self.digest!r}")
        if self.size < 0:
            raise IntegrityError(f"negative size for {self.digest}")

    @property
    def hex(self) -> str:
        return self.digest.split(":", 1)[1]

    @property
    def is_manifest(self) -> bool:
        return self.media_type in mt.ALL_MANIFESTS

    def annotation(self, key: str) -> str | None:
        return dict(self.annotations).get(key)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_json(cls, data: Any) -> Descriptor:
        """Parse an untrusted descriptor; anything malformed is an integrity failure."""
        try:
            ann = data.get("annotations") or {}
            plat = data.get("platform")
            platform = f"{plat['os']}/{plat['architecture']}" if plat else None
            if plat and plat.get("variant"):
                platform += "/" + plat["variant"]
            size = data["size"]
            if not isinstance(size, int) or isinstance(size, bool):
                raise TypeError("size")
            return cls(
                media_type=str(data.get("mediaType", "")),
                digest=str(data["digest"]),
                size=size,
                annotations=tuple(sorted((str(k), str(v)) for k, v in ann.items())),
                platform=platform,
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise IntegrityError(f"malformed descriptor: {exc}") from None


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor_for(data: bytes, media_type: str) -> Descriptor:
    return Descriptor(media_type, digest_of(data), len(data))


def check_bytes(desc: Descriptor, data: bytes, where: str) -> None:
    """Raise unless `data` is exactly what `desc` names."""
    if len(data) != desc.size:
        raise IntegrityError(f"{where}: size {len(data)} != {desc.size} for {desc.digest}")
    if digest_of(data) != desc.digest:
        raise IntegrityError(f"{where}: digest mismatch for {desc.digest}")


def parse_manifest(data: bytes, where: str) -> dict[str, Any]:
    if len(data) > MAX_MANIFEST:
        raise IntegrityError(f"{where}: manifest larger than {MAX_MANIFEST} bytes")
    try:
        doc = jsondoc.loads(data)
    except ValueError as exc:
        raise IntegrityError(f"{where}: manifest is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise IntegrityError(f"{where}: manifest is not a JSON object")
    return doc


def successors(desc: Descriptor, data: bytes) -> list[Descriptor]:
    """Children of a manifest node, config first; an index's children are manifests."""
    doc = parse_manifest(data, desc.digest)
    if desc.media_type in mt.INDEXES:
        return [Descriptor.from_json(m) for m in doc.get("manifests") or []]
    if desc.media_type in mt.MANIFESTS:
        out = [Descriptor.from_json(doc["config"])] if doc.get("config") else []
        out += [Descriptor.from_json(layer) for layer in doc.get("layers") or []]
        return out
    return []


def media_type_fits(media_type: str, data: bytes) -> bool:
    """Whether a manifest's bytes can be of `media_type`: a manifest type, the one the
    document names if it names one, an index exactly when it lists manifests. What a hint
    (tags.json) says of kept bytes is checked so: `text/html` there made a bundle of
    manifests without their layers."""
    if media_type not in mt.ALL_MANIFESTS:
        return False
    try:
        doc = parse_manifest(data, "manifest")
    except IntegrityError:
        return False
    inner = doc.get("mediaType")
    if isinstance(inner, str) and inner != media_type:
        return False
    return (media_type in mt.INDEXES) == ("manifests" in doc)


def media_type_of(data: bytes, declared: str | None) -> str:
    """A manifest's media type: the header registries send, else the field inside it."""
    if declared and declared.split(";")[0].strip() in mt.ALL_MANIFESTS:
        return declared.split(";")[0].strip()
    doc = parse_manifest(data, "manifest")
    inner = doc.get("mediaType")
    if isinstance(inner, str) and inner in mt.ALL_MANIFESTS:
        return inner
    if "manifests" in doc:
        return mt.OCI_INDEX
    if "layers" in doc and doc.get("schemaVersion") == 2:
        return mt.OCI_MANIFEST
    return str(declared or inner or "unknown")
