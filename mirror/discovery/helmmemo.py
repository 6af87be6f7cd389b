"""A Helm repository's index.yaml between exports: its validators and what it parsed to.

A Bitnami-size index (18,000 versions, 17 MB) costs seconds to parse even with a fast
parser, and most months it has not changed. The export cache keeps, per repository, the
index's ETag and Last-Modified and the chart versions it parsed to, so a warm export asks
with If-None-Match/If-Modified-Since and, on `304 Not Modified` (or the very same bytes
again), reads the versions back instead of parsing. They sit in a JSON file named by its
sha256 and checked against it on load: a torn, edited or foreign file is a miss (a full
GET and a parse), never a wrong answer. Nothing here holds a credential: files are named
by a hash of the repository URL and user name, whose query may carry a token.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirror.formats import jsondoc
from mirror.formats.helm import ChartVersion, metadata_of
from mirror.streams import atomic_file, read_capped, read_hint, write_hint

VERSIONS_CAP = 1 << 30  # a parsed index kept as JSON: Bitnami's is tens of MiB

_HEX = frozenset("0123456789abcdef")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class KeptIndex:
    """What the last run saw of one repository's index.yaml."""

    etag: str | None
    modified: str | None
    index: str  # sha256 of the index.yaml bytes
    versions: list[ChartVersion]

    def validators(self) -> dict[str, str]:
        """Conditional-GET headers; empty when the server gave neither validator."""
        headers = {"If-None-Match": self.etag} if self.etag else {}
        if self.modified:
            headers["If-Modified-Since"] = self.modified
        return headers


class IndexMemo:
    """One repository's entry in the cache's `helm/` folder: a small memo file naming a
    versions file by its digest."""

    def __init__(self, folder: Path, base_url: str, user: str | None) -> None:
        self.folder = folder
        self.memo = folder / (_sha256(f"{base_url}\n{user or ''}".encode())[:32] + ".json")

    def load(self) -> KeptIndex | None:
        """The kept index, if its versions file is whole and well-formed; else None."""
        doc: Any = read_hint(self.memo)
        if not isinstance(doc, dict):
            return None
        parsed, index = doc.get("parsed"), doc.get("index")
        etag, modified = doc.get("etag"), doc.get("modified")
        if not (_is_hex(parsed) and _is_hex(index)) or not _opt_str(etag, modified):
            return None
        try:
            data = read_capped(self.folder / f"{parsed}.versions.json", VERSIONS_CAP)
            if _sha256(data) != parsed:
                return None
            versions = [_version(item) for item in jsondoc.loads(data)]
        except (OSError, ValueError, TypeError, KeyError):
            return None
        return KeptIndex(etag, modified, str(index), versions)

    def store(
        self, etag: str | None, modified: str | None, index: str, versions: list[ChartVersion]
    ) -> None:
        """Keep this index's versions; failing to only costs a parse next time."""
        data = json.dumps([_item(cv) for cv in versions], separators=(",", ":")).encode()
        parsed = _sha256(data)
        before: Any = read_hint(self.memo)
        try:
            with atomic_file(self.folder / f"{parsed}.versions.json", 0o600, durable=False) as fh:
                fh.write(data)
        except OSError:
            return
        write_hint(
            self.memo, {"etag": etag, "modified": modified, "index": index, "parsed": parsed}
        )
        old = before.get("parsed") if isinstance(before, dict) else None
        if _is_hex(old) and old != parsed:
            (self.folder / f"{old}.versions.json").unlink(missing_ok=True)


def _is_hex(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def _opt_str(*values: Any) -> bool:
    return all(v is None or isinstance(v, str) for v in values)


def _item(cv: ChartVersion) -> dict[str, Any]:
    return {
        "name": cv.name,
        "version": cv.version,
        "urls": list(cv.urls),
        "digest": cv.digest,
        "created": cv.created,
        "entry": dict(cv.entry),  # the repository's own entry; Chart.yaml's fields are in it
    }


def _version(item: Any) -> ChartVersion:
    """A ChartVersion from a kept item; a TypeError for anything not shaped like one."""
    urls, entry = item["urls"], item["entry"]  # a memo from before entries were kept: a miss
    strings = isinstance(item["name"], str) and isinstance(item["version"], str)
    if not strings or not _opt_str(item["digest"], item["created"]):
        raise TypeError("not a kept chart version")
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise TypeError("not a kept chart version")
    if not isinstance(entry, dict):
        raise TypeError("not a kept chart version")
    return ChartVersion(
        item["name"], item["version"], tuple(urls), item["digest"], item["created"],
        metadata_of(entry), entry,
    )  # fmt: skip
