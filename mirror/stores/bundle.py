"""The bundle's OCI layout as a target: blobs staged in the cache, index.json at commit.

Nothing is final until the export writes the archive; `index()` is what `commit` would
write, and the export signs it together with the blobs it names.
"""

from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from mirror.cache import BlobCache
from mirror.errors import IntegrityError, MirrorError, OperationError, UsageError
from mirror.oci import mediatypes as mt
from mirror.oci.descriptor import Descriptor
from mirror.streams import free_bytes, sweep_stale

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

    from mirror.bundle.manifest import BundleManifest
    from mirror.bundle.writer import Member
    from mirror.copy import Observer
    from mirror.formats.pack import PackInfo
    from mirror.sources.images import LayerScan

MAX_PACK_LAYER = 64 * 1024 * 1024  # pack archives are small; a bigger "pack" is not parsed
_CONTENT = (mt.OCI_LAYER_TAR, mt.HELM_CHART)  # layers whose archives say what they need


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
        self.scans: dict[str, LayerScan] = {}  # images named, by pack or chart layer digest

    def external(self, desc: Descriptor) -> bool:
        return not desc.is_manifest and desc.digest in self.held

    def exists(self, desc: Descriptor) -> bool:
        return self.external(desc) or self.cache.has(desc)

    def push(self, desc: Descriptor, stream: IO[bytes]) -> None:
        self.cache.put(desc, stream)
        if desc.media_type in _CONTENT and desc.size <= MAX_PACK_LAYER:
            self._read_content(desc)

    def _read_content(self, desc: Descriptor) -> None:
        """A pack's or chart's tarball, read once, now, on this copy worker while other
        blobs still download: its pack.json, and the images it names."""
        from mirror.formats.pack import read_pack_json_from_archive
        from mirror.sources.images import LayerScan

        data = self.cache.path(desc.digest).read_bytes()  # at most MAX_PACK_LAYER
        info = None
        if desc.media_type == mt.OCI_LAYER_TAR:
            info = read_pack_json_from_archive(io.BytesIO(data), desc.digest)
        scan = LayerScan.of(data, desc.media_type)
        with self._lock:
            if info is not None:
                self.packs[desc.digest] = info
            self.scans[desc.digest] = scan

    def tag(self, desc: Descriptor, ref: str, annotations: Mapping[str, str]) -> None:
        entry = desc.to_json()
        entry["annotations"] = {**dict(annotations), mt.ANN_REF_NAME: ref}
        with self._lock:
            old = self._refs.get(ref)
            if old is not None and old["digest"] != desc.digest:
                raise UsageError(f"two artifacts claim the bundle reference {ref!r}")
            self._refs[ref] = entry

    def commit(self) -> None:
        """After each copy round: blobs are already durable in the cache; `seal` writes the
        archive once every round is done."""

    def seal(
        self,
        output: Path,
        manifest: BundleManifest,
        members: Sequence[Member],
        *,
        key: EllipticCurvePrivateKey | None,
        observer: Observer,
        split_size: int | None,
        mtime: int,
    ) -> None:
        """Sign manifest.json, write the archive atomically, then FILE.sha256 and FILE.sig."""
        from mirror.bundle.writer import write_bundle
        from mirror.signing import sign_bytes, write_detached

        data = manifest.to_bytes()
        sweep_stale(output.resolve().parent, output.name)  # a killed run's temp files
        _check_space(output, members)
        signature = sign_bytes(key, data) if key is not None else None
        observer.planned(len(members), sum(m.size for m in members))
        try:
            written = write_bundle(
                output, data, signature, members, mtime=mtime, observer=observer,
                split_size=split_size,
            )  # fmt: skip
        except IntegrityError as exc:
            raise _forget_corrupt(exc, self.cache) from None
        write_detached(written.path, written.sha256, key)

    def index(self) -> bytes:
        doc = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [self._refs[k] for k in sorted(self._refs)],
        }
        return json.dumps(doc, sort_keys=True, indent=1).encode() + b"\n"


def _forget_corrupt(exc: IntegrityError, cache: BlobCache) -> MirrorError:
    """A cache blob changed on disk since it was verified: drop it so a rerun refetches.

    Our own disk failed, not the source: an operation failure (exit 1), not exit 3.
    """
    found = re.search(r"blobs/sha256/([a-f0-9]{64})", str(exc))
    if found is None:
        return exc
    cache.drop("sha256:" + found.group(1))
    return OperationError(f"{exc} (a corrupt cache entry; it was removed, run again)")


def _check_space(output: Path, members: Sequence[Member]) -> None:
    """Refuse early rather than fail at 90%: the archive can't exceed its members by much."""
    need = sum(m.size for m in members) // 50 * 51 + (1 << 20)
    have = free_bytes(output.resolve().parent)
    if have < need:
        raise OperationError(
            f"not enough space for {output}: need up to {need >> 20} MiB, {have >> 20} MiB free"
        )
