"""HTTP Helm repository as a source: selection, downloads checked against index.yaml, errors."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import responses
import yaml

from mirror.discovery import helm
from mirror.discovery.interface import Found, Selection
from mirror.errors import (
    AuthError,
    IntegrityError,
    NotFoundError,
    OperationError,
    RegistryError,
    UsageError,
)
from mirror.formats.helm import ChartVersion, chart_metadata, write_index
from mirror.lab.corpus import unique_charts
from mirror.lab.httpserver import serve_directory
from mirror.oci import mediatypes as mt
from mirror.oci.descriptor import successors
from mirror.spec import AuthEnv, ChartFilter, Registry

WANTED = {"hspc", "linstor-gui", "vmo-ns-mgmt"}
GENERATED = "2024-01-02T03:04:05Z"


@dataclass(frozen=True)
class Repo:
    path: Path
    files: dict[tuple[str, str], Path]  # (name, version) -> .tgz in the repository

    def index(self) -> dict[str, Any]:
        doc: dict[str, Any] = yaml.safe_load((self.path / "index.yaml").read_text())
        return doc

    def write(self, doc: dict[str, Any]) -> None:
        (self.path / "index.yaml").write_text(yaml.safe_dump(doc))


def build_repo(dest: Path, corpus: Path) -> Repo:
    """A few small corpus charts (copied), some in a subfolder, with an index.yaml."""
    dest.mkdir()
    (dest / "pkgs").mkdir()
    files: dict[tuple[str, str], Path] = {}
    entries = []
    for name, version, tgz in unique_charts(corpus, smallest=True):
        if name not in WANTED:
            continue
        rel = f"{name}-{version}.tgz" if name != "linstor-gui" else f"pkgs/{name}-{version}.tgz"
        target = Path(shutil.copyfile(tgz, dest / rel))
        files[(name, version)] = target
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        meta = chart_metadata(target.read_bytes())
        entries.append((ChartVersion(name, version, (), digest, GENERATED, meta), rel))
    (dest / "index.yaml").write_bytes(write_index(entries, GENERATED))
    return Repo(dest, files)


@pytest.fixture()
def repo(tmp_path: Path, corpus: Path) -> Repo:
    built = build_repo(tmp_path / "repo", corpus)
    assert {n for n, _ in built.files} == WANTED, "corpus lacks the charts these tests use"
    assert len([k for k in built.files if k[0] == "hspc"]) == 3
    return built


@pytest.fixture()
def served(repo: Repo) -> Iterator[tuple[Repo, str]]:
    with serve_directory(repo.path) as url:
        yield repo, url


def reg(url: str, *charts: ChartFilter, name: str = "Corpus Charts!", **kw: Any) -> Registry:
    return Registry(name=name, kind="helm", url=url, charts=tuple(charts), **kw)


def layer_of(found: Found) -> bytes:
    data = found.source.fetch_manifest(found.desc)
    config, layer = successors(found.desc, data)
    assert config.media_type == mt.HELM_CONFIG
    assert layer.media_type == mt.HELM_CHART
    with found.source.fetch(layer) as fh:
        data = fh.read()
    assert isinstance(data, bytes)
    return data


def refs(sel: Selection) -> list[str]:
    return [f.ref for f in sel.found]


def test_no_filters_takes_everything_and_says_so(served: tuple[Repo, str]) -> None:
    repo, url = served
    sel = helm.discover(reg(url))
    assert len(sel.found) == len(repo.files) == 6
    assert any("every version of every chart (6 versions of 3 charts)" in n for n in sel.notes)
    for f in sel.found:
        assert f.kind == "chart"
        assert f.path == f"charts/corpus-charts/{f.repository}"
        assert layer_of(f) == repo.files[(f.repository, f.tag)].read_bytes()


def test_name_glob_semver_latest(served: tuple[Repo, str]) -> None:
    _, url = served
    sel = helm.discover(reg(url, ChartFilter("hs*", semver=">=3.15.0")))
    assert refs(sel) == ["charts/corpus-charts/hspc:3.17.4", "charts/corpus-charts/hspc:3.16.1"]
    sel = helm.discover(reg(url, ChartFilter("hspc", latest=1), ChartFilter("linstor-*")))
    assert refs(sel) == [
        "charts/corpus-charts/hspc:3.17.4",
        "charts/corpus-charts/linstor-gui:1.9.5",
        "charts/corpus-charts/linstor-gui:1.8.2",
    ]
    assert sel.notes == []


def test_overlapping_filters_take_each_version_once(served: tuple[Repo, str]) -> None:
    _, url = served
    sel = helm.discover(reg(url, ChartFilter("hspc", latest=2), ChartFilter("h*", latest=1)))
    assert refs(sel) == ["charts/corpus-charts/hspc:3.17.4", "charts/corpus-charts/hspc:3.16.1"]


def test_filter_without_match(served: tuple[Repo, str]) -> None:
    _, url = served
    with pytest.raises(NotFoundError, match=r"no chart in index.yaml matches 'nginx\*'"):
        helm.discover(reg(url, ChartFilter("nginx*")))
    sel = helm.discover(reg(url, ChartFilter("hspc", semver=">=9")))
    assert sel.found == []
    assert "selected no version" in sel.notes[0]
    with pytest.raises(UsageError, match="charts\\[0\\]"):
        helm.discover(reg(url, ChartFilter("hspc", latest=-1)))


def test_chart_is_the_oci_chart_helm_push_makes(served: tuple[Repo, str]) -> None:
    repo, url = served
    (f,) = helm.discover(reg(url, ChartFilter("vmo-ns-mgmt"))).found
    doc = json.loads(f.source.fetch_manifest(f.desc))
    assert f.desc.media_type == mt.OCI_MANIFEST
    assert doc["annotations"]["org.opencontainers.image.created"] == GENERATED
    with f.source.fetch(successors(f.desc, json.dumps(doc).encode())[0]) as fh:
        config = json.loads(fh.read())
    assert (config["name"], config["version"]) == ("vmo-ns-mgmt", "1.0.3")
    assert layer_of(f) == repo.files[("vmo-ns-mgmt", "1.0.3")].read_bytes()


def test_absolute_urls_and_index_without_digest(served: tuple[Repo, str]) -> None:
    repo, url = served
    doc = repo.index()
    for item in doc["entries"]["linstor-gui"]:
        item["urls"] = [f"{url}/{item['urls'][0]}"]
        del item["digest"]
    repo.write(doc)
    sel = helm.discover(reg(url, ChartFilter("linstor-gui")))
    assert [layer_of(f) for f in sel.found] == [
        repo.files[("linstor-gui", v)].read_bytes() for v in ("1.9.5", "1.8.2")
    ]


def test_digest_mismatch_names_chart_and_version(served: tuple[Repo, str]) -> None:
    repo, url = served
    doc = repo.index()
    doc["entries"]["hspc"][1]["digest"] = "0" * 64
    repo.write(doc)
    pattern = r"chart hspc 3\.16\.1: the \.tgz has sha256 [0-9a-f]{64}"
    with pytest.raises(IntegrityError, match=pattern):
        helm.discover(reg(url, ChartFilter("hspc")))


def test_swapped_archive_is_refused(served: tuple[Repo, str]) -> None:
    """An index entry whose .tgz holds another chart would land under a false name."""
    repo, url = served
    doc = repo.index()
    item = doc["entries"]["hspc"][0]
    item["urls"] = ["vmo-ns-mgmt-1.0.3.tgz"]
    del item["digest"]
    repo.write(doc)
    with pytest.raises(IntegrityError, match=re.escape("Chart.yaml says vmo-ns-mgmt 1.0.3")):
        helm.discover(reg(url, ChartFilter("hspc", latest=1)))


def test_missing_chart_file(served: tuple[Repo, str]) -> None:
    repo, url = served
    repo.files[("vmo-ns-mgmt", "1.0.3")].unlink()
    with pytest.raises(NotFoundError, match=re.escape("vmo-ns-mgmt-1.0.3.tgz is not there")):
        helm.discover(reg(url, ChartFilter("vmo-*")))


def test_not_a_helm_repository(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("hello")
    with serve_directory(tmp_path) as url:
        with pytest.raises(NotFoundError, match=r"no index\.yaml at .*not a Helm repository"):
            helm.discover(reg(url))
        (tmp_path / "index.yaml").write_text("entries: [unclosed\n  : :")
        with pytest.raises(RegistryError, match=r"not a Helm repository: .*not valid YAML") as e:
            helm.discover(reg(url))
        assert "\n" not in str(e.value)
        (tmp_path / "index.yaml").write_text("apiVersion: v1\n")
        with pytest.raises(RegistryError, match="no 'entries'"):
            helm.discover(reg(url))


def test_unreachable_names_the_host() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RegistryError, match=f"cannot reach 127.0.0.1:{port}"):
        helm.discover(reg(f"http://127.0.0.1:{port}"))


def test_bad_url() -> None:
    with pytest.raises(UsageError):
        helm.discover(reg("ftp://127.0.0.1/charts"))
    with pytest.raises(UsageError):
        helm.discover(Registry(name="x", kind="helm"))


@responses.activate
def test_401_is_an_auth_error_without_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HU", "alice")
    monkeypatch.setenv("HP", "s3cret-pw")
    responses.get("https://charts.test/repo/index.yaml", status=401)
    r = reg("charts.test/repo", auth=AuthEnv("HU", "HP"))
    with pytest.raises(AuthError, match="401") as e:
        helm.discover(r)
    assert "s3cret" not in str(e.value) and "$HU/$HP" in str(e.value)
    sent = responses.calls[0].request.headers["Authorization"]
    assert sent.startswith("Basic ")


@responses.activate
def test_credentials_stay_on_the_repository_host(monkeypatch: pytest.MonkeyPatch) -> None:
    repo_url = "https://charts.test/repo"
    monkeypatch.setenv("HU", "alice")
    monkeypatch.setenv("HP", "pw")
    index = write_index(
        [(ChartVersion("demo", "1.0.0", (), None, GENERATED, {}), "https://cdn.test/demo.tgz")],
        GENERATED,
    )
    responses.get(f"{repo_url}/index.yaml", body=index)
    responses.get("https://cdn.test/demo.tgz", body=b"not a chart")
    with pytest.raises(OperationError, match="not a chart archive"):
        helm.discover(reg(repo_url, auth=AuthEnv("HU", "HP")))
    assert "Authorization" in responses.calls[0].request.headers
    assert "Authorization" not in responses.calls[1].request.headers


@responses.activate
def test_index_redirect_to_another_host_is_refused() -> None:
    responses.get(
        "https://charts.test/index.yaml",
        status=302,
        headers={"Location": "https://elsewhere.test/index.yaml"},
    )
    pattern = re.escape("redirects to another host (elsewhere.test)")
    with pytest.raises(RegistryError, match=pattern):
        helm.discover(reg("https://charts.test"))
    assert len(responses.calls) == 1


@responses.activate
def test_oversized_chart_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(helm, "MAX_CHART", 1024)
    index = write_index([(ChartVersion("big", "1.0.0", (), None, None, {}), "big.tgz")], GENERATED)
    responses.get("https://charts.test/index.yaml", body=index)
    responses.get("https://charts.test/big.tgz", body=b"x" * 4096)
    with pytest.raises(OperationError, match="more than the 1024-byte cap"):
        helm.discover(reg("https://charts.test"))


@responses.activate
def test_server_errors_are_retried_then_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.sleep", lambda _s: None)
    responses.get("https://charts.test/index.yaml", status=503)
    with pytest.raises(RegistryError, match="503"):
        helm.discover(reg("https://charts.test"))
    # The one retry rule (registry/retry.py), the same count as for a registry.
    from mirror.registry.retry import DEFAULT

    assert len(responses.calls) == DEFAULT.attempts


@responses.activate
def test_names_that_cannot_land_in_a_registry_are_skipped_with_a_note() -> None:
    entries = [
        (ChartVersion("../escape", "1.0.0", (), None, None, {}), "a.tgz"),
        (ChartVersion("good", "1.0 beta", (), None, None, {}), "b.tgz"),
    ]
    responses.get("https://charts.test/index.yaml", body=write_index(entries, GENERATED))
    sel = helm.discover(reg("https://charts.test"))
    assert sel.found == []
    assert sum("not a valid OCI repository name and tag" in n for n in sel.notes) == 2
    assert len(responses.calls) == 1


def test_a_repository_url_with_a_query_keeps_it_a_query(served: tuple[Repo, str]) -> None:
    """`…/charts?sig=x` asked for `/charts?sig=x/index.yaml` (the query swallowed the
    path): a signed URL's repository could not be used. Helm asks `/index.yaml?sig=x`."""
    assert helm.index_url("https://h/charts?sig=a/b") == "https://h/charts/index.yaml?sig=a/b"
    repo, _ = served
    seen: list[str] = []
    with serve_directory(repo.path, seen=seen) as url:
        sel = helm.discover(reg(f"{url}/?sig=abc", ChartFilter("hspc", latest=1)))
    assert refs(sel) == ["charts/corpus-charts/hspc:3.17.4"]
    assert seen[0].startswith("GET /index.yaml?sig=abc ")


@pytest.mark.parametrize(
    ("where", "bad"),
    [("entry", "http://127.0.0.1:99999/x.tgz"), ("entry", "http://[::1/x.tgz"),
     ("redirect", "http://127.0.0.1:99999/x.tgz"), ("redirect", "http://[::1/x.tgz")],
)  # fmt: skip
@responses.activate
def test_urls_python_cannot_read_are_a_registry_error(where: str, bad: str) -> None:
    """A port past 65535 or `http://[::1`, in an index entry or a redirect, was an
    internal error: Python's ValueError out of urlsplit."""
    url = bad if where == "entry" else "c.tgz"
    index = write_index([(ChartVersion("c", "1.0.0", (), None, None, {}), url)], GENERATED)
    responses.get("https://charts.test/index.yaml", body=index)
    if where == "redirect":
        responses.get("https://charts.test/c.tgz", status=302, headers={"Location": bad})
    with pytest.raises(RegistryError, match=r"no URL|not a URL|unsupported download URL"):
        helm.discover(reg("https://charts.test"))


@pytest.mark.parametrize("status", [204, 300, 304])
@pytest.mark.parametrize("what", ["index", "chart"])
@responses.activate
def test_only_200_brings_the_file(status: int, what: str) -> None:
    """A 304 to an unconditional GET, a 204, a 300 without Location were read as an empty
    body: 'no entries mapping' for an index, and exit 3 for a chart ('the .tgz has sha256
    e3b0c442...', the hash of nothing), where the server had failed."""
    index = write_index([(ChartVersion("c", "1.0.0", (), None, None, {}), "c.tgz")], GENERATED)
    if what == "index":
        responses.get("https://charts.test/index.yaml", status=status)
    else:
        responses.get("https://charts.test/index.yaml", body=index)
        responses.get("https://charts.test/c.tgz", status=status)
    with pytest.raises(RegistryError, match=f"{status} for .*only 200 brings the file"):
        helm.discover(reg("https://charts.test"))


def test_a_chart_that_inflates_past_helms_bound_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 3 MiB .tgz of zeros after Chart.yaml inflated 4 GiB, in 9 s, to read a few
    hundred bytes; the download cap let through some 500 GiB. Helm's loader stops at
    100 MiB; so does this reader."""
    import gzip
    import io
    import tarfile

    from mirror.formats import helm as formats_helm

    monkeypatch.setattr(formats_helm, "MAX_CHART_INFLATED", 1 << 20)

    def tgz(*files: tuple[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, data in files:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return gzip.compress(buf.getvalue())

    chart = ("c/Chart.yaml", b"name: c\nversion: 1.0.0\n")
    with pytest.raises(OperationError, match="inflates past 1 MiB, Helm's own bound"):
        chart_metadata(tgz(chart, ("c/z", bytes(3 << 20))), "c")
    assert chart_metadata(tgz(chart, ("c/z", bytes(1 << 19))), "c")["name"] == "c"
