"""The serve benchmark: blob throughput of `mirror serve` against docker-registry.

docker-registry serves the bench bundle's content from its filesystem (the bundle imported
into it first, untimed); `mirror serve` serves the same blobs straight out of the bundle.
Each side gets the same list of every blob, fetched once each by one curl process with 1
and then 8 transfers in parallel. serve's peak RSS covers its whole life: the
verification at start and every run.

Alone: `.venv/bin/python bench/serve.py [--size-mb 100]` builds content, exports it, and
prints the figures (a smoke figure, not the benchmark).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # run as a script: make `bench` and `mirror` importable
    sys.path.insert(0, str(_ROOT))

from bench.measure import BenchError, Measured, child_of, gnu_time, run_measured  # noqa: E402
from bench.report import ServeBench, serve_goals  # noqa: E402
from bench.scenarios import (  # noqa: E402
    MAIN_REPOS,
    Bench,
    isolated_env,
    log,
    mirror_export,
    write_spec,
)

CLIENTS = (1, 8)


def blob_paths(bundle: Path) -> list[tuple[str, int]]:
    """`/v2/<repo>/blobs/<digest>` once per blob, in a repository that holds it, and size."""
    from mirror.serve.server import ServeOptions, open_store

    store, _ = open_store(ServeOptions(bundle, None, allow_unsigned=True))
    seen: dict[str, tuple[str, int]] = {}
    for name in sorted(store.repos):
        for digest in sorted(store.repos[name].blobs):
            seen.setdefault(digest, (f"/v2/{name}/blobs/{digest}", store.size_of(digest)))
    return sorted(seen.values())


def fetch_all(b: Bench, base: str, paths: Sequence[tuple[str, int]], parallel: int) -> Measured:
    """Every blob once, by one curl with PARALLEL transfers at a time, bodies thrown away."""
    config = b.dir("serve") / f"curl-{parallel}.cfg"
    config.write_text("".join(f'url = "{base}{p}"\noutput = "/dev/null"\n' for p, _ in paths))
    cmd = ["curl", "-sSf", "-Z", "--parallel-max", str(parallel), "-K", str(config)]
    return run_measured(cmd, env=b.env)


def start_serve(b: Bench, bundle: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    """serve under GNU time, which reports its peak RSS into the returned file at exit."""
    log_path = b.dir("serve") / "access.log"
    rss = b.dir("serve") / "serve.rss"
    proc = subprocess.Popen(
        [gnu_time(), "-f", "%M", "-o", str(rss),
         *b.mirror, "serve", str(bundle), "--allow-unsigned", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=log_path.open("wb"),
        env=b.env,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if " at http://" not in line:
        proc.kill()
        raise BenchError(f"mirror serve did not start: {line or log_path.read_text()[-500:]}")
    return proc, line.split(" at ", 1)[1].split()[0], rss


def stop_serve(proc: subprocess.Popen[bytes], rss: Path) -> int:
    """SIGTERM to serve itself (not to GNU time), then the peak RSS of its whole life (kB)."""
    os.kill(child_of(proc.pid), signal.SIGTERM)
    if proc.wait() != 0:
        raise BenchError(f"mirror serve exited {proc.returncode} on SIGTERM")
    return int(rss.read_text().split()[-1])


def serve_bench(b: Bench, bundle: Path) -> ServeBench:
    registry = b.registry()
    log("serve: importing the bundle into docker-registry (untimed)")
    imported = [*b.mirror, "import", str(bundle), "--target", registry.url, "--allow-unsigned",
                "--catalog", str(b.dir("serve") / "catalog.json")]  # fmt: skip
    run_measured(imported, env=b.env)
    paths = blob_paths(bundle)
    proc, url, rss_file = start_serve(b, bundle)
    runs: dict[tuple[str, int], Measured] = {}
    try:
        for n in CLIENTS:
            for side, base in (("serve", url), ("registry", registry.url)):
                log(f"serve: {len(paths)} blobs from {side}, {n} in parallel")
                runs[(side, n)] = fetch_all(b, base, paths, n)
    finally:
        rss = stop_serve(proc, rss_file) if proc.poll() is None else 0
        registry.stop()
    return ServeBench(
        blobs=len(paths),
        bytes=sum(size for _, size in paths),
        serve_one=runs[("serve", 1)],
        serve_many=runs[("serve", 8)],
        registry_one=runs[("registry", 1)],
        registry_many=runs[("registry", 8)],
        serve_rss_kb=rss,
    )


def main(argv: list[str] | None = None) -> int:
    """The serve scenario alone: content, a source registry, one export, then the runs."""
    from mirror.lab import benchdata, content, seed

    p = argparse.ArgumentParser(prog="bench/serve.py", description=__doc__.splitlines()[0])
    p.add_argument("--size-mb", type=int, default=100)
    args = p.parse_args(argv)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mirror-bench"
    with tempfile.TemporaryDirectory(prefix="mirror-bench-serve-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        b = Bench(work, stack, isolated_env(work, dict(os.environ)))
        items = benchdata.bench_content(
            cache / "layers", args.size_mb, base="bench", corpus=content.corpus_dir(), packs=10
        )
        src = b.registry()
        seed.seed_many(seed.client_for(src), items)
        spec = write_spec(b.dir("export") / "bench.json", src.url, MAIN_REPOS)
        bundle = b.dir("export") / "bench.tar.zst"
        mirror_export(b, spec, bundle, b.dir("export") / "cache", "--no-images")
        src.stop()
        started = time.monotonic()
        result = serve_bench(b, bundle)
        log(f"serve scenario took {time.monotonic() - started:.0f} s")
    for line in result.lines():
        print(line)
    for g in serve_goals(result):
        print(f"{g.what}: {g.measured} (goal {g.target}) {'PASS' if g.ok else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
