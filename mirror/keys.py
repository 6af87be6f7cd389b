"""ECDSA P-256 key files: cosign's encrypted format, and standard PKCS#8 for FIPS shops.

We write cosign's format so a key made by `mirror keygen` also works with `cosign sign-blob`,
and read PKCS#8 because scrypt and XSalsa20-Poly1305 are not FIPS-approved: a FIPS shop
protects its key with PBKDF2 and AES, as `openssl genpkey` does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import click
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from mirror.errors import FipsError, UsageError

COSIGN_PEM = "ENCRYPTED SIGSTORE PRIVATE KEY"
LEGACY_COSIGN_PEM = "ENCRYPTED COSIGN PRIVATE KEY"
_COSIGN_TYPES = (COSIGN_PEM, LEGACY_COSIGN_PEM)
_PKCS8_TYPES = ("PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "EC PRIVATE KEY")
SCRYPT_N = 65536
_SCRYPT_NS = (32768, 65536, 131072)  # what cosign (go-securesystemslib) accepts
_SCRYPT_R, _SCRYPT_P = 8, 1
_NONCE_SIZE = 24  # nacl.secret.SecretBox.NONCE_SIZE (XSalsa20-Poly1305)
PASSWORD_ENV = "MIRROR_KEY_PASSWORD"
PKCS8_HINT = (
    "FIPS mode needs a PKCS#8 key: openssl genpkey -algorithm EC "
    "-pkeyopt ec_paramgen_curve:P-256 -aes-256-cbc -out mirror.key"
)
_MAX_KEY_FILE = 64 * 1024  # a key file is a few hundred bytes; refuse to slurp anything huge
_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")

# DER encodings of the OIDs that make an encrypted PKCS#8 key FIPS-acceptable.
_OID_PBES2 = bytes.fromhex("06092a864886f70d01050d")
_OID_PBKDF2 = bytes.fromhex("06092a864886f70d01050c")
_OID_AES_PREFIX = bytes.fromhex("06096086480165030401")  # 2.16.840.1.101.3.4.1.x


def generate_keypair(out_dir: Path, name: str, password: bytes) -> tuple[Path, Path]:
    """Write NAME.key (cosign format, 0600) and NAME.pub (PKIX PEM); never overwrite."""
    if not password:
        raise UsageError("refusing to write a private key with an empty password")
    key_path, pub_path = out_dir / f"{name}.key", out_dir / f"{name}.pub"
    for path in (key_path, pub_path):
        if path.exists() or path.is_symlink():
            raise UsageError(f"{path} already exists; refusing to overwrite it")
    out_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    _write_new(key_path, encode_cosign_key(key, password), 0o600)
    try:
        _write_new(pub_path, public_pem(key.public_key()), 0o644)
    except BaseException:
        key_path.unlink(missing_ok=True)
        raise
    return key_path, pub_path


def encode_cosign_key(
    key: ec.EllipticCurvePrivateKey, password: bytes, *, n: int = SCRYPT_N
) -> bytes:
    """The PEM cosign writes: scrypt-derived key, nacl/secretbox over PKCS#8 DER."""
    pkcs8 = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    import nacl.secret  # only cosign keys need it: keep it off every other command's start
    import nacl.utils

    salt = os.urandom(32)
    nonce = nacl.utils.random(nacl.secret.SecretBox.NONCE_SIZE)
    box = nacl.secret.SecretBox(_scrypt(password, salt, n))
    body = {
        "kdf": {
            "name": "scrypt",
            "params": {"N": n, "r": _SCRYPT_R, "p": _SCRYPT_P},
            "salt": _b64(salt),
        },
        "cipher": {"name": "nacl/secretbox", "nonce": _b64(nonce)},
        "ciphertext": _b64(box.encrypt(pkcs8, nonce).ciphertext),
    }
    return _pem(COSIGN_PEM, json.dumps(body, separators=(",", ":")).encode())


def public_pem(pub: ec.EllipticCurvePublicKey) -> bytes:
    return pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_is_encrypted(path: Path) -> bool:
    """Whether loading PATH needs a password, so a caller prompts only when it must."""
    pem_type, _ = _read_pem(path, "private key")
    return pem_type in _COSIGN_TYPES or pem_type == "ENCRYPTED PRIVATE KEY"


def load_private_key(
    path: Path, password: bytes | None, *, fips: bool = False
) -> ec.EllipticCurvePrivateKey:
    """Read a cosign or PKCS#8 P-256 private key; in FIPS mode only PBKDF2+AES PKCS#8."""
    pem_type, data = _read_pem(path, "private key")
    if pem_type in _COSIGN_TYPES:
        if fips:
            raise FipsError(
                f"{path} is a cosign key (scrypt + nacl/secretbox, not FIPS-approved); "
                + PKCS8_HINT
            )
        key: object = _load_cosign(path, data, password)
    elif pem_type in _PKCS8_TYPES:
        if fips:
            _check_fips_pkcs8(path, pem_type, data)
        key = _load_pkcs8(path, pem_type, data, password)
    else:
        raise UsageError(
            f"{path}: unsupported PEM type {pem_type!r}; expected a cosign key "
            f"({COSIGN_PEM}) or a PKCS#8 key (PRIVATE KEY, ENCRYPTED PRIVATE KEY)"
        )
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not _is_p256(key.curve):
        raise UsageError(f"{path}: found {_describe(key)}; mirror signs only with ECDSA P-256")
    return key


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    """Read a PKIX PEM P-256 public key; a private key here is a mistake worth naming."""
    pem_type, data = _read_pem(path, "public key")
    if pem_type in _COSIGN_TYPES or pem_type in _PKCS8_TYPES:
        raise UsageError(f"{path} is a private key; pass the public key (.pub) instead")
    if pem_type != "PUBLIC KEY":
        raise UsageError(f"{path}: unsupported PEM type {pem_type!r}; expected PUBLIC KEY")
    try:
        pub = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{path}: not a readable public key ({exc})") from None
    if not isinstance(pub, ec.EllipticCurvePublicKey) or not _is_p256(pub.curve):
        raise UsageError(f"{path}: found {_describe(pub)}; mirror verifies only ECDSA P-256")
    return pub


def fingerprint(pub: ec.EllipticCurvePublicKey) -> str:
    """Hex SHA-256 of the SubjectPublicKeyInfo DER: stable across PEM line wrapping."""
    der = pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def key_password(*, confirm: bool = False) -> bytes:
    """The password from the environment, else a no-echo prompt; never from an argument.

    Its bytes as they were set, as cosign takes them: a password set in a Latin-1 locale
    is not UTF-8, and Python reads it with surrogate escapes that `str.encode()` refuses."""
    env = os.environ.get(PASSWORD_ENV)
    if env is not None:
        return os.fsencode(env)
    if not sys.stdin.isatty():
        raise UsageError(f"no key password: set {PASSWORD_ENV} or run in a terminal")
    value = click.prompt(
        "Password for the private key",
        hide_input=True,
        confirmation_prompt=confirm,
        err=True,
    )
    return str(value).encode("utf-8", "surrogateescape")


def _load_cosign(path: Path, data: bytes, password: bytes | None) -> object:
    if password is None:
        raise UsageError(f"{path} is encrypted: set {PASSWORD_ENV} or run in a terminal")
    import nacl.exceptions
    import nacl.secret

    body = _parse_cosign_body(path, data)
    salt, nonce, ciphertext, n = body
    try:
        pkcs8 = nacl.secret.SecretBox(_scrypt(password, salt, n)).decrypt(ciphertext, nonce)
    except nacl.exceptions.CryptoError:
        raise UsageError(f"wrong password for {path}") from None
    try:
        return serialization.load_der_private_key(pkcs8, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise UsageError(f"{path}: decrypted key is not a PKCS#8 private key") from None


def _parse_cosign_body(path: Path, data: bytes) -> tuple[bytes, bytes, bytes, int]:
    """Validate the JSON envelope strictly: a tampered KDF is refused, not obeyed."""
    try:
        raw = _pem_body(data)
        doc: Any = json.loads(raw)
        kdf, cipher = doc["kdf"], doc["cipher"]
        params = kdf["params"]
        if kdf["name"] != "scrypt" or cipher["name"] != "nacl/secretbox":
            raise UsageError(
                f"{path}: unsupported cosign key algorithms {kdf['name']!r}/{cipher['name']!r}"
            )
        n, r, p = params["N"], params["r"], params["p"]
        salt = base64.b64decode(kdf["salt"], validate=True)
        nonce = base64.b64decode(cipher["nonce"], validate=True)
        ciphertext = base64.b64decode(doc["ciphertext"], validate=True)
    except UsageError:
        raise
    except (ValueError, KeyError, TypeError, StopIteration):
        raise UsageError(f"{path}: damaged cosign key (bad JSON envelope)") from None
    if n not in _SCRYPT_NS or (r, p) != (_SCRYPT_R, _SCRYPT_P):
        raise UsageError(f"{path}: unsupported scrypt parameters N={n} r={r} p={p}")
    if len(nonce) != _NONCE_SIZE or not salt:
        raise UsageError(f"{path}: damaged cosign key (bad salt or nonce)")
    return salt, nonce, ciphertext, int(n)


def _load_pkcs8(path: Path, pem_type: str, data: bytes, password: bytes | None) -> object:
    encrypted = pem_type == "ENCRYPTED PRIVATE KEY" or b"Proc-Type: 4,ENCRYPTED" in data
    if encrypted and password is None:
        raise UsageError(f"{path} is encrypted: set {PASSWORD_ENV} or run in a terminal")
    try:
        return serialization.load_pem_private_key(data, password if encrypted else None)
    except UnsupportedAlgorithm as exc:
        raise UsageError(f"{path}: unsupported key algorithm ({exc})") from None
    except (ValueError, TypeError):
        if encrypted:
            raise UsageError(f"wrong password for {path}") from None
        raise UsageError(f"{path}: damaged or unsupported private key") from None


def _check_fips_pkcs8(path: Path, pem_type: str, data: bytes) -> None:
    """PBES2 with PBKDF2 and AES only: openssl can also wrap PKCS#8 with scrypt or DES."""
    if b"Proc-Type: 4,ENCRYPTED" in data:
        raise FipsError(f"{path} uses OpenSSL's legacy MD5-based encryption; " + PKCS8_HINT)
    if pem_type != "ENCRYPTED PRIVATE KEY":
        return  # unencrypted: no key-protection algorithm to judge
    try:
        alg = _first_der_element(_der_contents(_pem_der(data)))
    except ValueError:
        raise UsageError(f"{path}: damaged encrypted PKCS#8 key") from None
    if not (_OID_PBES2 in alg and _OID_PBKDF2 in alg and _OID_AES_PREFIX in alg):
        raise FipsError(f"{path} is not protected with PBKDF2 and AES; " + PKCS8_HINT)


def _der_contents(der: bytes) -> bytes:
    """The contents of the outer DER SEQUENCE."""
    if not der or der[0] != 0x30:
        raise ValueError("not a SEQUENCE")
    start, length = _der_length(der, 1)
    return der[start : start + length]


def _first_der_element(der: bytes) -> bytes:
    if not der:
        raise ValueError("empty")
    start, length = _der_length(der, 1)
    if start + length > len(der):
        raise ValueError("truncated")
    return der[: start + length]


def _der_length(der: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(der):
        raise ValueError("truncated")
    first = der[pos]
    if first < 0x80:
        return pos + 1, first
    count = first & 0x7F
    if count == 0 or count > 4 or pos + 1 + count > len(der):
        raise ValueError("bad length")
    return pos + 1 + count, int.from_bytes(der[pos + 1 : pos + 1 + count], "big")


def _read_pem(path: Path, what: str) -> tuple[str, bytes]:
    """The file's bytes and its first PEM block type; missing or oversize is a usage error."""
    try:
        with path.open("rb") as f:
            data = f.read(_MAX_KEY_FILE + 1)
    except FileNotFoundError:
        raise UsageError(f"{what} {path} not found") from None
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > _MAX_KEY_FILE:
        raise UsageError(f"{path} is too large to be a {what}")
    blocks = _PEM_BEGIN.findall(data)
    if not blocks:
        raise UsageError(f"{path} is not a PEM file; expected a {what}")
    if len(blocks) > 1:  # which one is meant? a reader taking the first may not be ours
        raise UsageError(f"{path} holds {len(blocks)} PEM blocks; give a file with one {what}")
    return blocks[0].decode(), data


def _pem_body(data: bytes) -> bytes:
    """The base64-decoded body of the first PEM block (our own parser: cryptography
    refuses PEM types it does not know, such as cosign's)."""
    lines = data.decode("ascii").splitlines()
    begin = next(i for i, line in enumerate(lines) if line.startswith("-----BEGIN "))
    end = next(i for i in range(begin + 1, len(lines)) if lines[i].startswith("-----END "))
    body = "".join(line.strip() for line in lines[begin + 1 : end] if ":" not in line)
    return base64.b64decode(body, validate=True)


def _pem_der(data: bytes) -> bytes:
    try:
        return _pem_body(data)
    except (StopIteration, UnicodeDecodeError, binascii.Error) as exc:
        raise ValueError("bad PEM") from exc


def _pem(pem_type: str, body: bytes) -> bytes:
    b64 = base64.b64encode(body).decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    text = "\n".join([f"-----BEGIN {pem_type}-----", *lines, f"-----END {pem_type}-----", ""])
    return text.encode()


def _scrypt(password: bytes, salt: bytes, n: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=_SCRYPT_R, p=_SCRYPT_P).derive(password)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _is_p256(curve: ec.EllipticCurve) -> bool:
    return isinstance(curve, ec.SECP256R1)


def _describe(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"an EC {key.curve.name} key"
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"an RSA-{key.key_size} key"
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "an Ed25519 key"
    if isinstance(key, ed448.Ed448PrivateKey | ed448.Ed448PublicKey):
        return "an Ed448 key"
    return f"a {type(key).__name__}"


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create PATH exclusively with MODE from the start: no window where a key is 0644."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise UsageError(f"{path} already exists; refusing to overwrite it") from None
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
