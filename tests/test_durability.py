"""`atomic_file` keeps its durability promise: the file's bytes, then the rename, reach disk.

Issue 17, item 2: dropping the file `fsync` or the directory `fsync` broke no test, because
nothing can observe a lost page cache short of pulling the power. So a seam records the
calls instead: `os.fsync` (and `os.replace`, for their order) as `mirror.streams` makes them,
each fsync named by what its descriptor is (the written file, or the folder holding it).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from mirror import streams
from mirror.catalog import CatalogEntry, upsert


@dataclass(frozen=True)
class Call:
    what: str  # "fsync-file", "fsync-dir" or "replace"
    inode: int
    size: int  # a file's size when it was fsynced: its bytes were flushed first


class Recorder:
    def __init__(self) -> None:
        self.calls: list[Call] = []

    def kinds(self) -> list[str]:
        return [c.what for c in self.calls]


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        kind = "fsync-dir" if stat.S_ISDIR(st.st_mode) else "fsync-file"
        rec.calls.append(Call(kind, st.st_ino, st.st_size))
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        rec.calls.append(Call("replace", os.stat(src).st_ino, os.stat(src).st_size))
        real_replace(src, dst)

    monkeypatch.setattr(streams.os, "fsync", fsync)
    monkeypatch.setattr(streams.os, "replace", replace)
    return rec


def test_durable_write_fsyncs_the_file_then_renames_then_fsyncs_the_folder(
    recorder: Recorder, tmp_path: Path
) -> None:
    path = tmp_path / "deep" / "out.json"
    data = b'{"hello": "disk"}' * 100
    with streams.atomic_file(path) as fh:
        fh.write(data)
    assert path.read_bytes() == data
    assert recorder.kinds() == ["fsync-file", "replace", "fsync-dir"]
    file_sync, rename, dir_sync = recorder.calls
    # The file fsynced is the one renamed into place, with every byte already written to it.
    assert file_sync.inode == rename.inode == path.stat().st_ino
    assert file_sync.size == len(data)
    # The folder fsynced is the one that now holds the new name.
    assert dir_sync.inode == path.parent.stat().st_ino


def test_a_cache_write_fsyncs_nothing(recorder: Recorder, tmp_path: Path) -> None:
    """durable=False (the cache, hint files) skips both fsyncs, and still renames."""
    path = tmp_path / "blob"
    with streams.atomic_file(path, durable=False) as fh:
        fh.write(b"cached")
    assert path.read_bytes() == b"cached"
    assert recorder.kinds() == ["replace"]


def test_a_failed_write_fsyncs_no_folder_and_leaves_nothing(
    recorder: Recorder, tmp_path: Path
) -> None:
    path = tmp_path / "out"
    with pytest.raises(ZeroDivisionError), streams.atomic_file(path) as fh:
        fh.write(b"half")
        _ = 1 / 0
    assert recorder.kinds() == []
    assert list(tmp_path.iterdir()) == []


def test_the_catalog_is_written_durably(recorder: Recorder, tmp_path: Path) -> None:
    """A caller of the promise: the system-scope catalog reaches disk, name and bytes."""
    path = tmp_path / "catalog.json"
    entry = CatalogEntry(
        name="Lab",
        kind="oci",
        provider_type="pack",
        endpoint="registry.local:5000",
        base_content_path="production",
        fips=False,
        source_url="127.0.0.1:5000",
        source_base_path="production",
        bundle_digest="sha256:" + "ab" * 32,
        imported_at="2024-05-01T10:00:00Z",
    )
    upsert(path, [entry])
    fsynced = {c.inode for c in recorder.calls if c.what == "fsync-file"}
    folders = {c.inode for c in recorder.calls if c.what == "fsync-dir"}
    assert path.stat().st_ino in fsynced
    assert tmp_path.stat().st_ino in folders
