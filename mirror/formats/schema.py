"""JSON Schema validation in one place: every format that has a schema checks it here.

Validators are built once per schema file; messages are one line, `/pointer: reason`.
`ValidMemo` remembers documents (by digest) that passed, so a file mirror wrote itself is
not validated again on every read, and a re-import need not even import jsonschema.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
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


@cache
def definition_validator(name: str, definition: str) -> jsonschema.Draft202012Validator:
    """A validator for one of a schema's `$defs`, its references resolved in the same file."""
    import jsonschema

    schema = json.loads(schema_path(name).read_text(encoding="utf-8"))
    single = {"$defs": schema["$defs"], "$ref": f"#/$defs/{definition}"}
    return jsonschema.Draft202012Validator(single)


def schema_problem(
    schema_name: str, doc: Any, prefix: Sequence[str | int] = (), definition: str | None = None
) -> str | None:
    """First problem as `/pointer: reason`, or None (against one of its `$defs`, if named).

    The deepest error wins: a typo in `kind` matters more than the `url` requirement it
    switched on. Schemas may carry `x-message` beside a keyword whose own text is cryptic.
    """
    from jsonschema.exceptions import best_match

    check = (
        validator(schema_name)
        if definition is None
        else definition_validator(schema_name, definition)
    )
    errors = list(check.iter_errors(doc))
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


class FlatRecords:
    """A long array of flat records (a manifest's members), checked at list speed.

    jsonschema spends ~100 µs per item of such an array: 300,000 members took 35 s. This
    reads the item's own definition from the same schema (a flat object of strings and
    integers) and checks exactly what it says, so the schema stays the one source of
    truth. An item that fails is handed to jsonschema alone, for the usual message.
    """

    _OBJECT_KEYS = frozenset({"type", "additionalProperties", "required", "properties"})

    def __init__(self, schema_name: str, definition: str) -> None:
        self.schema_name, self.definition = schema_name, definition
        defs = json.loads(schema_path(schema_name).read_text(encoding="utf-8"))["$defs"]
        node = _plain(defs[definition])
        if set(node) - self._OBJECT_KEYS or node.get("additionalProperties") is not False:
            raise ValueError(f"{definition}: not a flat record this checker understands")
        self.required = frozenset(node["required"])
        self.checks: dict[str, Callable[[Any], bool]] = {}
        for key, sub in node["properties"].items():
            leaf = _plain(defs[sub["$ref"].rsplit("/", 1)[-1]] if "$ref" in sub else sub)
            self.checks[key] = _leaf_check(f"{definition}/{key}", leaf)

    def problem(self, items: list[Any], prefix: Sequence[str | int]) -> str | None:
        """The first failing item's `/pointer: reason`, as schema_problem gives it, or None."""
        checks, required = self.checks, self.required
        for i, item in enumerate(items):
            if (
                type(item) is dict
                and required <= item.keys() <= checks.keys()
                and all(checks[k](v) for k, v in item.items())
            ):
                continue
            found = schema_problem(self.schema_name, item, (*prefix, i), self.definition)
            if found is not None:
                return found
        return None


def _plain(node: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in node.items() if k != "description"}


def _leaf_check(where: str, leaf: dict[str, Any]) -> Callable[[Any], bool]:
    """jsonschema's own rules for a string or integer: 1.0 is an integer, True is not;
    `pattern` is re.search; lengths count code points."""
    import re

    kind = leaf.get("type")
    if kind == "integer" and set(leaf) <= {"type", "minimum"}:
        least = leaf.get("minimum", float("-inf"))
        return lambda v: (type(v) is int or (type(v) is float and v.is_integer())) and v >= least
    if kind == "string" and set(leaf) <= {"type", "pattern", "minLength", "maxLength"}:
        search = re.compile(leaf.get("pattern", "")).search
        low, high = leaf.get("minLength", 0), leaf.get("maxLength", float("inf"))
        return lambda v: type(v) is str and low <= len(v) <= high and search(v) is not None
    raise ValueError(f"{where}: not a leaf this checker understands")
