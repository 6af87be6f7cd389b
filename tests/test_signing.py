"""Signatures: what we write, openssl accepts; what openssl writes, we accept; nothing else."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mirror import signing
from mirror.errors import IntegrityError, VerificationError
from mirror.keys import fingerprint

DATA = b"manifest.json bytes\n" * 100


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def pems(tmp_path: Path, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    """The key pair as files, for the openssl side of each test."""
    priv, pub = tmp_path / "key.pem", tmp_path / "pub.pem"
    priv.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return priv, pub


def openssl_verify(pub: Path, data_file: Path, sig_b64_file: Path) -> bool:
    """The reviewer's procedure from FACTS.md, run literally in a shell."""
    der = sig_b64_file.with_suffix(".der")
    cmd = (
        f"base64 -d {sig_b64_file} > {der} && "
        f"openssl dgst -sha256 -verify {pub} -signature {der} {data_file}"
    )
    done = subprocess.run(["sh", "-c", cmd], capture_output=True)
    return done.returncode == 0 and b"Verified OK" in done.stdout


def test_sign_bytes_verifies_with_openssl(
    tmp_path: Path, key: ec.EllipticCurvePrivateKey, pems: tuple[Path, Path]
) -> None:
    data_file, sig_file = tmp_path / "F", tmp_path / "F.sig"
    data_file.write_bytes(DATA)
    sig = signing.sign_bytes(key, DATA)
    assert sig == sig.strip() and sig.isascii()  # cosign's form: no trailing newline
    sig_file.write_bytes(sig)
    assert openssl_verify(pems[1], data_file, sig_file)
    data_file.write_bytes(DATA + b"x")
    assert not openssl_verify(pems[1], data_file, sig_file)  # the check itself can fail


def test_sign_digest_is_a_signature_over_the_data(
    tmp_path: Path, key: ec.EllipticCurvePrivateKey, pems: tuple[Path, Path]
) -> None:
    data_file, sig_file = tmp_path / "F", tmp_path / "F.sig"
    data_file.write_bytes(DATA)
    sig_file.write_bytes(signing.sign_digest(key, hashlib.sha256(DATA).digest()))
    assert openssl_verify(pems[1], data_file, sig_file)
    signing.verify_bytes(key.public_key(), DATA, sig_file.read_bytes(), "F")


def test_openssl_signature_verifies_with_verify_bytes(
    tmp_path: Path, key: ec.EllipticCurvePrivateKey, pems: tuple[Path, Path]
) -> None:
    data_file, der_file = tmp_path / "F", tmp_path / "F.der"
    data_file.write_bytes(DATA)
    subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", str(pems[0]), "-out", str(der_file), data_file],
        check=True,
    )
    b64 = subprocess.run(["base64", str(der_file)], capture_output=True, check=True).stdout
    assert b64.count(b"\n") == 2  # `base64` wraps at 76 columns: tolerated, as Go does
    signing.verify_bytes(key.public_key(), DATA, b64, "F.sig")
    signing.verify_digest(key.public_key(), hashlib.sha256(DATA).digest(), b64, "F.sig")
    flipped = bytearray(DATA)
    flipped[7] ^= 0x01
    with pytest.raises(VerificationError, match=r"F\.sig: signature does not verify"):
        signing.verify_bytes(key.public_key(), bytes(flipped), b64, "F.sig")


def flip_der_byte(sig_b64: bytes, index: int) -> bytes:
    der = bytearray(base64.b64decode(sig_b64))
    der[index] ^= 0x01
    return base64.b64encode(bytes(der))


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda s: flip_der_byte(s, -1), id="flipped-s-byte"),
        pytest.param(lambda s: flip_der_byte(s, 10), id="flipped-r-byte"),
        pytest.param(lambda s: flip_der_byte(s, 0), id="broken-der-tag"),
        pytest.param(lambda s: s[:-4], id="truncated"),
        pytest.param(lambda s: b"!!" + s, id="bad-base64"),
        pytest.param(lambda s: b"", id="empty"),
        pytest.param(lambda s: base64.b64encode(b"\x30\x03\x02\x01\x01"), id="junk-der"),
    ],
)
def test_bad_signatures_fail_naming_key(key: ec.EllipticCurvePrivateKey, mangle: object) -> None:
    good = signing.sign_bytes(key, DATA)
    assert callable(mangle)
    with pytest.raises(VerificationError) as info:
        signing.verify_bytes(key.public_key(), DATA, mangle(good), "bundle.tar.zst.sig")
    expected = fingerprint(key.public_key())[:16]
    assert str(info.value) == (f"bundle.tar.zst.sig: signature does not verify with key {expected}")


def test_other_key_fails(key: ec.EllipticCurvePrivateKey) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    sig = signing.sign_bytes(other, DATA)
    with pytest.raises(VerificationError):
        signing.verify_bytes(key.public_key(), DATA, sig, "x")


def test_wrong_digest_length_is_a_programming_error(key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(ValueError, match="32-byte"):
        signing.sign_digest(key, b"\x00" * 48)


@pytest.mark.parametrize("size", [0, 1, signing.CHUNK, 2 * signing.CHUNK + 123])
def test_sha256_file_streams_any_size(tmp_path: Path, size: int) -> None:
    path = tmp_path / "blob"
    data = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    path.write_bytes(data)
    assert signing.sha256_file(path) == hashlib.sha256(data).digest()


def test_write_detached_is_what_sha256sum_and_openssl_check(
    tmp_path: Path, key: ec.EllipticCurvePrivateKey, pems: tuple[Path, Path]
) -> None:
    bundle = tmp_path / "b.tar.zst"
    bundle.write_bytes(DATA)
    written = signing.write_detached(bundle, signing.sha256_file(bundle), key)
    sums, sig = tmp_path / "b.tar.zst.sha256", tmp_path / "b.tar.zst.sig"
    assert written == [sums, sig]
    assert sums.read_text() == f"{hashlib.sha256(DATA).hexdigest()}  b.tar.zst\n"
    check = subprocess.run(["sha256sum", "-c", sums.name], cwd=tmp_path, capture_output=True)
    assert check.returncode == 0, check.stderr
    assert openssl_verify(pems[1], bundle, sig)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_write_detached_without_key_writes_only_sha256(tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    bundle.write_bytes(DATA)
    (tmp_path / "b.sig").write_text("stale")
    assert signing.write_detached(bundle, hashlib.sha256(DATA).digest(), None) == [
        tmp_path / "b.sha256"
    ]
    # An older bundle's FILE.sig beside the new one would make verify blame the key (issue 16).
    assert not (tmp_path / "b.sig").exists()


def test_verify_detached(tmp_path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pub = key.public_key()
    bundle = tmp_path / "b.tar.zst"
    bundle.write_bytes(DATA)
    assert signing.verify_detached(bundle, pub) is None  # nothing to check yet
    signing.write_detached(bundle, signing.sha256_file(bundle), key)
    assert signing.verify_detached(bundle, pub) == hashlib.sha256(DATA).hexdigest()
    bundle.write_bytes(DATA[:-1] + b"?")
    # FILE.sha256 says what was written: a changed file is named damaged, not a key problem.
    with pytest.raises(VerificationError, match=r"b\.tar\.zst: damaged or altered"):
        signing.verify_detached(bundle, pub)
    (tmp_path / "b.tar.zst.sha256").unlink()
    with pytest.raises(VerificationError, match=r"b\.tar\.zst\.sig: signature does not verify"):
        signing.verify_detached(bundle, pub)


def test_verify_detached_uses_given_digest(tmp_path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    bundle = tmp_path / "b"
    bundle.write_bytes(DATA)
    signing.write_detached(bundle, signing.sha256_file(bundle), key)
    with pytest.raises(VerificationError, match=r"b: damaged or altered"):
        signing.verify_detached(bundle, key.public_key(), digest=hashlib.sha256(b"x").digest())


def test_verify_detached_rejects_edited_sha256_and_huge_sig(
    tmp_path: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    bundle = tmp_path / "b"
    bundle.write_bytes(DATA)
    signing.write_detached(bundle, signing.sha256_file(bundle), key)
    sums = tmp_path / "b.sha256"
    for edited in ("0" * 64 + "  b\n", "\n", "0" * (64 << 20)):  # the last: 64 MiB, read capped
        sums.write_text(edited)
        with pytest.raises(IntegrityError, match=r"b\.sha256: recorded digest"):
            signing.verify_detached(bundle, key.public_key())
    sums.unlink()  # no sidecar: the signature alone decides
    assert signing.verify_detached(bundle, key.public_key()) is not None
    (tmp_path / "b.sig").write_bytes(b"A" * 100_000)
    with pytest.raises(VerificationError, match="too large"):
        signing.verify_detached(bundle, key.public_key())


def test_an_unsigned_bundle_never_imports_cryptography(tmp_path: Path) -> None:
    """An export without --key imports the export's modules and writes FILE.sha256 through
    this module; cryptography (~40 ms of CPU with the GIL held) waits for a key."""
    bundle = tmp_path / "b.tar.zst"
    bundle.write_bytes(b"bundle")
    code = (
        "import hashlib, sys\n"
        "from pathlib import Path\n"
        "import mirror.cli.export, mirror.export, mirror.describe, mirror.stores.bundle\n"
        "from mirror import signing\n"
        f"path = Path({str(bundle)!r})\n"
        "signing.write_detached(path, hashlib.sha256(path.read_bytes()).digest(), None)\n"
        "print('cryptography' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "False", run.stderr
    assert (
        (tmp_path / "b.tar.zst.sha256")
        .read_text()
        .startswith(hashlib.sha256(b"bundle").hexdigest())
    )
