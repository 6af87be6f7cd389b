"""Import receipts: what a target holds for a bundle, and what a delta export leaves out.

`mirror import --receipt FILE` writes one; `mirror export --since FILE` reads them back and
ships only the blobs the far side does not already hold. Schema: schemas/receipt.schema.json.

A receipt is far-side data crossing back into the connected side, so it is read as hostile:
a bounded read, the depth bound of `formats.jsondoc`, the schema, and repository names that
are OCI paths (they end up in a signed delta manifest). With `import --receipt-key PRIV` it
is signed, FILE.sig beside FILE in `cosign sign-blob` form (and FILE.sha256), and `export
--receipt-key PUB` checks that signature over the very bytes it then parses.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mirror.errors import OperationError, SpecError, UnsignedError
from mirror.formats import jsondoc
from mirror.formats.schema import schema_problem
from mirror.oci.names import is_repository_path
from mirror.streams import Staged

if TYPE_CHECKING:  # cryptography is imported only when a key is in play
    from cryptography.hazmat.primitives.asymmetric import ec

RECEIPT_SCHEMA = "receipt.schema.json"
# About 80 bytes a blob: a receipt for a million blobs fits; a hostile one is not read whole.
MAX_RECEIPT = 128 * 1024 * 1024
MAX_REPOSITORY = 1024  # the bundle manifest's `heldAt` bound


def write_receipt(
    path: Path, doc: dict[str, Any], key: ec.EllipticCurvePrivateKey | None = None
) -> None:
    """Never write what a delta export could not read back; with KEY, sign it (FILE.sig)."""
    problem = schema_problem(RECEIPT_SCHEMA, doc)
    if problem:
        raise OperationError(f"receipt {path}: {problem}")
    data = json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"
    if len(data) > MAX_RECEIPT:
        raise OperationError(f"receipt {path}: {len(data)} bytes, more than export reads back")
    with Staged().publishing() as staged:  # the receipt and its sidecars, together
        with staged.file(path) as fh:
            fh.write(data)
        if key is not None:
            from mirror.signing import write_detached

            write_detached(path, hashlib.sha256(data).digest(), key, staged)
        else:  # an older receipt's signature beside this one would vouch for other bytes
            from mirror.bundle.parts import SHA256_SIDECAR, SIG_SIDECAR, sidecar

            for suffix in (SIG_SIDECAR, SHA256_SIDECAR):
                staged.remove(sidecar(path, suffix))


@dataclass
class Held:
    """Blobs the far side holds, each with one repository there that has it."""

    where: dict[str, str] = field(default_factory=dict)  # digest -> repository on the target
    bundles: list[str] = field(default_factory=list)  # the receipts' bundle digests


def load_held(paths: Sequence[Path], key: ec.EllipticCurvePublicKey | None = None) -> Held:
    """Read receipts; a missing, unreadable or malformed one is a usage error (exit 2).

    With KEY, each must carry FILE.sig by it: unsigned or wrongly signed is exit 3.
    """
    held = Held()
    for path in paths:
        data = _read_capped(path)
        if key is not None:
            from mirror.signing import verify_detached

            if verify_detached(path, key, digest=hashlib.sha256(data).digest()) is None:
                raise UnsignedError(
                    f"{path}: unsigned receipt: --receipt-key needs {path.name}.sig beside it "
                    "(import --receipt-key signs it)"
                )
        doc = _parse(path, data)
        if doc["bundleDigest"] not in held.bundles:
            held.bundles.append(doc["bundleDigest"])
        for art in doc["artifacts"]:
            repo = _repository(path, art["target"])
            for digest in [art["digest"], *art["blobs"]]:
                held.where.setdefault(digest, repo)
    return held


def _read_capped(path: Path) -> bytes:
    """The receipt's bytes, read once (what is verified is what is parsed), never unbounded:
    a file that says it is too large is refused before a byte is read."""
    too_large = SpecError(f"{path}: more than {MAX_RECEIPT // 2**20} MiB: not a receipt")
    try:
        with path.open("rb") as fh:
            if os.fstat(fh.fileno()).st_size > MAX_RECEIPT:
                raise too_large
            data = fh.read(MAX_RECEIPT + 1)
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the receipt: {exc.strerror}") from None
    if len(data) > MAX_RECEIPT:  # a file that grew, or a pipe
        raise too_large
    return data


def _parse(path: Path, data: bytes) -> dict[str, Any]:
    try:
        doc = jsondoc.loads(data)
    except ValueError as exc:
        raise SpecError(f"{path}: the receipt is not JSON: {exc}") from None
    problem = schema_problem(RECEIPT_SCHEMA, doc)
    if problem:
        raise SpecError(f"{path}: {problem}")
    assert isinstance(doc, dict)  # the schema says so
    return doc


def _repository(path: Path, target: str) -> str:
    """`HOST/REPOSITORY:TAG` (or `@DIGEST`) -> REPOSITORY, refused unless an OCI path: it
    goes into the delta's signed manifest, and the far side asks its registry for it."""
    repo = target.split("/", 1)[-1].split("@", 1)[0].rsplit(":", 1)[0]
    if len(repo) > MAX_REPOSITORY or not is_repository_path(repo):
        raise SpecError(f"{path}: artifact target {target[:80]!r} names no repository")
    return repo
