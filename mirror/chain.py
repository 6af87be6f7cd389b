"""The 24-hour sync: a chain of deltas, each against what the one before it sent.

Connected side: `export --state DIR` keeps, per spec name, the manifest.json of each bundle
it sent and the chain's position; the next export is a delta against the last one, with the
next sequence number in its signed manifest (`--full` starts a new chain). The state moves
only after the bundle is written, atomically, so a killed export leaves it as it was.

Far side: import applies a chain in order. It remembers the last sequence applied per
bundle name and signer (beside the catalog, with the freshness record); a gap is exit 1
naming the missing numbers, a replay or an older one exit 3.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

from mirror.bundle.manifest import BundleManifest, Chain
from mirror.errors import OperationError, UsageError, VerificationError
from mirror.formats import jsondoc
from mirror.freshness import ImportRecord
from mirror.oci.names import slug
from mirror.streams import atomic_file, locked_folder, read_capped

STATE_CAP = 1 << 20  # a chain's state: a sequence number, digests, a few names

STATE_FILE = "chain.json"
# What a state holds, as the signed manifest's schema has the chain (formats checked on load).
_FIELDS = {
    "id": re.compile(r"[a-f0-9]{32}"),
    "manifest": re.compile(r"[0-9]{6,10}\.manifest\.json"),
    "digest": re.compile(r"sha256:[a-f0-9]{64}"),
}
MAX_SEQUENCE = 1_000_000_000


@dataclass(frozen=True)
class Next:
    """What the next export of a chain is: its place, and the base it is a delta against."""

    chain: Chain
    base: Path | None  # the previous bundle's manifest.json


class ChainState:
    """`--state DIR`'s folder for one spec name."""

    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.folder = root / slug(name)

    @contextmanager
    def held(self) -> Iterator[None]:
        """One export of a chain at a time: two that both read sequence N wrote two
        different bundles N, and the far side could apply only one of them."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with locked_folder(self.folder, wait=False) as mine:
            if not mine:
                raise OperationError(
                    f"{self.folder}: another export of this chain is running; run this one "
                    "when it has ended"
                )
            yield

    def _load(self) -> dict[str, object] | None:
        path = self.folder / STATE_FILE
        try:
            doc = jsondoc.loads(read_capped(path, STATE_CAP))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise UsageError(f"{path}: not a chain state: {exc}") from None
        if not _well_formed(doc):
            raise UsageError(f"{path}: not a chain state; move it away to start a new chain")
        named = doc.get("name", self.name)
        if named != self.name:  # "My App" and "my-app" share a folder name
            raise UsageError(
                f"{path}: the chain of spec {named!r}, not {self.name!r}; give this spec "
                "another --state folder"
            )
        return doc

    def next(self, *, full: bool) -> Next:
        doc = None if full else self._load()
        if doc is None:
            return Next(Chain(secrets.token_hex(16), 1, None), None)
        base = self.folder / str(doc["manifest"])
        if not base.is_file():
            raise UsageError(f"{base}: the chain's last manifest is missing; export --full")
        return Next(Chain(str(doc["id"]), int(str(doc["sequence"])) + 1, str(doc["digest"])), base)

    def record(self, manifest: BundleManifest, data: bytes, digest: str) -> None:
        """After the bundle is written: keep its manifest, then move the chain forward."""
        assert manifest.chain is not None
        name = f"{manifest.chain.sequence:06d}.manifest.json"
        with atomic_file(self.folder / name) as fh:
            fh.write(data)
        doc = {
            "id": manifest.chain.id,
            "sequence": manifest.chain.sequence,
            "manifest": name,
            "digest": digest,
            "name": self.name,
        }
        with atomic_file(self.folder / STATE_FILE) as fh:
            fh.write(json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n")


def _well_formed(doc: object) -> TypeGuard[dict[str, object]]:
    """What `next` reads, each in the shape the signed manifest will need: a state whose
    `id` was lost was an internal error (KeyError), and a sequence past the schema's bound
    failed only after the whole fetch, as a schema violation of the new manifest."""
    if not isinstance(doc, dict):
        return False
    sequence, name = doc.get("sequence"), doc.get("name", "")
    if type(sequence) is not int or not 1 <= sequence < MAX_SEQUENCE:
        return False
    if not isinstance(name, str):
        return False
    return all(
        isinstance(doc.get(k), str) and rule.fullmatch(str(doc[k])) is not None
        for k, rule in _FIELDS.items()
    )


def output_name(template: Path, sequence: int) -> Path:
    """`-o outbox/palette-{seq}.tar.zst` names each bundle of a chain in order."""
    if "{seq}" not in template.name:
        return template
    return template.with_name(template.name.replace("{seq}", f"{sequence:06d}"))


class ChainRecord(ImportRecord):
    """The far side's memory of chains: the last sequence applied per name and signer."""

    def check(self, name: str, signer: str | None, chain: Chain) -> None:
        """The next of its chain, or a full bundle that starts a new one; the full bundle
        of the chain in force, once applied, is a replay like any other."""
        last = self._entry(name, signer)
        same = last is not None and last.get("id") == chain.id
        if chain.base is None and not same:
            return  # a full bundle starts (or restarts, with a new id) a chain
        if last is None or not same:
            raise OperationError(
                f"bundle {name!r} is delta {chain.sequence} of a chain this host has not "
                "started: import that chain's full bundle (sequence 1) first"
            )
        applied = int(str(last.get("sequence", 0)))
        if chain.sequence <= applied:
            raise VerificationError(
                f"bundle {name!r}: sequence {chain.sequence} was already applied "
                f"(last: {applied}); a replay is refused"
            )
        if chain.sequence > applied + 1:
            missing = ", ".join(str(n) for n in range(applied + 1, chain.sequence))
            raise OperationError(
                f"bundle {name!r}: sequence {chain.sequence}, but {missing} not imported yet; "
                "import the missing ones first, in order"
            )

    def record(self, name: str, signer: str | None, chain: Chain) -> None:
        self._save(name, signer, {"id": chain.id, "sequence": chain.sequence})
