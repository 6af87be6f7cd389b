"""Export: copy the selected registries into the cache, then pack one signed bundle.

The copy engine does the work (registry -> bundle target). This module only chooses what
to copy, describes it in manifest.json, and hands the members to the bundle writer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from mirror import __version__
from mirror.bundle.manifest import (
    ArtifactRecord,
    BundleManifest,
    ChartInfo,
    ExternalBlob,
    ImageRecord,
    MemberRecord,
    PackInfo,
    ReferrerRecord,
    RegistryRecord,
)
from mirror.bundle.writer import Member, write_bundle
from mirror.cache import BlobCache, CacheFirst
from mirror.closure import image_records, image_round, unresolved_records
from mirror.companions import companion_round, signed_digests
from mirror.copy import CopyOptions, CopyReport, CopyTask, Graph, Observer, copy_graphs
from mirror.errors import IntegrityError, MirrorError, NotFoundError, OperationError, UsageError
from mirror.formats.pack import PackInfo as FormatPackInfo
from mirror.oci import mediatypes as mt
from mirror.oci.descriptor import Descriptor
from mirror.packdeps import PackReport, check_packs
from mirror.receipt import Held, load_held
from mirror.signing import sign_bytes, write_detached
from mirror.sigpolicy import check_found
from mirror.sources.interface import Found, Selection, Source
from mirror.sources.memory import Remembering
from mirror.sources.select import discover_all
from mirror.spec import BundleSpec
from mirror.streams import free_bytes, sweep_stale
from mirror.targets.bundle import BundleTarget

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'


@dataclass(frozen=True)
class ExportOptions:
    output: Path
    cache_dir: Path
    jobs: int = 8
    dry_run: bool = False
    key: ec.EllipticCurvePrivateKey | None = None
    with_dependencies: bool = False
    ca_file: str | None = None  # for source registries with a private CA
    since: tuple[Path, ...] = ()  # receipts: a delta against what the far side holds
    split_size: int | None = None  # FILE.001, FILE.002, ... of at most this many bytes
    images: bool = True  # carry the image closure (`--no-images`: record it as skipped)
    referrers: bool = True  # signatures, SBOMs, attestations (`--no-referrers`: none)


@dataclass
class ExportResult:
    output: str
    artifacts: int
    blobs: int
    bytes: int
    downloaded_bytes: int
    cached_bytes: int
    signed: bool
    dry_run: bool
    external_blobs: int = 0
    external_bytes: int = 0
    notes: list[str] = field(default_factory=list)
    plan: list[dict[str, Any]] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    referrers: int = 0
    unresolved_images: list[dict[str, Any]] = field(default_factory=list)
    skipped_images: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "artifacts": self.artifacts,
            "blobs": self.blobs,
            "bytes": self.bytes,
            "downloadedBytes": self.downloaded_bytes,
            "cachedBytes": self.cached_bytes,
            "signed": self.signed,
            "dryRun": self.dry_run,
            "externalBlobs": self.external_blobs,
            "externalBytes": self.external_bytes,
            "notes": self.notes,
            "plan": self.plan,
            "images": self.images,
            "referrers": self.referrers,
            "unresolvedImages": self.unresolved_images,
            "skippedImages": self.skipped_images,
        }


def export(spec: BundleSpec, opts: ExportOptions, observer: Observer) -> ExportResult:
    """Select, copy into the cache, describe, then write FILE (and its sidecars)."""
    held = load_held(opts.since) if opts.since else Held()  # bad receipts fail before work
    policed = [r.name for r in spec.registries if r.cosign_key]
    if policed and not opts.referrers:
        raise UsageError(
            f"registry {policed[0]} requires cosign signatures (cosignKey), "
            "which --no-referrers would leave behind"
        )
    cache = BlobCache(opts.cache_dir)
    selection = discover_all(spec, ca_file=opts.ca_file, jobs=opts.jobs, known=cache)
    if not selection.found and not spec.images:
        raise NotFoundError(f"nothing to export: the selection of {spec.name!r} is empty")
    target = BundleTarget(cache, held.where)
    if opts.dry_run:  # nothing is copied: read pack layers from the source for the check
        _remember_layers(selection)
        packs = check_packs(
            selection, cache, add=opts.with_dependencies, store=False, jobs=opts.jobs
        )
        report = _copy(selection, target, opts, observer)
    else:  # pack.json is read by the copy workers as the layers arrive
        report = _copy(selection, target, opts, observer)
        packs = _pack_check(selection, cache, target, opts, report, observer)
    selection.notes += packs.notes
    images, more = image_round(
        spec,
        selection.found,
        cache,
        target,
        options=CopyOptions(jobs=opts.jobs, dry_run=opts.dry_run),
        observer=observer,
        ca_file=opts.ca_file,
        carry=opts.images,
    )
    report.absorb(more)
    selection.notes += images.notes
    referrers: list[ReferrerRecord] = []
    if opts.referrers:
        copy = CopyOptions(jobs=opts.jobs, dry_run=opts.dry_run)
        referrers, companions = companion_round(
            report.graphs, target, options=copy, observer=observer
        )
        report.absorb(companions)
    signers, keys = check_found(selection.found, referrers, _sources(selection, referrers, cache))
    external = _external(report, target, held)
    result = _summary(opts, report, external, selection.notes)
    result.artifacts = len(selection.found)  # images and companions are counted on their own
    result.referrers = len(referrers)
    records = image_records(images, more)
    signed = signed_digests(referrers)
    result.images = [_image_row(i, i.digest in signed) for i in records]
    result.unresolved_images = [u.to_json() for u in unresolved_records(images)]
    result.skipped_images = images.skipped
    if not opts.dry_run:
        artifacts = [
            dataclasses.replace(a, signed_by=signers.get(a.digest))
            for a in _artifact_records(selection, report, cache, packs.infos)
        ]
        members = _members(target, report, cache)
        manifest = dataclasses.replace(
            _manifest(spec, artifacts, members, opts.key),
            images=tuple(records),
            unresolved_images=tuple(unresolved_records(images)),
            skipped_images=tuple(images.skipped),
            images_from=spec.images_from,
            referrers=tuple(referrers),
            no_referrers=not opts.referrers,
            cosign_keys=tuple(sorted(keys.items())),
        )
        if opts.since:
            manifest = dataclasses.replace(manifest, since=tuple(held.bundles), external=external)
        _write(opts, manifest, members, cache, observer)
        cache.save_seen()  # the tags this bundle holds: next time, conditional GETs
    return result


def _sources(
    selection: Selection, referrers: Sequence[ReferrerRecord], cache: BlobCache
) -> dict[str, Source]:
    """Where each companion of a selected artifact can be read again: the cache first."""
    owners = {f.ref: f.source for f in selection.found}
    return {
        r.layout_ref: CacheFirst(cache, owners[r.owner]) for r in referrers if r.owner in owners
    }


def _remember_layers(selection: Selection) -> None:
    """A dry run reads each pack layer for pack.json and again for images: fetch it once."""
    wrapped: dict[int, Remembering] = {}
    for i, f in enumerate(selection.found):
        if f.kind in ("pack", "chart"):
            keep = wrapped.setdefault(id(f.source), Remembering(f.source))
            selection.found[i] = dataclasses.replace(f, source=keep)


def _copy(
    selection: Selection, target: BundleTarget, opts: ExportOptions, observer: Observer
) -> CopyReport:
    tasks = [_task(f, target) for f in selection.found]
    copy = CopyOptions(jobs=opts.jobs, dry_run=opts.dry_run)
    return copy_graphs(tasks, options=copy, observer=observer)


def _summary(
    opts: ExportOptions,
    report: CopyReport,
    external: Sequence[ExternalBlob],
    notes: Sequence[str],
) -> ExportResult:
    left_out = sum(e.size for e in external)
    return ExportResult(
        output=str(opts.output),
        artifacts=len(report.graphs),
        blobs=report.blobs + _manifest_count(report) - len(external),
        bytes=report.bytes + _manifest_bytes(report) - left_out,
        downloaded_bytes=report.copied_bytes,
        cached_bytes=report.present_bytes - left_out,
        external_blobs=len(external),
        external_bytes=left_out,
        signed=opts.key is not None,
        dry_run=opts.dry_run,
        notes=list(notes),
        plan=[_plan_row(g) for g in report.graphs],
    )


def _write(
    opts: ExportOptions,
    manifest: BundleManifest,
    members: Sequence[Member],
    cache: BlobCache,
    observer: Observer,
) -> None:
    """Sign manifest.json, write the archive atomically, then FILE.sha256 and FILE.sig."""
    data = manifest.to_bytes()
    sweep_stale(opts.output.resolve().parent, opts.output.name)  # a killed run's temp files
    _check_space(opts.output, members)
    signature = sign_bytes(opts.key, data) if opts.key is not None else None
    observer.planned(len(members), sum(m.size for m in members))
    try:
        written = write_bundle(
            opts.output,
            data,
            signature,
            members,
            mtime=_epoch(),
            observer=observer,
            split_size=opts.split_size,
        )
    except IntegrityError as exc:
        raise _forget_corrupt(exc, cache) from None
    write_detached(written.path, written.sha256, opts.key)


def _external(report: CopyReport, target: BundleTarget, held: Held) -> tuple[ExternalBlob, ...]:
    """The blobs a delta leaves out, each with a repository on the target that holds it."""
    blobs = {b.digest: b for g in report.graphs for b in g.blobs if target.external(b)}
    return tuple(ExternalBlob(d, blobs[d].size, held.where[d]) for d in sorted(blobs))


def _forget_corrupt(exc: IntegrityError, cache: BlobCache) -> MirrorError:
    """A cache blob changed on disk since it was verified: drop it so a rerun refetches.

    Our own disk failed, not the source: an operation failure (exit 1), not exit 3.
    """
    found = re.search(r"blobs/sha256/([a-f0-9]{64})", str(exc))
    if found is None:
        return exc
    cache.drop("sha256:" + found.group(1))
    return OperationError(f"{exc} (a corrupt cache entry; it was removed, run again)")


def _pack_check(
    selection: Selection,
    cache: BlobCache,
    target: BundleTarget,
    opts: ExportOptions,
    report: CopyReport,
    observer: Observer,
) -> PackReport:
    """Dependencies of the copied packs; with --with-dependencies, copy what they need."""
    before = len(selection.found)
    packs = check_packs(
        selection,
        cache,
        add=opts.with_dependencies,
        store=True,
        jobs=opts.jobs,
        known=target.packs,
    )
    added = [_task(f, target) for f in selection.found[before:]]
    if added:
        more = copy_graphs(added, options=CopyOptions(jobs=opts.jobs), observer=observer)
        report.absorb(more)
    return packs


def _task(found: Found, target: BundleTarget) -> CopyTask:
    reg = found.registry
    return CopyTask(
        src=found.source,
        dst=target,
        root=found.desc,
        tag=found.ref,
        label=f"{reg.name}: {found.path}:{found.tag}",
        annotations={
            mt.ANN_REGISTRY: reg.name,
            mt.ANN_REPOSITORY: found.repository,
            mt.ANN_TAG: found.tag,
            mt.ANN_KIND: found.kind,
        },
    )


def _image_row(record: ImageRecord, signed: bool) -> dict[str, Any]:
    """The contract's `images` row; `signed`: a cosign signature travels with it."""
    return {
        "ref": record.ref,
        "digest": record.digest,
        "neededBy": list(record.needed_by),
        "signed": signed,
        "layoutRef": record.layout_ref,
        "platforms": list(record.platforms),
        "size": record.size,
    }


def _manifest_count(report: CopyReport) -> int:
    return len({d.digest for g in report.graphs for d, _ in g.manifests})


def _manifest_bytes(report: CopyReport) -> int:
    return sum({d.digest: d.size for g in report.graphs for d, _ in g.manifests}.values())


def _plan_row(graph: Graph) -> dict[str, Any]:
    t = graph.task
    return {"ref": t.tag, "digest": t.root.digest, "kind": t.annotations.get(mt.ANN_KIND)}


def _artifact_records(
    selection: Selection,
    report: CopyReport,
    cache: BlobCache,
    packs: Mapping[str, FormatPackInfo],
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
                chart=_chart_info(graph, cache) if f.kind == "chart" else None,
            )
        )
    return sorted(out, key=lambda a: a.ref)


def _pack_record(info: FormatPackInfo | None) -> PackInfo | None:
    """What manifest.json records of a pack, from the pack.json read before the copy."""
    if info is None:
        return None
    return PackInfo(
        name=info.name,
        version=info.version,
        layer=info.layer or None,
        cloud_types=info.cloud_types,
        display_name=info.display_name or None,
    )


def _chart_info(graph: Graph, cache: BlobCache) -> ChartInfo | None:
    """Name and version from the chart's config blob (Chart.yaml as JSON), in the cache."""
    for blob in graph.blobs:
        if blob.media_type == mt.HELM_CONFIG and blob.size < (1 << 20):
            meta = json.loads(cache.path(blob.digest).read_bytes())
            return ChartInfo(str(meta.get("name")), str(meta.get("version")))
    return None


def _members(target: BundleTarget, report: CopyReport, cache: BlobCache) -> list[Member]:
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


def _manifest(
    spec: BundleSpec,
    records: Sequence[ArtifactRecord],
    members: Sequence[Member],
    key: ec.EllipticCurvePrivateKey | None,
) -> BundleManifest:
    signer = None
    if key is not None:
        from mirror.keys import fingerprint

        signer = fingerprint(key.public_key())
    return BundleManifest(
        name=spec.name,
        created=datetime.fromtimestamp(_epoch(now=True), UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
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


def _epoch(now: bool = False) -> int:
    """SOURCE_DATE_EPOCH makes bundles reproducible; archive mtimes are fixed regardless."""
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env and env.isdigit():
        return int(env)
    return int(time.time()) if now else 0


def _check_space(output: Path, members: Sequence[Member]) -> None:
    """Refuse early rather than fail at 90%: the archive can't exceed its members by much."""
    need = sum(m.size for m in members) // 50 * 51 + (1 << 20)
    have = free_bytes(output.resolve().parent)
    if have < need:
        raise OperationError(
            f"not enough space for {output}: need up to {need >> 20} MiB, {have >> 20} MiB free"
        )
