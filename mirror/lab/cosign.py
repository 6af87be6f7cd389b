"""Real cosign-format signatures and OCI 1.1 referrers, made with our own keys, for the lab.

The shapes follow cosign's SIGNATURE_SPEC (mirror/formats/cosign.py): a `sha256-H.sig` tag
whose layer is the simple-signing payload with its signature annotation, and referrers
pushed by digest with the referrers tag schema's `sha256-H` index kept up to date, as
`oras attach` does against a registry without the referrers API (Distribution 2.8).
"""

from __future__ import annotations

import io
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
) -> OciArtifact:
    """A `.sig` manifest signing `subject` (or, to test refusals, claiming `claims`, or
    with the payload changed after it was signed)."""
    data = cosign.payload(reference, claims or subject)
    signature = cosign.sign_layer(data, key)
    if tamper:
        data = data.replace(b"cosign container", b"cosign containe_")
    return single_layer_artifact(
        COSIGN_CONFIG,
        mt.OCI_CONFIG,
        data,
        cosign.SIMPLE_SIGNING,
        {cosign.SIGNATURE_ANNOTATION: signature},
    )


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


def seed_referrer(
    client: RegistryClient,
    repo: str,
    subject: Descriptor,
    artifact_type: str,
    content: bytes,
) -> Descriptor:
    """Attach an OCI 1.1 referrer to `subject`, and merge it into the fallback index."""
    manifest, blobs = cosign.referrer_manifest(
        subject, artifact_type, [("application/vnd.example.content+json", content)]
    )
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
