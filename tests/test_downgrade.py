"""Rollback protection: an older, validly signed bundle is refused (issue 15, item 6)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from faultproxy import Reg, isolated_env, mirror, write_spec

from mirror.lab.registry import LabRegistry

PASSWORD = "downgrade"


@pytest.fixture(scope="module", autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with isolated_env(tmp_path_factory, set_env={"MIRROR_KEY_PASSWORD": PASSWORD}):
        yield


def _export(spec: Path, out: Path, key: Path, epoch: int, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(epoch))
    run = mirror("export", spec, "-o", out, "--key", key, "--cache-dir", out.parent / "cache")
    assert run.rc == 0, run.err
    return out


def test_an_older_bundle_is_refused_unless_allowed(
    seeded_registry: Any, registry: LabRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert mirror("keygen", "--output-dir", tmp_path, "--name", "k").rc == 0
    key, pub = tmp_path / "k.key", tmp_path / "k.pub"
    spec = write_spec(tmp_path / "s.yaml", seeded_registry.url, repositories=["images/web"])
    old = _export(spec, tmp_path / "old.tar.zst", key, 1_700_000_000, monkeypatch)
    new = _export(spec, tmp_path / "new.tar.zst", key, 1_800_000_000, monkeypatch)
    catalog = tmp_path / "data" / "catalog.json"
    base = ["--target", registry.url, "--key", pub, "--catalog", catalog]

    assert mirror("import", new, *base).rc == 0
    assert mirror("import", new, *base).rc == 0  # the same bundle again is no downgrade
    before = Reg(registry.url).tags("production/images/web")
    run = mirror("import", old, *base, "--base-path", "elsewhere")
    assert run.rc == 3, run.err
    line = run.error_line()
    assert "--allow-downgrade" in line and "2023-11-14T22:13:20Z" in line
    assert Reg(registry.url).catalog() == ["production/images/web"]  # nothing new written
    assert Reg(registry.url).tags("production/images/web") == before

    assert mirror("import", old, *base, "--allow-downgrade").rc == 0
    record = json.loads((catalog.parent / "imported-bundles.json").read_text())
    (mark,) = record.values()
    assert mark["created"] == "2027-01-15T08:00:00Z"  # an allowed downgrade keeps the mark
    assert mirror("import", old, *base).rc == 3


def test_a_broken_record_fails_closed(
    seeded_registry: Any, registry: LabRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert mirror("keygen", "--output-dir", tmp_path, "--name", "k").rc == 0
    spec = write_spec(tmp_path / "s.yaml", seeded_registry.url, repositories=["images/web"])
    bundle = _export(spec, tmp_path / "b.tar.zst", tmp_path / "k.key", 1_800_000_000, monkeypatch)
    catalog = tmp_path / "catalog.json"
    (tmp_path / "imported-bundles.json").write_text("[" * 100_000)
    run = mirror("import", bundle, "--target", registry.url, "--key", tmp_path / "k.pub",
                 "--catalog", catalog)  # fmt: skip
    assert run.rc == 3 and "imported-bundles.json" in run.error_line()
    assert Reg(registry.url).catalog() == []
