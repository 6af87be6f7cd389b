"""Palette registration: bodies valid per the published OpenAPI, update not duplicate, no leaks."""

from __future__ import annotations

import copy
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import responses
from test_catalog import entry  # one CatalogEntry builder for both files

from mirror.errors import AuthError, ConflictError, OperationError, UsageError
from mirror.palette import PaletteClient, RegistryAuth, registry_auth_from_env
from mirror.registry.retry import RetryPolicy

OPENAPI = Path(__file__).resolve().parents[2] / "shared" / "palette-api" / "registries-openapi.json"
BASE = "https://palette.test"
KEY = "ApiKey-s3cr3t-Zq9"
PASSWORD = "reg-pa55word-Xy7"
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    if not OPENAPI.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Palette OpenAPI excerpt not found at {OPENAPI}")
        pytest.skip(f"Palette OpenAPI excerpt not found at {OPENAPI}")
    return json.loads(OPENAPI.read_text())  # type: ignore[no-any-return]


def resolve(node: Any, definitions: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """Inline `#/definitions/X` refs; objects become closed so a misspelt field fails."""
    if isinstance(node, list):
        return [resolve(n, definitions, seen) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].removeprefix("#/definitions/")
        if name in seen:
            return {}
        return resolve(definitions[name], definitions, (*seen, name))
    out = {k: resolve(v, definitions, seen) for k, v in node.items()}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def body_schema(openapi: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    """The body schema of the operation a concrete request path hits."""
    for template, item in openapi["paths"].items():
        pattern = "^" + re.sub(r"\{[^/]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in item:
            params = item[method.lower()].get("parameters", [])
            (body,) = [p for p in params if p.get("in") == "body"]
            return resolve(body["schema"], openapi["definitions"])  # type: ignore[no-any-return]
    raise AssertionError(f"{method} {path} is not in the OpenAPI file")


def check_calls(openapi: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """Validate every captured request; return (method, path, body) triples."""
    seen = []
    for call in responses.calls:
        request = call.request
        method = str(request.method)
        path = request.path_url.split("?")[0]
        assert request.headers["ApiKey"] == KEY
        body = json.loads(request.body) if request.body else None
        if method == "GET":
            assert path == "/v1/registries/metadata"
            assert request.path_url.endswith("?scope=system")
        else:
            jsonschema.Draft4Validator(body_schema(openapi, method, path)).validate(body)
        seen.append((method, path, body))
    return seen


def metadata(*items: dict[str, Any]) -> None:
    responses.get(f"{BASE}/v1/registries/metadata", json={"items": list(items)})


def test_strict_schema_helper_can_fail(openapi: dict[str, Any]) -> None:
    schema = body_schema(openapi, "POST", "/v1/registries/oci/basic")
    good = {"metadata": {"name": "x"}, "spec": {"endpoint": "e", "auth": {"type": "noAuth"}}}
    jsonschema.Draft4Validator(schema).validate(good)
    for bad in (
        {"metadata": {"name": "x"}, "spec": {"endpoint": "e", "auth": {}, "baseContenPath": "p"}},
        {"metadata": {"name": "x"}, "spec": {"endpoint": "e"}},
        {"metadata": {}, "spec": {"endpoint": "e", "auth": {"type": "password"}}},
        {"metadata": {}, "spec": {"endpoint": "e", "auth": {}, "providerType": "image"}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.Draft4Validator(schema).validate(bad)


@responses.activate
def test_creates_each_kind_with_valid_bodies(openapi: dict[str, Any]) -> None:
    metadata()
    responses.post(f"{BASE}/v1/registries/oci/basic", json={"uid": "u-oci"}, status=201)
    responses.post(f"{BASE}/v1/registries/helm", json={"uid": "u-helm"}, status=201)
    responses.post(f"{BASE}/v1/registries/pack", json={"uid": "u-pack"}, status=201)
    entries = [
        entry(),
        entry(name="Palette Registry FIPS", base_content_path="production-fips", fips=True),
        entry(name="Bitnami", provider_type="helm", base_content_path="charts/bitnami"),
        entry(name="Helm folder", kind="helm", provider_type=None, endpoint="https://h.local/"),
        entry(name="Legacy", kind="pack", provider_type=None, base_content_path="legacy"),
    ]
    with PaletteClient(BASE, KEY) as client:
        results = client.register(entries, None)
    assert [r["action"] for r in results] == ["created"] * 5
    assert [r["uid"] for r in results] == ["u-oci", "u-oci", "u-oci", "u-helm", "u-pack"]
    calls = check_calls(openapi)
    assert [(m, p) for m, p, _ in calls] == [
        ("GET", "/v1/registries/metadata"),
        ("POST", "/v1/registries/oci/basic"),
        ("POST", "/v1/registries/oci/basic"),
        ("POST", "/v1/registries/oci/basic"),
        ("POST", "/v1/registries/helm"),
        ("POST", "/v1/registries/pack"),
    ]
    oci = calls[2][2]
    assert oci["metadata"] == {"name": "Palette Registry FIPS"}
    assert oci["spec"] == {
        "endpoint": "registry.local:5000",
        "baseContentPath": "production-fips",
        "providerType": "pack",
        "isSyncSupported": True,
        "auth": {"type": "noAuth"},
        "scope": "system",
    }
    assert calls[3][2]["spec"]["providerType"] == "helm"
    assert calls[4][2]["spec"]["endpoint"] == "https://h.local/production"
    assert calls[4][2]["spec"]["isPrivate"] is False
    assert calls[5][2]["spec"]["endpoint"] == "registry.local:5000/legacy"
    assert {c[2]["spec"]["scope"] for c in calls[1:]} == {"system"}


@responses.activate
def test_existing_registries_are_updated_not_duplicated(openapi: dict[str, Any]) -> None:
    metadata(
        {"name": "Palette Registry", "uid": "u-1", "kind": "oci", "scope": "system"},
        {"name": "Helm folder", "uid": "u-2", "kind": "helm", "scope": "system"},
        {"name": "Legacy", "uid": "u-3", "scope": "system"},
    )
    for path in ("oci/u-1/basic", "helm/u-2", "pack/u-3"):
        responses.put(f"{BASE}/v1/registries/{path}", status=204)
    entries = [
        entry(),
        entry(name="Helm folder", kind="helm", provider_type=None),
        entry(name="Legacy", kind="pack", provider_type=None),
    ]
    with PaletteClient(BASE, KEY) as client:
        results = client.register(entries, RegistryAuth("bob", PASSWORD))
    assert [(r["action"], r["uid"]) for r in results] == [
        ("updated", "u-1"),
        ("updated", "u-2"),
        ("updated", "u-3"),
    ]
    calls = check_calls(openapi)
    assert [m for m, _, _ in calls] == ["GET", "PUT", "PUT", "PUT"]
    for _, _, body in calls[1:]:
        assert body["spec"]["auth"] == {"type": "basic", "username": "bob", "password": PASSWORD}
    assert calls[1][2]["metadata"] == {"name": "Palette Registry", "uid": "u-1"}
    assert calls[2][2]["spec"]["isPrivate"] is True and calls[3][2]["spec"]["private"] is True


@responses.activate
def test_same_name_twice_in_one_run_updates_what_it_created(openapi: dict[str, Any]) -> None:
    metadata()
    responses.post(f"{BASE}/v1/registries/oci/basic", json={"uid": "new"}, status=201)
    responses.put(f"{BASE}/v1/registries/oci/new/basic", status=204)
    with PaletteClient(BASE, KEY) as client:
        results = client.register([entry(), entry(bundle_digest="sha256:" + "cd" * 32)], None)
    assert [r["action"] for r in results] == ["created", "updated"]
    check_calls(openapi)


@responses.activate
def test_image_registries_are_skipped_without_a_request() -> None:
    metadata()
    with PaletteClient(BASE, KEY) as client:
        (result,) = client.register([entry(provider_type="image")], None)
    assert result["action"] == "skipped" and "helm, zarf, pack" in result["reason"]
    assert len(responses.calls) == 1


@responses.activate
def test_name_taken_by_another_kind_is_a_conflict() -> None:
    metadata({"name": "Palette Registry", "uid": "u-1", "kind": "helm", "scope": "system"})
    with PaletteClient(BASE, KEY) as client, pytest.raises(ConflictError, match="of kind helm"):
        client.register([entry()], None)


@responses.activate
def test_401_is_a_clear_auth_error_without_the_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    responses.get(f"{BASE}/v1/registries/metadata", json={"message": f"bad key {KEY}"}, status=401)
    with PaletteClient(BASE, KEY) as client, pytest.raises(AuthError) as info:
        client.register([entry()], RegistryAuth("bob", PASSWORD))
    message = str(info.value)
    assert "401" in message and "/v1/registries/metadata" in message and "API key" in message
    assert KEY not in message + caplog.text and PASSWORD not in message + caplog.text


@responses.activate
def test_server_errors_never_echo_secrets(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    metadata()
    echo = {"code": "Invalid", "message": f"password {PASSWORD} rejected for key {KEY}"}
    responses.post(f"{BASE}/v1/registries/oci/basic", json=echo, status=400)
    with PaletteClient(BASE, KEY) as client, pytest.raises(OperationError) as info:
        client.register([entry()], RegistryAuth("bob", PASSWORD))
    message = str(info.value)
    assert message.startswith("Palette POST /v1/registries/oci/basic: 400: password *** rejected")
    for text in (message, caplog.text, repr(RegistryAuth("bob", PASSWORD))):
        assert KEY not in text and PASSWORD not in text


@responses.activate
def test_unreachable_palette_and_redirects_are_operation_errors() -> None:
    with (
        PaletteClient("https://nowhere.test", KEY) as client,
        pytest.raises(OperationError) as info,
    ):
        client.register([entry()], None)  # responses refuses unregistered URLs
    message = str(info.value)  # the call, the host and the cause, after the retry budget
    assert message.startswith("Palette GET /v1/registries/metadata: cannot reach nowhere.test")
    assert "ConnectionError" in message and "(after 3 tries)" in message
    assert KEY not in str(info.value)
    responses.get(
        f"{BASE}/v1/registries/metadata", status=302, headers={"Location": "https://evil.test/"}
    )
    with PaletteClient(BASE, KEY) as client, pytest.raises(OperationError, match="302 redirect"):
        client.register([entry()], None)
    assert all(str(c.request.url).startswith(("https://palette.test", "https://nowhere")) for c in
               responses.calls)  # fmt: skip


def test_client_arguments_and_own_session() -> None:
    with pytest.raises(UsageError, match="expected https://HOST"):
        PaletteClient("palette.test", KEY)
    with pytest.raises(UsageError, match="PALETTE_API_KEY"):
        PaletteClient(BASE, "")
    a, b = PaletteClient(BASE + "/", KEY, ca_file="/tmp/ca.pem"), PaletteClient(BASE, KEY)
    assert a._http is not b._http  # each client its own transport, sessions per thread
    assert a._http.endpoint.verify == "/tmp/ca.pem" and b._http.endpoint.verify is True
    assert a._http.endpoint.base == BASE and a._prefix == ""


def test_registry_auth_from_env() -> None:
    assert registry_auth_from_env({}) is None
    auth = registry_auth_from_env(
        {"MIRROR_TARGET_USERNAME": "bob", "MIRROR_TARGET_PASSWORD": PASSWORD}
    )
    assert auth == RegistryAuth("bob", PASSWORD)
    assert PASSWORD not in repr(auth)
    with pytest.raises(UsageError) as info:
        registry_auth_from_env({"MIRROR_TARGET_PASSWORD": PASSWORD})
    assert "MIRROR_TARGET_USERNAME is not set" in str(info.value)
    assert PASSWORD not in str(info.value)
    with pytest.raises(UsageError, match="MIRROR_TARGET_PASSWORD is not set"):
        registry_auth_from_env({"MIRROR_TARGET_USERNAME": "bob"})


def test_resolve_does_not_mutate_the_openapi(openapi: dict[str, Any]) -> None:
    before = copy.deepcopy(openapi)
    body_schema(openapi, "PUT", "/v1/registries/helm/abc")
    assert openapi == before


# ---- through the CLI: import registers in Palette, keys never printed -------------------


def test_import_registers_in_palette_through_the_cli(
    openapi: dict[str, Any],
    seeded_registry: Any,
    registry: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from faultproxy import write_spec

    from mirror.cli import main

    packs = ["spectro-packs/archive/*"]
    spec = write_spec(tmp_path / "spec.yaml", seeded_registry.url, repositories=packs)
    bundle = tmp_path / "b.tar.zst"
    assert main(["export", str(spec), "-o", str(bundle), "--cache-dir", str(tmp_path / "c")]) == 0
    capsys.readouterr()
    monkeypatch.setenv("PALETTE_API_KEY", KEY)
    monkeypatch.setenv("MIRROR_TARGET_USERNAME", "admin")
    monkeypatch.setenv("MIRROR_TARGET_PASSWORD", PASSWORD)
    args = ["import", str(bundle), "--target", registry.url, "--allow-unsigned"]
    args += ["--catalog", str(tmp_path / "cat.json"), "--palette-url", BASE, "--json"]
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        rsps.add_passthru("http://127.0.0.1")
        rsps.get(f"{BASE}/v1/registries/metadata", json={"items": []})
        rsps.post(f"{BASE}/v1/registries/oci/basic", json={"uid": "u-1"}, status=201)
        assert main(args) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["palette"] == [{"name": "Lab", "kind": "oci", "uid": "u-1", "action": "created"}]
        palette = [c for c in rsps.calls if c.request.url.startswith(BASE)]
        body = json.loads(palette[1].request.body)
        jsonschema.Draft4Validator(
            body_schema(openapi, "POST", "/v1/registries/oci/basic")
        ).validate(body)
        assert body["spec"]["baseContentPath"] == "production"
        assert body["spec"]["providerType"] == "pack"
    captured = capsys.readouterr()
    assert KEY not in json.dumps(out) + captured.out + captured.err
    assert PASSWORD not in json.dumps(out) + captured.out + captured.err
    assert PASSWORD not in (tmp_path / "cat.json").read_text()


def test_import_with_palette_url_needs_the_api_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mirror.cli.importing import _palette
    from mirror.errors import UsageError

    monkeypatch.delenv("PALETTE_API_KEY", raising=False)
    with pytest.raises(UsageError, match="PALETTE_API_KEY"):
        _palette(BASE, None)


@responses.activate
def test_palette_is_on_the_one_retry_rule() -> None:
    """A 502 twice, then an answer; a 429's Retry-After is what the clock is asked to wait."""
    slept: list[float] = []
    policy = RetryPolicy(sleep=slept.append)
    url = f"{BASE}/v1/registries/metadata"
    responses.get(url, status=502)
    responses.get(url, status=429, headers={"Retry-After": "1"})
    responses.get(url, json={"items": [{"name": "a", "uid": "u1", "scope": "system"}]})
    with PaletteClient(BASE, KEY, retry=policy) as client:
        assert set(client.existing()) == {"a"}
    assert len(responses.calls) == 3
    assert len(slept) == 2 and 0.75 <= slept[1] <= 1.25  # Retry-After: 1, jittered
    assert all(c.request.headers["ApiKey"] == KEY for c in responses.calls)


@responses.activate
def test_palette_gives_up_after_the_budget_with_one_line() -> None:
    policy = RetryPolicy(sleep=lambda _s: None)
    responses.get(f"{BASE}/v1/registries/metadata", status=503)
    with PaletteClient(BASE, KEY, retry=policy) as client, pytest.raises(OperationError) as info:
        client.existing()
    assert len(responses.calls) == policy.attempts
    assert str(info.value).startswith("Palette GET /v1/registries/metadata: ")
    assert "503" in str(info.value) and KEY not in str(info.value)


# ---- a Palette that answers badly (the import-side sweep, stop 31) -----------------------


@responses.activate
def test_a_create_is_sent_once_even_when_its_answer_is_lost() -> None:
    """A 502 after Palette created the registry: a retry made a second one. The POST goes
    once; the error says it may exist, and the next import updates it by name."""
    metadata()
    responses.post(f"{BASE}/v1/registries/oci/basic", status=502)
    policy = RetryPolicy(sleep=lambda s: None)
    with PaletteClient(BASE, KEY, retry=policy) as client, pytest.raises(OperationError) as info:
        client.register([entry()], None)
    posts = [c for c in responses.calls if c.request.method == "POST"]
    assert len(posts) == 1
    assert str(info.value) == (  # the call named once, not again by the transport
        "Palette POST /v1/registries/oci/basic: 502; "
        "it may have been created: importing again updates it by name"
    )


@pytest.mark.parametrize(
    "answer",
    [
        {"body": "<html>SSO login</html>", "status": 200, "content_type": "text/html"},
        {"body": "", "status": 200},
        {"json": {}, "status": 202},
        {"json": {"uid": {"x": 1}}, "status": 201},
        {"json": {"uid": "../../v1/users/me?x="}, "status": 201},
    ],
)
@responses.activate
def test_a_create_without_a_uid_registered_nothing(answer: dict[str, Any]) -> None:
    """An SSO page, an empty or shapeless 2xx: nothing was registered, so it is no success."""
    metadata()
    responses.post(f"{BASE}/v1/registries/oci/basic", **answer)
    with PaletteClient(BASE, KEY) as client, pytest.raises(OperationError, match="not a registry"):
        client.register([entry()], None)


@responses.activate
def test_a_listed_uid_is_checked_before_it_becomes_a_path() -> None:
    """A uid of `../../v1/users/me?x=` sent the registry's password to another API path."""
    metadata({"name": entry().name, "uid": "../../../v1/users/me?x=", "scope": "system"})
    with PaletteClient(BASE, KEY) as client, pytest.raises(OperationError) as info:
        client.register([entry()], RegistryAuth("bob", PASSWORD))
    assert "not a registry uid" in str(info.value) and PASSWORD not in str(info.value)
    assert [c.request.method for c in responses.calls] == ["GET"]


@pytest.mark.parametrize("listed", [False, True], ids=["created", "listed"])
@responses.activate
def test_a_uid_that_echoes_the_api_key_is_not_printed(listed: bool) -> None:
    """A server answering a create with `{"uid": <the ApiKey header>}` put the key in the
    import's result, and so in its --json document: the key fits a uid's pattern."""
    if listed:
        metadata({"name": entry().name, "uid": f"x{KEY}", "scope": "system"})
    else:
        metadata()
        responses.post(f"{BASE}/v1/registries/oci/basic", json={"uid": KEY}, status=201)
    with PaletteClient(BASE, KEY) as client, pytest.raises(OperationError) as info:
        client.register([entry()], None)
    assert "it holds the API key" in str(info.value) and KEY not in str(info.value)


def test_logins_that_are_not_utf8_are_one_line() -> None:
    """Set in a Latin-1 locale, a password cannot travel in Palette's JSON nor as the
    registry reads basic auth; it was an internal error (UnicodeEncodeError)."""
    latin1 = os.fsdecode(b"caf\xe9")
    with pytest.raises(UsageError, match="MIRROR_TARGET_PASSWORD is not UTF-8 text"):
        registry_auth_from_env({"MIRROR_TARGET_USERNAME": "bob", "MIRROR_TARGET_PASSWORD": latin1})
    assert registry_auth_from_env(
        {"MIRROR_TARGET_USERNAME": "bob", "MIRROR_TARGET_PASSWORD": "café"}
    ) == RegistryAuth("bob", "café")


@responses.activate
def test_listings_of_the_wrong_shape_are_one_line() -> None:
    responses.get(f"{BASE}/v1/registries/metadata", json={"items": 5})
    with PaletteClient(BASE, KEY) as client, pytest.raises(OperationError, match="not a list"):
        client.existing()
    # An item skipped for its shape would be created again: a duplicate. One line instead.
    for bad in ({"name": ["Lab"], "uid": "u1"}, {"name": "Lab", "kind": ["helm"], "uid": "u1"}):
        responses.replace(
            responses.GET, f"{BASE}/v1/registries/metadata", json={"items": [bad, {"name": "a"}]}
        )
        with PaletteClient(BASE, KEY) as client, pytest.raises(OperationError, match="name and"):
            client.existing()
    responses.replace(
        responses.GET,
        f"{BASE}/v1/registries/metadata",
        json={"items": [{"name": "a", "uid": "u2", "kind": None}]},
    )
    with PaletteClient(BASE, KEY) as client:
        assert set(client.existing()) == {"a"}


@pytest.mark.parametrize("key", ["PALKEY-a1b2\n", "PAL KEY", "PALKEY-\tx", "PALKEY-é"])
def test_an_api_key_that_cannot_travel_in_a_header_is_refused_first(key: str) -> None:
    """requests' own error quoted the key, line break and all, after the whole push."""
    from mirror.palette import check_api_key

    with pytest.raises(UsageError) as info:
        check_api_key(key)
    assert "PALETTE_API_KEY holds" in str(info.value) and key.strip() not in str(info.value)
    with pytest.raises(UsageError):
        PaletteClient(BASE, key)


@pytest.mark.parametrize(
    "echo",
    [
        "map[password:{folded}]",  # Go prints a map with its spaces folded
        "&quot;password&quot;: &quot;{html}&quot;",
        "password {raw} and more",
    ],
)
@responses.activate
def test_echoes_in_other_spellings_are_scrubbed(echo: str) -> None:
    """A password with two spaces, an ampersand and a quote, echoed back folded, HTML-escaped
    or as is: none of it shown (the scrub ran after whitespace was folded)."""
    import html

    password = 'Tr0ub4dor&3  "secret"pw'
    text = echo.format(raw=password, folded=" ".join(password.split()), html=html.escape(password))
    metadata()
    responses.post(f"{BASE}/v1/registries/oci/basic", json={"message": text}, status=400)
    with PaletteClient(BASE, KEY) as client, pytest.raises(OperationError) as info:
        client.register([entry()], RegistryAuth("bob", password))
    message = str(info.value)
    assert "***" in message
    for piece in ("Tr0ub4dor", "secret"):
        assert piece not in message, message


def test_a_palette_failure_leaves_no_record_so_the_import_can_run_again(
    seeded_registry: Any,
    registry: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Palette ran after the records: a 503 there left a chain's bundle recorded as
    applied, and every rerun was refused as a replay (exit 3) with Palette never told."""
    from faultproxy import export_chain_start

    from mirror.cli import main

    written = export_chain_start(seeded_registry.url, tmp_path)
    monkeypatch.setenv("PALETTE_API_KEY", KEY)
    catalog = tmp_path / "far" / "cat.json"
    args = ["import", str(written), "--target", registry.url, "--allow-unsigned"]
    args += ["--catalog", str(catalog), "--palette-url", BASE]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_passthru("http://127.0.0.1")
        rsps.get(f"{BASE}/v1/registries/metadata", json={"items": []})
        rsps.post(f"{BASE}/v1/registries/oci/basic", status=503)
        assert main(args) == 1
        assert "may have been created" in capsys.readouterr().err
        assert not catalog.exists() and not list(catalog.parent.glob("imported-*"))
        rsps.replace(responses.POST, f"{BASE}/v1/registries/oci/basic", json={"uid": "u-1"})
        assert main(args) == 0
    assert catalog.exists() and (catalog.parent / "imported-chains.json").exists()
    assert main(args) == 3  # and now, applied, it is a replay like any other
