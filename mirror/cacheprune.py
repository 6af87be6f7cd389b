"""`mirror cache prune`: keep the export cache under a size, least recently used out first.

A blob's last use is the later of its access and modification times; the cache sets the
modification time whenever it serves a blob (`BlobCache.open`), so the order holds on
`noatime` and `relatime` mounts and on tmpfs alike. A running export holds the cache's
lock file shared (`BlobCache.held`); prune takes it exclusive, so it never removes a blob
an export may be about to pack: with an export running it refuses, and says so.
Files under temporary names are a live writer's (never touched) or a killed one's (swept).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirror.errors import OperationError, UsageError
from mirror.streams import sweep_stale

LOCK_FILE = ".lock"


@dataclass(frozen=True)
class PruneReport:
    removed_blobs: int
    removed_bytes: int
    kept_blobs: int
    kept_bytes: int

    def to_json(self) -> dict[str, Any]:
        return {
            "removedBlobs": self.removed_blobs,
            "removedBytes": self.removed_bytes,
            "keptBlobs": self.kept_blobs,
            "keptBytes": self.kept_bytes,
        }


@contextmanager
def lock(root: Path, *, exclusive: bool) -> Iterator[bool]:
    """The cache's lock: shared while an export runs, exclusive while prune does. Yields
    False for an exclusive lock someone holds; a cache we cannot lock is used unlocked."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        yield True
        return
    try:
        mode = fcntl.LOCK_EX | fcntl.LOCK_NB if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(fd, mode)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing releases the lock


def prune(root: Path, max_size: int, *, dry_run: bool = False) -> PruneReport:
    """Remove the least recently used blobs until the rest fit in `max_size` bytes (with
    `dry_run`, only say which would go). A folder that holds no cache is a usage error:
    a mistyped --cache-dir must not read as "removed 0 blobs", and a folder that only
    looks like one (an OCI layout, containerd's content store: `blobs/` too) must not lose
    its blobs. Every export that used a cache left its lock file there."""
    if not (root / LOCK_FILE).is_file():
        if (root / "blobs").is_dir():
            raise UsageError(
                f"{root}: has blobs/ but is not an export cache (no {LOCK_FILE}, which every "
                "export leaves in its cache); prune removes only what mirror made"
            )
        raise UsageError(f"{root}: no export cache there (see --cache-dir)")
    with lock(root, exclusive=True) as mine:
        if not mine:
            raise OperationError(
                f"{root}: an export is using this cache; prune it after that export ends"
            )
        folder = root / "blobs" / "sha256"
        if not dry_run:
            sweep_stale(folder)
        entries = sorted(_entries(folder))
        kept = sum(size for _, _, size, _ in entries)
        removed = removed_bytes = 0
        for _, _, size, path in entries:
            if kept <= max_size:
                break
            if not dry_run:
                path.unlink(missing_ok=True)
            kept -= size
            removed += 1
            removed_bytes += size
        return PruneReport(removed, removed_bytes, len(entries) - removed, kept)


def _entries(folder: Path) -> Iterator[tuple[float, str, int, Path]]:
    """(last use, name, size, path) of every complete entry; temp names are not entries."""
    try:
        found = list(os.scandir(folder))
    except FileNotFoundError:
        return
    for entry in found:
        if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
            continue
        st = entry.stat(follow_symlinks=False)
        yield max(st.st_atime, st.st_mtime), entry.name, st.st_size, Path(entry.path)
