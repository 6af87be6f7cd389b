"""One trust path for `verify`, `import` and (later) `serve`: a policy and one verdict.

Whatever `verify` refuses, `import` refuses: both take the verdict of the same full pass
(bundle/verify.py: FILE.sig over the file, the manifest's signature and schema, every
member's name, kind, size and digest, the OCI graph, the tail, the image closure). The
only shortcut is the memo of bundles this host already proved whole and that have not
changed since (bundle/memo.py); the manifest's signature is still checked every time.
This is where a bundle is verified.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mirror.bundle.manifest import BundleManifest
from mirror.bundle.memo import Proof, VerifiedMemo
from mirror.bundle.reader import BundleReader
from mirror.bundle.verify import VerifyResult, check_manifest, check_policy, verify_bundle

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

    from mirror.bundle.writer import ByteObserver as Observer


@dataclass(frozen=True)
class TrustPolicy:
    """What the far side demands of a bundle before it believes a byte of it."""

    key: EllipticCurvePublicKey | None = None
    allow_unsigned: bool = False
    fips: bool = False

    def check(self) -> None:
        """Refuse a policy that cannot be met (no key and no --allow-unsigned, ...)."""
        check_policy(self.key, allow_unsigned=self.allow_unsigned, fips=self.fips)

    @property
    def signer_id(self) -> str | None:
        if self.key is None:
            return None
        from mirror.keys import fingerprint  # cryptography: only once a key is in play

        return fingerprint(self.key)


@dataclass(frozen=True)
class Trusted:
    """A bundle that passed: its manifest, who signed it, and its identity."""

    manifest: BundleManifest
    signer: str | None
    digest: str  # sha256 of manifest.json's signed bytes
    result: VerifyResult | None  # None when the memo proved it whole before


def open_trusted(
    path: Path,
    policy: TrustPolicy,
    *,
    memo: Path | None = None,
    observer: Observer | None = None,
) -> Trusted:
    """The verdict, or a VerificationError naming the first thing that failed."""
    policy.check()
    data, signature = BundleReader(path).head()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    proof = Proof.of(path, policy.signer_id, policy.fips, digest)
    memos = VerifiedMemo(memo) if memo is not None else None
    proven = memos is not None and memos.holds(proof)
    result = None
    if not proven:
        result = verify_bundle(
            path, policy.key, allow_unsigned=policy.allow_unsigned, fips=policy.fips,
            observer=observer,
        )  # fmt: skip
        if result.manifest_digest != digest:  # the file changed between the two reads
            from mirror.errors import VerificationError

            raise VerificationError(f"{path}: changed while it was being verified")
    manifest, signer = check_manifest(
        data,
        signature,
        policy.key,
        allow_unsigned=policy.allow_unsigned,
        fips=policy.fips,
        schema_checked=True if result is not None else proven,
    )
    if memos is not None and not proven:
        memos.record(proof)
    return Trusted(manifest, signer, digest, result)
