"""The export's image round: the closure of the selection, resolved upstream, then copied.

It runs after the packs and charts are in the cache, since their archives say which images
they run. The copy is the same engine into the same bundle target, so each blob is still
stored once, children first and tag last; a delta leaves out what the far side holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mirror.bundle.manifest import ImageRecord, UnresolvedImage
from mirror.cache import BlobCache, CacheFirst
from mirror.copy import CopyOptions, CopyReport, CopyTask, Observer, copy_graphs
from mirror.discovery.images import Closure, LayerScan, build_closure, scan_all
from mirror.discovery.interface import Found
from mirror.discovery.upstream import Resolved, Upstreams, resolve_all
from mirror.oci import mediatypes as mt
from mirror.oci.descriptor import Descriptor
from mirror.settings import Net
from mirror.spec import BundleSpec
from mirror.stores.interface import Source, Target


@dataclass
class ImageRound:
    closure: Closure
    resolved: list[Resolved] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # --no-images: named, not carried

    @property
    def notes(self) -> list[str]:
        return self.closure.notes + [r.note for r in self.resolved if r.note]


def closure_of(
    spec: BundleSpec,
    found: Sequence[Found],
    cache: BlobCache | None = None,
    *,
    jobs: int = 8,
    known: Mapping[str, LayerScan] | None = None,
) -> Closure:
    """What the selection's packs and charts (and the spec) name; reads only their archives,
    and not even those that `known` scanned as they landed."""
    items: list[tuple[str, Source, Descriptor]] = []
    for f in found:
        if f.kind in ("pack", "chart"):
            source: Source = CacheFirst(cache, f.source) if cache is not None else f.source
            items.append((f.ref, source, f.desc))
    scans = scan_all(items, spec.images_from, jobs=jobs, known=known)
    return build_closure(scans, spec.images)


def image_round(
    spec: BundleSpec,
    found: Sequence[Found],
    cache: BlobCache,
    target: Target,
    *,
    options: CopyOptions,
    observer: Observer,
    net: Net | None = None,
    carry: bool = True,
    known: Mapping[str, LayerScan] | None = None,
) -> tuple[ImageRound, CopyReport]:
    """Scan, resolve every image upstream (failing on the first missing), then copy.

    `known`: the pack and chart layers the copy workers already read as they landed."""
    closure = closure_of(spec, found, cache, jobs=options.jobs, known=known)
    if not carry:
        return ImageRound(closure, skipped=[str(n.ref) for n in closure.images]), CopyReport()
    upstreams = Upstreams(spec, net=net)
    resolved = resolve_all(
        closure.images, upstreams, platforms=spec.platforms, known=cache, jobs=options.jobs
    )
    tasks = [_task(r, target) for r in resolved]
    report = copy_graphs(tasks, options=options, observer=observer) if tasks else CopyReport()
    return ImageRound(closure, resolved), report


def _task(r: Resolved, target: Target) -> CopyTask:
    ref = r.need.ref
    return CopyTask(
        src=r.source,
        dst=target,
        root=r.desc,
        tag=r.layout_ref,
        label=f"image {ref}",
        annotations={
            mt.ANN_KIND: "image",
            mt.ANN_REPOSITORY: ref.name,
            mt.ANN_TAG: ref.tag or "",
        },
    )


def image_records(
    round_: ImageRound, report: CopyReport, signers: Mapping[str, str] | None = None
) -> list[ImageRecord]:
    """manifest.json's `images`: each with its digest, size, platforms and who needs it, and
    the fingerprint of the key (`signers`, by digest) whose signature export checked."""
    sizes = {(g.task.root.digest, g.task.tag): g.size for g in report.graphs}
    out = []
    for r in round_.resolved:
        ref = r.need.ref
        out.append(
            ImageRecord(
                ref=str(ref),
                original=r.need.original,
                host=ref.host,
                repository=ref.repository,
                tag=ref.tag,
                pin=ref.digest,
                digest=r.desc.digest,
                media_type=r.desc.media_type,
                size=sizes.get((r.desc.digest, r.layout_ref), r.desc.size),
                platforms=r.platforms,
                needed_by=r.need.needed_by,
                layout_ref=r.layout_ref,
                signed_by=(signers or {}).get(r.desc.digest),
            )
        )
    return sorted(out, key=lambda i: i.ref)


def unresolved_records(round_: ImageRound) -> list[UnresolvedImage]:
    return [UnresolvedImage(u.text, u.needed_by, u.reason) for u in round_.closure.unresolved]
