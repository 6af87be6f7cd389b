"""Builders shared by the tests/test_bundle_*.py files: tiny OCI layouts, keys, hostile archives.

No tests here; pytest imports it and finds none.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mirror import keys, signing
from mirror.bundle.manifest import (
    ArtifactRecord,
    BundleManifest,
    MemberRecord,
    RegistryRecord,
)
from mirror.bundle.toc import TocEntry, encode_footer, encode_toc
from mirror.bundle.writer import Member, write_bundle
from mirror.oci import mediatypes as mt

MTIME = 1_700_000_000
REF = "library/app:1.0"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _desc(media_type: str, data: bytes, **extra: object) -> dict[str, object]:
    return {"mediaType": media_type, "digest": "sha256:" + sha(data), "size": len(data), **extra}


@dataclass(frozen=True)
class Layout:
    files: dict[str, bytes]  # member path -> content
    root: bytes  # the image manifest named by index.json


def make_layout(layer_bytes: Sequence[bytes] = (b"layer one", b"layer two")) -> Layout:
    """oci-layout, index.json, one image manifest, its config and layers (first one gzipped)."""
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    layers = [gzip.compress(layer_bytes[0], mtime=0), *layer_bytes[1:]]
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": _desc(mt.OCI_CONFIG, config),
            "layers": [_desc(mt.OCI_LAYER_GZIP, b) for b in layers],
        }
    ).encode()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [_desc(mt.OCI_MANIFEST, manifest, annotations={mt.ANN_REF_NAME: REF})],
        }
    ).encode()
    files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": index}
    for blob in (config, manifest, *layers):
        files[f"blobs/sha256/{sha(blob)}"] = blob
    return Layout(files, manifest)


def manifest_doc(
    files: dict[str, bytes],
    root: bytes,
    *,
    signer: str | None = None,
    fips: bool = False,
    listed: dict[str, bytes] | None = None,
) -> BundleManifest:
    listed = files if listed is None else listed
    return BundleManifest(
        name="demo",
        created="2023-11-14T22:13:20Z",
        tool_version="0.1.0",
        fips=fips,
        spec_digest="sha256:" + "0" * 64,
        signer=signer,
        registries=(RegistryRecord("Lab", "oci", "http://127.0.0.1:5000", "", fips, "image"),),
        artifacts=(
            ArtifactRecord(
                registry="Lab",
                kind="image",
                repository="library/app",
                tag="1.0",
                ref=REF,
                digest="sha256:" + sha(root),
                media_type=mt.OCI_MANIFEST,
                size=len(root),
                fips=fips,
                platforms=("linux/amd64",),
            ),
        ),
        members=tuple(MemberRecord(p, sha(d), len(d)) for p, d in sorted(listed.items())),
    )


def _opener(data: bytes) -> Callable[[], BinaryIO]:
    return lambda: io.BytesIO(data)


def members_of(files: dict[str, bytes]) -> list[Member]:
    return [Member(p, len(d), sha(d), _opener(d)) for p, d in files.items()]


@dataclass(frozen=True)
class Keys:
    key: ec.EllipticCurvePrivateKey
    pub: ec.EllipticCurvePublicKey
    pub_path: Path

    @property
    def fingerprint(self) -> str:
        return keys.fingerprint(self.pub)


def make_keys(directory: Path, name: str = "mirror") -> Keys:
    key = ec.generate_private_key(ec.SECP256R1())
    pub_path = directory / f"{name}.pub"
    pub_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return Keys(key, key.public_key(), pub_path)


def build_bundle(
    out: Path,
    k: Keys | None,
    *,
    layout: Layout | None = None,
    fips: bool = False,
    detached: bool = True,
) -> Path:
    """A good bundle (signed when K is given) with FILE.sha256 and FILE.sig beside it."""
    layout = layout or make_layout()
    doc = manifest_doc(layout.files, layout.root, signer=k.fingerprint if k else None, fips=fips)
    data = doc.to_bytes()
    sig = signing.sign_bytes(k.key, data) if k else None
    written = write_bundle(out, data, sig, members_of(layout.files), mtime=MTIME)
    if detached:
        signing.write_detached(out, written.sha256, k.key if k else None)
    return out


def tar_entry(
    name: str, data: bytes = b"", *, kind: bytes = tarfile.REGTYPE, size: int | None = None
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if size is None else size
    info.mtime = MTIME
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = "index.json"
        info.size = 0
    return info, data


def hostile_bundle(
    out: Path,
    k: Keys,
    entries: Sequence[tuple[tarfile.TarInfo, bytes]],
    *,
    manifest: bytes,
    head: bool = True,
) -> Path:
    """An archive made by tarfile + zstandard directly, no TOC; manifest signed by K."""
    head_entries = signed_head(manifest, k) if head else []
    out.write_bytes(zstandard.ZstdCompressor().compress(plain_tar([*head_entries, *entries])))
    return out


def framed_bundle(
    out: Path,
    k: Keys,
    entries: Sequence[tuple[tarfile.TarInfo, bytes]],
    *,
    manifest: bytes,
    head: bool = True,
    trailer: bytes = b"",
    not_in_toc: Sequence[str] = (),
) -> Path:
    """A hostile archive framed as mirror frames one, so that its only lie is ENTRIES.

    Each entry is its own zstd frame; a table of contents names every regular entry by its
    ustar name (the first of a duplicate, the pre-pax name of a renamed one) where its data
    is; FILE.sha256 and FILE.sig (by K) cover the whole file. A reader that trusted FILE.sig
    and seeked through the table would find every listed member's right bytes. `trailer`
    is a frame after the end-of-archive blocks; `not_in_toc` names members the table omits.
    """
    compress = zstandard.ZstdCompressor().compress
    body = bytearray()
    toc: dict[str, TocEntry] = {}
    for info, data in [*(signed_head(manifest, k) if head else []), *entries]:
        header = info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")
        if info.isreg() and info.name not in toc and info.name not in not_in_toc:
            toc[info.name] = TocEntry(info.name, len(body), len(header), len(data))
        padded = data + bytes(-len(data) % 512) if info.isreg() else b""
        body += compress(header + padded)
    body += compress(bytes(1024))  # the end-of-archive blocks
    if trailer:
        body += compress(trailer)
    toc_at = len(body)
    out.write_bytes(bytes(body) + encode_toc(list(toc.values())) + encode_footer(toc_at))
    signing.write_detached(out, signing.sha256_file(out), k.key)
    return out


def plain_tar(entries: Sequence[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    """The uncompressed tar of ENTRIES, end blocks included, for tests that cut or pad it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def signed_head(manifest: bytes, k: Keys) -> list[tuple[tarfile.TarInfo, bytes]]:
    sig = signing.sign_bytes(k.key, manifest)
    return [tar_entry("manifest.json", manifest), tar_entry("manifest.json.sig", sig)]


def layout_entries(files: dict[str, bytes]) -> list[tuple[tarfile.TarInfo, bytes]]:
    order = {"oci-layout": 0, "index.json": 1}
    names = sorted(files, key=lambda p: (order.get(p, 2), p))
    return [tar_entry(p, files[p]) for p in names]
