"""Pack and chart layers read once, as they land: an engine hook of the export's copy.

A pack's tarball says what it depends on (pack.json) and which images it runs
(values.yaml); a chart's says which images it runs (annotations). Reading each layer on the
copy worker that just stored it, while other blobs still download, means pack dependencies
and the image closure never fetch or read it again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from mirror.copy import Graph, parallel_map
from mirror.discovery.images import LayerScan
from mirror.errors import UsageError
from mirror.formats.pack import PackInfo, parse_pack_json
from mirror.oci import mediatypes as mt
from mirror.oci.descriptor import Descriptor
from mirror.stores.interface import Source, Target

MAX_PACK_LAYER = 64 * 1024 * 1024  # pack archives are small; a bigger "pack" is not parsed
_CONTENT = (mt.OCI_LAYER_TAR, mt.HELM_CHART)  # layers whose archives say what they need
Keep = Callable[[Descriptor, bytes], None]  # who else wants a layer's bytes (--no-cache)


class ContentScan:
    """`packs`: pack.json by the pack layer's digest; `scans`: images named, by layer digest."""

    def __init__(self) -> None:
        self.packs: dict[str, PackInfo] = {}
        self.scans: dict[str, LayerScan] = {}
        self._lock = threading.Lock()

    def landed(self, desc: Descriptor, dst: Target) -> None:
        if isinstance(dst, Source):  # one that cannot be read back leaves it to discovery
            self._read(desc, dst)

    @staticmethod
    def reads(desc: Descriptor) -> bool:
        """Whether this layer is one the scan reads (a pack's or a chart's archive)."""
        return desc.media_type in _CONTENT and desc.size <= MAX_PACK_LAYER

    def read_planned(self, graphs: Sequence[Graph], *, jobs: int, keep: Keep | None) -> None:
        """A plan's graphs: nothing landed, so read each pack and chart layer from its
        source, once, in parallel, as the copy workers would have; `keep` gets the bytes."""
        todo: dict[str, tuple[Descriptor, Source]] = {}
        for g in graphs:
            for b in g.blobs:
                if self.reads(b) and b.digest not in self.scans:
                    todo.setdefault(b.digest, (b, g.task.src))
        reads = list(todo.values())
        parallel_map(jobs, lambda item: self._read(item[0], item[1], keep), reads, "scan")

    def _read(self, desc: Descriptor, src: Source, keep: Keep | None = None) -> None:
        if not self.reads(desc):
            return
        with src.fetch(desc) as stream:
            data = stream.read()  # at most MAX_PACK_LAYER, verified at EOF
        if keep is not None:
            keep(desc, data)
        scan, pack_json = LayerScan.read(data, desc.media_type)  # one walk for both needs
        info = _pack_info(pack_json, desc.digest) if pack_json is not None else None
        with self._lock:
            if info is not None:
                self.packs[desc.digest] = info
            self.scans[desc.digest] = scan


def _pack_info(data: bytes, where: str) -> PackInfo | None:
    """A malformed pack.json gives None: a pack's metadata is a label, not a gate."""
    try:
        return parse_pack_json(data, where, warnings=False)[0]
    except UsageError:
        return None
