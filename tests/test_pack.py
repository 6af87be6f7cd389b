from __future__ import annotations

import gzip
import io
import json
import os
import random
import shutil
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest

from mirror.errors import UsageError
from mirror.formats import schema_path
from mirror.formats.pack import (
    PackDependency,
    PackInfo,
    build_pack_archive,
    check_dependencies,
    load_pack_dir,
    pack_artifact,
    parse_pack_json,
    read_pack_json_from_archive,
    resolve_dependencies,
)
from mirror.oci import mediatypes as mt
from mirror.oci.descriptor import digest_of

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "pack-central"
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="pack-central corpus not present")

GOOD: dict[str, Any] = {
    "name": "hello",
    "version": "1.2.3",
    "displayName": "Hello",
    "layer": "addon",
    "addonType": "app services",
    "cloudTypes": ["all"],
    "charts": ["charts/hello-1.2.3.tgz"],
    "annotations": {"source": "community"},
}


def pj(**changes: Any) -> bytes:
    doc = {**GOOD, **changes}
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


def make_pack(root: Path, doc: dict[str, Any] | None = None, name: str = "hello") -> Path:
    d = root / name
    (d / "charts").mkdir(parents=True)
    (d / "pack.json").write_text(json.dumps(doc or GOOD))
    (d / "values.yaml").write_text("pack:\n  namespace: hello\n")
    (d / "charts" / "hello-1.2.3.tgz").write_bytes(b"\x1f\x8b not really a chart")
    (d / "README.md").write_text("# hello\n")
    return d


def test_schema_path_finds_repo_schema() -> None:
    assert schema_path("pack.schema.json").is_file()


def test_clean_pack_has_no_warnings() -> None:
    info, warnings = parse_pack_json(pj(), "p")
    assert warnings == []
    assert info.summary() == {
        "name": "hello",
        "version": "1.2.3",
        "layer": "addon",
        "cloudTypes": ["all"],
        "displayName": "Hello",
    }
    assert info.annotations == (("source", "community"),)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (pj(name=...), "has no name"),
        (pj(version=...), "has no version"),
        (pj(name=""), "name must be a non-empty string"),
        (pj(version=3), "version must be a non-empty string"),
        (pj(name="Hello World"), "not a valid OCI repository name"),
        (pj(version="1.0/evil"), "not a valid OCI tag"),
        (b" " * (1024 * 1024 + 1), "larger than"),
    ],
)
def test_fatal_pack_json(data: bytes, message: str) -> None:
    with pytest.raises(UsageError, match=message) as exc:
        parse_pack_json(data, "somewhere/pack.json")
    assert str(exc.value).startswith("somewhere/pack.json: ")
    assert exc.value.exit_code == 2


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"layer": ...}, "layer is missing"),
        ({"displayName": ...}, "displayName is missing"),
        ({"cloudTypes": ...}, "cloudTypes is missing"),
        ({"addonType": ...}, "addonType is missing"),
        ({"layer": "storage"}, "layer 'storage' is not one of kernel|os|k8s|cni|csi|addon"),
        ({"eol": " "}, "eol is blank (' ')"),
        ({"eol": ""}, "eol is blank ('')"),
        ({"group": " "}, "group is whitespace only"),
        ({"version": "2.0.1-up.1"}, "has letters"),
        ({"version": "v1.0.0"}, "has letters"),
        ({"version": "23.07.1"}, "not canonical semver (23.7.1)"),
        ({"version": "latest"}, "not semver"),
        ({"charts": []}, "no charts and no kubeManifests"),
        ({"cloudTypes": "all"}, "/cloudTypes: 'all' is not of type 'array'"),
        ({"annotations": {"n": 1}}, "/annotations/n"),
        (
            {"constraints": {"dependencies": [{"packName": "x", "type": "upgrade"}]}},
            "'upgrade' is not required|optional|notSupported",
        ),
        (
            {
                "constraints": {
                    "dependencies": [{"packName": "x", "type": "required", "minVersion": "one"}]
                }
            },
            "minVersion 'one' is not semver",
        ),
    ],
)
def test_warnings(changes: dict[str, Any], expected: str) -> None:
    info, warnings = parse_pack_json(pj(**changes), "W")
    assert any(expected in w for w in warnings), warnings
    assert all(w.startswith("W: ") for w in warnings)
    assert info.name == "hello"


def test_wrong_types_degrade_to_empty_fields() -> None:
    info, warnings = parse_pack_json(pj(cloudTypes="all", charts=[1, "c.tgz"], annotations=[]), "W")
    assert info.cloud_types == () and info.charts == ("c.tgz",) and info.annotations == ()
    assert len(warnings) >= 3


def test_dependencies_parsed() -> None:
    deps = [
        {
            "packName": "elastic-operator",
            "minVersion": "2.12.1",
            "maxVersion": "",
            "layer": "addon",
            "type": "required",
        },
        {"packName": "kubernetes", "layer": "k8s", "type": "optional"},
        "garbage",
    ]
    info, _ = parse_pack_json(pj(constraints={"dependencies": deps}), "W")
    assert info.dependencies == (
        PackDependency("elastic-operator", "addon", "2.12.1", "", "required"),
        PackDependency("kubernetes", "k8s", "", "", "optional"),
    )


@needs_corpus
def test_all_corpus_packs_load_with_expected_warnings() -> None:
    dirs = sorted(p for p in CORPUS.iterdir() if p.is_dir())
    assert len(dirs) == 85
    kinds: dict[str, int] = {}
    for d in dirs:
        info, warnings = load_pack_dir(d)
        assert info.name and info.version and info.layer in ("addon", "cni", "csi")
        for w in warnings:
            assert w.startswith(f"{d}: ")
            key = w.split(": ", 1)[1].split(" ")[0]
            kinds[key] = kinds.get(key, 0) + 1
    assert kinds == {"eol": 12, "version": 7, "/constraints/dependencies/0/type": 2, "group": 1}


@needs_corpus
def test_corpus_specific_messes() -> None:
    _, w = load_pack_dir(CORPUS / "akuity-agent-0.30.0-5.5.2026")
    assert any("eol is blank (' ')" in x for x in w)
    _, w = load_pack_dir(CORPUS / "upbound-crossplane-2.0.1-up.1")
    assert any("has letters" in x for x in w)
    info, w = load_pack_dir(CORPUS / "nvidia-ovn-kubernetes-25.7.0")  # no annotations at all
    assert info.annotations == () and info.layer == "cni" and w == []


def test_load_pack_dir_requires_files(tmp_path: Path) -> None:
    d = make_pack(tmp_path)
    (d / "values.yaml").unlink()
    with pytest.raises(UsageError, match=r"hello: pack directory has no values.yaml"):
        load_pack_dir(d)
    (d / "pack.json").unlink()
    with pytest.raises(UsageError, match=r"no pack\.json"):
        load_pack_dir(d)
    with pytest.raises(UsageError, match="not a pack directory"):
        load_pack_dir(tmp_path / "nope")


def test_load_pack_dir_warns_on_missing_listed_content(tmp_path: Path) -> None:
    doc = {**GOOD, "charts": ["charts/gone.tgz", "../outside.tgz"], "kubeManifests": ["m.yaml"]}
    _, warnings = load_pack_dir(make_pack(tmp_path, doc))
    assert any("'charts/gone.tgz' is missing" in w for w in warnings)
    assert any("'../outside.tgz' points outside" in w for w in warnings)
    assert any("kubeManifests entry 'm.yaml' is missing" in w for w in warnings)


def _members(archive: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return tar.getmembers()


def test_archive_layout_and_normalized_headers(tmp_path: Path) -> None:
    d = make_pack(tmp_path, name="checkout-name-differs")
    (d / ".git").mkdir()
    (d / ".git" / "HEAD").write_text("ref")
    (d / "hello-1.2.3.tar.gz").write_bytes(b"old output")
    (d / "run.sh").write_text("#!/bin/sh\n")
    (d / "run.sh").chmod(0o700)
    filename, archive = build_pack_archive(d)
    assert filename == "hello-1.2.3.tar.gz"
    members = _members(archive)
    assert [m.name for m in members] == [
        "hello-1.2.3",
        "hello-1.2.3/README.md",
        "hello-1.2.3/charts",
        "hello-1.2.3/charts/hello-1.2.3.tgz",
        "hello-1.2.3/pack.json",
        "hello-1.2.3/run.sh",
        "hello-1.2.3/values.yaml",
    ]
    for m in members:
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "")
        assert m.mode == (0o755 if m.isdir() or m.name.endswith(".sh") else 0o644)
    assert archive[3] == 0  # gzip FLG: no file name
    assert archive[4:8] == b"\0\0\0\0"  # gzip MTIME


def test_archive_is_deterministic(tmp_path: Path) -> None:
    d = make_pack(tmp_path / "a")
    first = build_pack_archive(d)
    assert build_pack_archive(d) == first
    for p in [d, *d.rglob("*")]:
        os.utime(p, (1_000_000, 1_000_000))
        p.chmod(p.stat().st_mode & ~stat.S_IWGRP | stat.S_IRUSR)
    assert build_pack_archive(d) == first
    other = shutil.copytree(d, tmp_path / "b" / "renamed")
    assert build_pack_archive(other) == first
    (other / "README.md").write_text("# changed\n")
    assert build_pack_archive(other)[1] != first[1]


def test_archive_refuses_escaping_symlink(tmp_path: Path) -> None:
    d = make_pack(tmp_path)
    (tmp_path / "secret").write_text("x")
    (d / "link").symlink_to(tmp_path / "secret")
    with pytest.raises(UsageError, match="symlink"):
        build_pack_archive(d)
    (d / "link").unlink()
    (d / "link").symlink_to("values.yaml")
    members = {m.name: m for m in _members(build_pack_archive(d)[1])}
    assert (
        members["hello-1.2.3/link"].issym()
        and members["hello-1.2.3/link"].linkname == "values.yaml"
    )


@needs_corpus
def test_corpus_pack_archive_twice_and_after_touching(tmp_path: Path) -> None:
    src = CORPUS / "antrea-1.9.0"  # has an unpacked chart with a .helmignore
    first = build_pack_archive(src)
    copy = shutil.copytree(src, tmp_path / "antrea")
    for p in [copy, *copy.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
        os.utime(p, (5, 5))
    assert build_pack_archive(copy) == first
    names = [m.name for m in _members(first[1])]
    assert "antrea-1.9.0/charts/antrea/.helmignore" in names


def test_pack_artifact_is_oras_form() -> None:
    art = pack_artifact(b"archive-bytes", "hello-1.2.3.tar.gz")
    doc = json.loads(art.manifest)
    assert art.media_type == doc["mediaType"] == mt.OCI_MANIFEST
    assert doc["config"] == {"mediaType": mt.UNKNOWN_CONFIG, "digest": digest_of(b"{}"), "size": 2}
    (layer,) = doc["layers"]
    assert layer["mediaType"] == mt.OCI_LAYER_TAR
    assert layer["digest"] == digest_of(b"archive-bytes")
    assert layer["annotations"] == {mt.ANN_TITLE: "hello-1.2.3.tar.gz"}
    assert mt.classify(art.media_type, doc["config"]["mediaType"], [layer["mediaType"]]) == "pack"
    assert pack_artifact(b"archive-bytes", "hello-1.2.3.tar.gz") == art


class OneWayStream(io.RawIOBase):
    """A non-seekable stream, like an HTTP body."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        chunk = self._buf.read(len(b))
        b[: len(chunk)] = chunk
        return len(chunk)


def _tar(entries: dict[str, bytes], gz: bool = True) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0) if gz else raw.getvalue()


def _with_fextra(gz: bytes) -> bytes:
    return gz[:3] + bytes([gz[3] | 4]) + gz[4:10] + b"\x03\x00abc" + gz[10:]


def _two_gzip_members(entries: dict[str, bytes]) -> bytes:
    """The tar split across two concatenated gzip members, which gzip -d accepts."""
    raw = _tar(entries, gz=False)
    return gzip.compress(raw[:5000], mtime=0) + gzip.compress(raw[5000:], mtime=0)


_NOISE = random.Random(7).randbytes(3 * 1024 * 1024)  # inflates over several calls


def test_read_pack_json_from_built_archive(tmp_path: Path) -> None:
    _, archive = build_pack_archive(make_pack(tmp_path))
    info = read_pack_json_from_archive(OneWayStream(archive), "reg/hello:1.2.3")  # type: ignore[arg-type]
    assert info is not None and info.ref == "hello:1.2.3"


@pytest.mark.parametrize(
    ("archive", "found"),
    [
        (_tar({"pack.json": pj()}), True),
        (_with_fextra(_tar({"p/pack.json": pj()})), True),  # gzip header as helm writes it
        (_tar({"./pack.json": pj()}, gz=False), True),
        (_tar({"x/values.yaml": b"", "x/pack.json": pj()}), True),
        (_tar({"a/b/pack.json": pj()}), False),
        (_tar({"values.yaml": b""}), False),
        (_tar({"pack.json": b"{broken"}), False),
        (_tar({"pack.json": pj(name=...)}), False),
        (_tar({"pack.json": b" " * (1024 * 1024 + 1)}), False),
        (_tar({"pack.json": pj()})[:40], False),
        (_tar({"charts/big.tgz": _NOISE, "pack.json": pj()}), True),
        (_tar({"charts/big.tgz": _NOISE, "pack.json": pj()})[:-2000], False),
        (_two_gzip_members({"values.yaml": b"x" * 9000, "pack.json": pj()}), True),
        (b"not an archive at all", False),
        (b"", False),
    ],
)
def test_read_pack_json_cases(archive: bytes, found: bool) -> None:
    info = read_pack_json_from_archive(io.BytesIO(archive), "w")
    assert (info is not None) is found


def pack(name: str, version: str, *deps: PackDependency) -> PackInfo:
    return PackInfo(name, name, version, "addon", "", ("all",), (), (), (), tuple(deps))


def dep(name: str, type_: str = "required", low: str = "", high: str = "") -> PackDependency:
    return PackDependency(name, "addon", low, high, type_)


def test_dependency_bounds_inclusive() -> None:
    d = dep("k", low="1.27", high="1.29.3")
    assert d.allows("1.27.0") and d.allows("1.29.3") and not d.allows("1.29.4")
    assert not d.allows("1.26.9") and not d.allows("latest")
    assert dep("k").allows("anything") and dep("k", low="junk").allows("1.0.0")


def test_check_dependencies_reports_and_offers_candidates() -> None:
    stack = pack(
        "elastic-stack",
        "0.18.2",
        dep("elastic-operator", low="3.3.2"),
        dep("kubernetes", "optional"),
    )
    avail = [
        pack("elastic-operator", "3.3.1"),
        pack("elastic-operator", "3.4.0"),
        pack("elastic-operator", "3.3.2"),
    ]
    (issue,) = check_dependencies([stack], avail)
    assert issue.kind == "missing" and issue.pack == stack
    assert [p.version for p in issue.candidates] == ["3.4.0", "3.3.2"]
    assert "needs elastic-operator >=3.3.2" in issue.message() and "3.4.0" in issue.message()
    (issue,) = check_dependencies([stack, pack("elastic-operator", "3.3.1")], avail)
    assert issue.kind == "version"
    assert check_dependencies([stack, pack("elastic-operator", "3.3.2")], avail) == []
    (issue,) = check_dependencies([stack], [])
    assert issue.best is None and "not available" in issue.message()


def test_optional_not_supported_and_unknown_types() -> None:
    p = pack(
        "a",
        "1.0.0",
        dep("k8s", "optional", high="1.21.49"),
        dep("old", "notSupported"),
        dep("x", "upgrade"),
    )
    assert check_dependencies([p], []) == []
    issues = check_dependencies(
        [p, pack("k8s", "1.30.0"), pack("old", "1.0.0")], [pack("k8s", "1.21.0")]
    )
    assert sorted(i.kind for i in issues) == ["not-supported", "version"]


def test_resolve_dependencies_is_transitive() -> None:
    top = pack("top", "1.0.0", dep("mid"))
    mid = pack("mid", "2.0.0", dep("leaf", low="1.0.0"))
    added, issues = resolve_dependencies([top], [mid, pack("leaf", "0.9.0"), pack("leaf", "1.1.0")])
    assert [p.ref for p in added] == ["mid:2.0.0", "leaf:1.1.0"] and issues == []
    added, issues = resolve_dependencies([top], [pack("mid", "2.0.0", dep("gone"))])
    assert [p.ref for p in added] == ["mid:2.0.0"] and [i.kind for i in issues] == ["missing"]


def test_a_pack_archive_that_inflates_past_the_bound_has_no_pack_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bounded like a chart's (1 GiB by default, 1 MiB here): past it, a label we cannot
    read, not an internal error out of the walk."""
    import gzip
    import io
    import tarfile

    from mirror import formats
    from mirror.formats import pack

    def bounded(stream: Any) -> Any:
        return formats.open_tar_stream(stream, 1 << 20)

    monkeypatch.setattr(pack, "open_tar_stream", bounded)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("z", bytes(3 << 20)), ("pack.json", b'{"name": "a"}')):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert pack.read_pack_json_from_archive(io.BytesIO(gzip.compress(buf.getvalue())), "p") is None
