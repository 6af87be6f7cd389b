"""The four benchmarks, each mirror against the tool chain a user would otherwise script."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.measure import DiskWatch, Measured, run_all, run_measured, tree_bytes
from bench.report import Content, DiskUse, ExportBench, ImportBench, VerifyBench
from mirror.lab import LabRegistry, running_registry
from mirror.lab.benchdata import BenchItem

BASE = "bench"
MAIN_REPOS = ("images/app-*", "images/multiarch", "spectro-packs/archive/*")
BIG_REPOS = ("images/big",)
VERIFY_REPEATS = 3


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


@dataclass
class Bench:
    """One benchmark run's folder, environment and the processes it must stop."""

    work: Path
    stack: ExitStack
    env: dict[str, str]

    @property
    def mirror(self) -> list[str]:
        return [sys.executable, "-m", "mirror"]

    def dir(self, name: str) -> Path:
        path = self.work / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def registry(self) -> LabRegistry:
        return self.stack.enter_context(running_registry(self.dir("registries")))

    def scratch_dirs(self) -> list[Path]:
        return [Path(self.env[k]) for k in ("TMPDIR", "XDG_CACHE_HOME", "XDG_DATA_HOME")]


def isolated_env(work: Path, base: dict[str, str]) -> dict[str, str]:
    """Scratch, caches and docker config inside the run's folder: measured, then removed."""
    env = dict(base)
    for key, name in (
        ("TMPDIR", "tmp"),
        ("XDG_CACHE_HOME", "xdg-cache"),
        ("XDG_DATA_HOME", "xdg-data"),
        ("DOCKER_CONFIG", "docker"),
    ):
        env[key] = str(work / name)
        (work / name).mkdir(parents=True, exist_ok=True)
    env.pop("SOURCE_DATE_EPOCH", None)
    return env


def content_of(size_mb: int, items: Sequence[BenchItem], big_mb: int) -> Content:
    blobs: set[str] = set()
    for _, _, art, _ in items:
        blobs.add(art.descriptor.digest)
        blobs.update(d.digest for d, _ in art.blobs)
    from mirror.lab.benchdata import unique_bytes

    return Content(
        size_mb=size_mb,
        unique_bytes=unique_bytes(items),
        artifacts=len(items),
        images=sum(1 for *_, kind in items if kind == "image"),
        packs=sum(1 for *_, kind in items if kind == "pack"),
        blobs=len(blobs),
        big_layer_mb=big_mb,
    )


def largest_blob(items: Sequence[BenchItem]) -> int:
    return max(d.size for _, _, art, _ in items for d, _ in art.blobs)


def write_spec(path: Path, url: str, repositories: Sequence[str]) -> Path:
    doc = {
        "name": path.stem,
        "registries": [
            {
                "name": "Bench",
                "kind": "oci",
                "url": url,
                "basePath": BASE,
                "repositories": list(repositories),
            }
        ],
    }
    path.write_text(json.dumps(doc, indent=2))
    return path


def _json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def mirror_export(
    b: Bench, spec: Path, out: Path, cache: Path, *extra: str
) -> tuple[Measured, dict[str, Any]]:
    summary = out.with_suffix(".json")
    cmd = [*b.mirror, "export", str(spec), "-o", str(out), "--cache-dir", str(cache), "--json"]
    m = run_measured([*cmd, *extra], env=b.env, stdout=summary)
    return m, _json(summary)


def export_bench(
    b: Bench, src: LabRegistry, items: Sequence[BenchItem], big: BenchItem | None
) -> tuple[ExportBench, Path, Path | None]:
    out = b.dir("export")
    spec = write_spec(out / "bench.json", src.url, MAIN_REPOS)
    bundle = out / "bench.tar.zst"
    log("export: mirror, cold cache")
    cold, cold_sum = mirror_export(b, spec, bundle, out / "cache")
    log(f"export: skopeo copy x{len(items)} into one layout")
    layout = out / "skopeo-layout"
    copies = [
        ["skopeo", "copy", "--all", "-q", "--src-tls-verify=false",
         f"docker://{src.host}/{repo}:{tag}", f"oci:{layout}:{repo}:{tag}"]
        for repo, tag, _, _ in items
    ]  # fmt: skip
    skopeo = run_all(copies, env=b.env)
    log("export: tar | zstd -T0")
    tarball = out / "skopeo.tar.zst"
    tar = run_measured(
        ["bash", "-c", 'set -o pipefail; tar -C "$1" -cf - . | zstd -q -T0 > "$2"', "tar",
         str(layout), str(tarball)],
        env=b.env,
    )  # fmt: skip
    tar_bytes = tarball.stat().st_size
    shutil.rmtree(layout)
    tarball.unlink()
    log("export: mirror again, warm cache (--dry-run, then for real)")
    resolve, _ = mirror_export(b, spec, out / "dry.tar.zst", out / "cache", "--dry-run")
    warm, warm_sum = mirror_export(b, spec, out / "warm.tar.zst", out / "cache")
    (out / "warm.tar.zst").unlink()
    shutil.rmtree(out / "cache")
    big_m, big_bundle, big_bytes = None, None, 0
    if big is not None:
        log("export: mirror, one big layer")
        big_spec = write_spec(out / "big.json", src.url, BIG_REPOS)
        big_bundle = out / "big.tar.zst"
        big_m, big_sum = mirror_export(b, big_spec, big_bundle, out / "big-cache")
        big_bytes = int(big_sum["bytes"])
        shutil.rmtree(out / "big-cache")
    result = ExportBench(
        mirror=cold,
        skopeo=skopeo,
        tar=tar,
        warm=warm,
        warm_resolve=resolve,
        downloaded=int(cold_sum["downloadedBytes"]),
        warm_downloaded=int(warm_sum["downloadedBytes"]),
        bundle_bytes=bundle.stat().st_size,
        tar_bytes=tar_bytes,
        big=big_m,
        big_bytes=big_bytes,
    )
    return result, bundle, big_bundle


def mirror_import(b: Bench, bundle: Path, target: LabRegistry, name: str) -> tuple[
    Measured, DiskUse, dict[str, Any]
]:  # fmt: skip
    out = b.dir("import")
    summary = out / f"{name}.json"
    watch = DiskWatch([*b.scratch_dirs(), bundle.parent, out])
    cmd = [
        *b.mirror, "import", str(bundle), "--target", target.url, "--allow-unsigned",
        "--catalog", str(out / f"{name}-catalog.json"), "--json",
    ]  # fmt: skip
    m = run_measured(cmd, env=b.env, stdout=summary, watch=watch)
    return m, DiskUse(watch.peak_extra, watch.write_bytes, 0), _json(summary)


def extract(bundle: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    run_measured(["bash", "-c", 'set -o pipefail; zstd -dc "$1" | tar -C "$2" -xf -', "x",
                  str(bundle), str(dest)])  # fmt: skip
    return dest


def layout_refs(layout: Path) -> list[str]:
    index = _json(layout / "index.json")
    key = "org.opencontainers.image.ref.name"
    return [m["annotations"][key] for m in index["manifests"]]


def import_bench(
    b: Bench,
    bundle: Path,
    items: Sequence[BenchItem],
    big_bundle: Path | None,
    big: BenchItem | None,
) -> tuple[ImportBench, Path]:
    """Returns the figures and the extracted layout (the level sweep reuses it)."""
    target = b.registry()
    log("import: mirror into an empty registry")
    first, disk, first_sum = mirror_import(b, bundle, target, "first")
    log("import: mirror again")
    again, _, again_sum = mirror_import(b, bundle, target, "again")
    target.stop()
    layout = extract(bundle, b.work / "layout")
    refs = layout_refs(layout)
    other = b.registry()
    log(f"import: skopeo copy x{len(refs)} from the extracted layout")
    copies = [
        ["skopeo", "copy", "--all", "-q", "--dest-tls-verify=false", f"oci:{layout}:{ref}",
         f"docker://{other.host}/{ref}"]
        for ref in refs
    ]  # fmt: skip
    skopeo = run_all(copies, env=b.env)
    other.stop()
    big_m, big_disk = None, None
    if big_bundle is not None and big is not None:
        log("import: mirror, one big layer")
        big_target = b.registry()
        big_m, used, _ = mirror_import(b, big_bundle, big_target, "big")
        big_target.stop()
        big_disk = DiskUse(used.peak_scratch, used.write_bytes, largest_blob([big]))
    result = ImportBench(
        mirror=first,
        reimport=again,
        skopeo=skopeo,
        disk=DiskUse(disk.peak_scratch, disk.write_bytes, largest_blob(items)),
        pushed_blobs=int(first_sum.get("pushedBlobs", 0)),
        repushed_blobs=int(again_sum.get("pushedBlobs", 0)),
        layout_bytes=tree_bytes([layout]),
        big=big_m,
        big_disk=big_disk,
    )
    return result, layout


def _best(runs: Sequence[Measured]) -> Measured:
    return min(runs, key=lambda m: m.seconds)


def verify_bench(b: Bench, bundle: Path) -> VerifyBench:
    log(f"verify: mirror verify and zstd -dc | sha256sum, best of {VERIFY_REPEATS}")
    pipe = ["bash", "-c", 'set -o pipefail; zstd -dc "$1" | sha256sum >/dev/null', "v",
            str(bundle)]  # fmt: skip
    mine = [*b.mirror, "verify", str(bundle), "--allow-unsigned", "--json"]
    pipes, mirrors = [], []
    for _ in range(VERIFY_REPEATS):
        pipes.append(run_measured(pipe, env=b.env))
        mirrors.append(run_measured(mine, env=b.env))
    worst_rss = max(m.rss_kb for m in mirrors)
    best = _best(mirrors)
    return VerifyBench(
        mirror=Measured(best.seconds, worst_rss),
        pipeline=_best(pipes),
        bundle_bytes=bundle.stat().st_size,
    )
