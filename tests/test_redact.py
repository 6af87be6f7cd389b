"""`redact`: every credential form we can meet in a message goes, the words around it stay.

Each case names the secrets that must be gone and the context that must survive, so a
pattern that hides too little (the scheme word, not the credential) or too much (a whole
message) fails here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from mirror.errors import redact


@dataclass(frozen=True)
class Case:
    id: str
    text: str
    secrets: tuple[str, ...]
    kept: tuple[str, ...]


CASES = [
    # Authorization in header-dump form, every scheme, and none.
    Case(
        "basic",
        "Authorization: Basic Ym9iOnNlY3JldA==",
        ("Ym9iOnNlY3JldA", "=="),
        ("Authorization: Basic ***",),
    ),
    Case(
        "bearer-jwt",
        "GET /v2/x: Authorization: Bearer eyJhbGc.eyJzdWI.c2lnbmF0dXJl, retrying",
        ("eyJhbGc", "eyJzdWI", "c2lnbmF0dXJl"),
        ("GET /v2/x: Authorization: Bearer ***", ", retrying"),
    ),
    Case(
        "digest",
        'Authorization: Digest username="bob", realm="r", nonce="n0nce", uri="/v2/",'
        ' response="6629fae49393a05397450978507c4ef1", qop=auth, nc=00000001, cnonce="c0" sent',
        ("bob", "n0nce", "6629fae4", "c0"),
        ("Authorization: Digest ***", " sent"),
    ),
    Case("token", "authorization: token ghp_abcdef123456", ("ghp_abcdef123456",), ("token ***",)),
    Case("negotiate", "Authorization: Negotiate YIIGhgYGKwYB", ("YIIGhgYGKwYB",), ("Negotiate",)),
    Case(
        "unknown-scheme",
        "Authorization: Custom s3cr3t-value for repo x",
        ("Custom", "s3cr3t-value"),
        ("Authorization: ***", "repo x"),
    ),
    Case("bare", "Authorization: Ym9iOnNlY3JldA==", ("Ym9iOnNlY3JldA",), ("Authorization: ***",)),
    Case("no-space", "Authorization:Basic Ym9iOnB3", ("Ym9iOnB3",), ("Authorization:Basic ***",)),
    Case("equals", "Authorization=Bearer abc123", ("abc123",), ("Authorization=Bearer ***",)),
    Case(
        "multiline-dump",
        "Host: reg.example\nAuthorization: Basic Ym9iOnB3\nAccept: */*",
        ("Ym9iOnB3",),
        ("Host: reg.example\n", "Basic ***\n", "Accept: */*"),
    ),
    Case(
        "http-client-bytes",
        r"send: b'GET /v2/ HTTP/1.1\r\nHost: h\r\nAuthorization: Basic Ym9iOnB3\r\nAccept: */*'",
        ("Ym9iOnB3",),
        ("send: b'GET /v2/ HTTP/1.1", r"Host: h\r\n", r"Basic ***\r\nAccept: */*'"),
    ),
    # Quoted, dict-repr and JSON forms: the whole quoted value goes, spaces and all.
    Case(
        "dict-repr",
        "{'Authorization': 'Bearer abc def', 'Accept': 'application/json'}",
        ("abc", "def"),
        ("{'Authorization': 'Bearer ***', 'Accept': 'application/json'}",),
    ),
    Case(
        "json",
        '{"authorization": "Basic xyz=", "user-agent": "mirror"}',
        ("xyz",),
        ('"authorization": "Basic ***"', '"user-agent": "mirror"'),
    ),
    Case(
        "json-compact",
        '{"Authorization":"s3cr3t","x":1}',
        ("s3cr3t",),
        ('{"Authorization":"***","x":1}',),
    ),
    Case(
        "bytes-value",
        "{'Authorization': b'Basic Ym9iOnB3'}",
        ("Ym9iOnB3",),
        ("{'Authorization': b'Basic ***'}",),
    ),
    Case(
        "escaped-json",
        r"{\"Authorization\": \"Bearer abc\", \"k\": 1}",
        ("abc",),
        (r"\"Bearer ***\"", r"\"k\": 1"),
    ),
    Case(
        "escaped-quote-inside",
        r"{'Authorization': 'Basic it\'s-s3cr3t', 'k': 'v'}",
        ("s3cr3t",),
        ("'Basic ***'", "'k': 'v'"),
    ),
    Case("quoted-unclosed", "Authorization: 'Bearer abc", ("abc",), ("Authorization: '",)),
    # The other credential-carrying headers.
    Case(
        "proxy-authorization",
        "Proxy-Authorization: Basic cHJveHk6cHc=",
        ("cHJveHk6cHc",),
        ("Proxy-Authorization: Basic ***",),
    ),
    Case(
        "x-registry-auth",
        "X-Registry-Auth: eyJ1c2VybmFtZSI6ImJvYiJ9",
        ("eyJ1c2VybmFtZSI6ImJvYiJ9",),
        ("X-Registry-Auth: ***",),
    ),
    Case(
        "cookie",
        "Cookie: sid=abc123; csrftoken=zzz999",
        ("abc123", "zzz999"),
        ("Cookie: ***",),
    ),
    Case(
        "set-cookie",
        "header: Set-Cookie: session=abc123; Path=/; HttpOnly",
        ("abc123",),
        ("header: Set-Cookie: ***",),
    ),
    Case("x-api-key", "X-Api-Key: k3y-v4lue", ("k3y-v4lue",), ("X-Api-Key: ***",)),
    Case("x-api-key-no-space", "x-api-key:k3y-v4lue", ("k3y-v4lue",), ("x-api-key:***",)),
    Case(
        "palette-apikey",
        "{'User-Agent': 'mirror', 'ApiKey': 'pal3tte-k3y', 'Accept': 'application/json'}",
        ("pal3tte-k3y",),
        ("'User-Agent': 'mirror'", "'ApiKey': '***'", "'Accept': 'application/json'"),
    ),
    Case(
        "x-amz-security-token",
        "X-Amz-Security-Token: FQoGZXIvYXdzEJr",
        ("FQoGZXIvYXdzEJr",),
        ("X-Amz-Security-Token: ***",),
    ),
    Case(
        "private-token", "Private-Token: glpat-xyz123", ("glpat-xyz123",), ("Private-Token: ***",)
    ),
    # URLs: userinfo and query-string secrets.
    Case(
        "userinfo",
        "cannot reach https://user:pass@host/v2/ (refused)",
        ("user", "pass"),
        ("cannot reach https://***@host/v2/ (refused)",),
    ),
    Case(
        "userinfo-at-in-password", "https://bob:p@ss@host/", ("bob", "p@ss"), ("https://***@host/",)
    ),
    Case(  # a URL typed where a path goes: pathlib made its `//` one `/`
        "userinfo-one-slash",
        "http:/u:S3cr3t-XYZ@h/x.tar.zst: no such bundle",
        ("S3cr3t-XYZ",),
        ("http:/***@h/x.tar.zst: no such bundle",),
    ),
    Case(
        "access-token",
        "GET https://auth.example/token?access_token=abc123&scope=repository:x:pull",
        ("abc123",),
        ("https://auth.example/token?access_token=***", "&scope=repository:x:pull"),
    ),
    Case(
        "password-param",
        "https://h/login?user=bob&password=hunter2#top",
        ("hunter2",),
        ("https://h/login?user=bob&password=***",),
    ),
    Case("token-param", "https://h/x?token=abc123", ("abc123",), ("https://h/x?token=***",)),
    Case("token-kv", "retrying with token=abc123 now", ("abc123",), ("with token=***", " now")),
    Case(
        "s3-presigned",
        "redirected to https://s3.example/b/k?X-Amz-Credential=AKIAXYZ%2F20240101"
        "&X-Amz-Signature=deadbeef&X-Amz-Security-Token=FQoG&X-Amz-Expires=300",
        ("AKIAXYZ", "deadbeef", "FQoG"),
        ("https://s3.example/b/k?X-Amz-Credential=***", "&X-Amz-Expires=300"),
    ),
    Case(
        "azure-sas",
        "https://acct.blob.example/c/b?sv=2022-11-02&sig=AbC%2Bd%3D&se=2030",
        ("AbC%2Bd",),
        ("?sv=2022-11-02&sig=***&se=2030",),
    ),
    # Credentials as keys of JSON bodies and reprs.
    Case(
        "docker-config",
        '{"auths": {"reg.example": {"auth": "Ym9iOnB3", "identitytoken": "tok123"}}}',
        ("Ym9iOnB3", "tok123"),
        ('{"auths": {"reg.example": {"auth": "***"', '"identitytoken": "***"'),
    ),
    Case(
        "token-response",
        '{"token": "eyJabc", "access_token": "eyJdef", "expires_in": 300}',
        ("eyJabc", "eyJdef"),
        ('"expires_in": 300',),
    ),
    Case(
        "dataclass-repr",
        "Credentials(username='bob', password='hunter2')",
        ("hunter2",),
        ("Credentials(username='bob', password='***')",),
    ),
    Case("client-secret", "client_secret: s3c-r3t", ("s3c-r3t",), ("client_secret: ***",)),
    Case(
        "cli-flag",
        "--registry-password=hunter2 --jobs 4",
        ("hunter2",),
        ("--registry-password=***", " --jobs 4"),
    ),
]

# Ordinary text: nothing in it is a credential, so it must come back unchanged.
PLAIN = [
    "authorization failed for repo x",
    "401 unauthorized: authentication required for reg.example/library/alpine",
    "no key password: set MIRROR_KEY_PASSWORD or run in a terminal",
    "private key: /tmp/k/mirror.key (mode 0600)",
    "token service https://auth.example/token unreachable: timed out",
    "reg.example: token service refused repository:acme/auth:pull (401); check credentials",
    "ghcr.io/acme/vault-token:1.0: not found",
    "docker.io/acme/authorization:v2 and org/cookie:1 copied",
    'Www-Authenticate: Bearer realm="https://auth.example/token",service="reg",'
    'scope="repository:x:pull"',
    "https://reg.example:5000/v2/_catalog?n=1000&last=alpine",
    "oci:/tmp/layout@x and host.example:5000/repo@sha256:abc copied",
    "Palette POST /v1/registries/oci/basic: 400: password *** rejected",
    "registries[0].auth.password_env: must be a string",
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_secrets_go_and_context_stays(case: Case) -> None:
    out = redact(case.text)
    for secret in case.secrets:
        assert secret not in out, f"{secret!r} survived: {out!r}"
    for context in case.kept:
        assert context in out, f"{context!r} lost: {out!r}"
    assert "***" in out


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_redacting_twice_changes_nothing(case: Case) -> None:
    once = redact(case.text)
    assert redact(once) == once


@pytest.mark.parametrize("text", PLAIN)
def test_ordinary_text_is_untouched(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "a" * 200_000,
        "x-" * 50_000 + "token",
        "https://" + "a" * 100_000,
        "Authorization: " * 20_000,
        "'token': '" * 20_000,
        "Cookie: " + "a=b; " * 40_000,
    ],
    ids=["word", "dashes", "url", "keys", "quotes", "cookies"],
)
def test_long_input_is_linear(text: str) -> None:
    """Messages can carry a response body; a backtracking pattern must not hang the CLI."""
    start = time.perf_counter()
    redact(text)
    assert time.perf_counter() - start < 2.0
