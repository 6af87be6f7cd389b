"""An approval record a reviewer can sign (issue 16, item 5): `inspect --format markdown`
names the file, the signer and whether this run verified it, and every artifact and image
with where it lands; it reads as plain text and renders cleanly as Markdown."""

from __future__ import annotations

import hashlib
import re
import socket
from pathlib import Path
from typing import Any

import pytest
from faultproxy import isolated_env, mirror, write_spec

from mirror import __version__
from mirror.keys import fingerprint, load_public_key

PASSWORD = "reviewer"
WIDTH = 120
PACK = "production/spectro-packs/archive/kubevirt-csi-driver-infra:1.0.0"


@pytest.fixture(scope="module", autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with isolated_env(tmp_path_factory, set_env={"MIRROR_KEY_PASSWORD": PASSWORD}):
        yield


@pytest.fixture(scope="module")
def signed(seeded_registry: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One signed lab bundle with images, charts, packs and the images the packs run."""
    work = tmp_path_factory.mktemp("approval")
    assert mirror("keygen", "--output-dir", work, "--name", "k").rc == 0
    out = work / "lab.tar.zst"
    spec = write_spec(work / "s.yaml", seeded_registry.url)
    run = mirror("export", spec, "-o", out, "--key", work / "k.key")
    assert run.rc == 0, run.err
    doc = mirror("inspect", out, "--json").json()
    return {"bundle": out, "pub": work / "k.pub", "doc": doc, "work": work}


def cells(row: str) -> list[str]:
    """A Markdown table row's cells; `\\|` inside a cell is not a border."""
    return re.split(r"(?<!\\)\|", row.strip())[1:-1]


def check_renders_cleanly(md: str) -> None:
    """What a Markdown renderer needs, and what a terminal reader needs, checked by hand."""
    lines = md.splitlines()
    assert not re.search(r"<[A-Za-z/!?]", md), "raw HTML"
    assert all(len(line) <= WIDTH for line in lines), max(lines, key=len)
    assert md.count("`") % 2 == 0, "an unclosed code span"
    tables, block = [], []
    for line in [*lines, ""]:
        if line.startswith("|"):
            block.append(line)
        elif block:
            tables.append(block)
            block = []
    assert tables
    for table in tables:
        assert len(table) >= 3, table  # header, separator, at least one row
        width = len(cells(table[0]))
        assert all(c.strip() == "---" for c in cells(table[1])), table[1]
        assert all(len(cells(row)) == width for row in table), table
    for i, line in enumerate(lines):
        if line.startswith("#"):
            assert re.match(r"#{1,3} \S", line), line
            assert i == 0 or lines[i - 1] == "", f"no blank line before {line!r}"
        if line.startswith("|") and (i == 0 or not lines[i - 1].startswith("|")):
            assert lines[i - 1] == "", f"no blank line before the table at {line!r}"


def section(md: str, heading: str) -> str:
    return md.split(heading + "\n", 1)[1].split("\n#", 1)[0]


def item(md: str, title: str) -> str:
    """One list item and its sub-items, from `- title` to the next top-level item."""
    return md.split(f"- `{title}`\n", 1)[1].split("\n- ", 1)[0].split("\n\n", 1)[0]


def test_the_record_with_key_names_file_signer_and_every_artifact(signed: dict[str, Any]) -> None:
    bundle, doc = signed["bundle"], signed["doc"]
    run = mirror("inspect", bundle, "--format", "markdown", "--key", signed["pub"])
    assert run.rc == 0, run.err
    md = run.out
    check_renders_cleanly(md)
    head = section(md, f"# Approval record: {doc['name']}")
    data = bundle.read_bytes()
    assert f"| SHA-256 | `{hashlib.sha256(data).hexdigest()}` (matches FILE.sha256) |" in head
    assert f"| Size | {len(data)} bytes (" in head
    fp = fingerprint(load_public_key(signed["pub"]))
    assert f"| Signer | `{fp}` |" in head
    assert "| Signature | verified by this run" in head
    assert f"| Tool | mirror {__version__} |" in head
    assert f"| Spec digest | `{doc['specDigest']}` |" in head
    assert f"| Created | {doc['created']} |" in head
    host = re.escape(socket.gethostname())
    assert not re.search(rf"(?<![\w.-]){host}(?![\w.-])", md)  # bundles stay reproducible
    for a in doc["artifacts"]:
        entry = item(md, f"{a['repository']}:{a['tag']}")
        assert f"  - kind: {a['kind']};" in entry
        assert f"  - source: `{doc['registries'][0]['url']}/production/{a['repository']}:" in entry
        assert f"  - lands at: `TARGET/{a['ref']}`" in entry
        assert f"  - digest: `{a['digest']}`" in entry
        assert f"  - size: {a['size']} bytes (" in entry
        platforms = ", ".join(a["platforms"]) or ("none named" if a["kind"] == "image" else "-")
        assert f"  - platforms: {platforms}" in entry
    multi = item(md, "images/multiarch:1.0.0")
    assert "  - platforms: linux/amd64, linux/arm64" in multi
    runs = section(md, f"### `{PACK}` (5)")
    for i in doc["images"]:
        entry = item(runs, i["ref"])
        assert f"  - digest: `{i['digest']}`" in entry
        assert "  - no signature" in entry  # the lab's images carry none: said, not left out
        where = f"TARGET/spectro-images/{i['host']}/{i['repository']}:{i['tag']}"
        assert f"  - lands at: `{where}`" in entry


def test_without_a_key_the_signer_is_claimed_and_the_file_still_hashed(
    signed: dict[str, Any],
) -> None:
    run = mirror("inspect", signed["bundle"], "--format", "markdown")
    assert run.rc == 0, run.err
    check_renders_cleanly(run.out)
    head = section(run.out, f"# Approval record: {signed['doc']['name']}")
    assert "| Signature | claimed, not verified by this run (pass `--key PUB`" in head
    digest = hashlib.sha256(signed["bundle"].read_bytes()).hexdigest()
    assert f"| SHA-256 | `{digest}` (matches FILE.sha256) |" in head


def test_a_wrong_key_or_a_damaged_file_is_no_record(signed: dict[str, Any], tmp_path: Path) -> None:
    assert mirror("keygen", "--output-dir", tmp_path, "--name", "other").rc == 0
    wrong = mirror(
        "inspect", signed["bundle"], "--format", "markdown", "--key", tmp_path / "other.pub"
    )
    assert wrong.rc == 3 and wrong.out == ""
    copy = tmp_path / "lab.tar.zst"
    data = bytearray(signed["bundle"].read_bytes())
    data[len(data) // 2] ^= 1
    copy.write_bytes(bytes(data))
    (tmp_path / "lab.tar.zst.sha256").write_bytes(
        (signed["work"] / "lab.tar.zst.sha256").read_bytes()
    )
    claimed = mirror("inspect", copy, "--format", "markdown")
    assert claimed.rc == 0
    assert "(DIFFERS from FILE.sha256: damaged or altered)" in claimed.out


def test_inspect_key_verifies_for_json_and_table_too(signed: dict[str, Any]) -> None:
    doc = mirror("inspect", signed["bundle"], "--json", "--key", signed["pub"]).json()
    assert doc["signerVerified"] is True
    assert doc["sha256"] == hashlib.sha256(signed["bundle"].read_bytes()).hexdigest()
    table = mirror("inspect", signed["bundle"], "--key", signed["pub"]).out
    assert f"signer {doc['signer']} (verified by this run)" in table
    assert mirror("inspect", signed["bundle"], "--json").json()["signerVerified"] is False


def test_a_signed_bundle_verified_without_its_key_is_not_called_unsigned(
    signed: dict[str, Any],
) -> None:
    """`verify --allow-unsigned` without --key on a signed bundle said 'signer UNSIGNED'
    (the contract audit, stop 31): it is signed; the signature was not checked."""
    run = mirror("verify", signed["bundle"], "--allow-unsigned")
    assert run.rc == 0, run.err
    assert "signer signed, not checked (no --key; accepted with --allow-unsigned)" in run.out
    assert "UNSIGNED" not in run.out
    doc = mirror("verify", signed["bundle"], "--allow-unsigned", "--json").json()
    assert doc["signer"] is None and doc["signed"] is True  # --json tells them apart too


def test_a_cell_shows_what_markdown_would_act_on_as_itself() -> None:
    """`&#8238;` in a name rendered as a mark that reorders the text after it; `_x_`,
    `[a](b)` and backticks changed what a reviewer reads. Each is now shown as written."""
    from mirror.bundle.approval import _cell

    cell = _cell("a|b <i> &#8238;SPIF _x_ *y* [a](b) `c` \\ end")
    assert cell == r"a\|b &lt;i> &amp;#8238;SPIF \_x\_ \*y\* \[a\](b) \`c\` \\ end"
    assert "\n" not in _cell("two\nlines")
