"""The bundle as a store: staged while export writes it, sealed when import reads it.

Staging: blobs land in the export's verified cache and refs are collected; nothing is final
until `commit()`, which writes manifest.json (signed), the OCI layout's index.json and every
blob into the archive (or its parts), then FILE.sha256 and FILE.sig. Sealed: blobs are read
straight out of the archive, never extracted. Each read seeks to the member's zstd frame
through the table of contents and is checked against the signed manifest's sha256 and size
as it streams, so a lying table of contents can only cause a refusal.
"""

from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from mirror.bundle.reader import SMALL_MEMBER, BundleReader
from mirror.cache import BlobCache
from mirror.errors import IntegrityError, MirrorError, OperationError, UsageError
from mirror.oci import mediatypes as mt
from mirror.oci.descriptor import MAX_MANIFEST, Descriptor, check_bytes
from mirror.streams import Staged, VerifyingReader, free_bytes, sweep_stale

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

    from mirror.bundle.manifest import BundleManifest
    from mirror.bundle.writer import Member
    from mirror.copy import Observer


@dataclass(frozen=True)
class BundleFile:
    """Where and how `commit()` writes the bundle."""

    output: Path
    key: EllipticCurvePrivateKey | None
    observer: Observer
    split_size: int | None = None  # FILE.001, FILE.002, ... of at most this many bytes
    mtime: int = 0


class BundleStore:
    """The bundle, read and written. `staging` (export) and `sealed` (import, verify, serve)
    are the two ends of one store: what export commits is what import reads."""

    def __init__(
        self,
        *,
        cache: BlobCache | None = None,
        held: Collection[str] = (),
        file: BundleFile | None = None,
        reader: BundleReader | None = None,
        manifest: BundleManifest | None = None,
    ) -> None:
        self.cache = cache
        self.held = frozenset(held)
        self.file = file
        self.reader = reader
        self.where = str(reader.path) if reader is not None else "bundle"
        self._refs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._members = manifest.member_map() if manifest is not None else {}
        self._external = {e.digest for e in manifest.external} if manifest is not None else set()
        self._description: tuple[BundleManifest, Sequence[Member]] | None = None

    @classmethod
    def staging(
        cls, cache: BlobCache, held: Collection[str] = (), file: BundleFile | None = None
    ) -> BundleStore:
        """A bundle being written: blobs staged in `cache`; `held`, for a delta (`export
        --since`), are blobs the far side already holds. They count as present, so they are
        neither fetched nor packed; manifests are always packed, as import walks every graph."""
        return cls(cache=cache, held=held, file=file)

    @classmethod
    def sealed(cls, reader: BundleReader, manifest: BundleManifest) -> BundleStore:
        """A written bundle, read in place against its signed manifest."""
        return cls(reader=reader, manifest=manifest)

    # -- read -----------------------------------------------------------------------------

    @contextmanager
    def fetch(self, desc: Descriptor) -> Iterator[IO[bytes]]:
        if self.reader is None:  # staging: what landed in the cache, checked again
            with self._staged().open(desc) as fh:
                yield VerifyingReader(fh, desc, f"cache {desc.digest}")  # type: ignore[misc]
            return
        reason = self.lacks(desc)
        if reason is not None:
            raise OperationError(f"{desc.digest}: {reason}")
        path, rec = self._member(desc)
        if rec.size <= SMALL_MEMBER:  # a config, most often: the reader's small-member cache
            yield io.BytesIO(self.reader.read_small(path, rec.sha256, rec.size))
            return
        with self.reader.open_member(path, rec.sha256, rec.size) as stream:
            yield stream  # type: ignore[misc]

    def fetch_manifest(self, desc: Descriptor) -> bytes:
        if desc.size > MAX_MANIFEST:
            raise IntegrityError(f"{self.where}: manifest {desc.digest} is too large")
        if self.reader is None:
            data = self._staged().manifest(desc)
            if data is None:
                raise OperationError(f"{self.where}: {desc.digest} is not staged")
            return data
        path, rec = self._member(desc)
        data = self.reader.read_small(path, rec.sha256, rec.size)
        check_bytes(desc, data, self.where)
        return data

    def descriptor(self, digest: str, media_type: str) -> Descriptor:
        """A root's descriptor, sized from the signed member list."""
        rec = self._members.get(_blob_path(digest))
        if rec is None:
            raise IntegrityError(f"{self.where}: {digest} is not in the bundle")
        return Descriptor(media_type, digest, rec.size)

    def lacks(self, desc: Descriptor) -> str | None:
        """A blob a delta leaves out: the copy engine checks a donor holds it before writing."""
        if desc.digest in self._external and _blob_path(desc.digest) not in self._members:
            return "not carried by this delta bundle: import the bundle its receipt came from first"
        return None

    def _member(self, desc: Descriptor) -> tuple[str, Any]:
        path = _blob_path(desc.digest)
        rec = self._members.get(path)
        if rec is None or rec.sha256 != desc.hex or rec.size != desc.size:
            raise IntegrityError(f"{self.where}: {path} is not in the signed manifest as named")
        return path, rec

    # -- write (staging) ----------------------------------------------------------------

    def _staged(self) -> BlobCache:
        if self.cache is None:
            raise OperationError(f"{self.where}: a sealed bundle is read-only")
        return self.cache

    def external(self, desc: Descriptor) -> bool:
        return not desc.is_manifest and desc.digest in self.held

    def exists(self, desc: Descriptor) -> bool:
        return self.external(desc) or self._staged().has(desc)

    def push(self, desc: Descriptor, stream: IO[bytes]) -> None:
        self._staged().put(desc, stream)

    def tag(self, desc: Descriptor, ref: str, annotations: Mapping[str, str]) -> None:
        entry = desc.to_json()
        entry["annotations"] = {**dict(annotations), mt.ANN_REF_NAME: ref}
        with self._lock:
            old = self._refs.get(ref)
            if old is not None and old["digest"] != desc.digest:
                raise UsageError(f"two artifacts claim the bundle reference {ref!r}")
            self._refs[ref] = entry

    def describe(self, manifest: BundleManifest, members: Sequence[Member]) -> None:
        """What `commit()` will write: the manifest to sign and the members it lists."""
        self._description = (manifest, members)

    def commit(self) -> None:
        """Sign manifest.json, write the archive atomically, then FILE.sha256 and FILE.sig.

        Blobs are already durable in the cache; export commits once, after every round,
        when the bundle is described. Until then there is nothing to write.
        """
        if self._description is None or self.file is None:
            return
        from mirror.bundle.writer import write_bundle
        from mirror.signing import sign_bytes, write_detached

        manifest, members = self._description
        out = self.file
        data = manifest.to_bytes()
        sweep_stale(out.output.resolve().parent, out.output.name)  # a killed run's temp files
        _check_space(out.output, members)
        signature = sign_bytes(out.key, data) if out.key is not None else None
        out.observer.planned(len(members), sum(m.size for m in members), "pack")
        try:  # FILE (or its parts) and FILE.sha256 and FILE.sig appear together
            with Staged().publishing(lock=True) as staged:  # another export to FILE waits
                written = write_bundle(
                    out.output, data, signature, members, mtime=out.mtime,
                    observer=out.observer, split_size=out.split_size, described=manifest,
                    staged=staged,
                )  # fmt: skip
                write_detached(written.path, written.sha256, out.key, staged)
        except IntegrityError as exc:
            raise _forget_corrupt(exc, self._staged()) from None

    def index(self) -> bytes:
        """The OCI layout's index.json: every ref this bundle names, sorted."""
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


def _blob_path(digest: str) -> str:
    return "blobs/sha256/" + digest.split(":", 1)[-1]
