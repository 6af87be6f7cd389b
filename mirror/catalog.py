"""The local system-scope registry catalog: what imports registered on this host.

One JSON file (`schemas/registry-catalog.schema.json`), rewritten atomically so a crash
never leaves half a catalog, and never holding a credential: entries say where content
is, not how to log in.

Identity: an entry is the same registry as another when kind, endpoint, baseContentPath and
fips agree (endpoint and path normalised). Re-importing a bundle therefore updates in place,
while FIPS and non-FIPS content at one place stay two registries, as VerteX needs. An entry
that would change only its importedAt (the same bundle imported again) is kept as it was,
so the file is not rewritten at all.

Reads are validated against the schema, except bytes this host already validated
(formats/schema.ValidMemo): the catalog mirror itself wrote last time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirror.errors import OperationError, UsageError
from mirror.formats import jsondoc
from mirror.formats.schema import ValidMemo, schema_problem
from mirror.streams import atomic_file, locked_folder, read_capped

CATALOG_CAP = 64 << 20  # bytes of the system catalog: a few hundred per registry

CATALOG_SCHEMA = "registry-catalog.schema.json"
SCOPES = ("default", "system", "all")
_COLUMNS = (
    ("NAME", "name"),
    ("KIND", "kind"),
    ("URL", "url"),
    ("BASE PATH", "basePath"),
    ("FIPS", "fips"),
    ("SCOPE", "scope"),
    ("PROVIDER", "providerType"),
)


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    kind: str  # oci | helm | pack: how Palette registers it
    provider_type: str | None  # oci only: pack | helm | zarf | image
    endpoint: str  # the target registry (or Helm repository URL) content landed in
    base_content_path: str  # prefix under endpoint; "" for none
    fips: bool
    source_url: str | None  # where it came from (None for pack folders)
    source_base_path: str
    bundle_digest: str  # "sha256:..." of the bundle's manifest
    imported_at: str  # RFC 3339, UTC
    scope: str = "system"

    @property
    def key(self) -> tuple[str, str, str, bool]:
        """Identity for upsert; see the module docstring."""
        endpoint = self.endpoint.strip().rstrip("/").lower()
        return (self.kind, endpoint, self.base_content_path.strip("/"), self.fips)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "providerType": self.provider_type,
            "endpoint": self.endpoint,
            "baseContentPath": self.base_content_path,
            "scope": self.scope,
            "fips": self.fips,
            "source": {"url": self.source_url, "basePath": self.source_base_path},
            "bundleDigest": self.bundle_digest,
            "importedAt": self.imported_at,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CatalogEntry:
        return cls(
            name=d["name"],
            kind=d["kind"],
            provider_type=d.get("providerType"),
            endpoint=d["endpoint"],
            base_content_path=d.get("baseContentPath", ""),
            fips=d["fips"],
            source_url=d["source"]["url"],
            source_base_path=d["source"]["basePath"],
            bundle_digest=d["bundleDigest"],
            imported_at=d["importedAt"],
            scope=d.get("scope", "system"),
        )

    def to_row(self) -> dict[str, Any]:
        """Same shape as `Registry.to_row`: url is where the content now is."""
        return {
            "name": self.name,
            "kind": self.kind,
            "url": self.endpoint,
            "basePath": self.base_content_path or None,
            "fips": self.fips,
            "scope": self.scope,
            "providerType": self.provider_type,
        }


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_catalog_path() -> Path:
    """$XDG_DATA_HOME/mirror/registries.json; a relative XDG_DATA_HOME is ignored, per XDG."""
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "mirror" / "registries.json"


def _validate(path: Path, doc: Any, *, checked: bool = False) -> list[CatalogEntry]:
    """Entries of a catalog document; `checked`: these bytes passed the schema before."""
    problem = None if checked else schema_problem(CATALOG_SCHEMA, doc)
    if problem:
        raise UsageError(f"{path}: {problem}")
    return [CatalogEntry.from_json(e) for e in doc["registries"]]


def load_catalog(path: Path, memo: ValidMemo | None = None) -> list[CatalogEntry]:
    """Entries in file order; a missing file is an empty catalog (nothing imported yet)."""
    path = Path(path)
    try:
        data = read_capped(path, CATALOG_CAP)
        text = data.decode("utf-8")
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"{path}: cannot read the catalog: {reason}") from None
    try:
        doc = jsondoc.loads(text)
    except jsondoc.DocumentError as exc:
        raise UsageError(f"{path}: {exc}") from None
    checked = memo is not None and memo.holds(CATALOG_SCHEMA, data)
    entries = _validate(path, doc, checked=checked)
    if memo is not None and not checked:
        memo.record(CATALOG_SCHEMA, data)
    return entries


def records_lock(catalog: Path) -> contextlib.AbstractContextManager[bool]:
    """The catalog's folder, locked: the catalog and the records beside it (freshness,
    chains) are read, changed and written by one import at a time."""
    try:
        catalog.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OperationError(f"{catalog.parent}: cannot create: {exc.strerror or exc}") from None
    return locked_folder(catalog.parent)


def upsert(
    path: Path,
    entries: Sequence[CatalogEntry],
    memo: ValidMemo | None = None,
    *,
    held: bool = False,
) -> list[CatalogEntry]:
    """Add or update entries by identity (see module docstring); return the whole catalog.
    `held`: the caller holds `records_lock` (a second flock of the folder would wait on it)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.nullcontext() if held else locked_folder(path.parent):
            current = load_catalog(path, memo)
            merged = {e.key: e for e in current}
            for entry in entries:
                old = merged.get(entry.key)
                if old is None or dataclasses.replace(entry, imported_at=old.imported_at) != old:
                    merged[entry.key] = entry  # dicts keep insertion order: updates stay put
            result = list(merged.values())
            if result == current and path.exists():
                return result  # the same bundle again: nothing to record
            doc = {"version": 1, "registries": [e.to_json() for e in result]}
            _validate(path, doc)  # never write what we could not read back
            data = (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode()
            with atomic_file(path) as fh:
                fh.write(data)
            if memo is not None:
                memo.record(CATALOG_SCHEMA, data)
    except OSError as exc:
        raise OperationError(f"{path}: cannot write the catalog: {exc.strerror or exc}") from None
    return result


def list_rows(scope: str, fips: bool, catalog_path: Path | None = None) -> list[dict[str, Any]]:
    """Rows for `mirror registries list`: defaults, this host's catalog, or both."""
    if scope not in SCOPES:
        raise UsageError(f"--scope {scope!r}: expected one of {', '.join(SCOPES)}")
    rows: list[dict[str, Any]] = []
    if scope in ("default", "all"):
        from mirror.spec import default_registries  # YAML: only `registries list` needs it

        rows += [r.to_row("default") for r in default_registries()]
    if scope in ("system", "all"):
        catalog = load_catalog(catalog_path or default_catalog_path())
        rows += [e.to_row() for e in catalog]
    return [r for r in rows if r["fips"]] if fips else rows


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def render_table(rows: Sequence[dict[str, Any]]) -> str:
    """Plain columns, widest cell wide; '-' for none. Ends with a newline."""
    table = [[title for title, _ in _COLUMNS]]
    table += [[_cell(row.get(key)) for _, key in _COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(_COLUMNS))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in table
    ]
    if not rows:
        lines.append("(no registries)")
    return "\n".join(lines) + "\n"
