"""The Helm folder keeps the Helm repository's truth (issue 20).

One chart version reaches the bundle twice: from a lab Helm repository (served over HTTP,
its index entry created at a nanosecond time with an offset) and, as a Helm OCI chart, from a
lab OCI registry. `import --helm-repo-dir` must write the repository's own entry back with
every field but `urls` unchanged, not the entry the OCI copy would make.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from faultproxy import Reg, mirror

from mirror.formats.helm import chart_artifact, chart_tag
from mirror.lab.corpus import LAB_TIME, build_helm_repo
from mirror.lab.httpserver import serve_directory
from mirror.lab.registry import LabRegistry
from mirror.lab.seed import client_for, seed_artifact

NAME, VERSION = "fidelity", "0.1.0"
NS_TIME = "2024-05-15T10:20:30.123456784+02:00"  # Helm writes nanoseconds and the offset
CHART_YAML = f"""apiVersion: v2
name: {NAME}
version: {VERSION}
appVersion: "1.2.3"
description: A chart whose index entry must survive the gap
home: https://charts.example.invalid/{NAME}
keywords: [fidelity, helm]
maintainers:
  - name: Ops
    email: ops@example.invalid
annotations:
  category: Testing
type: application
"""


def _chart_tgz() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, text in ((f"{NAME}/Chart.yaml", CHART_YAML), (f"{NAME}/values.yaml", "a: 1\n")):
            info = tarfile.TarInfo(path)
            info.size = len(text.encode())
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(text.encode()))
    return buf.getvalue()


class _TextTimes(yaml.SafeLoader):
    """Times as their text, so nanoseconds are compared, not PyYAML's microseconds."""

    yaml_implicit_resolvers = {
        k: [(tag, rx) for tag, rx in v if not tag.endswith(":timestamp")]
        for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


def _entries(text: str, load: Callable[[str], Any]) -> dict[tuple[str, str], dict[str, Any]]:
    doc = load(text)
    return {(e["name"], e["version"]): e for items in doc["entries"].values() for e in items}


def _assert_the_sources_entry(source: Path, written: str) -> dict[str, Any]:
    """Every field of the source index's entry but `urls`, equal as text (as Helm reads it),
    and as PyYAML types too when the source quoted its times as the output does."""
    loaders = _loaders()
    if f"created: {NS_TIME}" in source.read_text():  # plain: PyYAML alone reads a datetime
        loaders = loaders[1:]
    for load in loaders:
        want = _entries(source.read_text(), load)
        got = _entries(written, load)
        assert set(got) == set(want) == {(NAME, VERSION)}
        a, b = want[(NAME, VERSION)], got[(NAME, VERSION)]
        assert sorted(b) == sorted(a)
        for field in sorted(set(a) - {"urls"}):
            assert b[field] == a[field], field
    assert b["created"] == NS_TIME
    return b


def _loaders() -> list[Callable[[str], Any]]:
    return [
        yaml.safe_load,
        lambda text: yaml.load(text, Loader=_TextTimes),  # a SafeLoader
        lambda text: yaml.load(text, Loader=yaml.BaseLoader),  # every scalar as its text
    ]


@pytest.fixture(params=["quoted", "plain"])
def bundle(
    tmp_path: Path, registry_factory: Callable[..., LabRegistry], request: pytest.FixtureRequest
) -> Path:
    """A bundle with the chart from a Helm repository and from an OCI registry. The index
    has `created` quoted (as PyYAML writes it) or plain (as Helm's docs show it)."""
    tgz = tmp_path / f"{NAME}-{VERSION}.tgz"
    tgz.write_bytes(_chart_tgz())
    repo = build_helm_repo(tmp_path / "helm-repo", [tgz], generated=NS_TIME)
    if request.param == "plain":
        index = repo / "index.yaml"
        quoted = f"    created: '{NS_TIME}'\n"
        assert quoted in index.read_text()
        index.write_text(index.read_text().replace(quoted, f"    created: {NS_TIME}\n"))
    oci = registry_factory()
    client = client_for(oci)
    try:  # what `helm push` leaves, with the lab's own (other) created time
        art = chart_artifact(tgz.read_bytes(), created=LAB_TIME)
        seed_artifact(client, f"production/charts/{NAME}", chart_tag(VERSION), art, "chart")
    finally:
        client.close()
    out = tmp_path / "both.tar.zst"
    with serve_directory(repo) as url:
        spec = tmp_path / "both.yaml"
        spec.write_text(
            yaml.safe_dump(
                {
                    "name": "both",
                    "registries": [
                        {"name": "Team Charts", "kind": "helm", "url": url},
                        {"name": "Lab", "kind": "oci", "url": oci.url, "basePath": "production"},
                    ],
                }
            )
        )
        run = mirror(
            "export", spec, "-o", out, "--cache-dir", tmp_path / "cache", "--no-images", "--json"
        )
    assert run.rc == 0, run.err
    assert run.json()["artifacts"] == 2  # the same chart version, once from each source
    return out


def test_the_helm_repositorys_entry_wins_field_for_field(
    tmp_path: Path, bundle: Path, registry: LabRegistry
) -> None:
    folder = tmp_path / "folder"
    for _ in range(2):  # and a second import, which merges with the index it finds, keeps it
        run = mirror(
            "import", bundle, "--target", registry.url, "--allow-unsigned",
            "--helm-repo-dir", folder, "--catalog", tmp_path / "catalog.json",
        )  # fmt: skip
        assert run.rc == 0, run.err
        source = tmp_path / "helm-repo" / "index.yaml"
        entry = _assert_the_sources_entry(source, (folder / "index.yaml").read_text())
    tgz = folder / entry["urls"][0]
    assert hashlib.sha256(tgz.read_bytes()).hexdigest() == entry["digest"]


def test_mirror_serve_writes_the_helm_repositorys_entry(tmp_path: Path, bundle: Path) -> None:
    """`mirror serve` builds its Helm repositories with the same code: the same entry."""
    from test_serve_e2e import Served

    served = Served(bundle, "--allow-unsigned", "--listen", "127.0.0.1:0")
    try:
        url = served.wait_ready()
        with requests.Session() as s:
            s.trust_env = False
            resp = s.get(f"{url}/charts/team-charts/index.yaml", timeout=10)
    finally:
        served.stop()
    assert resp.status_code == 200, resp.text
    _assert_the_sources_entry(tmp_path / "helm-repo" / "index.yaml", resp.text)


def test_an_entry_manifest_json_cannot_hold_is_left_out() -> None:
    """NaN is not JSON, and manifest.json is read with nesting bounded at 64: such an entry
    is left out (the far side builds one) rather than making the bundle unreadable."""
    from mirror.bundle.manifest import ArtifactRecord, ChartInfo
    from mirror.describe import _json
    from mirror.formats import jsondoc

    plain = {"name": NAME, "version": VERSION, "created": NS_TIME, "x": {"y": [1, 2.5]}}
    assert _json(plain) == plain
    assert _json({**plain, "weight": float("nan")}) is None
    deep: dict[str, object] = {"leaf": 1}
    for _ in range(jsondoc.MAX_DEPTH - 5):
        deep = {"d": deep}
    assert _json(deep) == deep  # the deepest manifest.json still reads
    record = ArtifactRecord(
        "r", "chart", "c", "1", "c:1", "sha256:" + "0" * 64, "m", 1, False,
        chart=ChartInfo(NAME, VERSION, deep),
    )  # fmt: skip
    jsondoc.check_depth({"artifacts": [record.to_json()]})
    assert _json({"d": deep}) is None


def test_an_entry_that_does_not_describe_its_chart_fails_verify_as_import_would(
    tmp_path: Path, bundle: Path, registry: LabRegistry
) -> None:
    """verify passed a bundle whose kept index entry names another digest; import's Helm
    folder, and serve, refused it only on the way (one verdict: verify says it first)."""
    import zstandard

    from mirror.bundle.reader import BundleReader
    from mirror.bundle.toc import FOOTER_SIZE, TocEntry, decode_footer, encode_footer, encode_toc

    reader = BundleReader(bundle)
    first_end = min(e.frame for e in reader.toc().values() if e.frame > 0)
    raw = bundle.read_bytes()
    head = zstandard.ZstdDecompressor().decompress(raw[:first_end], max_output_size=1 << 24)
    entry = json.loads(reader.head()[0])
    digest = next(a["chart"]["indexEntry"]["digest"] for a in entry["artifacts"]
                  if a.get("chart", {}).get("indexEntry"))  # fmt: skip
    named = re.compile(rb'("digest": ?")' + digest.encode() + rb'"')  # the entry's, no other
    lie = named.sub(rb"\g<1>" + b"0" * 64 + b'"', head, count=1)
    # Same length: the tar header stays valid; the bundle is unsigned, so nothing else
    # names manifest.json's bytes; the table of contents moves with the re-packed frame.
    assert lie != head and len(lie) == len(head)
    frame = zstandard.ZstdCompressor(level=3).compress(lie)
    delta = len(frame) - first_end
    toc_at = decode_footer(raw[-FOOTER_SIZE:], len(raw))
    moved = [
        TocEntry(e.path, e.frame + delta if e.frame else 0, e.offset, e.size)
        for e in reader.toc().values()
    ]
    body = frame + raw[first_end:toc_at]
    bad = tmp_path / "lie.tar.zst"
    bad.write_bytes(body + encode_toc(moved) + encode_footer(len(body)))
    run = mirror("verify", bad, "--allow-unsigned")
    assert run.rc == 3 and "Helm repository entry does not describe" in run.error_line(), run.err
    imported = mirror(
        "import", bad, "--target", registry.url, "--allow-unsigned", "--helm-repo-dir",
        tmp_path / "folder", "--catalog", tmp_path / "c.json",
    )  # fmt: skip
    assert imported.rc == 3 and Reg(registry.url).catalog() == []
