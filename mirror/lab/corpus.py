"""Real packs and charts from ../shared/corpus/pack-central, shaped for the lab.

The corpus is read-only: archives and repositories are built in memory or under `dest`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mirror.errors import MirrorError
from mirror.oci.artifact import OciArtifact

_ENV_CORPUS = "MIRROR_CORPUS"
LAB_TIME = "2024-01-01T00:00:00Z"  # fixed, so lab content is reproducible


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


def _chart_key(tgz: Path) -> tuple[str, str]:
    from mirror.formats.helm import chart_metadata

    meta = chart_metadata(tgz.read_bytes(), str(tgz))
    return str(meta["name"]), str(meta["version"])


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
            key = _chart_key(tgz)
        except (MirrorError, OSError):
            continue
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
        (name, version, chart_artifact(tgz.read_bytes(), created=LAB_TIME, where=str(tgz)))
        for name, version, tgz in unique_charts(corpus, limit, smallest=True)
    ]


def build_helm_repo(dest: Path, charts: Sequence[Path], generated: str = LAB_TIME) -> Path:
    """A static Helm repository: the .tgz files plus index.yaml; returns `dest`.

    Timestamps are fixed, so the same charts always give the same index.yaml.
    """
    from mirror.formats.helm import ChartVersion, chart_metadata, write_index

    dest.mkdir(parents=True, exist_ok=True)
    entries: list[tuple[ChartVersion, str]] = []
    for tgz in charts:
        data = tgz.read_bytes()
        meta = chart_metadata(data, str(tgz))
        (dest / tgz.name).write_bytes(data)
        cv = ChartVersion(
            name=str(meta["name"]),
            version=str(meta["version"]),
            urls=(tgz.name,),
            digest=hashlib.sha256(data).hexdigest(),
            created=generated,
            metadata=meta,
        )
        entries.append((cv, tgz.name))
    (dest / "index.yaml").write_bytes(write_index(entries, generated))
    return dest
