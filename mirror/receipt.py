"""Import receipts: what a target holds for a bundle, and what a delta export leaves out.

`mirror import --receipt FILE` writes one; `mirror export --since FILE` reads them back and
ships only the blobs the far side does not already hold. Schema: schemas/receipt.schema.json.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mirror.errors import OperationError, SpecError
from mirror.formats import jsondoc
from mirror.formats.schema import schema_problem
from mirror.streams import atomic_file

RECEIPT_SCHEMA = "receipt.schema.json"


def write_receipt(path: Path, doc: dict[str, Any]) -> None:
    """Never write what a delta export could not read back."""
    problem = schema_problem(RECEIPT_SCHEMA, doc)
    if problem:
        raise OperationError(f"receipt {path}: {problem}")
    with atomic_file(path) as fh:
        fh.write(json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n")


@dataclass
class Held:
    """Blobs the far side holds, each with one repository there that has it."""

    where: dict[str, str] = field(default_factory=dict)  # digest -> repository on the target
    bundles: list[str] = field(default_factory=list)  # the receipts' bundle digests


def load_held(paths: Sequence[Path]) -> Held:
    """Read receipts; a missing, unreadable or malformed one is a usage error (exit 2)."""
    held = Held()
    for path in paths:
        try:
            doc = jsondoc.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SpecError(f"{path}: cannot read the receipt: {exc.strerror}") from None
        except ValueError as exc:
            raise SpecError(f"{path}: the receipt is not JSON: {exc}") from None
        problem = schema_problem(RECEIPT_SCHEMA, doc)
        if problem:
            raise SpecError(f"{path}: {problem}")
        if doc["bundleDigest"] not in held.bundles:
            held.bundles.append(doc["bundleDigest"])
        for art in doc["artifacts"]:
            repo = art["target"].split("/", 1)[-1].split("@", 1)[0].rsplit(":", 1)[0]
            for digest in [art["digest"], *art["blobs"]]:
                held.where.setdefault(digest, repo)
    return held
