"""The export cache is verified: a blob corrupted on disk is caught, dropped, refetched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mirror.cli import main


def test_corrupt_cache_blob_is_caught_dropped_and_refetched(
    seeded_registry: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # so the two bundles can be equal
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: c\nregistries:\n"
        f"  - {{name: Lab, kind: oci, url: '{seeded_registry.url}', basePath: production,"
        " repositories: [images/web], tags: {include: ['^1\\.0\\.0$']}}\n"
    )
    cache = tmp_path / "cache"
    first, second = tmp_path / "a.tar.zst", tmp_path / "b.tar.zst"
    assert main(["export", str(spec), "-o", str(first), "--cache-dir", str(cache)]) == 0
    biggest = max((cache / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
    data = bytearray(biggest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    biggest.write_bytes(bytes(data))  # same size: only the hash can tell
    capsys.readouterr()

    args = ["export", str(spec), "-o", str(second), "--cache-dir", str(cache), "--json"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "corrupt cache entry" in err and len(err.strip().splitlines()) == 1
    assert not second.exists() and not biggest.exists()

    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["downloadedBytes"] == len(data)
    assert second.read_bytes() == first.read_bytes()  # the refetched blob is the same


def test_a_warm_export_asks_only_what_changed(
    registry: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tags are asked with If-None-Match and answered 304 from the cache; an index's
    children (named by digest) are not asked at all. A moved tag is fetched afresh."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # byte-identical needs a fixed clock
    from faultproxy import MANIFEST, FaultProxy, mirror, write_spec

    from mirror.lab.content import make_image, make_layer
    from mirror.lab.seed import client_for, seed_artifact, seed_many, standard_items

    client = client_for(registry)
    seed_many(client, [i for i in standard_items("production") if "/images/" in i[0]])
    cache = tmp_path / "cache"
    with FaultProxy.running(registry.url) as proxy:
        spec = write_spec(
            tmp_path / "spec.yaml", proxy.url, repositories=["images/*"], provider=None
        )

        def export(name: str) -> dict[str, Any]:
            proxy.clear()
            run = mirror("export", spec, "-o", tmp_path / name, "--cache-dir", cache, "--json")
            assert run.rc == 0, run.err
            return dict(json.loads(run.out))

        first = export("a.tar.zst")
        tags = proxy.seen("GET", MANIFEST + "[^s]")  # by tag, not by sha256:
        assert tags >= 5 and proxy.seen("GET", MANIFEST + "sha256:") >= 2  # index children
        export("b.tar.zst")
        assert proxy.seen("GET", MANIFEST, status=304) == tags
        assert proxy.seen("GET", MANIFEST, status=200) == 0
        assert (tmp_path / "b.tar.zst").read_bytes() == (tmp_path / "a.tar.zst").read_bytes()

        moved = make_image("moved-on", layers=[make_layer("moved-on", 4096)])
        seed_artifact(client, "production/images/api-00", "1.0.0", moved, "image")
        third = export("c.tar.zst")
        assert proxy.seen("GET", MANIFEST, status=200) == 1  # only the tag that moved
        assert third["artifacts"] == first["artifacts"]
    client.close()


def test_kept_manifests_and_tags_are_hints_checked_before_use(tmp_path: Path) -> None:
    from mirror.cache import TAGS_FILE, BlobCache
    from mirror.oci.descriptor import MAX_MANIFEST, descriptor_for

    data = b'{"schemaVersion": 2, "layers": []}'
    desc = descriptor_for(data, "application/vnd.oci.image.manifest.v1+json")
    cache = BlobCache(tmp_path)
    cache.path(desc.digest).parent.mkdir(parents=True)
    cache.path(desc.digest).write_bytes(data)
    assert cache.manifest(desc) == data
    cache.path(desc.digest).write_bytes(data.replace(b"2", b"3"))  # same size, other bytes
    assert cache.manifest(desc) is None  # so the registry is asked in full
    cache.path(desc.digest).write_bytes(data + b" " * 10)  # longer than the hint says
    assert cache.manifest(desc) is None
    # A hint naming something bigger than any manifest (a blob, say) is refused unread.
    blob = b"x" * (MAX_MANIFEST + 1)
    huge = descriptor_for(blob, desc.media_type)
    cache.path(huge.digest).write_bytes(blob)
    assert cache.manifest(huge) is None

    cache.saw("reg.example/a/b:1.0", desc)
    cache.save_seen()
    assert BlobCache(tmp_path).last_seen("reg.example/a/b:1.0") == desc
    assert BlobCache(tmp_path).last_seen("reg.example/a/b:2.0") is None
    for junk in ("not json", "[1, 2]", '{"x": {"digest": "md5:1"}}'):
        (tmp_path / TAGS_FILE).write_text(junk)
        assert BlobCache(tmp_path).last_seen("x") is None


def test_a_rerun_sweeps_what_killed_runs_left_and_nothing_else(
    seeded_registry: Any, tmp_path: Path
) -> None:
    """Temp files of dead writers (by the naming rule: .NAME.mirror-PID-*.tmp) go; a live
    writer's, and anything not named by the rule, stay (issue 15, item 4)."""
    import os
    import subprocess
    import sys

    from faultproxy import mirror, write_spec

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out_dir, cache = tmp_path / "out", tmp_path / "cache"
    blobs = cache / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    out_dir.mkdir()
    stale = [
        out_dir / f".b.tar.zst.mirror-{dead.pid}-abc.tmp",
        out_dir / f".b.tar.zst.mirror-{dead.pid}-def.part",
        blobs / f".{'0' * 64}.mirror-{dead.pid}-ghi.tmp",
    ]
    kept = [
        out_dir / f".b.tar.zst.mirror-{os.getpid()}-live.tmp",  # a live writer's
        out_dir / ".b.tar.zst.abc.tmp",  # not named by the rule
        out_dir / f".other.mirror-{dead.pid}-x.tmp",  # another output's: not this run's to take
        out_dir / "notes.txt",
    ]
    for path in stale + kept:
        path.write_bytes(b"x" * 1024)
    spec = write_spec(tmp_path / "s.yaml", seeded_registry.url, repositories=["images/web"])
    run = mirror("export", spec, "-o", out_dir / "b.tar.zst", "--cache-dir", cache)
    assert run.rc == 0, run.err
    assert [p for p in stale if p.exists()] == []
    assert all(p.exists() for p in kept)


def test_a_full_disk_under_the_cache_names_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC or EFBIG filling the cache said only 'No space left on device' (the
    interruption sweep, stop 31): the line names the cache now, exit 1."""
    import errno
    import hashlib
    import io

    from mirror.cache import BlobCache
    from mirror.errors import OperationError
    from mirror.oci.descriptor import Descriptor

    data = b"x" * 1000
    desc = Descriptor(
        "application/octet-stream", "sha256:" + hashlib.sha256(data).hexdigest(), 1000
    )
    cache = BlobCache(tmp_path / "cache")

    class Full(io.BytesIO):
        def write(self, b: Any) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("mirror.streams.os.fdopen", lambda fd, mode: Full())
    with pytest.raises(OperationError) as info:
        cache.put(desc, io.BytesIO(data))
    assert str(info.value) == (
        f"{tmp_path / 'cache'}: cannot write to the export cache: No space left on device"
    )
    assert info.value.exit_code == 1 and not cache.has(desc)


def _spec(tmp_path: Path, url: str) -> Path:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: c\nregistries:\n"
        f"  - {{name: Lab, kind: oci, url: '{url}', basePath: production,"
        " repositories: [images/web], tags: {include: ['^1\\.0\\.0$']}}\n"
    )
    return spec


def test_a_hints_media_type_is_checked_against_the_kept_bytes(
    seeded_registry: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tags.json saying `text/html` for a tag whose digest still matched: the registry's
    304 kept the hint's type, the manifests were walked as blobs, and the warm export
    wrote a bundle of manifests without their layers, exit 0, that verify passed."""
    from mirror.oci.descriptor import media_type_fits

    manifest = b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}'
    assert media_type_fits("application/vnd.oci.image.manifest.v1+json", manifest)
    assert not media_type_fits("text/html", manifest)
    assert not media_type_fits("application/vnd.oci.image.index.v1+json", b'{"layers": []}')
    assert media_type_fits("application/vnd.oci.image.index.v1+json", b'{"manifests": []}')

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    spec, cache = _spec(tmp_path, seeded_registry.url), tmp_path / "cache"
    first, second = tmp_path / "a.tar.zst", tmp_path / "b.tar.zst"
    assert main(["export", str(spec), "-o", str(first), "--cache-dir", str(cache)]) == 0
    tags = json.loads((cache / "tags.json").read_text())
    for entry in tags.values():
        entry["mediaType"] = "text/html"
    (cache / "tags.json").write_text(json.dumps(tags))
    assert main(["export", str(spec), "-o", str(second), "--cache-dir", str(cache)]) == 0
    assert second.read_bytes() == first.read_bytes()
    assert main(["verify", str(second), "--allow-unsigned"]) == 0


def test_what_is_not_a_blob_or_a_hint_in_the_cache_is_said_as_the_cache(
    seeded_registry: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder where a blob belongs was exit 2, 'give a file name', on every run; a folder
    at tags.json failed the run (exit 2) after the bundle was written: a hint it is."""
    spec, cache = _spec(tmp_path, seeded_registry.url), tmp_path / "cache"
    out = tmp_path / "a.tar.zst"
    assert main(["export", str(spec), "-o", str(out), "--cache-dir", str(cache)]) == 0
    (cache / "tags.json").unlink()
    (cache / "tags.json").mkdir()
    assert main(["export", str(spec), "-o", str(out), "--cache-dir", str(cache)]) == 0
    biggest = max((cache / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
    biggest.unlink()
    biggest.mkdir()
    capsys.readouterr()
    assert (
        main(["export", str(spec), "-o", str(tmp_path / "b.tar.zst"), "--cache-dir", str(cache)])
        == 1
    )
    assert "the export cache is damaged" in capsys.readouterr().err
