from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
import yaml

from mirror.errors import ConflictError, OperationError
from mirror.formats.helm import (
    ChartVersion,
    chart_artifact,
    chart_metadata,
    chart_tag,
    go_json,
    parse_index,
    select_charts,
    write_index,
)
from mirror.oci import mediatypes as mt
from mirror.oci.descriptor import digest_of

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "pack-central"
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="pack-central corpus not present")
HEX = "ab" * 32

INDEX = f"""
apiVersion: v1
entries:
  nginx:
  - name: nginx
    version: 15.1.0
    appVersion: "1.25"
    urls: [charts/nginx-15.1.0.tgz]
    digest: {HEX}
    created: 2023-05-01T10:00:00.5Z
  - name: nginx
    version: 15.10.0
    urls: ["https://cdn.example/nginx-15.10.0.tgz"]
    digest: sha256:{HEX.upper()}
  - name: nginx
    version: 14.0.0
    urls: [nginx-14.0.0.tgz]
    digest: not-a-digest
  - "garbage"
  - {{name: nginx}}
  redis:
  - version: 17.0.0+build.1
    urls: [redis-17.0.0+build.1.tgz]
generated: "2023-05-01T10:00:00Z"
""".encode()


def test_parse_index_resolves_urls_and_normalizes() -> None:
    charts = parse_index(INDEX, "https://repo.example/sub?token=x", "Bitnami")
    by_version = {c.version: c for c in charts}
    assert sorted(by_version) == ["14.0.0", "15.1.0", "15.10.0", "17.0.0+build.1"]
    first = by_version["15.1.0"]
    assert first.urls == ("https://repo.example/sub/charts/nginx-15.1.0.tgz?token=x",)
    assert first.digest == HEX and first.created == "2023-05-01T10:00:00.5Z"  # as written
    assert first.metadata["appVersion"] == "1.25" and "urls" not in first.metadata
    assert by_version["15.10.0"].urls == ("https://cdn.example/nginx-15.10.0.tgz",)
    assert by_version["15.10.0"].digest == HEX
    assert by_version["14.0.0"].digest is None
    assert by_version["17.0.0+build.1"].name == "redis"  # name from the entries key
    assert by_version["17.0.0+build.1"].tag == "17.0.0_build.1"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"entries: [unclosed", "not valid YAML"),
        (b"apiVersion: v1\n", "no 'entries'"),
        (b"- a list\n", "no 'entries'"),
        (b"entries: 3\n", "no 'entries'"),
        # fastyaml-rs drops tags, never constructs them: here a list, not a mapping
        (b"entries: !!python/object/apply:os.system ['true']\n", "no 'entries'"),
        (b"entries: {}\n---\nentries: {}\n", "not valid YAML"),  # one document only
        (b"entries:\n" + b"- " * 100 + b"x\n", "not valid YAML"),  # deeper than 64
        (b"entries: {a: \xff}\n", "not valid YAML"),
    ],
)
def test_parse_index_errors(data: bytes, message: str) -> None:
    with pytest.raises(OperationError, match=message) as exc:
        parse_index(data, "http://127.0.0.1/", "Repo X")
    assert str(exc.value).startswith("Repo X: ")


def cv(name: str, version: str, digest: str | None = HEX) -> ChartVersion:
    return ChartVersion(
        name,
        version,
        (f"http://x/{name}-{version}.tgz",),
        digest,
        None,
        {
            "name": name,
            "version": version,
            "apiVersion": "v2",
            "description": "d <b>",
            "urls": ["http://ignored"],
        },
    )


def test_write_index_is_static_sorted_and_deterministic() -> None:
    charts = [
        (cv("nginx", "1.2.0"), "nginx-1.2.0.tgz"),
        (cv("nginx", "1.10.0"), "nginx-1.10.0.tgz"),
        (cv("apache", "0.1.0", None), "apache-0.1.0.tgz"),
        (cv("nginx", "1.10.0-rc.1"), "nginx-1.10.0-rc.1.tgz"),
    ]
    data = write_index(charts, "2024-01-01T00:00:00Z")
    assert data == write_index(list(reversed(charts)), "2024-01-01T00:00:00Z")
    doc = yaml.safe_load(data)
    assert doc["apiVersion"] == "v1" and doc["generated"] == "2024-01-01T00:00:00Z"
    assert list(doc["entries"]) == ["apache", "nginx"]
    assert [e["version"] for e in doc["entries"]["nginx"]] == ["1.10.0", "1.10.0-rc.1", "1.2.0"]
    top = doc["entries"]["nginx"][0]
    assert top["urls"] == ["nginx-1.10.0.tgz"] and top["digest"] == HEX
    assert top["created"] == "2024-01-01T00:00:00Z" and top["description"] == "d <b>"
    assert "digest" not in doc["entries"]["apache"][0]
    back = parse_index(data, "http://127.0.0.1:8080/helm", "again")
    assert {c.urls[0] for c in back} >= {"http://127.0.0.1:8080/helm/nginx-1.2.0.tgz"}


def test_write_index_duplicates() -> None:
    same = [(cv("a", "1.0.0"), "a.tgz"), (cv("a", "1.0.0"), "a.tgz")]
    assert len(yaml.safe_load(write_index(same, "g"))["entries"]["a"]) == 1
    with pytest.raises(ConflictError, match=r"a 1\.0\.0 given twice"):
        write_index([(cv("a", "1.0.0"), "a.tgz"), (cv("a", "1.0.0", "cd" * 32), "a.tgz")], "g")


def make_chart(
    chart_yaml: str,
    top: str = "demo",
    extra_header: bool = True,
    files: dict[str, str] | None = None,
) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, text in {f"{top}/Chart.yaml": chart_yaml, **(files or {})}.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out = gzip.compress(raw.getvalue(), mtime=0)
    if extra_header:  # like `helm package`: FLG.FEXTRA with a payload
        out = out[:3] + bytes([out[3] | 4]) + out[4:10] + b"\x04\x00+abc" + out[10:]
    return out


CHART = """
type: application
version: 1.10
name: demo
appVersion: 1.10
description: "A <demo>\\tchart & more"
apiVersion: v2
annotations: {category: Infra, org.opencontainers.image.title: nope}
maintainers: [{name: Me, email: me@example.org}, {name: You}]
sources: [https://src.example/demo, https://other]
keywords: [a, b]
unknownField: dropped
dependencies:
- {name: dep, repository: "", version: 1.x}
"""


def test_chart_metadata_reads_first_level_chart_yaml() -> None:
    meta = chart_metadata(make_chart(CHART, files={"demo/charts/sub/Chart.yaml": "name: sub"}))
    assert meta["name"] == "demo" and meta["apiVersion"] == "v2"
    assert meta["version"] == "1.1"  # unquoted 1.10 is a float to YAML, as to helm
    dotted = make_chart("name: dot\nversion: 1.0.0\n", top=".", extra_header=False)
    assert chart_metadata(dotted)["name"] == "dot"


def test_chart_metadata_merges_v1_requirements() -> None:
    meta = chart_metadata(
        make_chart(
            "apiVersion: v1\nname: old\nversion: 1.0.0\n",
            files={"demo/requirements.yaml": "dependencies: [{name: db, repository: r}]"},
        )
    )
    assert meta["dependencies"] == [{"name": "db", "repository": "r"}]


@pytest.mark.parametrize(
    ("tgz", "message"),
    [
        (b"not a tarball", "not a chart archive|no <chart>"),
        (gzip.compress(b"\0" * 1024, mtime=0), "no <chart>/Chart.yaml"),
        (make_chart("name: x\nversion: 1\n", top="a/b"), "no <chart>/Chart.yaml"),
        (make_chart("[unclosed"), "not valid YAML"),
        (make_chart("name: x\n"), "needs a name and a version"),
        (make_chart("x" * (1024 * 1024 + 1)), "under 1 MiB"),
        (make_chart("name: x\nversion: 1\n")[:30], "not a chart archive"),
    ],
)
def test_chart_metadata_errors(tgz: bytes, message: str) -> None:
    with pytest.raises(OperationError, match=message):
        chart_metadata(tgz, "repo/x.tgz")


def test_chart_artifact_matches_helm_push_shape() -> None:
    tgz = make_chart(CHART)
    art = chart_artifact(tgz)
    doc = json.loads(art.manifest)
    assert doc["config"]["mediaType"] == mt.HELM_CONFIG
    assert [layer["mediaType"] for layer in doc["layers"]] == [mt.HELM_CHART]
    assert doc["layers"][0]["digest"] == digest_of(tgz)
    config = dict(art.blobs)[next(d for d, _ in art.blobs if d.media_type == mt.HELM_CONFIG)]
    assert config == (
        b'{"name":"demo","sources":["https://src.example/demo","https://other"],"version":"1.1",'
        b'"description":"A \\u003cdemo\\u003e chart \\u0026 more","keywords":["a","b"],'
        b'"maintainers":[{"name":"Me","email":"me@example.org"},{"name":"You"}],'
        b'"apiVersion":"v2","appVersion":"1.1",'
        b'"annotations":{"category":"Infra","org.opencontainers.image.title":"nope"},'
        b'"dependencies":[{"name":"dep","version":"1.x","repository":""}],"type":"application"}'
    )
    assert doc["annotations"] == {
        "org.opencontainers.image.title": "demo",
        "org.opencontainers.image.version": "1.1",
        "org.opencontainers.image.description": "A <demo> chart & more",
        "org.opencontainers.image.source": "https://src.example/demo",
        "org.opencontainers.image.authors": "Me (me@example.org), You",
        "category": "Infra",
    }
    assert chart_artifact(tgz) == art
    stamped = json.loads(chart_artifact(tgz, created="2024-01-01T00:00:00Z").manifest)
    assert stamped["annotations"]["org.opencontainers.image.created"] == "2024-01-01T00:00:00Z"


def test_go_json_escapes_like_encoding_json() -> None:
    assert go_json({"a": "<&>\u2028é"}) == '{"a":"\\u003c\\u0026\\u003e\\u2028é"}'.encode()


@needs_corpus
def test_all_corpus_charts_load_and_convert() -> None:
    tgzs = sorted(CORPUS.glob("*/charts/*.tgz"))
    assert len(tgzs) == 82
    for path in tgzs:
        data = path.read_bytes()
        meta = chart_metadata(data, str(path))
        assert meta["name"] and meta["version"]
        art = chart_artifact(data, where=str(path))
        config = json.loads(next(b for d, b in art.blobs if d.media_type == mt.HELM_CONFIG))
        assert config["name"] == meta["name"] and config["apiVersion"] in ("v1", "v2")
        assert hashlib.sha256(data).hexdigest() == art.blobs[1][0].hex


def test_chart_tag() -> None:
    assert chart_tag("1.0.0+build.5") == "1.0.0_build.5" and chart_tag("1.0.0") == "1.0.0"


def test_select_charts_per_name() -> None:
    versions = [cv("nginx", v) for v in ("15.0.0", "15.2.0", "14.9.0", "16.0.0-rc.1", "15.10.0")]
    versions += [cv("nginx-ingress", "4.0.0"), cv("redis", "17.0.0"), cv("nginx", "15.2.0", None)]
    chosen = select_charts(versions, name_glob="nginx*", semver=">=4.0.0", latest=2)
    assert [(c.name, c.version) for c in chosen] == [
        ("nginx", "15.10.0"),
        ("nginx", "15.2.0"),
        ("nginx-ingress", "4.0.0"),
    ]
    assert chosen[1].digest == HEX  # the first of duplicate entries wins
    assert select_charts(versions, name_glob="redis") == [versions[-2]]
    assert select_charts(versions, name_glob="NGINX") == []
    with pytest.raises(ValueError):
        select_charts(versions, name_glob="*", semver=">>1")
    with pytest.raises(ValueError, match="latest"):
        select_charts(versions, name_glob="*", latest=-2)
