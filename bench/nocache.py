"""The cacheless export (`export --no-cache`): its time against skopeo + tar|zstd on the same
content, and the disk it needs beyond the bundle it writes.

The disk is sampled while it runs: the growth of TMPDIR, the caches and the bundle's
folder, less the bundle's own bytes (its temp file as it grows); what is left is the
spool. The goal is the issue's: at most the largest blob plus 256 MB.

Run alone for a figure: `.venv/bin/python bench/nocache.py [--size-mb 300] [--repeat 1]`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # run as a script: make `bench` and `mirror` importable
    sys.path.insert(0, str(_ROOT))

from bench.measure import (  # noqa: E402
    BenchError,
    DiskWatch,
    Measured,
    median_of,
    process_cpu,
    tree_bytes,
)
from bench.report import CpuRun, NoCacheBench, cpu_lines, nocache_goals  # noqa: E402
from bench.scenarios import (  # noqa: E402
    MAIN_REPOS,
    NO_CLOSURE,
    Bench,
    isolated_env,
    largest_blob,
    log,
    mirror_export,
    skopeo_export,
    write_spec,
)
from mirror.lab.benchdata import MB, BenchItem  # noqa: E402
from mirror.lab.registry import LabRegistry  # noqa: E402


class BeyondTheBundle(DiskWatch):
    """DiskWatch less the bundle's own bytes: its temp file, then the file itself."""

    def __init__(self, dirs: Sequence[Path], bundle: Path) -> None:
        super().__init__(dirs)
        self.bundle = bundle

    def _bundle_bytes(self) -> int:
        name, total = self.bundle.name, 0
        for entry in os.scandir(self.bundle.parent):
            theirs = entry.name.startswith(f".{name}.") and "spool" not in entry.name
            if entry.name.startswith(name) or theirs:
                with contextlib.suppress(OSError):
                    total += entry.stat(follow_symlinks=False).st_blocks * 512
        return total

    def _sample(self, pid: int) -> None:
        self.samples += 1
        extra = tree_bytes(self.dirs) - self.baseline - self._bundle_bytes()
        self.peak_extra = max(self.peak_extra, extra)


def nocache_bench(
    b: Bench, src: LabRegistry, items: Sequence[BenchItem], repeat: int
) -> NoCacheBench:
    """Cacheless exports and skopeo pipelines in turns, on the export scenario's content."""
    from bench.measure import run_measured

    out = b.dir("nocache")
    spec = write_spec(out / "bench.json", src.url, MAIN_REPOS)
    bundle, cache = out / "nocache.tar.zst", out / "cache"
    runs: list[Measured] = []
    pipes: list[float] = []
    cpu: list[CpuRun] = []
    peak = 0
    for n in range(repeat):
        shutil.rmtree(cache, ignore_errors=True)
        log(f"no-cache export {n + 1}/{repeat}: mirror --no-cache, disk sampled")
        watch = BeyondTheBundle([*b.scratch_dirs(), out], bundle)
        args = ["export", str(spec), "-o", str(bundle), "--cache-dir", str(cache), "--json"]
        before = process_cpu(src.pid)
        m = run_measured([*b.mirror, *args, NO_CLOSURE, "--no-cache"], env=b.env, watch=watch)
        served = process_cpu(src.pid) - before
        runs.append(m)
        peak = max(peak, watch.peak_extra)
        bundle_bytes = bundle.stat().st_size
        bundle.unlink()
        log(f"no-cache export {n + 1}/{repeat}: skopeo copy x{len(items)}, tar | zstd")
        before = process_cpu(src.pid)
        skopeo, tar, _ = skopeo_export(b, src, items)
        pipes.append(skopeo.seconds + tar.seconds)
        cpu.append(CpuRun(m.cpu, served, skopeo.cpu + tar.cpu, process_cpu(src.pid) - before))
    cached, _ = mirror_export(b, spec, out / "cached.tar.zst", cache, NO_CLOSURE)
    shutil.rmtree(cache, ignore_errors=True)
    return NoCacheBench(
        mirror=median_of(runs),
        cached=cached,
        pipeline_seconds=sorted(pipes)[len(pipes) // 2],
        speedups=tuple(p / m.seconds for p, m in zip(pipes, runs, strict=True)),
        peak_extra=peak,
        largest_blob=largest_blob(items),
        bundle_bytes=bundle_bytes,
        cpu=tuple(cpu),
        cores=len(os.sched_getaffinity(0)),
    )


def main(argv: list[str] | None = None) -> int:
    from mirror.lab import benchdata, content, seed
    from mirror.lab.registry import running_registry

    p = argparse.ArgumentParser(prog="bench/nocache.py", description=__doc__.splitlines()[0])
    p.add_argument("--size-mb", type=int, default=300, help="unique image data (default 300)")
    p.add_argument("--packs", type=int, default=10, help="corpus packs (default 10)")
    p.add_argument("--repeat", type=int, default=1, help="runs; median time")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="mirror-bench-nocache-"))
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    layers = Path(cache) / "mirror-bench" / "layers"
    try:
        with ExitStack() as stack:
            b = Bench(work, stack, isolated_env(work, dict(os.environ)))
            items = benchdata.bench_content(
                layers, args.size_mb, base="bench", corpus=content.corpus_dir(), packs=args.packs
            )
            src = stack.enter_context(running_registry(b.dir("registries")))
            seed.seed_many(seed.client_for(src), items)
            result = nocache_bench(b, src, items, args.repeat)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for goal in nocache_goals(result):
        print(f"{goal.what}: {goal.measured} (goal {goal.target}) {'PASS' if goal.ok else 'MISS'}")
    print(
        f"--no-cache {result.mirror.seconds:.2f} s, cached {result.cached.seconds:.2f} s, "
        f"skopeo + tar {result.pipeline_seconds:.2f} s; bundle {result.bundle_bytes / MB:.0f} "
        f"MB, largest blob {result.largest_blob / MB:.1f} MB, "
        f"peak RSS {result.mirror.rss_mb:.0f} MB"
    )
    for line in cpu_lines(result):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
