"""The registry client: the oras-py 0.2.43 traps, proven fixed.

Real registries (token auth, chunked uploads, mounts) where we can run them; `responses`
for faults a real registry won't produce on demand (429, 503, redirects, bad bytes).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import responses

from mirror.errors import AuthError, IntegrityError, NotFoundError, RegistryError
from mirror.lab.registry import LabRegistry
from mirror.oci import mediatypes as mt
from mirror.oci.artifact import OciArtifact, single_layer_artifact
from mirror.oci.descriptor import descriptor_for
from mirror.registry.auth import Credentials, parse_challenge
from mirror.registry.client import RegistryClient


def _artifact(size: int = 3000) -> OciArtifact:
    return single_layer_artifact(
        b"{}", mt.UNKNOWN_CONFIG, os.urandom(size), mt.OCI_LAYER_TAR, {mt.ANN_TITLE: "x.tar.gz"}
    )


def _push(client: RegistryClient, repo: str, tag: str, art: OciArtifact) -> None:
    for desc, data in art.blobs:
        client.push_blob(repo, desc, io.BytesIO(data))
    client.put_manifest(repo, tag, art.manifest, art.media_type)


# ---- against real registries -------------------------------------------------------------


def test_token_scopes_per_repository_and_push_after_head(token_registry: LabRegistry) -> None:
    """oras-py re-sends one token after insufficient_scope; we fetch one per scope."""
    reg = token_registry
    assert reg.username and reg.password and reg.token_server
    client = RegistryClient(reg.url, credentials=Credentials(reg.username, reg.password))
    a, b = _artifact(), _artifact()
    _push(client, "team/a", "1", a)
    assert client.blob_exists("team/a", a.blobs[1][0])  # a HEAD (pull scope) ...
    _push(client, "team/b", "1", b)  # ... then a push to another repository
    assert client.get_manifest("team/b", "1")[1] == b.manifest
    assert client.get_manifest("team/a", "1")[1] == a.manifest
    scopes = {s for g in reg.token_server.grants for s in g.scopes}
    assert any("team/a" in s for s in scopes) and any("team/b" in s for s in scopes)


def test_token_registry_refuses_wrong_password(token_registry: LabRegistry) -> None:
    assert token_registry.username
    client = RegistryClient(token_registry.url, credentials=Credentials("mirror", "nope"))
    with pytest.raises(AuthError) as err:
        client.list_tags("team/a")
    assert "nope" not in str(err.value)


def test_chunked_upload_and_mount(registry: LabRegistry) -> None:
    client = RegistryClient(registry.url, monolithic_max=1000, chunk_size=700)
    art = _artifact(5000)
    _push(client, "chunk/a", "1", art)
    layer = art.blobs[1][0]
    with client.open_blob("chunk/a", layer) as stream:
        assert stream.read() == art.blobs[1][1]
    assert client.mount_blob("chunk/b", layer, "chunk/a")
    assert client.blob_exists("chunk/b", layer)
    assert not client.mount_blob("chunk/c", descriptor_for(b"absent", "x"), "chunk/a")


def test_missing_things_are_not_found(registry: LabRegistry) -> None:
    client = RegistryClient(registry.url)
    with pytest.raises(NotFoundError):
        client.get_manifest("no/such", "1.0")
    assert client.resolve("no/such", "1.0") is None


def test_tls_needs_the_ca(tls_registry: LabRegistry) -> None:
    with pytest.raises(RegistryError, match="--ca-file"):
        RegistryClient(tls_registry.url).ping()
    RegistryClient(tls_registry.url, ca_file=str(tls_registry.ca_file)).ping()


# ---- faults, with responses ---------------------------------------------------------------

BASE = "https://reg.example"


@responses.activate
def test_retries_429_and_503_then_succeeds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mirror.registry.retry.time.sleep", lambda s: None)
    url = f"{BASE}/v2/r/tags/list?n=1000"
    responses.get(url, status=429, headers={"Retry-After": "1"})
    responses.get(url, status=503)
    responses.get(url, json={"tags": ["a"]})
    assert RegistryClient(BASE).list_tags("r") == ["a"]
    assert len(responses.calls) == 3


@responses.activate
def test_gives_up_after_bounded_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mirror.registry.retry.time.sleep", lambda s: None)
    responses.get(f"{BASE}/v2/r/tags/list?n=1000", status=502)
    with pytest.raises(RegistryError, match="502"):
        RegistryClient(BASE).list_tags("r")
    assert len(responses.calls) == 5


@responses.activate
def test_tag_pagination_follows_link() -> None:
    responses.get(
        f"{BASE}/v2/r/tags/list?n=1000",
        json={"tags": ["a"]},
        headers={"Link": '</v2/r/tags/list?n=1000&last=a>; rel="next"'},
    )
    responses.get(f"{BASE}/v2/r/tags/list?n=1000&last=a", json={"tags": ["b"]})
    assert RegistryClient(BASE).list_tags("r") == ["a", "b"]


@responses.activate
def test_manifest_digest_is_checked_against_header() -> None:
    body = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
    responses.get(
        f"{BASE}/v2/r/manifests/1",
        body=body,
        headers={"Content-Type": mt.OCI_MANIFEST, "Docker-Content-Digest": "sha256:" + "0" * 64},
    )
    with pytest.raises(IntegrityError):
        RegistryClient(BASE).get_manifest("r", "1")


@responses.activate
def test_unknown_manifest_media_type_is_refused() -> None:
    responses.get(
        f"{BASE}/v2/r/manifests/1",
        body=b'{"schemaVersion":1,"name":"r"}',
        headers={"Content-Type": "application/vnd.docker.distribution.manifest.v1+prettyjws"},
    )
    with pytest.raises(RegistryError, match="unsupported manifest media type"):
        RegistryClient(BASE).get_manifest("r", "1")


@responses.activate
def test_blob_with_wrong_bytes_fails_as_it_streams() -> None:
    desc = descriptor_for(b"good bytes", "application/octet-stream")
    responses.get(f"{BASE}/v2/r/blobs/{desc.digest}", body=b"evil bytes")
    client = RegistryClient(BASE)
    with pytest.raises(IntegrityError, match=desc.digest), client.open_blob("r", desc) as s:
        s.read()


@responses.activate
def test_overlong_blob_fails() -> None:
    desc = descriptor_for(b"good", "application/octet-stream")
    responses.get(f"{BASE}/v2/r/blobs/{desc.digest}", body=b"good and more")
    client = RegistryClient(BASE)
    with pytest.raises(IntegrityError), client.open_blob("r", desc) as s:
        while s.read(2):
            pass


@responses.activate
def test_upload_redirect_to_another_host_is_refused() -> None:
    responses.head(f"{BASE}/v2/r/blobs/sha256:" + "a" * 64, status=404)
    responses.post(
        f"{BASE}/v2/r/blobs/uploads/",
        status=202,
        headers={"Location": "https://evil.example/upload/1"},
    )
    desc = descriptor_for(b"x", "application/octet-stream")
    responses.head(f"{BASE}/v2/r/blobs/{desc.digest}", status=404)
    with pytest.raises(RegistryError, match="another host"):
        RegistryClient(BASE).push_blob("r", desc, io.BytesIO(b"x"))


@responses.activate
def test_401_without_credentials_says_so_and_leaks_nothing() -> None:
    responses.get(f"{BASE}/v2/r/tags/list?n=1000", status=401)
    with pytest.raises(AuthError, match="no credentials"):
        RegistryClient(BASE).list_tags("r")


def test_challenge_parsing() -> None:
    c = parse_challenge(
        'Bearer realm="https://auth/token",service="reg",scope="repository:a:pull",'
        'error="insufficient_scope"'
    )
    assert c.scheme == "bearer" and c.insufficient_scope
    assert c.params["scope"] == "repository:a:pull"


def test_unreachable_registry_is_one_clear_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RegistryError, match=f"cannot reach 127.0.0.1:{port}") as err:
        RegistryClient(f"http://127.0.0.1:{port}").ping()
    assert "\n" not in str(err.value)


@responses.activate
def test_target_tag_that_cannot_be_read_is_named_but_marked_for_repair() -> None:
    from mirror.stores.registry import RegistryStore

    digest = "sha256:" + "ab" * 32
    responses.get(f"{BASE}/v2/r/manifests/t", status=500)
    responses.head(
        f"{BASE}/v2/r/manifests/t",
        headers={"Docker-Content-Digest": digest, "Content-Type": mt.OCI_MANIFEST},
    )
    target = RegistryStore(RegistryClient(BASE), "r")
    found = target.resolve("t")
    assert found is not None and found.digest == digest
    assert not target.readable(found)
    responses.get(f"{BASE}/v2/r/manifests/gone", status=404)
    assert target.resolve("gone") is None


def test_environment_is_read_once_per_host_and_still_honoured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Proxies, no_proxy and REQUESTS_CA_BUNDLE work as in plain requests, looked up once."""
    from mirror.registry.http import _Session

    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "inside.invalid")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/env/ca.pem")
    s = _Session()
    outside = s.merge_environment_settings("https://reg.invalid/v2/", None, None, True, None)
    assert outside["proxies"].get("https") == "http://proxy.invalid:3128"
    assert outside["verify"] == "/env/ca.pem"
    inside = s.merge_environment_settings("https://inside.invalid/v2/x", None, None, True, None)
    assert "https" not in inside["proxies"]
    pinned = s.merge_environment_settings("https://reg.invalid/v2/", None, None, "/ca.pem", None)
    assert pinned["verify"] == "/ca.pem"  # --ca-file beats the environment, as before

    import requests

    # A redirect from a registry inside NO_PROXY to storage outside it takes the proxy.
    hop = requests.Request("GET", "https://storage.invalid/blob").prepare()
    assert s.rebuild_proxies(hop, {}).get("https") == "http://proxy.invalid:3128"
    back = requests.Request("GET", "https://inside.invalid/blob").prepare()
    assert "https" not in s.rebuild_proxies(back, outside["proxies"])
    assert s.trust_env is False  # so requests never looks for ~/.netrc per request

    monkeypatch.setenv("HTTPS_PROXY", "http://elsewhere.invalid:1")
    again = s.merge_environment_settings("https://reg.invalid/v2/other", None, None, True, None)
    assert again["proxies"].get("https") == "http://proxy.invalid:3128"  # cached per host


def test_a_conditional_get_answered_304_returns_what_was_known_and_keeps_the_connection(
    registry: LabRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    client = RegistryClient(registry.url)
    art = _artifact()
    _push(client, "lab/cond", "1.0", art)
    known = client.get_manifest("lab/cond", "1.0")
    connects: list[object] = []
    real_connect = socket.socket.connect
    monkeypatch.setattr(
        socket.socket,
        "connect",
        lambda self, addr: connects.append(addr) or real_connect(self, addr),
    )
    for _ in range(5):
        assert client.get_manifest("lab/cond", "1.0", known) == known
    assert connects == []  # a 304 without its (empty) body read would close the connection
    other = _artifact()
    _push(client, "lab/cond", "1.0", other)  # the tag moves: a 200 with the new bytes
    desc, data = client.get_manifest("lab/cond", "1.0", known)
    assert desc.digest != known[0].digest and data == other.manifest


def test_the_read_timeout_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """MIRROR_READ_TIMEOUT bounds a stall (docs/SECURITY.md); nonsense is a usage error."""
    from mirror.errors import UsageError

    monkeypatch.setenv("MIRROR_READ_TIMEOUT", "2.5")
    assert RegistryClient("http://127.0.0.1:9").http._timeout == (10.0, 2.5)
    assert RegistryClient("http://127.0.0.1:9", timeout=7).http._timeout == (10.0, 7)
    monkeypatch.delenv("MIRROR_READ_TIMEOUT")
    assert RegistryClient("http://127.0.0.1:9").http._timeout == (10.0, 120.0)
    for bad in ("0", "-1", "soon"):
        monkeypatch.setenv("MIRROR_READ_TIMEOUT", bad)
        with pytest.raises(UsageError, match="MIRROR_READ_TIMEOUT"):
            RegistryClient("http://127.0.0.1:9")
