"""Remember bundles already proven whole, so a re-import doesn't hash 200 GB again.

After a full check (FILE.sig over every byte, or every member), the file's identity is
recorded: device, inode, size, mtime and ctime in nanoseconds, with the key and mode it
passed under. ctime is set by the kernel on any change to the file and cannot be set back
by a user, so a bundle modified since its check no longer matches and is checked again in
full, as git's index and rsync trust a file's stat. Even on a match, the manifest's
signature is checked again, and every blob still streams through its digest check; only
the schema check of those same manifest bytes (recorded by digest) is not repeated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirror.bundle.parts import stamp
from mirror.streams import read_hint, write_hint

MAX_ENTRIES = 64
# What a full check covers; a proof recorded by a check that covered less proves nothing
# now. 2: the table of contents is proven too (a proof from before must check again).
CHECKS = 2


@dataclass(frozen=True)
class Proof:
    """What a full check proved: this exact file passed with this key in this mode."""

    path: str
    stamp: tuple[int, ...]
    signer: str | None
    fips: bool
    manifest: str = ""  # digest of the manifest.json that passed its schema

    @classmethod
    def of(cls, path: Path, signer: str | None, fips: bool, manifest: str = "") -> Proof:
        return cls(str(path.resolve()), stamp(path), signer, fips, manifest)


class VerifiedMemo:
    """A small JSON file of proofs; unreadable or foreign content simply proves nothing."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def holds(self, proof: Proof) -> bool:
        return any(_same(entry, proof) for entry in self._load())

    def record(self, proof: Proof) -> None:
        entries = [e for e in self._load() if e.get("path") != proof.path]
        entries.append(
            {
                "path": proof.path,
                "stamp": list(proof.stamp),
                "signer": proof.signer,
                "fips": proof.fips,
                "manifest": proof.manifest,
                "checks": CHECKS,
            }
        )
        write_hint(self.path, entries[-MAX_ENTRIES:])  # unwritten: a full check next time

    def _load(self) -> list[dict[str, Any]]:
        doc = read_hint(self.path)
        return [e for e in doc if isinstance(e, dict)] if isinstance(doc, list) else []


def _same(entry: dict[str, Any], proof: Proof) -> bool:
    return (
        entry.get("path") == proof.path
        and tuple(entry.get("stamp") or ()) == proof.stamp
        and entry.get("signer") == proof.signer
        and (entry.get("fips") is True or not proof.fips)
        and entry.get("manifest", "") == proof.manifest
        and entry.get("checks") == CHECKS
    )
