"""Real packs and charts from ../shared/corpus/pack-central, shaped for the lab.

The corpus is read-only: archives and repositories are built in memory or under `dest`.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mirror.errors import MirrorError
from mirror.oci.artifact import OciArtifact

_ENV_CORPUS = "MIRROR_CORPUS"


def corpus_dir() -> Path | None:
    """pack-central beside the clone (CI puts shared/ there), or $MIRROR_CORPUS; None if absent."""
    override = os.environ.get(_ENV_CORPUS)
    path = (
        Path(override)
        if override
        else Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "pack-central"
    )
    return path if path.is_dir() else None


@dataclass(frozen=True)
class CorpusPacks:
    """Loaded packs (name, version, artifact) and the folders that would not load, with why."""

    packs: list[tuple[str, str, OciArtifact]]
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def pack_dirs(corpus: Path, *, smallest: bool = False) -> list[Path]:
    dirs = sorted(p for p in corpus.iterdir() if (p / "pack.json").is_file())
    if smallest:
        dirs.sort(key=lambda p: (_tree_size(p), p.name))
    return dirs


def load_corpus_packs(
    corpus: Path, limit: int | None = None, *, smallest: bool = False
) -> CorpusPacks:
    """Build each pack's archive and ORAS artifact; a folder that fails is skipped, not fatal."""
    from mirror.formats.pack import build_pack_archive, load_pack_dir, pack_artifact

    out = CorpusPacks([])
    seen: set[tuple[str, str]] = set()
    for pack_dir in pack_dirs(corpus, smallest=smallest):
        if limit is not None and len(out.packs) >= limit:
            break
        try:
            info, _ = load_pack_dir(pack_dir)
            filename, archive = build_pack_archive(pack_dir)
        except (MirrorError, OSError, ValueError) as exc:
            out.skipped.append((pack_dir, str(exc)))
            continue
        if (info.name, info.version) in seen:
            out.skipped.append((pack_dir, f"duplicate of {info.name}:{info.version}"))
            continue
        seen.add((info.name, info.version))
        out.packs.append((info.name, info.version, pack_artifact(archive, filename)))
    return out


def corpus_packs(
    corpus: Path, limit: int | None = None, *, smallest: bool = False
) -> list[tuple[str, str, OciArtifact]]:
    return load_corpus_packs(corpus, limit, smallest=smallest).packs


def corpus_charts(corpus: Path) -> list[Path]:
    """Every `charts/*.tgz` in the corpus, sorted by path."""
    return sorted(corpus.glob("*/charts/*.tgz"))


def chart_meta(tgz: Path) -> dict[str, Any]:
    """Chart.yaml of a packaged chart (the one at depth one: `NAME/Chart.yaml`)."""
    with tarfile.open(tgz, "r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if len(parts) == 2 and parts[1] == "Chart.yaml" and member.isfile():
                fh = tar.extractfile(member)
                if fh is not None:
                    doc = yaml.safe_load(fh.read(1024 * 1024))
                    if isinstance(doc, dict):
                        return doc
    raise ValueError(f"{tgz}: no Chart.yaml")


def unique_charts(
    corpus: Path, limit: int | None = None, *, smallest: bool = False
) -> list[tuple[str, str, Path]]:
    """(name, version, tgz) once per chart version; the corpus repeats some across packs."""
    charts = corpus_charts(corpus)
    if smallest:
        charts.sort(key=lambda p: (p.stat().st_size, str(p)))
    out: list[tuple[str, str, Path]] = []
    seen: set[tuple[str, str]] = set()
    for tgz in charts:
        try:
            meta = chart_meta(tgz)
        except (OSError, ValueError, tarfile.TarError, yaml.YAMLError):
            continue
        key = (str(meta.get("name")), str(meta.get("version")))
        if key not in seen:
            seen.add(key)
            out.append((*key, tgz))
        if limit is not None and len(out) >= limit:
            break
    return out


def corpus_chart_artifacts(
    corpus: Path, limit: int | None = None
) -> list[tuple[str, str, OciArtifact]]:
    """Helm OCI charts (what `helm push` makes), smallest first."""
    from mirror.formats.helm import chart_artifact

    return [
        (name, version, chart_artifact(tgz))
        for name, version, tgz in unique_charts(corpus, limit, smallest=True)
    ]


def build_helm_repo(dest: Path, charts: Sequence[Path]) -> Path:
    """A static Helm repository: the .tgz files plus index.yaml; returns `dest`."""
    from mirror.formats.helm import write_index

    dest.mkdir(parents=True, exist_ok=True)
    for tgz in charts:
        shutil.copyfile(tgz, dest / tgz.name)
    write_index(dest)
    return dest
