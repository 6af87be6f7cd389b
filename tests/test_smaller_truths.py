"""Issue 15, item 5: split bundles name a missing or damaged part, a delta into an empty
target writes nothing, and a pack whose repository disagrees with its pack.json is noted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import require_registry
from faultproxy import Reg, mirror, write_spec

from mirror.bundle.parts import part_path, parts_of
from mirror.lab.content import make_image, make_layer
from mirror.lab.corpus import corpus_packs
from mirror.lab.registry import LabRegistry
from mirror.lab.seed import client_for, seed_artifact

# ---- split bundles ---------------------------------------------------------------------


@pytest.fixture
def split(
    seeded_registry: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, Path]:
    """A signed bundle in 64K parts (FILE.parts.sha256 beside them), and its public key."""
    monkeypatch.setenv("MIRROR_KEY_PASSWORD", "pw")
    assert mirror("keygen", "--output-dir", tmp_path, "--name", "k").rc == 0
    spec = write_spec(
        tmp_path / "s.yaml", seeded_registry.url, repositories=["images/web"], provider=None
    )
    out = tmp_path / "b.tar.zst"
    run = mirror("export", spec, "-o", out, "--split-size", "64K", "--key", tmp_path / "k.key")
    assert run.rc == 0, run.err
    assert len(parts_of(out)) >= 4
    return out, tmp_path / "k.pub"


def _refusals(bundle: Path, pub: Path, target: str, catalog: Path) -> list[str]:
    """verify and import exit 3, inspect fails too; each says why in one line."""
    lines = []
    for argv, codes in (
        (("verify", bundle, "--key", pub), (3,)),
        (("import", bundle, "--target", target, "--key", pub, "--catalog", catalog), (3,)),
        (("inspect", bundle), (1, 3)),
    ):
        run = mirror(*argv)
        assert run.rc in codes, (argv[0], run.rc, run.err)
        lines.append(run.error_line())
    return lines


@pytest.mark.parametrize("sums", [True, False], ids=["with-sums", "without-sums"])
def test_a_missing_middle_part_is_named(
    split: tuple[Path, Path], registry: Any, tmp_path: Path, sums: bool
) -> None:
    out, pub = split
    if not sums:
        out.with_name(out.name + ".parts.sha256").unlink()
    gone = part_path(out, 2)
    gone.unlink()
    for line in _refusals(out, pub, registry.url, tmp_path / "c.json"):
        assert f"{gone}: missing" in line
    assert Reg(registry.url).catalog() == []


@pytest.mark.parametrize("sums", [True, False], ids=["with-sums", "without-sums"])
def test_a_set_that_ends_early_names_the_next_part(
    split: tuple[Path, Path], registry: Any, tmp_path: Path, sums: bool
) -> None:
    out, pub = split
    if not sums:
        out.with_name(out.name + ".parts.sha256").unlink()
    last = parts_of(out)[-1]
    last.unlink()
    for line in _refusals(out, pub, registry.url, tmp_path / "c.json"):
        assert f"{last}: missing" in line
    assert Reg(registry.url).catalog() == []


def test_a_damaged_part_is_named_by_the_parts_sums(
    split: tuple[Path, Path], registry: Any, tmp_path: Path
) -> None:
    out, pub = split
    bad = part_path(out, 2)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad.write_bytes(bytes(data))
    for argv in (
        ("verify", out, "--key", pub),
        ("import", out, "--target", registry.url, "--key", pub, "--catalog", tmp_path / "c.json"),
    ):
        run = mirror(*argv)
        assert run.rc == 3
        assert f"{bad}: does not match {out.name}.parts.sha256" in run.error_line()
    assert Reg(registry.url).catalog() == []


def test_a_whole_split_bundle_still_verifies_against_its_sums(split: tuple[Path, Path]) -> None:
    out, pub = split
    assert mirror("verify", out, "--key", pub).rc == 0
    assert mirror("inspect", out).rc == 0


def test_a_stray_part_beyond_the_sums_is_named(split: tuple[Path, Path]) -> None:
    out, pub = split
    stray = part_path(out, len(parts_of(out)) + 1)
    stray.write_bytes(b"left over")
    run = mirror("verify", out, "--key", pub)
    assert run.rc == 3
    assert f"{stray}: not listed in {out.name}.parts.sha256" in run.error_line()


# ---- a delta into an empty target ------------------------------------------------------

BASE = make_layer("truths-base", 300_000)


def _push(reg: LabRegistry, tag: str, extra: bytes) -> None:
    image = make_image(f"app-{tag}", layers=[BASE, extra])
    seed_artifact(client_for(reg), "production/images/app", tag, image)


def test_a_delta_into_an_empty_target_writes_nothing(registry_factory: Any, tmp_path: Path) -> None:
    source: LabRegistry = registry_factory()
    first: LabRegistry = registry_factory()
    empty: LabRegistry = registry_factory()
    _push(source, "1.0.0", make_layer("truths-one", 200_000))
    spec = write_spec(tmp_path / "s.yaml", source.url, repositories=["images/app"], provider=None)
    full, delta, receipt = tmp_path / "full.tar.zst", tmp_path / "delta.tar.zst", tmp_path / "r"
    cache = ("--cache-dir", tmp_path / "cache")
    imp = ("--allow-unsigned", "--catalog", tmp_path / "c.json")
    assert mirror("export", spec, "-o", full, *cache).rc == 0
    assert mirror("import", full, "--target", first.url, *imp, "--receipt", receipt).rc == 0
    _push(source, "2.0.0", make_layer("truths-two", 100_000))  # new blobs to push
    assert mirror("export", spec, "-o", delta, "--since", receipt, *cache).rc == 0

    for dry in ((), ("--dry-run",)):  # a dry run says the same, and writes nothing either
        run = mirror("import", delta, "--target", empty.url, *imp, *dry)
        assert Reg(empty.url).catalog() == []  # no repository, so no blob and no tag
        assert run.rc == 1, run.err
        assert "import the bundle its receipt came from first" in run.error_line()
    assert mirror("import", delta, "--target", first.url, *imp).rc == 0  # where the base is


# ---- a pack under the wrong repository name -------------------------------------------


def test_a_pack_under_another_name_or_tag_is_noted(
    registry: LabRegistry, corpus: Path, tmp_path: Path
) -> None:
    require_registry()
    (name, version, art) = corpus_packs(corpus, 1, smallest=True)[0]
    client = client_for(registry)
    archive = "production/spectro-packs/archive"
    seed_artifact(client, f"{archive}/{name}", version, art, "pack")  # as Palette wants it
    seed_artifact(client, f"{archive}/not-{name}", version, art, "pack")
    seed_artifact(client, f"{archive}/{name}", "0.0.0-other", art, "pack")
    spec = write_spec(tmp_path / "s.yaml", registry.url, repositories=["spectro-packs/archive/*"])

    wrong_name = f"pack {archive}/not-{name}:{version}: pack.json says name {name!r}"
    wrong_tag = f"pack {archive}/{name}:0.0.0-other: pack.json says version {version!r}"
    for plan in (("--dry-run",), ("-o", tmp_path / "b.tar.zst")):
        run = mirror("export", spec, *plan, "--no-images", "--json")
        assert run.rc == 0, run.err
        notes = [n for n in run.json()["notes"] if "pack.json says" in n]
        assert len(notes) == 2 and notes[0].startswith(wrong_tag), notes
        assert notes[1].startswith(wrong_name), notes
        assert f"note: {wrong_name}" in run.err
