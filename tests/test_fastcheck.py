"""The compiled schema check (mirror/formats/fastcheck.py) says "valid" only where jsonschema
does: held to jsonschema's answer on real documents and on thousands of mutations of them.

The seeds under tests/data/schema-seeds were recorded from `make demo` (every document
mirror validated there, long lists cut to four items); packs come from the corpus, specs
from the presets too. Mutations replace, drop, add and swap values at random paths, with a
fixed seed: a failure names the schema, the mutation and the document.
"""

from __future__ import annotations

import copy
import json
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mirror.formats import schema_path
from mirror.formats.fastcheck import Unsure, compile_schema
from mirror.formats.schema import judge as reference  # jsonschema, `$` as ECMA-262 reads it
from mirror.formats.schema import known_valid, schema_problem
from mirror.spec import preset_dirs

SEEDS = Path(__file__).parent / "data" / "schema-seeds"
SCHEMAS = sorted(p.name for p in schema_path("x").parent.glob("*.schema.json"))
ODD: list[Any] = [
    None, True, False, 0, 1, -1, 1.0, 1.5, 2**70, "", "x", "A" * 300, "sha256:" + "0" * 64,
    "UPPER", "a b", "../x", [], ["x"], [1], {}, {"x": 1}, {"name": "x"},
]  # fmt: skip


def _schema(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(schema_path(name).read_text(encoding="utf-8"))
    return doc


def _seeds(name: str, corpus: Path | None) -> list[Any]:
    stem = name.removesuffix(".schema.json")
    docs = [json.loads(p.read_text()) for p in sorted(SEEDS.glob(f"{stem}-*.json"))]
    if stem == "bundle-spec":
        docs += [yaml.safe_load(p.read_text()) for p in sorted(preset_dirs()[0].glob("*.yaml"))]
    if stem == "registry":
        for spec in _seeds("bundle-spec.schema.json", None):
            docs += [r for r in spec.get("registries", []) if isinstance(r, dict)]
    if stem == "pack" and corpus is not None:
        docs += [json.loads(p.read_text()) for p in sorted(corpus.glob("*/pack.json"))[:40]]
    return docs


def _paths(doc: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield at
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*at, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*at, i))


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def _mutate(doc: Any, rng: random.Random) -> tuple[str, Any]:
    """One random change at a random place: what was done, and the new document."""
    out = copy.deepcopy(doc)
    paths = list(_paths(out))
    path = rng.choice(paths)
    parent, key = (_get(out, path[:-1]), path[-1]) if path else (None, None)
    value = _get(out, path)
    op = rng.choice(["odd", "odd", "drop", "add", "swap", "string", "list"])
    if op == "odd" or parent is None:
        new = copy.deepcopy(rng.choice(ODD))
        if parent is None:
            return f"root = {new!r}", new
        parent[key] = new
        return f"{path} = {new!r}", out
    if op == "drop" and isinstance(parent, dict):
        del parent[key]
        return f"drop {path}", out
    if op == "add" and isinstance(value, dict):
        value[rng.choice(["zz", "name", "kind", "digest", "tag", "url"])] = rng.choice(ODD)
        return f"add a key at {path}", out
    if op == "swap":
        other = _get(out, rng.choice(paths))
        parent[key] = copy.deepcopy(other)
        return f"{path} = a value from elsewhere", out
    if op == "string" and isinstance(value, str):
        parent[key] = rng.choice([value + "!", value.upper(), value[:-1], " " + value, value * 9])
        return f"{path} edited", out
    if op == "list" and isinstance(value, list):
        parent[key] = rng.choice([[], value + value[:1], value[::-1], [value]])
        return f"{path} list changed", out
    parent[key] = None
    return f"{path} = None", out


def _fast_says(check: Any, doc: Any) -> bool | None:
    try:
        return bool(check(doc))
    except Unsure:
        return None


@pytest.mark.parametrize("name", SCHEMAS)
def test_every_schema_compiles(name: str) -> None:
    """A keyword the compiler lacks would silently send every document to jsonschema."""
    assert compile_schema(_schema(name)) is not None


@pytest.mark.parametrize("name", SCHEMAS)
def test_the_compiled_check_agrees_with_jsonschema(name: str, corpus: Path) -> None:
    schema = _schema(name)
    check = compile_schema(schema)
    judge = reference(schema)
    seeds = _seeds(name, corpus)
    assert seeds, f"no seed documents for {name}"
    rng = random.Random(f"fastcheck:{name}")
    verdicts = {True: 0, False: 0}
    for seed in seeds:  # real packs may be messy (warnings): the verdicts must agree
        assert _fast_says(check, seed) == judge.is_valid(seed), f"{name}: {seed!r:.300}"
    assert any(judge.is_valid(seed) for seed in seeds), f"{name}: no valid seed"
    for seed in seeds:
        doc = seed
        for n in range(max(40, 1200 // len(seeds))):
            what, doc = _mutate(doc if n % 2 else seed, rng)  # one change, or two in a row
            fast, truth = _fast_says(check, doc), judge.is_valid(doc)
            if fast is not None:
                said = f"{name}: {what}: fast {fast}, jsonschema {truth}: {doc!r:.400}"
                assert fast == truth, said
            verdicts[truth] += 1
    assert min(verdicts.values()) > 20, f"{name}: the mutations barely explored: {verdicts}"


def test_integers_and_booleans_follow_jsonschema() -> None:
    """1.0 is an integer and True is not; True is not the const 1; 1.0 is."""
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 0}, "c": {"const": 1}},
    }
    check, judge = compile_schema(schema), reference(schema)
    assert check is not None
    for doc in ({"n": 1.0}, {"n": True}, {"n": -1}, {"c": True}, {"c": 1.0}, {"n": 2**80}):
        assert check(doc) == judge.is_valid(doc), doc


def test_what_it_cannot_judge_goes_to_jsonschema() -> None:
    """uniqueItems over objects is not compiled exactly: Unsure, never a guess."""
    check = compile_schema({"type": "array", "uniqueItems": True})
    assert check is not None
    assert check(["a", "b"]) and not check(["a", "a"])
    with pytest.raises(Unsure):
        check([{"a": 1}, {"a": 1}])
    assert compile_schema({"type": "object", "patternProperties": {"^x": {}}}) is None
    assert compile_schema({"$ref": "other.json#/x"}) is None


def test_a_problem_is_still_worded_by_jsonschema() -> None:
    spec = {"name": "x", "registries": [{"name": "r", "kind": "nope"}]}
    assert not known_valid("bundle-spec.schema.json", spec)
    problem = schema_problem("bundle-spec.schema.json", spec)
    assert problem is not None and problem.startswith("/registries/0")


def test_loading_a_spec_does_not_import_jsonschema() -> None:
    """The point of the compiled check: ~70 ms of start-up, before an export's first request."""
    code = (
        "import sys\n"
        "from mirror.spec import load_preset\n"
        "load_preset('palette-default')\n"
        "print('jsonschema' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "False", run.stderr


def test_a_schema_that_refers_to_itself() -> None:
    node = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}},
        },
        "additionalProperties": False,
    }
    schema = {"$defs": {"node": node}, "$ref": "#/$defs/node"}
    check, judge = compile_schema(schema), reference(schema)
    assert check is not None
    docs = [
        {"name": "a"},
        {"name": "a", "kids": [{"name": "b", "kids": [{"name": "c"}]}]},
        {"name": "a", "kids": [{"name": "b", "kids": [{"name": ""}]}]},
        {"name": "a", "kids": [{"kids": []}]},
        {"name": "a", "kids": [{"name": "b", "x": 1}]},
    ]
    assert [check(d) for d in docs] == [judge.is_valid(d) for d in docs] == [
        True, True, False, False, False,
    ]  # fmt: skip


def test_schemas_it_would_misread_are_declined() -> None:
    """From an adversarial sweep (3.2 million documents on our schemas found nothing): made-up
    schemas where a check would have said True against jsonschema's False, or crashed."""
    escaped = {  # jsonschema URL-decodes a ref: this one names "a%b", the integer
        "$defs": {"a%25b": {"type": "string"}, "a%b": {"type": "integer"}},
        "$ref": "#/$defs/a%25b",
    }
    rebased = {  # the inner ref resolves against the nested $id, to the integer
        "$defs": {
            "a": {
                "$id": "https://x.invalid/a",
                "$defs": {"t": {"type": "integer"}},
                "properties": {"b": {"$ref": "#/$defs/t"}},
            },
            "t": {"type": "string"},
        },
        "$ref": "#/$defs/a/properties/b",
    }
    for schema in (escaped, rebased):
        assert not reference(schema).is_valid("x")
        assert compile_schema(schema) is None
    assert compile_schema({"type": [["string"]]}) is None
    assert compile_schema({"pattern": "\\p{L}"}) is None


_BOUNDS = ("minLength", "maxLength", "minimum", "maximum")


def _leaves(node: Any, at: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every subschema with a bound, a pattern or an enum, by its JSON pointer."""
    if isinstance(node, dict):
        if any(k in node for k in (*_BOUNDS, "pattern", "enum")):
            yield at, node
        for key, value in node.items():
            yield from _leaves(value, f"{at}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _leaves(value, f"{at}/{i}")


def _near(leaf: dict[str, Any]) -> list[Any]:
    """Values on each side of every bound, and beside the enum's members."""
    out: list[Any] = [None, True, False, "", [], {}]
    for key in ("minLength", "maxLength"):
        if key in leaf:
            n = leaf[key]
            out += [c * max(0, n + d) for d in (-1, 0, 1) for c in "a0"]
    for key in ("minimum", "maximum"):
        if key in leaf:
            n = leaf[key]
            out += [n - 1, n, n + 1, float(n), n - 0.5, n + 0.5]
    out += [e for e in leaf.get("enum", [])] + [f"{e}x" for e in leaf.get("enum", [])]
    out += ["a" * 64, "a" * 63, "A" * 64, "blobs/sha256/" + "a" * 64, "a/../b", "manifest.json"]
    return out


@pytest.mark.parametrize("name", SCHEMAS)
def test_every_bound_is_read_as_jsonschema_reads_it(name: str) -> None:
    """Each leaf with a length, a bound, a pattern or an enum, checked at and beside its
    bounds: random mutations rarely land a string exactly at maxLength (a check that took
    `>=` for `>` there passed the mutation test)."""
    root = _schema(name)
    leaves = list(_leaves(root))
    assert leaves, name
    for at, leaf in leaves:
        schema = {**leaf, "$defs": root.get("$defs", {})}
        check, judge = compile_schema(schema), reference(schema)
        assert check is not None, f"{name} {at}"
        for value in _near(leaf):
            fast = _fast_says(check, value)
            assert fast is None or fast == judge.is_valid(value), f"{name} {at}: {value!r:.80}"


def test_a_leaf_with_a_malformed_keyword_is_declined_whole() -> None:
    """A null or mistyped bound, pattern or enum declines the whole schema: jsonschema
    judges it, nothing is half-compiled."""
    for leaf in (
        {"type": "string", "maxLength": None},
        {"type": "string", "minLength": True},
        {"type": "string", "pattern": None},
        {"type": "string", "enum": None},
        {"type": "integer", "minimum": 0, "maximum": None},
        {"type": "integer", "minimum": "0"},
    ):
        assert compile_schema(leaf) is None, leaf
    assert compile_schema({"type": "string", "enum": ["a", 1]}) is not None  # scalars: fine
