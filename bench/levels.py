"""zstd level sweeps: the real bundle writer on the bench bundle, plain zstd on real packs.

Run in-process: the levels change CPU time and size, not the process shape, and the writer's
level parameters are not on the CLI.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import zstandard

from bench.measure import timed
from bench.report import LevelBench, LevelRow
from mirror.bundle import writer
from mirror.bundle.manifest import MANIFEST_PATH, parse_manifest

BUNDLE_LEVELS = (writer.STORED, -1, 1, 3, 9)
TRIES = 3  # best of: a level's time is CPU-bound, so the minimum is the least noisy figure
PACK_LEVELS = (-1, 1, 3, 9, 19)
QUICK_PACK_LEVELS = (-1, 1, 3, 9)
KIND = "io.mirror.kind"


def _opener(path: Path) -> Callable[[], BinaryIO]:
    return lambda: path.open("rb")


def bundle_sweep(layout: Path, out_dir: Path, levels: Sequence[int | None]) -> list[LevelRow]:
    """write_bundle over the extracted bundle's own members, at each level."""
    manifest = (layout / MANIFEST_PATH).read_bytes()
    members = [
        writer.Member(m.path, m.size, m.sha256, _opener(layout / m.path))
        for m in parse_manifest(manifest).members
    ]
    in_bytes = sum(m.size for m in members)
    rows = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for level in levels:
        out = out_dir / f"level{level}.tar.zst"
        best = float("inf")
        for _ in range(TRIES):
            with timed() as t:
                plain = writer.LEVEL if level is writer.STORED else level
                written = writer.write_bundle(
                    out, manifest, None, members, mtime=0, level=plain, compressed_level=level
                )
            best = min(best, t[0])
            out.unlink()
        rows.append(LevelRow(level, best, written.size, in_bytes))
    return rows


def pack_blobs(layout: Path) -> list[Path]:
    """The layer blobs of every pack artifact in the layout (real, gzip-compressed data)."""
    index = json.loads((layout / "index.json").read_text())
    found: dict[str, Path] = {}
    for entry in index["manifests"]:
        if entry.get("annotations", {}).get(KIND) != "pack":
            continue
        manifest = json.loads(_blob(layout, entry["digest"]).read_bytes())
        for layer in manifest.get("layers", []):
            found[layer["digest"]] = _blob(layout, layer["digest"])
    return [found[d] for d in sorted(found)]


def _blob(layout: Path, digest: str) -> Path:
    algo, _, hexpart = digest.partition(":")
    return layout / "blobs" / algo / hexpart


def _gunzip(data: bytes) -> bytes:
    try:
        return gzip.decompress(data)
    except (OSError, EOFError):
        return data


def frames_sweep(blobs: Sequence[bytes], levels: Sequence[int | None]) -> list[LevelRow]:
    """One frame per blob, all cores, as the writer does for a lone member."""
    in_bytes = sum(len(b) for b in blobs)
    rows = []
    for level in levels:
        frame = _stored if level is writer.STORED else _compressor(level)
        best = float("inf")
        for _ in range(TRIES):
            with timed() as t:
                out = sum(len(frame(b)) for b in blobs)
            best = min(best, t[0])
        rows.append(LevelRow(level, best, out, in_bytes))
    return rows


def _compressor(level: int) -> Callable[[bytes], bytes]:
    return zstandard.ZstdCompressor(level=level, threads=-1, write_checksum=True).compress


def _stored(blob: bytes) -> bytes:
    out = io.BytesIO()
    frame = writer.StoredFrame(out, len(blob))
    frame.write(blob)
    frame.flush()
    return out.getvalue()


def level_bench(layout: Path, out_dir: Path, *, quick: bool = False) -> LevelBench:
    packs = [p.read_bytes() for p in pack_blobs(layout)]
    pack_levels = QUICK_PACK_LEVELS if quick else PACK_LEVELS
    raw = [_gunzip(b) for b in packs]
    return LevelBench(
        current=(writer.LEVEL, writer.COMPRESSED_LEVEL),
        bundle=bundle_sweep(layout, out_dir, BUNDLE_LEVELS),
        packs=frames_sweep(packs, (writer.STORED, *pack_levels)) if packs else [],
        raw=frames_sweep(raw, pack_levels) if raw else [],
    )
