"""Media types we walk, and how to tell an artifact's kind from its manifest."""

from __future__ import annotations

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEXES = frozenset({OCI_INDEX, DOCKER_LIST})
ALL_MANIFESTS = MANIFESTS | INDEXES
ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
UNKNOWN_CONFIG = "application/vnd.unknown.config.v1+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
HELM_PROV = "application/vnd.cncf.helm.chart.provenance.v1.prov"

ZARF_CONFIG_PREFIX = "application/vnd.zarf"

ANN_REF_NAME = "org.opencontainers.image.ref.name"
ANN_TITLE = "org.opencontainers.image.title"

# Our own annotations on index.json descriptors: where each artifact came from.
ANN_REGISTRY = "io.mirror.registry"
ANN_REPOSITORY = "io.mirror.repository"
ANN_TAG = "io.mirror.tag"
ANN_KIND = "io.mirror.kind"

KINDS = ("image", "pack", "chart", "zarf", "other")


def classify(media_type: str, config_type: str | None, layer_types: list[str]) -> str:
    """Tell image, pack, chart, zarf or other from what a manifest names."""
    if media_type in INDEXES:
        return "image"
    if config_type == HELM_CONFIG or HELM_CHART in layer_types:
        return "chart"
    if config_type and config_type.startswith(ZARF_CONFIG_PREFIX):
        return "zarf"
    if config_type in (UNKNOWN_CONFIG, EMPTY_CONFIG) and layer_types == [OCI_LAYER_TAR]:
        return "pack"
    if config_type in (OCI_CONFIG, DOCKER_CONFIG):
        return "image"
    return "other"
