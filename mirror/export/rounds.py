"""Export's copy rounds, children before parents across rounds too: the selection, then
the packs its packs depend on, then the images they run, then signatures and other
referrers of everything copied. Each round is the same engine into the same bundle store."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mirror.bundle.manifest import ReferrerRecord
from mirror.cache import BlobCache
from mirror.closure import ImageRound, image_round
from mirror.companions import companion_round
from mirror.copy import CopyOptions, CopyReport, CopyTask, Observer, copy_graphs
from mirror.discovery.interface import Found, Selection
from mirror.discovery.landed import ContentScan
from mirror.discovery.packdeps import PackReport, check_packs
from mirror.oci import mediatypes as mt
from mirror.sigpolicy import check_export
from mirror.spec import BundleSpec
from mirror.stores.bundle import BundleStore

if TYPE_CHECKING:
    from mirror.export import ExportOptions
    from mirror.export.streaming import Streamer


@dataclass
class Rounds:
    """What the copy rounds did: artifacts (and their dependencies), images, companions."""

    report: CopyReport
    packs: PackReport
    images: ImageRound
    image_report: CopyReport
    referrers: list[ReferrerRecord]
    signers: dict[str, str]  # artifact digest -> cosign key fingerprint
    keys: dict[str, str]  # fingerprint -> PEM


def run_rounds(
    spec: BundleSpec,
    selection: Selection,
    cache: BlobCache,
    target: BundleStore,
    opts: ExportOptions,
    observer: Observer,
    streamer: Streamer | None = None,
) -> Rounds:
    """Children before parents across rounds too: what refers to a thing is copied after it."""
    jobs = opts.settings.jobs
    layers = _Layers(ContentScan(), opts.dry_run, streamer, jobs)
    copy = CopyOptions(jobs=jobs, dry_run=opts.dry_run, hooks=(layers.scan,), commit=False)
    report = copy_graphs(
        [_task(f, target) for f in selection.found], options=copy, observer=observer
    )
    layers.after(report)
    packs = _pack_check(selection, cache, target, copy, report, observer, opts, layers)
    selection.notes += packs.notes
    copy = dataclasses.replace(copy, hooks=())  # images and companions are no packs
    images, more = image_round(
        spec, selection.found, cache, target, options=copy, observer=observer,
        net=opts.settings.net, carry=opts.images, known=layers.scan.scans,
    )  # fmt: skip
    report.absorb(more)
    selection.notes += images.notes
    referrers: list[ReferrerRecord] = []
    if opts.referrers:
        referrers, companions = companion_round(
            report.graphs, target, options=copy, observer=observer
        )
        report.absorb(companions)
    signers, keys = check_export(spec, selection.found, images.resolved, referrers, cache)
    return Rounds(report, packs, images, more, referrers, signers, keys)


def _pack_check(
    selection: Selection,
    cache: BlobCache,
    target: BundleStore,
    copy: CopyOptions,
    report: CopyReport,
    observer: Observer,
    opts: ExportOptions,
    layers: _Layers,
) -> PackReport:
    """Dependencies of the copied packs; with --with-dependencies, copy what they need."""
    packs = check_packs(
        selection.found,
        cache,
        add=opts.with_dependencies,
        store=not copy.dry_run,
        jobs=copy.jobs,
        known=layers.scan.packs,
    )
    selection.found += packs.added
    if packs.added:
        added = copy_graphs(
            [_task(f, target) for f in packs.added], options=copy, observer=observer
        )
        layers.after(added)
        report.absorb(added)
    return packs


@dataclass(frozen=True)
class _Layers:
    """Pack and chart layers, read once per export: by the copy workers as they land (the
    scan is an engine hook), or in a plan (a dry run, `--no-cache`), where nothing lands,
    from their sources after each round; with a streamer, the round's other blobs start to
    arrive meanwhile, and the layers read are kept for its writer."""

    scan: ContentScan
    plan: bool
    streamer: Streamer | None
    jobs: int

    def after(self, report: CopyReport) -> None:
        if not self.plan:
            return
        keep = None
        if self.streamer is not None:
            self.streamer.add(report.graphs, later=ContentScan.reads)
            keep = self.streamer.keep
        self.scan.read_planned(report.graphs, jobs=self.jobs, keep=keep)


def _task(found: Found, target: BundleStore) -> CopyTask:
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
