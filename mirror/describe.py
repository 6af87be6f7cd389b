"""What an export says about itself: manifest.json's records, the layout's members, and
the rows of `export --json`.

Pure description of what the copy rounds did; nothing here fetches or writes. manifest.json
is signed as exact bytes, so everything it holds is derived deterministically here.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Collection, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from mirror import __version__
from mirror.bundle.manifest import (
    ArtifactRecord,
    BundleManifest,
    ChartInfo,
    ImageRecord,
    MemberRecord,
    PackRecord,
    RegistryRecord,
)
from mirror.bundle.writer import Member
from mirror.copy import CopyReport, Graph
from mirror.discovery.interface import Selection
from mirror.formats import jsondoc
from mirror.formats.pack import PackInfo
from mirror.oci import mediatypes as mt
from mirror.oci.descriptor import Descriptor
from mirror.settings import Clock
from mirror.spec import BundleSpec
from mirror.stores.bundle import BundleStore

if TYPE_CHECKING:  # cryptography is imported where a key is loaded or used
    from cryptography.hazmat.primitives.asymmetric import ec

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'


class Blobs(Protocol):
    """Where the members' bytes come from: the export cache (`cache.BlobCache`), or the
    source registries as the writer goes (`export/streaming.Streamer`, `--no-cache`)."""

    @property
    def fresh(self) -> Collection[str]: ...  # verified by this process: not hashed again

    def open(self, desc: Descriptor) -> BinaryIO: ...


def image_row(record: ImageRecord, signed: bool) -> dict[str, Any]:
    """The contract's `images` row; `signed`: a cosign signature travels with it."""
    return {
        "ref": record.ref,
        "digest": record.digest,
        "neededBy": list(record.needed_by),
        "signed": signed,
        "layoutRef": record.layout_ref,
        "platforms": list(record.platforms),
        "size": record.size,
        **({"signedBy": record.signed_by} if record.signed_by else {}),
    }


def manifest_count(report: CopyReport) -> int:
    return len({d.digest for g in report.graphs for d, _ in g.manifests})


def manifest_bytes(report: CopyReport) -> int:
    return sum({d.digest: d.size for g in report.graphs for d, _ in g.manifests}.values())


def plan_row(graph: Graph) -> dict[str, Any]:
    t = graph.task
    return {"ref": t.tag, "digest": t.root.digest, "kind": t.annotations.get(mt.ANN_KIND)}


def artifact_records(
    selection: Selection,
    report: CopyReport,
    cache: Blobs,
    packs: Mapping[str, PackInfo],
) -> list[ArtifactRecord]:
    sizes = {g.task.root.digest + (g.task.tag or ""): g for g in report.graphs}
    out = []
    for f in selection.found:
        graph = sizes[f.desc.digest + f.ref]
        out.append(
            ArtifactRecord(
                registry=f.registry.name,
                kind=f.kind,
                repository=f.repository,
                tag=f.tag,
                ref=f.ref,
                digest=f.desc.digest,
                media_type=f.desc.media_type,
                size=graph.size,
                fips=f.registry.fips,
                platforms=f.platforms,
                pack=_pack_record(packs.get(f.desc.digest)),
                chart=_chart_info(graph, cache, f.index_entry) if f.kind == "chart" else None,
            )
        )
    return sorted(out, key=lambda a: a.ref)


def _pack_record(info: PackInfo | None) -> PackRecord | None:
    """What manifest.json records of a pack, from the pack.json read before the copy."""
    if info is None:
        return None
    return PackRecord(
        name=info.name,
        version=info.version,
        layer=info.layer or None,
        cloud_types=info.cloud_types,
        display_name=info.display_name or None,
    )


def _chart_info(graph: Graph, cache: Blobs, entry: Mapping[str, Any] | None) -> ChartInfo | None:
    """Name and version from the chart's config blob (Chart.yaml as JSON), in the cache;
    a Helm repository's index entry too, when it is plain JSON (it is signed as bytes)."""
    for blob in graph.blobs:
        if blob.media_type == mt.HELM_CONFIG and blob.size < (1 << 20):
            with cache.open(blob) as fh:
                meta = json.loads(fh.read(blob.size + 1))
            return ChartInfo(str(meta.get("name")), str(meta.get("version")), _json(entry))
    return None


def _json(entry: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The entry if JSON holds it exactly (no NaN, no infinity) and manifest.json can nest
    it (4 levels above it, jsondoc's bound on reading), else None: rebuilt on the far side."""
    if not entry:
        return None
    try:
        doc = dict(json.loads(json.dumps(entry, allow_nan=False)))
        jsondoc.check_depth(doc, jsondoc.MAX_DEPTH - 4)
    except (TypeError, ValueError, jsondoc.DocumentError):
        return None
    return doc


def members(target: BundleStore, report: CopyReport, cache: Blobs) -> list[Member]:
    """The layout's files: oci-layout, index.json, then every node of every graph once."""
    small = [("oci-layout", OCI_LAYOUT), ("index.json", target.index())]
    members = [
        Member(name, len(data), hashlib.sha256(data).hexdigest(), partial(io.BytesIO, data))
        for name, data in small
    ]
    nodes: dict[str, Descriptor] = {}
    for g in report.graphs:
        nodes.update((d.digest, d) for d, _ in g.manifests)
        nodes.update((b.digest, b) for b in g.blobs)
    for digest in sorted(nodes):
        desc = nodes[digest]
        if target.external(desc):
            continue  # a delta leaves it out: the far side holds it
        path = f"blobs/sha256/{desc.hex}"
        fresh = desc.digest in cache.fresh
        members.append(Member(path, desc.size, desc.hex, partial(cache.open, desc), fresh))
    return members


def totals(members: Sequence[Member]) -> tuple[int, int]:
    """(blobs, bytes) as `verify` and `inspect` count them: every layout member's bytes,
    uncompressed, so the three commands print the same number for one bundle."""
    blobs = sum(1 for m in members if m.path.startswith("blobs/"))
    return blobs, sum(m.size for m in members)


def manifest(
    spec: BundleSpec,
    records: Sequence[ArtifactRecord],
    members: Sequence[Member],
    key: ec.EllipticCurvePrivateKey | None,
    clock: Clock,
) -> BundleManifest:
    signer = None
    if key is not None:
        from mirror.keys import fingerprint

        signer = fingerprint(key.public_key())
    return BundleManifest(
        name=spec.name,
        created=clock.stamp(),
        tool_version=__version__,
        fips=spec.fips,
        spec_digest=spec.digest,
        signer=signer,
        registries=tuple(
            RegistryRecord(r.name, r.kind, r.url or r.path, r.base_path, r.fips, r.provider_type)
            for r in spec.registries
        ),
        artifacts=tuple(records),
        members=tuple(MemberRecord(m.path, m.sha256, m.size) for m in members),
    )
