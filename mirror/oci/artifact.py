"""An artifact built in memory (a pack, a chart, a lab image) before it is pushed to a store."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mirror.oci import mediatypes as mt
from mirror.oci.descriptor import Descriptor, descriptor_for


@dataclass(frozen=True)
class OciArtifact:
    """A manifest and the blobs it names, small enough to hold in memory (packs, charts)."""

    manifest: bytes
    media_type: str
    blobs: tuple[tuple[Descriptor, bytes], ...]

    @property
    def descriptor(self) -> Descriptor:
        return descriptor_for(self.manifest, self.media_type)


def canonical_json(doc: Any) -> bytes:
    """Stable bytes for documents we author, so the same input always gives the same digest."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def single_layer_artifact(
    config: bytes,
    config_type: str,
    layer: bytes,
    layer_type: str,
    layer_annotations: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> OciArtifact:
    """The one-config, one-layer OCI manifest that `oras push` and `helm push` both produce."""
    cfg = descriptor_for(config, config_type)
    lay = descriptor_for(layer, layer_type)
    lay_json = lay.to_json()
    if layer_annotations:
        lay_json["annotations"] = dict(layer_annotations)
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": cfg.to_json(),
        "layers": [lay_json],
    }
    if annotations:
        doc["annotations"] = dict(annotations)
    return OciArtifact(canonical_json(doc), mt.OCI_MANIFEST, ((cfg, config), (lay, layer)))
