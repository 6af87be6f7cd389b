"""Stand-ins for the image hosts the corpus packs name (ghcr.io, quay.io, ...), on loopback.

Each image a pack lists is seeded into a lab registry under `<host>/<path>:<tag>`, so the
spec's `upstreams: {ghcr.io: http://127.0.0.1:PORT/ghcr.io}` resolves it there: the real
references of real packs, with no address outside loopback. A digest pin cannot be
reproduced (its bytes are someone else's); tests pin synthetic images instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from mirror.discovery.images import values_images
from mirror.lab.content import make_image, make_layer
from mirror.oci.artifact import OciArtifact
from mirror.oci.names import host_segment
from mirror.oci.reference import ImageRef, parse_reference

# Every host the corpus names, plus Docker Hub and gcr.io; mapping a host no pack uses is harmless.
LAB_UPSTREAM_HOSTS = (
    "cgr.dev",
    "cr.fluentbit.io",
    "docker.elastic.co",
    "docker.io",
    "gcr.io",
    "ghcr.io",
    "hitachiedge1.jfrog.io",
    "nvcr.io",
    "projects.registry.vmware.com",
    "public.ecr.aws",
    "quay.io",
    "registry.hitachivantara.com",
    "registry.k8s.io",
    "us-docker.pkg.dev",
    "xpkg.upbound.io",
)
Item = tuple[str, str, OciArtifact, str]  # repository, tag, artifact, kind
KIND = "upstream"  # Seeded.kind of an image seeded where an upstream host stands in


def pack_image_refs(pack_dirs: Iterable[Path]) -> list[ImageRef]:
    """The tag references (not pins) that these pack folders list, deduplicated."""
    refs: dict[str, ImageRef] = {}
    for pack_dir in pack_dirs:
        values = pack_dir / "values.yaml"
        listed = values_images(values.read_bytes())[0] if values.is_file() else []
        for text in listed:
            try:
                ref = parse_reference(text)
            except ValueError:
                continue
            if ref.digest is None:
                refs.setdefault(str(ref), ref)
    return [refs[k] for k in sorted(refs)]


def upstream_image(
    ref: ImageRef, *, base_size: int = 8 * 1024, top_size: int = 2 * 1024
) -> OciArtifact:
    """A small image for `ref`: a base layer every lab image shares, and one of its own."""
    base = make_layer("upstream/base", base_size)
    top = make_layer(f"upstream/{ref}", top_size)
    return make_image(str(ref), layers=[base, top])


def upstream_repository(ref: ImageRef) -> str:
    """Where the lab keeps `ref`: under its host's name, as a pull-through cache would."""
    return f"{host_segment(ref.host)}/{ref.repository}"


def upstream_items(refs: Sequence[ImageRef]) -> list[Item]:
    return [(upstream_repository(r), r.tag or "latest", upstream_image(r), KIND) for r in refs]


def lab_upstreams(url: str, hosts: Sequence[str] = LAB_UPSTREAM_HOSTS) -> dict[str, str]:
    """`upstreams:` that send every host to the lab registry at `url`."""
    return {h: f"{url.rstrip('/')}/{host_segment(h)}" for h in hosts}


def upstreams_yaml(url: str, hosts: Sequence[str] = LAB_UPSTREAM_HOSTS) -> str:
    """The same, as a YAML block for a spec file."""
    lines = [f'  "{h}": "{u}"' for h, u in lab_upstreams(url, hosts).items()]
    return "upstreams:\n" + "\n".join(lines) + "\n"
