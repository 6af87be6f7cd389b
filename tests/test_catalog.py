"""System-scope catalog: idempotent, atomic upserts; rows for `registries list`."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from pathlib import Path

import jsonschema
import pytest

from mirror.catalog import (
    CatalogEntry,
    default_catalog_path,
    list_rows,
    load_catalog,
    render_table,
    upsert,
)
from mirror.errors import OperationError, UsageError
from mirror.formats import schema_path

DIGEST = "sha256:" + "ab" * 32
OTHER_DIGEST = "sha256:" + "cd" * 32


def entry(**changes: object) -> CatalogEntry:
    base = CatalogEntry(
        name="Palette Registry",
        kind="oci",
        provider_type="pack",
        endpoint="registry.local:5000",
        base_content_path="production",
        fips=False,
        source_url="415789037893.dkr.ecr.us-east-1.amazonaws.com",
        source_base_path="production",
        bundle_digest=DIGEST,
        imported_at="2024-05-01T10:00:00Z",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def fips_entry() -> CatalogEntry:
    return entry(name="Palette Registry FIPS", fips=True)


def assert_valid_file(path: Path) -> dict[str, object]:
    doc = json.loads(path.read_text())
    schema = json.loads(schema_path("registry-catalog.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(doc)
    return doc  # type: ignore[no-any-return]


def test_default_catalog_path_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_catalog_path() == tmp_path / "mirror" / "registries.json"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for value in ("", "relative/dir"):
        monkeypatch.setenv("XDG_DATA_HOME", value)
        expected = tmp_path / "home" / ".local" / "share" / "mirror" / "registries.json"
        assert default_catalog_path() == expected
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_catalog_path().parent.parent == tmp_path / "home" / ".local" / "share"


def test_missing_catalog_is_empty(tmp_path: Path) -> None:
    assert load_catalog(tmp_path / "none.json") == []
    assert list_rows("system", False, tmp_path / "none.json") == []


def test_upsert_is_idempotent_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "registries.json"
    first = upsert(path, [entry(), fips_entry()])
    assert first == [entry(), fips_entry()]
    before = path.read_bytes()
    again = upsert(path, [entry(), fips_entry()])
    assert again == first
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == ["registries.json"]
    doc = assert_valid_file(path)
    assert len(doc["registries"]) == 2  # type: ignore[arg-type]
    assert load_catalog(path) == first


def test_reimport_updates_in_place(tmp_path: Path) -> None:
    path = tmp_path / "registries.json"
    upsert(path, [entry(), fips_entry()])
    newer = entry(bundle_digest=OTHER_DIGEST, imported_at="2024-06-01T00:00:00Z")
    # Same place, spelled with a trailing slash and upper case: still the same registry.
    respelled = dataclasses.replace(newer, endpoint="REGISTRY.local:5000/")
    result = upsert(path, [respelled])
    assert [e.name for e in result] == ["Palette Registry", "Palette Registry FIPS"]
    assert result[0].bundle_digest == OTHER_DIGEST
    assert load_catalog(path) == result


def test_the_same_bundle_again_keeps_the_entry_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "registries.json"
    upsert(path, [entry(), fips_entry()])
    before, stamp = path.read_bytes(), path.stat().st_mtime_ns
    later = entry(imported_at="2024-07-01T00:00:00Z")
    assert upsert(path, [later])[0].imported_at == "2024-05-01T10:00:00Z"
    assert path.read_bytes() == before and path.stat().st_mtime_ns == stamp  # not rewritten
    moved = dataclasses.replace(later, bundle_digest=OTHER_DIGEST)
    assert upsert(path, [moved])[0].imported_at == "2024-07-01T00:00:00Z"  # new content


def test_a_catalog_this_host_wrote_is_not_validated_again_but_an_edit_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mirror.catalog as catalog_module
    from mirror.formats.schema import ValidMemo

    path, memo = tmp_path / "registries.json", ValidMemo(tmp_path / "valid.json")
    upsert(path, [entry()], memo)
    calls: list[object] = []
    real = catalog_module.schema_problem
    monkeypatch.setattr(catalog_module, "schema_problem", lambda *a: calls.append(a) or real(*a))
    assert load_catalog(path, memo) == [entry()]
    assert calls == []  # the bytes mirror validated and wrote last time
    doc = json.loads(path.read_text())
    doc["registries"][0]["kind"] = "ftp"  # a hand edit the schema forbids
    path.write_text(json.dumps(doc))
    with pytest.raises(UsageError, match=r"registries\.json: /registries/0/kind"):
        load_catalog(path, memo)
    assert len(calls) == 1


def test_fips_and_non_fips_at_one_place_stay_separate(tmp_path: Path) -> None:
    path = tmp_path / "registries.json"
    same_place = fips_entry()
    assert same_place.base_content_path == entry().base_content_path
    result = upsert(path, [entry(), same_place, entry(base_content_path="community")])
    assert [(e.fips, e.base_content_path) for e in result] == [
        (False, "production"),
        (True, "production"),
        (False, "community"),
    ]


def test_failed_write_keeps_the_old_catalog_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "registries.json"
    upsert(path, [entry()])
    before = path.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(
        OperationError, match=r"registries\.json: cannot write the catalog: No space"
    ):
        upsert(path, [fips_entry()])
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["registries.json"]


def test_concurrent_upserts_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "registries.json"
    threads = [
        threading.Thread(target=upsert, args=(path, [entry(base_content_path=f"p{i}")]))
        for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(e.base_content_path for e in load_catalog(path)) == [f"p{i}" for i in range(8)]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["registries"][0].update(fips="yes"),
         "/registries/0/fips: 'yes' is not of type 'boolean'"),
        (lambda d: d["registries"][0].update(password="hunter2"),
         "/registries/0: Additional properties are not allowed ('password' was unexpected)"),
        (lambda d: d["registries"][0]["source"].update(username="bob"),
         "/registries/0/source: Additional properties are not allowed ('username'"),
        (lambda d: d.update(version=2), "/version: 1 was expected"),
        (lambda d: d["registries"][0].update(scope="tenant"), "/registries/0/scope: 'system' was"),
        (lambda d: d["registries"][0].update(bundleDigest="md5:x"), "/registries/0/bundleDigest:"),
    ],
)  # fmt: skip
def test_invalid_catalog_names_file_and_pointer(
    tmp_path: Path, mutate: object, expected: str
) -> None:
    path = tmp_path / "registries.json"
    upsert(path, [entry()])
    doc = json.loads(path.read_text())
    mutate(doc)  # type: ignore[operator]
    path.write_text(json.dumps(doc))
    with pytest.raises(UsageError) as info:
        load_catalog(path)
    assert str(info.value).startswith(f"{path}: {expected}")
    assert "hunter2" not in str(info.value)
    with pytest.raises(UsageError):  # and upsert refuses to build on it
        upsert(path, [fips_entry()])
    assert json.loads(path.read_text()) == doc


def test_unparsable_catalog(tmp_path: Path) -> None:
    path = tmp_path / "registries.json"
    path.write_text('{"version": 1,\n "registries": [}\n')
    with pytest.raises(UsageError, match=r"registries\.json: line 2, column 17: "):
        load_catalog(path)
    with pytest.raises(UsageError, match=r"cannot read the catalog: Is a directory"):
        load_catalog(tmp_path)


def test_entries_hold_no_credentials() -> None:
    fields = {f.name for f in dataclasses.fields(CatalogEntry)}
    assert not {"username", "password", "token", "auth"} & fields
    assert not {"username", "password", "token", "auth"} & set(entry().to_json())


def test_list_rows_by_scope_and_fips(tmp_path: Path) -> None:
    path = tmp_path / "registries.json"
    upsert(path, [entry(), fips_entry()])
    default_rows = list_rows("default", False, path)
    assert len(default_rows) == 6 and {r["scope"] for r in default_rows} == {"default"}
    assert [r["name"] for r in list_rows("default", True, path)] == ["Palette Registry FIPS"]
    system = list_rows("system", False, path)
    assert system[0] == {
        "name": "Palette Registry",
        "kind": "oci",
        "url": "registry.local:5000",
        "basePath": "production",
        "fips": False,
        "scope": "system",
        "providerType": "pack",
    }
    assert [r["scope"] for r in list_rows("system", True, path)] == ["system"]
    assert len(list_rows("all", False, path)) == 8
    assert len(list_rows("all", True, path)) == 2
    with pytest.raises(UsageError, match=r"--scope 'tenant': expected one of default, system"):
        list_rows("tenant", False, path)


def test_list_rows_uses_default_catalog_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    upsert(default_catalog_path(), [fips_entry()])
    assert [r["name"] for r in list_rows("system", False, None)] == ["Palette Registry FIPS"]


def test_render_table() -> None:
    text = render_table(list_rows("default", False))
    lines = text.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "URL", "BASE", "PATH", "FIPS", "SCOPE", "PROVIDER"]
    assert len(lines) == 7 and text.endswith("\n")
    bitnami = next(line for line in lines if line.startswith("Bitnami "))
    assert bitnami.split()[1:] == ["helm", "https://charts.bitnami.com/bitnami", "-", "no",
                                   "default", "-"]  # fmt: skip
    fips = next(line for line in lines if line.startswith("Palette Registry FIPS "))
    assert "production-fips" in fips and " yes " in fips
    # columns line up: every row starts its KIND cell where the header does
    column = lines[0].index("KIND")
    assert all(line[column - 2 : column] == "  " for line in lines)
    assert render_table([]).splitlines()[1] == "(no registries)"
