"""Volume: export and import GB of generated images, with throughput, RSS and disk.

    .venv/bin/python bench/volume.py --gb 20 [--images 400] [--no-cache] [--workdir DIR]

Not part of `make bench` or CI: 20 GB took 12 minutes cacheless here (docs/SCALE.md has
the run) and needs 4x its size in disk at the peak (the layer files, the source registry,
the export cache, the bundle), or 3x with `--no-cache`, whose export keeps no cache and
writes the bundle as blobs arrive: its peak extra disk is then what it needed beyond the
bundle (goal: the largest blob + 256 MB).
The content is deterministic: `--images` images of one shared base layer (1% of the total)
and one layer of their own, files generated once into the layer cache. Prints one JSON
document: per step seconds, MB/s, peak RSS and peak extra disk, and the sizes of the
per-artifact files docs/SCALE.md projects (manifest.json, the TOC, tags.json, the
receipt, the catalog) with their caps.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # run as a script: make `bench` and `mirror` importable
    sys.path.insert(0, str(_ROOT))

from bench.measure import DiskWatch, Measured, run_measured, tree_bytes  # noqa: E402
from bench.nocache import BeyondTheBundle  # noqa: E402
from bench.scenarios import Bench, isolated_env, largest_blob, log, write_spec  # noqa: E402

MB = 1024 * 1024


def volume_items(cache: Path, total: int, images: int) -> list[tuple[str, str, Any, str]]:
    """`images` images over `total` bytes: a shared base (1%), the rest split evenly."""
    from mirror.lab.benchdata import cached_layer_file
    from mirror.lab.content import make_file_image

    base = cached_layer_file(cache, "volume/base", max(1, total // 100))
    own = max(1, (total - total // 100) // images)
    return [
        (
            f"bench/volume/app{i // 10:04d}",
            f"v{i % 10}",
            make_file_image(f"volume {i}", [base, cached_layer_file(cache, f"volume/{i}", own)]),
            "image",
        )
        for i in range(images)
    ]


def _step(m: Measured, data: int, disk: DiskWatch | None = None) -> dict[str, Any]:
    out = {"seconds": round(m.seconds, 2), "MBps": round(data / MB / m.seconds, 1)}
    out["rssMB"] = round(m.rss_mb)
    if disk is not None:
        out["peakExtraDiskMB"] = round(disk.peak_extra / MB)
    return out


def run_volume(
    b: Bench, total: int, images: int, layer_cache: Path, *, no_cache: bool = False
) -> dict[str, Any]:
    from mirror.lab.seed import client_for, seed_many

    items = volume_items(layer_cache, total, images)
    data = total
    src = b.registry()
    log(f"volume: seeding {images} images, {total / MB:,.0f} MB")
    seed_many(client_for(src), items)
    out = b.dir("volume")
    spec = write_spec(out / "volume.json", src.url, ["volume/*"])
    bundle, cache = out / "volume.tar.zst", out / "cache"
    log(f"volume: export{' --no-cache' if no_cache else ''}")
    watch = (
        BeyondTheBundle([*b.scratch_dirs(), cache, out], bundle)
        if no_cache
        else DiskWatch([*b.scratch_dirs(), cache])
    )
    cmd = [*b.mirror, "export", str(spec), "-o", str(bundle), "--cache-dir", str(cache),
           "--no-images", *(["--no-cache"] if no_cache else [])]  # fmt: skip
    exported = run_measured(cmd, env=b.env, watch=watch)
    export = _step(exported, data, watch)
    export["cacheMB"] = round(tree_bytes([cache]) / MB)
    export["bundleMB"] = round(bundle.stat().st_size / MB)
    export["largestBlobMB"] = round(largest_blob(items) / MB, 1)
    export["noCache"] = no_cache
    src.stop()
    target = b.registry()
    log("volume: import")
    receipt, catalog = out / "receipt.json", out / "catalog.json"
    watch = DiskWatch([*b.scratch_dirs(), out])
    cmd = [*b.mirror, "import", str(bundle), "--target", target.url, "--allow-unsigned",
           "--catalog", str(catalog), "--receipt", str(receipt)]  # fmt: skip
    imported = run_measured(cmd, env=b.env, watch=watch)
    target.stop()
    return {
        "images": images,
        "dataMB": round(data / MB),
        "export": export,
        "import": _step(imported, data, watch),
        "files": _file_sizes(bundle, cache, receipt, catalog),
    }


def _file_sizes(bundle: Path, cache: Path, receipt: Path, catalog: Path) -> dict[str, int]:
    """Bytes of each per-artifact document, to project against its cap (docs/SCALE.md)."""
    from mirror.bundle.parts import open_bundle, total_size
    from mirror.bundle.reader import BundleReader
    from mirror.bundle.toc import FOOTER_SIZE, decode_footer, toc_length

    manifest = len(BundleReader(bundle).head()[0])
    size = total_size(bundle)
    with open_bundle(bundle) as f:
        f.seek(size - FOOTER_SIZE)
        offset = decode_footer(f.read(FOOTER_SIZE), size)
        f.seek(offset)
        toc = toc_length(f.read(8), offset, size)
    tags = cache / "tags.json"
    return {
        "manifest.json": manifest,
        "toc": toc,
        "tags.json": tags.stat().st_size if tags.exists() else 0,
        "receipt": receipt.stat().st_size if receipt.exists() else 0,
        "catalog": catalog.stat().st_size if catalog.exists() else 0,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/volume.py", description=__doc__.splitlines()[0])
    p.add_argument("--gb", type=float, default=20.0, help="generated data (default 20)")
    p.add_argument("--images", type=int, default=400, help="images it is spread over")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--no-cache", action="store_true", help="export with --no-cache")
    p.add_argument("--layer-cache", type=Path, default=None, help="default: in the workdir")
    args = p.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="mirror-volume-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        with ExitStack() as stack:
            b = Bench(work, stack, isolated_env(work, dict(os.environ)))
            layers = args.layer_cache or b.dir("layers")
            total = int(args.gb * 1024 * MB)
            result = run_volume(b, total, args.images, layers, no_cache=args.no_cache)
        print(json.dumps(result, indent=1))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
