"""Export: copy the selected registries into the cache, then pack one signed bundle.

The copy engine does the work (registry -> bundle target). This module only chooses what
to copy, describes it in manifest.json, and hands the members to the bundle writer.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from mirror import describe
from mirror.bases import CachedManifests, load_bases
from mirror.bundle.manifest import (
    BundleManifest,
    ExternalBlob,
    ReferrerRecord,
)
from mirror.cache import BlobCache, CacheFirst
from mirror.chain import ChainState, output_name
from mirror.closure import ImageRound, image_records, image_round, unresolved_records
from mirror.companions import companion_round, signed_digests
from mirror.copy import CopyOptions, CopyReport, CopyTask, Observer, copy_graphs
from mirror.errors import NotFoundError, UsageError
from mirror.oci import mediatypes as mt
from mirror.packdeps import PackReport, check_packs
from mirror.receipt import Held
from mirror.sigpolicy import check_found
from mirror.sources.interface import Found, Selection, Source
from mirror.sources.memory import Remembering
from mirror.sources.select import discover_all
from mirror.spec import BundleSpec
from mirror.targets.bundle import BundleTarget


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
    receipt_key: ec.EllipticCurvePublicKey | None = None  # `--receipt-key`: signed receipts
    split_size: int | None = None  # FILE.001, FILE.002, ... of at most this many bytes
    images: bool = True  # carry the image closure (`--no-images`: record it as skipped)
    referrers: bool = True  # signatures, SBOMs, attestations (`--no-referrers`: none)
    state: Path | None = None  # `--state DIR`: each export a delta against the last one sent
    full: bool = False  # `--full`: start a new chain with a full bundle


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
    """Select, copy into the cache in rounds, describe, then write FILE (and its sidecars)."""
    _check_policy(spec, opts)
    cache = BlobCache(opts.cache_dir)
    state = ChainState(opts.state, spec.name) if opts.state is not None else None
    step = state.next(full=opts.full) if state is not None else None
    if step is not None:
        opts = dataclasses.replace(opts, output=output_name(opts.output, step.chain.sequence))
    sent = [step.base] if step is not None and step.base else []
    since = (*opts.since, *sent)
    # Bad receipts or bases fail before any work; a bare manifest.json is read through the cache.
    held = load_bases(opts.since, CachedManifests(cache), receipt_key=opts.receipt_key, sent=sent)
    selection = discover_all(spec, ca_file=opts.ca_file, jobs=opts.jobs, known=cache)
    if not selection.found and not spec.images:
        raise NotFoundError(f"nothing to export: the selection of {spec.name!r} is empty")
    target = BundleTarget(cache, held.where)
    done = _rounds(spec, selection, cache, target, opts, observer)
    external = _external(done.report, target, held)
    result = _result(opts, done, external, selection)
    if not opts.dry_run:
        result.notes += _honest_notes(opts)
        manifest = _describe(spec, opts, done, selection, target, cache)
        if since:
            manifest = dataclasses.replace(manifest, since=tuple(held.bundles), external=external)
        if step is not None:
            manifest = dataclasses.replace(manifest, chain=step.chain)
        members = describe.members(target, done.report, cache)
        result.blobs, result.bytes = describe.totals(members)  # what inspect and verify count
        target.seal(
            opts.output, manifest, members, key=opts.key, observer=observer,
            split_size=opts.split_size, mtime=describe.epoch(),
        )  # fmt: skip
        if state is not None:  # only now, with the bundle written, does the chain move on
            data = manifest.to_bytes()
            state.record(manifest, data, "sha256:" + hashlib.sha256(data).hexdigest())
        cache.save_seen()  # the tags this bundle holds: next time, conditional GETs
    return result


@dataclass
class _Rounds:
    """What the copy rounds did: artifacts (and their dependencies), images, companions."""

    report: CopyReport
    packs: PackReport
    images: ImageRound
    image_report: CopyReport
    referrers: list[ReferrerRecord]
    signers: dict[str, str]  # artifact digest -> cosign key fingerprint
    keys: dict[str, str]  # fingerprint -> PEM


def _honest_notes(opts: ExportOptions) -> list[str]:
    """What an operator must know about the file about to be written."""
    from mirror.bundle.parts import exists

    notes = []
    if opts.key is None:
        notes.append(
            "the bundle is unsigned: import refuses it without --allow-unsigned "
            "(sign it with --key)"
        )
    if exists(opts.output):
        notes.append(f"replacing {opts.output}, which was there before (written atomically)")
    return notes


def _check_policy(spec: BundleSpec, opts: ExportOptions) -> None:
    policed = [r.name for r in spec.registries if r.cosign_key]
    if policed and not opts.referrers:
        raise UsageError(
            f"registry {policed[0]} requires cosign signatures (cosignKey), "
            "which --no-referrers would leave behind"
        )


def _rounds(
    spec: BundleSpec,
    selection: Selection,
    cache: BlobCache,
    target: BundleTarget,
    opts: ExportOptions,
    observer: Observer,
) -> _Rounds:
    """Children before parents across rounds too: what refers to a thing is copied after it."""
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
    copy = CopyOptions(jobs=opts.jobs, dry_run=opts.dry_run)
    images, more = image_round(
        spec, selection.found, cache, target, options=copy, observer=observer,
        ca_file=opts.ca_file, carry=opts.images,
    )  # fmt: skip
    report.absorb(more)
    selection.notes += images.notes
    referrers: list[ReferrerRecord] = []
    if opts.referrers:
        referrers, companions = companion_round(
            report.graphs, target, options=copy, observer=observer
        )
        report.absorb(companions)
    signers, keys = check_found(selection.found, referrers, _sources(selection, referrers, cache))
    return _Rounds(report, packs, images, more, referrers, signers, keys)


def _result(
    opts: ExportOptions, done: _Rounds, external: Sequence[ExternalBlob], selection: Selection
) -> ExportResult:
    result = _summary(opts, done.report, external, selection.notes)
    result.artifacts = len(selection.found)  # images and companions are counted on their own
    result.referrers = len(done.referrers)
    signed = signed_digests(done.referrers)
    records = image_records(done.images, done.image_report)
    result.images = [describe.image_row(i, i.digest in signed) for i in records]
    result.unresolved_images = [u.to_json() for u in unresolved_records(done.images)]
    result.skipped_images = done.images.skipped
    return result


def _describe(
    spec: BundleSpec,
    opts: ExportOptions,
    done: _Rounds,
    selection: Selection,
    target: BundleTarget,
    cache: BlobCache,
) -> BundleManifest:
    artifacts = [
        dataclasses.replace(a, signed_by=done.signers.get(a.digest))
        for a in describe.artifact_records(selection, done.report, cache, done.packs.infos)
    ]
    members = describe.members(target, done.report, cache)
    return dataclasses.replace(
        describe.manifest(spec, artifacts, members, opts.key),
        images=tuple(image_records(done.images, done.image_report)),
        unresolved_images=tuple(unresolved_records(done.images)),
        skipped_images=tuple(done.images.skipped),
        images_from=spec.images_from,
        referrers=tuple(done.referrers),
        no_referrers=not opts.referrers,
        cosign_keys=tuple(sorted(done.keys.items())),
    )


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
        blobs=report.blobs + describe.manifest_count(report) - len(external),
        bytes=report.bytes + describe.manifest_bytes(report) - left_out,
        downloaded_bytes=report.copied_bytes,
        cached_bytes=report.present_bytes - left_out,
        external_blobs=len(external),
        external_bytes=left_out,
        signed=opts.key is not None,
        dry_run=opts.dry_run,
        notes=list(notes),
        plan=[describe.plan_row(g) for g in report.graphs],
    )


def _external(report: CopyReport, target: BundleTarget, held: Held) -> tuple[ExternalBlob, ...]:
    """The blobs a delta leaves out, each with a repository on the target that holds it."""
    blobs = {b.digest: b for g in report.graphs for b in g.blobs if target.external(b)}
    return tuple(ExternalBlob(d, blobs[d].size, held.where[d]) for d in sorted(blobs))


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
