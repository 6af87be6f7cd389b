"""The 24-hour sync as a one-way chain of deltas (issue 18, item 2), on real registries."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from faultproxy import BLOB_GET, FaultProxy, Reg, isolated_env, mirror, write_spec

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


# ---------------------------------------------------------------- issue 18, item 5


def _week_day(reg: Any, n: int) -> Any:
    """Day n: one new tag over the same base layer, and 4 KiB of its own."""
    client = client_for(reg)
    try:
        layers = [make_layer("week/base", 64 * 1024), make_layer(f"week/day{n}", 4096)]
        art = make_image(f"w{n}", layers=layers)
        return seed_artifact(client, "production/images/app", f"1.{n}", art)
    finally:
        client.close()


def test_a_week_of_daily_updates_crosses_one_way_refusing_every_gap_and_replay(
    tmp_path: Path, registry_factory: Any
) -> None:
    """The issue's "done when": seven days, only deltas after the first bundle; each day the
    courier also brings tomorrow's media early (a gap) and yesterday's again (a replay):
    each is refused in one line, with nothing written, and the right one goes in."""
    src, dst = registry_factory("anon"), registry_factory("anon")
    spec = write_spec(tmp_path / "s.yaml", src.url, repositories=["images/app"])
    state, outbox = tmp_path / "state", tmp_path / "outbox"
    outbox.mkdir()
    export = ["-o", outbox / "palette-{seq}.tar.zst", "--state", state]
    export += ["--cache-dir", tmp_path / "cache", "--json"]
    days, bundles = [], []
    for n in range(1, 8):
        days.append(_week_day(src, n))
        run = mirror("export", spec, *export)
        assert run.rc == 0, run.err
        bundles.append(Path(run.json()["output"]))
    manifests = [parse_manifest(BundleReader(b).head()[0]) for b in bundles]
    assert [m.chain.sequence for m in manifests if m.chain] == list(range(1, 8))
    assert manifests[0].external == () and manifests[0].chain and not manifests[0].chain.base
    base_layer = "sha256:" + hashlib.sha256(make_layer("week/base", 64 * 1024)).hexdigest()
    for m in manifests[1:]:  # a delta: the base layer stays home, each day its own 4 KiB
        assert m.chain and m.chain.base and m.external
        assert base_layer not in {f"sha256:{x.sha256}" for x in m.members}
    assert sum(b.stat().st_size for b in bundles[1:]) < bundles[0].stat().st_size

    reg = Reg(dst.url)
    imp = ["--target", dst.url, "--allow-unsigned", "--catalog", tmp_path / "far" / "cat.json"]
    for n, bundle in enumerate(bundles, 1):
        if n + 1 <= len(bundles):
            gap = mirror("import", bundles[n], *imp)  # tomorrow's, before today's
            assert gap.rc == 1 and len(gap.err.strip().splitlines()) == 1, gap.err
            line = gap.error_line()
            assert ("has not started" if n == 1 else f"{n} not imported yet") in line, line
        run = mirror("import", bundle, *imp)
        assert run.rc == 0, run.err
        replay = mirror("import", bundle, *imp)
        assert replay.rc == 3 and len(replay.err.strip().splitlines()) == 1, replay.err
        assert "already applied" in replay.error_line()
        assert sorted(reg.tags("production/images/app")) == [f"1.{d}" for d in range(1, n + 1)]
    for day in days:
        assert reg.digest("production/images/app", day.tag) == day.digest
    assert reg.dangling() == []


def test_full_in_the_middle_of_a_chain_restarts_it_on_both_sides(
    tmp_path: Path, registry_factory: Any
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    spec = write_spec(tmp_path / "s.yaml", src.url, repositories=["images/app"])
    base = ["--state", tmp_path / "state", "--cache-dir", tmp_path / "cache", "--json"]
    out: list[Path] = []
    for n, extra in ((1, []), (2, []), (3, ["--full"]), (4, [])):
        _week_day(src, n)
        run = mirror("export", spec, "-o", tmp_path / f"d{n}-{{seq}}.tar.zst", *base, *extra)
        assert run.rc == 0, run.err
        out.append(Path(run.json()["output"]))
    assert [p.name for p in out] == [
        "d1-000001.tar.zst", "d2-000002.tar.zst", "d3-000001.tar.zst", "d4-000002.tar.zst"
    ]  # fmt: skip
    chains = [parse_manifest(BundleReader(p).head()[0]).chain for p in out]
    assert chains[2] and chains[2].base is None and chains[3] and chains[3].base
    assert chains[0] and chains[2].id != chains[0].id == (chains[1] and chains[1].id)
    assert chains[3].id == chains[2].id

    imp = ["--target", dst.url, "--allow-unsigned", "--catalog", tmp_path / "far" / "cat.json"]
    assert mirror("import", out[0], *imp).rc == 0
    assert mirror("import", out[2], *imp).rc == 0  # the full one restarts it, day 2 or not
    tags = sorted(Reg(dst.url).tags("production/images/app"))
    assert tags == ["1.1", "1.2", "1.3"]  # a full bundle carries everything so far
    stale = mirror("import", out[1], *imp)  # the old chain's next delta: not this chain's
    assert stale.rc == 1 and "has not started" in stale.error_line(), stale.err
    assert mirror("import", out[3], *imp).rc == 0
    assert mirror("import", out[3], *imp).rc == 3  # and the new chain has replays refused
    assert sorted(Reg(dst.url).tags("production/images/app")) == [*tags, "1.4"]


def test_a_killed_export_leaves_the_state_as_it_was(tmp_path: Path, registry_factory: Any) -> None:
    """SIGKILL mid-fetch, as the OOM killer or a pulled plug would: no finally runs."""
    src = registry_factory("anon")
    spec = write_spec(tmp_path / "s.yaml", src.url, repositories=["images/app"])
    state = tmp_path / "state"
    args = ["-o", tmp_path / "k-{seq}.tar.zst", "--state", state, "--cache-dir", tmp_path / "c"]
    _week_day(src, 1)
    assert mirror("export", spec, *args).rc == 0
    before = {p.name: p.read_bytes() for p in sorted(state.rglob("*")) if p.is_file()}
    client = client_for(src)
    try:
        for n in range(8):  # enough new blobs that the kill lands mid-fetch
            layers = [make_layer(f"kill/{n}/{i}", 64 * 1024) for i in range(2)]
            seed_artifact(client, "production/images/app", f"2.{n}", make_image("k", layers=layers))
    finally:
        client.close()
    with FaultProxy.running(src.url) as proxy:
        proxy.add("slow", method="GET", path=BLOB_GET, delay=0.2)
        spec2 = write_spec(tmp_path / "s2.yaml", proxy.url, repositories=["images/app"])
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        proc = subprocess.Popen(
            [sys.executable, "-m", "mirror", "export", str(spec2), *map(str, args), "-j", "2"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while proxy.seen("GET", BLOB_GET) < 2 and time.monotonic() < deadline:
                assert proc.poll() is None, "the export ended before it could be killed"
                time.sleep(0.02)
            assert proxy.seen("GET", BLOB_GET) >= 2, "the export never got going"
            proc.kill()
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert proc.returncode == -9
    after = {p.name: p.read_bytes() for p in sorted(state.rglob("*")) if p.is_file()}
    assert after == before
    assert not list(tmp_path.glob("k-000002.tar.zst*"))
    again = mirror("export", spec, *args, "--json")  # the same sequence, tried again
    assert again.rc == 0, again.err
    assert Path(again.json()["output"]).name == "k-000002.tar.zst"


@pytest.mark.parametrize("form", ["FILE", "FILE.001", "every part"])
def test_a_delta_against_a_split_bundle(form: str, tmp_path: Path, registry_factory: Any) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    spec = write_spec(tmp_path / "s.yaml", src.url, repositories=["images/app"])
    cache = ["--cache-dir", tmp_path / "cache"]
    client = client_for(src)
    try:  # big enough for three 64 KiB parts
        layers = [make_layer("split/base", 160 * 1024), make_layer("split/1", 4096)]
        seed_artifact(client, "production/images/app", "1.1", make_image("s", layers=layers))
    finally:
        client.close()
    first = tmp_path / "day1.tar.zst"
    assert mirror("export", spec, "-o", first, "--split-size", "64K", *cache).rc == 0
    parts = sorted(tmp_path.glob("day1.tar.zst.0*"))
    assert len(parts) >= 3 and not first.exists()
    imp = ["--target", dst.url, "--allow-unsigned", "--catalog", tmp_path / "cat.json"]
    assert mirror("import", first, *imp).rc == 0

    new = _week_day(src, 2)
    since = {"FILE": [first], "FILE.001": [parts[0]], "every part": parts}[form]
    delta = tmp_path / "day2.tar.zst"
    args = [a for p in since for a in ("--since", p)]
    run = mirror("export", spec, "-o", delta, *args, *cache, "--json")
    assert run.rc == 0, run.err
    manifest = parse_manifest(BundleReader(delta).head()[0])
    base_layer = hashlib.sha256(make_layer("split/base", 160 * 1024)).hexdigest()
    assert base_layer not in {m.sha256 for m in manifest.members}
    assert len(manifest.since) == 1  # the parts are one base, not several
    assert mirror("import", delta, *imp).rc == 0
    assert Reg(dst.url).digest("production/images/app", "1.2") == new.digest


def test_a_base_manifest_larger_than_a_glance_is_read_as_a_manifest(
    tmp_path: Path, registry_factory: Any
) -> None:
    """Found by `make demo`: a real spec's manifest.json shows neither `members` nor
    `schemaVersion` in its first 4 KiB (sorted keys put `artifacts` first), and was taken
    for a receipt, so the second run of any real --state chain failed with exit 2."""
    src = registry_factory("anon")
    client = client_for(src)
    try:
        for n in range(24):  # about 300 bytes of manifest.json each
            art = make_image(f"m{n}", layers=[make_layer(f"many/{n}", 1024)])
            seed_artifact(client, f"production/images/many-{n:02d}", "1.0", art)
    finally:
        client.close()
    spec = write_spec(tmp_path / "s.yaml", src.url, repositories=["images/*"])
    state = ["--state", tmp_path / "state", "--cache-dir", tmp_path / "cache"]
    assert mirror("export", spec, "-o", tmp_path / "m-{seq}.tar.zst", *state).rc == 0
    sent = next((tmp_path / "state").glob("*/000001.manifest.json"))
    head = sent.read_bytes()[:4096]
    assert b'"members"' not in head and b'"schemaVersion"' not in head
    _week_day(src, 1)
    run = mirror("export", spec, "-o", tmp_path / "m-{seq}.tar.zst", *state, "--json")
    assert run.rc == 0, run.err
    assert run.json()["externalBlobs"] >= 24 * 2  # config and layer of each
    # and by hand, the same manifest.json as --since
    run = mirror("export", spec, "-o", tmp_path / "h.tar.zst", "--since", sent, *state[2:])
    assert run.rc == 0, run.err


# ---- the state folder itself -----------------------------------------------------------------


def _state(tmp_path: Path, spec: str = "My App", **doc: object) -> Any:
    from mirror.chain import STATE_FILE, ChainState

    state = ChainState(tmp_path, spec)
    if doc:
        state.folder.mkdir(parents=True, exist_ok=True)
        (state.folder / f"{1:06d}.manifest.json").write_text("{}")
        (state.folder / STATE_FILE).write_text(json.dumps(doc))
    return state


_GOOD = {"id": "a" * 32, "sequence": 1, "manifest": "000001.manifest.json"}
_GOOD["digest"] = "sha256:" + "b" * 64


@pytest.mark.parametrize(
    "bad",
    [{"id": None}, {"manifest": "../../etc/passwd"}, {"digest": "md5:x"}, {"sequence": 10**30},
     {"sequence": 0}, {"sequence": True}, {"name": 7}],
    ids=["no-id", "manifest-elsewhere", "digest", "sequence-huge", "sequence-0", "bool", "name"],
)  # fmt: skip
def test_a_chain_state_of_the_wrong_shape_is_one_line(tmp_path: Path, bad: dict[str, Any]) -> None:
    """A state without its `id` was an internal error (KeyError), and a sequence past the
    manifest schema's bound failed only after the whole fetch, as exit 3."""
    from mirror.errors import UsageError

    doc = {k: v for k, v in {**_GOOD, **bad}.items() if v is not None}
    with pytest.raises(UsageError, match="not a chain state"):
        _state(tmp_path, **doc).next(full=False)
    assert _state(tmp_path, **_GOOD).next(full=False).chain.sequence == 2


def test_two_spec_names_that_share_a_folder_do_not_share_a_chain(tmp_path: Path) -> None:
    """ "My App" and "my-app" are both my-app/: the second export became delta 2 of the
    first spec's chain, and the far side refused it for good."""
    from mirror.errors import UsageError

    _state(tmp_path, "My App", **_GOOD, name="My App")
    assert _state(tmp_path, "My App").next(full=False).chain.sequence == 2
    with pytest.raises(UsageError, match="the chain of spec 'My App', not 'my-app'"):
        _state(tmp_path, "my-app").next(full=False)


def test_one_export_of_a_chain_at_a_time(tmp_path: Path) -> None:
    """Two exports that both read sequence N wrote two different bundles N."""
    from mirror.errors import OperationError

    first, second = _state(tmp_path), _state(tmp_path)
    refused = pytest.raises(OperationError, match="another export of this chain is running")
    with first.held(), refused, second.held():
        pass
    with second.held():
        pass
