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
from typing import TYPE_CHECKING, Any

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
            reasons.append("a signature that does not verify with the key")
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
