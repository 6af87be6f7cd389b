"""JSON Schema validation in one place: every format that has a schema checks it here.

A document is first put to the schema's compiled check (formats/fastcheck.py), which
passes valid ones without importing jsonschema; jsonschema walks only the rest, and words
their problem in one line, `/pointer: reason`. `ValidMemo` remembers documents (by digest)
that passed, so a file mirror wrote itself is not validated again on every read.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # jsonschema costs ~70 ms to import: only for a document that fails
    import jsonschema
    from jsonschema.exceptions import ValidationError

from mirror.formats import schema_path
from mirror.formats.fastcheck import Check, Unsure, compile_schema, ecma_anchors
from mirror.streams import read_hint, write_hint


@cache
def validator(name: str) -> jsonschema.Draft202012Validator:
    """The schemas ship with mirror and are checked against the metaschema by the tests
    (tests/test_spec.py), not on every run: that check cost more than the validation."""
    return judge(_definition(name, None))


def judge(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """jsonschema's 2020-12 validator, but with `pattern` read as ECMA-262 reads it (`$`
    is the end of the text) as the compiled check reads it: stock jsonschema uses Python's
    `re.search`, whose `$` let a value with a final newline through."""
    return _judge_class()(schema)


@cache
def _judge_class() -> type[jsonschema.Draft202012Validator]:
    import jsonschema
    from jsonschema.exceptions import ValidationError

    def pattern(
        walker: Any, wanted: str, instance: Any, schema: dict[str, Any]
    ) -> Iterator[ValidationError]:  # jsonschema's own keyword, `$` aside
        if walker.is_type(instance, "string") and not _ecma(wanted).search(instance):
            yield ValidationError(f"{instance!r} does not match {wanted!r}")

    draft = jsonschema.Draft202012Validator
    made: type[jsonschema.Draft202012Validator] = jsonschema.validators.extend(
        draft, {"pattern": pattern}
    )
    return made


@cache
def _ecma(pattern: str) -> re.Pattern[str]:
    return re.compile(ecma_anchors(pattern))


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
    return judge(_definition(name, definition))


def _definition(name: str, definition: str | None) -> dict[str, Any]:
    """The schema file, or a part of it as a schema of its own: one of its `$defs` by
    name, or any subschema by its JSON pointer ("properties/name")."""
    schema: dict[str, Any] = json.loads(schema_path(name).read_text(encoding="utf-8"))
    if definition is None:
        return schema
    node: Any = schema
    for part in (definition if "/" in definition else f"$defs/{definition}").split("/"):
        node = node[part]
    return {"$defs": schema.get("$defs", {}), **node}


@cache
def _fast(name: str, definition: str | None) -> Check | None:
    return compile_schema(_definition(name, definition))


def known_valid(schema_name: str, doc: Any, definition: str | None = None) -> bool:
    """True when the compiled check (formats/fastcheck.py) finds `doc` valid, without
    importing jsonschema; False means "ask jsonschema", which then words the problem."""
    check = _fast(schema_name, definition)
    if check is None:
        return False
    try:
        return check(doc)
    except (Unsure, RecursionError):  # a schema that loops on itself: jsonschema decides
        return False


def schema_problem(
    schema_name: str, doc: Any, prefix: Sequence[str | int] = (), definition: str | None = None
) -> str | None:
    """First problem as `/pointer: reason`, or None (against one of its `$defs`, if named).

    The deepest error wins: a typo in `kind` matters more than the `url` requirement it
    switched on. Schemas may carry `x-message` beside a keyword whose own text is cryptic.
    """
    if known_valid(schema_name, doc, definition):
        return None
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


def items_problem(
    schema_name: str, definition: str, items: list[Any], prefix: Sequence[str | int]
) -> str | None:
    """A long array of one `$defs` record (a manifest's members), item by item: the
    compiled check passes good ones at list speed (jsonschema spent ~100 µs an item;
    300,000 members took 35 s) and the first that fails goes to jsonschema for its words."""
    check = _fast(schema_name, definition)
    for i, item in enumerate(items):
        if check is not None:
            try:
                if check(item):
                    continue
            except Unsure:
                pass
        found = schema_problem(schema_name, item, (*prefix, i), definition)
        if found is not None:
            return found
    return None
