"""Bundle specs: defaults as data, one-line errors with file and pointer, presets, selection."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from mirror import spec as specmod
from mirror.errors import SpecError, UsageError
from mirror.formats import schema_path
from mirror.spec import (
    BundleSpec,
    Registry,
    default_registries,
    load_preset,
    load_spec,
    select,
)

FIPS_NAME = "Palette Registry FIPS"
SIX = {
    "Bitnami": ("helm", "https://charts.bitnami.com/bitnami", None, None),
    "Public Spectro Helm Repo": ("helm", "https://spectrocloud.github.io/helm-charts", None, None),
    "Public Repo": ("pack", "https://registry.spectrocloud.com", None, None),
    "Palette Registry": (
        "oci",
        "415789037893.dkr.ecr.us-east-1.amazonaws.com",
        "production",
        "pack",
    ),
    FIPS_NAME: ("oci", "415789037893.dkr.ecr.us-west-2.amazonaws.com", "production-fips", "pack"),
    "Palette Community Registry": (
        "oci",
        "415789037893.dkr.ecr.us-east-1.amazonaws.com",
        "community",
        "pack",
    ),
}


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def spec_error(tmp_path: Path, doc: object) -> str:
    path = write(tmp_path, yaml.safe_dump(doc))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: /")
    return message[len(str(path)) + 2 :]


# ---------------------------------------------------------------- defaults


def test_six_default_rows_with_fips_only_on_the_fips_registry() -> None:
    rows = [r.to_row("default") for r in default_registries()]
    assert len(rows) == 6
    for row in rows:
        assert set(row) == {"name", "kind", "url", "basePath", "fips", "scope", "providerType"}
        kind, url, base, provider = SIX[row["name"]]
        assert (row["kind"], row["url"], row["basePath"], row["providerType"]) == (
            kind,
            url,
            base,
            provider,
        )
        assert row["fips"] is (row["name"] == FIPS_NAME)
        assert row["scope"] == "default"


def test_defaults_round_trip_through_the_registry_schema() -> None:
    schema = json.loads(schema_path("registry.schema.json").read_text())
    for registry in default_registries():
        jsonschema.Draft202012Validator(schema).validate(registry.to_json())
        assert specmod._registry_from_json(registry.to_json()) == registry


def test_broken_defaults_file_is_reported_with_pointer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = write(tmp_path, "registries:\n  - {name: X, kind: oci}\n", "defaults.yaml")
    monkeypatch.setattr(specmod, "_DEFAULTS_FILE", bad)
    with pytest.raises(UsageError, match=r"defaults\.yaml: /registries/0: 'url' is a required"):
        default_registries()


def test_every_shipped_schema_is_valid_2020_12() -> None:
    """mirror builds validators without checking the schemas: this is where they are."""
    names = sorted(p.name for p in (Path(__file__).parents[1] / "schemas").glob("*.json"))
    assert len(names) >= 5
    for name in names:
        schema = json.loads(schema_path(name).read_text())
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema", name
        jsonschema.Draft202012Validator.check_schema(schema)


def test_schemas_share_the_registry_shape() -> None:
    registry = json.loads(schema_path("registry.schema.json").read_text())
    bundle = json.loads(schema_path("bundle-spec.schema.json").read_text())
    entry = bundle["$defs"]["registryEntry"]
    assert entry["properties"] == registry["properties"]
    assert entry["additionalProperties"] is False
    assert {k: v for k, v in bundle["$defs"].items() if k != "registryEntry"} == registry["$defs"]


# ---------------------------------------------------------------- schema errors

BAD_SPECS = [
    ({"registries": [{"name": "x", "kind": "ocii", "url": "h"}]},
     "/registries/0/kind: 'ocii' is not one of ['oci', 'helm', 'pack']"),
    ({"registries": [{"name": "x", "kind": "ocii"}]},
     "/registries/0/kind: 'ocii' is not one of ['oci', 'helm', 'pack']"),
    ({"registries": [{"name": "x", "kind": "oci", "urll": "h", "url": "h"}]},
     "/registries/0: Additional properties are not allowed ('urll' was unexpected)"),
    ({"registry": [], "registries": [{"name": "Bitnami"}]},
     "/: Additional properties are not allowed ('registry' was unexpected)"),
    ({"name": "x"}, "/: a spec needs registries, images, or both"),
    ({"registries": []}, "/registries: [] should be non-empty"),
    ({"registries": [{"kind": "oci", "url": "h"}]}, "/registries/0: 'name' is a required property"),
    ({"registries": [{"name": "x", "kind": "oci"}]}, "/registries/0: 'url' is a required property"),
    ({"registries": [{"name": "x", "kind": "helm"}]},
     "/registries/0: 'url' is a required property"),
    ({"registries": [{"name": "x", "kind": "pack", "url": "h", "path": "."}]},
     "/registries/0: a registry takes url or path, not both"),
    ({"registries": [{"name": "x", "kind": "pack"}]},
     "/registries/0: a pack registry needs url (a legacy pack server) or path (pack folders)"),
    ({"registries": [{"name": "x", "kind": "oci", "url": "h", "path": "."}]},
     "/registries/0: a registry takes url or path, not both"),
    ({"registries": [{"name": "x", "kind": "helm", "url": "h", "providerType": "pack"}]},
     "/registries/0: providerType applies to kind oci only"),
    ({"registries": [{"name": "x", "kind": "oci", "url": "h", "providerType": "chart"}]},
     "/registries/0/providerType: 'chart' is not one of ['pack', 'helm', 'zarf', 'image']"),
    ({"registries": [{"name": "x", "kind": "oci", "url": "h", "charts": [{"name": "a"}]}]},
     "/registries/0: charts apply to kind helm only; oci and pack filter with repositories"),
    ({"registries": [{"name": "x", "kind": "oci", "url": "h", "tags": {"latest": 0}}]},
     "/registries/0/tags/latest: 0 is less than the minimum of 1"),
    ({"registries": [{"name": "x", "kind": "oci", "url": "h", "tags": {"newest": 1}}]},
     "/registries/0/tags: Additional properties are not allowed ('newest' was unexpected)"),
    ({"registries": [{"name": "x", "kind": "oci", "url": "h", "auth": {"usernameEnv": "U"}}]},
     "/registries/0/auth: 'passwordEnv' is a required property"),
    ({"registries": [{"name": "x", "kind": "oci", "url": "h",
                      "auth": {"usernameEnv": "U", "passwordEnv": "my password"}}]},
     "/registries/0/auth/passwordEnv: 'my password' does not match '^[A-Za-z_][A-Za-z0-9_]*$'"),
    ({"registries": [{"name": "x", "kind": "oci", "url": "h", "platforms": ["amd64"]}]},
     "/registries/0/platforms/0: 'amd64' does not match"),
    ({"registries": [{"name": "x", "kind": "oci", "url": "h", "basePath": "Production/"}]},
     "/registries/0/basePath: 'Production/' does not match"),
    ({"fips": "yes", "registries": [{"name": "Bitnami"}]}, "/fips: 'yes' is not of type 'boolean'"),
    ({"registries": [{"name": "x", "kind": "helm", "url": "h", "charts": [{"nam": "a"}]}]},
     "/registries/0/charts/0: Additional properties are not allowed ('nam' was unexpected)"),
]  # fmt: skip


@pytest.mark.parametrize(("doc", "expected"), BAD_SPECS)
def test_schema_errors_name_file_and_pointer(tmp_path: Path, doc: object, expected: str) -> None:
    assert spec_error(tmp_path, doc).startswith(expected)


SEMANTIC = [
    ({"name": "x", "kind": "oci", "url": "h", "tags": {"include": ["^1\\.", "("]}},
     "/registries/0/tags/include/1: bad regular expression '('"),
    ({"name": "x", "kind": "oci", "url": "h", "tags": {"exclude": ["[a-"]}},
     "/registries/0/tags/exclude/0: bad regular expression '[a-'"),
    ({"name": "x", "kind": "oci", "url": "https://bob:hunter2@reg.example"},
     "/registries/0/url: credentials don't belong in a url"),
    ({"name": "Foo"}, "/registries/0/name: unknown registry 'Foo'; known: Bitnami, "),
    ({"name": "Public Repo", "path": "."}, "/registries/0: a registry takes url or path, not both"),
    ({"name": "Bitnami", "providerType": "pack"},
     "/registries/0: providerType applies to kind oci only"),
    ({"name": "x", "kind": "pack", "path": "no-such-dir"}, "/registries/0/path: no such directory"),
]  # fmt: skip


@pytest.mark.parametrize(("entry", "expected"), SEMANTIC)
def test_semantic_errors_name_file_and_pointer(
    tmp_path: Path, entry: dict[str, object], expected: str
) -> None:
    message = spec_error(tmp_path, {"registries": [entry]})
    assert message.startswith(expected)
    assert "hunter2" not in message


@pytest.mark.parametrize("where", ["tags", "charts"])
def test_bad_semver_range_is_a_spec_error(tmp_path: Path, where: str) -> None:
    pytest.importorskip("mirror.formats.semver")
    entry: dict[str, object]
    if where == "tags":
        entry = {"name": "x", "kind": "oci", "url": "h", "tags": {"semver": ">=banana"}}
        pointer = "/registries/0/tags/semver"
    else:
        entry = {"name": "x", "kind": "helm", "url": "h", "charts": [{"semver": ">=banana"}]}
        pointer = "/registries/0/charts/0/semver"
    assert spec_error(tmp_path, {"registries": [entry]}).startswith(
        f"{pointer}: bad semver range '>=banana'"
    )


def test_long_instances_are_cut_to_one_short_line(tmp_path: Path) -> None:
    message = spec_error(tmp_path, [{"name": "x" * 50}] * 40)
    assert message.startswith("/: [{") and message.endswith("...") and len(message) < 320


def test_duplicate_name_in_one_spec(tmp_path: Path) -> None:
    doc = {"registries": [{"name": "Bitnami"}, {"name": "Public Repo"}, {"name": "Bitnami"}]}
    assert spec_error(tmp_path, doc) == (
        "/registries/2/name: duplicate registry 'Bitnami' (first at /registries/0)"
    )


def test_unknown_name_lists_the_known_ones(tmp_path: Path) -> None:
    message = spec_error(tmp_path, {"registries": [{"name": "Bitnami"}, {"name": "Foo"}]})
    assert message.startswith("/registries/1/name: unknown registry 'Foo'; known: ")
    for name in SIX:
        assert name in message


def test_bad_yaml_gives_line_number(tmp_path: Path) -> None:
    path = write(tmp_path, "registries:\n  - name: a\n   kind: [oci\n")
    with pytest.raises(SpecError, match=rf"^{re.escape(str(path))}: line 3, column \d+: "):
        load_spec(path)


def test_bad_json_gives_line_number(tmp_path: Path) -> None:
    path = write(tmp_path, '{"registries": [\n  {"name": "Bitnami"},\n]}', "spec.json")
    with pytest.raises(SpecError, match=rf"^{re.escape(str(path))}: line 3, column 1: "):
        load_spec(path)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"missing\.yaml: cannot read: No such file"):
        load_spec(tmp_path / "missing.yaml")
    with pytest.raises(SpecError, match=r": cannot read: Is a directory"):
        load_spec(tmp_path)
    with pytest.raises(SpecError, match=r"empty\.yaml: the spec is empty"):
        load_spec(write(tmp_path, "", "empty.yaml"))
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(SpecError, match=r"bin\.yaml: cannot read"):
        load_spec(binary)


# ---------------------------------------------------------------- loading


def test_override_merges_over_the_default(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name: packs\nregistries:\n"
        "  - name: Palette Registry\n    repositories: ['spectro-packs/archive/ubuntu*']\n",
    )
    spec = load_spec(path)
    (registry,) = spec.registries
    default = next(r for r in default_registries() if r.name == "Palette Registry")
    assert registry.url == default.url and registry.base_path == "production"
    assert registry.provider_type == "pack"
    assert registry.repositories == ("spectro-packs/archive/ubuntu*",)
    assert spec.name == "packs" and spec.fips is False


def test_full_entry_from_the_contract(tmp_path: Path) -> None:
    (tmp_path / "packs").mkdir()
    path = write(
        tmp_path,
        r"""
name: demo
registries:
  - name: Lab
    kind: oci
    url: http://127.0.0.1:5000
    basePath: production
    providerType: pack
    repositories: ["spectro-packs/archive/*"]
    tags: {include: ["^1\\."], exclude: [], semver: ">=1.0.0 <3.0.0", latest: 2}
    platforms: ["linux/amd64", "linux/arm/v7"]
    auth: {usernameEnv: REG_USER, passwordEnv: REG_PASS}
  - name: Bitnami
    charts: [{name: "nginx*", semver: ">=15.0.0", latest: 3}]
  - name: Local packs
    kind: pack
    path: ./packs
""",
    )
    lab, bitnami, local = load_spec(path).registries
    assert lab.tags.include == (r"^1\.",) and lab.tags.latest == 2
    assert lab.auth is not None and lab.auth.password_env == "REG_PASS"
    assert lab.platforms == ("linux/amd64", "linux/arm/v7")
    assert bitnami.charts[0].name == "nginx*" and bitnami.url == SIX["Bitnami"][1]
    assert local.path == str((tmp_path / "packs").resolve())


def test_spec_without_name_takes_the_file_stem(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, "registries: [{name: Bitnami}]\n", "edge-site.yaml"))
    assert spec.name == "edge-site"


def test_yaml_and_json_agree_and_to_json_round_trips(tmp_path: Path) -> None:
    original = load_preset("palette-default")
    as_json = write(tmp_path, json.dumps(original.to_json()), "again.json")
    again = load_spec(as_json)
    assert again == original
    assert again.digest == original.digest
    schema = json.loads(schema_path("bundle-spec.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(original.to_json())


def test_digest_is_sha256_of_canonical_json_and_tracks_content() -> None:
    spec = load_preset("vertex-fips")
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", spec.digest)
    moved = BundleSpec(spec.name, spec.fips, spec.registries, allow_non_fips=True)
    assert moved.digest != spec.digest
    assert BundleSpec(spec.name, spec.fips, spec.registries).digest == spec.digest


# ---------------------------------------------------------------- presets


def test_presets() -> None:
    everything = load_preset("palette-default")
    assert [r.name for r in everything.registries] == list(SIX)
    assert everything.registries == tuple(default_registries())
    vertex = load_preset("vertex-fips")
    assert vertex.fips is True
    assert [r.name for r in vertex.registries] == [FIPS_NAME]


@pytest.mark.parametrize("name", ["nope", "../bundles/vertex-fips", "", "Palette-Default"])
def test_unknown_preset_lists_the_available_ones(name: str) -> None:
    with pytest.raises(UsageError, match=r"unknown preset .*available: .*palette-default") as err:
        load_preset(name)
    assert "vertex-fips" in str(err.value)


# ---------------------------------------------------------------- selection


def names(spec: BundleSpec) -> list[str]:
    return [r.name for r in spec.registries]


def test_select_defaults_and_fips_filter() -> None:
    everything = select([], [], fips=False, allow_non_fips=False)
    assert names(everything) == list(SIX) and everything.name == "bundle"
    fips = select([], [], fips=True, allow_non_fips=False)
    assert names(fips) == [FIPS_NAME] and fips.fips is True
    assert names(select([], [], fips=True, allow_non_fips=True)) == [FIPS_NAME]


def test_select_by_registry_name_from_defaults() -> None:
    picked = select([], ["Public Repo", "Bitnami", "Bitnami"], fips=False, allow_non_fips=False)
    assert names(picked) == ["Public Repo", "Bitnami"]
    with pytest.raises(UsageError, match=r"--registry 'Nope': .*known: Bitnami, "):
        select([], ["Nope"], fips=False, allow_non_fips=False)


def test_fips_refuses_non_fips_unless_allowed() -> None:
    with pytest.raises(UsageError) as info:
        select([], [FIPS_NAME, "Bitnami"], fips=True, allow_non_fips=False)
    assert "Bitnami" in str(info.value) and "--allow-non-fips" in str(info.value)
    assert FIPS_NAME not in str(info.value)
    allowed = select([], [FIPS_NAME, "Bitnami"], fips=True, allow_non_fips=True)
    assert names(allowed) == [FIPS_NAME, "Bitnami"]
    assert allowed.fips is True and allowed.allow_non_fips is True


def test_fips_from_a_spec_applies_to_its_selection(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, "fips: true\nregistries: [{name: Palette Registry}]\n"))
    with pytest.raises(UsageError, match=r"non-FIPS registries: Palette Registry; pass"):
        select([spec], [], fips=False, allow_non_fips=False)
    allowed = load_spec(
        write(tmp_path, "fips: true\nallowNonFips: true\nregistries: [{name: Bitnami}]\n", "b.yaml")
    )
    chosen = select([allowed], [], fips=False, allow_non_fips=False)
    assert chosen.fips and chosen.allow_non_fips and names(chosen) == ["Bitnami"]


def test_select_from_specs(tmp_path: Path) -> None:
    everything, vertex = load_preset("palette-default"), load_preset("vertex-fips")
    single = select([everything], [], fips=False, allow_non_fips=False)
    assert single.name == "palette-default" and names(single) == list(SIX)
    # vertex-fips makes the whole selection FIPS; its registry is shared, identical.
    both = select([vertex, everything], [FIPS_NAME], fips=False, allow_non_fips=False)
    assert both.name == "bundle" and names(both) == [FIPS_NAME] and both.fips
    other = load_spec(write(tmp_path, "registries: [{name: Bitnami}]\n"))
    with pytest.raises(UsageError, match=r"--registry 'Public Repo': not in the given specs"):
        select([other], ["Public Repo"], fips=False, allow_non_fips=False)


def test_same_name_different_content_across_specs_is_a_spec_error(tmp_path: Path) -> None:
    first = load_spec(write(tmp_path, "registries: [{name: Bitnami}]\n", "a.yaml"))
    second = load_spec(
        write(tmp_path, "registries: [{name: Bitnami, charts: [{name: nginx}]}]\n", "b.yaml")
    )
    with pytest.raises(SpecError, match=r"b\.yaml: registry 'Bitnami' differs .*a\.yaml"):
        select([first, second], [], fips=False, allow_non_fips=False)


def test_registry_row_nulls() -> None:
    row = Registry(name="n", kind="pack", path="/p").to_row("default")
    assert row["url"] is None and row["basePath"] is None and row["providerType"] is None


def _public_key(path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from mirror.keys import public_pem

    path.write_bytes(public_pem(ec.generate_private_key(ec.SECP256R1()).public_key()))


def test_images_cosign_key_resolves_beside_the_spec_and_must_exist(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    _public_key(tmp_path / "keys" / "images.pub")
    loaded = load_spec(
        write(tmp_path, "name: s\nimages: [a:1]\nimagesCosignKey: keys/images.pub\n")
    )
    assert loaded.images_cosign_key == str(tmp_path / "keys" / "images.pub")
    assert loaded.to_json()["imagesCosignKey"] == loaded.images_cosign_key  # in the digest
    assert "imagesCosignKey" not in load_spec(write(tmp_path, "name: s\nimages: [a:1]\n")).to_json()
    assert "no such file" in spec_error(
        tmp_path, {"name": "s", "images": ["a:1"], "imagesCosignKey": "nope.pub"}
    )


def test_two_specs_with_different_image_keys_are_refused(tmp_path: Path) -> None:
    for name in ("a", "b"):
        _public_key(tmp_path / f"{name}.pub")
    specs = [
        load_spec(
            write(tmp_path, f"name: {n}\nimages: [a:1]\nimagesCosignKey: {n}.pub\n", f"{n}.yaml")
        )
        for n in ("a", "b")
    ]
    assert (
        select(specs[:1], [], fips=False, allow_non_fips=False).images_cosign_key
        == specs[0].images_cosign_key
    )
    with pytest.raises(SpecError, match="imagesCosignKey"):
        select(specs, [], fips=False, allow_non_fips=False)


# ---------------------------------------------------------------- what later steps parse


def _reg(**fields: object) -> dict[str, object]:
    return {"name": "s", "registries": [{"name": "r", "kind": "oci", **fields}]}


@pytest.mark.parametrize(
    ("doc", "pointer", "words"),
    [
        (_reg(kind="helm", url="http://[zz"), "/registries/0/url", "not a URL"),
        (_reg(kind="helm", url="http://127.0.0.1:99999"), "/registries/0/url", "not a URL"),
        (_reg(kind="helm", url="http://127.0.0.1:abc"), "/registries/0/url", "not a URL"),
        (_reg(kind="helm", url="ftp://127.0.0.1/charts"), "/registries/0/url", "http(s)"),
        (_reg(url="ftp://127.0.0.1/"), "/registries/0/url", "not a registry URL"),
        (_reg(url="http://127.0.0.1:99999"), "/registries/0/url", "not a registry URL"),
        ({"name": "s", "images": ["a:1"], "upstreams": {"docker.io": "ftp://x"}},
         "/upstreams/docker.io", "not a registry URL"),
        ({"name": "s", "images": ["a:1"], "upstreams": {"docker.io": "http://[zz"}},
         "/upstreams/docker.io", "not a registry URL"),
        ({"name": "s", "images": ["a:1"], "upstreams": {"ghcr.io": "http://h:99999/p"}},
         "/upstreams/ghcr.io", "not a registry URL"),
        ({"name": "s", "images": ["a:1", "UPPER/Case:tag"]}, "/images/1", "UPPER/Case:tag"),
        ({"name": "s", "images": ["nginx@sha256:zz"]}, "/images/0", "nginx@sha256:zz"),
        ({"name": "s", "images": ["ghcr.io//x:1"]}, "/images/0", "ghcr.io//x:1"),
    ],
)  # fmt: skip
def test_what_export_parses_later_is_checked_with_its_place(
    tmp_path: Path, doc: dict[str, object], pointer: str, words: str
) -> None:
    """A Helm url `http://[zz` was an internal error (exit 1) in export and images; an
    oci or upstream url of another scheme, a bad key file and a malformed image of the
    spec's own list were exit 2 without the file and field, or no error at all (the image
    became a note, the export exit 0)."""
    message = spec_error(tmp_path, doc)
    assert message.startswith(f"{pointer}: ") and words in message, message


def test_a_cosign_key_that_is_not_a_key_is_refused_with_its_place(tmp_path: Path) -> None:
    (tmp_path / "passwd").write_text("root:x:0:0::/root:/bin/bash\n")
    message = spec_error(tmp_path, _reg(url="http://127.0.0.1:5000", cosignKey="passwd"))
    assert message.startswith("/registries/0/cosignKey: ") and "PEM" in message, message
    doc = {"name": "s", "images": ["a:1"], "imagesCosignKey": "passwd"}
    assert spec_error(tmp_path, doc).startswith("/imagesCosignKey: ")


@pytest.mark.parametrize("suffix", ["yaml", "json"])
def test_a_key_twice_is_refused_not_the_last_kept(tmp_path: Path, suffix: str) -> None:
    """`tags: {include: ...}` then `tags: {exclude: ...}` kept the second alone: the
    include filter was dropped without a word and the export took every tag."""
    entry = '{"name": "r", "kind": "oci", "url": "http://127.0.0.1:5000"'
    twice = f'{entry}, "tags": {{"include": ["^1"]}}, "tags": {{"exclude": ["^2"]}}}}'
    path = write(tmp_path, f'{{"name": "s", "registries": [{twice}]}}', f"s.{suffix}")
    with pytest.raises(SpecError, match="'tags' appears twice") as info:
        load_spec(path)
    assert "\n" not in str(info.value)
    once = f'{{"name": "s", "registries": [{entry}, "tags": {{"include": ["^1"]}}}}]}}'
    assert load_spec(write(tmp_path, once, f"t.{suffix}")).registries[0].tags.include == ("^1",)


def test_yaml_merge_keys_still_override(tmp_path: Path) -> None:
    text = (
        "name: s\nbase: &b {kind: oci, url: 'http://127.0.0.1:5000'}\n"
        "registries:\n  - <<: *b\n    name: r\n    url: 'http://127.0.0.1:5001'\n"
    )
    with pytest.raises(SpecError, match="base"):  # unknown top-level key, not a duplicate
        load_spec(write(tmp_path, text))
    text = "name: s\nregistries:\n  - <<: {kind: oci, url: 'http://h:1'}\n    name: r\n    url: 'http://h:2'\n"
    assert load_spec(write(tmp_path, text)).registries[0].url == "http://h:2"


def test_upstreams_keyed_by_a_docker_hub_alias_are_docker_io(tmp_path: Path) -> None:
    """Images name Docker Hub as docker.io: an `index.docker.io` key matched none of them,
    so nginx was pulled from Docker Hub past the proxy the spec named."""
    doc = {"name": "s", "images": ["nginx:1.25"], "upstreams": {}}
    doc["upstreams"] = {"Registry-1.Docker.IO": "http://127.0.0.1:5000"}
    spec = load_spec(write(tmp_path, yaml.safe_dump(doc)))
    assert spec.upstream("docker.io") == "http://127.0.0.1:5000"
    doc["upstreams"] = {"docker.io": "http://127.0.0.1:5000", "index.docker.io": "http://h:1"}
    assert "the same registry as 'docker.io'" in spec_error(tmp_path, doc)
