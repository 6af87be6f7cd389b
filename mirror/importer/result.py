"""What an import did: the JSON the CLI prints, the catalog's entries, the receipt."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mirror.bundle.manifest import ImageRecord, RegistryRecord
from mirror.catalog import CatalogEntry, utc_now
from mirror.copy import CopyReport, CopyTask
from mirror.importer.plan import _join
from mirror.mirrorconfig import Mirror
from mirror.oci.names import slug
from mirror.registry.client import RegistryClient
from mirror.stores.registry import RegistryStore


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
    palette: list[dict[str, Any]] = field(default_factory=list)  # `--palette-url`'s actions

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


def image_row(task: CopyTask, image: ImageRecord, client: RegistryClient) -> dict[str, Any]:
    dst = task.dst
    assert isinstance(dst, RegistryStore)
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


def artifact_row(task: CopyTask, client: RegistryClient) -> dict[str, Any]:
    dst = task.dst
    assert isinstance(dst, RegistryStore)
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
