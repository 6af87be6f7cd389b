"""Import: verify the bundle, copy it into the far side's registry, register what landed.

Trust comes first: FILE.sig, the manifest's signature and its schema are checked before
a byte reaches the target, and each blob is checked as it streams out of the archive.
The copy itself is the same engine as export, run from a bundle source to registry
targets, so re-imports skip what the target holds and tags go last.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # cryptography is imported only when a key is in play
    from cryptography.hazmat.primitives.asymmetric.ec import (
        EllipticCurvePrivateKey,
        EllipticCurvePublicKey,
    )

from mirror.bundle.manifest import ArtifactRecord, BundleManifest, ImageRecord, RegistryRecord
from mirror.bundle.parts import total_size
from mirror.bundle.reader import BundleReader
from mirror.bundle.trust import TrustPolicy, open_trusted
from mirror.catalog import CatalogEntry, load_catalog, upsert, utc_now
from mirror.chain import ChainRecord
from mirror.companions import import_tasks, merge_fallback_indexes
from mirror.copy import CopyOptions, CopyReport, CopyTask, Observer, copy_graphs
from mirror.errors import UsageError
from mirror.formats.schema import ValidMemo
from mirror.freshness import FILE_NAME as FRESHNESS_FILE
from mirror.freshness import Freshness
from mirror.mirrorconfig import Mirror
from mirror.oci import mediatypes as mt
from mirror.oci import names
from mirror.oci.names import check_repository_prefix, host_segment, resolve_held, slug
from mirror.receipt import write_receipt
from mirror.registry.auth import Credentials, resolve_credentials
from mirror.registry.client import RegistryClient
from mirror.sources.bundle import BundleSource
from mirror.targets.interface import Target
from mirror.targets.registry import RegistryTarget

CHAINS_FILE = "imported-chains.json"  # beside the catalog: the last delta applied per chain
IMAGES_BASE = "spectro-images"  # Palette's air-gap layout: <registry>/spectro-images/<host>/...
TARGET_USER_ENV = "MIRROR_TARGET_USERNAME"
TARGET_PASSWORD_ENV = "MIRROR_TARGET_PASSWORD"


@dataclass(frozen=True)
class ImportOptions:
    bundle: Path
    target: str
    pub: EllipticCurvePublicKey | None
    catalog: Path
    allow_unsigned: bool = False
    fips: bool = False
    base_path: str = ""
    images_base_path: str = IMAGES_BASE
    mirror_config: Path | None = None  # mirror-registries.txt and certs.d/ go here
    helm_repo_dir: Path | None = None
    receipt: Path | None = None
    receipt_key: EllipticCurvePrivateKey | None = None  # `--receipt-key`: sign the receipt
    ca_file: str | None = None
    jobs: int = 8
    dry_run: bool = False
    force: bool = False
    allow_downgrade: bool = False  # import a bundle older than one imported before
    memo: Path | None = None  # where bundles proven whole are remembered (bundle/memo.py)


@dataclass
class ImportResult:
    target: str
    bundle_digest: str
    signer: str | None
    artifacts: list[dict[str, Any]]
    report: CopyReport
    registered: list[CatalogEntry] = field(default_factory=list)
    dry_run: bool = False
    images: list[dict[str, Any]] = field(default_factory=list)
    mirrors: list[Mirror] = field(default_factory=list)
    mirror_files: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        r = self.report
        return {
            "target": self.target,
            "bundleDigest": self.bundle_digest,
            "signer": self.signer,
            "dryRun": self.dry_run,
            "artifacts": self.artifacts,
            "pushedBlobs": r.copied_blobs,
            "pushedBytes": r.copied_bytes,
            "mountedBlobs": r.mounted_blobs,
            "skippedBlobs": r.present_blobs,
            "presentBytes": r.present_bytes,
            "toPushBlobs": r.blobs - r.present_blobs,
            "toPushBytes": r.bytes - r.present_bytes,
            "conflicts": r.conflicts,
            "registered": [_registered_row(e) for e in self.registered],
            "images": self.images,
            "mirrors": [{"upstream": m.upstream, "endpoint": m.endpoint} for m in self.mirrors],
            "mirrorConfig": self.mirror_files,
        }


VALID_MEMO_NAME = "valid-documents.json"  # formats/schema.ValidMemo


def _valid_memo(opts: ImportOptions) -> ValidMemo | None:
    """Beside the bundle memo: the catalog this host wrote last need not be validated again."""
    return ValidMemo(opts.memo.with_name(VALID_MEMO_NAME)) if opts.memo else None


def target_credentials(host: str) -> Credentials | None:
    return resolve_credentials(host, (TARGET_USER_ENV, TARGET_PASSWORD_ENV))


def check_options(opts: ImportOptions) -> None:
    """Everything the flags alone can get wrong, refused before the bundle is even read."""
    for flag, value in (
        ("--base-path", opts.base_path),
        ("--images-base-path", opts.images_base_path),
    ):
        check_repository_prefix(flag, value)
    if "@" in opts.target.split("://", 1)[-1].split("/", 1)[0]:
        raise UsageError(
            "--target: credentials don't belong in a URL; "
            f"use {TARGET_USER_ENV}/{TARGET_PASSWORD_ENV} or docker's config.json"
        )
    load_catalog(opts.catalog, _valid_memo(opts))  # a bad catalog fails now, not after the push


def import_bundle(opts: ImportOptions, observer: Observer) -> ImportResult:
    check_options(opts)
    manifest, signer, bundle_digest = _trust(opts, observer)
    chains = ChainRecord(opts.catalog.with_name(CHAINS_FILE))
    if manifest.chain is not None:  # gaps and replays, before a push; it names them best
        chains.check(manifest.name, signer, manifest.chain)
    fresh = Freshness(opts.catalog.with_name(FRESHNESS_FILE))
    if not opts.allow_downgrade:
        fresh.check(manifest.name, signer, manifest.created)
    source = BundleSource(BundleReader(opts.bundle), manifest)
    client = RegistryClient(
        opts.target, credentials=target_credentials(_host(opts.target)), ca_file=opts.ca_file
    )
    client.ping()
    tasks = _tasks(manifest, source, client, opts)
    image_tasks = _image_tasks(manifest, source, client, opts)
    ref_tasks = import_tasks(manifest.referrers, source, _owners(tasks, image_tasks))
    donors = {
        e.digest: [
            RegistryTarget(client, resolve_held(e.held_at, opts.base_path, opts.images_base_path))
        ]
        for e in manifest.external
        if e.held_at
    }
    copy = CopyOptions(jobs=opts.jobs, dry_run=opts.dry_run, overwrite=opts.force, donors=donors)
    report = copy_graphs(tasks + [t for t, _ in image_tasks], options=copy, observer=observer)
    # Subjects first, then what refers to them (signatures, SBOMs, attestations).
    report.absorb(copy_graphs([t for t, _ in ref_tasks], options=copy, observer=observer))
    if not opts.dry_run:
        merge_fallback_indexes(ref_tasks)
    result = ImportResult(
        target=client.endpoint.base,
        bundle_digest=bundle_digest,
        signer=signer,
        artifacts=[_artifact_row(t, client) for t in tasks if isinstance(t.dst, RegistryTarget)],
        report=report,
        dry_run=opts.dry_run,
        images=[_image_row(t, rec, client) for t, rec in image_tasks],
        mirrors=mirrors_for(manifest.images, client.host, opts),
    )
    if opts.dry_run:
        return result
    if opts.mirror_config is not None:
        from mirror.mirrorconfig import write_mirror_config

        scheme = client.endpoint.scheme
        written = write_mirror_config(opts.mirror_config, result.mirrors, scheme=scheme)
        result.mirror_files = [str(p) for p in written]
    entries = registrations(
        manifest.registries, client.endpoint.base, opts.base_path, bundle_digest
    )
    result.registered = entries
    upsert(opts.catalog, entries, _valid_memo(opts))
    fresh.record(manifest.name, signer, manifest.created, bundle_digest)
    if manifest.chain is not None:
        chains.record(manifest.name, signer, manifest.chain)
    if opts.receipt is not None:
        write_receipt(opts.receipt, receipt_doc(result, report), opts.receipt_key)
    return result


def _trust(opts: ImportOptions, observer: Observer) -> tuple[BundleManifest, str | None, str]:
    """The same verdict as `mirror verify`, before the first byte reaches the target."""
    policy = TrustPolicy(opts.pub, allow_unsigned=opts.allow_unsigned, fips=opts.fips)
    policy.check()
    observer.planned(0, total_size(opts.bundle), "verify")
    trusted = open_trusted(opts.bundle, policy, memo=opts.memo, observer=observer)
    return trusted.manifest, trusted.signer, trusted.digest


def landing_path(art: ArtifactRecord, base_path: str) -> str:
    """TARGET/[--base-path/]<where the export said this artifact lands>."""
    return names.artifact_landing(art.ref, art.tag, base_path)


def _tasks(
    manifest: BundleManifest, source: BundleSource, client: RegistryClient, opts: ImportOptions
) -> list[CopyTask]:
    repos: dict[str, RegistryTarget] = {}
    helm_dir: Target | None = None
    if opts.helm_repo_dir is not None:
        from mirror.targets.helmdir import HelmDirTarget

        helm_dir = HelmDirTarget(opts.helm_repo_dir)
    tasks = []
    for art in manifest.artifacts:
        repo = landing_path(art, opts.base_path)
        dst = repos.setdefault(repo, RegistryTarget(client, repo))
        root = source.descriptor(art.digest, art.media_type)
        label = f"{art.registry}: {art.ref}"
        ann = {mt.ANN_REGISTRY: art.registry, mt.ANN_REF_NAME: art.ref}
        tasks.append(CopyTask(source, dst, root, art.tag, label, ann))
        if helm_dir is not None and art.kind == "chart":
            tasks.append(CopyTask(source, helm_dir, root, art.tag, label, {}))
    return tasks


def _owners(
    tasks: Sequence[CopyTask], images: Sequence[tuple[CopyTask, ImageRecord]]
) -> dict[str, RegistryTarget]:
    """Where each bundle ref (index.json name) lands: its companions land there too."""
    out: dict[str, RegistryTarget] = {}
    for task in [*tasks, *(t for t, _ in images)]:
        ref = task.annotations.get(mt.ANN_REF_NAME)
        if ref is not None and isinstance(task.dst, RegistryTarget):
            out[ref] = task.dst
    return out


def image_landing(image: ImageRecord, opts: ImportOptions) -> str:
    """TARGET/[--base-path/]<--images-base-path>/<host>/<path>: Palette's documented layout."""
    return names.image_landing(image.host, image.repository, opts.base_path, opts.images_base_path)


def _image_tasks(
    manifest: BundleManifest, source: BundleSource, client: RegistryClient, opts: ImportOptions
) -> list[tuple[CopyTask, ImageRecord]]:
    """Each image by tag, or by digest alone when its reference pinned one."""
    out = []
    for image in manifest.images:
        dst = RegistryTarget(client, image_landing(image, opts))
        root = source.descriptor(image.digest, image.media_type)
        tag = None if image.pin else image.tag
        ann = {mt.ANN_KIND: "image", mt.ANN_REF_NAME: image.layout_ref}
        task = CopyTask(source, dst, root, tag, f"image {image.ref}", ann)
        out.append((task, image))
    return out


def mirrors_for(
    images: Sequence[ImageRecord], target_host: str, opts: ImportOptions
) -> list[Mirror]:
    """One mirror per upstream host: where its images now live on the target."""
    hosts = sorted({i.host for i in images})
    base = _join(opts.base_path, opts.images_base_path)
    return [Mirror(h, f"{target_host}/{_join(base, host_segment(h))}") for h in hosts]


def _image_row(task: CopyTask, image: ImageRecord, client: RegistryClient) -> dict[str, Any]:
    dst = task.dst
    assert isinstance(dst, RegistryTarget)
    where = f"{client.host}/{dst.repo}"
    return {
        "ref": image.ref,
        "source": image.layout_ref,
        "target": f"{where}:{task.tag}" if task.tag else f"{where}@{image.digest}",
        "digest": image.digest,
    }


def registrations(
    registries: Sequence[RegistryRecord], endpoint: str, base_path: str, bundle_digest: str
) -> list[CatalogEntry]:
    """One system-scope registry per source registry, pointing where its content landed."""
    now = utc_now()
    out = []
    for reg in registries:
        if reg.kind == "oci":
            base, provider = _join(base_path, reg.base_path), reg.provider_type or "pack"
        elif reg.kind == "helm":
            base, provider = _join(base_path, f"charts/{slug(reg.name)}"), "helm"
        else:  # legacy pack registries and pack folders become OCI pack registries
            base, provider = _join(base_path, slug(reg.name)), "pack"
        out.append(
            CatalogEntry(
                name=reg.name,
                kind="oci",
                provider_type=provider,
                endpoint=endpoint,
                base_content_path=base,
                fips=reg.fips,
                source_url=reg.url,
                source_base_path=reg.base_path,
                bundle_digest=bundle_digest,
                imported_at=now,
            )
        )
    return out


def receipt_doc(result: ImportResult, report: CopyReport) -> dict[str, Any]:
    """What the target now holds for this bundle: the delta export builds on it."""
    blobs = {
        g.task.root.digest: sorted(
            {b.digest for b in g.blobs} | {d.digest for d, _ in g.manifests[:-1]}
        )
        for g in report.graphs
    }
    return {
        "version": 1,
        "target": result.target,
        "bundleDigest": result.bundle_digest,
        "importedAt": utc_now(),
        "artifacts": [
            {
                "source": row["source"],
                "target": row["target"],
                "digest": row["digest"],
                "blobs": blobs.get(row["digest"], []),
            }
            for row in [*result.artifacts, *result.images]
        ],
    }


def _artifact_row(task: CopyTask, client: RegistryClient) -> dict[str, Any]:
    dst = task.dst
    assert isinstance(dst, RegistryTarget)
    return {
        "source": task.label.split(": ", 1)[-1],
        "target": f"{client.host}/{dst.repo}:{task.tag}",
        "digest": task.root.digest,
    }


def _registered_row(e: CatalogEntry) -> dict[str, Any]:
    return {
        "name": e.name,
        "kind": e.kind,
        "providerType": e.provider_type,
        "endpoint": e.endpoint,
        "baseContentPath": e.base_content_path,
        "scope": e.scope,
        "fips": e.fips,
    }


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def _host(url: str) -> str:
    from mirror.registry.http import Endpoint

    return Endpoint.parse(url).host
