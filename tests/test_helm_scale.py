"""Helm at scale (issue 19): a warm export asks for index.yaml conditionally and, when it
has not changed, reads back the versions it parsed last time instead of parsing again."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_helm_source import Repo, build_repo, reg

from mirror.cache import BlobCache
from mirror.cli import main
from mirror.discovery import helm
from mirror.formats import helm as helm_format
from mirror.lab.helmindex import bitnami_index
from mirror.lab.httpserver import serve_directory


@pytest.fixture()
def counted(tmp_path: Path, corpus: Path) -> Iterator[tuple[Repo, str, list[str]]]:
    repo = build_repo(tmp_path / "repo", corpus)
    seen: list[str] = []
    with serve_directory(repo.path, seen=seen) as url:
        yield repo, url, seen


@pytest.fixture()
def parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts index.yaml parses (the calls into the YAML parser the source makes)."""
    calls: list[int] = []
    real = helm_format.parse_index

    def counting(data: bytes, base_url: str, where: str) -> Any:
        calls.append(len(data))
        return real(data, base_url, where)

    monkeypatch.setattr(helm, "parse_index", counting)
    return calls


def index_requests(seen: list[str]) -> list[str]:
    return [line for line in seen if line.startswith("GET /index.yaml")]


def cold(url: str, tmp_path: Path) -> tuple[BlobCache, Any]:
    """A first discovery into a new cache: the cache, and what it found."""
    cache = BlobCache(tmp_path / "cache")
    return cache, helm.discover(reg(url), known=cache)


def memo_file(tmp_path: Path, which: str) -> Path:
    """The cache's Helm memo ("memo": validators and digests) or its kept versions."""
    folder = tmp_path / "cache" / "helm"
    if which == "memo":
        return next(p for p in folder.iterdir() if len(p.name) == 37)
    return next(folder.glob("*.versions.json"))


def test_a_warm_discovery_gets_304_and_skips_the_parse(
    counted: tuple[Repo, str, list[str]], parses: list[int], tmp_path: Path
) -> None:
    _, url, seen = counted
    cache, first = cold(url, tmp_path)
    assert index_requests(seen) == ["GET /index.yaml 200"] and len(parses) == 1
    warm = helm.discover(reg(url), known=cache)
    assert index_requests(seen)[1:] == ["GET /index.yaml 304"] and len(parses) == 1
    assert [(f.ref, f.desc) for f in warm.found] == [(f.ref, f.desc) for f in first.found]
    # The repository's own entries too (they are compared by hand: not part of equality).
    # Kept without them, a warm export's bundle lost `chart.indexEntry` (stop 31's audit).
    entries = [f.index_entry for f in first.found]
    assert all(entries) and [f.index_entry for f in warm.found] == entries
    # The memo names no URL (its query may hold a token), only digests and validators.
    memo = memo_file(tmp_path, "memo")
    assert set(json.loads(memo.read_text())) == {"etag", "modified", "index", "parsed"}


def test_a_changed_index_is_parsed_again_and_the_same_bytes_are_not(
    counted: tuple[Repo, str, list[str]], parses: list[int], tmp_path: Path
) -> None:
    repo, url, seen = counted
    cache, _ = cold(url, tmp_path)
    index = repo.path / "index.yaml"
    st = index.stat()
    os.utime(index, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # new ETag, same bytes
    helm.discover(reg(url), known=cache)
    assert index_requests(seen)[1:] == ["GET /index.yaml 200"] and len(parses) == 1
    doc = repo.index()
    doc["entries"].pop("hspc")
    index.write_text(yaml.safe_dump(doc))
    changed = helm.discover(reg(url), known=cache)
    assert index_requests(seen)[2:] == ["GET /index.yaml 200"] and len(parses) == 2
    assert {f.repository for f in changed.found} == {"linstor-gui", "vmo-ns-mgmt"}
    helm.discover(reg(url), known=cache)  # and that one is what the next run keeps
    assert index_requests(seen)[3:] == ["GET /index.yaml 304"] and len(parses) == 2


def test_a_damaged_memo_is_a_full_get_and_a_parse(
    counted: tuple[Repo, str, list[str]], parses: list[int], tmp_path: Path
) -> None:
    _, url, seen = counted
    cache, _ = cold(url, tmp_path)
    kept = memo_file(tmp_path, "versions")
    kept.write_bytes(kept.read_bytes().replace(b"hspc", b"hspd"))
    sel = helm.discover(reg(url), known=cache)
    assert index_requests(seen)[1:] == ["GET /index.yaml 200"] and len(parses) == 2
    assert "hspc" in {f.repository for f in sel.found}


def test_a_memo_kept_without_index_entries_is_a_miss(
    counted: tuple[Repo, str, list[str]], parses: list[int], tmp_path: Path
) -> None:
    """Memos written before entries were kept hold only Chart.yaml's fields: parse again."""
    _, url, seen = counted
    cache, first = cold(url, tmp_path)
    kept = memo_file(tmp_path, "versions")
    items = json.loads(kept.read_bytes())
    for item in items:
        item["metadata"] = helm_format.metadata_of(item.pop("entry"))
    data = json.dumps(items, separators=(",", ":")).encode()
    old = kept.with_name(hashlib.sha256(data).hexdigest() + ".versions.json")
    old.write_bytes(data)
    memo = memo_file(tmp_path, "memo")
    doc = json.loads(memo.read_text())
    memo.write_text(json.dumps({**doc, "parsed": old.name.split(".")[0]}))
    warm = helm.discover(reg(url), known=cache)
    assert index_requests(seen)[1:] == ["GET /index.yaml 200"] and len(parses) == 2
    assert [f.index_entry for f in warm.found] == [f.index_entry for f in first.found]


def test_a_warm_dry_run_export_sends_validators(
    counted: tuple[Repo, str, list[str]], parses: list[int], tmp_path: Path
) -> None:
    _, url, seen = counted
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "charts",
                "registries": [
                    {"name": "repo", "kind": "helm", "url": url, "charts": [{"name": "hspc"}]}
                ],
            }
        )
    )
    args = ["export", str(spec), "--dry-run", "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 0 and main(args) == 0
    assert index_requests(seen) == ["GET /index.yaml 200", "GET /index.yaml 304"]
    assert len(parses) == 1


def test_the_generated_bitnami_index_parses_to_every_version() -> None:
    data = bitnami_index(450, per_chart=90)
    assert data == bitnami_index(450, per_chart=90)  # deterministic
    versions = helm_format.parse_index(data, "http://127.0.0.1/", "lab")
    assert len(versions) == 450 and len({(v.name, v.version) for v in versions}) == 450
    assert all(v.digest and v.urls[0].startswith("http://127.0.0.1/charts/") for v in versions)
