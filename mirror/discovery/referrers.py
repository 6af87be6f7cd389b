"""What travels with a manifest: cosign's tag companions and OCI 1.1 referrers.

Discovery only (it returns what to copy): for each manifest digest of a copied graph, the
root and every child of an index, the `sha256-H.sig`, `.att` and `.sbom` tags of the same
repository, and its referrers (the registry's referrers API, else the referrers tag
schema's `sha256-H` index), then the same for those, to a small fixed depth. Tag filters
do not apply: a signature travels with what it signs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mirror.errors import NotFoundError
from mirror.formats import cosign, jsondoc
from mirror.oci.descriptor import Descriptor
from mirror.stores.registry import RegistryStore

MAX_DEPTH = 3  # a signature on an SBOM of an image: three levels


@dataclass(frozen=True)
class Companion:
    subject: str  # the manifest digest it belongs to
    desc: Descriptor
    tag: str | None  # the cosign tag, or None for an OCI 1.1 referrer (pushed by digest)
    artifact_type: str | None = None

    @property
    def signature(self) -> bool:
        return cosign.is_signature(self.tag, self.artifact_type)


def find_companions(source: RegistryStore, digests: Iterable[str]) -> list[Companion]:
    """Every companion of `digests` in the source's repository, each once, subjects first."""
    try:
        tags = set(source.tags())
    except NotFoundError:
        return []
    out: list[Companion] = []
    seen: set[str] = set(digests)
    frontier = list(dict.fromkeys(digests))
    for _ in range(MAX_DEPTH):
        found = [c for d in frontier for c in _of(source, d, tags)]
        fresh = []
        for c in found:
            if c.desc.digest not in seen:
                seen.add(c.desc.digest)
                fresh.append(c)
        out += fresh
        frontier = [c.desc.digest for c in fresh]
        if not frontier:
            break
    return out


def _of(source: RegistryStore, digest: str, tags: set[str]) -> list[Companion]:
    out = []
    *cosign_tags, fallback = cosign.companion_tags(digest)
    for tag in cosign_tags:
        if tag in tags:
            desc, _ = source.get_tag(tag)
            out.append(Companion(digest, desc, tag))
    listed = source.client.referrers(source.repo, digest)
    if listed is None and fallback in tags:
        _, data = source.get_tag(fallback)
        doc = jsondoc.loads(data)
        listed = [m for m in doc.get("manifests") or [] if isinstance(m, dict)]
    for entry in listed or []:
        desc = Descriptor.from_json(entry)
        if desc.is_manifest:
            kind = entry.get("artifactType")
            out.append(Companion(digest, desc, None, str(kind) if kind else None))
    return out
