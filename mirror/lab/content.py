"""Deterministic synthetic content: images, indexes and layers shaped like the real thing.

Layers are tar archives of seeded random bytes, gzipped: random data does not compress,
like real layers, so benchmarks measure honest bytes. The same seed always gives the
same digests. Big layers are written to files in chunks and never held whole in memory.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from mirror.oci import mediatypes as mt
from mirror.oci.artifact import OciArtifact, canonical_json
from mirror.oci.descriptor import Descriptor, descriptor_for

DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
PLATFORMS = (("linux", "amd64"), ("linux", "arm64"))
CHUNK = 1024 * 1024
# Stored deflate blocks: valid gzip at memory speed; random data would not shrink anyway.
GZIP_LEVEL = 0

# A blob held in memory or in a file: big layers stay on disk.
Blob = tuple[Descriptor, bytes | Path]


class Artifact(Protocol):
    """What `seed_artifact` needs; OciArtifact and LabArtifact both fit."""

    @property
    def manifest(self) -> bytes: ...
    @property
    def media_type(self) -> str: ...
    @property
    def descriptor(self) -> Descriptor: ...
    @property
    def blobs(self) -> Sequence[tuple[Descriptor, bytes | Path]]: ...


@dataclass(frozen=True)
class LabArtifact:
    """Like OciArtifact, but a blob may be a file (a 1 GB layer must not sit in memory)."""

    manifest: bytes
    media_type: str
    blobs: tuple[Blob, ...]

    @property
    def descriptor(self) -> Descriptor:
        return descriptor_for(self.manifest, self.media_type)

    @property
    def size(self) -> int:
        return len(self.manifest) + sum(d.size for d, _ in self.blobs if not d.is_manifest)


@dataclass(frozen=True)
class LayerInfo:
    digest: str
    size: int
    diff_id: str


class _RandomReader:
    """Seeded random bytes on demand: the same seed always yields the same stream."""

    def __init__(self, seed: str, size: int) -> None:
        self._rng = random.Random(seed)
        self._left = size

    def read(self, n: int = -1) -> bytes:
        n = self._left if n is None or n < 0 else min(n, self._left)
        self._left -= n
        return self._rng.randbytes(n)


class _HashingWriter:
    """Counts and hashes what passes through to `out`."""

    def __init__(self, out: IO[bytes] | _HashingWriter | gzip.GzipFile) -> None:
        self._out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        self._out.write(data)
        return len(data)

    def flush(self) -> None:
        self._out.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


def write_layer(sink: IO[bytes], seed: str, size: int) -> LayerInfo:
    """Stream a gzipped tar holding `size` random bytes into `sink`."""
    outer = _HashingWriter(sink)
    with gzip.GzipFile(
        filename="", mode="wb", fileobj=outer, mtime=0, compresslevel=GZIP_LEVEL
    ) as gz:
        inner = _HashingWriter(gz)
        with tarfile.open(fileobj=inner, mode="w|", format=tarfile.USTAR_FORMAT) as tar:  # type: ignore[call-overload]
            info = tarfile.TarInfo(f"lab/{hashlib.sha256(seed.encode()).hexdigest()[:16]}.bin")
            info.size, info.mtime, info.mode = size, 0, 0o644
            tar.addfile(info, _RandomReader(seed, size))
    return LayerInfo(outer.digest, outer.size, inner.digest)


def make_layer(seed: str, size: int) -> bytes:
    """A small layer in memory (tests, standard seed)."""
    buf = io.BytesIO()
    write_layer(buf, seed, size)
    return buf.getvalue()


def make_layer_file(
    path: Path, seed: str, size: int, media_type: str = mt.OCI_LAYER_GZIP
) -> tuple[Descriptor, LayerInfo]:
    """A big layer written to `path` chunk by chunk; reused when already there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with tmp.open("wb") as fh:
        info = write_layer(fh, seed, size)
    tmp.replace(path)
    return Descriptor(media_type, info.digest, info.size), info


def _diff_id(layer: bytes) -> str:
    try:
        raw = gzip.decompress(layer)
    except (OSError, EOFError):
        raw = layer
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _config(name: str, platform: tuple[str, str], diff_ids: list[str]) -> bytes:
    os_name, arch = platform
    doc: dict[str, Any] = {
        "architecture": arch,
        "os": os_name,
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "Labels": {"io.mirror.lab.image": name},
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": "1970-01-01T00:00:00Z", "created_by": f"lab layer {i}"}
            for i in range(len(diff_ids))
        ],
    }
    return canonical_json(doc)


def _image(
    name: str,
    layers: Sequence[tuple[Descriptor, bytes | Path, str]],
    platform: tuple[str, str],
    docker: bool,
) -> LabArtifact:
    """Assemble config + manifest over layers given as (descriptor, content, diff_id)."""
    cfg_type = mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG
    config = _config(name, platform, [diff for _, _, diff in layers])
    cfg = descriptor_for(config, cfg_type)
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST,
        "config": cfg.to_json(),
        "layers": [d.to_json() for d, _, _ in layers],
    }
    # Docker pretty-prints its manifests; keeping that shape proves bytes are kept verbatim.
    manifest = json.dumps(doc, indent=3).encode() if docker else canonical_json(doc)
    blobs: tuple[Blob, ...] = ((cfg, config), *((d, c) for d, c, _ in layers))
    return LabArtifact(manifest, str(doc["mediaType"]), blobs)


def _in_memory(art: LabArtifact) -> OciArtifact:
    blobs = tuple((d, c) for d, c in art.blobs if isinstance(c, bytes))
    if len(blobs) != len(art.blobs):
        raise ValueError("artifact has file-backed blobs; use the LabArtifact itself")
    return OciArtifact(art.manifest, art.media_type, blobs)


def make_image(
    name: str, *, layers: Sequence[bytes], platform: tuple[str, str] = ("linux", "amd64")
) -> OciArtifact:
    """An OCI image manifest + config over gzipped layers."""
    items = [(descriptor_for(b, mt.OCI_LAYER_GZIP), b, _diff_id(b)) for b in layers]
    return _in_memory(_image(name, items, platform, docker=False))


def make_docker_image(
    name: str, *, layers: Sequence[bytes], platform: tuple[str, str] = ("linux", "amd64")
) -> OciArtifact:
    """A Docker schema 2 manifest + container config over gzipped layers."""
    items = [(descriptor_for(b, DOCKER_LAYER), b, _diff_id(b)) for b in layers]
    return _in_memory(_image(name, items, platform, docker=True))


def make_file_image(
    name: str,
    layers: Sequence[tuple[Descriptor, LayerInfo, Path]],
    platform: tuple[str, str] = ("linux", "amd64"),
) -> LabArtifact:
    """An OCI image whose layers are files made by `make_layer_file`."""
    items = [(d, p, info.diff_id) for d, info, p in layers]
    return _image(name, items, platform, docker=False)


def _platform_of(child: Artifact) -> dict[str, str]:
    """Read os/architecture back from the child's config blob."""
    doc = json.loads(child.manifest)
    cfg_digest = doc["config"]["digest"]
    for desc, content in child.blobs:
        if desc.digest == cfg_digest and isinstance(content, bytes):
            cfg = json.loads(content)
            return {"architecture": cfg["architecture"], "os": cfg["os"]}
    raise ValueError("child manifest has no config blob in memory")


def index_of(children: Sequence[Artifact], media_type: str, docker: bool) -> LabArtifact:
    entries, blobs, seen = [], [], set()
    for child in children:
        desc = child.descriptor
        entries.append({**desc.to_json(), "platform": _platform_of(child)})
        for blob in [*child.blobs, (desc, child.manifest)]:
            if blob[0].digest not in seen:
                seen.add(blob[0].digest)
                blobs.append(blob)
    doc = {"schemaVersion": 2, "mediaType": media_type, "manifests": entries}
    manifest = json.dumps(doc, indent=3).encode() if docker else canonical_json(doc)
    return LabArtifact(manifest, media_type, tuple(blobs))


def make_index(children: Sequence[OciArtifact]) -> OciArtifact:
    """An OCI image index; `blobs` holds children's blobs, then child manifests (as blobs
    whose descriptor is a manifest type), so a pusher can go children first."""
    return _in_memory(index_of(children, mt.OCI_INDEX, docker=False))


def make_manifest_list(children: Sequence[OciArtifact]) -> OciArtifact:
    """A Docker manifest list over Docker schema 2 children."""
    return _in_memory(index_of(children, mt.DOCKER_LIST, docker=True))


def multiarch(name: str, layer_size: int = 64 * 1024, *, docker: bool = False) -> OciArtifact:
    """An index (or manifest list) over linux/amd64 and linux/arm64 images."""
    make = make_docker_image if docker else make_image
    children = [
        make(
            name,
            layers=[make_layer(f"{name}/{arch}/{i}", layer_size) for i in range(2)],
            platform=(os_name, arch),
        )
        for os_name, arch in PLATFORMS
    ]
    return make_manifest_list(children) if docker else make_index(children)


def image_family(
    prefix: str, count: int, *, base_size: int, mid_size: int, top_size: int, seed: str = "lab"
) -> list[tuple[str, OciArtifact]]:
    """`count` images sharing one base layer; pairs share a middle layer; each has its own top.

    That sharing is what makes "each blob once" in a bundle worth testing.
    """
    base = make_layer(f"{seed}/base", base_size)
    mids = {k: make_layer(f"{seed}/mid/{k}", mid_size) for k in range((count + 1) // 2)}
    out = []
    for i in range(count):
        name = f"{prefix}{i:02d}"
        top = make_layer(f"{seed}/top/{i}", top_size)
        out.append((name, make_image(name, layers=[base, mids[i // 2], top])))
    return out


from mirror.lab.corpus import (  # noqa: E402  (re-exported: content is the lab's one front door)
    build_helm_repo,
    corpus_chart_artifacts,
    corpus_charts,
    corpus_dir,
    corpus_packs,
)

__all__ = [
    "Artifact",
    "Blob",
    "LabArtifact",
    "build_helm_repo",
    "corpus_chart_artifacts",
    "corpus_charts",
    "corpus_dir",
    "corpus_packs",
    "image_family",
    "make_docker_image",
    "make_image",
    "make_index",
    "make_layer",
    "make_manifest_list",
    "multiarch",
]


_BENCH = ("bench_big_layer", "bench_content", "unique_bytes")


def __getattr__(name: str) -> Any:
    """Benchmark helpers live in benchdata (which imports this module); reach them lazily."""
    if name in _BENCH:
        from mirror.lab import benchdata

        return getattr(benchdata, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
