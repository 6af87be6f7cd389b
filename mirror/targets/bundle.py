"""The bundle's OCI layout as a target: blobs staged in the cache, index.json at commit.

Nothing is final until the export writes the archive; `index()` is what `commit` would
write, and the export signs it together with the blobs it names.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Collection, Mapping
from typing import IO, TYPE_CHECKING, Any

from mirror.cache import BlobCache
from mirror.errors import UsageError
from mirror.oci import mediatypes as mt
from mirror.oci.descriptor import Descriptor

if TYPE_CHECKING:
    from mirror.formats.pack import PackInfo

MAX_PACK_LAYER = 64 * 1024 * 1024  # pack archives are small; a bigger "pack" is not parsed


class BundleTarget:
    """`held`: for a delta (`export --since`), blobs the far side already holds.

    They count as present, so they are neither fetched nor packed; manifests are always
    packed, because import walks every graph from the bundle.
    """

    def __init__(self, cache: BlobCache, held: Collection[str] = ()) -> None:
        self.cache = cache
        self.held = frozenset(held)
        self.where = "bundle"
        self._refs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.packs: dict[str, PackInfo] = {}  # pack.json by the pack layer's digest

    def external(self, desc: Descriptor) -> bool:
        return not desc.is_manifest and desc.digest in self.held

    def exists(self, desc: Descriptor) -> bool:
        return self.external(desc) or self.cache.has(desc)

    def push(self, desc: Descriptor, stream: IO[bytes]) -> None:
        self.cache.put(desc, stream)
        if desc.media_type == mt.OCI_LAYER_TAR and desc.size <= MAX_PACK_LAYER:
            # A pack's tarball: read its pack.json now, on this copy worker, while other
            # blobs are still downloading, instead of on the main thread afterwards.
            from mirror.formats.pack import read_pack_json_from_archive

            with self.cache.path(desc.digest).open("rb") as fh:
                info = read_pack_json_from_archive(fh, desc.digest)
            if info is not None:
                with self._lock:
                    self.packs[desc.digest] = info

    def tag(self, desc: Descriptor, ref: str, annotations: Mapping[str, str]) -> None:
        entry = desc.to_json()
        entry["annotations"] = {**dict(annotations), mt.ANN_REF_NAME: ref}
        with self._lock:
            old = self._refs.get(ref)
            if old is not None and old["digest"] != desc.digest:
                raise UsageError(f"two artifacts claim the bundle reference {ref!r}")
            self._refs[ref] = entry

    def commit(self) -> None:
        """Blobs are already durable in the cache; the archive is written by the export."""

    def index(self) -> bytes:
        doc = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [self._refs[k] for k in sorted(self._refs)],
        }
        return json.dumps(doc, sort_keys=True, indent=1).encode() + b"\n"
