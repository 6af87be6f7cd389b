"""Pure parsers and builders for the formats mirror carries: semver, Palette packs, Helm.

Nothing here touches the network; sources and targets call these on bytes they already hold.
"""

from __future__ import annotations

from pathlib import Path


def schema_path(name: str) -> Path:
    """Where a JSON schema lives: the repo's `schemas/` in a checkout, else a packaged copy.

    A checkout (editable install) keeps schemas at the repository root; a wheel may ship them
    inside the package as `mirror/schemas/`. The first existing file wins; if neither exists
    the repo path is returned so the caller's error names the expected place.
    """
    package_dir = Path(__file__).resolve().parents[1]
    candidates = (package_dir.parent / "schemas" / name, package_dir / "schemas" / name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return candidates[0]
