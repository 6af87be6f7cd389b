"""Hostile JSON and YAML: one line, the right exit code, never a traceback (issue 15, item 2).

A document nested 200,000 deep used to raise RecursionError (a traceback, exit 1, no JSON
document under --json); a 5,000-digit number gave Python's own message.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from faultproxy import mirror
from test_bundle_support import Keys, hostile_bundle, layout_entries, make_keys, make_layout

from mirror.formats import jsondoc
from mirror.streams import read_hint

DEEP_JSON = "[" * 200_000 + "]" * 200_000
DEEP_YAML = "a: " + "[" * 200_000 + "]" * 200_000 + "\n"
LONG_NUMBER = '{"n": ' + "9" * 5000 + "}"


@pytest.fixture()
def k(tmp_path: Path) -> Keys:
    return make_keys(tmp_path)


@pytest.mark.parametrize("text", [DEEP_JSON, "[" * 70 + "]" * 70, LONG_NUMBER, '{"a": 1'])
def test_loads_raises_only_document_error_in_our_words(text: str) -> None:
    with pytest.raises(jsondoc.DocumentError) as caught:
        jsondoc.loads(text)
    assert "Exceeds the limit" not in str(caught.value)  # Python's words, not ours
    assert jsondoc.loads("[" * 10 + "]" * 10) == [[[[[[[[[[]]]]]]]]]]  # modest nesting is fine


@pytest.mark.parametrize(("body", "says"), [(DEEP_JSON, "nested deeper"), (LONG_NUMBER, "digits")])
def test_a_hostile_manifest_is_exit_3_in_one_line_and_one_json_document(
    body: str, says: str, k: Keys, tmp_path: Path
) -> None:
    bundle = hostile_bundle(
        tmp_path / "h.tar.zst", k, layout_entries(make_layout().files), manifest=body.encode()
    )
    run = mirror("verify", bundle, "--key", k.pub_path)
    assert run.rc == 3 and says in run.error_line()
    as_json = mirror("verify", bundle, "--key", k.pub_path, "--json")
    assert as_json.rc == 3
    doc = json.loads(as_json.out)
    assert doc["ok"] is False and says in doc["error"]
    inspected = mirror("inspect", bundle)
    assert inspected.rc == 3 and says in inspected.error_line()


@pytest.mark.parametrize(("name", "body"), [("s.json", DEEP_JSON), ("s.yaml", DEEP_YAML)])
def test_a_hostile_spec_is_exit_2_naming_the_file(name: str, body: str, tmp_path: Path) -> None:
    spec = tmp_path / name
    spec.write_text(body)
    run = mirror("export", spec, "-o", tmp_path / "b.tar.zst")
    assert run.rc == 2, run.err
    line = run.error_line()
    assert name in line and "nested deeper" in line
    assert not (tmp_path / "b.tar.zst").exists()


def test_a_hostile_catalog_and_receipt_are_exit_2(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.json"
    catalog.write_text(DEEP_JSON)
    run = mirror("registries", "list", "--scope", "system", "--catalog", catalog)
    assert run.rc == 2 and "catalog.json: nested deeper" in run.error_line()
    receipt = tmp_path / "receipt.json"
    receipt.write_text(LONG_NUMBER)
    spec = tmp_path / "s.yaml"
    spec.write_text("name: t\nimages: [ghcr.io/acme/tool:1]\n")
    run = mirror("export", spec, "-o", tmp_path / "b.tar.zst", "--since", receipt)
    assert run.rc == 2 and "receipt.json" in run.error_line() and "digits" in run.error_line()


def test_a_hostile_memo_is_a_hint_and_is_ignored(tmp_path: Path) -> None:
    memo = tmp_path / "memo.json"
    memo.write_text(DEEP_JSON)
    assert read_hint(memo) is None


LAUGHS = "".join(
    f"{a}: &{a} [{', '.join([f'*{b}'] * 9)}]\n" for b, a in zip("abcdefgh", "bcdefghi", strict=True)
)
HOSTILE_INDEXES = {
    "deep flow": DEEP_YAML.replace("a: ", "entries: "),
    "deep block": "entries:\n" + "- " * 100_000 + "x\n",  # crashes some Rust parsers
    "a billion laughs": "a: &a [x, x, x, x, x, x, x, x, x]\n" + LAUGHS + "entries: {c: *i}\n",
    "two documents": "entries: {}\n---\nentries: {}\n",
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("body", HOSTILE_INDEXES.values(), ids=HOSTILE_INDEXES.keys())
def test_a_hostile_helm_index_is_one_error_quickly(body: str) -> None:
    """9^9 aliases used to be expanded by the depth check after PyYAML: minutes, gigabytes."""
    from mirror.errors import OperationError
    from mirror.formats.helm import parse_index

    with pytest.raises(OperationError, match=r"^repo: index.yaml is not valid YAML: "):
        parse_index(body.encode(), "http://127.0.0.1/", "repo")
