"""A static Helm repository (index.yaml + .tgz) as a copy target: import's `--helm-repo-dir`.

It takes Helm OCI charts, from every source the bundle has: a Helm repository's charts and
the Helm OCI charts of OCI registries alike, one entry per chart name and version. A chart
that came from a Helm repository carries that repository's index entry (manifest.json,
`chart.indexEntry`; import hands it over as an annotation), and the entry is written back
with every field but `urls` unchanged. When the same chart version came from a Helm
repository and an OCI registry, the repository's entry wins; an entry is built from the
chart's own Chart.yaml only for a chart no Helm repository supplied.

The engine pushes blobs before manifests and in parallel, so a chart layer arrives before
anyone knows its chart's name: layers are staged by digest in `DIR/.staging`, verified as
they are written, and get their `<name>-<version>.tgz` name only at `commit()`, together
with index.yaml. Until then nothing in DIR changes, so a failed
import leaves the repository as it was. A small record (`.mirror-charts.json`) remembers
which manifest and config digests each .tgz came from, so a second import copies nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from mirror.errors import ConflictError, IntegrityError, UsageError
from mirror.formats import jsondoc
from mirror.formats.helm import ChartVersion, entry_matches, parse_index, write_index
from mirror.oci import mediatypes as mt
from mirror.oci.descriptor import MAX_MANIFEST, Descriptor, check_bytes, parse_manifest
from mirror.settings import Clock
from mirror.streams import COPY_CHUNK, atomic_file, drain, read_capped, verified

if TYPE_CHECKING:
    from mirror.bundle.manifest import ArtifactRecord

ANN_INDEX_ENTRY = "io.mirror.helm.index-entry"  # a Helm repository's entry, as JSON
RECORD = ".mirror-charts.json"
STAGING = ".staging"
MAX_CONFIG = 1024 * 1024
MAX_INDEX = 256 * 1024 * 1024  # an index.yaml already in the folder, as discovery caps one
MAX_RECORD = 64 * 1024 * 1024  # .mirror-charts.json: a few hundred bytes per chart
_FILE_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")  # fullmatch: `$` passes a final "\n"
_LAYER_SUFFIX = {mt.HELM_CHART: ".tgz", mt.HELM_PROV: ".prov"}
INDEX = "index.yaml"  # the repository's index, beside the charts


@dataclass(frozen=True)
class ChartFile:
    """A chart version as this folder knows it: its file and the digests it came from."""

    name: str
    version: str
    filename: str
    layer: str
    config: str
    manifest: str
    prov: str | None = None
    created: str | None = None
    metadata: Mapping[str, Any] | None = None
    entry: Mapping[str, Any] | None = None  # its Helm repository's index entry, if any
    origin: str = ""  # the bundle's ref, to choose between copies of one chart

    def record(self) -> dict[str, Any]:
        out = {"name": self.name, "version": self.version, "layer": self.layer}
        out.update(config=self.config, manifest=self.manifest)
        if self.prov:
            out["prov"] = self.prov
        return out


class HelmDirTarget:
    """Charts in, a Helm repository out; merges with an index.yaml already in the folder."""

    def __init__(self, folder: Path, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()  # index.yaml's `generated`
        self.folder = folder
        self.where = f"helm folder {folder}"
        self._lock = threading.RLock()  # commit and tag hash files while holding it
        self._small: dict[str, bytes] = {}  # manifests and configs pushed in this run
        self._staged: dict[str, Path] = {}  # layer digest -> verified file in .staging
        self._pending: dict[tuple[str, str], ChartFile] = {}
        self._learned: dict[str, ChartFile] = {}  # complete already; only the record is new
        self._hashes: dict[tuple[str, int, int], str] = {}
        self._index = self._read_index()  # (name, version) -> (ChartVersion, url)
        self._record = self._read_record()  # filename -> ChartFile

    # ------------------------------------------------------------------ Target protocol

    def exists(self, desc: Descriptor) -> bool:
        if desc.media_type in _LAYER_SUFFIX:
            return self._has_layer(desc)
        with self._lock:
            if desc.digest in self._small:
                return True
        return any(
            desc.digest in (c.manifest, c.config) and self._complete(c.name, c.version, c.layer)
            for c in self._record.values()
        )

    def push(self, desc: Descriptor, stream: IO[bytes]) -> None:
        if desc.media_type in _LAYER_SUFFIX:
            self._stage(desc, stream)
        elif desc.media_type == mt.HELM_CONFIG or desc.media_type in mt.MANIFESTS:
            self._keep_small(desc, stream)
        else:
            raise UsageError(
                f"{self.where}: only Helm charts go to a Helm folder, not {desc.media_type}"
            )

    def tag(self, desc: Descriptor, ref: str, annotations: Mapping[str, str]) -> None:
        """Name the chart now (conflicts show before anything is final); move files at commit."""
        del ref  # the file name comes from the chart itself
        known = [c for c in self._record.values() if c.manifest == desc.digest]
        if known and self._complete(known[0].name, known[0].version, known[0].layer):
            return
        chart = self._chart_of(desc)
        entry = annotations.get(ANN_INDEX_ENTRY)
        chart = with_entry(chart, entry, annotations.get(mt.ANN_REF_NAME, ""), self.where)
        if self._complete(chart.name, chart.version, chart.layer):
            with self._lock:  # the same chart, pushed before under another manifest
                self._learned[chart.filename] = chart
            return
        with self._lock:
            self._check_conflict(chart)
            other = self._pending.get((chart.name, chart.version))
            self._pending[(chart.name, chart.version)] = _preferred(other, chart)

    def commit(self) -> None:
        """Charts into place, then index.yaml and the record, each written atomically."""
        with self._lock:
            pending = sorted(self._pending.values(), key=lambda c: (c.name, c.version))
            for chart in pending:
                self._place(chart)
            if pending or not (self.folder / INDEX).exists():
                self._write_index(pending)
            for chart in [*self._learned.values(), *pending]:
                self._record[chart.filename] = chart
            if pending or self._learned:
                self._write_record()
            self._pending.clear()
            self._learned.clear()
            self._clean_staging()

    # ------------------------------------------------------------------ blobs

    def _has_layer(self, desc: Descriptor) -> bool:
        with self._lock:
            if desc.digest in self._staged:
                return True
        if any(
            cv.digest == desc.hex and self._file_digest(url) == desc.hex
            for cv, url in self._index.values()
        ) or any(
            c.layer == desc.hex and self._complete(c.name, c.version, c.layer)
            for c in self._record.values()
        ):
            return True
        leftover = self._staging_path(desc)  # a complete layer from an interrupted import
        if leftover.is_file() and self._file_digest(leftover) == desc.hex:
            with self._lock:
                self._staged[desc.digest] = leftover
            return True
        return False

    def _stage(self, desc: Descriptor, stream: IO[bytes]) -> None:
        path = self._staging_path(desc)
        with atomic_file(path) as fh:
            drain(verified(stream, desc, f"{self.where}: {desc.digest}"), fh)
        with self._lock:
            self._staged[desc.digest] = path

    def _staging_path(self, desc: Descriptor) -> Path:
        return self.folder / STAGING / f"{desc.hex}{_LAYER_SUFFIX[desc.media_type]}"

    def _keep_small(self, desc: Descriptor, stream: IO[bytes]) -> None:
        cap = MAX_CONFIG if desc.media_type == mt.HELM_CONFIG else MAX_MANIFEST
        if desc.size > cap:
            raise IntegrityError(f"{self.where}: {desc.digest} is over {cap} bytes")
        data = stream.read(desc.size + 1)
        check_bytes(desc, data, self.where)
        if desc.media_type in mt.MANIFESTS:
            chart_layers(parse_manifest(data, desc.digest), self.where)
        with self._lock:
            self._small[desc.digest] = data

    # ------------------------------------------------------------------ charts

    def _chart_of(self, desc: Descriptor) -> ChartFile:
        """Name, version and files of a chart manifest pushed (or recorded) here."""
        data = self._small.get(desc.digest)
        if data is None:
            raise UsageError(f"{self.where}: {desc.digest} is not a chart pushed here")
        doc = parse_manifest(data, desc.digest)
        config, _, _ = chart_layers(doc, self.where)
        return chart_file(doc, desc.digest, self._config(config), self.where)

    def _config(self, config: Descriptor) -> dict[str, Any]:
        data = self._small.get(config.digest)
        if data is None:  # the config was here already: its chart is in the record
            for c in self._record.values():
                if c.config == config.digest:
                    return {"name": c.name, "version": c.version}
            raise UsageError(f"{self.where}: chart config {config.digest} never arrived")
        return chart_config(data, config.digest, self.where)

    def _check_conflict(self, chart: ChartFile) -> None:
        key = (chart.name, chart.version)
        other = self._pending.get(key)
        if other is not None and other.layer != chart.layer:
            raise ConflictError(f"{self.where}: two different charts {chart.name} {chart.version}")
        old = self._index.get(key)
        if old is not None:
            have = old[0].digest or self._file_digest(old[1])
            if have is not None and have != chart.layer:
                raise ConflictError(
                    f"{self.where}: {chart.name} {chart.version} is already there with "
                    f"sha256 {have[:12]}, the bundle has {chart.layer[:12]}; nothing was changed"
                )

    def _place(self, chart: ChartFile) -> None:
        final = self.folder / chart.filename
        staged = self._staged.get(f"sha256:{chart.layer}")
        if staged is not None and staged.exists():
            os.replace(staged, final)
        elif self._file_digest(final) != chart.layer:
            raise IntegrityError(f"{self.where}: the layer of {chart.filename} never arrived")
        if chart.prov:
            prov = self._staged.get(f"sha256:{chart.prov}")
            if prov is not None and prov.exists():
                os.replace(prov, self.folder / f"{chart.filename}.prov")

    def _complete(self, name: str, version: str, layer: str) -> bool:
        """Listed in index.yaml with this digest, and the file it names holds those bytes."""
        entry = self._index.get((name, version))
        if entry is None or entry[0].digest not in (None, layer):
            return False
        return self._file_digest(entry[1]) == layer

    # ------------------------------------------------------------------ files

    def _read_index(self) -> dict[tuple[str, str], tuple[ChartVersion, str]]:
        path = self.folder / INDEX
        if not path.is_file():
            return {}
        try:
            data = read_capped(path, MAX_INDEX)
        except (OSError, ValueError) as exc:
            raise UsageError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None
        out = {}
        # The urls as written: resolved against this folder, `/charts/x.tgz` and
        # `../shared/x.tgz` came back as file:// paths of the importing host.
        for cv in parse_index(data, None, f"{self.where}: index.yaml"):
            url = cv.urls[0] if cv.urls else f"{cv.name}-{cv.version}.tgz"
            out[(cv.name, cv.version)] = (cv, url)
        return out

    def _write_index(self, pending: list[ChartFile]) -> None:
        charts = dict(self._index)
        for c in pending:
            charts[(c.name, c.version)] = index_entry(c)
        with atomic_file(self.folder / INDEX) as fh:
            fh.write(write_index(list(charts.values()), self.clock.stamp()))
        self._index = charts

    def _read_record(self) -> dict[str, ChartFile]:
        path = self.folder / RECORD
        try:
            doc = jsondoc.loads(read_capped(path, MAX_RECORD)) if path.is_file() else {}
            return {
                name: ChartFile(
                    name=str(c["name"]),
                    version=str(c["version"]),
                    filename=name,
                    layer=str(c["layer"]),
                    config=str(c["config"]),
                    manifest=str(c["manifest"]),
                    prov=c.get("prov"),
                )
                for name, c in (doc.get("charts") or {}).items()
                if _FILE_PART.fullmatch(name)
            }
        except (ValueError, KeyError, TypeError, AttributeError):
            return {}  # only an optimisation: without it, charts are compared by content

    def _write_record(self) -> None:
        doc = {"charts": {k: v.record() for k, v in sorted(self._record.items())}}
        with atomic_file(self.folder / RECORD) as fh:
            fh.write(json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n")

    def _clean_staging(self) -> None:
        for path in self._staged.values():
            path.unlink(missing_ok=True)
        self._staged.clear()
        self._small.clear()
        with contextlib.suppress(OSError):  # absent, or holds another import's files
            (self.folder / STAGING).rmdir()

    def _file_digest(self, ref: str | Path) -> str | None:
        """sha256 hex of a local file in the folder (cached by size and mtime), or None."""
        path = ref if isinstance(ref, Path) else self.folder / ref
        if isinstance(ref, str) and ("://" in ref or ".." in Path(ref).parts or ref[:1] == "/"):
            return None  # a url an index keeps as written, not a file of this folder
        try:
            st = path.stat()
        except OSError:
            return None
        key = (str(path), st.st_size, st.st_mtime_ns)
        with self._lock:
            known = self._hashes.get(key)
        if known is None:
            h = hashlib.sha256()
            with path.open("rb") as fh:
                while chunk := fh.read(COPY_CHUNK):
                    h.update(chunk)
            known = h.hexdigest()
            with self._lock:
                self._hashes[key] = known
        return known


def chart_file(doc: dict[str, Any], digest: str, meta: Mapping[str, Any], where: str) -> ChartFile:
    """A Helm OCI chart manifest and its config as a file of a static Helm repository.

    Shared by `--helm-repo-dir` and `mirror serve`, so both name and index charts alike.
    """
    config, layer, prov = chart_layers(doc, where)
    name, version = str(meta.get("name", "")), str(meta.get("version", ""))
    if not (_FILE_PART.fullmatch(name) and _FILE_PART.fullmatch(version)) or ".." in name + version:
        raise IntegrityError(f"{where}: unsafe chart name or version {name!r} {version!r}")
    annotations = doc.get("annotations") or {}
    return ChartFile(
        name=name,
        version=version,
        filename=f"{name}-{version}.tgz",
        layer=layer.hex,
        config=config.digest,
        manifest=digest,
        prov=prov.hex if prov else None,
        created=annotations.get("org.opencontainers.image.created"),
        metadata=meta,
    )


def chart_config(data: bytes, digest: str, where: str) -> dict[str, Any]:
    """A chart's config blob (its Chart.yaml as JSON), or an IntegrityError."""
    try:
        meta = jsondoc.loads(data)
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise IntegrityError(f"{where}: chart config {digest} is not JSON")
    return meta


def index_entry(chart: ChartFile) -> tuple[ChartVersion, str]:
    """What `write_index` takes for one chart stored beside index.yaml: its Helm repository's
    own entry when it has one (only `urls` changes), else one built from Chart.yaml."""
    c = chart
    cv = ChartVersion(c.name, c.version, (), c.layer, c.created, c.metadata or {}, c.entry or {})
    return cv, c.filename


def with_entry(chart: ChartFile, text: str | None, origin: str, where: str) -> ChartFile:
    """The chart with its Helm repository's entry (JSON), which must describe this very chart:
    its name, version and digest; `origin` is its ref in the bundle."""
    if text is None:
        return dataclasses.replace(chart, origin=origin)
    try:
        entry = jsondoc.loads(text.encode())
    except ValueError:
        entry = None
    if not isinstance(entry, dict) or not entry_matches(
        entry, chart.name, chart.version, chart.layer
    ):
        raise IntegrityError(
            f"{where}: the index entry of {chart.name} {chart.version} does not describe that chart"
        )
    return dataclasses.replace(chart, entry=entry, origin=origin)


def entry_text(art: ArtifactRecord) -> str | None:
    """A chart artifact's Helm repository entry as JSON, as import hands it over; or None."""
    if art.chart is None or art.chart.index_entry is None:
        return None
    return json.dumps(art.chart.index_entry, sort_keys=True)


def chart_annotations(art: ArtifactRecord) -> dict[str, str]:
    """What import tells the Helm folder of a chart: its bundle ref, its repository's entry."""
    out = {mt.ANN_REF_NAME: art.ref}
    text = entry_text(art)
    if text is not None:
        out[ANN_INDEX_ENTRY] = text
    return out


def _preferred(old: ChartFile | None, new: ChartFile) -> ChartFile:
    """One chart version from two sources: a Helm repository's entry wins, then the first ref
    (so the choice does not depend on which copy finished first)."""
    if old is None:
        return new
    return min(old, new, key=lambda c: (c.entry is None, c.origin))


def chart_layers(
    doc: dict[str, Any], where: str
) -> tuple[Descriptor, Descriptor, Descriptor | None]:
    """(config, chart layer, provenance) of a Helm OCI chart manifest; anything else is refused."""
    config = Descriptor.from_json(doc.get("config") or {})
    layers = [Descriptor.from_json(x) for x in doc.get("layers") or []]
    charts = [x for x in layers if x.media_type == mt.HELM_CHART]
    provs = [x for x in layers if x.media_type == mt.HELM_PROV]
    if config.media_type != mt.HELM_CONFIG or len(charts) != 1 or len(provs) + 1 != len(layers):
        raise UsageError(f"{where}: only Helm charts go to a Helm folder; got another artifact")
    return config, charts[0], provs[0] if provs else None
