"""The lab itself: real registries start, authenticate, verify TLS, stop cleanly, and hold
exactly the content the seed says it pushed."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import time
import zlib
from pathlib import Path

import pytest
import requests
from conftest import HelmRepo, RegistryFactory, SeededRegistry, require_registry
from cryptography import x509

from mirror.errors import OperationError
from mirror.formats.helm import chart_tag
from mirror.lab import INSTALL_HINT, LabRegistry, running_registry, start_registry
from mirror.lab import content as c
from mirror.lab import registry as lab_registry
from mirror.lab.benchdata import bench_big_layer, bench_content, unique_bytes
from mirror.lab.certs import write_certs
from mirror.lab.httpserver import serve_directory
from mirror.lab.seed import client_for, seed_artifact
from mirror.oci import mediatypes as mt


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes once reaped.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


# ---- registries -------------------------------------------------------------------------


def test_anonymous_registry_answers_v2(registry: LabRegistry) -> None:
    resp = requests.get(f"{registry.url}/v2/", timeout=5)
    assert resp.status_code == 200
    assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert registry.url == f"http://{registry.host}"
    assert registry.username is None and registry.password is None


def test_basic_registry_needs_the_right_password(basic_registry: LabRegistry) -> None:
    url = f"{basic_registry.url}/v2/"
    assert basic_registry.username and basic_registry.password
    assert requests.get(url, timeout=5).status_code == 401
    wrong = requests.get(url, auth=(basic_registry.username, "wrong"), timeout=5)
    assert wrong.status_code == 401
    good = requests.get(url, auth=(basic_registry.username, basic_registry.password), timeout=5)
    assert good.status_code == 200


def test_tls_registry_verifies_with_its_ca_only(tls_registry: LabRegistry) -> None:
    assert tls_registry.url.startswith("https://127.0.0.1:")
    assert tls_registry.ca_file is not None
    ok = requests.get(f"{tls_registry.url}/v2/", verify=str(tls_registry.ca_file), timeout=5)
    assert ok.status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{tls_registry.url}/v2/", timeout=5)
    with pytest.raises(requests.exceptions.SSLError):
        # Same name, another CA: trust must come from the CA that signed the server.
        other = write_certs(tls_registry.storage_dir.parent / "other-ca")
        requests.get(f"{tls_registry.url}/v2/", verify=str(other.ca_file), timeout=5)


def test_it_is_the_real_docker_registry(registry: LabRegistry) -> None:
    binary = require_registry()
    exe = os.path.realpath(f"/proc/{registry.pid}/exe")
    assert exe == os.path.realpath(binary)
    log = registry.log_path.read_text()
    assert f"listening on {registry.host}" in log
    assert "version=2." in log and "go.version=" in log


def test_stop_leaves_no_process_and_no_storage(tmp_path: Path) -> None:
    require_registry()
    reg = start_registry(tmp_path, flavour="basic")
    pid, storage = reg.pid, reg.storage_dir
    assert _pid_alive(pid) and storage.is_dir()
    reg.stop()
    assert not _pid_alive(pid)
    assert not storage.exists()
    reg.stop()  # idempotent
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{reg.url}/v2/", timeout=2)


def test_storage_passed_in_is_kept(tmp_path: Path) -> None:
    require_registry()
    keep = tmp_path / "keep"
    with running_registry(tmp_path, storage_dir=keep) as reg:
        pid = reg.pid
    assert not _pid_alive(pid)
    assert keep.is_dir()


def test_context_manager_stops_on_error(tmp_path: Path) -> None:
    require_registry()
    pids = []
    with pytest.raises(RuntimeError), running_registry(tmp_path) as reg:
        pids.append(reg.pid)
        raise RuntimeError("boom")
    assert pids and not _pid_alive(pids[0])


def test_source_and_target_side_by_side(registry_factory: RegistryFactory) -> None:
    source, target = registry_factory("anon"), registry_factory("tls")
    assert source.host != target.host
    assert source.storage_dir != target.storage_dir
    assert requests.get(f"{source.url}/v2/", timeout=5).status_code == 200
    assert requests.get(f"{target.url}/v2/", verify=str(target.ca_file), timeout=5).ok


def test_busy_port_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_registry()
    with running_registry(tmp_path) as first:
        busy = int(first.host.rsplit(":", 1)[1])
        ports = iter([busy, lab_registry.free_port()])
        monkeypatch.setattr(lab_registry, "free_port", lambda: next(ports))
        with running_registry(tmp_path) as second:
            assert second.host != first.host
            assert requests.get(f"{second.url}/v2/", timeout=5).status_code == 200


def test_missing_binary_is_one_friendly_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIRROR_DOCKER_REGISTRY", str(tmp_path / "nope"))
    assert lab_registry.registry_binary() is None
    with pytest.raises(OperationError) as err:
        start_registry(tmp_path)
    assert str(err.value) == INSTALL_HINT
    assert "apt-get install docker-registry" in str(err.value)


def test_missing_binary_fails_under_ci_and_skips_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIRROR_DOCKER_REGISTRY", str(tmp_path / "nope"))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install docker-registry"):
        require_registry()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="apt-get install docker-registry"):
        require_registry()


def test_a_registry_that_dies_reports_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "fake-registry"
    fake.write_text("#!/bin/sh\necho 'level=fatal msg=\"configuration error: bad\"'\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("MIRROR_DOCKER_REGISTRY", str(fake))
    started = time.monotonic()
    with pytest.raises(OperationError, match="configuration error: bad"):
        start_registry(tmp_path / "w")
    assert time.monotonic() - started < 5  # a dead process is noticed, not waited out


def test_unknown_flavour_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OperationError, match="flavour"):
        start_registry(tmp_path, flavour="kerberos")


# ---- certificates and static server ------------------------------------------------------


def test_server_cert_names_loopback_and_chains_to_ca(tmp_path: Path) -> None:
    files = write_certs(tmp_path)
    ca = x509.load_pem_x509_certificate(files.ca_file.read_bytes())
    leaf = x509.load_pem_x509_certificate(files.cert_file.read_bytes())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert leaf.issuer == ca.subject
    leaf.verify_directly_issued_by(ca)
    assert oct(files.key_file.stat().st_mode & 0o777) == "0o600"


def test_serve_directory_serves_files_and_stops(tmp_path: Path) -> None:
    (tmp_path / "index.yaml").write_text("apiVersion: v1\nentries: {}\n")
    with serve_directory(tmp_path) as url:
        assert url.startswith("http://127.0.0.1:")
        assert requests.get(f"{url}/index.yaml", timeout=5).text.startswith("apiVersion: v1")
        assert requests.get(f"{url}/missing.tgz", timeout=5).status_code == 404
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{url}/index.yaml", timeout=2)


def test_serve_directory_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError), serve_directory(tmp_path / "f"):
        pass


def test_helm_repo_serves_index_and_charts(helm_repo: HelmRepo) -> None:
    import yaml

    index = yaml.safe_load(requests.get(f"{helm_repo.url}/index.yaml", timeout=5).text)
    assert index["apiVersion"] == "v1" and index["entries"]
    versions = [v for entries in index["entries"].values() for v in entries]
    assert len(versions) == len(helm_repo.charts)
    for version in versions:
        url = version["urls"][0]
        url = url if "://" in url else f"{helm_repo.url}/{url}"
        body = requests.get(url, timeout=5).content
        assert hashlib.sha256(body).hexdigest() == version["digest"]


# ---- seeding -----------------------------------------------------------------------------


def test_seed_standard_round_trips_every_digest(seeded_registry: SeededRegistry) -> None:
    client = client_for(seeded_registry.registry)
    try:
        for item in seeded_registry.seeded:
            desc, _ = client.get_manifest(item.repository, item.tag)
            assert desc.digest == item.digest, item.ref
            assert desc.media_type == item.media_type, item.ref
    finally:
        client.close()


def test_seed_standard_covers_every_manifest_kind(seeded_registry: SeededRegistry) -> None:
    kinds = {s.media_type for s in seeded_registry.of_kind("image")}
    assert kinds == {mt.OCI_MANIFEST, mt.OCI_INDEX, mt.DOCKER_MANIFEST, mt.DOCKER_LIST}
    assert {s.tag for s in seeded_registry.seeded if s.repository.endswith("/web")} == {
        "1.0.0",
        "1.1.0",
        "2.0.0",
        "latest",
    }
    assert all(s.repository.startswith("production/") for s in seeded_registry.seeded)
    if c.corpus_dir() is not None:
        packs = seeded_registry.of_kind("pack")
        assert len(packs) == 3
        assert all("/spectro-packs/archive/" in s.repository for s in packs)


def test_seeded_charts_use_helm_tags(seeded_registry: SeededRegistry, corpus: Path) -> None:
    pytest.importorskip("mirror.formats.helm", reason="mirror.formats.helm not written yet")
    charts = seeded_registry.of_kind("chart")
    assert len(charts) == 3
    assert all(s.repository.startswith("production/charts/") and "+" not in s.tag for s in charts)
    assert chart_tag("1.2.3+build.4") == "1.2.3_build.4"


def test_seeded_pack_has_the_oras_push_shape(seeded_registry: SeededRegistry) -> None:
    packs = seeded_registry.of_kind("pack")
    if not packs:
        pytest.skip("corpus missing")
    client = client_for(seeded_registry.registry)
    try:
        _, data = client.get_manifest(packs[0].repository, packs[0].tag)
    finally:
        client.close()
    doc = json.loads(data)
    assert doc["config"]["mediaType"] == mt.UNKNOWN_CONFIG
    assert doc["config"]["size"] == 2  # "{}"
    [layer] = doc["layers"]
    assert layer["mediaType"] == mt.OCI_LAYER_TAR
    name = packs[0].repository.rsplit("/", 1)[1]
    assert layer["annotations"][mt.ANN_TITLE] == f"{name}-{packs[0].tag}.tar.gz"


def test_file_backed_blobs_are_pushed_from_disk(registry: LabRegistry, tmp_path: Path) -> None:
    repo, tag, art, _ = bench_big_layer(tmp_path / "cache", size_mb=3)
    assert any(isinstance(content, Path) for _, content in art.blobs)
    client = client_for(registry)
    try:
        seeded = seed_artifact(client, repo, tag, art)
        desc, _ = client.get_manifest(repo, tag)
        assert desc.digest == seeded.digest
        layer = json.loads(art.manifest)["layers"][0]
        resp = requests.get(f"{registry.url}/v2/{repo}/blobs/{layer['digest']}", timeout=30)
        assert "sha256:" + hashlib.sha256(resp.content).hexdigest() == layer["digest"]
    finally:
        client.close()


# ---- synthetic content -------------------------------------------------------------------


def test_layers_are_deterministic_gzipped_tars_of_random_bytes() -> None:
    layer = c.make_layer("seed-a", 100_000)
    assert layer == c.make_layer("seed-a", 100_000)
    assert layer != c.make_layer("seed-b", 100_000)
    assert layer[4:8] == b"\0\0\0\0"  # gzip mtime 0
    with tarfile.open(fileobj=io.BytesIO(layer), mode="r:gz") as tar:
        [member] = tar.getmembers()
        assert member.size == 100_000 and member.mtime == 0
    assert len(zlib.compress(gzip.decompress(layer), 6)) > 100_000  # incompressible


def test_file_layer_equals_memory_layer(tmp_path: Path) -> None:
    desc, info = c.make_layer_file(tmp_path / "l.tar.gz", "same", 300_000)
    data = (tmp_path / "l.tar.gz").read_bytes()
    assert data == c.make_layer("same", 300_000)
    assert desc.digest == info.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert info.diff_id == "sha256:" + hashlib.sha256(gzip.decompress(data)).hexdigest()


def test_image_config_names_diff_ids_and_platform() -> None:
    layers = [c.make_layer(f"x{i}", 1000) for i in range(2)]
    img = c.make_image("x", layers=layers, platform=("linux", "arm64"))
    doc = json.loads(img.manifest)
    blobs = {d.digest: b for d, b in img.blobs}
    config = json.loads(blobs[doc["config"]["digest"]])
    assert config["architecture"] == "arm64"
    assert config["rootfs"]["diff_ids"] == [
        "sha256:" + hashlib.sha256(gzip.decompress(b)).hexdigest() for b in layers
    ]
    assert [layer["digest"] for layer in doc["layers"]] == [
        "sha256:" + hashlib.sha256(b).hexdigest() for b in layers
    ]


def test_docker_image_uses_docker_media_types() -> None:
    img = c.make_docker_image("d", layers=[c.make_layer("d", 1000)])
    doc = json.loads(img.manifest)
    assert img.media_type == doc["mediaType"] == mt.DOCKER_MANIFEST
    assert doc["config"]["mediaType"] == mt.DOCKER_CONFIG
    assert doc["layers"][0]["mediaType"] == c.DOCKER_LAYER


def test_index_lists_both_platforms_children_first() -> None:
    for docker, media in ((False, mt.OCI_INDEX), (True, mt.DOCKER_LIST)):
        index = c.multiarch("m", 1000, docker=docker)
        doc = json.loads(index.manifest)
        assert index.media_type == doc["mediaType"] == media
        platforms = [(m["platform"]["os"], m["platform"]["architecture"]) for m in doc["manifests"]]
        assert platforms == [("linux", "amd64"), ("linux", "arm64")]
        order = [d.digest for d, _ in index.blobs]
        for child in doc["manifests"]:
            child_doc = json.loads(dict((d.digest, b) for d, b in index.blobs)[child["digest"]])
            assert order.index(child_doc["config"]["digest"]) < order.index(child["digest"])


def test_image_family_shares_base_and_pair_layers() -> None:
    family = c.image_family("f", 4, base_size=1000, mid_size=1000, top_size=1000)
    layers = [json.loads(art.manifest)["layers"] for _, art in family]
    digests = [[layer["digest"] for layer in ls] for ls in layers]
    assert len({d[0] for d in digests}) == 1
    assert digests[0][1] == digests[1][1] != digests[2][1] == digests[3][1]
    assert len({d[2] for d in digests}) == 4


def test_bench_content_size_and_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    items = bench_content(cache, size_mb=4)
    images = [i for i in items if i[3] == "image"]
    assert len(images) == 13  # 12 images + the multi-arch index
    assert unique_bytes(items) >= 4 * 1024 * 1024
    assert any(json.loads(i[2].manifest).get("manifests") for i in images)
    stamps = {p: p.stat().st_mtime_ns for p in cache.iterdir()}
    again = bench_content(cache, size_mb=4)
    assert [i[2].manifest for i in again] == [i[2].manifest for i in items]
    assert {p: p.stat().st_mtime_ns for p in cache.iterdir()} == stamps  # reused, not rebuilt


def test_corpus_packs_load_and_skip_bad_folders(corpus: Path, tmp_path: Path) -> None:
    from mirror.lab.corpus import load_corpus_packs

    work = tmp_path / "corpus"
    work.mkdir()
    good = sorted(p for p in corpus.iterdir() if (p / "pack.json").is_file())[0]
    import shutil

    shutil.copytree(good, work / good.name)
    (work / "broken").mkdir()
    (work / "broken" / "pack.json").write_text("{not json")
    result = load_corpus_packs(work)
    assert len(result.packs) == 1 and [p.name for p, _ in result.skipped] == ["broken"]
    name, version, art = result.packs[0]
    assert art.media_type == mt.OCI_MANIFEST and name and version


# ---- token auth --------------------------------------------------------------------------


def _token(reg: LabRegistry, scope: str, auth: tuple[str, str] | None = None) -> requests.Response:
    assert reg.token_server is not None
    params = {"service": reg.token_server.service, "scope": scope}
    return requests.get(reg.token_server.realm, params=params, auth=auth, timeout=5)


def test_token_registry_scopes_tokens_per_repository(token_registry: LabRegistry) -> None:
    reg = token_registry
    assert reg.username and reg.password and reg.token_server
    challenge = requests.get(f"{reg.url}/v2/", timeout=5)
    assert challenge.status_code == 401
    assert challenge.headers["WWW-Authenticate"].startswith(
        f'Bearer realm="{reg.token_server.realm}"'
    )
    resp = _token(reg, "repository:team/a:pull,push", (reg.username, reg.password))
    headers = {"Authorization": f"Bearer {resp.json()['token']}"}
    assert resp.json()["expires_in"] > 0
    own = requests.get(f"{reg.url}/v2/team/a/tags/list", headers=headers, timeout=5)
    assert own.status_code == 404  # authorized; the repository simply isn't there yet
    other = requests.get(f"{reg.url}/v2/team/b/tags/list", headers=headers, timeout=5)
    assert other.status_code == 401
    assert 'error="insufficient_scope"' in other.headers["WWW-Authenticate"]
    assert reg.token_server.grants[-1].scopes == ("repository:team/a:pull,push",)


def test_token_service_refuses_bad_logins(token_registry: LabRegistry) -> None:
    assert token_registry.username
    assert _token(token_registry, "repository:x:pull").status_code == 401
    bad = _token(token_registry, "repository:x:pull", (token_registry.username, "wrong"))
    assert bad.status_code == 401
    assert token_registry.token_server and not token_registry.token_server.grants


def test_registry_rejects_a_token_from_another_signer(token_registry: LabRegistry) -> None:
    import datetime as dt

    from cryptography.hazmat.primitives import serialization

    from mirror.lab.certs import make_ca, make_leaf_cert
    from mirror.lab.tokenserver import ISSUER, SERVICE, sign_jwt

    ca_key, ca_cert = make_ca(dt.datetime.now(dt.UTC))
    key, cert = make_leaf_cert(ca_key, ca_cert, "impostor")
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "mirror",
        "aud": SERVICE,
        "exp": now + 60,
        "nbf": now - 10,
        "iat": now,
        "jti": "x",
        "access": [{"type": "repository", "name": "team/a", "actions": ["pull"]}],
    }
    forged = sign_jwt(claims, key, cert.public_bytes(serialization.Encoding.DER))
    resp = requests.get(
        f"{token_registry.url}/v2/team/a/tags/list",
        headers={"Authorization": f"Bearer {forged}"},
        timeout=5,
    )
    assert resp.status_code == 401


def test_client_seeds_through_token_auth(token_registry: LabRegistry) -> None:
    client = client_for(token_registry)
    try:
        repo, tag = "production/images/tok", "1.0.0"
        art = c.multiarch("tok", 1000)
        seeded = seed_artifact(client, repo, tag, art)
        assert client.get_manifest(repo, tag)[0].digest == seeded.digest
    finally:
        client.close()
    assert token_registry.token_server
    assert any(
        "repository:production/images/tok" in s
        for g in token_registry.token_server.grants
        for s in g.scopes
    )


def test_token_flavour_stop_also_stops_the_token_service(tmp_path: Path) -> None:
    require_registry()
    reg = start_registry(tmp_path, flavour="token")
    assert reg.token_server is not None
    realm, pid = reg.token_server.realm, reg.pid
    assert requests.get(realm, timeout=5).status_code == 401
    reg.stop()
    assert not _pid_alive(pid)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(realm, timeout=2)
