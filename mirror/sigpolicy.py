"""The signature policy: `cosignKey` on a registry, or `imagesCosignKey` for the image
closure, says that what is taken from there must be signed by that key.

Checked at export, once the signatures have been found (companions.py): an artifact with
no signature, a payload for another digest, a tampered payload or another key's signature
is exit 3, naming the artifact, before anything is written. A signature is either cosign's
`.sig` companion (simple signing) or a sigstore bundle referrer (cosign 3): a message
signature or a DSSE in-toto statement. The bundle then records, per artifact or image, the
key's fingerprint, and the keys themselves, so `verify` checks the same signatures again
offline, from the bundle alone. Keyless signatures (Fulcio, Rekor) need the internet and
are refused as such (KeylessError).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mirror.bundle.manifest import BundleManifest, ReferrerRecord
from mirror.discovery.interface import Found
from mirror.errors import KeylessError, UsageError, VerificationError
from mirror.formats import cosign
from mirror.oci.descriptor import Descriptor
from mirror.stores.interface import Source

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

    from mirror.cache import BlobCache
    from mirror.discovery.upstream import Resolved
    from mirror.spec import BundleSpec


def require_referrers(spec: BundleSpec, referrers: bool) -> None:
    """A policy needs the signatures that `--no-referrers` would leave behind."""
    if referrers:
        return
    policed = [f"registry {r.name}" for r in spec.registries if r.cosign_key]
    if spec.images_cosign_key:
        policed.append("images: (imagesCosignKey)")
    if policed:
        raise UsageError(
            f"{policed[0]} requires cosign signatures, which --no-referrers would leave behind"
        )


def check_export(
    spec: BundleSpec,
    found: Sequence[Found],
    images: Sequence[Resolved],
    referrers: Sequence[ReferrerRecord],
    cache: BlobCache,
) -> tuple[dict[str, str], dict[str, str]]:
    """Both policies at export: each checked manifest's signer fingerprint (by digest), and
    the keys' PEM (by fingerprint). Companions are read again through the cache."""
    from mirror.cache import CacheFirst

    owners: dict[str, Source] = {f.ref: f.source for f in found}
    owners.update({i.layout_ref: i.source for i in images})
    sources: dict[str, Source] = {
        r.layout_ref: CacheFirst(cache, owners[r.owner]) for r in referrers if r.owner in owners
    }
    signed, keys = check_found(found, referrers, sources)
    if spec.images_cosign_key and images:
        fp, pem, key = _key(spec.images_cosign_key)
        for i in images:
            _check_one(f"image {i.need.ref}", i.desc.digest, key, referrers, sources)
            signed[i.desc.digest] = fp
        keys[fp] = pem
    return signed, keys


def _key(path: str) -> tuple[str, str, EllipticCurvePublicKey]:
    from mirror.keys import fingerprint, load_public_key, public_pem

    key = load_public_key(Path(path))
    return fingerprint(key), public_pem(key).decode(), key


def check_found(
    found: Sequence[Found],
    referrers: Sequence[ReferrerRecord],
    source_of: dict[str, Source],
) -> tuple[dict[str, str], dict[str, str]]:
    """Each policed artifact's signer fingerprint (by manifest digest), and the keys' PEM
    (by fingerprint). `source_of` reads a companion by its layout ref."""
    signed: dict[str, str] = {}
    keys: dict[str, str] = {}
    for f in found:
        if f.registry.cosign_key is None:
            continue
        fp, pem, key = _key(f.registry.cosign_key)
        _check_one(f.ref, f.desc.digest, key, referrers, source_of)
        signed[f.desc.digest] = fp
        keys[fp] = pem
    return signed, keys


def check_bundle(manifest: BundleManifest, source: Source) -> None:
    """verify's offline pass: each recorded signature, again, with the recorded key."""
    checked = [(a.ref, a.digest, a.signed_by) for a in manifest.artifacts]
    checked += [(f"image {i.ref}", i.digest, i.signed_by) for i in manifest.images]
    if not any(signer for _, _, signer in checked):
        return
    from cryptography.hazmat.primitives import serialization

    from mirror.keys import fingerprint

    pems = dict(manifest.cosign_keys)
    every = {r.layout_ref: source for r in manifest.referrers}
    for ref, digest, signer in checked:
        if signer is None:
            continue
        pem = pems.get(signer)
        key = serialization.load_pem_public_key(pem.encode()) if pem else None
        if key is None or fingerprint(key) != signer:  # type: ignore[arg-type]
            raise VerificationError(f"{ref}: manifest.json does not hold the key it names")
        _check_one(ref, digest, key, manifest.referrers, every)  # type: ignore[arg-type]


def _check_one(
    ref: str,
    digest: str,
    key: EllipticCurvePublicKey,
    referrers: Sequence[ReferrerRecord],
    source_of: dict[str, Source],
) -> None:
    """One signature among the subject's `.sig` and sigstore bundles verifies, or the most
    telling refusal: keyless only when nothing but keyless signatures were there."""
    sigs = [
        r for r in referrers if r.subject == digest and cosign.is_signature(r.tag, r.artifact_type)
    ]
    if not sigs:
        raise VerificationError(f"{ref}: no cosign signature; its cosignKey policy requires one")
    failures: list[VerificationError] = []
    for r in sigs:
        try:
            _check_signature(ref, digest, key, r, source_of[r.layout_ref])
            return
        except VerificationError as exc:
            failures.append(exc)
    plain = [f for f in failures if not isinstance(f, KeylessError)]
    raise (plain or failures)[0]


def _check_signature(
    ref: str, digest: str, key: EllipticCurvePublicKey, r: ReferrerRecord, source: Source
) -> None:
    def read(layer: Descriptor) -> bytes:
        with source.fetch(layer) as stream:
            return stream.read(layer.size + 1)

    manifest = source.fetch_manifest(Descriptor(r.media_type, r.digest, r.size))
    if r.tag is None:
        cosign.check_bundle_manifest(manifest, digest, key, read, ref)
    else:
        cosign.check_signature(manifest, digest, key, read, ref)
