"""verify_bundle and open_verified: every hostile input of issue 4 item 6 is a VerificationError."""

from __future__ import annotations

import json
import tarfile
import time
import tracemalloc
from pathlib import Path

import pytest
import zstandard
from test_bundle_support import (
    Keys,
    build_bundle,
    hostile_bundle,
    layout_entries,
    make_keys,
    make_layout,
    manifest_doc,
    plain_tar,
    sha,
    signed_head,
    tar_entry,
)

from mirror.bundle import tarfmt
from mirror.bundle.verify import VerifyResult, open_verified, verify_bundle
from mirror.errors import FipsError, IntegrityError, UnsignedError, VerificationError

Entry = tuple[tarfile.TarInfo, bytes]


@pytest.fixture()
def k(tmp_path: Path) -> Keys:
    return make_keys(tmp_path)


def _verify(
    path: Path, k: Keys | None, *, allow_unsigned: bool = False, fips: bool = False
) -> VerifyResult:
    return verify_bundle(path, k.pub if k else None, allow_unsigned=allow_unsigned, fips=fips)


def _hostile(
    tmp_path: Path, k: Keys, entries: list[Entry], listed: dict[str, bytes] | None = None
) -> Path:
    layout = make_layout()
    doc = manifest_doc(layout.files, layout.root, signer=k.fingerprint, listed=listed)
    return hostile_bundle(tmp_path / "h.tar.zst", k, entries, manifest=doc.to_bytes())


def test_good_bundle_verifies(tmp_path: Path, k: Keys) -> None:
    bundle = build_bundle(tmp_path / "b.tar.zst", k)
    result = _verify(bundle, k)
    layout = make_layout()
    assert result.artifacts == 1
    assert result.blobs == 4
    assert result.bytes == sum(len(d) for d in layout.files.values())
    assert result.signer == k.fingerprint
    assert result.fips is False
    manifest, signer = open_verified(bundle, k.pub, allow_unsigned=False, fips=False)
    assert signer == k.fingerprint and manifest.name == "demo"


def test_archive_built_by_plain_tarfile_fails_only_for_its_missing_toc(
    tmp_path: Path, k: Keys
) -> None:
    """The hostile-archive builder makes otherwise good archives: the failures below are real."""
    bundle = _hostile(tmp_path, k, layout_entries(make_layout().files))
    with pytest.raises(VerificationError, match="table of contents"):
        _verify(bundle, k)


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_flipped_byte_in_a_blob(tmp_path: Path, k: Keys) -> None:
    files = make_layout().files
    entries = layout_entries(files)
    blob = next(i for i, (info, _) in enumerate(entries) if info.name.startswith("blobs/"))
    info, data = entries[blob]
    entries[blob] = (info, bytes([data[0] ^ 1]) + data[1:])
    with pytest.raises(IntegrityError, match=f"{info.name}: sha256 does not match"):
        _verify(_hostile(tmp_path, k, entries), k)


def test_flipped_byte_anywhere_in_a_signed_file_fails_file_sig_first(
    tmp_path: Path, k: Keys
) -> None:
    bundle = build_bundle(tmp_path / "b.tar.zst", k)
    size = bundle.stat().st_size
    for offset in (0, 100, size // 2, size - 30, size - 1):
        copy = tmp_path / f"c{offset}.tar.zst"
        copy.write_bytes(bundle.read_bytes())
        (tmp_path / f"c{offset}.tar.zst.sig").write_bytes((tmp_path / "b.tar.zst.sig").read_bytes())
        _flip(copy, offset)
        with pytest.raises(VerificationError, match=r"\.sig: signature does not verify"):
            _verify(copy, k)


def test_flipped_byte_in_manifest_or_its_signature(tmp_path: Path, k: Keys) -> None:
    layout = make_layout()
    manifest = manifest_doc(layout.files, layout.root, signer=k.fingerprint).to_bytes()
    head = signed_head(manifest, k)
    tampered = manifest.replace(b'"demo"', b'"demO"')
    bad_manifest = [tar_entry("manifest.json", tampered), head[1]]
    sig = head[1][1]
    bad_sig = [head[0], tar_entry("manifest.json.sig", sig[:10] + bytes([sig[10] ^ 1]) + sig[11:])]
    for n, bad_head in enumerate((bad_manifest, bad_sig)):
        out = hostile_bundle(
            tmp_path / f"h{n}.tar.zst",
            k,
            [*bad_head, *layout_entries(layout.files)],
            manifest=manifest,
            head=False,
        )
        with pytest.raises(VerificationError, match=r"manifest.json: signature does not verify"):
            _verify(out, k)


def test_flipped_byte_in_file_sig(tmp_path: Path, k: Keys) -> None:
    bundle = build_bundle(tmp_path / "b.tar.zst", k)
    sig = tmp_path / "b.tar.zst.sig"
    _flip(sig, 20)
    with pytest.raises(VerificationError, match=r"b\.tar\.zst\.sig"):
        _verify(bundle, k)
    with pytest.raises(VerificationError, match=r"b\.tar\.zst\.sig"):
        open_verified(bundle, k.pub, allow_unsigned=False, fips=False)


def test_edited_sha256_file(tmp_path: Path, k: Keys) -> None:
    bundle = build_bundle(tmp_path / "b.tar.zst", k)
    (tmp_path / "b.tar.zst.sha256").write_text("0" * 64 + "  b.tar.zst\n")
    with pytest.raises(IntegrityError, match="sha256"):
        _verify(bundle, k)


def test_a_wrong_sha256_file_fails_without_a_sig_and_with_allow_unsigned(
    tmp_path: Path, k: Keys
) -> None:
    """FILE.sha256 is checked whenever it is there, not only beside a FILE.sig."""
    bundle = build_bundle(tmp_path / "b.tar.zst", None)
    assert not (tmp_path / "b.tar.zst.sig").exists()
    _verify(bundle, None, allow_unsigned=True)
    (tmp_path / "b.tar.zst.sha256").write_text("0" * 64 + "  b.tar.zst\n")
    with pytest.raises(IntegrityError, match=r"differs from b\.tar\.zst\.sha256"):
        _verify(bundle, None, allow_unsigned=True)


def test_a_sidecar_that_is_a_folder_is_a_verification_error(tmp_path: Path, k: Keys) -> None:
    bundle = build_bundle(tmp_path / "b.tar.zst", k)
    (tmp_path / "b.tar.zst.sig").unlink()
    (tmp_path / "b.tar.zst.sig").mkdir()
    with pytest.raises(VerificationError, match=r"b\.tar\.zst\.sig: not a signature"):
        _verify(bundle, k)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("which", ["sig", "sha256", "parts.sha256"])
def test_a_fifo_beside_a_bundle_is_refused_not_waited_on(
    tmp_path: Path, k: Keys, which: str
) -> None:
    """Sidecars are found, not named: a FIFO at FILE.sig, FILE.sha256 or
    FILE.parts.sha256 blocked verify, inspect and import in open() until killed."""
    import os

    from mirror.bundle.parts import read_sums

    bundle = build_bundle(tmp_path / "b.tar.zst", k)
    side = tmp_path / f"b.tar.zst.{which}"
    side.unlink(missing_ok=True)
    if which == "sha256":
        (tmp_path / "b.tar.zst.sig").unlink()
    os.mkfifo(side)
    words = {"sig": "not a signature", "sha256": "not a checksum file"}
    with pytest.raises(VerificationError, match=words.get(which, "not a list of parts")) as info:
        _verify(bundle, k) if which != "parts.sha256" else read_sums(bundle)
    assert "not a regular file" in str(info.value)


def test_a_pax_size_python_reads_but_tar_does_not_is_refused(tmp_path: Path, k: Keys) -> None:
    """`1_7` is 17 to int() and no number to GNU tar: two readers, two archives."""
    files = make_layout().files
    entries = layout_entries(files)
    info, data = entries[-1]
    info.pax_headers = {"size": f"{len(data) // 10}_{len(data) % 10}"}
    with pytest.raises(VerificationError, match=r"not a decimal number|bad pax size"):
        _verify(_hostile(tmp_path, k, entries), k)


@pytest.mark.parametrize("keep", [0.95, 0.5, 0.1])
def test_truncated_archive(tmp_path: Path, k: Keys, keep: float) -> None:
    bundle = build_bundle(tmp_path / "b.tar.zst", k, detached=False)
    data = bundle.read_bytes()
    bundle.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(VerificationError):
        _verify(bundle, k)
    # With its sidecars present, it is named for what it is: the file changed since it was
    # written (issue 16), not a signature by the wrong key.
    full = build_bundle(tmp_path / "s.tar.zst", k)
    full.write_bytes(full.read_bytes()[: int(len(data) * keep)])
    with pytest.raises(VerificationError, match=r"s\.tar\.zst: damaged or altered"):
        _verify(full, k)


def test_truncated_member_data(tmp_path: Path, k: Keys) -> None:
    """A cut inside a member (not at a frame boundary) names the member."""
    files = make_layout().files
    raw = plain_tar([*signed_head(_manifest(files, k), k), *layout_entries(files)])
    cut = raw.index(files["index.json"]) + 10
    (tmp_path / "t.tar.zst").write_bytes(zstandard.ZstdCompressor().compress(raw[:cut]))
    with pytest.raises(VerificationError, match=r"index.json: archive is truncated"):
        _verify(tmp_path / "t.tar.zst", k)


def _manifest(files: dict[str, bytes], k: Keys, listed: dict[str, bytes] | None = None) -> bytes:
    return manifest_doc(files, make_layout().root, signer=k.fingerprint, listed=listed).to_bytes()


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../x", r"\.\./x: unsafe member name \('\.\.' in path\)"),
        ("/etc/x", "/etc/x: unsafe member name \\(absolute path\\)"),
        ("blobs/../../x", "unsafe member name"),
        ("./index.json", "not in normal form"),
    ],
)
def test_unsafe_names(tmp_path: Path, k: Keys, name: str, reason: str) -> None:
    files = make_layout().files
    entries = [tar_entry(name, b"evil"), *layout_entries(files)]
    with pytest.raises(VerificationError, match=reason):
        _verify(_hostile(tmp_path, k, entries), k)
    assert not (tmp_path.parent / "x").exists()


@pytest.mark.parametrize(
    ("kind", "word"),
    [
        (tarfile.SYMTYPE, "symlink"),
        (tarfile.LNKTYPE, "hardlink"),
        (tarfile.CHRTYPE, "character device"),
        (tarfile.BLKTYPE, "block device"),
        (tarfile.FIFOTYPE, "FIFO"),
        (tarfile.DIRTYPE, "directory"),
    ],
)
def test_links_devices_fifos_dirs(tmp_path: Path, k: Keys, kind: bytes, word: str) -> None:
    files = make_layout().files
    entries = [*layout_entries(files), tar_entry("blobs/evil", kind=kind)]
    with pytest.raises(VerificationError, match=f"blobs/evil/?: {word} entries are not allowed"):
        _verify(_hostile(tmp_path, k, entries), k)


def test_link_named_like_a_listed_member(tmp_path: Path, k: Keys) -> None:
    files = make_layout().files
    entries = layout_entries(files)
    entries[0] = tar_entry("oci-layout", kind=tarfile.SYMTYPE)
    with pytest.raises(VerificationError, match="oci-layout: symlink entries are not allowed"):
        _verify(_hostile(tmp_path, k, entries), k)


def test_duplicate_member(tmp_path: Path, k: Keys) -> None:
    files = make_layout().files
    entries = layout_entries(files)
    with pytest.raises(VerificationError, match=r"index.json: duplicate member"):
        _verify(_hostile(tmp_path, k, [*entries, entries[1]]), k)
    second_manifest = tar_entry("manifest.json", b"{}")
    with pytest.raises(VerificationError, match=r"manifest.json: duplicate member"):
        _verify(_hostile(tmp_path, k, [*entries, second_manifest]), k)


def test_member_missing_from_the_manifest(tmp_path: Path, k: Keys) -> None:
    files = make_layout().files
    entries = [*layout_entries(files), tar_entry("blobs/sha256/" + sha(b"extra"), b"extra")]
    with pytest.raises(VerificationError, match=f"{sha(b'extra')}: not listed in manifest.json"):
        _verify(_hostile(tmp_path, k, entries), k)


def test_manifest_lists_a_blob_that_is_not_there(tmp_path: Path, k: Keys) -> None:
    files = make_layout().files
    listed = {**files, "blobs/sha256/" + sha(b"ghost"): b"ghost"}
    with pytest.raises(VerificationError, match=r"listed in manifest.json but not in the archive"):
        _verify(_hostile(tmp_path, k, layout_entries(files), listed=listed), k)


def test_layout_names_a_blob_nobody_packed(tmp_path: Path, k: Keys) -> None:
    """Manifest and archive agree, but the image manifest names a layer that is absent."""
    files = make_layout().files
    layer = "blobs/sha256/" + sha(b"layer two")
    del files[layer]
    bundle = _hostile(tmp_path, k, layout_entries(files), listed=files)
    with pytest.raises(VerificationError, match=f"{layer}: named by blobs/sha256/.* not in"):
        _verify(bundle, k)


def test_index_json_lacks_an_artifact(tmp_path: Path, k: Keys) -> None:
    files = make_layout().files
    files["index.json"] = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    bundle = _hostile(tmp_path, k, layout_entries(files), listed=files)
    with pytest.raises(VerificationError, match=r"index.json: artifact library/app:1.0"):
        _verify(bundle, k)


def test_member_far_larger_than_declared_is_refused_before_reading(tmp_path: Path, k: Keys) -> None:
    """The header claims 10 GiB; no data follows. Refused at the header, instantly."""
    files = make_layout().files
    raw = plain_tar([*signed_head(_manifest(files, k), k), *layout_entries(files)[:1]])
    raw = raw.rstrip(b"\0")
    raw += b"\0" * (-len(raw) % 512) + tarfmt.header("index.json", 10 * 2**30, 0)
    (tmp_path / "l.tar.zst").write_bytes(zstandard.ZstdCompressor().compress(raw))
    with pytest.raises(IntegrityError, match=r"index.json: archive says 10737418240 bytes"):
        _verify(tmp_path / "l.tar.zst", k)


def _bomb(tmp_path: Path, k: Keys, filler: bytes) -> Path:
    """A good archive without its end blocks, then 2 GiB of FILLER compressed to kilobytes."""
    files = make_layout().files
    raw = plain_tar([*signed_head(_manifest(files, k), k), *layout_entries(files)]).rstrip(b"\0")
    raw += b"\0" * (-len(raw) % 512)
    chunker = zstandard.ZstdCompressor(level=1).chunker(chunk_size=1 << 20)
    parts = [*chunker.compress(raw)]
    block = filler * (64 << 20)
    for _ in range(32):  # 2 GiB
        parts.extend(chunker.compress(block))
    parts.extend(chunker.finish())  # type: ignore[no-untyped-call]
    bomb = tmp_path / "bomb.tar.zst"
    bomb.write_bytes(b"".join(parts))
    assert bomb.stat().st_size < 1 << 20
    return bomb


@pytest.mark.parametrize(
    ("filler", "message"),
    [(b"\0", "after the end-of-archive"), (b"A", "corrupt tar header")],
)
def test_zstd_bomb_stops_quickly_in_bounded_memory(
    tmp_path: Path, k: Keys, filler: bytes, message: str
) -> None:
    bomb = _bomb(tmp_path, k, filler)
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(VerificationError, match=message):
            _verify(bomb, k)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 5
    assert peak < 32 << 20


def test_signed_by_a_different_key(tmp_path: Path, k: Keys) -> None:
    other = make_keys(tmp_path, "other")
    bundle = build_bundle(tmp_path / "b.tar.zst", other)
    with pytest.raises(VerificationError, match=r"b\.tar\.zst\.sig: signature does not verify"):
        _verify(bundle, k)
    (tmp_path / "b.tar.zst.sig").unlink()
    with pytest.raises(VerificationError, match=r"manifest.json: signature does not verify"):
        _verify(bundle, k)


def test_manifest_not_first(tmp_path: Path, k: Keys) -> None:
    files = make_layout().files
    manifest = _manifest(files, k)
    entries = [*layout_entries(files)[:1], *signed_head(manifest, k), *layout_entries(files)[1:]]
    bundle = hostile_bundle(tmp_path / "n.tar.zst", k, entries, manifest=manifest, head=False)
    with pytest.raises(VerificationError, match=r"manifest.json is not the first member"):
        _verify(bundle, k)


def test_unsigned_bundle_needs_allow_unsigned(tmp_path: Path, k: Keys) -> None:
    bundle = build_bundle(tmp_path / "u.tar.zst", None)
    with pytest.raises(UnsignedError, match="--allow-unsigned"):
        _verify(bundle, k)
    with pytest.raises(UnsignedError, match="--allow-unsigned"):
        _verify(bundle, None)
    assert _verify(bundle, None, allow_unsigned=True).signer is None
    assert _verify(bundle, k, allow_unsigned=True).signer is None
    with pytest.raises(FipsError, match="--allow-unsigned"):
        _verify(bundle, None, allow_unsigned=True, fips=True)
    with pytest.raises(UnsignedError):
        open_verified(bundle, k.pub, allow_unsigned=False, fips=False)


def test_fips_mode_refuses_non_fips_artifacts(tmp_path: Path, k: Keys) -> None:
    plain = build_bundle(tmp_path / "p.tar.zst", k)
    with pytest.raises(FipsError, match=r"library/app:1.0: not FIPS"):
        _verify(plain, k, fips=True)
    with pytest.raises(FipsError):
        open_verified(plain, k.pub, allow_unsigned=False, fips=True)
    fips = build_bundle(tmp_path / "f.tar.zst", k, fips=True)
    assert _verify(fips, k, fips=True).fips is True


def test_manifest_claiming_another_signer(tmp_path: Path, k: Keys) -> None:
    files = make_layout().files
    doc = manifest_doc(files, make_layout().root, signer="ab" * 32)
    bundle = hostile_bundle(
        tmp_path / "c.tar.zst", k, layout_entries(files), manifest=doc.to_bytes()
    )
    with pytest.raises(VerificationError, match="claims signer"):
        _verify(bundle, k)


def test_schema_violation_is_a_verification_error(tmp_path: Path, k: Keys) -> None:
    files = make_layout().files
    doc = json.loads(_manifest(files, k))
    doc["artifacts"][0]["kind"] = "virus"
    manifest = json.dumps(doc).encode()
    bundle = hostile_bundle(tmp_path / "s.tar.zst", k, layout_entries(files), manifest=manifest)
    with pytest.raises(VerificationError, match="schema violation at /artifacts/0/kind"):
        _verify(bundle, k)


@pytest.mark.parametrize("field", [b"0000001_0\0", b"+0000017\0", b"0000 17\0", b"00000019\0"])
def test_a_tar_number_is_octal_digits_only(field: bytes) -> None:
    """int(text, 8) also takes "1_0" and "+17": GNU tar reads neither, so neither do we."""
    from mirror.formats import pax_number, tar_number

    with pytest.raises(ValueError):
        tar_number(field.ljust(12, b"\0"))
    assert tar_number(b"00000017\0".ljust(12, b"\0")) == 15
    assert tar_number(b"     17 \0".ljust(12, b"\0")) == 15  # space padding, as old writers do
    text = field.strip(b"\0")
    if not text.isdigit():  # "19" is a decimal, just not an octal number
        with pytest.raises(ValueError):
            pax_number(text)
