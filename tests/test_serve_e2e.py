"""`mirror serve` end to end (issue 14): a signed bundle served as a registry, nothing unpacked.

One bundle carries the standard seed (images, packs, charts), the images its packs run,
a Helm repository, a signed image with an SBOM referrer and one large layer. It is served
by a real `mirror serve` process on loopback, and real clients pull from it: skopeo (into a
directory and into a lab docker-registry), oras-py, and plain HTTP for the Helm repository.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from conftest import HelmRepo
from faultproxy import Reg, isolated_env, mirror

from mirror.bundle.manifest import BundleManifest, parse_manifest
from mirror.bundle.parts import parts_of, split_output
from mirror.bundle.reader import BundleReader
from mirror.keys import generate_keypair, load_private_key
from mirror.lab.certs import write_certs
from mirror.lab.content import make_image, make_layer
from mirror.lab.cosign import seed_referrer, seed_signature
from mirror.lab.registry import LabRegistry, free_port, start_registry
from mirror.lab.seed import client_for, seed_artifact
from mirror.lab.upstream import lab_upstreams
from mirror.oci import mediatypes as mt
from mirror.oci.descriptor import Descriptor
from mirror.streams import Staged

pytestmark = pytest.mark.timeout(300)
PASSWORD = "serve test password"
SBOM = "application/vnd.example.sbom+json"
BIG = 6 * 1024 * 1024  # a layer larger than socket buffers: a client can hang up mid-blob
_FALLBACK_TAG = re.compile(r"sha256-[a-f0-9]{64}")
_CLF = re.compile(  # common log format: host ident user [time] "request" status bytes
    r"^\S+ - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "
    r'"[A-Z]+ \S+ HTTP/1\.[01]" \d{3} (\d+|-)$'
)


@pytest.fixture(scope="module", autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    env = {"MIRROR_KEY_PASSWORD": PASSWORD, "SOURCE_DATE_EPOCH": "1700000000"}
    with isolated_env(tmp_path_factory, set_env=env):
        yield


# ---- the bundle, and a serve process ---------------------------------------------------


@dataclass(frozen=True)
class Built:
    bundle: Path
    pub: Path
    manifest: BundleManifest
    helm: HelmRepo
    big: str  # digest of the large layer
    big_size: int
    app: str  # digest of the signed image
    app_repo: str  # where it is served


@pytest.fixture(scope="module")
def built(
    seeded_registry: Any, helm_repo: HelmRepo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Built]:
    work = tmp_path_factory.mktemp("serve")
    assert mirror("keygen", "--output-dir", work, "--name", "signer").rc == 0
    cosign_key, _ = generate_keypair(work, "cosign", b"pw")
    refs = start_registry(work / "refs", flavour="anon")
    try:
        c = client_for(refs)
        big = make_layer("big", BIG)
        app = seed_artifact(c, "production/images/app", "1.0", make_image("app", layers=[big]))
        key = load_private_key(cosign_key, b"pw")
        seed_signature(c, "production/images/app", app.digest, key)
        subject = Descriptor(mt.OCI_MANIFEST, app.digest, 0)
        seed_referrer(c, "production/images/app", subject, SBOM, b'{"sbom": 1}')
        c.close()
        doc = {
            "name": "served",
            "upstreams": lab_upstreams(seeded_registry.url),
            "registries": [
                {"name": "Lab", "kind": "oci", "url": seeded_registry.url,
                 "basePath": "production", "providerType": "pack"},
                {"name": "Refs", "kind": "oci", "url": refs.url, "basePath": "production",
                 "providerType": "image", "repositories": ["images/app"]},
                {"name": "Team Charts", "kind": "helm", "url": helm_repo.url},
            ],
        }  # fmt: skip
        spec = work / "spec.yaml"
        spec.write_text(yaml.safe_dump(doc))
        bundle = work / "b.tar.zst"
        run = mirror("export", spec, "-o", bundle, "--key", work / "signer.key")
        assert run.rc == 0, run.err
    finally:
        refs.stop()
    manifest = parse_manifest(BundleReader(bundle).head()[0])
    big_digest = "sha256:" + hashlib.sha256(big).hexdigest()
    yield Built(
        bundle, work / "signer.pub", manifest, helm_repo, big_digest, len(big), app.digest,
        "production/images/app",
    )  # fmt: skip


class Served:
    """A `mirror serve` subprocess; `url` once it printed where it listens."""

    def __init__(self, bundle: Path, *args: object) -> None:
        argv = [sys.executable, "-m", "mirror", "serve", str(bundle), *map(str, args)]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy()
        )
        self.lines: list[str] = []  # stdout, read by a thread as it comes
        self.url = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_ready(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                m = re.match(r"serving .* at (https?://\S+)", line)
                if m:
                    self.url = m[1]
                    return self.url
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}: {self.stderr()}")
            time.sleep(0.05)
        raise AssertionError("serve did not say where it listens")

    def out(self) -> str:
        """All serve printed on stdout so far (the banner is printed all at once)."""
        time.sleep(0.2)
        return "".join(self.lines)

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read() if self.proc.poll() is not None else ""


@pytest.fixture(scope="module")
def served(built: Built) -> Iterator[Served]:
    s = Served(built.bundle, "--key", built.pub, "--listen", "127.0.0.1:0")
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop()


def _session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    return s


def _all_refs(url: str) -> list[str]:
    """Every repo:tag the server lists, through its own catalog and tags/list."""
    reg = Reg(url)
    return [f"{repo}:{tag}" for repo in reg.catalog() for tag in reg.tags(repo)]


def _skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["skopeo", "--insecure-policy", *args], capture_output=True, text=True, timeout=120
    )


# ---- real clients pull everything -----------------------------------------------------


@pytest.mark.slow
def test_skopeo_copies_every_ref_to_a_directory_and_a_registry_with_equal_digests(
    served: Served, built: Built, registry: LabRegistry, tmp_path: Path
) -> None:
    if not _which("skopeo"):
        pytest.skip("skopeo is not installed")
    host = served.url.split("://", 1)[1]
    refs = _all_refs(served.url)
    assert len(refs) >= len(built.manifest.artifacts) + len(built.manifest.images)
    referrers = [r for r in built.manifest.referrers if r.tag is None]  # by digest only
    refs += [f"{built.app_repo}@{r.digest}" for r in referrers]
    assert referrers
    served_reg = Reg(served.url)
    target = Reg(registry.url)
    for i, ref in enumerate(refs):
        repo, tag = ref.split("@", 1) if "@" in ref else ref.rsplit(":", 1)
        want = tag if "@" in ref else served_reg.digest(repo, tag)
        src = f"docker://{host}/{ref}"
        out = tmp_path / f"d{i}"
        for dest in (f"dir:{out}", f"docker://{registry.host}/{ref}"):
            run = _skopeo(
                "copy", "--all", "--preserve-digests", "--src-tls-verify=false",
                "--dest-tls-verify=false", "--retry-times", "2", src, dest,
            )  # fmt: skip
            assert run.returncode == 0, f"{ref} -> {dest}: {run.stderr}"
        raw = (out / "manifest.json").read_bytes()
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == want, ref
        assert target.digest(repo, tag) == want, ref
    assert target.dangling() == []


def test_names_are_those_import_creates(
    served: Served, built: Built, registry: LabRegistry, tmp_path: Path
) -> None:
    run = mirror(
        "import", built.bundle, "--target", registry.url, "--key", built.pub,
        "--catalog", tmp_path / "catalog.json", "--mirror-config", tmp_path / "mc",
    )  # fmt: skip
    assert run.rc == 0, run.err
    # The mirror configuration serve prints is import's, for serve's own address.
    theirs = (tmp_path / "mc" / "mirror-registries.txt").read_text().strip()
    host = served.url.split("://", 1)[1]
    lines = served.out().splitlines()
    ours = lines[lines.index("# mirror-registries.txt") + 1]
    assert ours == theirs.replace(registry.host, host) and "spectro-images/" in ours
    for path in (tmp_path / "mc" / "certs.d").glob("*/hosts.toml"):
        text = path.read_text().replace(registry.host, host)
        assert text.strip() in served.out(), path
    imported, here = Reg(registry.url), Reg(served.url)
    assert sorted(here.catalog()) == sorted(imported.catalog())
    assert any(r.startswith("spectro-images/") for r in here.catalog())
    assert any(r.startswith("charts/team-charts/") for r in here.catalog())
    for repo in here.catalog():
        # Distribution 2.8 has no referrers API, so import adds the `sha256-H` fallback
        # index there; serve answers the referrers API instead.
        theirs = {t for t in imported.tags(repo) if not _FALLBACK_TAG.fullmatch(t)}
        assert set(here.tags(repo)) == theirs, repo
        for tag in theirs:
            assert here.digest(repo, tag) == imported.digest(repo, tag), f"{repo}:{tag}"


def test_base_path_prefixes_every_repository(built: Built) -> None:
    s = Served(built.bundle, "--key", built.pub, "--listen", "127.0.0.1:0", "--base-path", "edge")
    try:
        s.wait_ready()
        repos = Reg(s.url).catalog()
        assert repos and all(r.startswith("edge/") for r in repos)
        assert any(r.startswith("edge/spectro-images/") for r in repos)
        assert "edge/spectro-images/" in s.out()  # the mirror config follows
    finally:
        assert s.stop() == 0


def test_oras_py_pulls_a_pack(served: Served, built: Built, tmp_path: Path) -> None:
    import oras.client

    pack = next(a for a in built.manifest.artifacts if a.kind == "pack")
    repo = pack.ref[: -(len(pack.tag) + 1)]
    host = served.url.split("://", 1)[1]
    client = oras.client.OrasClient(hostname=host, insecure=True)
    files = client.pull(target=f"{host}/{repo}:{pack.tag}", outdir=str(tmp_path))
    doc = json.loads(Reg(served.url).manifest(repo, pack.tag)[2])  # type: ignore[index]
    want = {layer["digest"] for layer in doc["layers"]}
    got = {"sha256:" + hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in files}
    assert files and got == want


def test_helm_chart_is_fetched_by_its_index_url(served: Served, built: Built) -> None:
    s = _session()
    index_url = f"{served.url}/charts/team-charts/index.yaml"
    resp = s.get(index_url, timeout=10)
    assert resp.status_code == 200, resp.text
    index = yaml.safe_load(resp.text)
    originals = {hashlib.sha256(p.read_bytes()).hexdigest() for p in built.helm.charts}
    fetched = set()
    for versions in index["entries"].values():
        for entry in versions:
            tgz = s.get(requests.compat.urljoin(index_url, entry["urls"][0]), timeout=10)
            assert tgz.status_code == 200
            digest = hashlib.sha256(tgz.content).hexdigest()
            assert digest == entry["digest"]
            fetched.add(digest)
    assert fetched == originals
    assert "/charts/team-charts/index.yaml" in served.out()


# ---- the API's edges ------------------------------------------------------------------


def test_range_requests(served: Served, built: Built) -> None:
    s = _session()
    url = f"{served.url}/v2/{built.app_repo}/blobs/{built.big}"
    whole = s.get(url, timeout=30).content
    assert (
        len(whole) == built.big_size and "sha256:" + hashlib.sha256(whole).hexdigest() == built.big
    )
    part = s.get(url, headers={"Range": "bytes=1048570-1048589"}, timeout=30)
    assert part.status_code == 206 and part.content == whole[1048570:1048590]
    assert part.headers["Content-Range"] == f"bytes 1048570-1048589/{built.big_size}"
    tail = s.get(url, headers={"Range": "bytes=-7"}, timeout=30)
    assert tail.status_code == 206 and tail.content == whole[-7:]
    open_end = s.get(url, headers={"Range": f"bytes={built.big_size - 3}-"}, timeout=30)
    assert open_end.status_code == 206 and open_end.content == whole[-3:]
    past = s.get(url, headers={"Range": f"bytes={built.big_size}-"}, timeout=30)
    assert past.status_code == 416 and past.headers["Content-Range"] == f"bytes */{built.big_size}"
    head = s.head(url, timeout=10)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == built.big_size
    assert head.headers["Docker-Content-Digest"] == built.big
    # If-Range: a range of this blob only while the validator is its own (RFC 9110 13.1.5)
    same = {"Range": "bytes=0-9", "If-Range": head.headers["ETag"]}
    assert s.get(url, headers=same, timeout=30).status_code == 206
    other = s.get(url, headers={"Range": "bytes=0-9", "If-Range": '"sha256:0"'}, timeout=30)
    assert other.status_code == 200 and len(other.content) == built.big_size


def _pages(s: requests.Session, base: str, first: str, key: str) -> tuple[list[str], int]:
    items: list[str] = []
    url: str | None = base + first
    pages = 0
    while url:
        resp = s.get(url, timeout=10)
        assert resp.status_code == 200
        items += resp.json()[key]
        pages += 1
        link = resp.headers.get("Link")
        url = base + link.split(">", 1)[0].lstrip("<") if link else None
    return items, pages


def test_catalog_and_tags_paginate_with_link_headers(served: Served, built: Built) -> None:
    s = _session()
    everything = s.get(f"{served.url}/v2/_catalog", timeout=10).json()["repositories"]
    assert len(everything) > 3
    paged, pages = _pages(s, served.url, "/v2/_catalog?n=2", "repositories")
    assert paged == everything and pages == (len(everything) + 1) // 2
    tags = s.get(f"{served.url}/v2/{built.app_repo}/tags/list", timeout=10).json()["tags"]
    assert len(tags) >= 2  # the tag and its cosign signature
    paged, _ = _pages(s, served.url, f"/v2/{built.app_repo}/tags/list?n=1", "tags")
    assert paged == tags
    after = s.get(f"{served.url}/v2/_catalog?n=100&last={everything[0]}", timeout=10)
    assert after.json()["repositories"] == everything[1:] and "Link" not in after.headers


def _code(resp: requests.Response) -> str:
    return str(resp.json()["errors"][0]["code"])


def test_unknown_digests_names_and_other_repositories_blobs_are_404(
    served: Served, built: Built
) -> None:
    s = _session()
    zero = "sha256:" + "0" * 64
    base = f"{served.url}/v2/{built.app_repo}"
    resp = s.get(f"{base}/manifests/{zero}", timeout=10)
    assert resp.status_code == 404 and _code(resp) == "MANIFEST_UNKNOWN"
    resp = s.get(f"{base}/manifests/no-such-tag", timeout=10)
    assert resp.status_code == 404 and _code(resp) == "MANIFEST_UNKNOWN"
    resp = s.get(f"{base}/blobs/{zero}", timeout=10)
    assert resp.status_code == 404 and _code(resp) == "BLOB_UNKNOWN"
    resp = s.get(f"{served.url}/v2/no/such/repo/tags/list", timeout=10)
    assert resp.status_code == 404 and _code(resp) == "NAME_UNKNOWN"
    other = next(r for r in Reg(served.url).catalog() if r != built.app_repo)
    resp = s.get(f"{served.url}/v2/{other}/blobs/{built.big}", timeout=10)
    assert resp.status_code == 404 and _code(resp) == "BLOB_UNKNOWN"  # not that repo's


def test_manifest_headers_and_accept_negotiation(served: Served, built: Built) -> None:
    s = _session()
    url = f"{served.url}/v2/{built.app_repo}/manifests/1.0"
    head = s.head(url, headers={"Accept": mt.ACCEPT}, timeout=10)
    assert head.status_code == 200
    assert head.headers["Docker-Content-Digest"] == built.app
    assert head.headers["Content-Type"] == mt.OCI_MANIFEST
    body = s.get(url, headers={"Accept": mt.OCI_MANIFEST}, timeout=10)
    assert int(head.headers["Content-Length"]) == len(body.content)
    assert "sha256:" + hashlib.sha256(body.content).hexdigest() == built.app
    by_digest = s.get(f"{served.url}/v2/{built.app_repo}/manifests/{built.app}", timeout=10)
    assert by_digest.content == body.content
    refused = s.get(url, headers={"Accept": mt.DOCKER_MANIFEST}, timeout=10)
    assert refused.status_code == 404 and _code(refused) == "MANIFEST_UNKNOWN"
    # By digest the content is fixed: answered whatever Accept lists, as docker-registry
    # answers (a 404 said a manifest that is there was not).
    pinned = f"{served.url}/v2/{built.app_repo}/manifests/{built.app}"
    for accept in (mt.DOCKER_MANIFEST, "application/json"):
        got = s.get(pinned, headers={"Accept": accept}, timeout=10)
        assert got.status_code == 200 and got.content == body.content, accept
        assert got.headers["Content-Type"] == mt.OCI_MANIFEST


def test_referrers_api_and_companion_tags(served: Served, built: Built) -> None:
    s = _session()
    url = f"{served.url}/v2/{built.app_repo}/referrers/{built.app}"
    doc = s.get(url, timeout=10).json()
    assert [m["artifactType"] for m in doc["manifests"]] == [SBOM]
    only = s.get(url, params={"artifactType": SBOM}, timeout=10)
    assert len(only.json()["manifests"]) == 1
    assert only.headers["OCI-Filters-Applied"] == "artifactType"
    none = s.get(url, params={"artifactType": "application/x-other"}, timeout=10)
    assert none.status_code == 200 and none.json()["manifests"] == []
    sig_tag = "sha256-" + built.app.split(":", 1)[1] + ".sig"
    sig = s.get(f"{served.url}/v2/{built.app_repo}/manifests/{sig_tag}", timeout=10)
    assert sig.status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/manifests/1.0"),
        ("DELETE", "/manifests/1.0"),
        ("POST", "/blobs/uploads/"),
        ("POST", "/blobs/uploads/?mount=sha256:" + "0" * 64 + "&from=other"),
        ("PATCH", "/blobs/uploads/some-session"),
        ("DELETE", "/blobs/sha256:" + "0" * 64),
    ],
)
def test_push_delete_and_mount_are_refused(
    served: Served, built: Built, method: str, path: str
) -> None:
    resp = _session().request(method, f"{served.url}/v2/{built.app_repo}{path}", timeout=10)
    assert resp.status_code == 405 and _code(resp) == "UNSUPPORTED"


def test_a_split_bundle_is_served_from_its_parts_with_nothing_unpacked(
    built: Built, tmp_path: Path
) -> None:
    split = tmp_path / "split" / built.bundle.name
    split.parent.mkdir()
    with Staged().publishing() as staged, split_output(split, 1024 * 1024, staged) as out:
        out.write(built.bundle.read_bytes())  # the large layer spans several parts
    for suffix in (".sig", ".sha256"):
        shutil.copy(f"{built.bundle}{suffix}", f"{split}{suffix}")
    before = sorted(p.name for p in split.parent.iterdir())
    assert len(parts_of(split)) > 3 and not split.exists()
    s = Served(split, "--key", built.pub, "--listen", "127.0.0.1:0")
    try:
        url = s.wait_ready()
        blob = _session().get(f"{url}/v2/{built.app_repo}/blobs/{built.big}", timeout=30)
        assert "sha256:" + hashlib.sha256(blob.content).hexdigest() == built.big
    finally:
        assert s.stop() == 0
    assert sorted(p.name for p in split.parent.iterdir()) == before


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--listen", "nowhere"], "--listen"),
        (["--listen", "http://127.0.0.1:5000"], "without a scheme or path"),
        (["--tls-cert", "c.pem"], "--tls-cert and --tls-key go together"),
        (["--base-path", "Bad Path"], "--base-path"),
    ],
)
def test_bad_flags_are_usage_errors(built: Built, args: list[str], says: str) -> None:
    run = mirror("serve", built.bundle, "--key", built.pub, *args)
    assert run.rc == 2 and says in run.error_line()


def test_a_port_in_use_is_named_with_the_way_out(built: Built) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = mirror("serve", built.bundle, "--key", built.pub, "--listen", f"127.0.0.1:{port}")
    assert run.rc == 1
    assert run.error_line() == (
        f"mirror: error: cannot listen on 127.0.0.1:{port}: Address already in use "
        "(--listen HOST:0 takes any free port)"
    )


# ---- trust first ----------------------------------------------------------------------


def _flip_big_blob(src: Path, dst: Path, digest: str) -> None:
    """One byte flipped inside the compressed frame of the large layer."""
    entry = BundleReader(src).toc()["blobs/sha256/" + digest.split(":", 1)[1]]
    data = bytearray(src.read_bytes())
    data[entry.frame + 4096] ^= 0x01
    dst.write_bytes(bytes(data))


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize(
    "case", ["tampered", "wrong key", "unsigned not allowed", "older than one imported"]
)
def test_what_import_refuses_serve_refuses_before_listening(
    built: Built, tmp_path: Path, case: str
) -> None:
    bundle, pub = built.bundle, built.pub
    args: list[object] = []
    if case == "tampered":
        bundle = tmp_path / "bad.tar.zst"
        _flip_big_blob(built.bundle, bundle, built.big)
        args = ["--key", pub]
    elif case == "wrong key":
        assert mirror("keygen", "--output-dir", tmp_path, "--name", "stranger").rc == 0
        args = ["--key", tmp_path / "stranger.pub"]
    elif case == "older than one imported":  # import's downgrade record (the audit, stop 31)
        from mirror.freshness import FILE_NAME, Freshness

        signer = mirror("verify", bundle, "--key", pub, "--json").json()["signer"]
        Freshness(tmp_path / FILE_NAME).record("served", signer, "2999-01-01T00:00:00Z", "x")
        args = ["--key", pub, "--catalog", tmp_path / "cat.json"]
    port = free_port()
    s = Served(bundle, *args, "--listen", f"127.0.0.1:{port}")
    try:
        rc = s.proc.wait(120)
    finally:
        if s.proc.poll() is None:  # it started after all: never leave it running
            s.proc.kill()
            s.proc.wait()
    assert rc == 3
    assert "serving" not in s.out()
    assert s.stderr().startswith("mirror: error: ")
    assert not _listening(port)


def test_a_bundle_changed_after_start_is_not_served(built: Built, tmp_path: Path) -> None:
    """Blobs are not hashed again as they are served: the file must still be the one proven."""
    bundle = tmp_path / built.bundle.name
    shutil.copy(built.bundle, bundle)
    s = Served(bundle, "--allow-unsigned", "--listen", "127.0.0.1:0")
    try:
        url = s.wait_ready()
        blob = f"{url}/v2/{built.app_repo}/blobs/{built.big}"
        assert _session().head(blob, timeout=10).status_code == 200
        entry = BundleReader(bundle).toc()["blobs/sha256/" + built.big.split(":", 1)[1]]
        with bundle.open("r+b") as fh:  # one byte, in place: same size, same inode
            fh.seek(entry.frame + 4096)
            byte = fh.read(1)
            fh.seek(entry.frame + 4096)
            fh.write(bytes([byte[0] ^ 1]))
        resp = _session().get(blob, timeout=10)
        assert resp.status_code == 500 and "changed since it was verified" in resp.text
    finally:
        assert s.stop() == 0


# ---- a real server ----------------------------------------------------------------------


def test_ten_concurrent_clients(served: Served, built: Built) -> None:
    repo = built.app_repo

    def pull(i: int) -> tuple[str, str]:
        s = _session()
        m = s.get(f"{served.url}/v2/{repo}/manifests/1.0", timeout=30)
        blob = s.get(f"{served.url}/v2/{repo}/blobs/{built.big}", timeout=60)
        return m.headers["Docker-Content-Digest"], hashlib.sha256(blob.content).hexdigest()

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(pull, range(10)))
    assert results == [(built.app, built.big.split(":", 1)[1])] * 10


def _raw_get(url: str, path: str, rcvbuf: int | None = None) -> socket.socket:
    """A GET by hand, so the test decides when (and whether) the body is read."""
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    sock = socket.socket()
    if rcvbuf:  # before connecting, so the window is small from the start
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect((host, int(port)))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    return sock


def test_a_client_hanging_up_mid_blob_leaves_the_server_serving(
    served: Served, built: Built
) -> None:
    path = f"/v2/{built.app_repo}/blobs/{built.big}"
    for _ in range(3):
        sock = _raw_get(served.url, path)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        sock.close()  # with most of the blob unsent
    blob = _session().get(served.url + path, timeout=30).content
    assert "sha256:" + hashlib.sha256(blob).hexdigest() == built.big
    assert served.proc.poll() is None


def test_connections_that_say_nothing_hold_no_worker(served: Served, built: Built) -> None:
    """More silent connections than serve has workers (32): each used to hold a worker for
    its 60 s timeout, and serve answered no one. They now wait in the selector, and are
    served when they do speak."""
    host, port = served.url.split("://", 1)[1].rsplit(":", 1)
    silent = [socket.create_connection((host, int(port)), timeout=10) for _ in range(48)]
    try:
        resp = _session().get(f"{served.url}/v2/", timeout=5)
        assert resp.status_code == 200
        for sock in silent[:3]:
            sock.sendall(f"GET /v2/ HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        for sock in silent:
            sock.close()
    assert served.proc.poll() is None


def test_tls_with_the_given_certificate(built: Built, tmp_path: Path) -> None:
    certs = write_certs(tmp_path / "certs")
    s = Served(
        built.bundle, "--key", built.pub, "--listen", "127.0.0.1:0",
        "--tls-cert", certs.cert_file, "--tls-key", certs.key_file,
    )  # fmt: skip
    try:
        url = s.wait_ready()
        assert url.startswith("https://")
        sess = _session()
        sess.verify = str(certs.ca_file)
        resp = sess.get(f"{url}/v2/{built.app_repo}/blobs/{built.big}", timeout=30)
        assert resp.status_code == 200 and len(resp.content) == built.big_size
        with pytest.raises(requests.exceptions.SSLError):
            _session().get(f"{url}/v2/", timeout=10)  # not trusted without the lab CA
    finally:
        assert s.stop() == 0


def test_mutual_tls_serves_only_clients_with_a_certificate_its_ca_signed(
    built: Built, tmp_path: Path
) -> None:
    """--tls-client-ca: a client without a certificate, or with one from another CA, ends
    at the handshake and serve carries on; the printed hosts.toml names where containerd
    keeps its client pair. A CA flag without TLS, or a CA file that is none: exit 2."""
    certs, other = write_certs(tmp_path / "certs"), write_certs(tmp_path / "other")
    tls = ["--tls-cert", certs.cert_file, "--tls-key", certs.key_file]
    s = Served(
        built.bundle, "--key", built.pub, "--listen", "127.0.0.1:0", *tls,
        "--tls-client-ca", certs.ca_file,
    )  # fmt: skip
    try:
        url = s.wait_ready()
        assert "  client = [[" in s.out() and "/client.cert" in s.out()
        sess = _session()
        sess.verify = str(certs.ca_file)
        for pair in (None, (str(other.client_cert), str(other.client_key))):
            sess.cert = pair
            with pytest.raises(requests.exceptions.RequestException):
                sess.get(f"{url}/v2/", timeout=10).raise_for_status()
        sess.cert = (str(certs.client_cert), str(certs.client_key))
        resp = sess.get(f"{url}/v2/{built.app_repo}/blobs/{built.big}", timeout=30)
        assert resp.status_code == 200 and len(resp.content) == built.big_size
        assert s.proc.poll() is None
    finally:
        assert s.stop() == 0
    assert "Traceback" not in s.stderr()
    for extra, says in [
        (["--tls-client-ca", certs.ca_file], "--tls-client-ca needs --tls-cert and --tls-key"),
        ([*tls, "--tls-client-ca", certs.key_file], "not a CA bundle"),
    ]:
        run = mirror("serve", built.bundle, "--key", built.pub, "--listen", "127.0.0.1:0", *extra)
        assert run.rc == 2 and says in run.err and len(run.err.splitlines()) == 1, run.err


def test_sigterm_lets_a_download_in_flight_finish_then_exits_0(
    built: Built, request: pytest.FixtureRequest
) -> None:
    s = Served(built.bundle, "--key", built.pub, "--listen", "127.0.0.1:0")
    url = s.wait_ready()
    request.addfinalizer(lambda: s.proc.kill() if s.proc.poll() is None else None)
    path = f"/v2/{built.app_repo}/blobs/{built.big}"
    sock = _raw_get(url, path, rcvbuf=64 * 1024)
    got = sock.recv(4096)
    time.sleep(0.3)  # the server is now blocked on a full socket, most of the blob unsent
    s.proc.send_signal(signal.SIGTERM)
    port = int(url.rsplit(":", 1)[1])
    deadline = time.monotonic() + 5
    while _listening(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _listening(port)  # no new connection once told to stop
    assert s.proc.poll() is None  # ... but still sending what it started
    while chunk := sock.recv(1 << 20):
        got += chunk
    sock.close()
    body = got.split(b"\r\n\r\n", 1)[1]
    assert "sha256:" + hashlib.sha256(body).hexdigest() == built.big
    assert s.proc.wait(30) == 0
    err = s.stderr()
    logged = [line for line in err.splitlines() if _CLF.match(line)]
    assert any(f'"GET {path} HTTP/1.1" 200 {built.big_size}' in line for line in logged), err


def _which(name: str) -> bool:
    return shutil.which(name) is not None


def test_export_from_a_registry_with_the_referrers_api(built: Built, tmp_path: Path) -> None:
    """Distribution 2.8 has no referrers API, so discovery's own path to it is driven here by
    `mirror serve`, which has one (and no fallback `sha256-<hex>` index tag): the SBOM can
    reach the second bundle only through the API, the `.sig` through its tag."""
    served = Served(built.bundle, "--key", built.pub, "--listen", "127.0.0.1:0")  # its own
    try:
        served.wait_ready()
        _export_again(served, built, tmp_path)
    finally:
        served.stop()


def _export_again(served: Served, built: Built, tmp_path: Path) -> None:
    spec = tmp_path / "again.yaml"
    spec.write_text(yaml.safe_dump({"name": "again", "registries": [
        {"name": "Served", "kind": "oci", "url": served.url, "basePath": "production",
         "providerType": "image", "repositories": ["images/app"]},
    ]}))  # fmt: skip
    bundle = tmp_path / "again.tar.zst"
    run = mirror("export", spec, "-o", bundle, "--cache-dir", tmp_path / "c", "--json")
    assert run.rc == 0, run.err
    manifest = parse_manifest(BundleReader(bundle).head()[0])
    kinds = sorted((r.artifact_type or "", r.tag or "") for r in manifest.referrers)
    sig_tag = "sha256-" + built.app.split(":", 1)[1] + ".sig"
    assert kinds == sorted([(SBOM, ""), (kinds[0][0] if kinds[0][1] else "", sig_tag)])
    assert {r.subject for r in manifest.referrers} == {built.app}
    first = {r.digest for r in built.manifest.referrers}
    assert {r.digest for r in manifest.referrers} == first  # the same bytes, found again
