"""inspect: the contract's JSON keys, a table and a markdown report, read from the head only."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import time
from pathlib import Path

from test_bundle_support import (
    MTIME,
    REF,
    build_bundle,
    make_keys,
    make_layout,
    manifest_doc,
    members_of,
)

from mirror.bundle.approval import render_record
from mirror.bundle.inspect import inspect_bundle, render_table
from mirror.bundle.manifest import MemberRecord
from mirror.bundle.writer import Member, write_bundle

CONTRACT_KEYS = {"name", "created", "fips", "signed", "signer", "size", "artifacts"}
ARTIFACT_KEYS = {"registry", "kind", "repository", "tag", "digest", "mediaType", "size", "fips"}


def test_inspect_json_follows_the_contract(tmp_path: Path) -> None:
    k = make_keys(tmp_path)
    bundle = build_bundle(tmp_path / "b.tar.zst", k)
    doc = inspect_bundle(bundle)
    assert set(doc) >= CONTRACT_KEYS
    assert doc["signed"] is True and doc["signer"] == k.fingerprint
    assert doc["signerVerified"] is False
    assert doc["size"] == bundle.stat().st_size
    assert doc["toolVersion"] == "0.1.0"
    assert doc["registries"][0]["name"] == "Lab"
    [art] = doc["artifacts"]
    assert set(art) >= ARTIFACT_KEYS
    assert (art["repository"], art["tag"], art["kind"], art["fips"]) == (
        "library/app",
        "1.0",
        "image",
        False,
    )
    assert doc["totals"]["artifacts"] == 1 and doc["totals"]["blobs"] == 4
    unsigned = inspect_bundle(build_bundle(tmp_path / "u.tar.zst", None))
    assert unsigned["signed"] is False and unsigned["signer"] is None


def test_table_and_markdown_say_the_signer_is_only_claimed(tmp_path: Path) -> None:
    doc = inspect_bundle(build_bundle(tmp_path / "b.tar.zst", make_keys(tmp_path)))
    table = render_table(doc)
    assert "not verified" in table
    assert "Lab / image (1)" in table
    assert "library/app:1.0" in table and "NO (non-FIPS)" in table
    md = render_record(doc, tmp_path / "b.tar.zst")
    assert md.startswith("# Approval record: demo")
    assert "not verified" in md
    assert doc["artifacts"][0]["digest"] in md  # full digests for the record
    assert "- `library/app:1.0`" in md and "NO (non-FIPS)" in md
    fips = inspect_bundle(build_bundle(tmp_path / "f.tar.zst", None, fips=True))
    assert "NO (non-FIPS)" not in render_table(fips)
    assert "no (unsigned bundle)" in render_table(fips)


class _Repeat(io.RawIOBase):
    """SIZE bytes of a random block repeated: incompressible for zstd's window, never in RAM."""

    def __init__(self, block: bytes, size: int) -> None:
        self._block, self._left, self._pos = block, size, 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self._left if n is None or n < 0 else min(n, self._left)
        out = bytearray()
        while len(out) < n:
            take = min(n - len(out), len(self._block) - self._pos)
            out += self._block[self._pos : self._pos + take]
            self._pos = (self._pos + take) % len(self._block)
        self._left -= len(out)
        return bytes(out)


def _grow_sparse(path: Path, extra: int) -> None:
    """Append a zstd skippable frame of `extra` bytes without writing them (a sparse hole).

    `zstd -d` skips such frames, so the file stays a valid stream; only the head matters to
    inspect, and the disk holds no more than before.
    """
    import struct

    with path.open("r+b") as fh:
        fh.seek(0, os.SEEK_END)
        fh.write(struct.pack("<II", 0x184D2A50, extra))
        fh.truncate(fh.tell() + extra)


def test_inspect_is_instant_on_a_large_bundle(tmp_path: Path) -> None:
    block, size = os.urandom(8 << 20), 512 << 20
    digest = hashlib.sha256()
    stream = _Repeat(block, size)
    while chunk := stream.read(8 << 20):
        digest.update(chunk)
    layout = make_layout()
    big = MemberRecord("blobs/sha256/" + digest.hexdigest(), digest.hexdigest(), size)
    doc = manifest_doc(layout.files, layout.root)
    doc = dataclasses.replace(doc, members=(*doc.members, big))
    members = [
        *members_of(layout.files),
        Member(big.path, size, big.sha256, lambda: _Repeat(block, size)),  # type: ignore[arg-type,return-value]
    ]
    out = tmp_path / "big.tar.zst"
    write_bundle(out, doc.to_bytes(), None, members, mtime=MTIME)
    assert out.stat().st_size > 500 << 20
    _grow_sparse(out, 3 << 30)
    assert out.stat().st_size > 3 << 30  # a multi-GB file, as the issue asks
    started = time.monotonic()
    result = inspect_bundle(out)
    render_table(result)
    assert time.monotonic() - started < 1.0
    assert result["totals"]["bytes"] > size
    assert result["artifacts"][0]["repository"] + ":" + result["artifacts"][0]["tag"] == REF
