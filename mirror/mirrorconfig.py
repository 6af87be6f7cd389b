"""The two files a cluster needs to pull imported images from the mirror instead of upstream.

`mirror-registries.txt` is image-swap's `UPSTREAM::ENDPOINT` list, which Palette takes as
`mirrorRegistries` or `MIRROR_REGISTRIES`; `certs.d/<upstream>/hosts.toml` is containerd's
per-host mirror file. Both are derived from the same pairs so they can never disagree.
Pure: nothing here touches the network.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mirror.errors import UsageError
from mirror.streams import atomic_file

MIRROR_FILE = "mirror-registries.txt"
CERTS_DIR = "certs.d"
HOSTS_FILE = "hosts.toml"
SCHEMES = ("http", "https")
# Docker Hub's name is docker.io, but its registry API answers at another host.
_UPSTREAM_API = {"docker.io": "registry-1.docker.io"}
# A host name, IPv4 or bracketed IPv6 address, with an optional port. It has no `/` or `\`,
# so an upstream is always exactly one directory under certs.d.
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9._-]*)(:[0-9]{1,5})?")
# A path may hold `:`, as in `spectro-images/127.0.0.1:5000`.
_PATH = re.compile(r"[A-Za-z0-9._:-]+(/[A-Za-z0-9._:-]+)*")
_TOML_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


@dataclass(frozen=True)
class Mirror:
    """Pull `upstream` images (e.g. `ghcr.io`) from `endpoint` (`HOST[:PORT]/path`, no scheme)."""

    upstream: str
    endpoint: str


def image_mirrors(
    hosts: Iterable[str], endpoint_host: str, base_path: str, images_base: str
) -> list[Mirror]:
    """One mirror per upstream host: where its images are on ENDPOINT_HOST (import, serve)."""
    from mirror.oci.names import image_landing

    return [
        Mirror(h, f"{endpoint_host}/{image_landing(h, '', base_path, images_base)}")
        for h in sorted(set(hosts))
    ]


def mirror_string(mirrors: Sequence[Mirror]) -> str:
    """Image-swap's one-line form, sorted so reruns give the same bytes."""
    return ",".join(f"{m.upstream}::{m.endpoint}" for m in _unique(mirrors))


def hosts_toml(
    mirror: Mirror,
    *,
    scheme: str,
    ca_file: str | None = None,
    skip_verify: bool = False,
    client: tuple[str, str] | None = None,
) -> str:
    """containerd's hosts.toml sending `mirror.upstream` pulls to the mirror's endpoint;
    `client` is the certificate and key a mirror that asks for one is shown.

    With a path in the endpoint, containerd would put `/v2` after the path; `override_path`
    makes it use the URL as the API root, so the URL carries `/v2` before the path.
    """
    _check(mirror)
    _check_scheme(scheme)
    host, path = _split_endpoint(mirror.endpoint)
    url = f"{scheme}://{host}/v2/{path}" if path else f"{scheme}://{host}"
    lines = [
        f"server = {_toml_str('https://' + _UPSTREAM_API.get(mirror.upstream, mirror.upstream))}",
        "",
        f"[host.{_toml_str(url)}]",
        '  capabilities = ["pull", "resolve"]',
    ]
    if path:
        lines.append("  override_path = true")
    if ca_file is not None:
        lines.append(f"  ca = {_toml_str(ca_file)}")
    if skip_verify:
        lines.append("  skip_verify = true")
    if client is not None:
        lines.append(f"  client = [[{_toml_str(client[0])}, {_toml_str(client[1])}]]")
    return "\n".join(lines) + "\n"


def write_mirror_config(
    folder: Path, mirrors: Sequence[Mirror], *, scheme: str, ca_file: str | None = None
) -> list[Path]:
    """Write the mirror string and one hosts.toml per upstream; return the paths, sorted.

    Everything is checked before the first write, so a bad pair leaves no half-written set.
    """
    _check_scheme(scheme)
    unique = _unique(mirrors)
    files = {folder / MIRROR_FILE: mirror_string(unique) + "\n"}
    for m in unique:
        files[folder / CERTS_DIR / m.upstream / HOSTS_FILE] = hosts_toml(
            m, scheme=scheme, ca_file=ca_file
        )
    for path, text in files.items():
        with atomic_file(path) as fh:
            fh.write(text.encode("utf-8"))
    return sorted(files)


def _unique(mirrors: Sequence[Mirror]) -> list[Mirror]:
    """Checked, deduplicated, sorted by upstream; one upstream cannot have two endpoints."""
    by_upstream: dict[str, Mirror] = {}
    for m in mirrors:
        _check(m)
        seen = by_upstream.setdefault(m.upstream, m)
        if seen.endpoint != m.endpoint:
            raise UsageError(
                f"mirror config: {m.upstream} has two endpoints, {seen.endpoint} and {m.endpoint}"
            )
    return [by_upstream[u] for u in sorted(by_upstream)]


def _check(mirror: Mirror) -> None:
    """Refuse names that would escape certs.d or break the comma-and-`::` string."""
    up = mirror.upstream
    if not _HOST.fullmatch(up) or ".." in up:
        raise UsageError(f"mirror config: {up!r} is not a registry host name")
    _split_endpoint(mirror.endpoint)
    if "::" in up or "::" in mirror.endpoint:
        raise UsageError(f"mirror config: image-swap cannot parse {up}::{mirror.endpoint}")


def _check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise UsageError(f"mirror config: scheme must be http or https, not {scheme!r}")


def _split_endpoint(endpoint: str) -> tuple[str, str]:
    """`HOST[:PORT]/path` into host and path (no leading or trailing `/`)."""
    host, _, path = endpoint.partition("/")
    path = path.strip("/")
    segments = set(path.split("/"))
    bad_path = bool(path) and (not _PATH.fullmatch(path) or bool({".", ".."} & segments))
    if not _HOST.fullmatch(host) or bad_path:
        raise UsageError(f"mirror config: {endpoint!r} is not HOST[:PORT]/path (no scheme)")
    return host, path


def _toml_str(text: str) -> str:
    """A TOML basic string: quote, backslash and control characters escaped."""
    out = []
    for c in text:
        if c in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[c])
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'
