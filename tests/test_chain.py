"""The 24-hour sync as a one-way chain of deltas (issue 18, item 2), on real registries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from faultproxy import Reg, isolated_env, mirror, write_spec

from mirror.bundle.manifest import parse_manifest
from mirror.bundle.reader import BundleReader
from mirror.lab.content import make_image, make_layer
from mirror.lab.seed import client_for, seed_artifact


@pytest.fixture(scope="module", autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with isolated_env(tmp_path_factory):
        yield


def _day(reg: Any, n: int) -> Any:
    client = client_for(reg)
    try:
        layers = [make_layer("chain/base", 32 * 1024), make_layer(f"chain/day{n}", 4096)]
        return seed_artifact(
            client, "production/images/app", f"1.{n}", make_image("a", layers=layers)
        )
    finally:
        client.close()


def test_a_week_crosses_one_way_as_deltas_in_order(tmp_path: Path, registry_factory: Any) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    spec = write_spec(tmp_path / "s.yaml", src.url, repositories=["images/app"])
    state, outbox = tmp_path / "state", tmp_path / "outbox"
    outbox.mkdir()
    bundles, seeded = [], []
    for n in range(1, 5):
        seeded.append(_day(src, n))
        run = mirror("export", spec, "-o", outbox / "palette-{seq}.tar.zst", "--state", state,
                     "--cache-dir", tmp_path / "cache", "--json")  # fmt: skip
        assert run.rc == 0, run.err
        bundles.append(Path(run.json()["output"]))
    assert [b.name for b in bundles] == [f"palette-{n:06d}.tar.zst" for n in range(1, 5)]
    chains = [parse_manifest(BundleReader(b).head()[0]).chain for b in bundles]
    assert [c.sequence for c in chains if c] == [1, 2, 3, 4]
    assert chains[0] and chains[0].base is None and all(c and c.base for c in chains[1:])
    assert len({c.id for c in chains if c}) == 1
    delta = parse_manifest(BundleReader(bundles[3]).head()[0])
    assert delta.external, "a delta leaves out what the chain already sent"

    imp = ["--target", dst.url, "--allow-unsigned", "--catalog", tmp_path / "far" / "cat.json"]
    assert mirror("import", bundles[0], *imp).rc == 0
    gap = mirror("import", bundles[2], *imp)  # day 2's media was lost
    assert gap.rc == 1 and "2 not imported yet" in gap.error_line()
    assert Reg(dst.url).tags("production/images/app") == ["1.1"]  # nothing written
    for b in bundles[1:]:
        run = mirror("import", b, *imp)
        assert run.rc == 0, run.err
    replay = mirror("import", bundles[1], *imp)
    assert replay.rc == 3 and "already applied" in replay.error_line()
    reg = Reg(dst.url)
    for s in seeded:
        assert reg.digest("production/images/app", s.tag) == s.digest
    assert reg.dangling() == []


def test_full_restarts_the_chain_and_a_failed_export_leaves_state_as_it_was(
    tmp_path: Path, registry_factory: Any
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    spec = write_spec(tmp_path / "s.yaml", src.url, repositories=["images/app"])
    state = tmp_path / "state"
    base = ["--state", state, "--cache-dir", tmp_path / "cache", "--json"]
    _day(src, 1)
    first = mirror("export", spec, "-o", tmp_path / "a-{seq}.tar.zst", *base)
    _day(src, 2)
    second = mirror("export", spec, "-o", tmp_path / "a-{seq}.tar.zst", *base)
    assert first.rc == 0 and second.rc == 0
    chain_file = next(state.glob("*/chain.json"))
    before = chain_file.read_bytes()
    src.stop()  # the source is gone: the export fails, and the chain must not move
    failed = mirror("export", spec, "-o", tmp_path / "a-{seq}.tar.zst", *base)
    assert failed.rc == 1 and chain_file.read_bytes() == before
    assert not (tmp_path / "a-000003.tar.zst").exists()
    assert json.loads(before)["sequence"] == 2

    src2 = registry_factory("anon")
    _day(src2, 3)
    spec2 = write_spec(tmp_path / "s.yaml", src2.url, repositories=["images/app"])
    full = mirror("export", spec2, "-o", tmp_path / "b-{seq}.tar.zst", *base, "--full")
    assert full.rc == 0, full.err
    restarted = parse_manifest(BundleReader(Path(full.json()["output"])).head()[0]).chain
    assert restarted is not None and restarted.sequence == 1 and restarted.base is None
    imp = ["--target", dst.url, "--allow-unsigned", "--catalog", tmp_path / "far" / "cat.json"]
    assert mirror("import", Path(second.json()["output"]), *imp).rc == 1  # never started
    assert mirror("import", Path(full.json()["output"]), *imp).rc == 0  # a full one starts it
