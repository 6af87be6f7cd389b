"""A static Helm folder as a copy target: index.yaml, merging, idempotence, failure safety."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pytest
import yaml

from mirror.copy import CopyReport, CopyTask, copy_graphs
from mirror.errors import ConflictError, IntegrityError, UsageError
from mirror.formats.helm import chart_artifact, parse_index
from mirror.lab.corpus import unique_charts
from mirror.oci import mediatypes as mt
from mirror.oci.artifact import OciArtifact, single_layer_artifact
from mirror.oci.descriptor import Descriptor
from mirror.stores.helmdir import RECORD, STAGING, HelmDirTarget
from mirror.stores.memory import MemorySource

CREATED = "2024-05-06T07:08:09Z"
Chart = tuple[str, str, bytes, OciArtifact]  # name, version, .tgz, OCI chart


@pytest.fixture(scope="module")
def charts(corpus: Path) -> dict[str, Chart]:
    """A few small corpus charts as Helm OCI charts, keyed "name-version"."""
    out = {}
    for name, version, tgz in unique_charts(corpus, smallest=True):
        if name in ("hspc", "vmo-ns-mgmt", "linstor-gui"):
            data = tgz.read_bytes()
            out[f"{name}-{version}"] = (name, version, data, chart_artifact(data, created=CREATED))
    assert {"hspc-3.14.3", "hspc-3.17.4", "vmo-ns-mgmt-1.0.3", "linstor-gui-1.9.5"} <= set(out)
    return out


class CountingSource(MemorySource):
    """Counts blob reads, so "copies nothing" is a measured claim."""

    def __init__(self, artifacts: list[OciArtifact]) -> None:
        super().__init__("test", artifacts)
        self.fetched: list[str] = []

    @contextmanager
    def fetch(self, desc: Descriptor) -> Iterator[IO[bytes]]:
        self.fetched.append(desc.digest)
        with super().fetch(desc) as fh:
            yield fh


class Dropping(io.RawIOBase):
    """Half the bytes, then the connection drops."""

    def __init__(self, data: bytes) -> None:
        self._data = data[: len(data) // 2]

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1, /) -> bytes:
        if not self._data:
            raise OSError("connection dropped")
        chunk, self._data = self._data[: max(n, 1)], self._data[max(n, 1) :]
        return chunk


class FailingSource(CountingSource):
    def __init__(self, artifacts: list[OciArtifact], bad: str) -> None:
        super().__init__(artifacts)
        self.bad = bad

    @contextmanager
    def fetch(self, desc: Descriptor) -> Iterator[IO[bytes]]:
        if desc.digest != self.bad:
            with super().fetch(desc) as fh:
                yield fh
            return
        with super().fetch(desc) as fh:
            yield Dropping(fh.read())  # type: ignore[misc]


def copy(
    folder: Path, arts: list[OciArtifact], src: MemorySource | None = None, jobs: int = 4
) -> CopyReport:
    from mirror.copy import CopyOptions
    from mirror.settings import Settings

    source = src or MemorySource("test", arts)
    dst = HelmDirTarget(folder, Settings.from_env().clock)  # as the CLI builds it
    tasks = [CopyTask(source, dst, a.descriptor, f"c{i}", f"chart {i}") for i, a in enumerate(arts)]
    return copy_graphs(tasks, options=CopyOptions(jobs=jobs))


def index_of(folder: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((folder / "index.yaml").read_text())
    return doc


def pick(charts: dict[str, Chart], *keys: str) -> list[OciArtifact]:
    return [charts[k][3] for k in keys]


def layer_of(art: OciArtifact) -> Descriptor:
    return art.blobs[1][0]


def fake_chart(name: str, version: str, extra: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, text in (
            (f"{name}/Chart.yaml", f"apiVersion: v2\nname: {name}\nversion: {version}\n"),
            (f"{name}/values.yaml", extra),
        ):
            info = tarfile.TarInfo(path)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    return buf.getvalue()


def test_writes_a_helm_repository(tmp_path: Path, charts: dict[str, Chart]) -> None:
    keys = ("hspc-3.14.3", "hspc-3.17.4", "vmo-ns-mgmt-1.0.3")
    report = copy(tmp_path, pick(charts, *keys))
    assert report.copied_blobs == 6
    doc = index_of(tmp_path)
    assert doc["apiVersion"] == "v1"
    assert [e["version"] for e in doc["entries"]["hspc"]] == ["3.17.4", "3.14.3"]
    for key in keys:
        name, version, tgz, _ = charts[key]
        (entry,) = [e for e in doc["entries"][name] if e["version"] == version]
        assert entry["urls"] == [f"{key}.tgz"]
        assert (tmp_path / f"{key}.tgz").read_bytes() == tgz
        assert entry["digest"] == hashlib.sha256(tgz).hexdigest()
        assert entry["created"] == CREATED
        assert entry["name"] == name and "apiVersion" in entry
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [RECORD, "index.yaml", *(f"{k}.tgz" for k in keys)]
    )
    parsed = parse_index((tmp_path / "index.yaml").read_bytes(), "http://x/", "t")
    assert len(parsed) == 3


def test_second_run_copies_nothing(tmp_path: Path, charts: dict[str, Chart]) -> None:
    arts = pick(charts, "hspc-3.17.4", "vmo-ns-mgmt-1.0.3")
    copy(tmp_path, arts)
    before = (tmp_path / "index.yaml").stat().st_mtime_ns, (tmp_path / "index.yaml").read_bytes()
    src = CountingSource(arts)
    report = copy(tmp_path, arts, src)
    assert (report.copied_blobs, report.present_blobs, src.fetched) == (0, 4, [])
    after = (tmp_path / "index.yaml").stat().st_mtime_ns, (tmp_path / "index.yaml").read_bytes()
    assert after == before


def test_second_import_adds_versions(
    tmp_path: Path, charts: dict[str, Chart], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "index.yaml").write_text(
        "apiVersion: v1\nentries:\n  other:\n  - name: other\n    version: 0.1.0\n"
        "    urls: [https://example.invalid/other-0.1.0.tgz]\n    created: '2020-01-01T00:00:00Z'\n"
        "generated: '2020-01-01T00:00:00Z'\n"
    )
    copy(tmp_path, pick(charts, "hspc-3.14.3"))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    src = CountingSource(pick(charts, "hspc-3.14.3", "hspc-3.17.4", "linstor-gui-1.9.5"))
    copy(tmp_path, pick(charts, "hspc-3.14.3", "hspc-3.17.4", "linstor-gui-1.9.5"), src)
    doc = index_of(tmp_path)
    assert sorted(doc["entries"]) == ["hspc", "linstor-gui", "other"]
    assert [e["version"] for e in doc["entries"]["hspc"]] == ["3.17.4", "3.14.3"]
    assert doc["entries"]["other"][0]["urls"] == ["https://example.invalid/other-0.1.0.tgz"]
    assert doc["generated"] == "2023-11-14T22:13:20Z"
    assert layer_of(charts["hspc-3.14.3"][3]).digest not in src.fetched
    assert len(src.fetched) == 4


def test_same_bytes_with_source_date_epoch(
    tmp_path: Path, charts: dict[str, Chart], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    arts = pick(charts, "hspc-3.17.4", "vmo-ns-mgmt-1.0.3", "linstor-gui-1.9.5")
    copy(tmp_path / "a", arts, jobs=1)
    copy(tmp_path / "b", list(reversed(arts)), jobs=8)
    assert (tmp_path / "a/index.yaml").read_bytes() == (tmp_path / "b/index.yaml").read_bytes()
    assert (tmp_path / "a" / RECORD).read_bytes() == (tmp_path / "b" / RECORD).read_bytes()


def test_failure_midway_leaves_no_partial_chart_or_index(
    tmp_path: Path, charts: dict[str, Chart]
) -> None:
    copy(tmp_path, pick(charts, "hspc-3.14.3"))
    index_before = (tmp_path / "index.yaml").read_bytes()
    arts = pick(charts, "hspc-3.17.4", "vmo-ns-mgmt-1.0.3", "linstor-gui-1.9.5")
    bad = layer_of(charts["vmo-ns-mgmt-1.0.3"][3]).digest
    with pytest.raises(OSError, match="connection dropped"):
        copy(tmp_path, arts, FailingSource(arts, bad))
    assert (tmp_path / "index.yaml").read_bytes() == index_before
    assert sorted(p.name for p in tmp_path.glob("*.tgz")) == ["hspc-3.14.3.tgz"]
    assert not list(tmp_path.rglob("*.tmp"))
    for staged in (tmp_path / STAGING).glob("*"):  # only complete, verified layers remain
        assert hashlib.sha256(staged.read_bytes()).hexdigest() == staged.name.split(".")[0]
    # A retry reuses what was staged and finishes the job.
    src = CountingSource(arts)
    copy(tmp_path, arts, src)
    staged_before = {f"sha256:{p.name.split('.')[0]}" for p in (tmp_path / STAGING).glob("*")}
    assert not staged_before & set(src.fetched)
    assert bad in src.fetched
    assert sorted(index_of(tmp_path)["entries"]) == ["hspc", "linstor-gui", "vmo-ns-mgmt"]
    assert not (tmp_path / STAGING).exists()


def test_failure_in_first_import_writes_no_index(tmp_path: Path, charts: dict[str, Chart]) -> None:
    arts = pick(charts, "vmo-ns-mgmt-1.0.3", "linstor-gui-1.9.5")
    bad = layer_of(charts["linstor-gui-1.9.5"][3]).digest
    with pytest.raises(OSError):
        copy(tmp_path, arts, FailingSource(arts, bad), jobs=1)
    assert not (tmp_path / "index.yaml").exists()
    assert not list(tmp_path.glob("*.tgz")) and not (tmp_path / RECORD).exists()


def test_other_content_for_the_same_version_is_a_conflict(
    tmp_path: Path, charts: dict[str, Chart]
) -> None:
    copy(tmp_path, pick(charts, "hspc-3.17.4"))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    impostor = chart_artifact(fake_chart("hspc", "3.17.4", "evil: true\n"))
    with pytest.raises(ConflictError, match=r"hspc 3\.17\.4 is already there"):
        copy(tmp_path, [impostor])
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_two_different_charts_with_one_version_in_one_run(tmp_path: Path) -> None:
    one = chart_artifact(fake_chart("demo", "1.0.0", "a: 1\n"))
    two = chart_artifact(fake_chart("demo", "1.0.0", "a: 2\n"))
    with pytest.raises(ConflictError, match=r"two different charts demo 1\.0\.0"):
        copy(tmp_path, [one, two], jobs=1)
    assert not (tmp_path / "index.yaml").exists()


def test_a_chart_pushed_under_another_manifest_is_not_duplicated(
    tmp_path: Path, charts: dict[str, Chart]
) -> None:
    """helm push stamps `created` per push: same chart, new manifest, nothing to copy."""
    _, _, tgz, art = charts["hspc-3.17.4"]
    copy(tmp_path, [art])
    index_before = (tmp_path / "index.yaml").read_bytes()
    again = chart_artifact(tgz, created="2030-01-01T00:00:00Z")
    assert again.descriptor.digest != art.descriptor.digest
    report = copy(tmp_path, [again])
    assert report.copied_blobs == 0
    assert (tmp_path / "index.yaml").read_bytes() == index_before


def test_a_deleted_chart_file_is_restored(tmp_path: Path, charts: dict[str, Chart]) -> None:
    arts = pick(charts, "hspc-3.17.4")
    copy(tmp_path, arts)
    (tmp_path / "hspc-3.17.4.tgz").unlink()
    report = copy(tmp_path, arts)
    assert report.copied_blobs == 2
    assert (tmp_path / "hspc-3.17.4.tgz").read_bytes() == charts["hspc-3.17.4"][2]


def test_non_chart_artifacts_are_refused(tmp_path: Path) -> None:
    image = single_layer_artifact(b"{}", mt.OCI_CONFIG, b"layer", mt.OCI_LAYER_GZIP)
    with pytest.raises(UsageError, match="only Helm charts"):
        copy(tmp_path, [image])
    assert not (tmp_path / "index.yaml").exists()
    doc = json.loads(chart_artifact(fake_chart("demo", "1.0.0", "")).manifest)
    doc["layers"].append(doc["layers"][0] | {"mediaType": mt.OCI_LAYER_GZIP})
    target = HelmDirTarget(tmp_path)
    data = json.dumps(doc).encode()
    with pytest.raises(UsageError, match="only Helm charts"):
        target.push(Descriptor(mt.OCI_MANIFEST, _digest(data), len(data)), io.BytesIO(data))


def test_unsafe_chart_names_are_refused(tmp_path: Path) -> None:
    art = chart_artifact(fake_chart("evil", "1.0.0", ""))
    config_desc, config = art.blobs[0]
    doc = json.loads(config)
    doc["name"] = "../evil"
    bad_config = json.dumps(doc).encode()
    manifest = json.loads(art.manifest)
    manifest["config"] |= {"digest": _digest(bad_config), "size": len(bad_config)}
    data = json.dumps(manifest).encode()
    target = HelmDirTarget(tmp_path)
    cdesc = Descriptor(mt.HELM_CONFIG, _digest(bad_config), len(bad_config))
    target.push(cdesc, io.BytesIO(bad_config))
    mdesc = Descriptor(mt.OCI_MANIFEST, _digest(data), len(data))
    target.push(mdesc, io.BytesIO(data))
    with pytest.raises(IntegrityError, match="unsafe chart name"):
        target.tag(mdesc, "x", {})
    assert config_desc.digest != cdesc.digest


def test_corrupt_layer_is_not_staged(tmp_path: Path, charts: dict[str, Chart]) -> None:
    layer = layer_of(charts["hspc-3.17.4"][3])
    target = HelmDirTarget(tmp_path)
    with pytest.raises(IntegrityError, match=f"does not match digest {layer.digest}"):
        target.push(layer, io.BytesIO(b"x" * layer.size))
    assert not target.exists(layer)
    assert not list(tmp_path.rglob("*.tgz")) and not list(tmp_path.rglob("*.tmp"))


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_record_is_only_an_optimisation(tmp_path: Path, charts: dict[str, Chart]) -> None:
    arts = pick(charts, "hspc-3.17.4")
    copy(tmp_path, arts)
    (tmp_path / RECORD).write_text("{not json")
    report = copy(tmp_path, arts)
    assert report.copied_blobs == 1  # the config; the .tgz is recognised by its digest
    assert os.path.getsize(tmp_path / "index.yaml") > 0
    assert json.loads((tmp_path / RECORD).read_text())["charts"]["hspc-3.17.4.tgz"]


def test_round_trip_through_the_helm_source(tmp_path: Path, charts: dict[str, Chart]) -> None:
    """What import writes, export can read back: same charts, same OCI digests."""
    from mirror.discovery import helm
    from mirror.lab.httpserver import serve_directory
    from mirror.spec import Registry

    arts = pick(charts, "hspc-3.14.3", "hspc-3.17.4", "vmo-ns-mgmt-1.0.3")
    copy(tmp_path, arts)
    with serve_directory(tmp_path) as url:
        sel = helm.discover(Registry(name="Far side", kind="helm", url=url))
    assert sorted(f.ref for f in sel.found) == [
        "charts/far-side/hspc:3.14.3",
        "charts/far-side/hspc:3.17.4",
        "charts/far-side/vmo-ns-mgmt:1.0.3",
    ]
    assert {f.desc.digest for f in sel.found} == {a.descriptor.digest for a in arts}


@pytest.mark.timeout(20)
def test_entries_already_there_keep_their_urls_as_written(
    tmp_path: Path, charts: dict[str, Chart]
) -> None:
    """They were resolved against this folder and written back: `/charts/x.tgz` became
    `file:///charts/x.tgz` and `../shared/x.tgz` a file:// path of the importing host."""
    urls = ["/charts/other-1.0.0.tgz", "../shared/third-1.0.0.tgz", "a%2Bb-1.0.0.tgz"]
    entries = "".join(
        f"  c{i}:\n  - name: c{i}\n    version: 1.0.0\n    urls: ['{u}']\n"
        for i, u in enumerate(urls)
    )
    (tmp_path / "index.yaml").write_text(f"apiVersion: v1\nentries:\n{entries}")
    copy(tmp_path, pick(charts, "hspc-3.17.4"))
    doc = index_of(tmp_path)
    assert [doc["entries"][f"c{i}"][0]["urls"] for i in range(3)] == [[u] for u in urls]
    assert doc["entries"]["hspc"][0]["urls"] == ["hspc-3.17.4.tgz"]


def test_hand_made_index_without_digests(tmp_path: Path, charts: dict[str, Chart]) -> None:
    """An index without digests is judged by the files it names."""
    _, _, tgz, art = charts["hspc-3.17.4"]
    (tmp_path / "index.yaml").write_text(
        "apiVersion: v1\nentries:\n  hspc:\n  - name: hspc\n    version: 3.17.4\n"
        "    urls: [hspc-3.17.4.tgz]\n"
    )
    (tmp_path / "hspc-3.17.4.tgz").write_bytes(b"something else")
    with pytest.raises(ConflictError, match="already there"):
        copy(tmp_path, [art])
    (tmp_path / "hspc-3.17.4.tgz").write_bytes(tgz)
    index_before = (tmp_path / "index.yaml").read_bytes()
    report = copy(tmp_path, [art])
    # The layer staged by the refused attempt is reused; only the config travels again.
    assert (report.copied_blobs, report.present_blobs) == (1, 1)
    assert (tmp_path / "index.yaml").read_bytes() == index_before  # the chart was there
    assert json.loads((tmp_path / RECORD).read_text())["charts"]["hspc-3.17.4.tgz"]
    assert not (tmp_path / STAGING).exists()
    assert copy(tmp_path, [art]).copied_blobs == 0


NS_CREATED = "2024-05-15T10:20:30.123456784+02:00"


def _entry_for(tgz: bytes, **extra: object) -> dict[str, Any]:
    return {
        "apiVersion": "v2",
        "name": "demo",
        "version": "1.0.0",
        "created": NS_CREATED,
        "digest": hashlib.sha256(tgz).hexdigest(),
        "description": "as the Helm repository wrote it",
        **extra,
    }


def _two_sources(folder: Path, entry: dict[str, Any], helm_first: bool) -> None:
    """One chart version twice in one run: as a Helm repository gave it, and from OCI."""
    from mirror.copy import CopyOptions
    from mirror.stores.helmdir import ANN_INDEX_ENTRY

    tgz = fake_chart("demo", "1.0.0", "a: 1\n")
    from_helm = chart_artifact(tgz, created=NS_CREATED)
    from_oci = chart_artifact(tgz, created=CREATED)
    dst = HelmDirTarget(folder)
    helm_notes = {mt.ANN_REF_NAME: "charts/team/demo:1.0.0", ANN_INDEX_ENTRY: json.dumps(entry)}
    tasks = [
        CopyTask(MemorySource("helm", [from_helm]), dst, from_helm.descriptor, "1.0.0", "helm",
                 helm_notes),
        CopyTask(MemorySource("oci", [from_oci]), dst, from_oci.descriptor, "1.0.0", "oci",
                 {mt.ANN_REF_NAME: "a/charts/demo:1.0.0"}),
    ]  # fmt: skip
    copy_graphs(tasks if helm_first else tasks[::-1], options=CopyOptions(jobs=1))


@pytest.mark.parametrize("helm_first", [True, False])
def test_a_helm_repositorys_entry_wins_whichever_copy_comes_last(
    tmp_path: Path, helm_first: bool
) -> None:
    tgz = fake_chart("demo", "1.0.0", "a: 1\n")
    entry = _entry_for(tgz, removed=False, annotations={"when": "2024-01-01"})
    _two_sources(tmp_path, entry, helm_first)
    (written,) = index_of(tmp_path)["entries"]["demo"]
    assert written.pop("urls") == ["demo-1.0.0.tgz"]
    assert written == entry
    assert (tmp_path / "demo-1.0.0.tgz").read_bytes() == tgz


def test_an_entry_that_does_not_describe_the_chart_is_refused(tmp_path: Path) -> None:
    from mirror.errors import IntegrityError

    entry = _entry_for(b"other bytes")
    with pytest.raises(IntegrityError, match="does not describe that chart"):
        _two_sources(tmp_path, entry, helm_first=True)
    assert not (tmp_path / "index.yaml").exists()
