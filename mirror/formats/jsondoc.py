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


def loads(data: bytes | str) -> Any:
    try:
        doc = json.loads(data)
    except RecursionError:
        raise DocumentError(f"nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise DocumentError(f"line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except UnicodeDecodeError:
        raise DocumentError("not UTF-8 text") from None
    except ValueError:  # int() past sys.get_int_max_str_digits()
        raise DocumentError("a number with too many digits") from None
    check_depth(doc)
    return doc


def check_depth(doc: Any, limit: int = MAX_DEPTH) -> None:
    """Refuse a parsed document nested deeper than `limit`, without recursing.

    Level by level, keeping only containers: a manifest's 300,000 members cost one pass
    over one list, not a stack entry for every scalar in it.
    """
    if type(doc) is not dict and type(doc) is not list:
        return  # a scalar (or an empty YAML document) nests nothing
    level: list[Any] = [doc]
    for _ in range(limit):
        below: list[Any] = []
        for node in level:
            values = node.values() if type(node) is dict else node
            below += [v for v in values if type(v) is dict or type(v) is list]
        if not below:
            return
        level = below
    raise DocumentError(f"nested deeper than {limit} levels")
