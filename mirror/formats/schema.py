"""JSON Schema validation in one place: every format that has a schema checks it here.

Validators are built once per schema file; messages are one line, `/pointer: reason`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from mirror.formats import schema_path


@cache
def validator(name: str) -> jsonschema.Draft202012Validator:
    """The schemas ship with mirror and are checked against the metaschema by the tests
    (tests/test_spec.py), not on every run: that check cost more than the validation."""
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
    errors = list(validator(schema_name).iter_errors(doc))
    if not errors:
        return None
    depth = max(len(e.absolute_path) for e in errors)
    error = best_match(e for e in errors if len(e.absolute_path) == depth)
    assert error is not None
    return f"{json_pointer([*prefix, *error.absolute_path])}: {_reason(error)}"
