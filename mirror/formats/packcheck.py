"""Warnings for messy but usable pack.json files, worded for the person who owns the pack.

Kept apart from pack.py so the rules, learned from pack-central's 85 real packs, read as one
list. Fatal problems (no name, no version) are raised by pack.py before these run.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # jsonschema is imported where a document is validated
    import jsonschema

from mirror.formats.semver import parse_version

LAYERS = ("kernel", "os", "k8s", "cni", "csi", "addon")
# Fields Palette shows or filters on; their absence makes a pack hard to find, not unusable.
RECOMMENDED = ("displayName", "layer", "cloudTypes")


def _pointer(path: Iterable[Any]) -> str:
    return "/" + "/".join(str(p) for p in path)


def _schema_warning(error: jsonschema.ValidationError) -> str:
    path = list(error.path)
    if path == ["layer"] and error.validator == "enum":
        return f"layer {error.instance!r} is not one of {'|'.join(LAYERS)}"
    if path == ["eol"]:
        return f"eol is blank ({error.instance!r}); set a date or remove it"
    if path[-1:] == ["type"] and path[:2] == ["constraints", "dependencies"]:
        return (
            f"{_pointer(path)} {error.instance!r} is not required|optional|notSupported;"
            " it is not checked"
        )
    return f"{_pointer(path)}: {error.message}"


def _version_warning(version: str) -> str | None:
    parsed = parse_version(version)
    if parsed is None:
        return f"version {version!r} is not semver; it will sort after every semver version"
    if any(c.isalpha() for c in version):
        return f"version {version!r} has letters (not plain semver)"
    if str(parsed) != version:
        return f"version {version!r} is not canonical semver ({parsed})"
    return None


def _blank_strings(doc: dict[str, Any]) -> list[str]:
    """Whitespace-only or padded strings, which Palette's UI shows as they are."""
    out = []
    for key, value in sorted(doc.items()):
        if key in ("eol", "name", "version") or not isinstance(value, str):
            continue
        if value and not value.strip():
            out.append(f"{key} is whitespace only ({value!r})")
        elif value != value.strip():
            out.append(f"{key} {value!r} has leading or trailing spaces")
    return out


def _dependency_warnings(doc: dict[str, Any]) -> list[str]:
    constraints = doc.get("constraints")
    deps = constraints.get("dependencies") if isinstance(constraints, dict) else None
    out = []
    for i, dep in enumerate(deps if isinstance(deps, list) else []):
        if not isinstance(dep, dict):
            continue
        for key in ("minVersion", "maxVersion"):
            bound = dep.get(key)
            if isinstance(bound, str) and bound.strip() and parse_version(bound) is None:
                out.append(
                    f"/constraints/dependencies/{i}/{key} {bound!r} is not semver; it is ignored"
                )
    return out


def pack_warnings(
    doc: dict[str, Any], schema_errors: Iterable[jsonschema.ValidationError]
) -> list[str]:
    """Every warning for a pack.json whose name and version are already known to be usable."""
    out = [f"{key} is missing" for key in RECOMMENDED if key not in doc]
    if doc.get("layer") == "addon" and "addonType" not in doc:
        out.append("addonType is missing (addon packs are grouped by it)")
    out += [_schema_warning(e) for e in schema_errors]
    version_warning = _version_warning(doc["version"])
    if version_warning:
        out.append(version_warning)
    out += _blank_strings(doc)
    if not doc.get("charts") and not doc.get("kubeManifests"):
        out.append("declares no charts and no kubeManifests")
    out += _dependency_warnings(doc)
    return out
