"""The registry client: the oras-py 0.2.43 traps, proven fixed.

Real registries (token auth, chunked uploads, mounts, pagination) where we can run them,
behind the fault proxy (tests/faultproxy.py) for what a registry does not do on demand (429,
503, an overlong body, an upload sent elsewhere); `responses` only for pure byte faults.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import responses
from faultproxy import UPLOAD, FaultProxy, Reg

from mirror.errors import (
    AuthError,
    IntegrityError,
    NotFoundError,
    OperationError,
    RegistryError,
)
from mirror.lab.registry import LabRegistry
from mirror.oci import mediatypes as mt
from mirror.oci.artifact import OciArtifact, single_layer_artifact
from mirror.oci.descriptor import descriptor_for
from mirror.registry.auth import Credentials, parse_challenge
from mirror.registry.client import RegistryClient
from mirror.registry.retry import RetriesExhausted
from mirror.settings import Net, Settings


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


def test_a_blob_bigger_than_the_body_cap_is_found_by_its_head(
    registry: LabRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A HEAD's Content-Length is the size of the body a GET would bring, not of its own:
    every answer read whole is bounded (BODY_CAP), and a HEAD of a 17 MiB blob was refused
    as "over the 16 MiB cap", so an import that found its big layers already on the target
    (a second run after an interruption) failed. The 20 GB volume run found it."""
    from mirror.registry import http

    monkeypatch.setattr(http, "BODY_CAP", 64 << 10)  # the same rule, at test sizes
    client = RegistryClient(registry.url)
    art = _artifact(200 << 10)
    _push(client, "big/a", "1", art)
    layer = art.blobs[1][0]
    assert layer.size > http.BODY_CAP
    assert client.blob_exists("big/a", layer)
    assert not client.blob_exists("big/a", descriptor_for(b"absent", "x"))
    with pytest.raises(OperationError, match="over the 65536-byte cap"):  # a GET's still is
        client.http.request("GET", f"/v2/big/a/blobs/{layer.digest}", what="blob")


def test_a_request_that_succeeds_redacts_nothing(
    registry: LabRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The words of an error are made only for an error: redacting each request's URL
    took ~70 us, on all five requests per image of an import of small images."""
    from mirror.registry import http

    said: list[str] = []
    monkeypatch.setattr(http, "redact", lambda text: said.append(text) or text)
    client = RegistryClient(registry.url)
    _push(client, "quiet/a", "1", _artifact(100))
    assert client.list_tags("quiet/a") == ["1"]
    assert said == []


def test_missing_things_are_not_found(registry: LabRegistry) -> None:
    client = RegistryClient(registry.url)
    with pytest.raises(NotFoundError):
        client.get_manifest("no/such", "1.0")
    assert client.resolve("no/such", "1.0") is None


def test_tls_needs_the_ca(tls_registry: LabRegistry) -> None:
    with pytest.raises(RegistryError, match="--ca-file"):
        RegistryClient(tls_registry.url).ping()
    RegistryClient(tls_registry.url, net=Net(ca_file=str(tls_registry.ca_file))).ping()


# ---- a real registry behind the fault proxy ------------------------------------------------


@pytest.fixture
def proxied(registry: LabRegistry) -> Iterator[FaultProxy]:
    """A fresh lab registry with the fault proxy in front; no fault until a test adds one."""
    with FaultProxy.running(registry.url) as proxy:
        yield proxy


def _counting_sleep(client: RegistryClient) -> list[float]:
    """Inject the retry policy's clock: each wait is recorded, none is slept."""
    waits: list[float] = []
    client.http.retry = replace(client.http.retry, sleep=waits.append)
    return waits


def test_catalog_pagination_follows_distributions_link(registry: LabRegistry) -> None:
    """Distribution pages `_catalog` with `Link: <...&last=...>; rel="next"` when n is small."""
    client = RegistryClient(registry.url)
    repos = [f"page/r{i}" for i in range(5)]
    for repo in repos:
        _push(client, repo, "1", _artifact(100))
    assert client.catalog(page=2) == repos
    assert client.catalog(page=1000) == repos


def test_tag_pagination_follows_link(proxied: FaultProxy) -> None:
    """Distribution 2.8 answers every tag at once; the proxy pages them two at a time, as
    registries that cap `n` do, and the client walks each `Link` to the end."""
    client = RegistryClient(proxied.url)
    art = _artifact(100)
    _push(client, "paged/r", "a", art)
    for tag in ("b", "c", "d", "e"):
        client.put_manifest("paged/r", tag, art.manifest, art.media_type)
    proxied.add("paginate", method="GET", path=r"/tags/list$", page=2)
    assert sorted(client.list_tags("paged/r")) == ["a", "b", "c", "d", "e"]
    assert proxied.seen("GET", r"/paged/r/tags/list") == 3


def test_a_429_then_a_503_are_waited_out_by_retry_after_then_backoff(
    proxied: FaultProxy,
) -> None:
    """Retry-After (seconds) sets the first wait; the second is the policy's backoff."""
    client = RegistryClient(proxied.url)
    _push(client, "retry/r", "1", _artifact(100))
    waits = _counting_sleep(client)
    proxied.add("status", status=429, method="GET", path=r"/tags/list$", times=1, retry_after="2")
    proxied.add("status", status=503, method="GET", path=r"/tags/list$", times=1)
    assert client.list_tags("retry/r") == ["1"]
    assert proxied.seen("GET", r"/tags/list") == 3
    policy = client.http.retry
    assert len(waits) == 2
    assert 2 * 0.75 <= waits[0] <= 2 * 1.25  # what the server asked, jittered
    backoff = policy.base * 2**2  # after the second try
    assert backoff * 0.75 <= waits[1] <= backoff * 1.25


def test_gives_up_after_the_bounded_retries_counted_by_the_proxy(proxied: FaultProxy) -> None:
    client = RegistryClient(proxied.url)
    waits = _counting_sleep(client)
    fault = proxied.add("status", status=502, method="GET", path=r"/tags/list$")
    with pytest.raises(RetriesExhausted, match="502"):
        client.list_tags("r")
    attempts = client.http.retry.attempts
    assert fault.hits == proxied.seen("GET", r"/tags/list") == attempts == 5
    assert len(waits) == attempts - 1


def test_overlong_blob_fails(proxied: FaultProxy) -> None:
    """The right bytes with more after them: the digest matches, the size does not."""
    client = RegistryClient(proxied.url)
    art = _artifact(3000)
    _push(client, "long/r", "1", art)
    layer, data = art.blobs[1]
    proxied.add("overlong", method="GET", path=layer.digest)
    with (
        pytest.raises(IntegrityError, match="more than the declared 3000 bytes"),
        client.open_blob("long/r", layer) as stream,
    ):
        assert stream.read(3000) == data
        stream.read()


def test_a_listing_past_the_body_cap_is_refused_as_it_streams(
    proxied: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tag list, a catalog or an API answer is read whole, so it is read bounded: a
    registry answering without end must not take the memory. Trailing blanks keep the JSON
    valid: only the cap can refuse it."""
    from mirror.errors import OperationError
    from mirror.registry import http

    client = RegistryClient(proxied.url)
    _push(client, "cap/r", "1", _artifact(100))
    assert client.list_tags("cap/r") == ["1"]
    monkeypatch.setattr(http, "BODY_CAP", 4096)
    proxied.add("overlong", method="GET", path=r"/tags/list", extra=b" " * 8192)
    says = r"tags/list\?n=1000: 8222 bytes is over the 4096-byte cap"
    with pytest.raises(OperationError, match=says):
        client.list_tags("cap/r")


def test_an_error_answer_is_read_for_its_words_not_whole(proxied: FaultProxy) -> None:
    """A blob GET is streamed; when its answer is an error, only the first ERROR_WORDS
    bytes are read for the message (a body of megabytes is not JSON within them)."""
    client = RegistryClient(proxied.url)
    art = _artifact(100)
    _push(client, "words/r", "1", art)
    layer = art.blobs[1][0]
    noise = b'{"errors": [{"code": "DENIED", "message": "' + b"x" * (16 << 20) + b'"}]}'
    proxied.add("status", method="GET", path=layer.digest, status=403, body=noise, times=1)
    with pytest.raises(AuthError) as caught, client.open_blob("words/r", layer):
        pass
    assert "403" in str(caught.value) and "xxxx" not in str(caught.value)
    # What was left unread is not handed back to the pool: the connection is closed, so
    # the server's write of the rest ends now, not when the pool lets the socket go.
    assert proxied.state.settle(5), "the error's connection was kept open"
    words = b'{"errors": [{"code": "DENIED", "message": "' + b"x" * 100 + b'"}]}'
    proxied.add("status", method="GET", path=layer.digest, status=403, body=words)
    with pytest.raises(AuthError, match=r"403 x{50}"), client.open_blob("words/r", layer):
        pass


def test_upload_redirected_to_another_host_is_refused(proxied: FaultProxy) -> None:
    """`localhost` is the same proxy under another name: the client must not go there, so
    the proxy sees the POST that opened the session and nothing after it."""
    client = RegistryClient(proxied.url)
    port = proxied.host.rsplit(":", 1)[1]
    proxied.add("relocate", method="POST", path=UPLOAD, to=f"localhost:{port}")
    desc, data = _artifact(100).blobs[1]
    with pytest.raises(
        RegistryError, match=rf"upload redirected to another host \(localhost:{port}\)"
    ):
        client.push_blob("moved/r", desc, io.BytesIO(data))
    assert proxied.seen("POST", UPLOAD) == 1
    assert proxied.seen("PUT") == proxied.seen("PATCH") == 0
    assert not Reg(proxied.url).blob_ok("moved/r", desc.digest)


def test_a_tag_whose_manifest_cannot_be_read_is_repaired(proxied: FaultProxy) -> None:
    """HEAD names the digest but GET answers 500 (a push killed mid-way): the engine pushes
    the manifest again, in the one PUT of its tag, and uploads no blob."""
    from mirror.copy import CopyTask, copy_graphs
    from mirror.stores.memory import MemorySource
    from mirror.stores.registry import RegistryStore

    client = RegistryClient(proxied.url)
    _counting_sleep(client)
    art = _artifact(300)
    _push(client, "fix/r", "t", art)
    proxied.clear()
    fault = proxied.add("status", status=500, method="GET", path=r"/fix/r/manifests/t$")
    target = RegistryStore(client, "fix/r")
    task = CopyTask(MemorySource("memory", [art]), target, art.descriptor, "t", "fix:t")
    report = copy_graphs([task])
    assert fault.hits == client.http.retry.attempts  # resolve's GET, retried, then HEAD
    assert report.copied_blobs == 0
    assert proxied.paths("PUT", r"/manifests/") == ["/v2/fix/r/manifests/t"]
    assert proxied.seen("POST", UPLOAD) == 0
    proxied.clear()
    assert client.get_manifest("fix/r", "t")[1] == art.manifest


# ---- pure faults, with responses -----------------------------------------------------------

BASE = "https://reg.example"


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
def test_401_without_credentials_says_so_and_leaks_nothing() -> None:
    responses.get(f"{BASE}/v2/r/tags/list?n=1000", status=401)
    with pytest.raises(AuthError, match="no credentials"):
        RegistryClient(BASE).list_tags("r")


def _bearer_challenge(realm: str) -> None:
    header = f'Bearer realm="{realm}",service="reg.example",scope="repository:r:pull"'
    responses.get(f"{BASE}/v2/r/tags/list?n=1000", status=401, headers={"WWW-Authenticate": header})


@responses.activate
def test_a_token_answer_past_its_cap_is_refused() -> None:
    from mirror.errors import OperationError

    _bearer_challenge("https://auth.example/token")
    responses.get("https://auth.example/token", body=b'{"token": "' + b"t" * (2 << 20) + b'"}')
    with pytest.raises(OperationError, match=r"token service https://auth\.example/token: .* cap"):
        RegistryClient(BASE).list_tags("r")


@responses.activate
def test_no_credentials_go_to_a_plain_http_token_service_of_an_https_registry() -> None:
    """The registry speaks TLS but names a token service on plain HTTP: with credentials,
    mirror refuses before it sends them; anonymous, it asks there as any client would."""
    _bearer_challenge("http://auth.example/token")
    responses.get("http://auth.example/token", json={"token": "anonymous-token"})
    client = RegistryClient(BASE, credentials=Credentials("alice", "s3cret"))
    with pytest.raises(AuthError, match=r"token service http://auth\.example/token is plain HTTP"):
        client.list_tags("r")
    assert not [c for c in responses.calls if "auth.example" in c.request.url]
    _bearer_challenge("http://auth.example/token")
    responses.get(f"{BASE}/v2/r/tags/list?n=1000", json={"tags": ["1"]})
    assert RegistryClient(BASE).list_tags("r") == ["1"]
    assert [c for c in responses.calls if "auth.example" in c.request.url]


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


def test_environment_is_read_once_per_host_and_still_honoured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Proxies, no_proxy and REQUESTS_CA_BUNDLE work as in plain requests, looked up once."""
    from mirror.deadlines import HeadDeadline
    from mirror.registry.http import _TrustStore
    from mirror.registry.viarequests import Session

    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "inside.invalid")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/env/ca.pem")
    s = Session(_TrustStore(), HeadDeadline(30))
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


def test_the_network_limits_come_from_settings_and_only_settings_read_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """MIRROR_READ_TIMEOUT and the rate floor's variables bound a stall (docs/SECURITY.md).
    Settings.from_env reads them, the CLI hands them down, a client built without them
    gets the defaults whatever the environment says; nonsense is a usage error at once."""
    from mirror.errors import UsageError
    from mirror.registry.retry import RateFloor

    env = {"MIRROR_READ_TIMEOUT": "2.5", "MIRROR_MIN_RATE": "4096", "MIRROR_RATE_GRACE": "3"}
    net = Settings.from_env({**env, "MIRROR_BLOB_DEADLINE": "600"}, ca_file="ca.pem").net
    assert net == Net(ca_file="ca.pem", read_timeout=2.5, min_rate=4096, grace=3, deadline=600)
    client = RegistryClient("http://127.0.0.1:9", net=net)
    assert client.http._timeout == (10.0, 2.5)
    assert client._floor == RateFloor(min_rate=4096, grace=3, deadline=600)
    monkeypatch.setenv("MIRROR_READ_TIMEOUT", "7")  # not read below the settings
    assert RegistryClient("http://127.0.0.1:9").http._timeout == (10.0, 120.0)
    assert Settings.from_env({}).net == Net()
    for name, bad in (("MIRROR_READ_TIMEOUT", "0"), ("MIRROR_READ_TIMEOUT", "-1"),
                      ("MIRROR_READ_TIMEOUT", "soon"), ("MIRROR_MIN_RATE", "fast")):  # fmt: skip
        with pytest.raises(UsageError, match=name):
            Settings.from_env({name: bad})
