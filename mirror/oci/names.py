"""Names on the target side: registry slugs, OCI tags, and where imported packs land.

The contract fixes these ("Where imported content lands"), so export and import must compute
them the same way; keeping them here gives both one definition.
"""

from __future__ import annotations

import re

from mirror.errors import UsageError

_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_PATH = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


def slug(name: str) -> str:
    """Lower case, runs outside a-z0-9 become "-", trimmed: a safe first path segment."""
    out = _NOT_SLUG.sub("-", name.lower()).strip("-")
    if not out:
        raise UsageError(f"registry name {name!r} has no letters or digits to name a path with")
    return out


def oci_tag(version: str) -> str:
    """A version as an OCI tag: `+` (semver build metadata) is not allowed in tags, so `_`."""
    tag = version.replace("+", "_")
    if not _TAG.fullmatch(tag):
        raise UsageError(f"version {version!r} cannot be an OCI tag (need {_TAG.pattern})")
    return tag


def pack_repository(registry_name: str, pack_name: str) -> str:
    """Where a pack from a pack folder or legacy registry named `registry_name` lands."""
    return f"{slug(registry_name)}/spectro-packs/archive/{pack_name}"


def host_segment(host: str) -> str:
    """An image host as one repository path segment: `127.0.0.1:5000` -> `127.0.0.1_5000`.

    A `:` may not appear in a repository name; hosts without a port are kept as they are.
    """
    return host.replace(":", "_")


def is_repository_path(value: str) -> bool:
    """OCI path components only: what a repository name from outside must be."""
    return bool(_PATH.fullmatch(value))


def is_tag(value: str) -> bool:
    """An OCI tag, whole: what a tag from outside must be before it is put in a URL."""
    return bool(_TAG.fullmatch(value))


def check_repository_prefix(flag: str, value: str) -> None:
    """A repository prefix must be OCI path components, so no request leaves `/v2/<name>`."""
    if value and not _PATH.fullmatch(value):
        raise UsageError(
            f"{flag} {value!r}: not a repository path (lower-case a-z0-9 components, "
            "separated by '/', '.', '_' or '-')"
        )


def resolve_held(held_at: str, base_path: str, images_base: str) -> str:
    """Where a delta's base blob is on the target: a receipt names the repository; a base
    that was a bundle names it relative to the far side's `--base-path` (`~/PATH`) or its
    `--images-base-path` (`~images/PATH`)."""
    parts: list[str]
    if held_at.startswith("~images/"):
        parts = [base_path, images_base, held_at[len("~images/") :]]
    elif held_at.startswith("~/"):
        parts = [base_path, held_at[2:]]
    else:
        parts = [held_at]
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def join_path(*parts: str) -> str:
    """Repository path segments joined with one "/" each; empty parts are left out."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def artifact_landing(ref: str, tag: str, base_path: str = "") -> str:
    """The repository an artifact lands in: [--base-path/]<its index.json ref, less the tag>."""
    return join_path(base_path, ref[: -(len(tag) + 1)])


IMAGES_BASE = "spectro-images"  # Palette's air-gap layout: <registry>/spectro-images/<host>/...


def image_landing(host: str, repository: str, base_path: str, images_base: str) -> str:
    """Where an image of the closure lands: [--base-path/]<images base>/<host>/<path>."""
    return join_path(base_path, images_base, host_segment(host), repository)
