"""manifest.json: the signed statement of what a bundle holds.

It is signed as exact bytes, so serialization is deterministic: keys sorted, one top-level key
per line and one list item per line. That layout is still plain JSON, and it lets a reviewer
with only `sed` turn the member list into a `sha256sum -c` file (docs/VERIFYING.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mirror.bundle.names import check_names
from mirror.errors import VerificationError
from mirror.formats import jsondoc
from mirror.formats.schema import items_problem, known_valid, validator

SCHEMA_NAME = "bundle-manifest.schema.json"
SCHEMA_VERSION = 1
MANIFEST_PATH = "manifest.json"
SIGNATURE_PATH = "manifest.json.sig"
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_MEMBERS = 500_000  # members and external blobs together (docs/BUNDLE-FORMAT.md)
LONG_LISTS = {"members": "member", "external": "external"}  # key -> its item's $defs name


@dataclass(frozen=True, slots=True)
class RegistryRecord:
    name: str
    kind: str  # oci | helm | pack
    url: str | None
    base_path: str = ""
    fips: bool = False
    provider_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "url": self.url,
            "basePath": self.base_path,
            "fips": self.fips,
            "providerType": self.provider_type,
        }


@dataclass(frozen=True, slots=True)
class PackRecord:
    name: str
    version: str
    layer: str | None = None
    cloud_types: tuple[str, ...] = ()
    display_name: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "version": self.version}
        if self.layer is not None:
            out["layer"] = self.layer
        if self.cloud_types:
            out["cloudTypes"] = list(self.cloud_types)
        if self.display_name is not None:
            out["displayName"] = self.display_name
        return out


@dataclass(frozen=True, slots=True)
class ChartInfo:
    name: str
    version: str
    # From a Helm repository: its index.yaml entry, every field but `urls` (a Helm folder
    # on the far side writes it back as it was). None for a chart from an OCI registry.
    index_entry: Mapping[str, Any] | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "version": self.version}
        if self.index_entry is not None:
            out["indexEntry"] = dict(self.index_entry)
        return out


@dataclass(frozen=True, slots=True)
class ArtifactRecord:
    registry: str
    kind: str  # image | pack | chart | zarf | other
    repository: str
    tag: str
    ref: str  # org.opencontainers.image.ref.name in index.json
    digest: str
    media_type: str
    size: int
    fips: bool
    platforms: tuple[str, ...] = ()
    pack: PackRecord | None = None
    chart: ChartInfo | None = None
    signed_by: str | None = None  # fingerprint of the cosign key export checked it with

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "registry": self.registry,
            "kind": self.kind,
            "repository": self.repository,
            "tag": self.tag,
            "ref": self.ref,
            "digest": self.digest,
            "mediaType": self.media_type,
            "size": self.size,
            "fips": self.fips,
            "platforms": list(self.platforms),
        }
        if self.pack is not None:
            out["pack"] = self.pack.to_json()
        if self.chart is not None:
            out["chart"] = self.chart.to_json()
        if self.signed_by is not None:
            out["signedBy"] = self.signed_by
        return out


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """An image of the closure: what a reviewer approves and where import puts it."""

    ref: str  # normalized: host/repository[:tag][@pin]
    original: str  # as the pack, chart or spec wrote it
    host: str
    repository: str
    tag: str | None
    pin: str | None  # the digest the reference pinned
    digest: str  # what is carried: the pin, or what the tag named (or its one kept child)
    media_type: str
    size: int
    platforms: tuple[str, ...]
    needed_by: tuple[str, ...]
    layout_ref: str  # org.opencontainers.image.ref.name in index.json
    signed_by: str | None = None  # fingerprint of the imagesCosignKey export checked it with

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ref": self.ref,
            "original": self.original,
            "host": self.host,
            "repository": self.repository,
            "tag": self.tag,
            "pin": self.pin,
            "digest": self.digest,
            "mediaType": self.media_type,
            "size": self.size,
            "platforms": list(self.platforms),
            "neededBy": list(self.needed_by),
            "layoutRef": self.layout_ref,
        }
        if self.signed_by is not None:
            out["signedBy"] = self.signed_by
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ImageRecord:
        return cls(
            ref=d["ref"],
            original=d["original"],
            host=d["host"],
            repository=d["repository"],
            tag=d["tag"],
            pin=d["pin"],
            digest=d["digest"],
            media_type=d["mediaType"],
            size=d["size"],
            platforms=tuple(d["platforms"]),
            needed_by=tuple(d["neededBy"]),
            layout_ref=d["layoutRef"],
            signed_by=d.get("signedBy"),
        )


@dataclass(frozen=True, slots=True)
class UnresolvedImage:
    ref: str
    needed_by: tuple[str, ...]
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"ref": self.ref, "neededBy": list(self.needed_by), "reason": self.reason}


@dataclass(frozen=True, slots=True)
class ReferrerRecord:
    """A signature, attestation, SBOM or other referrer, travelling with its subject."""

    owner: str  # layout ref of the artifact or image whose repository it lands in
    subject: str  # the manifest digest it refers to (the owner's root, or a child of it)
    digest: str
    media_type: str
    size: int
    tag: str | None  # cosign's tag (sha256-H.sig, ...), or None: an OCI 1.1 referrer
    artifact_type: str | None
    layout_ref: str

    def to_json(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "subject": self.subject,
            "digest": self.digest,
            "mediaType": self.media_type,
            "size": self.size,
            "tag": self.tag,
            "artifactType": self.artifact_type,
            "layoutRef": self.layout_ref,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ReferrerRecord:
        return cls(
            d["owner"], d["subject"], d["digest"], d["mediaType"], d["size"], d["tag"],
            d["artifactType"], d["layoutRef"],
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class MemberRecord:
    path: str
    sha256: str  # bare hex
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True, slots=True)
class ExternalBlob:
    """A blob a delta bundle leaves out: the target holds it, at `held_at` among others."""

    digest: str
    size: int
    held_at: str

    def to_json(self) -> dict[str, Any]:
        return {"digest": self.digest, "size": self.size, "heldAt": self.held_at}


@dataclass(frozen=True, slots=True)
class Chain:
    """A bundle's place in a chain of daily deltas: import applies them in order."""

    id: str
    sequence: int
    base: str | None  # the digest of the previous bundle's manifest.json; None: a full one

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "sequence": self.sequence, "base": self.base}


@dataclass(frozen=True, slots=True)
class BundleManifest:
    name: str
    created: str  # RFC 3339 UTC, e.g. 2024-01-01T00:00:00Z
    tool_version: str
    fips: bool
    spec_digest: str
    signer: str | None
    registries: tuple[RegistryRecord, ...] = ()
    artifacts: tuple[ArtifactRecord, ...] = ()
    members: tuple[MemberRecord, ...] = ()
    schema_version: int = field(default=SCHEMA_VERSION)
    since: tuple[str, ...] = ()  # a delta: receipts' bundle digests it was cut against
    external: tuple[ExternalBlob, ...] = ()
    images: tuple[ImageRecord, ...] = ()
    unresolved_images: tuple[UnresolvedImage, ...] = ()
    skipped_images: tuple[str, ...] = ()
    images_from: tuple[str, ...] | None = None  # None: a bundle from before images travelled
    referrers: tuple[ReferrerRecord, ...] = ()
    no_referrers: bool = False  # `--no-referrers`: none were looked for
    cosign_keys: tuple[tuple[str, str], ...] = ()  # (fingerprint, PEM) that signedBy names
    chain: Chain | None = None  # `export --state`: this bundle's place in a chain of deltas

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "schemaVersion": self.schema_version,
            "name": self.name,
            "created": self.created,
            "tool": {"name": "mirror", "version": self.tool_version},
            "fips": self.fips,
            "specDigest": self.spec_digest,
            "signer": self.signer,
            "registries": [r.to_json() for r in self.registries],
            "artifacts": [a.to_json() for a in self.artifacts],
            "members": [m.to_json() for m in self.members],
        }
        if self.images_from is not None:  # v2: the closure, and where it was looked for
            doc["imagesFrom"] = list(self.images_from)
            doc["images"] = [i.to_json() for i in self.images]
            doc["unresolvedImages"] = [u.to_json() for u in self.unresolved_images]
            doc["skippedImages"] = list(self.skipped_images)
        if self.referrers or self.no_referrers:
            doc["referrers"] = [r.to_json() for r in self.referrers]
            doc["noReferrers"] = self.no_referrers
        if self.cosign_keys:
            doc["cosignKeys"] = dict(self.cosign_keys)
        if self.chain is not None:
            doc["chain"] = self.chain.to_json()
        if self.since:  # only deltas carry these, so full bundles read as before
            doc["since"] = list(self.since)
            doc["external"] = [e.to_json() for e in self.external]
        return doc

    def to_bytes(self) -> bytes:
        """The exact bytes that get signed; validated first so we never sign a bad manifest."""
        doc = self.to_json()
        _validate(doc)
        return _serialize(doc)

    def member_map(self) -> dict[str, MemberRecord]:
        return {m.path: m for m in self.members}


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=True, separators=(", ", ": "))


def _serialize(doc: dict[str, Any]) -> bytes:
    lines = ["{"]
    keys = sorted(doc)
    for i, key in enumerate(keys):
        value = doc[key]
        comma = "," if i < len(keys) - 1 else ""
        if isinstance(value, list) and value:
            lines.append(f" {_dumps(key)}: [")
            items = [f"  {_dumps(item)}" for item in value]
            lines.append(",\n".join(items))
            lines.append(f" ]{comma}")
        else:
            lines.append(f" {_dumps(key)}: {_dumps(value)}{comma}")
    lines.append("}")
    return ("\n".join(lines) + "\n").encode("ascii")


def _validate(doc: Any) -> None:
    """The schema: the compiled check first (formats/fastcheck.py); only a manifest it does
    not pass is walked by jsonschema, for the words of its first problem.

    Past MAX_MEMBERS entries the manifest is refused before anything is validated.
    """
    lists = {k: doc[k] for k in LONG_LISTS if isinstance(doc, dict) and type(doc.get(k)) is list}
    count = sum(len(v) for v in lists.values())
    if count > MAX_MEMBERS:
        raise VerificationError(
            f"{MANIFEST_PATH}: lists {count} members and external blobs, "
            f"more than the {MAX_MEMBERS} a bundle may hold"
        )
    if not known_valid(SCHEMA_NAME, doc):
        _schema_violation(doc, lists)
    paths = [m["path"] for m in doc["members"]]
    if len(set(paths)) != len(paths):
        raise VerificationError(f"{MANIFEST_PATH}: a member is listed twice")
    check_names(doc, MANIFEST_PATH)


def _schema_violation(doc: Any, lists: dict[str, list[Any]]) -> None:
    """jsonschema's words for the first problem: the per-blob lists (members, external)
    item by item, at list speed, and jsonschema on the rest."""
    from jsonschema.exceptions import best_match

    rest = {**doc, **{k: [] for k in lists}} if lists else doc
    error = best_match(validator(SCHEMA_NAME).iter_errors(rest))
    if error is not None:
        pointer = "/" + "/".join(str(p) for p in error.absolute_path)
        said = error.message if len(error.message) <= 300 else f"{error.message[:300]}..."
        raise VerificationError(f"{MANIFEST_PATH}: schema violation at {pointer}: {said}")
    for key, items in lists.items():
        problem = items_problem(SCHEMA_NAME, LONG_LISTS[key], items, (key,))
        if problem is not None:
            raise VerificationError(f"{MANIFEST_PATH}: schema violation at {problem}")


def parse_manifest(data: bytes, *, validate: bool = True) -> BundleManifest:
    """Untrusted bytes to a BundleManifest; any problem is a VerificationError.

    `validate=False` only for bytes whose digest already passed the schema here.
    """
    if len(data) > MAX_MANIFEST_BYTES:
        raise VerificationError(f"{MANIFEST_PATH}: larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        doc = jsondoc.loads(data.decode("utf-8"), strict=True)
    except jsondoc.StrictError as exc:  # JSON, but more than a manifest may hold
        raise VerificationError(f"{MANIFEST_PATH}: {exc}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise VerificationError(f"{MANIFEST_PATH}: not valid JSON: {exc}") from None
    if validate:
        _validate(doc)
    return BundleManifest(
        schema_version=doc["schemaVersion"],
        name=doc["name"],
        created=doc["created"],
        tool_version=doc["tool"]["version"],
        fips=doc["fips"],
        spec_digest=doc["specDigest"],
        signer=doc["signer"],
        registries=tuple(_registry(r) for r in doc["registries"]),
        artifacts=tuple(_artifact(a) for a in doc["artifacts"]),
        members=tuple(MemberRecord(m["path"], m["sha256"], m["size"]) for m in doc["members"]),
        since=tuple(doc.get("since", ())),
        external=tuple(
            ExternalBlob(e["digest"], e["size"], e["heldAt"]) for e in doc.get("external", ())
        ),
        images=tuple(ImageRecord.from_json(i) for i in doc.get("images", ())),
        unresolved_images=tuple(
            UnresolvedImage(u["ref"], tuple(u["neededBy"]), u["reason"])
            for u in doc.get("unresolvedImages", ())
        ),
        skipped_images=tuple(doc.get("skippedImages", ())),
        images_from=tuple(doc["imagesFrom"]) if "imagesFrom" in doc else None,
        referrers=tuple(ReferrerRecord.from_json(r) for r in doc.get("referrers", ())),
        no_referrers=bool(doc.get("noReferrers", False)),
        cosign_keys=tuple(sorted((doc.get("cosignKeys") or {}).items())),
        chain=Chain(**doc["chain"]) if doc.get("chain") else None,
    )


def _registry(r: dict[str, Any]) -> RegistryRecord:
    return RegistryRecord(
        name=r["name"],
        kind=r["kind"],
        url=r["url"],
        base_path=r["basePath"],
        fips=r["fips"],
        provider_type=r["providerType"],
    )


def _artifact(a: dict[str, Any]) -> ArtifactRecord:
    pack = a.get("pack")
    chart = a.get("chart")
    return ArtifactRecord(
        registry=a["registry"],
        kind=a["kind"],
        repository=a["repository"],
        tag=a["tag"],
        ref=a["ref"],
        digest=a["digest"],
        media_type=a["mediaType"],
        size=a["size"],
        fips=a["fips"],
        platforms=tuple(a["platforms"]),
        pack=PackRecord(
            name=pack["name"],
            version=pack["version"],
            layer=pack.get("layer"),
            cloud_types=tuple(pack.get("cloudTypes", ())),
            display_name=pack.get("displayName"),
        )
        if pack
        else None,
        chart=ChartInfo(chart["name"], chart["version"], chart.get("indexEntry"))
        if chart
        else None,
        signed_by=a.get("signedBy"),
    )
