"""Chunked uploads hold to the OCI spec's Content-Range, which Distribution 2.8 ignores.

Issue 17, item 2: an off-by-one `Content-Range` survived because the real registry does not
read the header. The fault proxy's strict mode reads it for the registry: each PATCH must
be `START-END`, START the next byte of its session, END = START + length - 1 (inclusive).
A blob larger than the chunk size then goes through `mirror import` end to end.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from faultproxy import UPLOAD, FaultProxy, Reg, isolated_env, mirror, write_spec

from mirror import importer
from mirror.lab import LabRegistry
from mirror.registry.client import RegistryClient

pytestmark = pytest.mark.timeout(120)

# Small enough that the standard seed's 192 KiB base layer goes up in four chunks, the last
# one short (196 608 is no multiple of 50 000), and its 32 KiB top layers in one PUT.
CHUNK = 50_000
MONOLITHIC_MAX = 40_000


@pytest.fixture(scope="module", autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with isolated_env(tmp_path_factory):
        yield


@pytest.fixture(scope="module")
def web_bundle(seeded_registry: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An unsigned bundle of `images/web`: three tags over layers of 192, 96 and 32 KiB."""
    work = tmp_path_factory.mktemp("web")
    spec = write_spec(work / "s.yaml", seeded_registry.url, repositories=["images/web"])
    out = work / "web.tar.zst"
    run = mirror("export", spec, "--output", out, "--cache-dir", work / "cache")
    assert run.rc == 0, run.err
    return out


def _upload(session: requests.Session, url: str, repo: str) -> str:
    resp = session.post(f"{url}/v2/{repo}/blobs/uploads/", timeout=10)
    assert resp.status_code == 202, resp.text
    location = resp.headers["Location"]
    return location if "://" in location else url + location


def _patch(session: requests.Session, location: str, data: bytes, crange: str | None) -> Any:
    headers = {"Content-Type": "application/octet-stream"}
    if crange is not None:
        headers["Content-Range"] = crange
    return session.patch(location, data=data, headers=headers, timeout=10)


def test_the_strict_proxy_refuses_every_range_but_the_next_one(registry: LabRegistry) -> None:
    """The check itself, against the real registry behind it: exclusive END, a missing
    header, an overlap and a gap are each 416 and never reach the registry; the exact
    next range is taken, and the blob the chunks make is whole."""
    data = bytes(range(256)) * 40  # 10 240 bytes, two chunks of 5 120
    first, second = data[:5120], data[5120:]
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    s = requests.Session()
    s.trust_env = False
    with FaultProxy.running(registry.url, strict_ranges=True) as proxy:
        loc = _upload(s, proxy.url, "strict/blob")
        for bad in ("0-5120", "1-5120", None, "bytes=0-5119", "0-5119/10240"):
            assert _patch(s, loc, first, bad).status_code == 416, bad
        resp = _patch(s, loc, first, "0-5119")
        assert resp.status_code == 202, resp.text
        loc = resp.headers["Location"]
        loc = loc if "://" in loc else proxy.url + loc
        for bad in ("0-5119", "5121-10240", "5120-10240"):  # overlap, gap, exclusive END
            assert _patch(s, loc, second, bad).status_code == 416, bad
        resp = _patch(s, loc, second, "5120-10239")
        assert resp.status_code == 202, resp.text
        loc = resp.headers["Location"]
        loc = loc if "://" in loc else proxy.url + loc
        done = s.put(loc, params={"digest": digest}, timeout=10)
        assert done.status_code == 201, done.text
        assert len(proxy.range_errors) == 8
        assert all("expected '0-5119'" in e for e in proxy.range_errors[:5])
        assert all("expected '5120-10239'" in e for e in proxy.range_errors[5:])
        # Only the two good chunks reached the registry.
        assert proxy.seen("PATCH", UPLOAD, status=202) == 2
        assert proxy.seen("PATCH", UPLOAD, status=416) == 8
    assert Reg(registry.url).blob_ok("strict/blob", digest)
    assert s.get(f"{registry.url}/v2/strict/blob/blobs/{digest}", timeout=10).content == data


class _SmallChunks(RegistryClient):
    """The import's client with small chunks, so a lab-sized blob goes up in PATCHes."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        kwargs.update(chunk_size=CHUNK, monolithic_max=MONOLITHIC_MAX)
        super().__init__(url, **kwargs)


def _source_blob_sizes(url: str, repo: str) -> dict[str, int]:
    """Every layer and config under the repository's tags, with its size, from the source."""
    reg = Reg(url)
    sizes: dict[str, int] = {}
    for tag in reg.tags(repo):
        _, blobs = reg.graph_blobs(repo, tag)
        for digest in blobs:
            resp = reg.s.head(f"{url}/v2/{repo}/blobs/{digest}", timeout=10)
            sizes[digest] = int(resp.headers["Content-Length"])
    return sizes


def test_import_pushes_a_blob_larger_than_the_chunk_size_with_exact_ranges(
    web_bundle: Path,
    seeded_registry: Any,
    registry: LabRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`mirror import` through the strict proxy: every PATCH states exactly its bytes,
    the count of PATCHes is the chunks the large blobs make, and every tag lands with the
    source's digest over whole blobs."""
    monkeypatch.setattr(importer, "RegistryClient", _SmallChunks)
    sizes = _source_blob_sizes(seeded_registry.url, "production/images/web")
    chunked = {d: n for d, n in sizes.items() if n > MONOLITHIC_MAX}
    assert max(chunked.values()) > 3 * CHUNK, "no blob spans several chunks"
    assert any(n % CHUNK for n in chunked.values()), "no blob ends in a short chunk"
    with FaultProxy.running(registry.url, strict_ranges=True) as proxy:
        run = mirror(
            "import",
            web_bundle,
            "--target",
            proxy.url,
            "--allow-unsigned",
            "--catalog",
            tmp_path / "catalog.json",
        )
        assert proxy.range_errors == []
        assert run.rc == 0, run.err
        patches = proxy.seen("PATCH", UPLOAD, status=202)
        assert patches == sum(math.ceil(n / CHUNK) for n in chunked.values())
        assert proxy.seen("PATCH", UPLOAD) == patches  # nothing refused, nothing retried
    reg = Reg(registry.url)
    for s in seeded_registry.seeded:
        if s.repository == "production/images/web":
            assert reg.digest(s.repository, s.tag) == s.digest, s.ref
    for digest in chunked:
        got = reg.s.get(f"{registry.url}/v2/production/images/web/blobs/{digest}", timeout=10)
        assert "sha256:" + hashlib.sha256(got.content).hexdigest() == digest
    assert reg.dangling() == []
