"""Where a bundle's content lands on the target, as copy tasks: artifacts at their paths
under `--base-path`, charts also in the Helm folder, images under `--images-base-path`
(Palette's layout), and companions beside their subjects. `serve` offers the same names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from mirror.bundle.manifest import ArtifactRecord, BundleManifest, ImageRecord
from mirror.copy import CopyTask
from mirror.mirrorconfig import Mirror, image_mirrors
from mirror.oci import mediatypes as mt
from mirror.oci import names
from mirror.oci.names import resolve_held
from mirror.registry.client import RegistryClient
from mirror.stores.bundle import BundleStore
from mirror.stores.interface import Target
from mirror.stores.registry import Census, RegistryStore

if TYPE_CHECKING:
    from mirror.importer.options import ImportOptions


def landing_path(art: ArtifactRecord, base_path: str) -> str:
    """TARGET/[--base-path/]<where the export said this artifact lands>."""
    return names.artifact_landing(art.ref, art.tag, base_path)


class Landing:
    """One store per target repository, shared by every task landing there (the engine then
    writes each manifest there once), and one census of the target for all of them."""

    def __init__(self, client: RegistryClient) -> None:
        self.client = client
        self.census = Census(client)
        self.repos: dict[str, RegistryStore] = {}

    def store(self, repo: str) -> RegistryStore:
        found = self.repos.get(repo)
        if found is None:
            found = self.repos[repo] = RegistryStore(self.client, repo, census=self.census)
        return found


def artifact_tasks(
    manifest: BundleManifest, source: BundleStore, landing: Landing, opts: ImportOptions
) -> list[CopyTask]:
    helm_dir: Target | None = None
    if opts.helm_repo_dir is not None:
        from mirror.stores.helmdir import HelmDirTarget

        helm_dir = HelmDirTarget(opts.helm_repo_dir, opts.settings.clock)
    tasks = []
    for art in manifest.artifacts:
        repo = landing_path(art, opts.base_path)
        dst = landing.store(repo)
        root = source.descriptor(art.digest, art.media_type)
        label = f"{art.registry}: {art.ref}"
        ann = {mt.ANN_REGISTRY: art.registry, mt.ANN_REF_NAME: art.ref}
        tasks.append(CopyTask(source, dst, root, art.tag, label, ann))
        if helm_dir is not None and art.kind == "chart":
            from mirror.stores.helmdir import chart_annotations

            tasks.append(CopyTask(source, helm_dir, root, art.tag, label, chart_annotations(art)))
    return tasks


def owners(
    tasks: Sequence[CopyTask], images: Sequence[tuple[CopyTask, ImageRecord]]
) -> dict[str, RegistryStore]:
    """Where each bundle ref (index.json name) lands: its companions land there too."""
    out: dict[str, RegistryStore] = {}
    for task in [*tasks, *(t for t, _ in images)]:
        ref = task.annotations.get(mt.ANN_REF_NAME)
        if ref is not None and isinstance(task.dst, RegistryStore):
            out[ref] = task.dst
    return out


def image_landing(image: ImageRecord, opts: ImportOptions) -> str:
    """TARGET/[--base-path/]<--images-base-path>/<host>/<path>: Palette's documented layout."""
    return names.image_landing(image.host, image.repository, opts.base_path, opts.images_base_path)


def image_tasks(
    manifest: BundleManifest, source: BundleStore, landing: Landing, opts: ImportOptions
) -> list[tuple[CopyTask, ImageRecord]]:
    """Each image by tag, or by digest alone when its reference pinned one."""
    out = []
    for image in manifest.images:
        dst = landing.store(image_landing(image, opts))
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
    hosts = [i.host for i in images]
    return image_mirrors(hosts, target_host, opts.base_path, opts.images_base_path)


def donors(
    manifest: BundleManifest, client: RegistryClient, opts: ImportOptions
) -> dict[str, list[Target]]:
    """For a delta: the repositories on the target that hold what the bundle leaves out."""
    return {
        e.digest: [
            RegistryStore(client, resolve_held(e.held_at, opts.base_path, opts.images_base_path))
        ]
        for e in manifest.external
        if e.held_at
    }


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))
