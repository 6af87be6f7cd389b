"""Verify a bundle fail-closed, in one streaming pass, extracting nothing.

The compressed bytes are hashed for FILE.sig in the same pass that decompresses them. Every
size the archive claims is checked against the signed manifest before it is read, and nothing
is read past a declared size, so a zstd bomb stops at the size the signer wrote down.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from mirror.bundle import layout, tarfmt
from mirror.bundle.manifest import (
    MANIFEST_PATH,
    SIGNATURE_PATH,
    BundleManifest,
    MemberRecord,
    parse_manifest,
)
from mirror.bundle.parts import open_bundle
from mirror.bundle.reader import BundleReader, decompressing, read_head_entries
from mirror.bundle.toc import TocEntry
from mirror.errors import (
    FipsError,
    IntegrityError,
    OperationError,
    UnsignedError,
    VerificationError,
)
from mirror.oci.descriptor import Descriptor
from mirror.streams import Readable

if TYPE_CHECKING:
    from mirror.stores.interface import Source

if TYPE_CHECKING:  # the writer, and cryptography (for an unsigned bundle), are not needed
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

    from mirror.bundle.writer import ByteObserver as Observer

CHUNK = 1024 * 1024
MAX_TRAILER = 1024 * 1024  # zeros tar pads its last record with; anything beyond is hostile


@dataclass(frozen=True)
class VerifyResult:
    artifacts: int
    blobs: int
    bytes: int
    signer: str | None
    fips: bool
    images: int = 0
    manifest_digest: str = ""  # sha256 of the manifest.json bytes this pass read
    file_sha256: str = ""  # bare hex of the whole file, hashed in the same pass
    # Needed by a bundled pack or chart, not carried, skipped on purpose (`--no-images`):
    # the contract's `missingImages`, which only fails the bundle when not skipped.
    missing_images: tuple[str, ...] = ()
    signed: bool = False  # manifest.json.sig is there (checked only with a key)


class MissingImagesError(VerificationError):
    """The bundle's packs or charts need images that it neither carries nor skipped."""

    def __init__(self, missing: list[str], message: str) -> None:
        super().__init__(message)
        self.missing = missing


class _HashingFile:
    """The raw file, hashed as the decompressor pulls it: FILE.sig costs no second read."""

    def __init__(self, raw: BinaryIO, observer: Observer | None) -> None:
        self._raw = raw
        self._observer = observer
        self.hash = hashlib.sha256()

    def read(self, n: int = -1, /) -> bytes:
        data = self._raw.read(n)
        self.hash.update(data)
        if self._observer is not None:  # progress in file bytes: the bar's total is the file
            self._observer.advance(len(data))
        return data

    def drain(self) -> None:
        while chunk := self._raw.read(CHUNK):
            self.hash.update(chunk)


def check_policy(pub: EllipticCurvePublicKey | None, *, allow_unsigned: bool, fips: bool) -> None:
    if fips and allow_unsigned:
        raise FipsError("--allow-unsigned is refused in FIPS mode: a FIPS bundle must be signed")
    if pub is None and not allow_unsigned:
        raise UnsignedError("no public key given: pass --key PUB (or --allow-unsigned)")


def check_manifest(
    data: bytes,
    signature: bytes | None,
    pub: EllipticCurvePublicKey | None,
    *,
    allow_unsigned: bool,
    fips: bool,
    schema_checked: bool = False,
) -> tuple[BundleManifest, str | None]:
    """Steps 2 and 3: the manifest's signature, then its schema, then the FIPS rule.

    `schema_checked`: these very bytes passed the schema before (bundle/memo.py).
    """
    signer: str | None = None
    if signature is None:
        if not allow_unsigned:
            raise UnsignedError(
                f"{MANIFEST_PATH}: the bundle is not signed; "
                "pass --allow-unsigned to accept it on its digests alone"
            )
    elif pub is not None:
        from mirror import keys, signing  # cryptography: imported only once a key is in play

        signing.verify_bytes(pub, data, signature, MANIFEST_PATH)
        signer = keys.fingerprint(pub)
    manifest = parse_manifest(data, validate=not schema_checked)
    if signer is not None and manifest.signer not in (None, signer):
        raise VerificationError(
            f"{MANIFEST_PATH}: claims signer {manifest.signer[:16]}, "
            f"but key {signer[:16]} signed it"
        )
    if fips:
        for a in manifest.artifacts:
            if not a.fips:
                raise FipsError(f"{a.repository}:{a.tag}: not FIPS content (registry {a.registry})")
    return manifest, signer


def open_verified(
    path: Path, pub: EllipticCurvePublicKey | None, *, allow_unsigned: bool, fips: bool
) -> tuple[BundleManifest, str | None]:
    """FILE.sig (if present), the manifest's signature and schema; members are checked later,
    one by one, as BundleReader.open_member streams them."""
    check_policy(pub, allow_unsigned=allow_unsigned, fips=fips)
    if pub is not None:
        from mirror import signing

        signing.verify_detached(path, pub)
    data, signature = BundleReader(path).head()
    return check_manifest(data, signature, pub, allow_unsigned=allow_unsigned, fips=fips)


def verify_bundle(
    path: Path,
    pub: EllipticCurvePublicKey | None,
    *,
    allow_unsigned: bool,
    fips: bool,
    observer: Observer | None = None,
) -> VerifyResult:
    """Return on success; raise VerificationError naming the first member that fails."""
    check_policy(pub, allow_unsigned=allow_unsigned, fips=fips)
    with open_bundle(path) as f:
        raw = _HashingFile(f, observer)
        failure: VerificationError | None = None
        try:
            result = _check_archive(path, decompressing(raw, str(path)), pub, allow_unsigned, fips)
        except VerificationError as exc:
            failure = exc
        raw.drain()
    from mirror import signing

    checked = None
    if pub is not None:  # FILE.sig comes first: its failure outranks any later one
        checked = signing.verify_detached(path, pub, digest=raw.hash.digest())
    if checked is None:  # no FILE.sig: FILE.sha256, when there, must still be this file's
        signing.check_recorded(path, raw.hash.digest())
    if failure is not None:
        raise failure
    return dataclasses.replace(result, file_sha256=raw.hash.hexdigest())


@dataclass
class _Walk:
    """What one pass remembers: member sizes and the graph edges of small JSON blobs."""

    expected: dict[str, MemberRecord]
    seen: dict[str, int] = field(default_factory=dict)
    docs: dict[str, bytes] = field(default_factory=dict)  # oci-layout, index.json
    edges: dict[str, layout.Node] = field(default_factory=dict)


def _check_archive(
    path: Path,
    stream: Readable,
    pub: EllipticCurvePublicKey | None,
    allow_unsigned: bool,
    fips: bool,
) -> VerifyResult:
    counted = _Counted(stream)
    head = read_head_entries(counted)
    manifest, signer = check_manifest(
        head.manifest, head.signature, pub, allow_unsigned=allow_unsigned, fips=fips
    )
    _check_roots(manifest)
    walk = _Walk(expected=manifest.member_map())
    reader = BundleReader(path)  # one table of contents, read once, for every check below
    places = _Places.of(reader)
    entry = head.pending
    while entry is not None:
        at = counted.pos  # the member's first data byte
        _check_member(counted, entry, walk)
        places.check(entry.path, at)
        entry = tarfmt.next_entry(counted)
    _check_trailer(counted)
    missing = sorted(set(walk.expected) - set(walk.seen))
    if missing:
        raise VerificationError(f"{missing[0]}: listed in manifest.json but not in the archive")
    layout.check(manifest, walk.docs, walk.seen, walk.edges)
    _check_toc(reader, walk.seen, head.signature is not None)
    places.settle()
    from mirror.sigpolicy import check_bundle
    from mirror.stores.bundle import BundleStore

    source = BundleStore.sealed(reader, manifest)
    skipped = check_closure(manifest, source)
    check_chart_entries(manifest, source)
    check_bundle(manifest, source)  # the cosign signatures export checked, checked again
    blobs = sum(1 for p in walk.seen if p.startswith(layout.BLOBS))
    return VerifyResult(
        artifacts=len(manifest.artifacts),
        blobs=blobs,
        bytes=sum(walk.seen.values()),
        signer=signer,
        fips=manifest.fips,
        images=len(manifest.images),
        manifest_digest="sha256:" + hashlib.sha256(head.manifest).hexdigest(),
        missing_images=tuple(skipped),
        signed=head.signature is not None,
    )


def check_closure(manifest: BundleManifest, source: Source) -> list[str]:
    """Every image a bundled pack or chart needs is carried, or was skipped on purpose;
    those skipped, which the bundle does not hold, are returned.

    The needs are read again from the packs' and charts' own archives in the bundle, with
    the same discovery export used, so a manifest that simply leaves an image out cannot
    pass. A bundle from before images travelled records no `imagesFrom`: both are assumed.
    """
    from mirror.discovery.images import build_closure, content_layers, scan_all

    origins = manifest.images_from if manifest.images_from is not None else ("packs", "charts")
    members = manifest.member_map()
    items = []
    for a in manifest.artifacts:
        if a.kind not in ("pack", "chart"):
            continue
        root = Descriptor(a.media_type, a.digest, _member_size(members, a.digest))
        layers = content_layers(source, root)
        if any(layout.BLOBS + d.hex not in members for d in layers):
            continue  # a delta's: the base bundle that carried this layer proved its closure
        items.append((a.ref, source, root))
    closure = build_closure(scan_all(items, origins, jobs=4))
    carried, skipped = {i.ref for i in manifest.images}, set(manifest.skipped_images)
    absent = [n for n in closure.images if str(n.ref) not in carried]
    missing = [n for n in absent if str(n.ref) not in skipped]
    if missing:
        first = missing[0]
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise MissingImagesError(
            [str(n.ref) for n in missing],
            f"image {first.ref}, needed by {', '.join(first.needed_by)}, is not in the bundle"
            f"{more}",
        )
    return [str(n.ref) for n in absent]


def _check_roots(manifest: BundleManifest) -> None:
    """Every artifact, image and referrer is a manifest or an index: one typed otherwise is
    walked as a blob, so a bundle of manifests without their layers passed (a cache hint
    that said `text/html` once made one), and import then failed half-way."""
    from mirror.oci import mediatypes as mt

    roots = [
        *((a.ref, a.media_type) for a in manifest.artifacts),
        *((i.ref, i.media_type) for i in manifest.images),
        *((r.digest, r.media_type) for r in manifest.referrers),
    ]
    for ref, media_type in roots:
        if media_type not in mt.ALL_MANIFESTS:
            raise VerificationError(f"{ref}: {media_type!r} is not a manifest's media type")


def check_chart_entries(manifest: BundleManifest, source: Source) -> None:
    """A chart's Helm repository entry (kept for the far side's Helm folder) describes that
    very chart: import's Helm folder and serve refuse one that does not, so verify says so
    first, rather than pass a bundle import then refuses half-way."""
    from mirror.formats.helm import entry_matches
    from mirror.oci import mediatypes as mt
    from mirror.oci.descriptor import successors

    members = manifest.member_map()
    for a in manifest.artifacts:
        info = a.chart
        if info is None or info.index_entry is None:
            continue
        root = Descriptor(a.media_type, a.digest, _member_size(members, a.digest))
        layers = [
            d
            for d in successors(root, source.fetch_manifest(root))
            if d.media_type == mt.HELM_CHART
        ]
        if not layers or not entry_matches(
            info.index_entry, info.name, info.version, layers[0].hex
        ):
            raise VerificationError(
                f"{a.ref}: its Helm repository entry does not describe the chart it carries"
            )


def _member_size(members: dict[str, MemberRecord], digest: str) -> int:
    record = members.get(layout.BLOBS + digest.split(":", 1)[-1])
    if record is None:
        raise VerificationError(f"{digest}: an artifact's manifest is not in the bundle")
    return record.size


def _check_member(stream: Readable, entry: tarfmt.Entry, walk: _Walk) -> None:
    path = entry.path
    if entry.kind != "file":
        raise VerificationError(f"{path}: {entry.kind} entries are not allowed")
    reason = tarfmt.unsafe_reason(path)
    if reason:
        raise VerificationError(f"{path}: unsafe member name ({reason})")
    if path in walk.seen or path in (MANIFEST_PATH, SIGNATURE_PATH):
        raise VerificationError(f"{path}: duplicate member")
    record = walk.expected.get(path)
    if record is None:
        raise VerificationError(f"{path}: not listed in manifest.json")
    if entry.size != record.size:
        raise IntegrityError(
            f"{path}: archive says {entry.size} bytes, manifest.json says {record.size}"
        )
    layout.check_name(path, record.sha256)
    keep = layout.wants(path, record.size)
    kept: list[bytes] = []
    digest = hashlib.sha256()
    left = record.size
    while left:
        chunk = stream.read(min(CHUNK, left))
        if not chunk:
            raise VerificationError(f"{path}: archive is truncated")
        left -= len(chunk)
        digest.update(chunk)
        if keep and (kept or layout.looks_like_json(chunk)):
            kept.append(chunk)
        else:
            keep = False
    if digest.hexdigest() != record.sha256:
        raise IntegrityError(f"{path}: sha256 does not match manifest.json")
    tarfmt.skip_padding(stream, record.size)
    walk.seen[path] = record.size
    if keep:
        layout.remember(path, b"".join(kept), walk.docs, walk.edges)


def _check_toc(reader: BundleReader, seen: dict[str, int], signed: bool) -> None:
    """Import seeks through the table of contents, so it must be there and name every member.

    This also catches a file cut short after its last tar frame.
    """
    toc = reader.toc()
    expected = set(seen) | {MANIFEST_PATH} | ({SIGNATURE_PATH} if signed else set())
    for name in sorted(expected ^ set(toc)):
        raise VerificationError(f"{name}: archive and table of contents disagree")
    for name, size in seen.items():
        if toc[name].size != size:
            raise VerificationError(f"{name}: table of contents gives another size")


class _Counted:
    """The decompressed archive, counting the bytes read: where each member starts."""

    def __init__(self, stream: Readable) -> None:
        self._stream = stream
        self.pos = 0

    def read(self, n: int = -1, /) -> bytes:
        chunk = self._stream.read(n)
        self.pos += len(chunk)
        return chunk


@dataclass
class _Places:
    """What the table of contents claims of each member, proven against the archive as the
    pass meets it: its frame starts at that byte of the file, and the member's data at that
    offset in the frame is where the archive has it, inside the frame. A seek by the table
    then reads exactly the bytes this pass hashed (serve does not hash them again).

    Read before the pass (the table and the frame headers are small reads); when either
    cannot be read, the pass goes on and `_check_toc` names the problem, or `settle` does."""

    toc: dict[str, TocEntry] = field(default_factory=dict)
    frames: dict[int, tuple[int, int]] = field(default_factory=dict)
    failure: VerificationError | None = None

    @classmethod
    def of(cls, reader: BundleReader) -> _Places:
        from mirror.bundle.frames import frame_map

        path = reader.path
        try:
            toc = reader.toc()
            with open_bundle(path) as f:
                return cls(toc, frame_map(f, reader.toc_offset()))
        except VerificationError as exc:
            return cls(failure=exc)
        except (OSError, OperationError) as exc:  # read once already: a file that changed
            return cls(failure=VerificationError(f"{path}: table of contents: {exc}"))

    def check(self, path: str, pos: int) -> None:
        entry = self.toc.get(path)
        if entry is None:
            return  # not listed, or no table: _check_toc says which
        start, size = self.frames.get(entry.frame, (-1, -1))
        if start + entry.offset != pos or entry.offset + entry.size > size:
            raise VerificationError(
                f"{path}: the table of contents places it elsewhere than the archive does"
            )

    def settle(self) -> None:
        if self.failure is not None:
            raise self.failure


def _check_trailer(stream: Readable) -> None:
    """After the end-of-archive blocks only tar's zero padding may follow."""
    total = 0
    while chunk := stream.read(64 * 1024):
        total += len(chunk)
        if total > MAX_TRAILER or chunk.count(0) != len(chunk):
            raise VerificationError("archive: unexpected data after the end-of-archive marker")
