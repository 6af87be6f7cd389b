"""The image closure benchmark: the images the corpus packs list, carried by mirror and skopeo.

The corpus packs name 315 real references on 15 hosts (ghcr.io, quay.io, registry.k8s.io, ...)
in `pack.content.images`. Each becomes a synthetic image (one base layer all share, a top
layer of its own) in a lab registry under `<host>/<path>`, where the spec's `upstreams:`
sends mirror. skopeo gets the same list, so neither tool is charged for finding it.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

from bench.measure import BenchError, Measured, median_of, run_all
from bench.report import ClosureBench
from bench.scenarios import (
    Bench,
    extract,
    layout_refs,
    log,
    mirror_export,
    mirror_import,
    skopeo_layout_export,
)
from mirror.lab import LabRegistry
from mirror.lab.benchdata import MB, BenchItem, bench_upstream_images, unique_bytes
from mirror.lab.upstream import lab_upstreams, pack_image_refs, upstream_repository
from mirror.oci.descriptor import Descriptor
from mirror.oci.names import IMAGES_BASE  # where `mirror import` lands images
from mirror.oci.reference import ImageRef, parse_reference
from mirror.registry.client import RegistryClient

REPEATS = 3  # at most: each repeat runs 2 x 315 skopeo processes, 1-1.5 min on 2 cores
BASE_SIZE = 2 * MB
TOP_MIN, TOP_MAX = 256 * 1024, MB
SEED_JOBS = 8


@dataclass(frozen=True)
class ClosureContent:
    refs: list[ImageRef]  # what the packs list (tags; digest pins cannot be made here)
    items: list[BenchItem]  # one synthetic image per reference, at `<host>/<path>:<tag>`
    pack_dirs: list[Path]  # the corpus pack folders the list comes from
    pins: int  # digest-pinned entries in those lists (per pack): left out of the bench


def closure_content(cache: Path, corpus: Path, packs: int | None) -> ClosureContent:
    """The closure of the first `packs` corpus pack folders (all when None), as lab images."""
    from mirror.lab.corpus import pack_dirs

    dirs = pack_dirs(corpus)[:packs]
    refs = pack_image_refs(dirs)
    items = bench_upstream_images(
        cache, refs, base_size=BASE_SIZE, top_min=TOP_MIN, top_max=TOP_MAX
    )
    pins = sum(len(_pinned(d / "values.yaml")) for d in dirs)
    return ClosureContent(refs, items, dirs, pins)


def _listed(doc: Any) -> list[Any] | None:
    pack = doc.get("pack") if isinstance(doc, dict) else None
    content = pack.get("content") if isinstance(pack, dict) else None
    images = content.get("images") if isinstance(content, dict) else None
    return images if isinstance(images, list) else None


def _is_pin(entry: Any) -> bool:
    text = entry.get("image") if isinstance(entry, dict) else entry
    try:
        return parse_reference(str(text)).digest is not None
    except ValueError:
        return False


def _load(values: Path) -> Any:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(values.read_text(), Loader=loader)
    except yaml.YAMLError:
        return None


def _pinned(values: Path) -> list[Any]:
    if not values.is_file():
        return []
    return [e for e in _listed(_load(values)) or [] if _is_pin(e)]


def copy_pack_folders(dirs: Sequence[Path], dest: Path) -> Path:
    """The pack folders, copied; digest pins are dropped from the copies' image lists.

    A pin names someone else's bytes, which no lab can reproduce: left in, mirror would
    (rightly) fail the export on it. Everything else in the folders stays as it is.
    """
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for src in dirs:
        shutil.copytree(src, dest / src.name)
        values = dest / src.name / "values.yaml"
        if not _pinned(values):
            continue
        doc = _load(values)
        listed = _listed(doc)
        assert listed is not None
        listed[:] = [e for e in listed if not _is_pin(e)]
        values.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest


class _MountingPusher:
    """Seeds through one client; a blob another repository already holds is mounted."""

    def __init__(self, client: RegistryClient) -> None:
        self.client = client
        self._where: dict[str, str] = {}
        self._held: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def push_blob(self, repo: str, desc: Descriptor, stream: IO[bytes]) -> None:
        with self._lock:
            if (repo, desc.digest) in self._held:
                return
            other = self._where.get(desc.digest)
        if other is None or not self.client.mount_blob(repo, desc, other):
            self.client.push_blob(repo, desc, stream)
        with self._lock:
            self._where.setdefault(desc.digest, repo)
            self._held.add((repo, desc.digest))

    def put_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> None:
        self.client.put_manifest(repo, ref, data, media_type)


def seed_upstream(reg: LabRegistry, items: Sequence[BenchItem]) -> None:
    """The first image alone (its base layer lands once), then the other repositories in
    parallel, each repository's tags in turn by one thread.

    Not two writers in one repository: docker-registry rewrites a blob's link in place,
    so a mount racing a manifest PUT of the same repository fails it ("blob unknown").
    """
    from mirror.lab.seed import client_for, seed_artifact

    if not items:
        return
    groups: dict[str, list[BenchItem]] = {}
    for item in items:
        groups.setdefault(item[0], []).append(item)
    first, *rest = groups.values()
    client = client_for(reg)
    pusher = _MountingPusher(client)

    def seed(group: list[BenchItem]) -> None:
        for repo, tag, art, kind in group:
            seed_artifact(pusher, repo, tag, art, kind)

    try:
        seed(first)
        with ThreadPoolExecutor(max_workers=SEED_JOBS, thread_name_prefix="seed") as pool:
            list(pool.map(seed, rest))
    finally:
        client.close()


def write_images_spec(path: Path, refs: Sequence[ImageRef], upstream: str) -> Path:
    """The list itself: `images:` plus `upstreams:` sending every host to the lab."""
    doc = {
        "name": path.stem,
        "images": [str(r) for r in refs],
        "upstreams": lab_upstreams(upstream),
    }
    path.write_text(json.dumps(doc, indent=2))
    return path


def write_packs_spec(path: Path, folder: Path, upstream: str) -> Path:
    """The pack folders, `images:` empty: mirror finds the closure in their values.yaml."""
    doc = {
        "name": path.stem,
        "registries": [{"name": "Corpus packs", "kind": "pack", "path": str(folder)}],
        "upstreams": lab_upstreams(upstream),
    }
    path.write_text(json.dumps(doc, indent=2))
    return path


def _tag(ref: ImageRef) -> str:
    return ref.tag or "latest"


def skopeo_closure_export(b: Bench, up: LabRegistry, refs: Sequence[ImageRef]) -> tuple[
    Measured, Measured, int
]:  # fmt: skip
    """One `skopeo copy --all` per image into one OCI layout, then tar | zstd -T0."""
    pairs = [(f"{up.host}/{upstream_repository(r)}:{_tag(r)}", f"{r.name}:{_tag(r)}") for r in refs]
    return skopeo_layout_export(b, "closure", pairs)


def _carried(summary: dict[str, Any], want: int, what: str) -> None:
    """A run that carried other images than the list measured something else: stop."""
    got = len(summary.get("images") or [])
    if got != want:
        raise BenchError(f"{what}: {got} images carried, {want} expected")


def closure_bench(b: Bench, content: ClosureContent, repeat: int) -> ClosureBench:
    """Exports and skopeo pipelines in turns, the pack-folder export once, then imports."""
    refs, n = content.refs, len(content.refs)
    repeat = max(1, min(repeat, REPEATS))
    out = b.dir("closure")
    up = b.registry()
    log(f"closure: seeding {n} images under <host>/<path> at {up.url}")
    seed_upstream(up, content.items)
    spec = write_images_spec(out / "closure.json", refs, up.url)
    bundle, cache = out / "closure.tar.zst", out / "cache"
    mirrors, skopeos, tars = [], [], []
    summary: dict[str, Any] = {}
    tar_bytes = 0
    for k in range(repeat):
        shutil.rmtree(cache, ignore_errors=True)
        log(f"closure export {k + 1}/{repeat}: mirror, {n} images (images: + upstreams:)")
        m, summary = mirror_export(b, spec, bundle, cache)
        _carried(summary, n, "closure export")
        mirrors.append(m)
        log(f"closure export {k + 1}/{repeat}: skopeo copy x{n} into one layout, tar | zstd")
        s, t, tar_bytes = skopeo_closure_export(b, up, refs)
        skopeos.append(s)
        tars.append(t)
    shutil.rmtree(cache)
    log(f"closure export: mirror, from the {len(content.pack_dirs)} pack folders (once)")
    folder = copy_pack_folders(content.pack_dirs, out / "packs")
    packs_spec = write_packs_spec(out / "closure-packs.json", folder, up.url)
    packs_bundle = out / "closure-packs.tar.zst"
    from_packs, packs_sum = mirror_export(b, packs_spec, packs_bundle, out / "packs-cache")
    _carried(packs_sum, n, "closure export from the pack folders")
    from_packs_bytes = packs_bundle.stat().st_size
    packs_bundle.unlink()
    shutil.rmtree(out / "packs-cache")
    shutil.rmtree(folder)
    up.stop()

    layout = extract(bundle, out / "layout")
    copies_from = layout_refs(layout)
    imports, skopeo_imports = [], []
    first: dict[str, Any] = {}
    for k in range(repeat):
        target = b.registry()
        log(f"closure import {k + 1}/{repeat}: mirror into an empty registry")
        catalog = out / f"catalog-{k + 1}.json"
        m, _, first = mirror_import(b, bundle, target, "closure", catalog)
        _carried(first, n, "closure import")
        target.stop()
        imports.append(m)
        other = b.registry()
        log(f"closure import {k + 1}/{repeat}: skopeo copy x{len(copies_from)} from the layout")
        skopeo_imports.append(run_all(_import_copies(layout, copies_from, other.host), env=b.env))
        other.stop()
    bundle_bytes = bundle.stat().st_size
    shutil.rmtree(layout)
    return ClosureBench(
        images=n,
        hosts=len({r.host for r in refs}),
        packs=len(content.pack_dirs),
        pins_dropped=content.pins,
        unique_bytes=unique_bytes(content.items),
        base_bytes=BASE_SIZE,
        top_bytes=(TOP_MIN, TOP_MAX),
        mirror=median_of(mirrors),
        skopeo=median_of(skopeos),
        tar=median_of(tars),
        bundle_bytes=bundle_bytes,
        tar_bytes=tar_bytes,
        imported=median_of(imports),
        skopeo_import=median_of(skopeo_imports),
        pushed_blobs=int(first.get("pushedBlobs", 0)),
        from_packs=from_packs,
        from_packs_bytes=from_packs_bytes,
        export_speedups=tuple(
            (s.seconds + t.seconds) / m.seconds
            for m, s, t in zip(mirrors, skopeos, tars, strict=True)
        ),
        import_speedups=tuple(
            s.seconds / m.seconds for m, s in zip(imports, skopeo_imports, strict=True)
        ),
        repeat=repeat,
    )


def _import_copies(layout: Path, refs: Sequence[str], host: str) -> list[list[str]]:
    """Each image of the layout to where `mirror import` puts it: spectro-images/<host>/<path>."""
    cmds = []
    for text in refs:
        ref = parse_reference(text)
        dest = f"docker://{host}/{IMAGES_BASE}/{upstream_repository(ref)}:{_tag(ref)}"
        cmds.append(
            ["skopeo", "copy", "--all", "-q", "--dest-tls-verify=false", f"oci:{layout}:{text}",
             dest]
        )  # fmt: skip
    return cmds
