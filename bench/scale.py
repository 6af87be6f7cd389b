"""Scale benchmarks (issue 19): a Bitnami-size Helm index, and thousands of small images.

Helm: an 18,000-version index.yaml (mirror.lab.helmindex, 17.5 MB) served by the lab's
static server; its parse is timed against json.loads of the same document, and a dry-run
export of one chart from it against that parse. Small artifacts: N images of one shared
64 KB layer and one 4 KB layer of their own, ten tags to a repository, exported once and
imported into an empty registry at a few sizes; skopeo copies the same layout beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # run as a script: make `bench` and `mirror` importable
    sys.path.insert(0, str(_ROOT))

from bench.measure import (  # noqa: E402
    DeviceOps,
    Measured,
    device_ops,
    median_of,
    run_all,
    run_measured,
)
from bench.report import Goal, secs, table  # noqa: E402

if TYPE_CHECKING:
    from mirror.lab import LabRegistry

HELM_VERSIONS = 18_000
HELM_PARSE_GOAL = 8.0  # parse_index <= 8x json.loads of the same document
HELM_DRY_RUN_GOAL = 3.0  # a dry-run export of one chart <= 3x that parse
SMALL_SIZES = (500, 2000, 5000)
SMALL_COST_GOAL_MS = 12.0  # per-artifact import cost at 2,000
SMALL_GROWTH_GOAL = 1.2  # cost at 5,000 / cost at 500
SMALL_RSS_GOAL_MB = 150.0  # peak RSS at 5,000
SMALL_PER_REPO = 10
SMALL_IMPORTS = 3  # imports at the size the cost goal is read at: its median and spread
ONE_CHART = ("chart000", "30.4.7")  # the newest version of the first chart


@dataclass(frozen=True)
class HelmBench:
    versions: int
    index_bytes: int
    json_seconds: float  # json.loads of the same document, median
    parse_seconds: float  # mirror.formats.helm.parse_index, median
    dry_run: Measured  # `mirror export --dry-run`, one chart, cold cache
    warm: Measured  # the same again, the index answered 304

    @property
    def parse_ratio(self) -> float:
        return self.parse_seconds / self.json_seconds

    @property
    def dry_run_ratio(self) -> float:
        return self.dry_run.seconds / self.parse_seconds


@dataclass(frozen=True)
class SmallRun:
    artifacts: int
    export: Measured
    imported: Measured  # `mirror import` into an empty registry (the median of `times`)
    skopeo: Measured | None  # skopeo copy per artifact from the extracted layout
    times: tuple[float, ...] = ()  # each import's seconds, when repeated
    in_memory: Measured | None = None  # one more import, the target's storage on tmpfs
    device: DeviceOps | None = None  # the target's disk during the on-disk imports, summed

    @property
    def import_ms(self) -> float:
        return self.imported.seconds / self.artifacts * 1000

    def per_artifact(self, ops: int) -> float:
        """Device requests per imported artifact, over every on-disk import."""
        return ops / (self.artifacts * max(1, len(self.times)))

    @property
    def spread(self) -> str:
        """' (runs: a-b ms)' for a repeated import, else ''."""
        if len(self.times) < 2:
            return ""
        low, high = (t / self.artifacts * 1000 for t in (min(self.times), max(self.times)))
        return f" (runs: {low:.1f}-{high:.1f} ms)"


@dataclass(frozen=True)
class SmallBench:
    runs: tuple[SmallRun, ...]

    def at(self, n: int) -> SmallRun:
        """The run nearest to `n` artifacts (a smoke run uses smaller sizes)."""
        return min(self.runs, key=lambda r: abs(r.artifacts - n))

    @property
    def growth(self) -> float:
        return self.runs[-1].import_ms / self.runs[0].import_ms


def helm_goals(h: HelmBench) -> list[Goal]:
    return [
        Goal(
            f"Helm index parse ({h.versions:,} versions) / json.loads",
            f"<= {HELM_PARSE_GOAL:.0f}x",
            f"{h.parse_ratio:.1f}x",
            h.parse_ratio <= HELM_PARSE_GOAL,
        ),
        Goal(
            "dry-run export of one chart / that parse",
            f"<= {HELM_DRY_RUN_GOAL:.0f}x",
            f"{h.dry_run_ratio:.1f}x",
            h.dry_run_ratio <= HELM_DRY_RUN_GOAL,
        ),
    ]


def small_goals(s: SmallBench) -> list[Goal]:
    mid, last = s.at(2000), s.runs[-1]
    return [
        Goal(
            f"import cost per small artifact at {mid.artifacts:,}",
            f"<= {SMALL_COST_GOAL_MS:.0f} ms",
            f"{mid.import_ms:.1f} ms{mid.spread}",
            mid.import_ms <= SMALL_COST_GOAL_MS,
        ),
        Goal(
            f"import cost per artifact at {last.artifacts:,} / at {s.runs[0].artifacts:,}",
            f"<= {SMALL_GROWTH_GOAL}x",
            f"{s.growth:.2f}x",
            s.growth <= SMALL_GROWTH_GOAL,
        ),
        Goal(
            f"import peak RSS at {last.artifacts:,} small artifacts",
            f"<= {SMALL_RSS_GOAL_MB:.0f} MB",
            f"{last.imported.rss_mb:.0f} MB",
            last.imported.rss_mb <= SMALL_RSS_GOAL_MB,
        ),
    ]


def scale_section(helm: HelmBench | None, small: SmallBench | None, number: int) -> list[str]:
    """The report's section for both scale benchmarks (whichever ran)."""
    lines = [f"## {number}. Scale", ""]
    if helm is not None:
        lines += [
            f"A generated Bitnami-shaped index.yaml: {helm.versions:,} chart versions, "
            f"{helm.index_bytes / 1e6:.1f} MB, served on loopback.",
            "",
            *table(
                ["step", "time"],
                [
                    ["`json.loads` of the same document", secs(helm.json_seconds)],
                    ["`parse_index` (fastyaml-rs, then chart versions)", secs(helm.parse_seconds)],
                    [
                        "`mirror export --dry-run`, one chart, cold cache",
                        secs(helm.dry_run.seconds),
                    ],
                    ["the same, warm (index.yaml answered 304)", secs(helm.warm.seconds)],
                ],
            ),
            "",
        ]
    if small is not None:
        rows = [
            [
                f"{r.artifacts:,}",
                secs(r.export.seconds),
                secs(r.imported.seconds),
                f"{r.import_ms:.1f} ms{r.spread}",
                f"{r.imported.rss_mb:.0f} MB",
                f"{r.skopeo.seconds / r.artifacts * 1000:.1f} ms" if r.skopeo else "",
            ]
            for r in small.runs
        ]
        lines += [
            "Small images: one shared 64 KB layer and one 4 KB layer each, "
            f"{SMALL_PER_REPO} tags to a repository, imported into an empty registry.",
            "",
            *table(
                [
                    "artifacts",
                    "export",
                    "import",
                    "import / artifact",
                    "import RSS",
                    "skopeo / artifact",
                ],
                rows,
            ),
            "",
            *_target_floor(small.at(2000)),
        ]
    return lines


def _target_floor(run: SmallRun) -> list[str]:
    """What the target's disk adds: the same import with its storage on tmpfs, and the
    device requests each artifact cost on disk (a registry's, the same for any client)."""
    said = []
    if run.in_memory is not None:
        ms = run.in_memory.seconds / run.artifacts * 1000
        said.append(
            f"The same {run.artifacts:,} imported once more into a registry whose storage is "
            f"in memory (tmpfs): {ms:.1f} ms an artifact, {run.import_ms / ms:.1f}x less "
            "than on disk (not a goal; it shows what the target's disk adds)."
        )
    if run.device is not None:
        d = run.device
        said.append(
            f"On disk, the target's device completed {run.per_artifact(d.writes):.0f} "
            f"writes, {run.per_artifact(d.flushes):.0f} flushes and "
            f"{run.per_artifact(d.discards):.0f} discards an artifact: the registry's file "
            "work for each upload, whichever client sends it."
        )
    return [" ".join(said), ""] if said else []


def _median_time(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def parse_timings(index: Path, base: str, repeat: int) -> tuple[float, float]:
    """json.loads and parse_index of one index, medians; run in a child process of its
    own (`--parse`), so the parsed index never inflates the bench process, whose peak
    RSS a later measured child's ru_maxrss inherits through fork."""
    from mirror.formats.helm import _index_yaml, parse_index

    data = index.read_bytes()
    doc = json.dumps(_index_yaml(data)).encode()
    json_s = _median_time(lambda: json.loads(doc), repeat)
    return json_s, _median_time(lambda: parse_index(data, base, "bench"), repeat)


def helm_bench(b: Any, repeat: int, versions: int = HELM_VERSIONS) -> HelmBench:
    """Parse timings in this process (median of `repeat`, at least 3), then dry-run exports."""
    from mirror.lab.helmindex import bitnami_index, chart_tgz
    from mirror.lab.httpserver import serve_directory

    repo = b.dir("helm-repo")
    (repo / "charts").mkdir(exist_ok=True)
    tgz = chart_tgz(*ONE_CHART)
    (repo / "charts" / f"{ONE_CHART[0]}-{ONE_CHART[1]}.tgz").write_bytes(tgz)
    with serve_directory(repo) as url:
        real = {ONE_CHART: hashlib.sha256(tgz).hexdigest()}
        data = bitnami_index(versions, base=f"{url}/charts/", digests=real)
        (repo / "index.yaml").write_bytes(data)
        timings = b.dir("helm") / "parse.json"
        cmd = [sys.executable, str(Path(__file__)), "--parse", str(repo / "index.yaml"), url,
               str(max(3, repeat))]  # fmt: skip
        run_measured(cmd, env=b.env, stdout=timings)
        json_s, parse_s = json.loads(timings.read_text())
        spec = b.dir("helm") / "spec.json"
        registry = {"name": "Bitnami", "kind": "helm", "url": url,
                    "charts": [{"name": ONE_CHART[0], "latest": 1}]}  # fmt: skip
        spec.write_text(json.dumps({"name": "helm-scale", "registries": [registry]}))
        colds, warms = [], []
        for i in range(repeat):
            cache = b.dir("helm") / f"cache-{i}"
            cmd = [*b.mirror, "export", str(spec), "--dry-run", "--cache-dir", str(cache)]
            colds.append(run_measured(cmd, env=b.env))
            warms.append(run_measured(cmd, env=b.env))
    size = len(data)
    return HelmBench(versions, size, json_s, parse_s, median_of(colds), median_of(warms))


def small_images(n: int) -> list[tuple[str, str, Any, str]]:
    from mirror.lab.content import make_image, make_layer

    shared = make_layer("small/shared", 64 * 1024)
    return [
        (
            f"bench/small/app{i // SMALL_PER_REPO:04d}",
            f"v{i % SMALL_PER_REPO}",
            make_image(f"small {i}", layers=[shared, make_layer(f"small/{i}", 4096)]),
            "image",
        )
        for i in range(n)
    ]


def seed_small(url: str, n: int) -> None:
    """Push the n small images to an anonymous lab registry, 8 at a time."""
    from mirror.lab.seed import seed_artifact
    from mirror.registry.client import RegistryClient

    client = RegistryClient(url)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda it: seed_artifact(client, *it), small_images(n)))


def small_run(b: Any, n: int, skopeo: bool, imports: int = 1) -> SmallRun:
    """Seed n small images, export them, import the bundle into an empty registry
    (`imports` times, each into a new one: the median)."""
    from bench.scenarios import extract, layout_refs, log, write_spec

    out = b.dir(f"small-{n}")
    src = b.registry()
    log(f"small artifacts: seeding {n:,} images")
    # In a child: thousands of images held here would raise every later child's ru_maxrss,
    # which starts from this process's peak (fork, then exec).
    run_measured([sys.executable, str(Path(__file__)), "--seed-small", src.url, str(n)], env=b.env)
    spec = write_spec(out / "small.json", src.url, ["small/*"])
    bundle = out / "small.tar.zst"
    log(f"small artifacts: export and import of {n:,}")
    cmd = [*b.mirror, "export", str(spec), "-o", str(bundle), "--cache-dir", str(out / "cache"),
           "--no-images"]  # fmt: skip
    exported = run_measured(cmd, env=b.env)
    src.stop()

    def into(target: LabRegistry) -> tuple[Measured, DeviceOps | None]:
        """One import; the target's device counters around it (before its storage goes)."""
        cmd = [*b.mirror, "import", str(bundle), "--target", target.url, "--allow-unsigned",
               "--catalog", str(out / "catalog.json")]  # fmt: skip
        os.sync()  # what earlier steps left dirty is written now, not counted below
        before = device_ops(target.storage_dir)
        done = run_measured(cmd, env=b.env)
        os.sync()  # and what the registry left dirty is its own work: counted
        after = device_ops(target.storage_dir)
        target.stop()
        return done, after - before if after and before else None

    measured = [into(b.registry()) for _ in range(imports)]
    runs = [m for m, _ in measured]
    counted = [d for _, d in measured if d is not None]
    device = sum(counted[1:], counted[0]) if counted and len(counted) == imports else None
    # tmpfs keeps each of a registry's small files in a page of its own (~8 an image: 83 MB
    # at 2,000 with a 10 MB bundle)
    need = bundle.stat().st_size + n * 64 * 1024
    memory = b.registry_in_memory(need) if imports > 1 else None
    in_memory = into(memory)[0] if memory is not None else None
    copied = None
    if skopeo:
        layout = extract(bundle, out / "layout")
        other = b.registry()
        log(f"small artifacts: skopeo copy x{n:,} from the extracted layout")
        copied = run_all(
            [["skopeo", "copy", "--all", "-q", "--dest-tls-verify=false", f"oci:{layout}:{ref}",
              f"docker://{other.host}/{ref}"] for ref in layout_refs(layout)],
            env=b.env,
        )  # fmt: skip
        other.stop()
    times = tuple(m.seconds for m in runs) if imports > 1 else ()
    return SmallRun(n, exported, median_of(runs), copied, times, in_memory, device)


def small_bench(b: Any, sizes: Sequence[int] = SMALL_SIZES) -> SmallBench:
    """Once per size (each run is minutes at 5,000); at the size nearest 2,000, where the cost
    goal is read, three imports (their median) and skopeo beside them."""
    mid = min(sizes, key=lambda s: abs(s - 2000))
    return SmallBench(
        tuple(
            small_run(b, n, skopeo=n == mid, imports=SMALL_IMPORTS if n == mid else 1)
            for n in sizes
        )
    )


def run_alone(argv: Sequence[str] | None = None) -> int:
    """`python -m bench.scale [--helm-versions N] [--small 50,200]`: these two alone."""
    import argparse
    import os
    import shutil
    import tempfile
    from contextlib import ExitStack

    from bench.scenarios import Bench, isolated_env

    p = argparse.ArgumentParser(prog="bench/scale.py", description=__doc__.splitlines()[0])
    p.add_argument("--helm-versions", type=int, default=HELM_VERSIONS)
    p.add_argument("--small", default=",".join(map(str, SMALL_SIZES)))
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="mirror-scale-"))
    try:
        with ExitStack() as stack:
            b = Bench(work, stack, isolated_env(work, dict(os.environ)))
            helm = helm_bench(b, args.repeat, args.helm_versions) if args.helm_versions else None
            sizes = [int(s) for s in args.small.split(",") if s]
            small = small_bench(b, sizes) if sizes else None
        goals = (helm_goals(helm) if helm else []) + (small_goals(small) if small else [])
        print("\n".join(scale_section(helm, small, 1)))
        print("\n".join(f"{g.what}: {g.measured} (goal {g.target})" for g in goals))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--parse"]:  # helm_bench's child: INDEX BASE REPEAT
        path, base, n = sys.argv[2], sys.argv[3], int(sys.argv[4])
        print(json.dumps(parse_timings(Path(path), base, n)))
        sys.exit(0)
    if sys.argv[1:2] == ["--seed-small"]:  # small_run's child: URL N
        seed_small(sys.argv[2], int(sys.argv[3]))
        sys.exit(0)
    sys.exit(run_alone())
