"""JSON Schema validation in one place: every format that has a schema checks it here.

Validators are built once per schema file; messages are one line, `/pointer: reason`.
`ValidMemo` remembers documents (by digest) that passed, so a file mirror wrote itself is
not validated again on every read, and a re-import need not even import jsonschema.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # jsonschema costs 40 ms to import: only when something is validated
    import jsonschema
    from jsonschema.exceptions import ValidationError

from mirror.formats import schema_path
from mirror.streams import read_hint, write_hint


@cache
def validator(name: str) -> jsonschema.Draft202012Validator:
    """The schemas ship with mirror and are checked against the metaschema by the tests
    (tests/test_spec.py), not on every run: that check cost more than the validation."""
    import jsonschema

    schema = json.loads(schema_path(name).read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def json_pointer(parts: Iterable[str | int]) -> str:
    """RFC 6901 pointer; the document root shows as "/" so messages never start with ': '."""
    escaped = [str(p).replace("~", "~0").replace("/", "~1") for p in parts]
    return "/" + "/".join(escaped)


def _reason(error: ValidationError) -> str:
    custom = error.schema.get("x-message") if isinstance(error.schema, dict) else None
    text = str(custom) if custom else error.message
    return text if len(text) <= 300 else text[:297] + "..."  # a whole document can be the instance


def schema_problem(schema_name: str, doc: Any, prefix: Sequence[str | int] = ()) -> str | None:
    """First problem as `/pointer: reason`, or None.

    The deepest error wins: a typo in `kind` matters more than the `url` requirement it
    switched on. Schemas may carry `x-message` beside a keyword whose own text is cryptic.
    """
    from jsonschema.exceptions import best_match

    errors = list(validator(schema_name).iter_errors(doc))
    if not errors:
        return None
    depth = max(len(e.absolute_path) for e in errors)
    error = best_match(e for e in errors if len(e.absolute_path) == depth)
    assert error is not None
    return f"{json_pointer([*prefix, *error.absolute_path])}: {_reason(error)}"


MEMO_ENTRIES = 16


class ValidMemo:
    """Digests of documents that passed their schema, kept in a small JSON file.

    Validation is a pure function of the schema's bytes and the document's bytes, so a
    match on both digests stands for the check. Unreadable memo content proves nothing.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def holds(self, schema_name: str, data: bytes) -> bool:
        return _memo_key(schema_name, data) in self._load()

    def record(self, schema_name: str, data: bytes) -> None:
        keys = [k for k in self._load() if k != _memo_key(schema_name, data)]
        keys.append(_memo_key(schema_name, data))
        write_hint(self.path, keys[-MEMO_ENTRIES:])

    def _load(self) -> list[str]:
        doc = read_hint(self.path)
        return [k for k in doc if isinstance(k, str)] if isinstance(doc, list) else []


def _memo_key(schema_name: str, data: bytes) -> str:
    schema = hashlib.sha256(schema_path(schema_name).read_bytes()).hexdigest()
    return f"{schema_name}:{schema}:{hashlib.sha256(data).hexdigest()}"
