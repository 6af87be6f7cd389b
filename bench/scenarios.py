"""The benchmarks, each mirror against the tool chain a user would otherwise script.

The image closure's pair (export and import of the images the packs list) is in closure.py.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.measure import DiskWatch, Measured, median_of, run_all, run_measured, tree_bytes
from bench.report import Content, DiskUse, ExportBench, ImportBench, VerifyBench
from mirror.lab import LabRegistry, running_registry
from mirror.lab.benchdata import BenchItem

BASE = "bench"
MAIN_REPOS = ("images/app-*", "images/multiarch", "spectro-packs/archive/*")
BIG_REPOS = ("images/big",)
VERIFY_REPEATS = 3
# The main export carries the registry's own images and packs, as it did before the image
# closure; the images the packs list are the closure bench's (bench/closure.py), and without
# `upstreams:` they would be asked of ghcr.io, quay.io, ... themselves.
NO_CLOSURE = "--no-images"
# The same export without looking for signatures and referrers: what discovery costs. The
# bench registry holds none, so this is the price of looking, not of carrying them.
BARE = "--no-referrers"
NETCLOCK = Path(__file__).resolve().parent / "netclock.py"


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

    def registry_in_memory(self, need: int) -> LabRegistry | None:
        """A registry whose storage is on tmpfs (/dev/shm): what a client costs with the
        target's disk taken out. None where there is no tmpfs with `need` bytes free."""
        shm = Path("/dev/shm")
        if not is_tmpfs(shm) or not os.access(shm, os.W_OK):
            return None
        if shutil.disk_usage(shm).free < need:  # a container's is often 64 MB
            return None
        storage = Path(tempfile.mkdtemp(prefix="mirror-bench-", dir=shm))
        self.stack.callback(shutil.rmtree, storage, True)  # after the registry stops
        run = running_registry(self.dir("registries"), storage_dir=storage)
        return self.stack.enter_context(run)

    def scratch_dirs(self) -> list[Path]:
        return [Path(self.env[k]) for k in ("TMPDIR", "XDG_CACHE_HOME", "XDG_DATA_HOME")]


def is_tmpfs(path: Path) -> bool:
    """Whether `path` is a tmpfs mount point: /dev/shm may be a plain folder elsewhere."""
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return False
    return [str(path), "tmpfs"] in mounts


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
    b: Bench, spec: Path, out: Path, cache: Path, *extra: str, clock: Path | None = None
) -> tuple[Measured, dict[str, Any]]:
    """One `mirror export`; with `clock`, under the HTTP stopwatch (bench/netclock.py)."""
    summary = out.with_suffix(".json")
    args = ["export", str(spec), "-o", str(out), "--cache-dir", str(cache), "--json", *extra]
    if clock is not None:
        cmd = [sys.executable, str(NETCLOCK), str(clock), "--", *args]
    else:
        cmd = [*b.mirror, *args]
    m = run_measured(cmd, env=b.env, stdout=summary)
    return m, _json(summary)


def skopeo_export(b: Bench, src: LabRegistry, items: Sequence[BenchItem]) -> tuple[
    Measured, Measured, int
]:  # fmt: skip
    """One `skopeo copy --all` per artifact into one layout, then tar | zstd -T0."""
    pairs = [(f"{src.host}/{repo}:{tag}", f"{repo}:{tag}") for repo, tag, _, _ in items]
    return skopeo_layout_export(b, "export", pairs)


def skopeo_layout_export(
    b: Bench, folder: str, pairs: Sequence[tuple[str, str]]
) -> tuple[Measured, Measured, int]:
    """skopeo's side of an export: each (source ref, layout name) copied with `--all` into one
    OCI layout, then tar | zstd -T0; the two timings and the archive's size."""
    out = b.dir(folder)
    layout = out / "skopeo-layout"
    copies = [
        ["skopeo", "copy", "--all", "-q", "--src-tls-verify=false",
         f"docker://{source}", f"oci:{layout}:{name}"]
        for source, name in pairs
    ]  # fmt: skip
    skopeo = run_all(copies, env=b.env)
    tarball = out / "skopeo.tar.zst"
    tar = run_measured(
        ["bash", "-c", 'set -o pipefail; tar -C "$1" -cf - . | zstd -q -T0 > "$2"', "tar",
         str(layout), str(tarball)],
        env=b.env,
        settle=False,  # one pipeline with the copies: skopeo's writes are not flushed first
    )  # fmt: skip
    size = tarball.stat().st_size
    shutil.rmtree(layout)
    tarball.unlink()
    return skopeo, tar, size


def export_bench(
    b: Bench, src: LabRegistry, items: Sequence[BenchItem], big: BenchItem | None, repeat: int
) -> tuple[ExportBench, Path, Path | None]:
    """Cold exports and skopeo pipelines in turns, then warm exports on the last cold cache."""
    out = b.dir("export")
    spec = write_spec(out / "bench.json", src.url, MAIN_REPOS)
    bundle, cache = out / "bench.tar.zst", out / "cache"
    colds, bares, skopeos, tars = [], [], [], []
    for n in range(repeat):
        for refs in (True, False) if n % 2 == 0 else (False, True):
            if refs:
                shutil.rmtree(cache, ignore_errors=True)
                log(f"export {n + 1}/{repeat}: mirror, cold cache")
                cold, cold_sum = mirror_export(b, spec, bundle, cache, NO_CLOSURE)
                colds.append(cold)
            else:  # what looking for signatures and referrers costs: the run without it
                log(f"export {n + 1}/{repeat}: mirror --no-referrers, cold cache")
                bare, bare_cache = out / "bare.tar.zst", out / "bare-cache"
                bares.append(mirror_export(b, spec, bare, bare_cache, NO_CLOSURE, BARE)[0])
                bare.unlink()
                shutil.rmtree(bare_cache)
        log(f"export {n + 1}/{repeat}: skopeo copy x{len(items)} into one layout, tar | zstd")
        skopeo, tar, tar_bytes = skopeo_export(b, src, items)
        skopeos.append(skopeo)
        tars.append(tar)
    warms, nets = [], []
    for n in range(repeat):
        log(f"export {n + 1}/{repeat}: mirror again, warm cache, HTTP timed")
        clock = out / "netclock.json"
        warm, warm_sum = mirror_export(
            b, spec, out / "warm.tar.zst", cache, NO_CLOSURE, clock=clock
        )
        warms.append(warm)
        nets.append(_json(clock))
        (out / "warm.tar.zst").unlink()
    shutil.rmtree(cache)
    net = sorted(nets, key=lambda d: float(d["seconds"]))[len(nets) // 2]
    big_m, big_bundle, big_bytes = None, None, 0
    if big is not None:
        log("export: mirror, one big layer")
        big_spec = write_spec(out / "big.json", src.url, BIG_REPOS)
        big_bundle = out / "big.tar.zst"
        big_m, big_sum = mirror_export(b, big_spec, big_bundle, out / "big-cache", NO_CLOSURE)
        big_bytes = int(big_sum["bytes"])
        shutil.rmtree(out / "big-cache")
    result = ExportBench(
        mirror=median_of(colds),
        skopeo=median_of(skopeos),
        tar=median_of(tars),
        warm=median_of(warms),
        warm_network_runs=tuple(float(d["seconds"]) for d in nets),
        warm_requests=int(net["requests"]),
        downloaded=int(cold_sum["downloadedBytes"]),
        warm_downloaded=int(warm_sum["downloadedBytes"]),
        bundle_bytes=bundle.stat().st_size,
        tar_bytes=tar_bytes,
        big=big_m,
        big_bytes=big_bytes,
        speedups=tuple(
            (s.seconds + t.seconds) / c.seconds
            for c, s, t in zip(colds, skopeos, tars, strict=True)
        ),
        no_referrers=median_of(bares),
        discovery_costs=tuple(c.seconds / n.seconds - 1 for c, n in zip(colds, bares, strict=True)),
    )
    return result, bundle, big_bundle


def mirror_import(b: Bench, bundle: Path, target: LabRegistry, name: str, catalog: Path) -> tuple[
    Measured, DiskUse, dict[str, Any]
]:  # fmt: skip
    """One `mirror import`. A re-import passes the first import's catalog, as an operator
    importing again on the same host would."""
    out = b.dir("import")
    summary = out / f"{name}.json"
    watch = DiskWatch([*b.scratch_dirs(), bundle.parent, out])
    cmd = [
        *b.mirror, "import", str(bundle), "--target", target.url, "--allow-unsigned",
        "--catalog", str(catalog), "--json",
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
    repeat: int,
) -> tuple[ImportBench, Path]:
    """Returns the figures and the extracted layout (the level sweep reuses it)."""
    layout = extract(bundle, b.work / "layout")
    refs = layout_refs(layout)

    def copies_to(host: str) -> list[list[str]]:
        return [
            ["skopeo", "copy", "--all", "-q", "--dest-tls-verify=false", f"oci:{layout}:{ref}",
             f"docker://{host}/{ref}"]
            for ref in refs
        ]  # fmt: skip

    firsts, agains, skopeos, disks = [], [], [], []
    for n in range(repeat):
        target = b.registry()
        log(f"import {n + 1}/{repeat}: mirror into an empty registry, then again")
        catalog = b.dir("import") / f"catalog-{n + 1}.json"
        first, disk, first_sum = mirror_import(b, bundle, target, "first", catalog)
        again, _, again_sum = mirror_import(b, bundle, target, "again", catalog)
        target.stop()
        firsts.append(first)
        agains.append(again)
        disks.append(disk)
        other = b.registry()
        log(f"import {n + 1}/{repeat}: skopeo copy x{len(refs)} from the extracted layout")
        skopeos.append(run_all(copies_to(other.host), env=b.env))
        other.stop()
    big_m, big_disk = None, None
    if big_bundle is not None and big is not None:
        log("import: mirror, one big layer")
        big_target = b.registry()
        big_catalog = b.dir("import") / "catalog-big.json"
        big_m, used, _ = mirror_import(b, big_bundle, big_target, "big", big_catalog)
        big_target.stop()
        big_disk = DiskUse(used.peak_scratch, used.write_bytes, largest_blob([big]))
    result = ImportBench(
        mirror=median_of(firsts),
        reimport=median_of(agains),
        skopeo=median_of(skopeos),
        disk=DiskUse(
            max(d.peak_scratch for d in disks),
            max(d.write_bytes for d in disks),
            largest_blob(items),
        ),
        pushed_blobs=int(first_sum.get("pushedBlobs", 0)),
        repushed_blobs=int(again_sum.get("pushedBlobs", 0)),
        layout_bytes=tree_bytes([layout]),
        big=big_m,
        big_disk=big_disk,
        speedups=tuple(s.seconds / f.seconds for f, s in zip(firsts, skopeos, strict=True)),
        reimport_shares=tuple(a.seconds / f.seconds for f, a in zip(firsts, agains, strict=True)),
    )
    return result, layout


def verify_bench(b: Bench, bundle: Path, repeat: int) -> VerifyBench:
    n = max(repeat, VERIFY_REPEATS)
    log(f"verify: mirror verify and zstd -dc | sha256sum, {n} times each")
    pipe = ["bash", "-c", 'set -o pipefail; zstd -dc "$1" | sha256sum >/dev/null', "v",
            str(bundle)]  # fmt: skip
    mine = [*b.mirror, "verify", str(bundle), "--allow-unsigned", "--json"]
    pipes, mirrors = [], []
    for _ in range(n):
        pipes.append(run_measured(pipe, env=b.env))
        mirrors.append(run_measured(mine, env=b.env))
    return VerifyBench(median_of(mirrors), median_of(pipes), bundle.stat().st_size)
