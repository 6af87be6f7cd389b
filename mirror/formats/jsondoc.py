"""json.loads for documents from outside: one error type, our own words, a depth bound.

A document nested 200,000 deep made json (and then jsonschema) raise RecursionError, a
traceback instead of one line; a 5,000-digit number gave Python's own message. Here both
are a `DocumentError`, a ValueError, so every caller's existing `except ValueError` turns
it into its own error with its own exit code (3 for a bundle, 2 for a spec or catalog).
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64  # mirror's own documents nest 6 deep; a Helm index or Chart.yaml a few more


class DocumentError(ValueError):
    """Not a document mirror accepts: not JSON, too deep, or a number too long."""


class StrictError(DocumentError):
    """JSON, but not what `strict` allows: a float, NaN, a key twice."""


def loads(data: bytes | str, *, strict: bool = False, unique: bool = False) -> Any:
    """`strict`, for a document we signed ourselves: integers only (no 716.0, no NaN) and
    no key twice (json keeps the last one silently, so two readers could disagree).
    `unique` alone, for a document a person wrote (a spec): no key twice."""
    hooks: dict[str, Any] = {"object_pairs_hook": _unique} if strict or unique else {}
    if strict:
        hooks.update(parse_float=_no_float, parse_constant=_no_float)
    try:
        doc = json.loads(data, **hooks)
    except RecursionError:
        raise DocumentError(f"nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise DocumentError(f"line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except UnicodeDecodeError:
        raise DocumentError("not UTF-8 text") from None
    except DocumentError:  # a strict hook's own words
        raise
    except ValueError:  # int() past sys.get_int_max_str_digits()
        raise DocumentError("a number with too many digits") from None
    check_depth(doc)
    return doc


def _no_float(text: str) -> Any:
    raise StrictError(f"{text[:40]} is not an integer")


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        keys = [k for k, _ in pairs]
        twice = next(k for i, k in enumerate(keys) if k in keys[:i])
        raise StrictError(f"the key {twice[:40]!r} appears twice in one object")
    return doc


def yaml_problem(exc: Exception) -> str:
    """A YAML parser's failure in one line, where it is first: PyYAML's own text is several
    lines, the document's excerpt among them. Also Python's words past YAML's bounds."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if problem is None and isinstance(exc, RecursionError):
        problem = f"nested deeper than {MAX_DEPTH} levels"
    elif problem is None and isinstance(exc, ValueError):  # int() of a 5,000-digit integer
        problem = "a number with too many digits"
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + (problem or str(exc).splitlines()[0])


def check_depth(doc: Any, limit: int = MAX_DEPTH) -> None:
    """Refuse a parsed document nested deeper than `limit`, without recursing.

    Level by level, keeping only containers, each once per level: a manifest's 300,000
    members cost one pass over one list, not a stack entry for every scalar in it, and a
    YAML node that aliases name many times is looked at once per level, not once per name
    (a "billion laughs" of nine levels would be 9^9 entries). A cycle (`&a [*a]`) is
    refused as too deep.
    """
    if type(doc) is not dict and type(doc) is not list:
        return  # a scalar (or an empty YAML document) nests nothing
    level: list[Any] = [doc]
    for _ in range(limit):
        below: dict[int, Any] = {}
        for node in level:
            values = node.values() if type(node) is dict else node
            below.update((id(v), v) for v in values if type(v) is dict or type(v) is list)
        if not below:
            return
        level = list(below.values())
    raise DocumentError(f"nested deeper than {limit} levels")


MAX_NODES = 1_000_000  # values a YAML document may expand to, its aliases followed


def check_yaml(doc: Any, max_nodes: int = MAX_NODES) -> None:
    """A YAML document's bounds: `check_depth`, then the size its aliases expand to. A few
    hundred bytes of anchors can stand for 10^9 values; whatever walks the document as a
    tree (a schema check, a conversion, an error message quoting it) would never end."""
    check_depth(doc)
    if type(doc) is not dict and type(doc) is not list:
        return
    size: dict[int, int] = {}  # id -> values below and including it, capped
    todo: list[tuple[Any, bool]] = [(doc, False)]
    while todo:  # post-order without recursion; no cycle is left after check_depth
        node, children_done = todo.pop()
        if id(node) in size:
            continue
        values = list(node.values()) if type(node) is dict else node
        if children_done:
            total = 1 + sum(size.get(id(v), 1) for v in values)
            size[id(node)] = min(total, max_nodes + 1)
            continue
        todo.append((node, True))
        todo += [(v, False) for v in values if type(v) in (dict, list) and id(v) not in size]
    if size[id(doc)] > max_nodes:
        raise DocumentError(f"its aliases expand to more than {max_nodes:,} values")
