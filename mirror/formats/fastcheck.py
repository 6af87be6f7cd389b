"""A schema's verdict without jsonschema: the keywords our schemas use, compiled once into
plain predicates.

jsonschema is the authority on *why* a document fails, and it stays so: this only says
"valid" or "not known to be valid", and in the second case the caller asks jsonschema,
which words the problem. What it buys: jsonschema took ~70 ms to import (a third of an
export's start-up, on one core, before the first request) and ~25 ms to walk a bundle
manifest of 100 artifacts, with the copy's threads waiting on the writer meanwhile.

Exactness is the contract: `compile_schema` gives None for a schema with any keyword not
compiled here, and a check raises `Unsure` for an input it cannot judge as jsonschema
would (uniqueItems over non-strings), so no document passes here that jsonschema refuses.
tests/test_fastcheck.py holds the two to the same answer on every fixture and on thousands
of mutated documents.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], bool]
_Maker = Callable[["_Compiler", Any, dict[str, Any]], Check]  # a keyword's value to its check

# Keywords that only annotate, or that jsonschema does not assert without a format checker.
_IGNORED = frozenset(
    {"description", "title", "$schema", "$comment", "examples", "default", "format", "x-message"}
)


class Unsupported(Exception):
    """A keyword or reference this compiler does not handle: jsonschema checks the schema."""


class Unsure(Exception):
    """An input this check cannot judge exactly as jsonschema does: ask jsonschema."""


def compile_schema(schema: dict[str, Any]) -> Check | None:
    """A predicate true exactly where jsonschema (Draft 2020-12, no format checker) finds no
    error, or None when the schema uses something not compiled here."""
    try:
        return _Compiler(schema).node(schema, top=True)
    except Unsupported:
        return None


def _never(value: Any) -> bool:
    return False


def _always(value: Any) -> bool:
    return True


def _integer(v: Any) -> bool:  # Draft 6+: 1.0 is an integer; True never is
    return not isinstance(v, bool) and (
        isinstance(v, int) or (isinstance(v, float) and v.is_integer())
    )


def _number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, numbers.Number)


_TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": _integer,
    "number": _number,
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _equal(expected: Any, value: Any) -> bool:
    """jsonschema's equality for a scalar in a schema: True is not 1, 1.0 is 1."""
    if expected is value:
        return True
    if isinstance(expected, str) or isinstance(value, str):
        return bool(expected == value)
    if isinstance(expected, bool) or isinstance(value, bool):
        return False
    if isinstance(value, (list, dict)):
        return False
    return bool(expected == value)


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, bool, int, float))


class _Compiler:
    """Compiles one schema document; `$ref`s resolve inside it, each compiled once."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.refs: dict[str, Check] = {}
        self.compiling: set[str] = set()

    def node(self, schema: Any, *, top: bool = False) -> Check:
        if schema is True:
            return _always
        if schema is False:
            return _never
        if not isinstance(schema, dict):
            raise Unsupported(f"a schema that is a {type(schema).__name__}")
        if "$id" in schema and not top:
            raise Unsupported("a nested $id")  # it would move the base of the refs under it
        checks: list[Check] = []
        for key, value in schema.items():
            if key in _IGNORED or key in ("$defs", "$id") or key in _OBJECT_KEYS:
                continue
            make = _KEYWORDS.get(key)
            if make is None:
                raise Unsupported(key)
            checks.append(make(self, value, schema))
        if any(k in schema for k in _OBJECT_KEYS):
            checks.append(self._object(schema))
        return _all(checks)

    def ref(self, ref: Any) -> Check:
        """A JSON pointer into this document; one with `%` (jsonschema URL-decodes it
        first) or one passing through a nested `$id` (a new base) is not compiled."""
        if not isinstance(ref, str) or not ref.startswith("#/") or "%" in ref:
            raise Unsupported(f"$ref {ref!r}")
        if ref in self.compiling:  # a schema that recurses: look it up when used
            refs = self.refs
            return lambda v: refs[ref](v)
        if ref not in self.refs:
            target: Any = self.root
            for part in ref[2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                if not isinstance(target, dict) or part not in target:
                    raise Unsupported(f"$ref {ref!r} names nothing")
                target = target[part]
                if isinstance(target, dict) and "$id" in target:
                    raise Unsupported(f"$ref {ref!r} passes a nested $id")
            self.compiling.add(ref)
            self.refs[ref] = self.node(target)
            self.compiling.discard(ref)
        return self.refs[ref]

    def _object(self, schema: dict[str, Any]) -> Check:
        """properties, required, additionalProperties and propertyNames in one pass."""
        if "patternProperties" in schema:
            raise Unsupported("patternProperties")
        given, required = schema.get("properties", {}), schema.get("required", [])
        if not isinstance(given, dict) or not isinstance(required, list):
            raise Unsupported("properties or required of another shape")
        if not all(isinstance(r, str) for r in required):
            raise Unsupported("required")
        props = {k: self.node(s) for k, s in given.items()}
        extra = self._optional(schema, "additionalProperties")
        names = self._optional(schema, "propertyNames")

        def check(v: Any) -> bool:
            if not isinstance(v, dict):
                return True
            for key in required:
                if key not in v:
                    return False
            for key, item in v.items():
                if names is not None and not names(key):
                    return False
                own = props.get(key)
                if own is not None:
                    if not own(item):
                        return False
                elif extra is not None and not extra(item):
                    return False
            return True

        return check

    def _optional(self, schema: dict[str, Any], key: str) -> Check | None:
        return self.node(schema[key]) if key in schema else None


_OBJECT_KEYS = ("properties", "required", "additionalProperties", "propertyNames")


def _all(checks: list[Check]) -> Check:
    """All of them, without a generator per value for the usual two or three (a manifest's
    300,000 members are checked in ~1 s)."""
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda v: first(v) and second(v)
    if len(checks) == 3:
        first, second, third = checks
        return lambda v: first(v) and second(v) and third(v)
    return lambda v: all(c(v) for c in checks)


def _type(c: _Compiler, types: Any, schema: dict[str, Any]) -> Check:
    names = [types] if isinstance(types, str) else types
    if not isinstance(names, list) or not all(isinstance(n, str) and n in _TYPES for n in names):
        raise Unsupported(f"type {types!r}")
    preds = [_TYPES[n] for n in names]
    return preds[0] if len(preds) == 1 else lambda v: any(p(v) for p in preds)


def _enum(c: _Compiler, values: Any, schema: dict[str, Any]) -> Check:
    if not isinstance(values, list) or not all(_scalar(e) for e in values):
        raise Unsupported("enum")
    return lambda v: any(_equal(e, v) for e in values)


def _const(c: _Compiler, value: Any, schema: dict[str, Any]) -> Check:
    if not _scalar(value):
        raise Unsupported("const")
    return lambda v: _equal(value, v)


def _count(value: Any) -> int | float:
    """A bound's number (a schema with a bound of another type is not compiled)."""
    if not _number(value) or isinstance(value, complex):
        raise Unsupported(f"a bound of {value!r}")
    return value  # type: ignore[no-any-return]


def ecma_anchors(pattern: str) -> str:
    """`pattern` with each `$` outside a character class written `\\Z`.

    JSON Schema's patterns are ECMA-262's, where `$` is the end of the text (as in Go's
    RE2); Python's `$` also matches before a final newline, so `^[a-f0-9]{64}$` passed a
    digest with "\\n" after it, as it did every name, tag and variable name bounded so.
    """
    out, i, in_class = [], 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":  # an escape, inside a class or out: two characters as they are
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            lead = 2 if pattern.startswith("^", i + 1) else 1  # `[]` and `[^]`: `]` is literal
            lead += pattern.startswith("]", i + lead)
            out.append(pattern[i : i + lead])
            i += lead
            continue
        out.append("\\Z" if ch == "$" and not in_class else ch)
        i += 1
    return "".join(out)


def _pattern(c: _Compiler, pattern: Any, schema: dict[str, Any]) -> Check:
    if not isinstance(pattern, str):
        raise Unsupported("pattern")
    try:  # unanchored, as jsonschema searches; `$` as ECMA-262 reads it (schema.judge too)
        search = re.compile(ecma_anchors(pattern)).search
    except re.error:  # ECMA-only syntax (\p{L}): jsonschema fails on its first string
        raise Unsupported(f"pattern {pattern!r}") from None
    return lambda v: not isinstance(v, str) or search(v) is not None


def _items(c: _Compiler, items: Any, schema: dict[str, Any]) -> Check:
    if "prefixItems" in schema:
        raise Unsupported("prefixItems")
    each = c.node(items)
    return lambda v: not isinstance(v, list) or all(each(i) for i in v)


def _bound(applies: Check, measure: Callable[[Any], Any], *, least: bool) -> _Maker:
    """minLength, maximum, minItems, ...: a number bounds a measure of the values the
    keyword applies to (a string's length, a number itself); others pass, as in jsonschema."""

    def make(c: _Compiler, n: Any, schema: dict[str, Any]) -> Check:
        bound = _count(n)
        if least:
            return lambda v: not applies(v) or not measure(v) < bound
        return lambda v: not applies(v) or not measure(v) > bound

    return make


def _itself(value: Any) -> Any:
    return value


def _unique(c: _Compiler, on: Any, schema: dict[str, Any]) -> Check:
    if not on:
        return _always

    def check(v: Any) -> bool:
        if not isinstance(v, list):
            return True
        if not all(isinstance(i, str) for i in v):
            raise Unsure("uniqueItems over values that are not strings")
        return len(set(v)) == len(v)

    return check


def _ref(c: _Compiler, ref: Any, schema: dict[str, Any]) -> Check:
    return c.ref(ref)


def _not(c: _Compiler, sub: Any, schema: dict[str, Any]) -> Check:
    inner = c.node(sub)
    return lambda v: not inner(v)


def _subschemas(c: _Compiler, subs: Any) -> list[Check]:
    if not isinstance(subs, list) or not subs:
        raise Unsupported("an empty or malformed list of subschemas")
    return [c.node(s) for s in subs]


def _all_of(c: _Compiler, subs: Any, schema: dict[str, Any]) -> Check:
    return _all(_subschemas(c, subs))


def _any_of(c: _Compiler, subs: Any, schema: dict[str, Any]) -> Check:
    checks = _subschemas(c, subs)
    return lambda v: any(s(v) for s in checks)


def _one_of(c: _Compiler, subs: Any, schema: dict[str, Any]) -> Check:
    checks = _subschemas(c, subs)
    return lambda v: sum(1 for s in checks if s(v)) == 1


def _if(c: _Compiler, sub: Any, schema: dict[str, Any]) -> Check:
    test = c.node(sub)
    then = c.node(schema["then"]) if "then" in schema else _always
    other = c.node(schema["else"]) if "else" in schema else _always
    return lambda v: then(v) if test(v) else other(v)


def _applied_by_if(c: _Compiler, sub: Any, schema: dict[str, Any]) -> Check:
    return _always  # `then` and `else` are compiled with their `if` (alone, they do nothing)


_KEYWORDS: dict[str, _Maker] = {
    "type": _type,
    "enum": _enum,
    "const": _const,
    "pattern": _pattern,
    "minLength": _bound(_TYPES["string"], len, least=True),
    "maxLength": _bound(_TYPES["string"], len, least=False),
    "minimum": _bound(_number, _itself, least=True),
    "maximum": _bound(_number, _itself, least=False),
    "items": _items,
    "minItems": _bound(_TYPES["array"], len, least=True),
    "maxItems": _bound(_TYPES["array"], len, least=False),
    "uniqueItems": _unique,
    "$ref": _ref,
    "not": _not,
    "allOf": _all_of,
    "anyOf": _any_of,
    "oneOf": _one_of,
    "if": _if,
    "then": _applied_by_if,
    "else": _applied_by_if,
}
