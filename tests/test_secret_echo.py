"""A registry or token service that says a secret back: never shown (stop 31's import-side
sweep). `redact` hides values after names it knows; these echo the value bare, as base64
of the basic pair, or quoted by requests' own header check. Fault cases: `responses`."""

from __future__ import annotations

import base64

import pytest
import responses

from mirror.errors import AuthError, MirrorError
from mirror.registry.auth import Credentials
from mirror.registry.http import Endpoint, Http
from mirror.registry.retry import RetryPolicy

REG = "http://reg.test"
REALM = "http://auth.test/token"
PASSWORD = "Tr0ub4dor&3-secretpw"
PAIR = base64.b64encode(f"mirror:{PASSWORD}".encode()).decode()


def _http(password: str = PASSWORD) -> Http:
    retry = RetryPolicy(sleep=lambda s: None)
    return Http(Endpoint("http", "reg.test"), Credentials("mirror", password), retry=retry)


def _bearer() -> None:
    challenge = f'Bearer realm="{REALM}",service="reg"'
    responses.put(f"{REG}/v2/x/manifests/1", status=401, headers={"WWW-Authenticate": challenge})


@pytest.mark.parametrize(
    "words",
    [
        f"user mirror with password {PASSWORD} may not push",
        f"credentials Basic {PAIR} refused",
        f"mirror:{PASSWORD}@registry rejected",
        "password " + PASSWORD.replace("&", "\\u0026"),  # Go's JSON escapes `&`
    ],
)
@responses.activate
def test_a_registry_error_that_echoes_the_login_shows_none_of_it(words: str) -> None:
    body = {"errors": [{"code": "DENIED", "message": words}]}
    responses.put(f"{REG}/v2/x/manifests/1", status=403, json=body)
    with pytest.raises(AuthError) as info:
        _http().request("PUT", "/v2/x/manifests/1", data=b"{}", ok=(201,))
    message = str(info.value)
    assert "403" in message and "***" in message
    assert "Tr0ub4dor" not in message and PAIR[:20] not in message, message


@responses.activate
def test_an_echo_longer_than_the_cut_is_scrubbed_before_it_is_cut() -> None:
    """The message is cut at 200 characters: a cut through the password showed its start."""
    words = "x" * 185 + " " + PASSWORD
    responses.put(f"{REG}/v2/x/manifests/1", status=400, json={"errors": [{"message": words}]})
    with pytest.raises(MirrorError) as info:
        _http().request("PUT", "/v2/x/manifests/1", data=b"{}", ok=(201,))
    assert "Tr0ub" not in str(info.value)


@responses.activate
def test_a_token_with_a_line_break_is_refused_without_quoting_it() -> None:
    """requests refuses such a header and quotes it whole in its error."""
    _bearer()
    responses.get(REALM, json={"token": "tok-SECRET-0123456789\n"})
    with pytest.raises(AuthError) as info:
        _http().request("PUT", "/v2/x/manifests/1", data=b"{}", ok=(201,))
    assert "space, control or non-ASCII" in str(info.value)
    assert "tok-SECRET" not in str(info.value)


@responses.activate
def test_an_issued_token_echoed_back_is_scrubbed() -> None:
    _bearer()
    responses.get(REALM, json={"token": "tok-SECRET-42"})
    responses.put(
        f"{REG}/v2/x/manifests/1", status=400, json={"errors": [{"message": "tok-SECRET-42 bad"}]}
    )
    with pytest.raises(MirrorError) as info:
        _http().request("PUT", "/v2/x/manifests/1", data=b"{}", ok=(201,))
    assert "tok-SECRET" not in str(info.value) and "*** bad" in str(info.value)


@pytest.mark.parametrize("expires", [[1], "nan", float("nan"), -5, True, None])
@responses.activate
def test_an_odd_expires_in_is_the_default_lifetime(expires: object) -> None:
    """`expires_in: [1]` was an internal error; `"nan"` a token asked for on every request."""
    _bearer()
    responses.put(f"{REG}/v2/x/manifests/1", status=201)
    responses.get(REALM, json={"token": "t1", "expires_in": expires})
    http = _http()
    for _ in range(3):
        http.request("PUT", "/v2/x/manifests/1", data=b"{}", scope="s", ok=(201,))
    assert sum(1 for c in responses.calls if c.request.url.startswith(REALM)) == 1


@responses.activate
def test_a_password_outside_latin1_is_sent_as_docker_sends_it() -> None:
    """requests encodes a basic pair as Latin-1 and raised on anything else."""
    _bearer()
    responses.put(f"{REG}/v2/x/manifests/1", status=201)
    responses.get(REALM, json={"token": "t1"})
    _http("pässwörd-日本").request("PUT", "/v2/x/manifests/1", data=b"{}", ok=(201,))
    (asked,) = [c for c in responses.calls if c.request.url.startswith(REALM)]
    expected = base64.b64encode("mirror:pässwörd-日本".encode()).decode()
    assert asked.request.headers["Authorization"] == f"Basic {expected}"


def test_every_spelling_of_a_secret_is_scrubbed() -> None:
    import html
    import json
    from urllib.parse import quote

    from mirror.errors import Secrets

    secret = 'a b&"c\n'
    s = Secrets()
    s.add(secret, user="u")
    for shown in (
        secret,
        repr(secret)[1:-1],
        json.dumps(secret)[1:-1],
        html.escape(secret),
        quote(secret, safe=""),
        " ".join(secret.split()),
        base64.b64encode(f"u:{secret}".encode()).decode(),
    ):
        assert s.scrub(f"[{shown}]") == "[***]", shown
    assert s.scrub("nothing secret here") == "nothing secret here"


# ---- answers of the wrong shape: one line, not "internal error" (the same sweep) --------


@pytest.mark.parametrize("body", [{"repositories": 5}, {"repositories": [{}]}])
@responses.activate
def test_a_catalog_of_the_wrong_shape_is_a_registry_error(body: dict[str, object]) -> None:
    from mirror.errors import RegistryError
    from mirror.registry.client import RegistryClient

    responses.get(f"{REG}/v2/_catalog", json=body)
    with pytest.raises(RegistryError, match="`repositories` is not a list of names"):
        RegistryClient(REG).catalog()


@responses.activate
def test_a_garbled_content_length_on_head_is_not_a_crash() -> None:
    """`Content-Length: abc` on a HEAD: the blob is pushed again, the manifest read by GET."""
    import hashlib

    from mirror.oci.descriptor import Descriptor
    from mirror.registry.client import RegistryClient

    manifest = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    blob = Descriptor("application/octet-stream", "sha256:" + "a" * 64, 3)
    responses.head(f"{REG}/v2/x/blobs/{blob.digest}", headers={"Content-Length": "abc"})
    head = {"Content-Length": "abc", "Docker-Content-Digest": digest}
    responses.head(f"{REG}/v2/x/manifests/1", headers=head)
    media = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
    responses.get(f"{REG}/v2/x/manifests/1", body=manifest, headers=media)
    client = RegistryClient(REG)
    assert client.blob_exists("x", blob) is False
    found = client.resolve("x", "1")
    assert found is not None and found.digest == digest and found.size == len(manifest)


@responses.activate
def test_a_manifest_a_head_named_and_a_get_cannot_find_is_absent() -> None:
    """HEAD 200 with a garbled length, then the GET that should settle it answers 404: the
    import aborted ('manifest not found'); the manifest is absent, and is pushed."""
    from mirror.registry.client import RegistryClient

    head = {"Content-Length": "abc", "Docker-Content-Digest": "sha256:" + "b" * 64}
    responses.head(f"{REG}/v2/x/manifests/1", headers=head)
    responses.get(f"{REG}/v2/x/manifests/1", status=404)
    assert RegistryClient(REG).resolve("x", "1") is None


@responses.activate
def test_numbers_in_other_scripts_are_not_numbers() -> None:
    """str.isdigit() takes '²', which int() and float() refuse: a `Retry-After: ²` or a
    `Content-Length: ²` was an internal error (the review of stop 31). They are no number:
    backoff, and a body read to its end."""
    from mirror.settings import Settings
    from mirror.units import ascii_int

    responses.get(f"{REG}/v2/_catalog", status=503, headers={"Retry-After": "²"})
    responses.get(f"{REG}/v2/_catalog", json={"repositories": []}, headers={"Content-Length": "²"})
    slept: list[float] = []
    http = Http(Endpoint("http", "reg.test"), None, retry=RetryPolicy(sleep=slept.append))
    assert http.request("GET", "/v2/_catalog").json() == {"repositories": []}
    assert len(slept) == 1 and slept[0] < 2  # backoff, not a crash
    assert Settings.from_env(env={"SOURCE_DATE_EPOCH": "²"}).clock.fixed is None
    assert [ascii_int(t) for t in ("12", " 7 ", "²", "-1", "1e3", "", None, "9" * 19)] == [
        12, 7, None, None, None, None, None, None,
    ]  # fmt: skip
