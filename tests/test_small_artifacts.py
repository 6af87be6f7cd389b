"""Small artifacts at scale (issue 19, item 2): per-request waste the profile showed."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from faultproxy import MANIFEST, FaultProxy, mirror, write_spec

from mirror.deadlines import HeadDeadline
from mirror.lab.content import make_image, make_layer
from mirror.lab.seed import client_for, seed_artifact
from mirror.oci import mediatypes as mt
from mirror.oci.descriptor import descriptor_for, successors
from mirror.registry.http import _TrustStore
from mirror.registry.viarequests import Session


def test_plain_http_carries_no_ca_path_so_requests_skips_its_isdir(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With REQUESTS_CA_BUNDLE set (as on this box), requests stat()ed the CA path on every
    request, TLS or not: 5% of a 500-image import's samples. HTTPS still gets the path."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/env/ca.pem")
    s = Session(_TrustStore(), HeadDeadline(30))
    plain = s.merge_environment_settings("http://127.0.0.1:5000/v2/", None, None, True, None)
    assert plain["verify"] is True
    tls = s.merge_environment_settings("https://127.0.0.1:5000/v2/", None, None, True, None)
    assert tls["verify"] == "/env/ca.pem"


def _export_small(registry_factory: Any, work: Path) -> tuple[Path, str]:
    """Six small images in two repositories over one shared layer, exported unsigned."""
    src = registry_factory("anon")
    shared = make_layer("small/shared", 64 * 1024)
    client = client_for(src)
    for i in range(6):
        image = make_image(f"small {i}", layers=[shared, make_layer(f"small/{i}", 4096)])
        seed_artifact(client, f"production/small/{'ab'[i // 3]}", f"v{i % 3}", image)
    spec = write_spec(work / "small.yaml", src.url, repositories=["small/*"], provider=None)
    bundle = work / "small.tar.zst"
    run = mirror("export", spec, "-o", bundle, "--cache-dir", work / "cache", "--no-images")
    assert run.rc == 0, run.err
    return bundle, descriptor_for(shared, mt.OCI_LAYER_GZIP).digest


def _import(bundle: Path, url: str, work: Path) -> Any:
    run = mirror(
        "import", bundle, "--target", url, "--allow-unsigned", "--catalog", work / "c.json"
    )
    assert run.rc == 0, run.err
    return run


def _landed_whole(url: str) -> None:
    """Every tag the bundle carries reads back on the target, with every blob it names."""
    from mirror.registry.client import RegistryClient

    client = RegistryClient(url)
    for repo in ("production/small/a", "production/small/b"):
        assert {"v0", "v1", "v2"} <= set(client.list_tags(repo))
        for tag in ("v0", "v1", "v2"):
            desc, data = client.get_manifest(repo, tag)
            for child in successors(desc, data):
                with client.open_blob(repo, child) as stream:
                    assert len(stream.read()) == child.size


def test_first_import_into_empty_repositories_asks_nothing_it_knows(
    registry_factory: Any, tmp_path: Path
) -> None:
    """Into repositories the target's catalog does not list, no blob is HEADed one by one
    (each would be a 404), and each image's manifest goes in one PUT of its tag instead of a
    HEAD, a PUT by digest and a PUT of the tag. (A killed import's untagged blobs are listed,
    so a resumed import still skips them: test_import_e2e.py's kill test. A repository with
    no blob has no tag either, so no tag is read back before it is pushed.)"""
    bundle, shared = _export_small(registry_factory, tmp_path)
    target = registry_factory("anon")
    with FaultProxy.running(target.url) as proxy:
        _import(bundle, proxy.url, tmp_path)
        assert proxy.seen("HEAD", r"/blobs/") == 0
        assert proxy.seen("HEAD", MANIFEST) == 0
        assert proxy.seen("GET", MANIFEST) == 0  # no tag to check in a repository not there
        assert proxy.seen("PUT", r"/manifests/sha256:") == 0
        assert proxy.seen("PUT", MANIFEST) == 6
        assert proxy.seen("GET", r"/_catalog") == 1  # the census, once per import
        assert len(proxy.paths("PUT", shared)) == 1  # uploaded once, mounted into the other
    _landed_whole(target.url)


def test_a_repository_with_tags_is_still_asked_blob_by_blob(
    registry_factory: Any, tmp_path: Path
) -> None:
    """A tagged repository may hold what the bundle carries: its blobs are HEADed, and what
    it holds is not uploaded again."""
    bundle, shared = _export_small(registry_factory, tmp_path)
    target = registry_factory("anon")
    client = client_for(target)
    seed_artifact(client, "production/small/a", "old", make_image("old", layers=[
        make_layer("small/shared", 64 * 1024)]))  # fmt: skip
    with FaultProxy.running(target.url) as proxy:
        _import(bundle, proxy.url, tmp_path)
        assert proxy.seen("HEAD", r"/small/a/blobs/") > 0
        assert proxy.paths("PUT", shared) == []  # held by small/a, mounted into small/b
    _landed_whole(target.url)


@pytest.mark.parametrize("status", [403, 404])
def test_a_registry_that_will_not_list_is_asked_blob_by_blob(
    registry_factory: Any, tmp_path: Path, status: int
) -> None:
    """No census (the catalog refused, as some registries do for non-admins): the import
    falls back to a HEAD per blob and still lands everything."""
    bundle, _ = _export_small(registry_factory, tmp_path)
    target = registry_factory("anon")
    with FaultProxy.running(target.url) as proxy:
        proxy.add("status", status=status, method="GET", path=r"/_catalog")
        _import(bundle, proxy.url, tmp_path)
        assert proxy.seen("GET", r"/_catalog", status=status) == 1
        assert proxy.seen("HEAD", r"/blobs/") > 0
    _landed_whole(target.url)


def test_a_repository_this_run_wrote_is_asked_again(registry_factory: Any) -> None:
    """The census is taken before the first write. Once this run has written to a
    repository, a later round must read its tags again (a conflict there is real), not
    take the census's word that the repository is empty."""
    from mirror.registry.client import RegistryClient
    from mirror.stores.registry import Census, RegistryStore

    target = registry_factory("anon")
    client = RegistryClient(target.url)
    census = Census(client)
    store = RegistryStore(client, "fresh/repo", census=census)
    assert store.resolve("v1") is None  # census: an empty registry, nothing asked
    assert census.lacks("fresh/repo")
    image = make_image("written", layers=[make_layer("written", 512)])
    seed_artifact(client, "fresh/repo", "v1", image)  # as another writer would
    assert store.resolve("v1") is None  # still the census's word: written by someone else
    for desc, data in image.blobs:
        store.push(desc, io.BytesIO(data))
    store.push_reference(image.descriptor, io.BytesIO(image.manifest), "v2")
    assert not census.lacks("fresh/repo")
    found = store.resolve("v1")
    assert found is not None and found.digest == image.descriptor.digest
