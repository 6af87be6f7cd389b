"""Image references, normalized as docker and containerd do (the contract's v2 rules).

`nginx` is `docker.io/library/nginx:latest`; a first segment with a `.` or `:`, or
`localhost`, is a host; a digest pins the content and a tag beside it is kept as a label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mirror.oci.names import host_segment, is_repository_path, is_tag

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"  # where docker.io's registry API answers
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.?)+(?::[0-9]{1,5})?|\[[0-9a-fA-F:]+\](?::[0-9]{1,5})?"
)
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
MAX_REFERENCE = 512


@dataclass(frozen=True)
class ImageRef:
    """One normalized image: `host/repository[:tag][@digest]`, at least one of the two."""

    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.host}/{self.repository}"

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def api_host(self) -> str:
        """The host whose /v2/ serves this image (Docker Hub's API is not at docker.io)."""
        return DOCKER_HUB_API if self.host == DOCKER_HUB else self.host


def parse_reference(text: str) -> ImageRef:
    """Normalize one reference; ValueError, with the reason, when it is not one."""
    ref = text.strip()
    if not ref or len(ref) > MAX_REFERENCE or any(c.isspace() for c in ref):
        raise ValueError("not an image reference")
    if "{{" in ref or "}}" in ref:
        raise ValueError("a template, not a reference")
    name, at, digest = ref.partition("@")
    if at and not digest:  # `nginx@` is no pin; docker refuses it, it is not `:latest`
        raise ValueError("an empty digest after '@'")
    if digest and not _DIGEST.fullmatch(digest):
        raise ValueError(f"bad digest {digest!r} (expected sha256:<64 hex>)")
    tag: str | None = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        if not is_tag(tag):
            raise ValueError(f"bad tag {tag!r}")
    host, path = _split_host(name)
    if not is_repository_path(path):
        raise ValueError(f"bad repository path {path!r}")
    if not is_repository_path(host_segment(host)):  # `ghcr.io.`, `[::1]:5000`
        raise ValueError(f"registry host {host!r} cannot name the repository it lands under")
    if tag is None and not digest:
        tag = "latest"
    return ImageRef(host, path, tag, digest or None)


def canonical_host(host: str) -> str:
    """A registry host as references name it: lower case, Docker Hub's aliases as
    `docker.io` (an `upstreams:` key of `index.docker.io` matched no image)."""
    host = host.lower()
    return DOCKER_HUB if host in _HUB_ALIASES else host


def _split_host(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        if not _HOST.fullmatch(first):
            raise ValueError(f"bad registry host {first!r}")
        host = canonical_host(first)
    else:
        host, rest = DOCKER_HUB, name
    if not rest:
        raise ValueError("no repository")
    if host == DOCKER_HUB and "/" not in rest:
        rest = f"library/{rest}"
    return host, rest
