"""A manifest's long lists cost list speed, and past the documented limit are refused
(issue 15, item 2: a manifest listing 300,000 members took 35 s to inspect).

jsonschema spent ~100 µs on each member; now the manifest passes the compiled check
(`formats/fastcheck.py`), and only a manifest that fails it is walked by jsonschema, with
the members and external blobs checked item by item (`formats/schema.items_problem`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faultproxy import mirror
from test_bundle_support import Keys, hostile_bundle, make_keys, make_layout, manifest_doc

from mirror.bundle import manifest as manifest_mod
from mirror.bundle.manifest import MAX_MEMBERS, parse_manifest
from mirror.errors import VerificationError
from mirror.formats.schema import definition_validator, items_problem

SCHEMA = manifest_mod.SCHEMA_NAME


def _doc(members: int, external: int = 0) -> dict[str, Any]:
    """A valid manifest document (as parsed JSON) with that many members and external blobs."""
    layout = make_layout()
    doc: dict[str, Any] = json.loads(manifest_doc(layout.files, layout.root).to_bytes())
    doc["members"] += [
        {"path": f"blobs/sha256/{_hex(i)}", "sha256": _hex(-i), "size": i} for i in range(members)
    ]
    if external:
        doc["since"] = ["sha256:" + "1" * 64]
        doc["external"] = [
            {"digest": "sha256:" + _hex(i), "size": i, "heldAt": "a/b"} for i in range(external)
        ]
    return doc


def _hex(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def _data(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


@pytest.fixture()
def descents(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many times jsonschema descends into a sub-instance (its cost, item by item)."""
    import jsonschema

    count = [0]
    cls = jsonschema.Draft202012Validator
    original = cls.descend

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "descend", counting)
    yield count


def test_a_valid_manifest_never_reaches_jsonschema(descents: list[int]) -> None:
    """Old code: jsonschema descended ~5 times per member, 1.5 million times for 300,000;
    then ~1,000 times whatever the size; now the compiled check passes it alone."""
    costs = []
    for n in (100, 5_000):
        data = _data(_doc(n, external=n))
        descents[0] = 0
        parsed = parse_manifest(data)
        assert len(parsed.members) == n + 6 and len(parsed.external) == n
        costs.append(descents[0])
    assert costs == [0, 0]


def test_past_the_limit_a_manifest_is_refused_before_any_validation(
    descents: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(manifest_mod, "MAX_MEMBERS", 50)
    data = _data(_doc(20, external=25))
    descents[0] = 0
    with pytest.raises(VerificationError, match=r"lists 51 members and external blobs, more than"):
        parse_manifest(data)
    assert descents[0] == 0
    parse_manifest(_data(_doc(20, external=24)))  # exactly at the limit: fine


# Each bad item, the pointer the message must name. The fast check must agree with jsonschema
# on every one, and on the good items below, or the schema would no longer be the one truth.
BAD_MEMBERS = [
    ({"path": "a", "sha256": "0" * 64, "size": -1}, "/members/7/size"),
    ({"path": "a", "sha256": "0" * 64, "size": True}, "/members/7/size"),
    ({"path": "a", "sha256": "0" * 64, "size": 1.5}, "/members/7/size"),
    ({"path": "a", "sha256": "0" * 64, "size": "1"}, "/members/7/size"),
    ({"path": "../a", "sha256": "0" * 64, "size": 1}, "/members/7/path"),
    ({"path": "manifest.json", "sha256": "0" * 64, "size": 1}, "/members/7/path"),
    ({"path": "a" * 256, "sha256": "0" * 64, "size": 1}, "/members/7/path"),
    ({"path": "a", "sha256": "0" * 63, "size": 1}, "/members/7/sha256"),
    ({"path": "a", "sha256": "A" * 64, "size": 1}, "/members/7/sha256"),
    ({"path": "a", "sha256": "0" * 64}, "/members/7"),
    ({"path": "a", "sha256": "0" * 64, "size": 1, "extra": 1}, "/members/7"),
    (["a", "0" * 64, 1], "/members/7"),
]
GOOD_MEMBERS = [
    {"path": "a", "sha256": "0" * 64, "size": 0},
    {"path": "blobs/sha256/x", "sha256": "f" * 64, "size": 3.0},  # jsonschema: 3.0 is whole
    {"path": "a" * 255, "sha256": "0" * 64, "size": 2**70},
]


@pytest.mark.parametrize(("item", "pointer"), BAD_MEMBERS)
def test_a_bad_member_is_named_as_jsonschema_names_it(item: Any, pointer: str) -> None:
    doc = _doc(10)
    doc["members"][7] = item
    # A float is refused sooner, by manifest.json's strict JSON (integers only).
    says = f"schema violation at {pointer}[/:]|1.5 is not an integer"
    with pytest.raises(VerificationError, match=says):
        parse_manifest(_data(doc))
    assert not definition_validator(SCHEMA, "member").is_valid(item)


@pytest.mark.parametrize("item", GOOD_MEMBERS)
def test_the_fast_check_accepts_what_jsonschema_accepts(item: Any) -> None:
    assert definition_validator(SCHEMA, "member").is_valid(item)
    assert items_problem(SCHEMA, "member", [item], ("members",)) is None


def test_a_bad_external_blob_is_named_too() -> None:
    doc = _doc(3, external=5)
    doc["external"][4]["digest"] = "sha256:" + "0" * 10
    with pytest.raises(VerificationError, match="schema violation at /external/4/digest"):
        parse_manifest(_data(doc))


@pytest.fixture()
def k(tmp_path: Path) -> Keys:
    return make_keys(tmp_path)


@pytest.mark.slow
def test_inspecting_300000_members_takes_seconds_not_half_a_minute(k: Keys, tmp_path: Path) -> None:
    """The issue's own case, end to end. Old code: 35 s on a quiet machine; now ~2 s."""
    doc = _doc(300_000)
    bundle = hostile_bundle(tmp_path / "big.tar.zst", k, [], manifest=_data(doc))
    started = time.monotonic()
    run = mirror("inspect", bundle, "--json")
    took = time.monotonic() - started
    assert run.rc == 0, run.err
    assert run.json()["totals"]["blobs"] == 300_004
    assert took < 20, f"inspect took {took:.1f} s"


def test_the_documented_limits_are_the_code_s() -> None:
    text = (Path(__file__).parents[1] / "docs" / "BUNDLE-FORMAT.md").read_text()
    assert f"{MAX_MEMBERS:,}" in text and "64 MiB" in text
