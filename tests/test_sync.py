"""Deltas against what was sent, for one-way links (issue 18, item 1).

`export --since` takes an earlier bundle or its manifest.json, not only a receipt: nothing
has to come back across the gap. The delta leaves out every blob the base carried.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from faultproxy import Reg, isolated_env, mirror, write_spec

from mirror.bundle.manifest import parse_manifest
from mirror.bundle.reader import BundleReader
from mirror.lab.content import make_image, make_layer
from mirror.lab.registry import LabRegistry
from mirror.lab.seed import client_for, seed_artifact


@pytest.fixture(scope="module", autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with isolated_env(tmp_path_factory):
        yield


def _seed(reg: LabRegistry, name: str, tag: str) -> Any:
    client = client_for(reg)
    try:
        base = make_layer("sync/base", 64 * 1024)  # shared by every image: the delta skips it
        art = make_image(name, layers=[base, make_layer(f"sync/{name}/{tag}", 8 * 1024)])
        return seed_artifact(client, f"production/images/{name}", tag, art)
    finally:
        client.close()


@pytest.mark.parametrize("base_form", ["bundle", "manifest.json"])
def test_a_delta_against_what_was_sent_crosses_one_way(
    base_form: str, tmp_path: Path, registry_factory: Any
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    _seed(src, "app", "1.0")
    spec = write_spec(tmp_path / "s.yaml", src.url, repositories=["images/*"])
    cache = tmp_path / "cache"
    first = tmp_path / "day1.tar.zst"
    assert mirror("export", spec, "-o", first, "--cache-dir", cache).rc == 0
    base = first
    if base_form == "manifest.json":
        base = tmp_path / "day1.manifest.json"
        base.write_bytes(BundleReader(first).head()[0])
    imp = ["--target", dst.url, "--allow-unsigned", "--catalog", tmp_path / "cat.json"]
    assert mirror("import", first, *imp, "--base-path", "edge").rc == 0

    new = _seed(src, "app", "1.1")
    delta = tmp_path / "day2.tar.zst"
    run = mirror("export", spec, "-o", delta, "--cache-dir", cache, "--since", base, "--json")
    assert run.rc == 0, run.err
    doc = run.json()
    assert doc["externalBlobs"] >= 3 and doc["externalBytes"] >= 64 * 1024
    manifest = parse_manifest(BundleReader(delta).head()[0])
    base_layer = hashlib.sha256(make_layer("sync/base", 64 * 1024)).hexdigest()
    sent = {m.sha256 for m in manifest.members}
    assert base_layer not in sent  # carried on day 1: left out, never fetched again
    assert base_layer in {e.digest.split(":")[1] for e in manifest.external}
    assert manifest.since and manifest.external
    assert all(e.held_at.startswith("~/") for e in manifest.external)

    run = mirror("import", delta, *imp, "--base-path", "edge", "--json")
    assert run.rc == 0, run.err
    reg = Reg(dst.url)
    assert reg.digest("edge/production/images/app", "1.1") == new.digest
    assert reg.dangling() == []


def test_a_since_that_is_nothing_we_know_is_exit_2(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("name: t\nimages: [ghcr.io/acme/tool:1]\n")
    run = mirror("export", spec, "-o", tmp_path / "b.tar.zst", "--since", tmp_path / "none")
    assert run.rc == 2 and "no such receipt, bundle or manifest.json" in run.error_line()
