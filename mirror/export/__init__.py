"""Export: discover what to copy, copy it in rounds into the bundle store, describe it,
commit. The engine does the copying (`copy.py`), the rounds say in what order
(`export/rounds.py`), and `export/result.py` says what was done; this is the driver.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import threading
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mirror import describe
from mirror.bases import CachedManifests, load_bases
from mirror.cache import BlobCache
from mirror.chain import ChainState, output_name
from mirror.copy import NoteObserver, Observer
from mirror.discovery.select import discover_all
from mirror.errors import NotFoundError
from mirror.export import streaming
from mirror.export.result import ExportResult, describe_bundle, export_result, external_blobs
from mirror.export.rounds import run_rounds
from mirror.settings import Settings
from mirror.sigpolicy import require_referrers
from mirror.spec import BundleSpec
from mirror.stores.bundle import BundleFile, BundleStore

if TYPE_CHECKING:  # cryptography is imported where a key is loaded or used, not here
    from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["ExportOptions", "ExportResult", "export"]


@dataclass(frozen=True)
class ExportOptions:
    output: Path
    settings: Settings = field(default_factory=Settings)  # jobs, CA file, cache, clock
    dry_run: bool = False
    key: ec.EllipticCurvePrivateKey | None = None
    with_dependencies: bool = False
    since: tuple[Path, ...] = ()  # receipts: a delta against what the far side holds
    receipt_key: ec.EllipticCurvePublicKey | None = None  # `--receipt-key`: signed receipts
    split_size: int | None = None  # FILE.001, FILE.002, ... of at most this many bytes
    images: bool = True  # carry the image closure (`--no-images`: record it as skipped)
    referrers: bool = True  # signatures, SBOMs, attestations (`--no-referrers`: none)
    state: Path | None = None  # `--state DIR`: each export a delta against the last one sent
    full: bool = False  # `--full`: start a new chain with a full bundle
    no_cache: bool = False  # `--no-cache`: write the bundle as blobs arrive (export/streaming)


def export(spec: BundleSpec, opts: ExportOptions, observer: Observer) -> ExportResult:
    """Select, copy into the cache in rounds, describe, then write FILE (and its sidecars)."""
    require_referrers(spec, opts.referrers)
    cache = BlobCache(opts.settings.cache_dir)
    state = ChainState(opts.state, spec.name) if opts.state is not None else None
    one = state.held() if state is not None and not opts.dry_run else contextlib.nullcontext()
    with cache.held(), one:  # `mirror cache prune` refuses while an export uses the cache
        return _export(spec, opts, observer, cache, state)


def _export(
    spec: BundleSpec,
    opts: ExportOptions,
    observer: Observer,
    cache: BlobCache,
    state: ChainState | None,
) -> ExportResult:
    step = state.next(full=opts.full) if state is not None else None
    if step is not None:
        opts = dataclasses.replace(opts, output=output_name(opts.output, step.chain.sequence))
    sent = [step.base] if step is not None and step.base else []
    since = (*opts.since, *sent)
    # Bad receipts or bases fail before any work; a bare manifest.json is read through the cache.
    held = load_bases(opts.since, CachedManifests(cache), receipt_key=opts.receipt_key, sent=sent)
    selection = discover_all(spec, net=opts.settings.net, jobs=opts.settings.jobs, known=cache)
    if not selection.found and not spec.images:
        raise NotFoundError(f"nothing to export: the selection of {spec.name!r} is empty")
    if isinstance(observer, NoteObserver):  # before the copy: "every version of Bitnami"
        for note in selection.notes:
            observer.note(note)
    if not opts.dry_run:
        _warm_up(signed=opts.key is not None)  # after discovery: its imports held the GIL
    out = BundleFile(
        opts.output,
        opts.key,
        observer,
        split_size=opts.split_size,
        mtime=opts.settings.clock.mtime(),
    )
    target = BundleStore.staging(cache, held.where, out)
    with ExitStack() as stack:
        streamer = None
        if opts.no_cache and not opts.dry_run:  # the rounds plan; blobs arrive meanwhile
            streamer = streaming.Streamer(
                cache, opts.output.resolve(), jobs=opts.settings.jobs, skip=target.external
            )
            stack.enter_context(streamer.running())
        plan = dataclasses.replace(opts, dry_run=True) if streamer else opts
        done = run_rounds(spec, selection, cache, target, plan, observer, streamer)
        external = external_blobs(done.report, target, held)
        result = export_result(opts, done, external, selection)
        if opts.dry_run:
            return result
        result.notes += _honest_notes(opts)
        if streamer is not None:
            streaming.planned(target, done.report)
        blobs = streamer or cache
        manifest = describe_bundle(spec, opts, done, selection, target, blobs)
        if since:
            manifest = dataclasses.replace(manifest, since=tuple(held.bundles), external=external)
        if step is not None:
            manifest = dataclasses.replace(manifest, chain=step.chain)
        members = describe.members(target, done.report, blobs)
        result.blobs, result.bytes = describe.totals(members)  # what inspect and verify count
        target.describe(manifest, members)
        if streamer is not None:
            result.downloaded_bytes = streaming.commit(target, streamer, done.report)
        else:
            target.commit()  # the archive, its signature and its sidecars, written once
    if state is not None:  # only now, with the bundle written, does the chain move on
        data = manifest.to_bytes()
        state.record(manifest, data, "sha256:" + hashlib.sha256(data).hexdigest())
    cache.save_seen()  # the tags this bundle holds: next time, conditional GETs
    return result


def _warm_up(*, signed: bool) -> None:
    """Import the bundle writer (and, to sign, cryptography) and compile the manifest's
    check on a thread of their own while the copy rounds run: on the main thread, after the
    copy, they were 0.1-0.2 s with nothing else to do (bench/FINDINGS.md). Not during
    discovery, whose requests it slowed (the warm-cache export's network time, 0.02-0.04 s).
    A failure is met again where used."""

    def run() -> None:
        with contextlib.suppress(Exception):
            from mirror import signing

            if signed:
                signing.ecdsa()  # imports cryptography
            from mirror.bundle import writer  # noqa: F401
            from mirror.bundle.manifest import SCHEMA_NAME
            from mirror.formats.schema import known_valid

            known_valid(SCHEMA_NAME, None)  # compiles the check (None itself is not valid)

    threading.Thread(target=run, name="warm-up", daemon=True).start()


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
