"""Real cosign-format signatures and OCI 1.1 referrers, made with our own keys, for the lab.

The shapes follow cosign's SIGNATURE_SPEC (mirror/formats/cosign.py): a `sha256-H.sig` tag
whose layer is the simple-signing payload with its signature annotation, and referrers
pushed by digest with the referrers tag schema's `sha256-H` index kept up to date, as
`oras attach` does against a registry without the referrers API (Distribution 2.8). A
sigstore bundle referrer is laid out as cosign 3 does it (its BUNDLE_SPEC), with a message
signature or a DSSE in-toto statement; a keyless one carries a certificate of a throwaway
key instead of being signed by ours, which is all an air gap could ever see of Fulcio.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
from typing import TYPE_CHECKING

from mirror.errors import NotFoundError
from mirror.formats import cosign
from mirror.lab.seed import Pusher, Seeded, seed_artifact
from mirror.oci import mediatypes as mt
from mirror.oci.artifact import OciArtifact, single_layer_artifact
from mirror.oci.descriptor import Descriptor, descriptor_for

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

    from mirror.registry.client import RegistryClient

COSIGN_CONFIG = b'{"architecture":"","config":{},"created":"0001-01-01T00:00:00Z","os":""}'


def signature_artifact(
    reference: str,
    subject: str,
    key: EllipticCurvePrivateKey,
    *,
    claims: str | None = None,
    tamper: bool = False,
    keyless: bool = False,
) -> OciArtifact:
    """A `.sig` manifest signing `subject` (or, to test refusals, claiming `claims`, or
    with the payload changed after it was signed, or keyless: by a throwaway key, with
    its certificate annotated as `cosign sign` leaves a Fulcio one)."""
    data = cosign.payload(reference, claims or subject)
    annotations = {}
    if keyless:
        key, pem = _throwaway_certificate()
        annotations[cosign.CERTIFICATE_ANNOTATION] = pem.decode()
    annotations[cosign.SIGNATURE_ANNOTATION] = cosign.sign_layer(data, key)
    if tamper:
        data = data.replace(b"cosign container", b"cosign containe_")
    return single_layer_artifact(
        COSIGN_CONFIG, mt.OCI_CONFIG, data, cosign.SIMPLE_SIGNING, annotations
    )


def _throwaway_certificate() -> tuple[EllipticCurvePrivateKey, bytes]:
    """A fresh key and a certificate for it (PEM): the shape of a keyless signer."""
    from cryptography.hazmat.primitives import serialization

    from mirror.lab.certs import make_ca

    key, cert = make_ca(dt.datetime.now(dt.UTC))
    return key, cert.public_bytes(serialization.Encoding.PEM)


def sigstore_bundle(
    subject: str,
    key: EllipticCurvePrivateKey,
    *,
    dsse: bool = False,
    claims: str | None = None,
    keyless: bool = False,
) -> bytes:
    """A sigstore bundle (v0.3 JSON) signing `subject`: a message signature over the
    manifest's SHA-256, or (`dsse`) an in-toto statement naming it, as cosign 3 signs."""
    from mirror.keys import fingerprint
    from mirror.signing import sign_bytes, sign_digest

    named = bytes.fromhex((claims or subject).split(":", 1)[1])
    material: dict[str, object] = {"publicKey": {"hint": fingerprint(key.public_key())}}
    if keyless:
        key, pem = _throwaway_certificate()
        der = base64.b64encode(pem_to_der(pem)).decode()
        material = {"certificate": {"rawBytes": der}, "tlogEntries": [{"logIndex": "1"}]}
    doc: dict[str, object] = {"mediaType": cosign.SIGSTORE_BUNDLE, "verificationMaterial": material}
    if dsse:
        statement = {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "image", "digest": {"sha256": named.hex()}}],
            "predicateType": "https://sigstore.dev/cosign/sign/v1",
            "predicate": {},
        }
        payload = json.dumps(statement, separators=(",", ":")).encode()
        sig = sign_bytes(key, cosign.pae(cosign.IN_TOTO, payload)).decode()
        doc["dsseEnvelope"] = {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": cosign.IN_TOTO,
            "signatures": [{"sig": sig, "keyid": ""}],
        }
    else:
        doc["messageSignature"] = {
            "messageDigest": {"algorithm": "SHA2_256", "digest": base64.b64encode(named).decode()},
            "signature": sign_digest(key, named).decode(),
        }
    return json.dumps(doc, separators=(",", ":")).encode()


def pem_to_der(pem: bytes) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def seed_signature(
    client: Pusher,
    repo: str,
    subject: str,
    key: EllipticCurvePrivateKey,
    *,
    suffix: str = ".sig",
    **kwargs: object,
) -> Seeded:
    """Sign `subject` in `repo` the way `cosign sign --key` leaves it there."""
    art = signature_artifact(f"{repo}", subject, key, **kwargs)  # type: ignore[arg-type]
    tag = "sha256-" + subject.split(":", 1)[1] + suffix
    return seed_artifact(client, repo, tag, art, kind="signature")


def seed_bundle(
    client: RegistryClient,
    repo: str,
    subject: Descriptor,
    key: EllipticCurvePrivateKey,
    **kwargs: object,
) -> Descriptor:
    """Sign `subject` in `repo` the way cosign 3 does: a sigstore bundle referrer."""
    data = sigstore_bundle(subject.digest, key, **kwargs)  # type: ignore[arg-type]
    return seed_referrer(
        client, repo, subject, cosign.SIGSTORE_BUNDLE, data, media_type=cosign.SIGSTORE_BUNDLE
    )


def seed_referrer(
    client: RegistryClient,
    repo: str,
    subject: Descriptor,
    artifact_type: str,
    content: bytes,
    *,
    media_type: str = "application/vnd.example.content+json",
) -> Descriptor:
    """Attach an OCI 1.1 referrer to `subject`, and merge it into the fallback index."""
    manifest, blobs = cosign.referrer_manifest(subject, artifact_type, [(media_type, content)])
    for desc, data in blobs:
        client.push_blob(repo, desc, io.BytesIO(data))
    desc = descriptor_for(manifest, mt.OCI_MANIFEST)
    client.put_manifest(repo, desc.digest, manifest, mt.OCI_MANIFEST)
    listed = {**desc.to_json(), "artifactType": artifact_type}
    tag = "sha256-" + subject.hex
    try:
        existing: bytes | None = client.get_manifest(repo, tag)[1]
    except NotFoundError:
        existing = None
    client.put_manifest(repo, tag, cosign.fallback_index(existing, [listed]), mt.OCI_INDEX)
    return desc
