"""Benchmark results as values, the goals they are judged by, and docs/BENCHMARKS.md.

Everything in the document is computed from these values: no figure is ever typed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bench.measure import Measured, median

if TYPE_CHECKING:
    from bench.scale import HelmBench, SmallBench

MIB = 1024 * 1024
RSS_GOAL_MB = 150.0
EXPORT_SPEEDUP_GOAL = 2.5
IMPORT_SPEEDUP_GOAL = 2.0
WARM_SHARE_GOAL = 0.10
REIMPORT_SHARE_GOAL = 0.10
VERIFY_THROUGHPUT_GOAL = 0.7
SYNC_DELTA_GOAL = 1.1  # a day's delta bundle / the bytes of the blobs that are new that day
DISCOVERY_GOAL = 0.10  # signatures and referrers looked up: at most 10% more export time
DISK_CONSTANT = 64 * MIB  # "the largest blob plus a small constant"
SERVE_THROUGHPUT_GOAL = 0.8  # mirror serve / docker-registry, blob throughput at 8 clients
SERVE_RSS_GOAL_MB = 200.0
NOCACHE_SPEEDUP_GOAL = 3.5  # issue 19: the cacheless export against skopeo + tar|zstd
SPOOL_MB = 256  # mirror/export/streaming.py SPOOL_CAP: the cacheless export's spool


@dataclass(frozen=True)
class Goal:
    what: str
    target: str
    measured: str
    ok: bool


@dataclass(frozen=True)
class Content:
    size_mb: int
    unique_bytes: int
    artifacts: int
    images: int
    packs: int
    blobs: int
    big_layer_mb: int  # 0: the 1 GB selection was skipped


@dataclass(frozen=True)
class ExportBench:
    mirror: Measured
    skopeo: Measured  # one `skopeo copy --all` per artifact, into one layout
    tar: Measured  # tar -c LAYOUT | zstd -T0
    warm: Measured  # the same export again, cache kept
    warm_network_runs: tuple[float, ...]  # each warm run's seconds with a request in flight
    warm_requests: int
    downloaded: int
    warm_downloaded: int
    bundle_bytes: int
    tar_bytes: int
    big: Measured | None = None
    big_bytes: int = 0
    speedups: tuple[float, ...] = ()  # each cold run against the pipeline run beside it
    no_referrers: Measured | None = None  # the same cold export with `--no-referrers`
    discovery_costs: tuple[float, ...] = ()  # each cold run over the `--no-referrers` beside it

    @property
    def pipeline_seconds(self) -> float:
        return self.skopeo.seconds + self.tar.seconds

    @property
    def speedup(self) -> float:
        return self.pipeline_seconds / self.mirror.seconds

    @property
    def discovery_cost(self) -> float:
        """What looking for signatures and referrers adds to a cold export, as a share."""
        assert self.no_referrers is not None
        return self.mirror.seconds / self.no_referrers.seconds - 1

    @property
    def warm_network(self) -> float:
        """The median warm run's (the upper middle one of an even count)."""
        runs = sorted(self.warm_network_runs)
        return runs[len(runs) // 2]

    @property
    def refetch_seconds(self) -> float:
        """Bytes the warm run fetched again, at the first run's rate."""
        rate = self.downloaded / self.mirror.seconds if self.mirror.seconds else 0.0
        return self.warm_downloaded / rate if rate else 0.0

    @property
    def warm_network_seconds(self) -> float:
        """Request round trips plus any bytes fetched again."""
        return self.warm_network + self.refetch_seconds

    @property
    def warm_share(self) -> float:
        return self.warm_network_seconds / self.mirror.seconds

    @property
    def warm_shares(self) -> tuple[float, ...]:
        return tuple(
            (w + self.refetch_seconds) / self.mirror.seconds for w in self.warm_network_runs
        )


@dataclass(frozen=True)
class DiskUse:
    peak_scratch: int  # growth of TMPDIR, caches and the bundle's folder
    write_bytes: int  # every byte the process dirtied, from /proc/PID/io
    largest_blob: int

    @property
    def extra(self) -> int:
        return max(self.peak_scratch, self.write_bytes)

    @property
    def bound(self) -> int:
        return self.largest_blob + DISK_CONSTANT


@dataclass(frozen=True)
class ImportBench:
    mirror: Measured
    reimport: Measured
    skopeo: Measured  # one `skopeo copy --all oci:LAYOUT:REF docker://...` per artifact
    disk: DiskUse
    pushed_blobs: int
    repushed_blobs: int
    layout_bytes: int  # the extracted layout skopeo needs on disk
    big: Measured | None = None
    big_disk: DiskUse | None = None
    speedups: tuple[float, ...] = ()  # each first import against the skopeo run after it
    reimport_shares: tuple[float, ...] = ()  # each re-import against its own first import

    @property
    def speedup(self) -> float:
        return self.skopeo.seconds / self.mirror.seconds

    @property
    def reimport_share(self) -> float:
        return self.reimport.seconds / self.mirror.seconds


@dataclass(frozen=True)
class VerifyBench:
    mirror: Measured
    pipeline: Measured  # zstd -dc FILE | sha256sum
    bundle_bytes: int

    @property
    def relative(self) -> float:
        return self.pipeline.seconds / self.mirror.seconds


@dataclass(frozen=True)
class ClosureBench:
    """The images the corpus packs list: mirror's export and import against skopeo's."""

    images: int  # tag references the packs list in pack.content.images
    hosts: int
    packs: int  # corpus pack folders the list comes from
    pins_dropped: int  # digest pins they list besides: no lab can make someone else's bytes
    unique_bytes: int
    base_bytes: int  # the base layer every image shares
    top_bytes: tuple[int, int]  # each image's own layer: smallest and largest size
    mirror: Measured  # `mirror export`, spec `images:` + `upstreams:`
    skopeo: Measured  # one `skopeo copy --all` per image, into one layout
    tar: Measured  # tar -c LAYOUT | zstd -T0
    bundle_bytes: int
    tar_bytes: int
    imported: Measured  # `mirror import` of the bundle into an empty registry
    skopeo_import: Measured  # one `skopeo copy --all oci:LAYOUT:REF docker://...` per image
    pushed_blobs: int
    from_packs: Measured | None = None  # once: the pack folders, the closure found by mirror
    from_packs_bytes: int = 0
    export_speedups: tuple[float, ...] = ()  # each export against the pipeline run beside it
    import_speedups: tuple[float, ...] = ()  # each import against the skopeo run after it
    repeat: int = 1

    @property
    def pipeline_seconds(self) -> float:
        return self.skopeo.seconds + self.tar.seconds

    @property
    def export_speedup(self) -> float:
        return self.pipeline_seconds / self.mirror.seconds

    @property
    def import_speedup(self) -> float:
        return self.skopeo_import.seconds / self.imported.seconds


@dataclass(frozen=True)
class SyncBench:
    """The 24-hour sync (bench/sync.py): day 2 adds 5% of day 1's blobs, sent as a delta."""

    day1_blobs: int
    new_blobs: int
    new_bytes: int  # the floor: what day 2 adds, manifests and configs included
    full_bytes: int  # day 1's full bundle
    delta_bytes: int  # day 2's delta bundle
    left_out: int  # blobs the delta leaves out: day 1 carried them
    export: Measured  # the delta export
    full_export: Measured
    imported: Measured  # the delta's import, after day 1's
    pushed_blobs: int

    @property
    def ratio(self) -> float:
        return self.delta_bytes / self.new_bytes if self.new_bytes else float("inf")


@dataclass(frozen=True)
class ServeBench:
    """Every blob once, by 1 and by 8 parallel transfers: `mirror serve` and docker-registry."""

    blobs: int
    bytes: int
    serve_one: Measured
    serve_many: Measured
    registry_one: Measured
    registry_many: Measured
    serve_rss_kb: int  # peak over serve's life: verification at start and every run

    def rate(self, m: Measured) -> float:
        return self.bytes / m.seconds if m.seconds > 0 else 0.0

    @property
    def relative_one(self) -> float:
        return self.registry_one.seconds / self.serve_one.seconds

    @property
    def relative_many(self) -> float:
        return self.registry_many.seconds / self.serve_many.seconds

    def lines(self) -> list[str]:
        """The four runs as a Markdown table."""
        rows = [
            [
                f"{side}, {n} client{'s' if n > 1 else ''}",
                secs(m.seconds),
                rate(self.bytes, m.seconds),
            ]
            for side, n, m in (
                ("mirror serve", 1, self.serve_one),
                ("docker-registry", 1, self.registry_one),
                ("mirror serve", 8, self.serve_many),
                ("docker-registry", 8, self.registry_many),
            )
        ]
        return table(["server", "time", "throughput"], rows)


@dataclass(frozen=True)
class CpuRun:
    """CPU seconds (user + system) of one cacheless export and the skopeo pipeline beside
    it, each with the source registry's share: the wall-clock ratio on a host with few
    cores is a ratio of CPU work, and this shows whose."""

    mirror: float
    mirror_registry: float  # the source registry's, during mirror's run
    pipeline: float  # every skopeo copy, tar and zstd
    pipeline_registry: float

    @property
    def client_ratio(self) -> float:
        return self.pipeline / self.mirror

    @property
    def work_ratio(self) -> float:
        return (self.pipeline + self.pipeline_registry) / (self.mirror + self.mirror_registry)


@dataclass(frozen=True)
class NoCacheBench:
    """`export --no-cache` (bench/nocache.py): time, and disk beyond the bundle."""

    mirror: Measured  # median of the cacheless runs
    cached: Measured  # one cold export with the cache, on the same content, for scale
    pipeline_seconds: float  # median skopeo copy + tar|zstd run beside them
    speedups: tuple[float, ...]  # each cacheless run against the pipeline run beside it
    peak_extra: int  # bytes on disk beyond the bundle, at the worst sample
    largest_blob: int
    bundle_bytes: int
    cpu: tuple[CpuRun, ...] = ()  # each run's CPU seconds, side by side
    cores: int = 0  # CPUs the bench could use

    @property
    def speedup(self) -> float:
        return self.pipeline_seconds / self.mirror.seconds

    @property
    def bound(self) -> int:
        return self.largest_blob + SPOOL_MB * MIB


@dataclass(frozen=True)
class LevelRow:
    level: int | None  # None: STORED, raw blocks with no compressor
    seconds: float
    out_bytes: int
    in_bytes: int


@dataclass(frozen=True)
class LevelBench:
    current: tuple[int, int | None]  # the writer's (LEVEL, COMPRESSED_LEVEL) today
    bundle: Sequence[LevelRow]  # every member of the bench bundle at one level
    packs: Sequence[LevelRow]  # the real corpus pack blobs alone (gzip)
    raw: Sequence[LevelRow]  # the same pack blobs decompressed: compressible members


@dataclass(frozen=True)
class Report:
    date: str
    machine: dict[str, str]
    content: Content
    export: ExportBench
    imports: ImportBench
    verify: VerifyBench
    levels: LevelBench
    closure: ClosureBench | None = None  # None: no corpus, so no pack lists any image
    sync: SyncBench | None = None  # None: a report made before the sync scenario existed
    serve: ServeBench | None = None
    nocache: NoCacheBench | None = None  # None: made before the cacheless scenario existed
    quick: bool = False
    repeat: int = 1
    minutes: float = 0.0
    notes: list[str] = field(default_factory=list)
    findings: str = ""  # hand-written profile analysis (bench/FINDINGS.md), shown as such
    helm: HelmBench | None = None  # the Bitnami-size index (bench/scale.py); None: not run
    small: SmallBench | None = None  # thousands of small images (bench/scale.py)


def mb(n: float) -> str:
    return f"{n / MIB:,.1f} MB"


def secs(s: float) -> str:
    return f"{s:.2f} s"


def rate(nbytes: int, s: float) -> str:
    return f"{nbytes / MIB / s:,.0f} MB/s" if s > 0 else "n/a"


def mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def spread(values: Sequence[float], fmt: str, unit: str = "") -> str:
    """ " (runs: LOW-HIGH)" beside a median: how near its line each repeat fell."""
    if len(values) < 2:
        return ""
    low, high = format(min(values), fmt), format(max(values), fmt)
    return f" (runs: {low}{unit}-{high}{unit})"


def cpu_lines(n: NoCacheBench) -> list[str]:
    """Whose CPU the cacheless runs spent, and the wall time it bounds on this host's cores."""
    if not n.cpu:
        return []
    mine = median([c.mirror for c in n.cpu])
    served = median([c.mirror_registry for c in n.cpu])
    theirs = median([c.pipeline for c in n.cpu])
    their_served = median([c.pipeline_registry for c in n.cpu])
    client = [c.client_ratio for c in n.cpu]
    work = [c.work_ratio for c in n.cpu]
    floor = (mine + served) / max(n.cores, 1)
    return [
        f"CPU seconds (user + system, medians): mirror {mine:.2f} s and the registry serving "
        f"it {served:.2f} s; skopeo + tar|zstd {theirs:.2f} s and the registry "
        f"{their_served:.2f} s. skopeo + tar spends {median(client):.2f}x mirror's CPU"
        f"{spread(client, '.2f', 'x')}, {median(work):.2f}x counting the registry's"
        f"{spread(work, '.2f', 'x')}. On {n.cores} cores that work alone takes at least "
        f"{floor:.2f} s of wall time; {NOCACHE_SPEEDUP_GOAL}x skopeo + tar asks for "
        f"{n.pipeline_seconds / NOCACHE_SPEEDUP_GOAL:.2f} s.",
    ]


def rss_goal(what: str, m: Measured) -> Goal:
    return Goal(what, f"<= {RSS_GOAL_MB:.0f} MB", f"{m.rss_mb:.0f} MB", m.rss_mb <= RSS_GOAL_MB)


def export_goals(e: ExportBench) -> list[Goal]:
    goals = [
        Goal(
            "export vs skopeo copy + tar|zstd",
            f">= {EXPORT_SPEEDUP_GOAL}x faster",
            f"{e.speedup:.2f}x" + spread(e.speedups, ".2f", "x"),
            e.speedup >= EXPORT_SPEEDUP_GOAL,
        ),
        rss_goal("export peak RSS", e.mirror),
    ]
    if e.big is not None:
        goals.append(rss_goal("export peak RSS, one 1 GB layer", e.big))
    if e.no_referrers is not None:
        goals.append(
            Goal(
                "referrer discovery: export time over --no-referrers",
                f"<= +{DISCOVERY_GOAL:.0%}",
                f"{e.discovery_cost:+.1%}" + spread(e.discovery_costs, "+.1%"),
                e.discovery_cost <= DISCOVERY_GOAL,
            )
        )
    goals.append(
        Goal(
            "warm-cache export: network time / first run",
            f"<= {WARM_SHARE_GOAL:.0%}",
            f"{e.warm_share:.1%}" + spread(e.warm_shares, ".1%"),
            e.warm_share <= WARM_SHARE_GOAL,
        )
    )
    return goals


def _disk_goal(what: str, d: DiskUse) -> Goal:
    return Goal(what, f"<= {mb(d.bound)}", mb(d.extra), d.extra <= d.bound)


def import_goals(i: ImportBench) -> list[Goal]:
    goals = [
        Goal(
            "import vs skopeo copy from the layout",
            f">= {IMPORT_SPEEDUP_GOAL}x faster",
            f"{i.speedup:.2f}x" + spread(i.speedups, ".2f", "x"),
            i.speedup >= IMPORT_SPEEDUP_GOAL,
        ),
        Goal(
            "re-import / first import",
            f"<= {REIMPORT_SHARE_GOAL:.0%}",
            f"{i.reimport_share:.1%}" + spread(i.reimport_shares, ".1%"),
            i.reimport_share <= REIMPORT_SHARE_GOAL,
        ),
        Goal("re-import uploads no blob", "0 blobs", str(i.repushed_blobs), i.repushed_blobs == 0),
        rss_goal("import peak RSS", i.mirror),
        _disk_goal("import extra disk (largest blob + 64 MB)", i.disk),
    ]
    if i.big is not None:
        goals.append(rss_goal("import peak RSS, one 1 GB layer", i.big))
    if i.big_disk is not None:
        goals.append(_disk_goal("import extra disk, one 1 GB layer", i.big_disk))
    return goals


def verify_goals(v: VerifyBench) -> list[Goal]:
    return [
        Goal(
            "verify throughput / zstd -dc | sha256sum",
            f">= {VERIFY_THROUGHPUT_GOAL}",
            f"{v.relative:.2f}",
            v.relative >= VERIFY_THROUGHPUT_GOAL,
        )
    ]


def closure_goals(c: ClosureBench) -> list[Goal]:
    return [
        Goal(
            "image closure export vs skopeo copy + tar|zstd",
            f">= {EXPORT_SPEEDUP_GOAL}x faster",
            f"{c.export_speedup:.2f}x" + spread(c.export_speedups, ".2f", "x"),
            c.export_speedup >= EXPORT_SPEEDUP_GOAL,
        ),
        rss_goal("image closure export peak RSS", c.mirror),
        Goal(
            "image closure import vs skopeo copy from the layout",
            f">= {IMPORT_SPEEDUP_GOAL}x faster",
            f"{c.import_speedup:.2f}x" + spread(c.import_speedups, ".2f", "x"),
            c.import_speedup >= IMPORT_SPEEDUP_GOAL,
        ),
        rss_goal("image closure import peak RSS", c.imported),
    ]


def sync_goals(s: SyncBench) -> list[Goal]:
    share = s.new_blobs / s.day1_blobs if s.day1_blobs else 0.0
    return [
        Goal(
            f"daily delta ({share:.0%} of the blobs new) / new bytes",
            f"<= {SYNC_DELTA_GOAL}x",
            f"{s.ratio:.3f}x",
            s.ratio <= SYNC_DELTA_GOAL,
        )
    ]


def serve_goals(s: ServeBench) -> list[Goal]:
    rss_mb = s.serve_rss_kb / 1024
    return [
        Goal(
            "serve blob throughput / docker-registry, 8 clients",
            f">= {SERVE_THROUGHPUT_GOAL}x",
            f"{s.relative_many:.2f}x (1 client: {s.relative_one:.2f}x)",
            s.relative_many >= SERVE_THROUGHPUT_GOAL,
        ),
        Goal(
            "serve peak RSS",
            f"<= {SERVE_RSS_GOAL_MB:.0f} MB",
            f"{rss_mb:.0f} MB",
            rss_mb <= SERVE_RSS_GOAL_MB,
        ),
    ]


def nocache_goals(n: NoCacheBench) -> list[Goal]:
    return [
        Goal(
            "export --no-cache extra disk (largest blob + 256 MB)",
            f"<= {mb(n.bound)}",
            mb(n.peak_extra),
            n.peak_extra <= n.bound,
        ),
        Goal(
            "export --no-cache vs skopeo copy + tar|zstd",
            f">= {NOCACHE_SPEEDUP_GOAL}x faster",
            f"{n.speedup:.2f}x" + spread(n.speedups, ".2f", "x"),
            n.speedup >= NOCACHE_SPEEDUP_GOAL,
        ),
    ]


def all_goals(r: Report) -> list[Goal]:
    from bench.scale import helm_goals, small_goals

    closure = closure_goals(r.closure) if r.closure is not None else []
    sync = sync_goals(r.sync) if r.sync is not None else []
    serve = serve_goals(r.serve) if r.serve is not None else []
    scale = (helm_goals(r.helm) if r.helm else []) + (small_goals(r.small) if r.small else [])
    nocache = nocache_goals(r.nocache) if r.nocache is not None else []
    goals = export_goals(r.export) + nocache + import_goals(r.imports) + closure
    return goals + verify_goals(r.verify) + sync + serve + scale


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table; a `|` inside a cell is escaped so it cannot split the cell."""
    lines = [
        "| " + " | ".join(map(_cell, head)) + " |",
        "|" + "|".join(" --- " for _ in head) + "|",
    ]
    lines += ["| " + " | ".join(map(_cell, row)) + " |" for row in rows]
    return lines


def goal_table(goals: Sequence[Goal]) -> list[str]:
    return table(
        ["goal", "target", "measured", "result"],
        [[g.what, g.target, g.measured, mark(g.ok)] for g in goals],
    )
