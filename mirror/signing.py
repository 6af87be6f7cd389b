"""ECDSA P-256 over SHA-256, in the form `cosign sign-blob --key` writes.

One algorithm pair, always: it is FIPS-approved, so FIPS mode changes which keys we accept,
never how we sign. We sign a digest that the caller already computed, so a 200 GB bundle is
hashed once, while it is written.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mirror.bundle.parts import SHA256_SIDECAR, SIG_SIDECAR, open_bundle, sidecar
from mirror.errors import IntegrityError, VerificationError
from mirror.streams import Staged, read_small_file

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

CHUNK = 1024 * 1024
_MAX_SIG_FILE = 4096  # a base64 DER P-256 signature is under 100 bytes


def ecdsa() -> Any:
    """ECDSA over a SHA-256 digest. cryptography is imported here, where a key is in play:
    an unsigned export writes FILE.sha256 through this module and needs none of it (its
    import was ~40 ms of CPU with the GIL held, beside the copy's workers)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    return ec.ECDSA(Prehashed(hashes.SHA256()))


def sign_digest(key: ec.EllipticCurvePrivateKey, digest: bytes) -> bytes:
    """Base64 (ASCII, no newline) of the DER signature over an already computed SHA-256."""
    _check_digest(digest)
    return base64.b64encode(key.sign(digest, ecdsa()))


def sign_bytes(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """Exactly what `cosign sign-blob --key` prints for DATA."""
    return sign_digest(key, hashlib.sha256(data).digest())


def verify_digest(
    pub: ec.EllipticCurvePublicKey, digest: bytes, signature_b64: bytes, what: str
) -> None:
    """Return if SIGNATURE_B64 signs DIGEST; raise naming WHAT and the key otherwise."""
    from mirror.keys import fingerprint  # cryptography, with a key in play

    _check_digest(digest)
    failure = VerificationError(
        f"{what}: signature does not verify with key {fingerprint(pub)[:16]}"
    )
    try:
        # Line breaks anywhere: `base64` wraps at 76 columns; Go's decoder ignores them too.
        der = base64.b64decode(b"".join(signature_b64.split()), validate=True)
    except (binascii.Error, ValueError):
        raise failure from None
    if not der:
        raise failure
    from cryptography.exceptions import InvalidSignature

    try:
        pub.verify(der, digest, ecdsa())
    except (InvalidSignature, ValueError):
        raise failure from None


def verify_bytes(
    pub: ec.EllipticCurvePublicKey, data: bytes, signature_b64: bytes, what: str
) -> None:
    verify_digest(pub, hashlib.sha256(data).digest(), signature_b64, what)


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> bytes:
    """The raw SHA-256 of a file of any size, in bounded memory; `on_bytes` for progress."""
    h = hashlib.sha256()
    with open_bundle(path) as f:  # a split bundle's parts, read as the one file they are
        while chunk := f.read(CHUNK):
            h.update(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    return h.digest()


def write_detached(
    path: Path,
    digest: bytes,
    key: ec.EllipticCurvePrivateKey | None,
    staged: Staged | None = None,
) -> list[Path]:
    """PATH.sha256 (sha256sum format) and, with a key, PATH.sig (cosign's form). With
    `staged`, published with PATH itself by the caller: never an old sidecar beside a new
    PATH; without, published now, together."""
    if staged is None:
        with Staged().publishing() as own:
            return write_detached(path, digest, key, own)
    _check_digest(digest)
    sums = sidecar(path, SHA256_SIDECAR)
    with staged.file(sums) as fh:
        fh.write(f"{digest.hex()}  {path.name}\n".encode())
    written = [sums]
    sig = sidecar(path, SIG_SIDECAR)
    if key is not None:
        signature = sign_digest(key, digest)
        with staged.file(sig) as fh:
            fh.write(signature)
        written.append(sig)
    else:  # an older bundle's FILE.sig beside this one would make verify blame the key
        staged.remove(sig)
    return written


def verify_detached(
    path: Path, pub: ec.EllipticCurvePublicKey, *, digest: bytes | None = None
) -> str | None:
    """Check PATH.sig (and PATH.sha256 when present); None when there is no PATH.sig.

    Pass DIGEST when the caller already hashed PATH, to avoid a second pass over it.
    """
    sig_path = sidecar(path, SIG_SIDECAR)
    try:
        signature = read_small_file(sig_path, _MAX_SIG_FILE, found=True)
    except OSError as exc:  # a folder, a FIFO, a device: not what signs a bundle
        raise VerificationError(f"{sig_path}: not a signature ({exc.strerror or exc})") from None
    if signature is None:
        return None
    if len(signature) > _MAX_SIG_FILE:
        raise VerificationError(f"{sig_path}: too large to be a signature")
    if digest is None:
        digest = sha256_file(path)
    recorded = _recorded_digest(path)
    try:
        verify_digest(pub, digest, signature, str(sig_path))
    except VerificationError:
        if recorded is not None and recorded != digest.hex():
            # The file is not what was written: say so, instead of blaming the key.
            raise IntegrityError(
                f"{path}: damaged or altered: its sha256 differs from {path.name}.sha256 "
                "written beside it"
            ) from None
        raise
    if recorded is not None and recorded != digest.hex():
        # A good signature over a file PATH.sha256 disagrees with: the sidecar was edited.
        raise IntegrityError(f"{path}.sha256: recorded digest does not match {path.name}")
    return digest.hex()


def check_recorded(path: Path, digest: bytes) -> None:
    """PATH.sha256, when present and no PATH.sig was checked: what it records must be what
    was just hashed (unsigned, it proves only a clean copy; a wrong one is still a lie)."""
    recorded = _recorded_digest(path)
    if recorded is not None and recorded != digest.hex():
        raise IntegrityError(
            f"{path}: damaged or altered: its sha256 differs from {path.name}.sha256 beside it"
        )


def recorded_digest(path: Path) -> str | None:
    """The hex digest PATH.sha256 records, or None when there is no such file."""
    return _recorded_digest(path)


def _recorded_digest(path: Path) -> str | None:
    """What PATH.sha256 says, if it is there; a sidecar is one line, never read whole."""
    sums = sidecar(path, SHA256_SIDECAR)
    try:
        data = read_small_file(sums, _MAX_SIG_FILE, found=True)
    except OSError as exc:
        raise VerificationError(f"{sums}: not a checksum file ({exc.strerror or exc})") from None
    if data is None:
        return None
    text = data[:_MAX_SIG_FILE].decode("ascii", "replace")
    return text.split(maxsplit=1)[0].lower() if text.strip() else ""


def _check_digest(digest: bytes) -> None:
    if len(digest) != hashlib.sha256().digest_size:
        raise ValueError(f"expected a 32-byte SHA-256 digest, got {len(digest)} bytes")
