"""Import: verify the bundle, copy it into the far side's registry, register what landed.

Trust comes first (`bundle/trust.py`, the same verdict as `verify`): nothing reaches the
target before the whole bundle has proven itself. The copy is the same engine as export,
from the sealed bundle store to registry stores (`importer/plan.py` says where each thing
lands), so a re-import skips what the target holds and tags go last. `importer/result.py`
describes what was done.
"""

from __future__ import annotations

from mirror.bundle.manifest import BundleManifest
from mirror.bundle.parts import total_size
from mirror.bundle.reader import BundleReader
from mirror.bundle.trust import TrustPolicy, open_trusted
from mirror.catalog import records_lock, upsert
from mirror.chain import ChainRecord
from mirror.companions import import_tasks, merge_fallback_indexes
from mirror.copy import CopyOptions, Observer, copy_graphs
from mirror.freshness import FILE_NAME as FRESHNESS_FILE
from mirror.freshness import Freshness
from mirror.importer.options import ImportOptions, check_options, target_credentials, valid_memo
from mirror.importer.plan import (
    Landing,
    artifact_tasks,
    donors,
    image_tasks,
    mirrors_for,
    owners,
)
from mirror.importer.result import (
    ImportResult,
    artifact_row,
    image_row,
    receipt_doc,
    registrations,
)
from mirror.receipt import write_receipt
from mirror.registry.client import RegistryClient
from mirror.stores.bundle import BundleStore
from mirror.stores.registry import RegistryStore
from mirror.streams import uninterrupted

__all__ = ["ImportOptions", "ImportResult", "import_bundle"]

CHAINS_FILE = "imported-chains.json"  # beside the catalog: the last delta applied per chain


def import_bundle(opts: ImportOptions, observer: Observer) -> ImportResult:
    """Trust first, then gates (chain, freshness), then the copy, then the records."""
    check_options(opts)
    manifest, signer, bundle_digest = _trust(opts, observer)
    chains = ChainRecord(opts.catalog.with_name(CHAINS_FILE))
    if manifest.chain is not None:  # gaps and replays, before a push; it names them best
        chains.check(manifest.name, signer, manifest.chain)
    fresh = Freshness(opts.catalog.with_name(FRESHNESS_FILE))
    if not opts.allow_downgrade:
        fresh.check(manifest.name, signer, manifest.created)
    client = RegistryClient(
        opts.target,
        credentials=target_credentials(_host(opts.target), opts.base_path),
        net=opts.settings.net,
    )
    client.ping()
    result = _copy(manifest, client, opts, observer)
    result.bundle_digest, result.signer = bundle_digest, signer
    if opts.dry_run:
        return result
    if opts.mirror_config is not None:
        from mirror.mirrorconfig import write_mirror_config

        scheme = client.endpoint.scheme
        written = write_mirror_config(opts.mirror_config, result.mirrors, scheme=scheme)
        result.mirror_files = [str(p) for p in written]
    result.registered = registrations(
        manifest.registries, client.endpoint.base, opts.base_path, bundle_digest
    )
    if opts.register is not None:  # Palette: before the records, so a failure there leaves
        result.palette = opts.register(result.registered)  # none and a rerun finishes it
    # The records land together or not at all: a stop between them left a chain's record
    # saying "applied" with no receipt, and a rerun refused as a replay. One lock: two
    # imports at once each read, change and write them.
    # The chain's record goes last: it is what turns a rerun into a refused replay, so a
    # SIGKILL before it (which nothing can hold off) leaves a rerun that finishes the rest.
    with records_lock(opts.catalog), uninterrupted():
        if opts.receipt is not None:
            write_receipt(opts.receipt, receipt_doc(result, result.report), opts.receipt_key)
        upsert(opts.catalog, result.registered, valid_memo(opts), held=True)
        fresh.record(manifest.name, signer, manifest.created, bundle_digest)
        if manifest.chain is not None:
            chains.record(manifest.name, signer, manifest.chain)
    return result


def _copy(
    manifest: BundleManifest, client: RegistryClient, opts: ImportOptions, observer: Observer
) -> ImportResult:
    """One engine, two rounds: subjects (artifacts and images), then what refers to them."""
    source = BundleStore.sealed(BundleReader(opts.bundle), manifest)
    landing = Landing(client)
    tasks = artifact_tasks(manifest, source, landing, opts)
    images = image_tasks(manifest, source, landing, opts)
    refs = import_tasks(manifest.referrers, source, owners(tasks, images))
    copy = CopyOptions(
        jobs=opts.settings.jobs,
        dry_run=opts.dry_run,
        overwrite=opts.force,
        donors=donors(manifest, client, opts),
    )
    report = copy_graphs(tasks + [t for t, _ in images], options=copy, observer=observer)
    report.absorb(copy_graphs([t for t, _ in refs], options=copy, observer=observer))
    if not opts.dry_run:
        merge_fallback_indexes(refs)
    return ImportResult(
        target=client.endpoint.base,
        bundle_digest="",
        signer=None,
        artifacts=[artifact_row(t, client) for t in tasks if isinstance(t.dst, RegistryStore)],
        report=report,
        dry_run=opts.dry_run,
        images=[image_row(t, rec, client) for t, rec in images],
        mirrors=mirrors_for(manifest.images, client.host, opts),
    )


def _trust(opts: ImportOptions, observer: Observer) -> tuple[BundleManifest, str | None, str]:
    """The same verdict as `mirror verify`, before the first byte reaches the target."""
    policy = TrustPolicy(opts.pub, allow_unsigned=opts.allow_unsigned, fips=opts.fips)
    policy.check()
    observer.planned(0, total_size(opts.bundle), "verify")
    trusted = open_trusted(opts.bundle, policy, memo=opts.settings.memo, observer=observer)
    return trusted.manifest, trusted.signer, trusted.digest


def _host(url: str) -> str:
    from mirror.registry.http import Endpoint

    return Endpoint.parse(url).host
