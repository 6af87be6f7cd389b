"""The operator's day: safe defaults and honest messages (issue 16, items 1 and 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from faultproxy import isolated_env, mirror, write_spec
from test_bundle_support import Keys, build_bundle, make_keys

PASSWORD = "operator"


@pytest.fixture(scope="module", autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with isolated_env(tmp_path_factory, set_env={"MIRROR_KEY_PASSWORD": PASSWORD}):
        yield


def test_an_unsigned_export_says_so_and_removes_an_older_sig(
    seeded_registry: Any, tmp_path: Path
) -> None:
    spec = write_spec(tmp_path / "s.yaml", seeded_registry.url, repositories=["images/web"])
    out = tmp_path / "b.tar.zst"
    assert mirror("keygen", "--output-dir", tmp_path, "--name", "k").rc == 0
    signed = mirror("export", spec, "-o", out, "--key", tmp_path / "k.key")
    assert signed.rc == 0 and (tmp_path / "b.tar.zst.sig").is_file()
    assert "unsigned" not in signed.err
    again = mirror("export", spec, "-o", out)
    assert again.rc == 0
    assert "note: the bundle is unsigned: import refuses it without --allow-unsigned" in again.err
    assert f"note: replacing {out}" in again.err
    assert not (tmp_path / "b.tar.zst.sig").exists()  # else verify would blame the key
    assert mirror("verify", out, "--allow-unsigned").rc == 0


def test_a_damaged_file_is_called_damaged_not_a_key_problem(tmp_path: Path) -> None:
    k: Keys = make_keys(tmp_path)
    bundle = build_bundle(tmp_path / "b.tar.zst", k)
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 0x01
    bundle.write_bytes(bytes(data))
    run = mirror("verify", bundle, "--key", k.pub_path)
    assert run.rc == 3
    line = run.error_line()
    assert "damaged or altered" in line and "differs from b.tar.zst.sha256" in line
    assert "does not verify with key" not in line
    (tmp_path / "b.tar.zst.sha256").unlink()  # no sidecar to tell: the signature speaks
    assert "signature does not verify" in mirror("verify", bundle, "--key", k.pub_path).err


def test_import_says_where_the_catalog_went_and_that_palette_was_untouched(
    seeded_registry: Any, registry: Any, tmp_path: Path
) -> None:
    spec = write_spec(tmp_path / "s.yaml", seeded_registry.url, repositories=["images/web"])
    out = tmp_path / "b.tar.zst"
    assert mirror("export", spec, "-o", out).rc == 0
    catalog = tmp_path / "cat.json"
    run = mirror("import", out, "--target", registry.url, "--allow-unsigned", "--catalog", catalog)
    assert run.rc == 0, run.err
    assert f"system-scope catalog: {catalog}; Palette itself was not changed" in run.out


def test_no_spec_says_it_takes_every_default_registry_before_any_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mirror.errors import NotFoundError
    from mirror.spec import default_registries

    asked: list[Any] = []

    def discover_nothing(spec: Any, **kwargs: Any) -> Any:
        asked.append(spec)
        raise NotFoundError("stopped before the first request (test)")

    monkeypatch.setattr("mirror.export.discover_all", discover_nothing)
    run = mirror("export", "--dry-run")
    assert run.rc == 1 and len(asked) == 1
    names = [r.name for r in default_registries()]
    assert len(names) == len(asked[0].registries) == 6
    note = run.err.splitlines()[0]
    assert note.startswith("note: no spec or --preset: exporting all 6 default registries (")
    assert all(name in note for name in names) and "--dry-run shows the plan first" in note
    quiet = mirror("export", "--dry-run", "--registry", names[0])
    assert "note: no spec" not in quiet.err  # a registry chosen by name is a choice
