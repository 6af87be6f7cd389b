"""The signature policy: `cosignKey` on a registry says its artifacts must be signed by it.

Checked at export, once the signatures have been found (companions.py): an artifact with
no `.sig`, a payload for another digest, a tampered payload or another key's signature is
exit 3, naming the artifact, before anything is written. The bundle then records, per
artifact, the key's fingerprint, and the keys themselves, so `verify` checks the same
signatures again offline, from the bundle alone. Keyless signatures (Fulcio, Rekor) need
the internet and are not accepted.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mirror.bundle.manifest import BundleManifest, ReferrerRecord
from mirror.discovery.interface import Found
from mirror.errors import VerificationError
from mirror.formats import cosign
from mirror.oci.descriptor import Descriptor
from mirror.stores.interface import Source

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey


def check_found(
    found: Sequence[Found],
    referrers: Sequence[ReferrerRecord],
    source_of: dict[str, Source],
) -> tuple[dict[str, str], dict[str, str]]:
    """Each policed artifact's signer fingerprint (by manifest digest), and the keys' PEM
    (by fingerprint). `source_of` reads a companion by its layout ref."""
    from mirror.keys import fingerprint, load_public_key, public_pem

    signed: dict[str, str] = {}
    keys: dict[str, str] = {}
    for f in found:
        if f.registry.cosign_key is None:
            continue
        key = load_public_key(Path(f.registry.cosign_key))
        fp = fingerprint(key)
        _check_one(f.ref, f.desc.digest, key, referrers, source_of)
        signed[f.desc.digest] = fp
        keys[fp] = public_pem(key).decode()
    return signed, keys


def check_bundle(manifest: BundleManifest, source: Source) -> None:
    """verify's offline pass: each recorded signature, again, with the recorded key."""
    if not any(a.signed_by for a in manifest.artifacts):
        return
    from cryptography.hazmat.primitives import serialization

    from mirror.keys import fingerprint

    pems = dict(manifest.cosign_keys)
    every = {r.layout_ref: source for r in manifest.referrers}
    for a in manifest.artifacts:
        if a.signed_by is None:
            continue
        pem = pems.get(a.signed_by)
        key = serialization.load_pem_public_key(pem.encode()) if pem else None
        if key is None or fingerprint(key) != a.signed_by:  # type: ignore[arg-type]
            raise VerificationError(f"{a.ref}: manifest.json does not hold the key it names")
        _check_one(a.ref, a.digest, key, manifest.referrers, every)  # type: ignore[arg-type]


def _check_one(
    ref: str,
    digest: str,
    key: EllipticCurvePublicKey,
    referrers: Sequence[ReferrerRecord],
    source_of: dict[str, Source],
) -> None:
    sigs = [r for r in referrers if r.subject == digest and (r.tag or "").endswith(".sig")]
    if not sigs:
        raise VerificationError(f"{ref}: no cosign signature; its registry requires one")
    failure: VerificationError | None = None
    for r in sigs:
        source = source_of[r.layout_ref]
        desc = Descriptor(r.media_type, r.digest, r.size)

        def read(layer: Descriptor, source: Source = source) -> bytes:
            with source.fetch(layer) as stream:
                return stream.read(layer.size + 1)

        try:
            cosign.check_signature(source.fetch_manifest(desc), digest, key, read, ref)
            return
        except VerificationError as exc:
            failure = exc
    assert failure is not None
    raise failure
