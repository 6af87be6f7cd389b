"""Deltas by blob against what the far side really holds: `export --since RECEIPT`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require_registry
from faultproxy import write_spec

from mirror.bundle.reader import BundleReader
from mirror.cli import main
from mirror.lab.content import make_image, make_layer
from mirror.lab.registry import LabRegistry, running_registry
from mirror.lab.seed import client_for, seed_artifact
from mirror.registry.client import RegistryClient

BASE = make_layer("delta-base", 400_000)


def _push(reg: LabRegistry, tag: str, extra: bytes) -> str:
    image = make_image(f"app-{tag}", layers=[BASE, extra])
    return seed_artifact(client_for(reg), "production/images/app", tag, image).digest


@pytest.fixture
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRegistry]:
    require_registry()
    with running_registry(tmp_path_factory.mktemp("src")) as reg:
        yield reg


def _spec(tmp_path: Path, reg: LabRegistry) -> Path:
    return write_spec(tmp_path / "spec.yaml", reg.url, repositories=["images/app"], provider=None)


def test_delta_ships_only_what_the_far_side_lacks(
    source: LabRegistry,
    registry_factory: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target: LabRegistry = registry_factory()
    _push(source, "1.0.0", make_layer("delta-one", 300_000))
    full, delta = tmp_path / "full.tar.zst", tmp_path / "delta.tar.zst"
    receipt, catalog = tmp_path / "receipt.json", tmp_path / "cat.json"
    cache = ["--cache-dir", str(tmp_path / "cache")]
    spec = str(_spec(tmp_path, source))

    assert main(["export", spec, "-o", str(full), *cache]) == 0
    imp = ["--target", target.url, "--allow-unsigned", "--catalog", str(catalog)]
    assert main(["import", str(full), *imp, "--receipt", str(receipt)]) == 0

    new = _push(source, "2.0.0", make_layer("delta-two", 200_000))  # shares BASE
    capsys.readouterr()
    assert main(["export", spec, "-o", str(delta), "--since", str(receipt), "--json", *cache]) == 0
    summary = json.loads(capsys.readouterr().out)
    # 1.0.0 is selected again, and held whole: its config and both layers stay home
    # (BASE is shared with 2.0.0); manifests always travel, import walks them.
    assert summary["externalBlobs"] == 3
    assert summary["externalBytes"] > 600_000
    assert delta.stat().st_size < full.stat().st_size

    manifest = json.loads(BundleReader(delta).head()[0])
    assert manifest["since"] and len(manifest["external"]) == 3
    assert {e["heldAt"] for e in manifest["external"]} == {"production/images/app"}
    assert main(["verify", str(delta), "--allow-unsigned"]) == 0
    assert main(["inspect", str(delta)]) == 0
    assert "Delta      against 1 receipt(s): 3 blobs" in capsys.readouterr().out

    capsys.readouterr()
    assert main(["import", str(delta), *imp, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["pushedBlobs"] == 2  # the new layer and config, nothing more
    client = RegistryClient(target.url)
    assert client.resolve("production/images/app", "2.0.0").digest == new  # type: ignore[union-attr]


def test_delta_into_a_target_without_the_base_fails_cleanly(
    source: LabRegistry,
    registry_factory: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first: LabRegistry = registry_factory()
    empty: LabRegistry = registry_factory()
    _push(source, "1.0.0", make_layer("delta-one", 300_000))
    full, delta = tmp_path / "full.tar.zst", tmp_path / "delta.tar.zst"
    receipt = tmp_path / "receipt.json"
    cache = ["--cache-dir", str(tmp_path / "cache")]
    spec = str(_spec(tmp_path, source))
    assert main(["export", spec, "-o", str(full), *cache]) == 0
    imp = ["--allow-unsigned", "--catalog", str(tmp_path / "c.json")]
    assert main(["import", str(full), "--target", first.url, *imp, "--receipt", str(receipt)]) == 0
    _push(source, "2.0.0", make_layer("delta-two", 200_000))
    assert main(["export", spec, "-o", str(delta), "--since", str(receipt), *cache]) == 0
    capsys.readouterr()

    assert main(["import", str(delta), "--target", empty.url, *imp]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "import the bundle its receipt came from" in err
    client = RegistryClient(empty.url)
    for tag in ("1.0.0", "2.0.0"):  # no tag points at content the target lacks
        assert client.resolve("production/images/app", tag) is None


def test_a_bad_receipt_is_a_usage_error(
    source: LabRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "receipt.json"
    bad.write_text('{"version": 1, "target": "x"}')
    args = ["export", str(_spec(tmp_path, source)), "-o", str(tmp_path / "b"), "--since", str(bad)]
    assert main(args) == 2
    assert "receipt.json" in capsys.readouterr().err


def test_a_cacheless_delta_is_the_same_bundle_and_fetches_nothing_held(
    source: LabRegistry,
    registry_factory: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`--no-cache` starts fetching before the plan is done; what the far side holds (the
    delta's external blobs) is still never fetched, and the bundle is the cached one's."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    target: LabRegistry = registry_factory()
    _push(source, "1.0.0", make_layer("cacheless-one", 300_000))
    spec, receipt = str(_spec(tmp_path, source)), tmp_path / "receipt.json"
    full = tmp_path / "full.tar.zst"
    assert main(["export", spec, "-o", str(full), "--cache-dir", str(tmp_path / "c0")]) == 0
    imp = ["--target", target.url, "--allow-unsigned", "--catalog", str(tmp_path / "cat.json")]
    assert main(["import", str(full), *imp, "--receipt", str(receipt)]) == 0
    _push(source, "2.0.0", make_layer("cacheless-two", 200_000))  # shares BASE

    cached, streamed = tmp_path / "cached.tar.zst", tmp_path / "streamed.tar.zst"
    delta = ["export", spec, "--since", str(receipt), "--json"]
    assert main([*delta, "-o", str(cached), "--cache-dir", str(tmp_path / "c1")]) == 0
    capsys.readouterr()
    assert (
        main([*delta, "-o", str(streamed), "--cache-dir", str(tmp_path / "c2"), "--no-cache"]) == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["externalBlobs"] == 3 and summary["externalBytes"] > 600_000
    assert 200_000 <= summary["downloadedBytes"] < 300_000  # the new layer and its config
    assert streamed.read_bytes() == cached.read_bytes()


@pytest.mark.parametrize("how", ["another-cache", "no-cache-state"])
def test_a_base_whose_manifests_this_cache_lacks_still_makes_a_delta(
    how: str, source: LabRegistry, registry_factory: Any, tmp_path: Path
) -> None:
    """`--since day1/manifest.json` with another (or pruned) cache, and the second run of
    a `--state --no-cache` chain, were exit 3 'negative size': the base's manifests were
    not in the cache, and an unknown size was a Descriptor of -1. Without them the delta
    simply carries what lies under those roots again, and imports after the base."""
    target: LabRegistry = registry_factory()
    _push(source, "1.0.0", make_layer("lack-one", 100_000))
    spec = str(_spec(tmp_path, source))
    imp = ["--target", target.url, "--allow-unsigned", "--catalog", str(tmp_path / "c.json")]
    if how == "another-cache":
        full, delta = tmp_path / "full.tar.zst", tmp_path / "delta.tar.zst"
        assert main(["export", spec, "-o", str(full), "--cache-dir", str(tmp_path / "a")]) == 0
        (tmp_path / "day1.json").write_bytes(BundleReader(full).head()[0])
        _push(source, "2.0.0", make_layer("lack-two", 50_000))
        since = ["--since", str(tmp_path / "day1.json"), "--cache-dir", str(tmp_path / "b")]
        assert main(["export", spec, "-o", str(delta), *since]) == 0
    else:
        state = ["--state", str(tmp_path / "st"), "--no-cache", "--cache-dir", str(tmp_path / "c")]
        out = str(tmp_path / "p-{seq}.tar.zst")
        assert main(["export", spec, "-o", out, *state]) == 0
        _push(source, "2.0.0", make_layer("lack-two", 50_000))
        assert main(["export", spec, "-o", out, *state]) == 0
        full, delta = tmp_path / "p-000001.tar.zst", tmp_path / "p-000002.tar.zst"
    assert main(["import", str(full), *imp]) == 0
    assert main(["import", str(delta), *imp]) == 0
    assert RegistryClient(target.url).resolve("production/images/app", "2.0.0") is not None
