"""What an export did, twice over: the JSON the CLI prints, and manifest.json's records."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mirror import describe
from mirror.bundle.manifest import BundleManifest, ExternalBlob
from mirror.closure import image_records, unresolved_records
from mirror.companions import signed_digests
from mirror.copy import CopyReport
from mirror.discovery.interface import Selection
from mirror.receipt import Held
from mirror.spec import BundleSpec
from mirror.stores.bundle import BundleStore

if TYPE_CHECKING:
    from mirror.export import ExportOptions
    from mirror.export.rounds import Rounds


@dataclass
class ExportResult:
    output: str | None  # None: a dry run with no --output
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


def export_result(
    opts: ExportOptions, done: Rounds, external: Sequence[ExternalBlob], selection: Selection
) -> ExportResult:
    result = _summary(opts, done.report, external, selection.notes)
    result.artifacts = len(selection.found)  # images and companions are counted on their own
    result.referrers = len(done.referrers)
    signed = signed_digests(done.referrers)
    records = image_records(done.images, done.image_report, done.signers)
    result.images = [describe.image_row(i, i.digest in signed) for i in records]
    result.unresolved_images = [u.to_json() for u in unresolved_records(done.images)]
    result.skipped_images = done.images.skipped
    return result


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


def external_blobs(report: CopyReport, target: BundleStore, held: Held) -> tuple[ExternalBlob, ...]:
    """The blobs a delta leaves out, each with a repository on the target that holds it."""
    blobs = {b.digest: b for g in report.graphs for b in g.blobs if target.external(b)}
    return tuple(ExternalBlob(d, blobs[d].size, held.where[d]) for d in sorted(blobs))


def describe_bundle(
    spec: BundleSpec,
    opts: ExportOptions,
    done: Rounds,
    selection: Selection,
    target: BundleStore,
    cache: describe.Blobs,
) -> BundleManifest:
    artifacts = [
        dataclasses.replace(a, signed_by=done.signers.get(a.digest))
        for a in describe.artifact_records(selection, done.report, cache, done.packs.infos)
    ]
    members = describe.members(target, done.report, cache)
    return dataclasses.replace(
        describe.manifest(spec, artifacts, members, opts.key, opts.settings.clock),
        images=tuple(image_records(done.images, done.image_report, done.signers)),
        unresolved_images=tuple(unresolved_records(done.images)),
        skipped_images=tuple(done.images.skipped),
        images_from=spec.images_from,
        referrers=tuple(done.referrers),
        no_referrers=not opts.referrers,
        cosign_keys=tuple(sorted(done.keys.items())),
    )
