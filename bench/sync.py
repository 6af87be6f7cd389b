"""The 24-hour sync: a day's change of 5% of the blobs crosses as a delta of the chain.

Day 1 is a full bundle of IMAGES images (a shared base layer, LAYERS layers of their own),
exported with `--state`. On day 2 a few images get a new tag in which one layer of their own
is replaced: their manifest, config and that layer are 5% of day 1's blob count. The same
export then writes delta 2 of the chain; the goal is its size against the bytes of those
new blobs (the floor any transport needs). Both bundles are imported in order into an empty
registry, so what is measured also crosses.

Run alone for a figure: `.venv/bin/python bench/sync.py [--size-mb 100]`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # run as a script: make `bench` and `mirror` importable
    sys.path.insert(0, str(_ROOT))

from bench.measure import BenchError  # noqa: E402
from bench.report import SyncBench, sync_goals  # noqa: E402
from bench.scenarios import (  # noqa: E402
    BASE,
    Bench,
    isolated_env,
    log,
    mirror_export,
    mirror_import,
    write_spec,
)
from mirror.lab.benchdata import MB, BenchItem, cached_layer_file  # noqa: E402

IMAGES = 20
LAYERS = 4  # of each image's own; with its manifest and config, 6 blobs an image
CHANGE = 0.05  # the share of day 1's blobs that day 2 adds
REPOS = ("images/sync-*",)


def day_one(cache: Path, size_mb: int) -> list[BenchItem]:
    """IMAGES images over one shared base (a tenth of the bytes) and LAYERS layers each."""
    from mirror.lab.content import make_file_image

    total = size_mb * MB
    base = cached_layer_file(cache, "sync/base", total // 10)
    each = total * 9 // 10 // (IMAGES * LAYERS)
    items: list[BenchItem] = []
    for i in range(IMAGES):
        own = [cached_layer_file(cache, f"sync/{i}/{k}", each) for k in range(LAYERS)]
        art = make_file_image(f"sync-{i:02d}", [base, *own])
        items.append((f"{BASE}/images/sync-{i:02d}", "1.0.0", art, "image"))
    return items


def day_two(cache: Path, size_mb: int, blobs: int) -> list[BenchItem]:
    """New tags whose manifest, config and one replaced layer are CHANGE of `blobs`."""
    from mirror.lab.content import make_file_image

    total = size_mb * MB
    base = cached_layer_file(cache, "sync/base", total // 10)
    each = total * 9 // 10 // (IMAGES * LAYERS)
    changed = max(1, round(blobs * CHANGE / 3))
    items: list[BenchItem] = []
    for i in range(changed):
        own = [cached_layer_file(cache, f"sync/{i}/{k}", each) for k in range(1, LAYERS)]
        new = cached_layer_file(cache, f"sync/{i}/day2", each)
        art = make_file_image(f"sync-{i:02d}-day2", [base, new, *own])
        items.append((f"{BASE}/images/sync-{i:02d}", "1.1.0", art, "image"))
    return items


def blob_sizes(items: Sequence[BenchItem]) -> dict[str, int]:
    """Every blob of `items`, manifests included, by digest."""
    out: dict[str, int] = {}
    for _, _, art, _ in items:
        out[art.descriptor.digest] = art.descriptor.size
        out.update((d.digest, d.size) for d, _ in art.blobs)
    return out


def sync_bench(b: Bench, cache: Path, size_mb: int) -> SyncBench:
    from mirror.lab import seed

    first = day_one(cache, size_mb)
    before = blob_sizes(first)
    second = day_two(cache, size_mb, len(before))
    new = {d: s for d, s in blob_sizes(second).items() if d not in before}
    src, dst = b.registry(), b.registry()
    log(f"sync: day 1, {len(first)} images, {len(before)} blobs, at {src.url}")
    seed.seed_many(seed.client_for(src), first)
    out, state, mcache = b.dir("sync"), b.dir("sync-state"), b.dir("sync-cache")
    spec = write_spec(out / "sync.json", src.url, REPOS)
    chain = ["--state", str(state), "--no-images"]
    full_m, full = mirror_export(b, spec, out / "day-{seq}.tar.zst", mcache, *chain)
    log(f"sync: day 2, {len(new)} new blobs ({len(new) / len(before):.1%} of day 1's)")
    seed.seed_many(seed.client_for(src), second)
    delta_m, delta = mirror_export(b, spec, out / "day-{seq}.tar.zst", mcache, *chain)
    full_path, delta_path = Path(full["output"]), Path(delta["output"])
    if delta["externalBlobs"] < len(before) - len(first):  # each root manifest is sent again
        raise BenchError(f"the delta left out only {delta['externalBlobs']} blobs")
    catalog = b.dir("sync-far") / "catalog.json"
    mirror_import(b, full_path, dst, "sync-day1", catalog)
    imp_m, _, imported = mirror_import(b, delta_path, dst, "sync-day2", catalog)
    return SyncBench(
        day1_blobs=len(before),
        new_blobs=len(new),
        new_bytes=sum(new.values()),
        full_bytes=full_path.stat().st_size,
        delta_bytes=delta_path.stat().st_size,
        left_out=int(delta["externalBlobs"]),
        export=delta_m,
        full_export=full_m,
        imported=imp_m,
        pushed_blobs=int(imported["pushedBlobs"]),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/sync.py", description=__doc__.splitlines()[0])
    p.add_argument("--size-mb", type=int, default=100, help="day 1's unique data (default 100)")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="mirror-bench-sync-"))
    try:
        with ExitStack() as stack:
            import os

            b = Bench(work, stack, isolated_env(work, dict(os.environ)))
            result = sync_bench(b, work / "layers", args.size_mb)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for goal in sync_goals(result):
        print(f"{goal.what}: {goal.measured} (goal {goal.target}) {'PASS' if goal.ok else 'MISS'}")
    print(
        f"day 1 {result.full_bytes / MB:.1f} MB, {result.day1_blobs} blobs; delta "
        f"{result.delta_bytes / MB:.2f} MB for {result.new_blobs} new blobs of "
        f"{result.new_bytes / MB:.2f} MB, {result.left_out} left out; delta export "
        f"{result.export.seconds:.2f} s, import {result.imported.seconds:.2f} s, "
        f"{result.pushed_blobs} blobs pushed"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
