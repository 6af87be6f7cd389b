"""Benchmark mirror against skopeo + tar + zstd on this machine, and write docs/BENCHMARKS.md.

    .venv/bin/python bench/run.py [--size-mb 300] [--big-layer-mb 1024] [--out FILE] [--quick]

Everything runs against real `docker-registry` processes on loopback, in one temporary folder
that is removed at the end (`--keep` leaves it). Generated layers are cached between runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # run as a script: make `bench` and `mirror` importable
    sys.path.insert(0, str(_ROOT))

from bench.closure import closure_bench, closure_content  # noqa: E402
from bench.levels import level_bench  # noqa: E402
from bench.measure import BenchError, machine_info  # noqa: E402
from bench.nocache import nocache_bench  # noqa: E402
from bench.render import recommend, render  # noqa: E402
from bench.report import Report, all_goals  # noqa: E402
from bench.scale import HELM_VERSIONS, SMALL_SIZES, helm_bench, small_bench  # noqa: E402
from bench.scenarios import (  # noqa: E402
    Bench,
    content_of,
    export_bench,
    import_bench,
    isolated_env,
    log,
    verify_bench,
)
from bench.serve import serve_bench  # noqa: E402
from bench.sync import sync_bench  # noqa: E402

__all__ = ["Report", "all_goals", "main", "recommend", "render"]

DEFAULT_OUT = _ROOT / "docs" / "BENCHMARKS.md"
FINDINGS = _ROOT / "bench" / "FINDINGS.md"
SYNC_MB = 100  # day 1 of the sync scenario: enough for 5% of the blobs to be real layers
TOOLS = ("skopeo", "zstd", "tar", "bash", "curl")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    p.add_argument("--size-mb", type=int, default=300, help="unique image data (default 300)")
    p.add_argument("--big-layer-mb", type=int, default=1024, help="0 skips the big-layer runs")
    p.add_argument("--packs", type=int, default=None, help="corpus packs (default: all)")
    p.add_argument("--out", type=Path, default=None, help=f"default {DEFAULT_OUT}")
    p.add_argument("--repeat", type=int, default=5, help="runs per comparison; median time")
    p.add_argument("--quick", action="store_true", help="smoke run: 50 MB, 10 packs, no 1 GB")
    p.add_argument("--workdir", type=Path, default=None, help="default: a new temp folder")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--layer-cache", type=Path, default=None, help="generated layers, reused")
    p.add_argument("--no-scale", action="store_true", help="skip the Helm and small-image runs")
    args = p.parse_args(argv)
    if args.quick:
        args.size_mb, args.big_layer_mb = min(args.size_mb, 50), 0
        args.packs = 10 if args.packs is None else args.packs
        args.repeat = 1
        if args.out is None:
            args.out = Path(tempfile.gettempdir()) / "mirror-BENCHMARKS-quick.md"
    args.out = args.out or DEFAULT_OUT
    if args.layer_cache is None:
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        args.layer_cache = Path(cache) / "mirror-bench" / "layers"
    return args


def missing_tools() -> list[str]:
    from mirror.lab import registry_binary

    missing = [t for t in TOOLS if shutil.which(t) is None]
    return missing + ([] if registry_binary() else ["docker-registry"])


def run(args: argparse.Namespace, work: Path) -> Report:
    from mirror.lab import benchdata, content, seed

    started = time.monotonic()
    with ExitStack() as stack:
        b = Bench(work, stack, isolated_env(work, dict(os.environ)))
        corpus = content.corpus_dir()
        log(f"generating {args.size_mb} MB of layers (cached in {args.layer_cache})")
        items = benchdata.bench_content(
            args.layer_cache, args.size_mb, base="bench", corpus=corpus, packs=args.packs
        )
        big = None
        if args.big_layer_mb:
            big = benchdata.bench_big_layer(args.layer_cache, args.big_layer_mb, base="bench")
        src = b.registry()
        log(f"seeding {src.url}")
        seed.seed_many(seed.client_for(src), [*items, *([big] if big else [])])
        exp, bundle, big_bundle = export_bench(b, src, items, big, args.repeat)
        nocache = nocache_bench(b, src, items, args.repeat)
        src.stop()
        imp, layout = import_bench(b, bundle, items, big_bundle, big, args.repeat)
        closure = None
        if corpus is not None:
            log("generating the images the corpus packs list")
            found = closure_content(args.layer_cache, corpus, args.packs)
            closure = closure_bench(b, found, args.repeat)
        ver = verify_bench(b, bundle, args.repeat)
        log("the 24-hour sync: a day's 5% of the blobs as a delta")
        sync = sync_bench(b, args.layer_cache, min(args.size_mb, SYNC_MB))
        serve = serve_bench(b, bundle)
        log("zstd levels")
        levels = level_bench(layout, b.dir("levels"), quick=args.quick)
        helm, small = None, None
        if not args.no_scale:
            log("scale: a Bitnami-size Helm index, then thousands of small images")
            helm = helm_bench(b, args.repeat, 2000 if args.quick else HELM_VERSIONS)
            small = small_bench(b, (50, 200) if args.quick else SMALL_SIZES)
    notes = [] if corpus else ["The pack corpus was not found: the content has no packs."]
    findings = "" if args.quick or not FINDINGS.is_file() else FINDINGS.read_text()
    return Report(
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        machine=machine_info(work),
        content=content_of(args.size_mb, items, args.big_layer_mb),
        export=exp,
        imports=imp,
        verify=ver,
        levels=levels,
        closure=closure,
        sync=sync,
        serve=serve,
        nocache=nocache,
        quick=args.quick,
        repeat=args.repeat,
        minutes=(time.monotonic() - started) / 60,
        notes=notes,
        findings=findings,
        helm=helm,
        small=small,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = missing_tools()
    if missing:
        print(f"bench: missing {', '.join(missing)}: run `make debs` first", file=sys.stderr)
        return 1
    work = args.workdir or Path(tempfile.mkdtemp(prefix="mirror-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        report = run(args, work)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(report))
    misses = [g.what for g in all_goals(report) if not g.ok]
    log(f"wrote {args.out} in {report.minutes:.1f} min; " + (
        f"missed: {', '.join(misses)}" if misses else "every goal met"))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
