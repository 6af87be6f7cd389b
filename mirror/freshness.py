"""Rollback protection: the far side refuses a bundle older than one it already imported.

A signature proves who made a bundle, not that it is the latest: replaying last month's
validly signed bundle would roll the air gap back to last month's (maybe vulnerable)
content. So the import host remembers, per bundle name and signer, the newest `created`
it imported, beside its catalog, and refuses an older one (exit 3) unless the operator
says `--allow-downgrade`. An unsigned bundle is remembered under "unsigned".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mirror.errors import VerificationError
from mirror.formats import jsondoc
from mirror.streams import atomic_file, read_small_file

FILE_NAME = "imported-bundles.json"  # beside the catalog
MAX_BYTES = 16 * 1024 * 1024


class DowngradeError(VerificationError):
    """A validly signed bundle that is older than one this host imported."""


def record_key(name: str, signer: str | None) -> str:
    return f"{name}\n{signer or 'unsigned'}"


class ImportRecord:
    """A JSON record the import host keeps beside its catalog, one entry per bundle name and
    signer. One that cannot be read is refused, never taken as empty: failing open would
    let anyone who can break the file roll the gap back."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, Any]:
        try:
            data = read_small_file(self.path, MAX_BYTES)
        except OSError as exc:
            raise VerificationError(f"{self.path}: cannot read: {exc.strerror}") from None
        if data is None:
            return {}
        try:
            doc = jsondoc.loads(data)
        except ValueError:
            doc = None
        if len(data) > MAX_BYTES or not isinstance(doc, dict):
            raise VerificationError(
                f"{self.path}: not a record of imported bundles; fix or remove it to go on"
            )
        return doc

    def _entry(self, name: str, signer: str | None) -> dict[str, Any] | None:
        last = self._load().get(record_key(name, signer))
        return last if isinstance(last, dict) else None

    def _save(self, name: str, signer: str | None, entry: dict[str, Any]) -> None:
        doc = self._load()
        doc[record_key(name, signer)] = entry
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(self.path) as fh:
            fh.write(json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n")


class Freshness(ImportRecord):
    """The newest bundle imported per (name, signer)."""

    def check(self, name: str, signer: str | None, created: str) -> None:
        """Refuse a bundle older than the newest of its name and signer imported here.

        `created` is RFC 3339 UTC as the manifest writes it, so string order is time order.
        """
        last = self._entry(name, signer)
        if last is None or not isinstance(last.get("created"), str):
            return
        if created < last["created"]:
            who = f"signer {signer[:16]}" if signer else "unsigned"
            raise DowngradeError(
                f"bundle {name!r} ({who}) was created {created}, before {last['created']}, "
                "which this host already imported; pass --allow-downgrade to take it anyway"
            )

    def record(self, name: str, signer: str | None, created: str, digest: str) -> None:
        last = self._entry(name, signer)
        if last is not None and str(last.get("created", "")) > created:
            return  # an allowed downgrade does not lower the mark
        self._save(name, signer, {"created": created, "bundleDigest": digest})
