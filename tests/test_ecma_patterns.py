"""A schema's `$` is the end of the text, as JSON Schema (ECMA-262) and Go's RE2 read it.

Python's `$` also matches just before a final newline, and stock jsonschema searches with
Python's `re`: `^[a-f0-9]{64}$` passed a digest with "\\n" after it, and so did every name,
tag, URL and variable name the schemas bound that way. Both of mirror's readers of a schema
(the compiled check and jsonschema, through `formats.schema.judge`) now refuse it, and so does
the Helm folder's check of a chart's name, which made it a file name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from mirror.bundle.manifest import parse_manifest
from mirror.errors import IntegrityError, SpecError, VerificationError
from mirror.formats import schema_path
from mirror.formats.fastcheck import compile_schema, ecma_anchors
from mirror.formats.schema import judge, schema_problem
from mirror.oci import mediatypes as mt
from mirror.spec import load_spec
from mirror.stores.helmdir import chart_file

SEEDS = Path(__file__).parent / "data" / "schema-seeds"
SCHEMAS = sorted(schema_path("x").parent.glob("*.schema.json"))


@pytest.mark.parametrize(
    ("pattern", "read"),
    [
        ("^[a-f0-9]{64}$", r"^[a-f0-9]{64}\Z"),
        (r"^\$x$", r"^\$x\Z"),  # an escaped `$` is a dollar sign
        ("^[$]a$", r"^[$]a\Z"),  # so is one in a class
        ("[]$]$", r"[]$]\Z"),  # `]` first in a class is literal: the class goes on
        ("[^]$]$", r"[^]$]\Z"),
        (r"[\]$]$", r"[\]$]\Z"),
        ("^$|^a$", r"^\Z|^a\Z"),
        ("^(?!m(\\.sig)?$)[a-z]+$", r"^(?!m(\.sig)?\Z)[a-z]+\Z"),
        (r"^\S", r"^\S"),
    ],
)
def test_a_dollar_outside_a_class_becomes_the_end_of_the_text(pattern: str, read: str) -> None:
    assert ecma_anchors(pattern) == read


def _patterns(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                yield value
            else:
                yield from _patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from _patterns(value)


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def test_no_schema_pattern_passes_a_value_with_a_final_newline() -> None:
    """Every `$`-ended pattern of every schema, on every string of the recorded documents
    that it matches: that string plus "\\n" fails the compiled check and jsonschema alike
    (stock jsonschema passed it, which shows the case is real)."""
    samples = {s for p in SEEDS.glob("*.json") for s in _strings(json.loads(p.read_text()))}
    samples |= {"Bench", "REGISTRY_TOKEN", "linux/amd64", "spectro-packs/archive", "1.2.3"}
    samples.add(f"sha256-{'a' * 64}.sig")  # a cosign tag: no recorded document has one
    tried: set[str] = set()
    ended: set[str] = set()
    for path in SCHEMAS:
        for pattern in _patterns(json.loads(path.read_text())):
            if not pattern.endswith("$"):
                continue
            ended.add(pattern)
            schema = {"type": "string", "pattern": pattern}
            check = compile_schema(schema)
            assert check is not None
            for value in [s for s in samples if re.search(ecma_anchors(pattern), s)][:5]:
                said = f"{path.name}: {pattern!r} on {value!r}"
                assert check(value) and judge(schema).is_valid(value), said
                assert jsonschema.Draft202012Validator(schema).is_valid(value + "\n"), said
                assert not check(value + "\n"), said
                assert not judge(schema).is_valid(value + "\n"), said
                tried.add(pattern)
    assert tried == ended, f"no value to try for {sorted(ended - tried)}"


def _manifest() -> dict[str, Any]:
    """The recorded manifest, its lists cut to four items, with the registries they name."""
    doc: dict[str, Any] = json.loads((SEEDS / "bundle-manifest-0.json").read_text())
    named = {a["registry"] for a in doc["artifacts"]} - {r["name"] for r in doc["registries"]}
    doc["registries"] += [{**doc["registries"][0], "name": name} for name in sorted(named)]
    return doc


@pytest.mark.parametrize(
    ("where", "pointer"),
    [(("artifacts", 0, "digest"), "/artifacts/0/digest"), (("members", 1, "sha256"), None)],
)
def test_a_manifest_with_a_newline_after_a_digest_is_refused(
    where: tuple[Any, ...], pointer: str | None
) -> None:
    """The artifact list goes to jsonschema whole; the member list item by item (its own
    path): both word the problem with the pattern as the schema file writes it."""
    doc = _manifest()
    parse_manifest(json.dumps(doc).encode())  # the seed itself passes
    node: Any = doc
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] += "\n"
    with pytest.raises(VerificationError) as caught:
        parse_manifest(json.dumps(doc).encode())
    said = str(caught.value)
    assert pointer is None or pointer in said, said
    assert "schema violation" in said and "$'" in said and "\\Z" not in said, said


def test_a_spec_with_a_newline_after_a_registry_name_is_a_spec_error(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    registry = {"name": "Bench\n", "kind": "oci", "url": "http://127.0.0.1:5000"}
    spec.write_text(json.dumps({"name": "b", "registries": [registry]}))
    with pytest.raises(SpecError, match="/registries/0/name"):
        load_spec(spec)
    registry["name"] = "Bench"
    spec.write_text(json.dumps({"name": "b", "registries": [registry]}))
    assert load_spec(spec).registries[0].name == "Bench"
    problem = schema_problem("registry.schema.json", {**registry, "name": "Bench\n"})
    assert problem is not None and problem.startswith("/name:"), problem


def test_a_chart_named_with_a_final_newline_gets_no_file_name() -> None:
    doc = {
        "config": {"mediaType": mt.HELM_CONFIG, "digest": "sha256:" + "1" * 64, "size": 2},
        "layers": [{"mediaType": mt.HELM_CHART, "digest": "sha256:" + "2" * 64, "size": 3}],
    }
    assert chart_file(doc, "sha256:" + "3" * 64, {"name": "nginx", "version": "1.0"}, "x")
    with pytest.raises(IntegrityError, match="unsafe chart name"):
        chart_file(doc, "sha256:" + "3" * 64, {"name": "nginx\n", "version": "1.0"}, "x")
