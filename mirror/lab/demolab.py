"""The demo's connected side: lab registries and a Helm repository on fixed loopback ports.

Fixed, because the shipped preset `bundles/demo.yaml` names them; the lab's own
`start_registry` picks free ports, which suits tests but not a preset. Seeding reuses the
lab's content, and falls back to generated packs and charts when the corpus is absent.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from mirror.lab.seed import Seeded
    from mirror.oci.artifact import OciArtifact
    from mirror.oci.reference import ImageRef

PORT_ENV = "MIRROR_DEMO_PORT"
DEFAULT_PORT = 5780  # source registry; the Helm repository is +1, the air-gapped target +2


class DemoError(Exception):
    """One line for the newcomer: what went wrong and what to do next."""


@dataclass(frozen=True)
class Ports:
    source: int
    helm: int
    target: int

    @classmethod
    def from_env(cls) -> Ports:
        raw = os.environ.get(PORT_ENV, "")
        try:
            base = int(raw) if raw else DEFAULT_PORT
        except ValueError:
            raise DemoError(f"{PORT_ENV}={raw!r} is not a port number: unset it") from None
        if not 1024 <= base <= 65533:
            raise DemoError(f"{PORT_ENV}={base}: pick a port between 1024 and 65533")
        return cls(base, base + 1, base + 2)

    @property
    def default(self) -> bool:
        return self.source == DEFAULT_PORT


# ---------------------------------------------------------------- ports and processes


def port_taken(port: int) -> bool:
    """True when something listens there (SO_REUSEADDR: TIME_WAIT leftovers don't count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def port_message(port: int, what: str) -> str:
    nxt = Ports(DEFAULT_PORT, DEFAULT_PORT + 1, DEFAULT_PORT + 2)
    shift = nxt.source + 100 if port in (nxt.source, nxt.helm, nxt.target) else DEFAULT_PORT
    return (
        f"port {port} ({what}) is taken, perhaps by another demo: stop it (`ss -ltnp "
        f"'sport = :{port}'` shows it), or run `{PORT_ENV}={shift} make demo`"
    )


def check_ports(ports: Ports) -> None:
    for port, what in (
        (ports.source, "source registry"),
        (ports.helm, "Helm repository"),
        (ports.target, "air-gapped target registry"),
    ):
        if port_taken(port):
            raise DemoError(port_message(port, what))


def require_binary() -> str:
    from mirror.lab.registry import INSTALL_HINT, registry_binary

    binary = registry_binary()
    if binary is None:
        raise DemoError(f"{INSTALL_HINT}, or run `make demo`, which installs it")
    return binary


def start_registry_at(port: int, run_dir: Path, what: str, storage: Path | None = None) -> Any:
    """The lab's registry on a fixed loopback port, named by the demo preset.

    Storage under `run_dir` goes when the registry stops; a `storage` passed in stays.
    """
    from mirror.errors import OperationError
    from mirror.lab.registry import start_registry

    require_binary()
    try:
        return start_registry(run_dir, port=port, storage_dir=storage, ready_timeout=15)
    except OperationError as exc:
        if "address already in use" in str(exc):
            raise DemoError(port_message(port, what)) from None
        last = str(exc).strip().splitlines()[-1]
        raise DemoError(f"the {what} did not start ({last})") from None


@contextlib.contextmanager
def serve_at(folder: Path, port: int) -> Iterator[str]:
    """A static folder over HTTP on a fixed loopback port, in a thread of this process."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

    try:
        server = ThreadingHTTPServer(
            ("127.0.0.1", port), functools.partial(Quiet, directory=str(folder))
        )
    except OSError:
        raise DemoError(port_message(port, "Helm repository")) from None
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# ---------------------------------------------------------------- content


@dataclass(frozen=True)
class Seeding:
    """What the source registry now serves: a line per base path, and the packs' images."""

    lines: list[str]
    images: list[Seeded]  # each at <host>/<path>:<tag>, kind "upstream"


def seed_source(
    reg: Any,
    corpus: Path | None,
    charts: Sequence[Path] = (),
    upstreams: Mapping[str, str] | None = None,
) -> Seeding:
    """Images, packs and OCI charts under `production`, packs under `production-fips`.

    Every image those packs and the Helm repository's `charts` list is seeded too, under its
    upstream host's name (`quay.io/...`), where the demo spec's `upstreams:` sends export.
    A host that `upstreams` does not map would send export off loopback: refused here.
    """
    from mirror.lab.seed import client_for, seed_many, standard_items
    from mirror.lab.upstream import KIND, upstream_items
    from mirror.oci.artifact import OciArtifact

    prod = standard_items("production", corpus=corpus, packs=6, charts=2)
    prod = [item for item in prod if item[3] != KIND]  # seeded below, with everyone's images
    fips = standard_items("production-fips", corpus=corpus, packs=3, charts=0)
    fips = [item for item in fips if item[3] == "pack"]
    if corpus is None:
        packs = generated_packs(reg.storage_dir.parent / "packs")
        prod += [(f"production/spectro-packs/archive/{n}", v, a, "pack") for n, v, a in packs]
        fips += [(f"production-fips/spectro-packs/archive/{n}", v, a, "pack") for n, v, a in packs]
    content: list[OciArtifact] = []  # the packs and charts, whose images the lab must serve
    for _, _, art, kind in prod + fips:
        if kind in ("pack", "chart"):
            assert isinstance(art, OciArtifact)  # built in memory, never file-backed
            content.append(art)
    refs = listed_images([*content, *helm_chart_artifacts(charts)])
    if upstreams is not None:
        check_upstreams(refs, upstreams)
    client = client_for(reg)
    try:
        seeded = seed_many(client, [*prod, *fips, *upstream_items(refs)])
    finally:
        client.close()
    lines = []
    for base in ("production", "production-fips"):
        mine = [s for s in seeded if s.repository.startswith(base + "/")]
        kinds = sorted({s.kind for s in mine})
        counts = ", ".join(f"{sum(s.kind == k for s in mine)} {k}s" for k in kinds)
        lines.append(f"{reg.url}/{base}: {counts}")
    images = [s for s in seeded if s.kind == KIND]
    hosts = ", ".join(sorted({r.host for r in refs}))
    lines.append(f"{reg.url}/<host>/: {len(images)} images the packs list ({hosts})")
    return Seeding(lines, images)


def listed_images(artifacts: Sequence[OciArtifact]) -> list[ImageRef]:
    """Every image these packs and charts list, as export's closure finds it:
    pack.content.images, and the images annotations of charts (subcharts too)."""
    from mirror.discovery.images import build_closure, scan_artifact
    from mirror.stores.memory import MemorySource

    source = MemorySource("demo lab", artifacts)
    scans = [
        (str(i), scan_artifact(source, art.descriptor, packs=True, charts=True))
        for i, art in enumerate(artifacts)
    ]
    return [need.ref for need in build_closure(scans).images]


def helm_chart_artifacts(charts: Sequence[Path]) -> list[OciArtifact]:
    from mirror.formats.helm import chart_artifact

    return [chart_artifact(tgz.read_bytes(), where=str(tgz)) for tgz in charts]


def check_upstreams(refs: Sequence[ImageRef], upstreams: Mapping[str, str]) -> None:
    """Every listed image must be pulled from the lab: its host mapped, on loopback, by tag."""
    for ref in refs:
        url = upstreams.get(ref.host)
        if url is None:
            raise DemoError(
                f"a demo pack lists {ref}, but bundles/demo.yaml has no upstreams entry for "
                f"{ref.host}: add `{ref.host}: http://127.0.0.1:{DEFAULT_PORT}/{ref.host}`"
            )
        if not url.startswith("http://127.0.0.1:"):
            raise DemoError(f"bundles/demo.yaml: upstreams: {ref.host}: {url} is not on loopback")
        if ref.digest is not None:
            raise DemoError(f"a demo pack pins {ref}: the lab cannot serve someone else's bytes")


def build_helm(dest: Path, corpus: Path | None) -> Path:
    """A static Helm repository of a few small corpus charts (or generated ones).

    Its charts are `dest/*.tgz`: their images are seeded with the rest (`seed_source`).
    """
    from mirror.lab.corpus import build_helm_repo, unique_charts

    if corpus is not None:
        charts = [tgz for _, _, tgz in unique_charts(corpus, 4, smallest=True)]
    else:
        charts = generated_charts(dest.parent / "charts")
    return build_helm_repo(dest, charts)


# What the generated packs run: real-looking names on four hosts, one a Docker Hub short
# name (`nginx:1.25` is docker.io/library/nginx:1.25). The lab serves each under its host.
GENERATED_IMAGES = {
    "demo-addon": ("ghcr.io/spectrocloud-labs/demo-addon:1.0.0", "nginx:1.25"),
    "demo-csi": (
        "quay.io/spectrocloud-labs/demo-csi-driver:1.0.0",
        "registry.k8s.io/sig-storage/csi-provisioner:v5.1.0",
    ),
}


def generated_packs(folder: Path) -> list[tuple[str, str, Any]]:
    """Two tiny packs, for a checkout without ../shared/corpus; each lists two images."""
    import json

    import yaml

    from mirror.formats.pack import build_pack_archive, pack_artifact

    out = []
    for name, images in GENERATED_IMAGES.items():
        pack = folder / name
        pack.mkdir(parents=True)
        doc = {"name": name, "version": "1.0.0", "layer": "addon", "cloudTypes": ["all"]}
        (pack / "pack.json").write_text(json.dumps(doc))
        values = {
            "pack": {"namespace": name, "content": {"images": [{"image": i} for i in images]}}
        }
        (pack / "values.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
        filename, archive = build_pack_archive(pack)
        out.append((name, "1.0.0", pack_artifact(archive, filename)))
    return out


def generated_charts(folder: Path) -> list[Path]:
    """Two tiny Helm charts (Chart.yaml and values.yaml), for a checkout without the corpus."""
    import io
    import tarfile

    folder.mkdir(parents=True)
    out = []
    for name in ("demo-web", "demo-api"):
        tgz = folder / f"{name}-0.1.0.tgz"
        with tarfile.open(tgz, "w:gz") as tar:
            for member, text in (
                ("Chart.yaml", f"apiVersion: v2\nname: {name}\nversion: 0.1.0\n"),
                ("values.yaml", "replicaCount: 1\n"),
            ):
                info = tarfile.TarInfo(f"{name}/{member}")
                info.size = len(text.encode())
                tar.addfile(info, io.BytesIO(text.encode()))
        out.append(tgz)
    return out


def landed_digests(bundle: Path, target: str) -> tuple[int, list[str]]:
    """(artifacts, mismatches): each artifact of the bundle as the target serves it, by tag."""
    import json

    from mirror.bundle.reader import BundleReader
    from mirror.oci.mediatypes import ACCEPT

    manifest = json.loads(BundleReader(bundle).head()[0])
    bad = []
    with requests.Session() as session:
        for art in manifest["artifacts"]:
            repo, tag = art["ref"].rsplit(":", 1)
            resp = session.head(
                f"{target}/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT}, timeout=10
            )
            got = resp.headers.get("Docker-Content-Digest", f"HTTP {resp.status_code}")
            if got != art["digest"]:
                bad.append(f"{art['ref']}: {got}, bundle says {art['digest']}")
    return len(manifest["artifacts"]), bad


@dataclass(frozen=True)
class Landed:
    """One image of the bundle, where import put it, and the digests that must agree."""

    ref: str  # as the pack lists it, normalized: quay.io/org/name:tag
    where: str  # TARGET_HOST/spectro-images/<host>/<path>:<tag> (or @digest when pinned)
    bundle: str  # the digest the bundle carries
    upstream: str  # the digest the lab's stand-in for the upstream host serves
    target: str  # the digest the target serves there (or "HTTP <status>")

    @property
    def ok(self) -> bool:
        return self.bundle == self.upstream == self.target


def landed_images(
    bundle: Path, target: str, upstream: Mapping[str, str], images_base: str = "spectro-images"
) -> list[Landed]:
    """Each image of the bundle as the target serves it at Palette's air-gap layout.

    `upstream` maps `<host>/<path>:<tag>` (where the lab seeded it) to the lab's digest.
    """
    import json
    from urllib.parse import urlsplit

    from mirror.bundle.reader import BundleReader
    from mirror.oci.mediatypes import ACCEPT
    from mirror.oci.names import host_segment

    manifest = json.loads(BundleReader(bundle).head()[0])
    netloc = urlsplit(target).netloc
    out = []
    with requests.Session() as session:
        for image in manifest.get("images") or []:
            repo = f"{images_base}/{host_segment(image['host'])}/{image['repository']}"
            ref = image["pin"] or image["tag"]
            sep = "@" if image["pin"] else ":"
            resp = session.head(
                f"{target}/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT}, timeout=10
            )
            got = resp.headers.get("Docker-Content-Digest", f"HTTP {resp.status_code}")
            seeded = upstream.get(f"{host_segment(image['host'])}/{image['repository']}{sep}{ref}")
            out.append(
                Landed(
                    image["ref"],
                    f"{netloc}/{repo}{sep}{ref}",
                    image["digest"],
                    seeded or "not seeded by the lab",
                    got,
                )
            )
    return out


NEXT_DAY_REPOSITORY = "production/images/web"
NEXT_DAY_TAG = "2.1.0"


def seed_next_day(source_url: str) -> str:
    """The next day's small update: a new tag of `web` over its base and middle layers
    (already sent), with 16 KiB of its own. Returns the new tag's digest."""
    from mirror.lab.content import make_image, make_layer
    from mirror.lab.seed import seed_artifact
    from mirror.registry.client import RegistryClient

    # The same seeds as seed.standard_items' `web` family: the delta leaves these out.
    layers = [
        make_layer("standard/base", 192 * 1024),
        make_layer("standard/mid/1", 96 * 1024),
        make_layer("demo/next-day", 16 * 1024),
    ]
    client = RegistryClient(source_url)  # the demo's source: plain HTTP, anonymous
    try:
        art = make_image("web-next-day", layers=layers)
        return str(seed_artifact(client, NEXT_DAY_REPOSITORY, NEXT_DAY_TAG, art).digest)
    finally:
        client.close()


@dataclass(frozen=True)
class Delta:
    """What a delta bundle carries and leaves out, from its manifest.json."""

    sequence: int
    carried: int  # blobs in the bundle
    left_out: int  # blobs the far side already holds
    size: int  # bytes of the bundle file


def delta_counts(bundle: Path) -> Delta:
    from mirror.bundle.manifest import parse_manifest
    from mirror.bundle.reader import BundleReader

    manifest = parse_manifest(BundleReader(bundle).head()[0])
    if manifest.chain is None or manifest.chain.base is None or not manifest.external:
        raise DemoError(f"{bundle.name} is not a delta of the chain: it leaves nothing out")
    return Delta(
        manifest.chain.sequence,
        len(manifest.members),
        len(manifest.external),
        bundle.stat().st_size,
    )


def served_digest(target: str, repository: str, tag: str) -> str:
    from mirror.oci.mediatypes import ACCEPT

    resp = requests.head(
        f"{target}/v2/{repository}/manifests/{tag}", headers={"Accept": ACCEPT}, timeout=10
    )
    return resp.headers.get("Docker-Content-Digest", f"HTTP {resp.status_code}")
