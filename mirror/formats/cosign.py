"""cosign's signatures and OCI 1.1 referrers: names, shapes and the one check we can make.

Per cosign's SIGNATURE_SPEC, the signature of manifest `sha256:H` is the tag `sha256-H.sig`
in the subject's repository: an OCI manifest whose layers are simple-signing payloads
(`application/vnd.dev.cosign.simplesigning.v1+json`), each annotated with
`dev.cosignproject.cosign/signature`, the base64 ECDSA signature over the payload's bytes.
The payload's `critical.image.docker-manifest-digest` names the signed digest. `.att` and
`.sbom` tags hold attestations and SBOMs. An OCI 1.1 referrer is a manifest with a
`subject`; a registry without the referrers API lists them in an index at tag `sha256-H`.
Pure functions on bytes: nothing here touches the network.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NoReturn

from mirror.errors import VerificationError
from mirror.formats import jsondoc
from mirror.oci import mediatypes as mt
from mirror.oci.artifact import canonical_json
from mirror.oci.descriptor import Descriptor, digest_of

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import (
        EllipticCurvePrivateKey,
        EllipticCurvePublicKey,
    )

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SUFFIXES = (".sig", ".att", ".sbom")
MAX_PAYLOAD = 1 << 20
_COMPANION = re.compile(r"sha256-([a-f0-9]{64})(\.sig|\.att|\.sbom)?")


def companion_tags(digest: str) -> list[str]:
    """The tags cosign and the referrers tag schema use for `digest`, in that order."""
    base = "sha256-" + digest.split(":", 1)[1]
    return [base + s for s in SUFFIXES] + [base]


def subject_of_tag(tag: str) -> tuple[str, str] | None:
    """(subject digest, suffix or "") for a companion tag, else None."""
    match = _COMPANION.fullmatch(tag)
    return ("sha256:" + match.group(1), match.group(2) or "") if match else None


def payload(docker_reference: str, digest: str) -> bytes:
    """A simple-signing payload for `digest`, as `cosign sign` writes it."""
    doc = {
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def sign_layer(data: bytes, key: EllipticCurvePrivateKey) -> str:
    """The annotation value: base64 of a DER ECDSA P-256 signature over SHA-256 of `data`."""
    from mirror.signing import sign_bytes

    return sign_bytes(key, data).decode()


def signed_digest(data: bytes) -> str | None:
    """The digest a simple-signing payload vouches for, or None if it names none."""
    try:
        doc = jsondoc.loads(data)
        digest = doc["critical"]["image"]["docker-manifest-digest"]
    except (ValueError, KeyError, TypeError):
        return None
    return digest if isinstance(digest, str) else None


def check_signature(
    manifest: bytes,
    subject: str,
    key: EllipticCurvePublicKey,
    read_blob: Callable[[Descriptor], bytes],
    where: str,
) -> None:
    """One layer of a `.sig` manifest signs `subject` with `key`, or VerificationError."""
    from mirror.signing import verify_bytes

    layers = [Descriptor.from_json(d) for d in (jsondoc.loads(manifest).get("layers") or [])]
    reasons = []
    for layer in layers:
        if layer.media_type != SIMPLE_SIGNING or layer.size > MAX_PAYLOAD:
            continue
        signature = layer.annotation(SIGNATURE_ANNOTATION)
        data = read_blob(layer)
        if signature is None:
            reasons.append("a payload without a signature")
            continue
        if signed_digest(data) != subject:
            reasons.append(f"a signature for {signed_digest(data) or 'no digest'}")
            continue
        try:
            verify_bytes(key, data, signature.encode(), where)
            return
        except VerificationError:
            keyless = layer.annotation(CERTIFICATE_ANNOTATION) is not None
            reasons.append(KEYLESS if keyless else "a signature that does not verify with the key")
    _refuse(where, reasons)


def _refuse(where: str, reasons: list[str]) -> NoReturn:
    """Keyless alone gets its own error; anything else says what was found."""
    from mirror.errors import KeylessError

    if reasons and all(r == KEYLESS for r in reasons):
        raise KeylessError(f"{where}: a keyless cosign signature: {KEYLESS}")
    found = "; ".join(dict.fromkeys(reasons)) or "no simple-signing payload"
    raise VerificationError(f"{where}: not signed by the required key ({found})")


def referrer_manifest(
    subject: Descriptor, artifact_type: str, blobs: Iterable[tuple[str, bytes]]
) -> tuple[bytes, list[tuple[Descriptor, bytes]]]:
    """An OCI 1.1 artifact manifest referring to `subject`, and the blobs it names."""
    empty = b"{}"
    config = Descriptor(mt.EMPTY_CONFIG, digest_of(empty), len(empty))
    layers = [(Descriptor(m, digest_of(d), len(d)), d) for m, d in blobs]
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": config.to_json(),
        "layers": [d.to_json() for d, _ in layers],
        "subject": subject.to_json(),
    }
    return canonical_json(doc), [(config, empty), *layers]


def fallback_index(existing: bytes | None, add: Iterable[dict[str, Any]]) -> bytes:
    """The referrers tag schema's index, merged: what the target lists is kept, never lost."""
    manifests: list[dict[str, Any]] = []
    if existing:
        try:
            old = jsondoc.loads(existing).get("manifests") or []
            manifests = [m for m in old if isinstance(m, dict) and "digest" in m]
        except (ValueError, AttributeError):
            manifests = []
    seen = {m["digest"] for m in manifests}
    for entry in add:
        if entry["digest"] not in seen:
            manifests.append(dict(entry))
            seen.add(entry["digest"])
    doc = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests}
    return canonical_json(doc)


# ---------------------------------------------------------------- sigstore bundles
#
# cosign 3 keeps a signature as an OCI 1.1 referrer (its BUNDLE_SPEC): a manifest whose
# `artifactType` and one layer are a sigstore bundle (protobuf-specs, JSON form). The bundle
# holds either a `messageSignature` (a signature over the SHA-256 of the subject manifest's
# bytes, that digest given beside it) or a `dsseEnvelope` (an in-toto statement naming the
# subject's digest, signed over DSSE's pre-authentication encoding). Both are checked.
# A bundle whose verification material is a Fulcio certificate is keyless: trusting it
# needs Fulcio's roots and Rekor, which an air gap does not have, so it is refused as such.

SIGSTORE_BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
IN_TOTO = "application/vnd.in-toto+json"
KEYLESS = "keyless verification (Fulcio certificate, Rekor) is out of reach in an air gap"


def is_signature(tag: str | None, artifact_type: str | None) -> bool:
    """A companion that can carry a signature: a `.sig` tag or a sigstore bundle referrer."""
    return (tag or "").endswith(".sig") or (tag is None and artifact_type == SIGSTORE_BUNDLE)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what a DSSE signature is over."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def check_bundle_manifest(
    manifest: bytes,
    subject: str,
    key: EllipticCurvePublicKey,
    read_blob: Callable[[Descriptor], bytes],
    where: str,
) -> None:
    """The referrer's sigstore bundle signs `subject` with `key`, or VerificationError."""
    layers = [Descriptor.from_json(d) for d in (jsondoc.loads(manifest).get("layers") or [])]
    bundles = [d for d in layers if d.media_type == SIGSTORE_BUNDLE and d.size <= MAX_PAYLOAD]
    if not bundles:
        raise VerificationError(f"{where}: a sigstore bundle referrer without a bundle layer")
    check_bundle(read_blob(bundles[0]), subject, key, where)


def check_bundle(data: bytes, subject: str, key: EllipticCurvePublicKey, where: str) -> None:
    """A sigstore bundle (v0.3 JSON) signs `subject` with `key`, or VerificationError
    (KeylessError when it is a keyless bundle that the key does not match)."""
    from mirror.errors import KeylessError

    try:
        doc = jsondoc.loads(data)
        material = doc.get("verificationMaterial") or {}
        keyless = "certificate" in material or "x509CertificateChain" in material
        if "messageSignature" in doc:
            problem = _message_problem(doc["messageSignature"], subject, key, where)
        elif "dsseEnvelope" in doc:
            problem = _dsse_problem(doc["dsseEnvelope"], subject, key, where)
        else:
            problem = "a bundle with neither messageSignature nor dsseEnvelope"
    except (ValueError, KeyError, TypeError, AttributeError):
        raise VerificationError(f"{where}: a sigstore bundle that does not parse") from None
    if problem is None:
        return
    if keyless:
        raise KeylessError(f"{where}: a keyless sigstore bundle: {KEYLESS}")
    raise VerificationError(f"{where}: not signed by the required key ({problem})")


def _message_problem(
    part: dict[str, Any], subject: str, key: EllipticCurvePublicKey, where: str
) -> str | None:
    import base64

    from mirror.signing import verify_digest

    digest = part["messageDigest"]
    if digest.get("algorithm") != "SHA2_256":
        return f"a message digest in {digest.get('algorithm')}, not SHA2_256"
    raw = base64.b64decode(digest["digest"], validate=True)
    if raw != bytes.fromhex(subject.split(":", 1)[1]):
        return f"a signature for sha256:{raw.hex()}"
    try:
        verify_digest(key, raw, str(part["signature"]).encode(), where)
    except VerificationError:
        return "a signature that does not verify with the key"
    return None


def _dsse_problem(
    envelope: dict[str, Any], subject: str, key: EllipticCurvePublicKey, where: str
) -> str | None:
    import base64

    from mirror.signing import verify_bytes

    if envelope.get("payloadType") != IN_TOTO:
        return f"a DSSE payload of type {envelope.get('payloadType')}, not in-toto"
    payload = base64.b64decode(envelope["payload"], validate=True)
    statement = jsondoc.loads(payload)
    named = {str((s.get("digest") or {}).get("sha256")) for s in statement.get("subject") or []}
    if subject.split(":", 1)[1] not in named:
        return f"a statement about {', '.join(sorted(named)) or 'nothing'}"
    signed = pae(IN_TOTO, payload)
    for sig in envelope.get("signatures") or []:
        try:
            verify_bytes(key, signed, str(sig["sig"]).encode(), where)
            return None
        except VerificationError:
            continue
    return "a signature that does not verify with the key"
