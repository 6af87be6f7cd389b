"""Push lab content into a running registry the way real tools leave it there."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

from mirror.formats.helm import chart_tag
from mirror.lab import content
from mirror.lab.content import Artifact
from mirror.oci.artifact import OciArtifact
from mirror.oci.descriptor import Descriptor

if TYPE_CHECKING:
    from mirror.lab.registry import LabRegistry
    from mirror.registry.client import RegistryClient


class Pusher(Protocol):
    """The slice of RegistryClient that seeding needs."""

    def push_blob(self, repo: str, desc: Descriptor, stream: IO[bytes]) -> None: ...
    def put_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> None: ...


@dataclass(frozen=True)
class Seeded:
    """One tag a seed created: what a test should later find, byte for byte."""

    repository: str
    tag: str
    digest: str
    kind: str  # image, pack or chart
    media_type: str = ""

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"


def seed_artifact(
    client: Pusher, repo: str, tag: str, artifact: Artifact, kind: str = "image"
) -> Seeded:
    """Blobs first, then child manifests by digest, then the root by tag: never a dangling tag."""
    for desc, data in artifact.blobs:
        if desc.is_manifest:
            assert isinstance(data, bytes)
            client.put_manifest(repo, desc.digest, data, desc.media_type)
        elif isinstance(data, Path):
            with data.open("rb") as fh:
                client.push_blob(repo, desc, fh)
        else:
            client.push_blob(repo, desc, io.BytesIO(data))
    client.put_manifest(repo, tag, artifact.manifest, artifact.media_type)
    return Seeded(repo, tag, artifact.descriptor.digest, kind, artifact.media_type)


def seed_many(client: Pusher, items: Sequence[tuple[str, str, Artifact, str]]) -> list[Seeded]:
    return [seed_artifact(client, repo, tag, art, kind) for repo, tag, art, kind in items]


def standard_items(
    base: str = "production", *, corpus: Path | None = None, packs: int = 3, charts: int = 3
) -> list[tuple[str, str, Artifact, str]]:
    """The small standard set: (repository, tag, artifact, kind), deterministic."""
    img = f"{base}/images"
    items: list[tuple[str, str, Artifact, str]] = []
    # One repository with three versions sharing a base layer: semver and `latest: N` fodder.
    family = content.image_family(
        "web-", 3, base_size=192 * 1024, mid_size=96 * 1024, top_size=32 * 1024, seed="standard"
    )
    for (_, art), tag in zip(family, ("1.0.0", "1.1.0", "2.0.0"), strict=True):
        items.append((f"{img}/web", tag, art, "image"))
    items.append((f"{img}/web", "latest", family[-1][1], "image"))
    # Two more repositories reuse the same base layer (cross-repository dedup and mounts).
    more = content.image_family(
        "api-", 2, base_size=192 * 1024, mid_size=64 * 1024, top_size=16 * 1024, seed="standard"
    )
    items += [(f"{img}/{name}", "1.0.0", art, "image") for name, art in more]
    items.append((f"{img}/multiarch", "1.0.0", content.multiarch("multiarch"), "image"))
    items.append(
        (
            f"{img}/multiarch-docker",
            "1.0.0",
            content.multiarch("multiarch-docker", docker=True),
            "image",
        )
    )
    docker_layers = [content.make_layer(f"docker-app/{i}", 48 * 1024) for i in range(2)]
    items.append(
        (
            f"{img}/docker-app",
            "1.0.0",
            content.make_docker_image("docker-app", layers=docker_layers),
            "image",
        )
    )
    if corpus is not None:
        items += _corpus_items(base, corpus, packs, charts)
    return items


def _corpus_items(
    base: str, corpus: Path, packs: int, charts: int
) -> list[tuple[str, str, Artifact, str]]:
    from mirror.lab import corpus as lab_corpus

    items: list[tuple[str, str, Artifact, str]] = []
    chosen = lab_corpus.corpus_packs(corpus, packs, smallest=True)
    for name, version, art in chosen:
        items.append((f"{base}/spectro-packs/archive/{name}", version, art, "pack"))
    items += pack_images([art for _, _, art in chosen])
    if charts:
        for name, version, art in lab_corpus.corpus_chart_artifacts(corpus, charts):
            items.append((f"{base}/charts/{name}", chart_tag(version), art, "chart"))
    return items


def pack_images(packs: Sequence[OciArtifact]) -> list[tuple[str, str, Artifact, str]]:
    """The images these packs list, at `<host>/<path>:<tag>` (mirror.lab.upstream)."""
    from mirror.discovery.images import build_closure, scan_artifact
    from mirror.lab.upstream import upstream_items
    from mirror.stores.memory import MemorySource

    source = MemorySource("lab packs", packs)
    scans = [
        ("lab", scan_artifact(source, art.descriptor, packs=True, charts=True)) for art in packs
    ]
    refs = [n.ref for n in build_closure(scans).images if n.ref.digest is None]
    return list(upstream_items(refs))


def seed_standard(
    client: Pusher,
    base: str = "production",
    *,
    corpus: Path | None = None,
    with_corpus: bool = True,
) -> list[Seeded]:
    """Images of every manifest kind, a few corpus packs and Helm OCI charts; a few MB."""
    if with_corpus and corpus is None:
        corpus = content.corpus_dir()
    return seed_many(client, standard_items(base, corpus=corpus if with_corpus else None))


def client_for(reg: LabRegistry) -> RegistryClient:
    """A RegistryClient with the lab registry's credentials and CA already filled in."""
    from mirror.registry.auth import Credentials
    from mirror.registry.client import RegistryClient
    from mirror.settings import Net

    creds = Credentials(reg.username, reg.password) if reg.username and reg.password else None
    ca = str(reg.ca_file) if reg.ca_file else None
    return RegistryClient(reg.url, credentials=creds, net=Net(ca_file=ca))
