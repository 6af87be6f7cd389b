"""Pack folders as a source, and the contract's names: deterministic, and loud on bad input."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import pytest

from mirror.discovery import packdir
from mirror.discovery.interface import Selection
from mirror.errors import UsageError
from mirror.formats.pack import read_pack_json_from_archive
from mirror.oci import mediatypes as mt
from mirror.oci.descriptor import Descriptor
from mirror.oci.names import oci_tag, pack_repository, slug
from mirror.spec import Registry, TagFilter

CORPUS_PICK = ("antrea-1.9.0", "argocd-3.3.5", "crossplane-1.16")


def make_pack(root: Path, folder: str, name: str | None, version: str | None, **extra: str) -> Path:
    pack = root / folder
    pack.mkdir(parents=True)
    doc: dict[str, str] = {"layer": "addon", **extra}
    if name is not None:
        doc["name"] = name
    if version is not None:
        doc["version"] = version
    (pack / "pack.json").write_text(json.dumps(doc))
    (pack / "values.yaml").write_text(f"pack:\n  name: {name}\n")
    return pack


def reg_for(path: Path | str, name: str = "Team Packs", **kw: object) -> Registry:
    return Registry(name=name, kind="pack", path=str(path), **kw)  # type: ignore[arg-type]


def digests(sel: Selection) -> dict[str, str]:
    return {f.ref: f.desc.digest for f in sel.found}


def copy_corpus(corpus: Path, dest: Path, names: tuple[str, ...] = CORPUS_PICK) -> Path:
    for name in names:
        shutil.copytree(corpus / name, dest / name)
    return dest


# ---- names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("Palette Registry", "palette-registry"),
        ("  My__Packs!! (legacy) ", "my-packs-legacy"),
        ("team-a", "team-a"),
        ("--Edge--", "edge"),
        ("Äpfel 2", "pfel-2"),
        ("123", "123"),
    ],
)
def test_slug(name: str, want: str) -> None:
    assert slug(name) == want


@pytest.mark.parametrize("name", ["", "---", "!!!", "ÄÖÜ"])
def test_slug_of_nothing_usable_is_a_usage_error(name: str) -> None:
    with pytest.raises(UsageError, match="registry name"):
        slug(name)


@pytest.mark.parametrize(
    ("version", "want"),
    [
        ("1.2.3", "1.2.3"),
        ("1.0.0+build.5", "1.0.0_build.5"),
        ("v1.28.0-rc.1", "v1.28.0-rc.1"),
        ("0.30.0-5.5.2026", "0.30.0-5.5.2026"),
        ("_x", "_x"),
        ("a" * 128, "a" * 128),
    ],
)
def test_oci_tag(version: str, want: str) -> None:
    assert oci_tag(version) == want


@pytest.mark.parametrize("version", ["", ".1", "-1", "1.0 beta", "1/2", "a" * 129, "1.0:x"])
def test_oci_tag_refuses_what_no_registry_accepts(version: str) -> None:
    with pytest.raises(UsageError, match="OCI tag"):
        oci_tag(version)


def test_pack_repository_follows_the_contract() -> None:
    assert pack_repository("Team A", "nginx") == "team-a/spectro-packs/archive/nginx"
    with pytest.raises(UsageError):
        pack_repository("!!", "nginx")


# ---- discovery -----------------------------------------------------------------------


def test_found_is_an_oras_pack_at_the_contract_place(tmp_path: Path) -> None:
    make_pack(tmp_path / "packs", "whatever-folder", "nginx", "1.2.0-spectro.1")
    sel = packdir.discover(reg_for(tmp_path / "packs"))
    [f] = sel.found
    assert (f.repository, f.tag, f.kind) == (
        "spectro-packs/archive/nginx",
        "1.2.0-spectro.1",
        "pack",
    )
    assert f.ref == "team-packs/spectro-packs/archive/nginx:1.2.0-spectro.1"
    doc = json.loads(f.source.fetch_manifest(f.desc))
    assert doc["config"]["mediaType"] == mt.UNKNOWN_CONFIG
    [layer] = doc["layers"]
    assert layer["mediaType"] == mt.OCI_LAYER_TAR
    assert layer["annotations"][mt.ANN_TITLE] == "nginx-1.2.0-spectro.1.tar.gz"
    with f.source.fetch(Descriptor.from_json(layer)) as stream:
        info = read_pack_json_from_archive(io.BytesIO(stream.read()), "test")
    assert info is not None and (info.name, info.version) == ("nginx", "1.2.0-spectro.1")


def test_same_folder_same_digest_twice_and_after_touch(tmp_path: Path, corpus: Path) -> None:
    packs = copy_corpus(corpus, tmp_path / "packs")
    first = digests(packs_of(packs))
    assert len(first) == len(CORPUS_PICK)
    assert digests(packs_of(packs)) == first
    for path in packs.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    assert digests(packs_of(packs)) == first
    # ...while a content change does show, so the comparison above can fail.
    with (packs / "antrea-1.9.0" / "values.yaml").open("a") as fh:
        fh.write("\n# changed\n")
    changed = digests(packs_of(packs))
    assert changed != first
    assert sum(changed[k] != first[k] for k in first) == 1


def packs_of(path: Path) -> Selection:
    return packdir.discover(reg_for(path))


def test_same_pack_in_two_checkouts_gives_same_digest(tmp_path: Path, corpus: Path) -> None:
    shutil.copytree(corpus / "antrea-1.9.0", tmp_path / "a" / "antrea-1.9.0")
    shutil.copytree(corpus / "antrea-1.9.0", tmp_path / "b" / "renamed-folder")
    assert digests(packs_of(tmp_path / "a")) == digests(packs_of(tmp_path / "b"))


def test_whole_corpus_discovers_with_warnings_as_notes(tmp_path: Path, corpus: Path) -> None:
    packs = tmp_path / "packs"
    shutil.copytree(corpus, packs)
    sel = packs_of(packs)
    assert len(sel.found) == len(list(corpus.glob("*/pack.json")))
    assert len({f.ref for f in sel.found}) == len(sel.found)
    assert all(f.path.startswith("team-packs/spectro-packs/archive/") for f in sel.found)
    assert any("antrea-1.9.0: eol is blank" in n for n in sel.notes)


def test_path_may_be_one_pack_folder(tmp_path: Path) -> None:
    pack = make_pack(tmp_path, "p", "redis", "7.0.0")
    [f] = packs_of(pack).found
    assert f.ref == "team-packs/spectro-packs/archive/redis:7.0.0"


def test_relative_path_is_relative_to_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_pack(tmp_path / "packs", "p", "redis", "7.0.0")
    monkeypatch.chdir(tmp_path)
    assert [f.tag for f in packdir.discover(reg_for("packs")).found] == ["7.0.0"]


def test_filters_pick_names_and_versions(tmp_path: Path) -> None:
    root = tmp_path / "packs"
    for v in ("1.0.0", "1.1.0", "2.0.0"):
        make_pack(root, f"nginx-{v}", "nginx", v)
    make_pack(root, "redis", "redis", "7.0.0")
    reg = reg_for(root, repositories=("ngin*",), tags=TagFilter(semver=">=1.1.0"))
    sel = packdir.discover(reg)
    assert sorted(f.tag for f in sel.found) == ["1.1.0", "2.0.0"]
    assert {f.repository for f in sel.found} == {"spectro-packs/archive/nginx"}
    with pytest.raises(UsageError, match="no pack name matches"):
        packdir.discover(reg_for(root, repositories=("postgres",)))


def test_folders_without_pack_json_are_noted_hidden_ones_ignored(tmp_path: Path) -> None:
    root = tmp_path / "packs"
    make_pack(root, "p", "redis", "7.0.0")
    (root / "docs").mkdir()
    (root / ".git").mkdir()
    (root / "README.md").write_text("x")
    sel = packs_of(root)
    assert len(sel.found) == 1
    assert [n for n in sel.notes if "skipped" in n] == [
        f"registry Team Packs: pack folder {root}: skipped docs/: no pack.json"
    ]


# ---- bad folders ---------------------------------------------------------------------


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"pack folder .*nope: not a directory"):
        packs_of(tmp_path / "nope")


def test_a_file_is_not_a_folder(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(UsageError, match="not a directory"):
        packs_of(tmp_path / "f")


def test_folder_without_packs(tmp_path: Path) -> None:
    (tmp_path / "packs" / "empty").mkdir(parents=True)
    with pytest.raises(UsageError, match=r"packs: no pack folders"):
        packs_of(tmp_path / "packs")


@pytest.mark.parametrize(
    ("name", "version", "missing"), [(None, "1.0.0", "name"), ("x", None, "version")]
)
def test_pack_without_name_or_version(
    tmp_path: Path, name: str | None, version: str | None, missing: str
) -> None:
    make_pack(tmp_path / "packs", "broken", name, version)
    with pytest.raises(UsageError, match=rf"broken: pack.json has no {missing}"):
        packs_of(tmp_path / "packs")


def test_pack_without_values_yaml(tmp_path: Path) -> None:
    pack = make_pack(tmp_path / "packs", "novalues", "x", "1.0.0")
    (pack / "values.yaml").unlink()
    with pytest.raises(UsageError, match=r"novalues: pack directory has no values\.yaml"):
        packs_of(tmp_path / "packs")


def test_same_name_and_version_twice(tmp_path: Path) -> None:
    make_pack(tmp_path / "packs", "one", "nginx", "1.0.0")
    make_pack(tmp_path / "packs", "two", "nginx", "1.0.0")
    with pytest.raises(UsageError, match=r"one and .*two are both nginx:1.0.0"):
        packs_of(tmp_path / "packs")


def test_no_path(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="needs a path"):
        packdir.discover(Registry(name="x", kind="pack"))
