"""The names in manifest.json that become URLs and paths on the far side, checked as names.

The schema says a tag is a string; import puts it in `PUT /v2/<repository>/manifests/<tag>`.
So every name a request or a file path is built from (an artifact's ref and tag, an image's
host, repository and tag, a referrer's tag and owner) must be what OCI allows, whole: a
`..`, a `/` in a tag, or a newline before the end of a digest (which `^...$` lets through)
is a bundle that lies, refused by verify, import and serve alike, before any request.
The names must also agree with each other, so what inspect shows is where import pushes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from mirror.errors import VerificationError, shorten, terminal_safe
from mirror.oci.names import host_segment, is_repository_path, is_tag

_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
_TEXT_MAX = 200  # of a hostile value quoted in an error


def check_names(doc: Mapping[str, Any], where: str) -> None:
    """Raise VerificationError at the first name that is not one, or that disagrees."""
    problem = next(_problems(doc), None)
    if problem is not None:
        pointer, what = problem
        raise VerificationError(f"{where}: {pointer}: {what}")


def _problems(doc: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    registries = {r.get("name") for r in doc.get("registries", ())}
    owners: set[str] = set()
    for i, a in enumerate(doc.get("artifacts", ())):
        at = f"/artifacts/{i}"
        ref, tag, repo = a.get("ref"), a.get("tag"), a.get("repository")
        if a.get("registry") not in registries:
            yield f"{at}/registry", f"{quote(a.get('registry'))} is not a registry of the bundle"
        yield from _name(f"{at}/repository", repo, is_repository_path, "a repository name")
        yield from _name(f"{at}/tag", tag, is_tag, "an OCI tag")
        yield from _name(f"{at}/digest", a.get("digest"), _DIGEST.fullmatch, "a sha256 digest")
        landing = ref[: -len(tag) - 1] if isinstance(ref, str) and isinstance(tag, str) else ""
        if (
            not isinstance(ref, str)
            or not ref.endswith(f":{tag}")
            or not (
                is_repository_path(landing) and (landing == repo or landing.endswith(f"/{repo}"))
            )
        ):
            yield f"{at}/ref", f"{quote(ref)} is not <path>/{repo}:{tag}"
        owners.add(str(ref))
    for i, image in enumerate(doc.get("images", ())):
        at = f"/images/{i}"
        host = image.get("host")  # it lands at .../<host as one path segment>/<repository>
        segment = host_segment(host) if isinstance(host, str) else ""
        if "/" in segment or not is_repository_path(segment):
            yield f"{at}/host", f"{quote(host)} is not a host an image can land under"
        yield from _name(
            f"{at}/repository", image.get("repository"), is_repository_path, "a repository name"
        )
        if image.get("tag") is not None:
            yield from _name(f"{at}/tag", image.get("tag"), is_tag, "an OCI tag")
        yield from _name(f"{at}/digest", image.get("digest"), _DIGEST.fullmatch, "a digest")
        owners.add(str(image.get("layoutRef")))
    for i, r in enumerate(doc.get("referrers", ())):
        at = f"/referrers/{i}"
        if r.get("tag") is not None:
            yield from _name(f"{at}/tag", r.get("tag"), is_tag, "an OCI tag")
        yield from _name(f"{at}/digest", r.get("digest"), _DIGEST.fullmatch, "a sha256 digest")
        yield from _name(f"{at}/subject", r.get("subject"), _DIGEST.fullmatch, "a digest")
        if r.get("owner") not in owners:
            yield f"{at}/owner", f"{quote(r.get('owner'))} is no artifact or image of the bundle"


def _name(
    pointer: str, value: Any, valid: Callable[[str], object], what: str
) -> Iterator[tuple[str, str]]:
    if not isinstance(value, str) or not valid(value):
        yield pointer, f"{quote(value)} is not {what}"


def printable(value: Any) -> Any:
    """A parsed document with every control character in its strings escaped, for a
    terminal or a Markdown record: a bundle's name holding a newline must not forge a line
    (`mirror: error: ...`) under it, nor an escape sequence repaint the screen."""
    if isinstance(value, str):
        return terminal_safe(value)
    if isinstance(value, list):
        return [printable(v) for v in value]
    if isinstance(value, dict):
        return {k: printable(v) for k, v in value.items()}
    return value


def quote(value: Any) -> str:
    """A hostile value in one short line: repr escapes newlines, and a long one is cut."""
    return shorten(repr(value), _TEXT_MAX)
