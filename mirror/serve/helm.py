"""Every Helm repository in the bundle as a static Helm repository: index.yaml and its .tgz.

The charts travel as Helm OCI charts; the index is written once at start by the same code
as import's `--helm-repo-dir` (`stores/helmdir.py`): each chart keeps its repository's own
index entry (manifest.json's `chart.indexEntry`), every field but `urls`. Each .tgz is the
chart's layer, streamed out of the archive like any other blob.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mirror.bundle.manifest import BundleManifest
from mirror.errors import IntegrityError
from mirror.formats.helm import write_index
from mirror.oci.names import slug
from mirror.stores.helmdir import (
    MAX_CONFIG,
    chart_config,
    chart_file,
    chart_layers,
    entry_text,
    index_entry,
    with_entry,
)

if TYPE_CHECKING:
    from mirror.serve.store import ServedStore


@dataclass(frozen=True)
class HelmRepo:
    index: bytes  # index.yaml
    files: dict[str, str]  # file name -> blob digest (the chart layer, or its provenance)


def helm_repos(manifest: BundleManifest, store: ServedStore) -> dict[str, HelmRepo]:
    """slug(registry name) -> its static repository, for each Helm registry in the bundle."""
    out: dict[str, HelmRepo] = {}
    for reg in manifest.registries:
        if reg.kind != "helm":
            continue
        where = f"Helm repository {reg.name}"
        charts, files = [], {}
        for art in manifest.artifacts:
            if art.registry != reg.name or art.kind != "chart":
                continue
            doc = store.manifest_doc(art.digest)
            config, _, _ = chart_layers(doc, where)
            if config.size > MAX_CONFIG:
                raise IntegrityError(f"{where}: chart config {config.digest} is too large")
            with store.open_blob(config.digest) as stream:
                meta = chart_config(stream.read(config.size + 1), config.digest, where)
            chart = chart_file(doc, art.digest, meta, where)
            chart = with_entry(chart, entry_text(art), art.ref, where)
            charts.append(index_entry(chart))
            files[chart.filename] = f"sha256:{chart.layer}"
            if chart.prov:
                files[f"{chart.filename}.prov"] = f"sha256:{chart.prov}"
        out[slug(reg.name)] = HelmRepo(write_index(charts, manifest.created), files)
    return out
