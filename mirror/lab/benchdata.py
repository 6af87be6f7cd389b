"""Benchmark content: hundreds of MB, file-backed, so neither generation nor seeding holds it.

Layer files are cached by seed and size, so a second benchmark run skips generation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from mirror.lab.content import (
    PLATFORMS,
    Artifact,
    LayerInfo,
    index_of,
    make_file_image,
    make_layer_file,
)
from mirror.oci import mediatypes as mt
from mirror.oci.descriptor import Descriptor
from mirror.oci.reference import ImageRef

MB = 1024 * 1024
BenchItem = tuple[str, str, Artifact, str]  # repository, tag, artifact, kind


def cached_layer_file(cache: Path, seed: str, size: int) -> tuple[Descriptor, LayerInfo, Path]:
    """A layer file named by seed and size, reused across runs (its digests kept beside it)."""
    stem = f"{hashlib.sha256(seed.encode()).hexdigest()[:16]}-{size}"
    path, meta = cache / f"{stem}.tar.gz", cache / f"{stem}.json"
    if path.is_file() and meta.is_file():
        info = LayerInfo(**json.loads(meta.read_text()))
        if path.stat().st_size == info.size:
            return Descriptor(mt.OCI_LAYER_GZIP, info.digest, info.size), info, path
    desc, info = make_layer_file(path, seed, size)
    meta.write_text(json.dumps(info.__dict__))
    return desc, info, path


def bench_content(
    cache: Path,
    size_mb: int = 300,
    *,
    base: str = "bench",
    images: int = 12,
    corpus: Path | None = None,
    packs: int | None = None,
) -> list[BenchItem]:
    """At least `size_mb` MB of unique image data plus corpus packs.

    Split: a base layer every image shares (10%), a middle layer per pair (30%), a top layer
    per image (40%), and a linux/amd64 + linux/arm64 index (20%).
    """
    total = size_mb * MB
    pairs = (images + 1) // 2
    base_layer = cached_layer_file(cache, f"{base}/base", total // 10)
    mids = [
        cached_layer_file(cache, f"{base}/mid/{k}", total * 3 // 10 // pairs) for k in range(pairs)
    ]
    items: list[BenchItem] = []
    for i in range(images):
        top = cached_layer_file(cache, f"{base}/top/{i}", total * 4 // 10 // images)
        name = f"app-{i:02d}"
        art: Artifact = make_file_image(name, [base_layer, mids[i // 2], top])
        items.append((f"{base}/images/{name}", "1.0.0", art, "image"))
    children = [
        make_file_image(
            "multiarch",
            [cached_layer_file(cache, f"{base}/multiarch/{arch}", total // 10)],
            platform=(os_name, arch),
        )
        for os_name, arch in PLATFORMS
    ]
    items.append(
        (
            f"{base}/images/multiarch",
            "1.0.0",
            index_of(children, mt.OCI_INDEX, docker=False),
            "image",
        )
    )
    if corpus is not None:
        from mirror.lab.corpus import corpus_packs

        for name, version, art in corpus_packs(corpus, packs):
            items.append((f"{base}/spectro-packs/archive/{name}", version, art, "pack"))
    return items


def bench_big_layer(cache: Path, size_mb: int = 1024, *, base: str = "bench") -> BenchItem:
    """One image whose single layer is `size_mb` MB, generated as a file in 1 MB chunks."""
    layer = cached_layer_file(cache, f"{base}/big", size_mb * MB)
    return (f"{base}/images/big", "1.0.0", make_file_image("big", [layer]), "image")


def bench_upstream_images(
    cache: Path,
    refs: Sequence[ImageRef],
    *,
    base_size: int = 2 * MB,
    top_min: int = 256 * 1024,
    top_max: int = MB,
) -> list[BenchItem]:
    """A synthetic image for each reference, where the lab stands in for its host.

    Every image shares one base layer and has a top layer of its own, `top_min` to `top_max`
    bytes (picked by the reference's hash, so the same list always gives the same content);
    layers are files, cached like every bench layer. Repository as `mirror.lab.upstream`
    names it: `<host>/<path>`, kind "upstream".
    """
    from mirror.lab.upstream import KIND, upstream_repository

    base = cached_layer_file(cache, "upstream/base", base_size)
    items: list[BenchItem] = []
    for ref in refs:
        key = int(hashlib.sha256(str(ref).encode()).hexdigest()[:8], 16)
        size = top_min + key % max(1, top_max - top_min + 1)
        top = cached_layer_file(cache, f"upstream/{ref}", size)
        art = make_file_image(str(ref), [base, top])
        items.append((upstream_repository(ref), ref.tag or "latest", art, KIND))
    return items


def unique_bytes(items: Sequence[BenchItem]) -> int:
    """Bytes a registry stores for these items, each blob once."""
    sizes: dict[str, int] = {}
    for _, _, art, _ in items:
        sizes[art.descriptor.digest] = len(art.manifest)
        for desc, _ in art.blobs:
            sizes[desc.digest] = desc.size
    return sum(sizes.values())
