"""Key files: cosign's format checked byte by byte, and interop with real openssl."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import nacl.secret
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mirror import keys
from mirror.errors import FipsError, UsageError

PASSWORD = b"correct horse battery staple"
FIPS_HINT = "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -aes-256-cbc"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One keygen for the module: scrypt at N=65536 is the slow part."""
    out = tmp_path_factory.mktemp("keys")
    old = os.umask(0)  # prove 0600 comes from os.open, not from a friendly umask
    try:
        return keys.generate_keypair(out, "mirror", PASSWORD)
    finally:
        os.umask(old)


def pem_json(path: Path) -> tuple[str, dict[str, Any]]:
    """Our own reading of the PEM: the header line and the JSON body."""
    lines = path.read_text().splitlines()
    body = base64.b64decode("".join(lines[1:-1]))
    return lines[0], json.loads(body)


def cosign_pem(
    key: ec.EllipticCurvePrivateKey,
    password: bytes,
    *,
    n: int,
    header: str = "ENCRYPTED SIGSTORE PRIVATE KEY",
    r: int = 8,
) -> bytes:
    """Build a cosign key independently of mirror.keys (hashlib.scrypt, not cryptography)."""
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    salt, nonce = os.urandom(32), os.urandom(24)
    box_key = hashlib.scrypt(password, salt=salt, n=n, r=r, p=1, dklen=32, maxmem=512 << 20)
    ct = nacl.secret.SecretBox(box_key).encrypt(der, nonce).ciphertext
    doc = {
        "kdf": {
            "name": "scrypt",
            "params": {"N": n, "r": r, "p": 1},
            "salt": base64.b64encode(salt).decode(),
        },
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(ct).decode(),
    }
    b64 = base64.b64encode(json.dumps(doc).encode()).decode()
    body = "\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
    return f"-----BEGIN {header}-----\n{body}\n-----END {header}-----\n".encode()


def openssl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", *args], capture_output=True, check=True)


# --- keygen ---------------------------------------------------------------------------


def test_keygen_round_trip(pair: tuple[Path, Path]) -> None:
    key_path, pub_path = pair
    assert (key_path.name, pub_path.name) == ("mirror.key", "mirror.pub")
    key = keys.load_private_key(key_path, PASSWORD)
    pub = keys.load_public_key(pub_path)
    assert key.public_key().public_numbers() == pub.public_numbers()
    assert isinstance(key.curve, ec.SECP256R1)


def test_a_key_file_with_two_pem_blocks_is_refused(pair: tuple[Path, Path], tmp_path: Path) -> None:
    """Which key is meant? cryptography and openssl take the first block; a reviewer
    reading the file may see the second. One block, or a usage error naming the count."""
    key_path, pub_path = pair
    other = keys.generate_keypair(tmp_path, "other", PASSWORD)
    for path, extra, load in [
        (pub_path, other[1], lambda p: keys.load_public_key(p)),
        (key_path, other[0], lambda p: keys.load_private_key(p, PASSWORD)),
    ]:
        doubled = tmp_path / f"two-{path.name}"
        doubled.write_bytes(path.read_bytes() + extra.read_bytes())
        with pytest.raises(UsageError, match="holds 2 PEM blocks"):
            load(doubled)


def test_key_file_mode_is_0600_even_with_umask_0(pair: tuple[Path, Path]) -> None:
    assert stat.S_IMODE(pair[0].stat().st_mode) == 0o600


def test_public_pem_loads_with_openssl_and_fingerprint_matches(pair: tuple[Path, Path]) -> None:
    pub_path = pair[1]
    openssl("pkey", "-pubin", "-in", str(pub_path), "-noout")
    der = openssl("pkey", "-pubin", "-in", str(pub_path), "-outform", "DER").stdout
    pub = keys.load_public_key(pub_path)
    assert keys.fingerprint(pub) == hashlib.sha256(der).hexdigest()
    assert pub_path.read_text().startswith("-----BEGIN PUBLIC KEY-----\n")


def test_cosign_format_decrypts_independently(pair: tuple[Path, Path]) -> None:
    key_path = pair[0]
    header, doc = pem_json(key_path)
    assert header == "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"
    assert key_path.read_text().endswith("-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    assert all(len(line) <= 64 for line in key_path.read_text().splitlines()[1:-1])
    assert doc["kdf"]["name"] == "scrypt"
    assert doc["kdf"]["params"] == {"N": 65536, "r": 8, "p": 1}
    assert doc["cipher"]["name"] == "nacl/secretbox"
    salt = base64.b64decode(doc["kdf"]["salt"])
    nonce = base64.b64decode(doc["cipher"]["nonce"])
    assert (len(salt), len(nonce)) == (32, 24)
    box_key = hashlib.scrypt(PASSWORD, salt=salt, n=65536, r=8, p=1, dklen=32, maxmem=256 << 20)
    der = nacl.secret.SecretBox(box_key).decrypt(base64.b64decode(doc["ciphertext"]), nonce)
    decrypted = serialization.load_der_private_key(der, None)
    expected = keys.load_public_key(pair[1]).public_numbers()
    assert isinstance(decrypted, ec.EllipticCurvePrivateKey)
    assert decrypted.public_key().public_numbers() == expected


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "k.pub").write_text("keep me")
    with pytest.raises(UsageError, match=r"k\.pub already exists"):
        keys.generate_keypair(tmp_path, "k", PASSWORD)
    assert not (tmp_path / "k.key").exists()
    assert (tmp_path / "k.pub").read_text() == "keep me"
    (tmp_path / "j.key").write_text("old")
    with pytest.raises(UsageError, match=r"j\.key already exists"):
        keys.generate_keypair(tmp_path, "j", PASSWORD)
    assert (tmp_path / "j.key").read_text() == "old"


def test_keygen_refuses_empty_password(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="empty password"):
        keys.generate_keypair(tmp_path, "k", b"")
    assert list(tmp_path.iterdir()) == []


# --- reading cosign keys ------------------------------------------------------------


@pytest.mark.parametrize("n", [32768, 131072])
def test_cosign_keys_with_other_scrypt_costs_load(tmp_path: Path, n: int) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "c.key"
    path.write_bytes(cosign_pem(key, b"pw", n=n))
    loaded = keys.load_private_key(path, b"pw")
    assert loaded.private_numbers() == key.private_numbers()


def test_legacy_cosign_header_loads(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "legacy.key"
    path.write_bytes(cosign_pem(key, b"pw", n=32768, header="ENCRYPTED COSIGN PRIVATE KEY"))
    assert keys.load_private_key(path, b"pw").private_numbers() == key.private_numbers()
    assert keys.key_is_encrypted(path)


@pytest.mark.parametrize(("n", "r"), [(16384, 8), (1 << 20, 8), (65536, 1)])
def test_unsupported_scrypt_parameters_refused(tmp_path: Path, n: int, r: int) -> None:
    """A tampered cost is refused before any scrypt runs (N=2^20 would eat 1 GiB)."""
    path = tmp_path / "c.key"
    path.write_bytes(cosign_pem(ec.generate_private_key(ec.SECP256R1()), b"pw", n=1024, r=r))
    header, doc = pem_json(path)
    doc["kdf"]["params"]["N"] = n
    body = base64.b64encode(json.dumps(doc).encode()).decode()
    path.write_text(f"{header}\n{body}\n{header.replace('BEGIN', 'END')}\n")
    with pytest.raises(UsageError, match="unsupported scrypt parameters"):
        keys.load_private_key(path, b"pw")


def test_wrong_password_refused_without_echo(pair: tuple[Path, Path]) -> None:
    with pytest.raises(UsageError, match="wrong password for") as info:
        keys.load_private_key(pair[0], b"not-the-password-xyz")
    assert "not-the-password-xyz" not in str(info.value)
    with pytest.raises(UsageError, match="is encrypted"):
        keys.load_private_key(pair[0], None)


def test_corrupt_ciphertext_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.key"
    path.write_bytes(cosign_pem(ec.generate_private_key(ec.SECP256R1()), b"pw", n=32768))
    header, doc = pem_json(path)
    ct = bytearray(base64.b64decode(doc["ciphertext"]))
    ct[40] ^= 1
    doc["ciphertext"] = base64.b64encode(bytes(ct)).decode()
    body = base64.b64encode(json.dumps(doc).encode()).decode()
    path.write_text(f"{header}\n{body}\n{header.replace('BEGIN', 'END')}\n")
    with pytest.raises(UsageError, match="wrong password"):
        keys.load_private_key(path, b"pw")


@pytest.mark.parametrize(
    "body", [b"not json", b'{"kdf": {}}', b'{"kdf":{"name":"argon2"},"cipher":{"name":"x"}}']
)
def test_damaged_cosign_envelope_refused(tmp_path: Path, body: bytes) -> None:
    path = tmp_path / "c.key"
    b64 = base64.b64encode(body).decode()
    path.write_text(f"-----BEGIN {keys.COSIGN_PEM}-----\n{b64}\n-----END {keys.COSIGN_PEM}-----\n")
    with pytest.raises(UsageError, match=r"damaged|unsupported"):
        keys.load_private_key(path, b"pw")


def test_non_p256_cosign_key_refused(tmp_path: Path) -> None:
    path = tmp_path / "p384.key"
    path.write_bytes(cosign_pem(ec.generate_private_key(ec.SECP384R1()), b"pw", n=32768))
    with pytest.raises(UsageError, match=r"found an EC secp384r1 key.*P-256"):
        keys.load_private_key(path, b"pw")


# --- standard PKCS#8 keys from real openssl ------------------------------------------


@pytest.fixture(scope="module")
def openssl_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("openssl")
    ec_args = ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
    openssl(*ec_args, "-out", str(d / "plain.key"))
    openssl(*ec_args, "-aes-256-cbc", "-pass", "pass:s3cret", "-out", str(d / "enc.key"))
    openssl(
        "pkcs8", "-topk8", "-scrypt", "-in", str(d / "plain.key"), "-passout", "pass:s3cret",
        "-out", str(d / "scrypt.key"),
    )  # fmt: skip
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
            "-out", str(d / "rsa.key"))  # fmt: skip
    openssl("pkey", "-in", str(d / "plain.key"), "-pubout", "-out", str(d / "plain.pub"))
    openssl("pkey", "-in", str(d / "rsa.key"), "-pubout", "-out", str(d / "rsa.pub"))
    return {p.name: p for p in d.iterdir()}


def test_openssl_plain_and_encrypted_keys_load(openssl_keys: dict[str, Path]) -> None:
    plain = keys.load_private_key(openssl_keys["plain.key"], None)
    pub = keys.load_public_key(openssl_keys["plain.pub"])
    assert plain.public_key().public_numbers() == pub.public_numbers()
    assert not keys.key_is_encrypted(openssl_keys["plain.key"])
    assert keys.key_is_encrypted(openssl_keys["enc.key"])
    assert isinstance(keys.load_private_key(openssl_keys["enc.key"], b"s3cret").curve, ec.SECP256R1)
    with pytest.raises(UsageError, match="wrong password for"):
        keys.load_private_key(openssl_keys["enc.key"], b"nope")


def test_openssl_rsa_key_refused(openssl_keys: dict[str, Path]) -> None:
    with pytest.raises(UsageError, match=r"found an RSA-2048 key"):
        keys.load_private_key(openssl_keys["rsa.key"], None)
    with pytest.raises(UsageError, match=r"found an RSA-2048 key"):
        keys.load_public_key(openssl_keys["rsa.pub"])


def test_fips_refuses_cosign_key_with_pkcs8_hint(pair: tuple[Path, Path]) -> None:
    with pytest.raises(FipsError, match="PKCS#8") as info:
        keys.load_private_key(pair[0], PASSWORD, fips=True)
    assert FIPS_HINT in str(info.value)


def test_fips_accepts_pbkdf2_aes_pkcs8(openssl_keys: dict[str, Path]) -> None:
    key = keys.load_private_key(openssl_keys["enc.key"], b"s3cret", fips=True)
    assert isinstance(key.curve, ec.SECP256R1)
    assert keys.load_private_key(openssl_keys["plain.key"], None, fips=True)


def test_fips_refuses_scrypt_protected_pkcs8(openssl_keys: dict[str, Path]) -> None:
    assert keys.load_private_key(openssl_keys["scrypt.key"], b"s3cret")  # fine outside FIPS
    with pytest.raises(FipsError, match="PBKDF2 and AES"):
        keys.load_private_key(openssl_keys["scrypt.key"], b"s3cret", fips=True)


# --- public keys and odd files ------------------------------------------------------


def test_load_public_key_refuses_missing_private_and_garbage(
    tmp_path: Path, pair: tuple[Path, Path]
) -> None:
    with pytest.raises(UsageError, match="not found"):
        keys.load_public_key(tmp_path / "absent.pub")
    with pytest.raises(UsageError, match="is a private key"):
        keys.load_public_key(pair[0])
    (tmp_path / "junk.pub").write_text("hello")
    with pytest.raises(UsageError, match="not a PEM file"):
        keys.load_public_key(tmp_path / "junk.pub")
    (tmp_path / "cert.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"
    )
    with pytest.raises(UsageError, match="unsupported PEM type 'CERTIFICATE'"):
        keys.load_public_key(tmp_path / "cert.pem")


def test_load_private_key_refuses_public_key_and_missing(
    tmp_path: Path, pair: tuple[Path, Path]
) -> None:
    with pytest.raises(UsageError, match="unsupported PEM type 'PUBLIC KEY'"):
        keys.load_private_key(pair[1], None)
    with pytest.raises(UsageError, match="not found"):
        keys.load_private_key(tmp_path / "absent.key", b"x")


# --- password source ----------------------------------------------------------------


def test_key_password_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIRROR_KEY_PASSWORD", "from-env")
    assert keys.key_password() == b"from-env"


def test_a_password_that_is_not_utf8_is_its_bytes(tmp_path: Path) -> None:
    """Set in a Latin-1 locale, `caf\\xe9` was an internal error in keygen and export; it
    is the key's password as those bytes, as cosign takes it."""
    env = {**os.environ, "MIRROR_KEY_PASSWORD": os.fsdecode(b"caf\xe9")}
    made = subprocess.run(
        [sys.executable, "-m", "mirror", "keygen", "--output-dir", str(tmp_path), "--name", "k"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert keys.load_private_key(tmp_path / "k.key", b"caf\xe9") is not None
    with pytest.raises(UsageError, match="wrong password"):
        keys.load_private_key(tmp_path / "k.key", "café".encode())


def test_key_password_without_tty_is_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MIRROR_KEY_PASSWORD", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(UsageError, match="set MIRROR_KEY_PASSWORD or run in a terminal"):
        keys.key_password()


def test_key_password_prompts_without_echo_on_tty(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    seen: dict[str, Any] = {}

    def fake_prompt(text: str, **kwargs: Any) -> str:
        seen.update(kwargs)
        return "typed"

    monkeypatch.delenv("MIRROR_KEY_PASSWORD", raising=False)
    monkeypatch.setattr(sys, "stdin", Tty())
    monkeypatch.setattr(click, "prompt", fake_prompt)
    assert keys.key_password(confirm=True) == b"typed"
    assert seen["hide_input"] is True and seen["confirmation_prompt"] is True
    assert seen["err"] is True  # the prompt must not pollute --json stdout
