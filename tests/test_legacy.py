"""The legacy pack registry source against its loopback test server, and its catalog parser."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mirror.discovery import legacy, packdir
from mirror.discovery.interface import Found, Selection
from mirror.discovery.legacy import LegacyEntry, parse_catalog
from mirror.errors import AuthError, NotFoundError, RegistryError, UsageError
from mirror.lab.legacyserver import catalog_names, catalog_packs, serve_legacy
from mirror.oci import mediatypes as mt
from mirror.oci.artifact import OciArtifact, canonical_json, single_layer_artifact
from mirror.oci.descriptor import descriptor_for, digest_of, successors
from mirror.spec import AuthEnv, Registry

PICK = ("antrea-1.9.0", "argocd-3.3.5", "crossplane-1.16", "crossplane-1.20.0")
USER, PASSWORD = "spectro", "legacy-secret"


@pytest.fixture(scope="module")
def packs(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> Path:
    root = tmp_path_factory.mktemp("legacy") / "packs"
    for name in PICK:
        shutil.copytree(corpus / name, root / name)
    return root


@pytest.fixture
def creds(monkeypatch: pytest.MonkeyPatch) -> AuthEnv:
    monkeypatch.setenv("LEGACY_USER", USER)
    monkeypatch.setenv("LEGACY_PASS", PASSWORD)
    return AuthEnv("LEGACY_USER", "LEGACY_PASS")


def reg_at(url: str, auth: AuthEnv | None, **kw: Any) -> Registry:
    return Registry(name="Old Packs", kind="pack", url=url, auth=auth, **kw)


def fetch_all(found: Found) -> int:
    """Every blob of the artifact through its source; digests checked here, not trusted."""
    manifest = found.source.fetch_manifest(found.desc)
    assert digest_of(manifest) == found.desc.digest
    blobs = successors(found.desc, manifest)
    assert len(blobs) == 2  # config and the one pack archive
    for blob in blobs:
        with found.source.fetch(blob) as stream:
            data = b"".join(iter(lambda: stream.read(65536), b""))
        assert (digest_of(data), len(data)) == (blob.digest, blob.size)
    return len(blobs)


def by_ref(sel: Selection) -> dict[str, str]:
    return {f.ref: f.desc.digest for f in sel.found}


@pytest.mark.parametrize("catalog", [catalog_names, catalog_packs])
def test_round_trip(packs: Path, creds: AuthEnv, catalog: Any) -> None:
    with serve_legacy(packs, catalog=catalog) as url:
        sel = legacy.discover(reg_at(url, creds))
        assert sel.notes == []
        assert sorted(f.ref for f in sel.found) == [
            "old-packs/spectro-packs/archive/antrea:1.9.0",
            "old-packs/spectro-packs/archive/argo-cd:3.3.5",
            "old-packs/spectro-packs/archive/crossplane:1.16.0",
            "old-packs/spectro-packs/archive/crossplane:1.20.0",
        ]
        assert {f.kind for f in sel.found} == {"pack"}
        assert sum(fetch_all(f) for f in sel.found) == 8
    # Already in the OCI pack form: copied byte for byte, so a pack folder of the same
    # packs under the same name gives the very same digests.
    same = packdir.discover(Registry(name="Old Packs", kind="pack", path=str(packs)))
    assert by_ref(sel) == by_ref(same)


def docker_wrap(archive: bytes, filename: str) -> OciArtifact:
    """A server that stores packs as Docker image manifests, not the ORAS pack form."""
    del filename
    config = canonical_json({"architecture": "amd64", "os": "linux"})
    cfg = descriptor_for(config, mt.DOCKER_CONFIG)
    layer = descriptor_for(archive, "application/vnd.docker.image.rootfs.diff.tar.gzip")
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": cfg.to_json(),
        "layers": [layer.to_json()],
    }
    return OciArtifact(canonical_json(doc), mt.DOCKER_MANIFEST, ((cfg, config), (layer, archive)))


def test_other_forms_are_rewrapped_keeping_the_archive(packs: Path, creds: AuthEnv) -> None:
    with serve_legacy(packs, wrap=docker_wrap) as url:
        sel = legacy.discover(reg_at(url, creds))
    assert len(sel.found) == len(PICK)
    assert all("re-wrapped as an OCI pack" in n for n in sel.notes) and len(sel.notes) == len(PICK)
    for f in sel.found:
        fetch_all(f)
        doc = f.source.fetch_manifest(f.desc)
        assert b'"mediaType":"application/vnd.unknown.config.v1+json"' in doc
    same = packdir.discover(Registry(name="Old Packs", kind="pack", path=str(packs)))
    assert by_ref(sel) == by_ref(same)


def test_a_layer_without_pack_json_is_refused(packs: Path, creds: AuthEnv) -> None:
    def not_a_pack(archive: bytes, filename: str) -> OciArtifact:
        return single_layer_artifact(b"{}", mt.OCI_CONFIG, b"not a tarball", mt.OCI_LAYER_GZIP)

    with serve_legacy(packs, wrap=not_a_pack) as url, pytest.raises(RegistryError) as err:
        legacy.discover(reg_at(url, creds))
    assert "holds no readable pack.json" in str(err.value)
    assert "docs/LEGACY-PACK-REGISTRY.md" in str(err.value)


def test_filters_select_names_and_versions(packs: Path, creds: AuthEnv) -> None:
    with serve_legacy(packs) as url:
        sel = legacy.discover(reg_at(url, creds, repositories=("crossplane",)))
        assert sorted(f.tag for f in sel.found) == ["1.16.0", "1.20.0"]
        with pytest.raises(UsageError, match="no pack name matches"):
            legacy.discover(reg_at(url, creds, repositories=("nginx",)))


# ---- failures ------------------------------------------------------------------------


def test_wrong_credentials(packs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEGACY_USER", USER)
    monkeypatch.setenv("LEGACY_PASS", "wrong-password-123")
    with serve_legacy(packs) as url, pytest.raises(AuthError) as err:
        legacy.discover(reg_at(url, AuthEnv("LEGACY_USER", "LEGACY_PASS")))
    assert "401" in str(err.value)
    assert "wrong-password-123" not in str(err.value)


def test_no_credentials(packs: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))  # no config.json: nothing to fall back on
    with serve_legacy(packs) as url, pytest.raises(AuthError, match="no credentials configured"):
        legacy.discover(reg_at(url, None))


def test_the_spec_s_unset_auth_variables_are_named(
    packs: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The spec names variables that are not set: the 401 says which, not only 'no
    credentials configured' (the contract audit, stop 31)."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.delenv("LEGACY_USER", raising=False)
    monkeypatch.delenv("LEGACY_PASS", raising=False)
    with serve_legacy(packs) as url, pytest.raises(AuthError) as err:
        legacy.discover(reg_at(url, AuthEnv("LEGACY_USER", "LEGACY_PASS")))
    assert "$LEGACY_USER and $LEGACY_PASS, which the spec's auth names, are not set" in str(
        err.value
    )


def test_health_failure(packs: Path, creds: AuthEnv) -> None:
    with serve_legacy(packs, healthy=False) as url, pytest.raises(RegistryError) as err:
        legacy.discover(reg_at(url, creds))
    assert "health check failed (503, status DOWN)" in str(err.value)
    assert "legacy pack registry 127.0.0.1:" in str(err.value)


def test_unreachable_server(creds: AuthEnv) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RegistryError, match=f"cannot reach 127.0.0.1:{port}"):
        legacy.discover(reg_at(f"http://127.0.0.1:{port}", creds))


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ({"weird": 1}, "unrecognised catalog, keys ['weird']"),
        ({"packs": "nginx"}, "unrecognised catalog, a str"),
        ([42], "unrecognised catalog item '42'"),
        ([{"version": "1.0.0"}], "unrecognised catalog item"),
    ],
)
def test_unknown_catalog_shape(packs: Path, creds: AuthEnv, shape: Any, message: str) -> None:
    with serve_legacy(packs, catalog=lambda _: shape) as url, pytest.raises(RegistryError) as err:
        legacy.discover(reg_at(url, creds))
    assert message in str(err.value)
    assert "/v1/_catalog" in str(err.value) and "LEGACY-PACK-REGISTRY.md" in str(err.value)


def test_catalog_version_the_server_does_not_serve(packs: Path, creds: AuthEnv) -> None:
    ghost = {"packs": [{"name": "antrea", "version": "9.9.9"}]}
    with serve_legacy(packs, catalog=lambda _: ghost) as url, pytest.raises(NotFoundError):
        legacy.discover(reg_at(url, creds))


def test_colliding_pack_names(packs: Path, creds: AuthEnv) -> None:
    two = {"repositories": ["a/antrea", "b/antrea"]}
    with serve_legacy(packs, catalog=lambda _: two) as url, pytest.raises(RegistryError) as err:
        legacy.discover(reg_at(url, creds))
    assert "a/antrea and b/antrea would both land as antrea" in str(err.value)


# ---- the catalog parser, alone -------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "want"),
    [
        ({"repositories": ["nginx", "redis"]}, [("nginx", ()), ("redis", ())]),
        ({"repositories": None}, []),
        (["nginx:1.0.0", "nginx:1.1.0"], [("nginx", ("1.0.0", "1.1.0"))]),
        (["packs/nginx"], [("packs/nginx", ())]),
        ({"packs": [{"name": "nginx", "version": "1.0.0"}]}, [("nginx", ("1.0.0",))]),
        ({"items": [{"packName": "nginx", "tags": ["1", "2"]}]}, [("nginx", ("1", "2"))]),
        (
            {"packs": [{"name": "nginx", "versions": [{"version": "1.0"}, {"tag": "2.0"}]}]},
            [("nginx", ("1.0", "2.0"))],
        ),
        ({"repositories": {"nginx": ["1.0"], "redis": []}}, [("nginx", ("1.0",)), ("redis", ())]),
        (["nginx", "nginx:1.0.0"], [("nginx", ())]),  # one entry asks for all: all it is
    ],
)
def test_parse_catalog_shapes(doc: Any, want: list[tuple[str, tuple[str, ...]]]) -> None:
    assert parse_catalog(doc, "t") == [LegacyEntry(r, v) for r, v in want]


@pytest.mark.parametrize(
    "doc",
    [["../../etc"], ["Nginx"], ["nginx/"], [{"name": "nginx", "version": "1.0.0:2"}],
     {"packs": [{"name": "nginx", "versions": ["../x"]}]}],
)  # fmt: skip
def test_listed_names_that_are_no_names_never_reach_a_url(doc: Any) -> None:
    """`../../etc` in /v1/_catalog became GET /etc/tags/list, outside /v2/, sent again
    with the server's credentials after its 401."""
    from mirror.errors import RegistryError

    with pytest.raises(RegistryError, match="the catalog lists"):
        parse_catalog(doc, "t")


def test_catalog_entry_name_is_the_last_segment() -> None:
    assert LegacyEntry("spectro-packs/archive/nginx").name == "nginx"


@pytest.fixture(autouse=True)
def _no_docker_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Tests must not pick up the runner's Docker credentials."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    yield


def test_an_oci_registry_client_names_the_unset_variables_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mirror.discovery.select import client_for
    from mirror.registry.http import LOGIN_HINT

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.delenv("OCI_USER", raising=False)
    monkeypatch.delenv("OCI_PASS", raising=False)
    named = Registry(
        name="r", kind="oci", url="http://127.0.0.1:1", auth=AuthEnv("OCI_USER", "OCI_PASS")
    )
    assert client_for(named).http.login_hint.startswith("$OCI_USER and $OCI_PASS")
    plain = Registry(name="r", kind="oci", url="http://127.0.0.1:1")
    assert client_for(plain).http.login_hint == LOGIN_HINT
