"""Pack and chart layers read once, as they land: an engine hook of the export's copy.

A pack's tarball says what it depends on (pack.json) and which images it runs
(values.yaml); a chart's says which images it runs (annotations). Reading each layer on the
copy worker that just stored it, while other blobs still download, means pack dependencies
and the image closure never fetch or read it again.
"""

from __future__ import annotations

import threading

from mirror.discovery.images import LayerScan
from mirror.errors import UsageError
from mirror.formats.pack import PackInfo, parse_pack_json
from mirror.oci import mediatypes as mt
from mirror.oci.descriptor import Descriptor
from mirror.stores.interface import Source, Target

MAX_PACK_LAYER = 64 * 1024 * 1024  # pack archives are small; a bigger "pack" is not parsed
_CONTENT = (mt.OCI_LAYER_TAR, mt.HELM_CHART)  # layers whose archives say what they need


class ContentScan:
    """`packs`: pack.json by the pack layer's digest; `scans`: images named, by layer digest."""

    def __init__(self) -> None:
        self.packs: dict[str, PackInfo] = {}
        self.scans: dict[str, LayerScan] = {}
        self._lock = threading.Lock()

    def landed(self, desc: Descriptor, dst: Target) -> None:
        if desc.media_type not in _CONTENT or desc.size > MAX_PACK_LAYER:
            return
        if not isinstance(dst, Source):  # a store that cannot be read back: discovery reads
            return
        with dst.fetch(desc) as stream:
            data = stream.read()  # at most MAX_PACK_LAYER, verified at EOF
        scan, pack_json = LayerScan.read(data, desc.media_type)  # one walk for both needs
        info = _pack_info(pack_json, desc.digest) if pack_json is not None else None
        with self._lock:
            if info is not None:
                self.packs[desc.digest] = info
            self.scans[desc.digest] = scan


def _pack_info(data: bytes, where: str) -> PackInfo | None:
    """A malformed pack.json gives None: a pack's metadata is a label, not a gate."""
    try:
        return parse_pack_json(data, where)[0]
    except UsageError:
        return None
