"""Names in manifest.json that import turns into URLs are checked as names (a hostile-input
sweep: a tag of `../../../escaped/manifests/pwned` passed verify and the schema, and import
sent `PUT /v2/confined/escaped/manifests/pwned`), and manifest.json is strict JSON."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from test_bundle_support import REF, make_layout, manifest_doc, members_of

from mirror.bundle.manifest import parse_manifest
from mirror.bundle.writer import write_bundle
from mirror.errors import VerificationError
from mirror.oci.descriptor import Descriptor


def _doc() -> dict[str, Any]:
    layout = make_layout()
    doc: dict[str, Any] = json.loads(manifest_doc(layout.files, layout.root).to_bytes())
    return doc


def _refused(doc: dict[str, Any], says: str) -> str:
    with pytest.raises(VerificationError) as caught:
        parse_manifest(json.dumps(doc).encode())
    message = str(caught.value)
    assert says in message and "\n" not in message, message
    return message


def test_the_plain_manifest_passes() -> None:
    assert parse_manifest(json.dumps(_doc()).encode()).artifacts[0].ref == REF


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("tag", "../../../escaped/manifests/pwned", "/artifacts/0/tag: "),
        ("tag", "a/../../b?c=d#e", "/artifacts/0/tag: "),
        ("tag", "1.0\n", "/artifacts/0/tag: '1.0\\n' is not an OCI tag"),
        ("repository", "../../v2/_catalog", "/artifacts/0/repository: "),
        ("repository", "library/app\n", "/artifacts/0/repository: "),
        ("digest", "sha256:" + "a" * 64 + "\n", "/artifacts/0/digest: "),
        ("ref", "elsewhere/app:1.0", "/artifacts/0/ref: 'elsewhere/app:1.0' is not"),
        ("ref", "../library/app:1.0", "/artifacts/0/ref: "),
        ("registry", "Nowhere", "/artifacts/0/registry: 'Nowhere' is not a registry"),
    ],
)
def test_an_artifact_name_that_is_no_name_is_refused(field: str, value: str, says: str) -> None:
    doc = _doc()
    doc["artifacts"][0][field] = value
    _refused(doc, says)


def test_a_referrer_must_belong_to_something_carried() -> None:
    doc = _doc()
    art = doc["artifacts"][0]
    doc["referrers"] = [
        {"owner": "nowhere:1", "subject": art["digest"], "digest": art["digest"],
         "mediaType": art["mediaType"], "size": art["size"], "tag": f"sha256-{'a' * 64}.sig",
         "artifactType": None, "layoutRef": "nowhere:sig"},
    ]  # fmt: skip
    _refused(doc, "/referrers/0/owner: 'nowhere:1' is no artifact or image")
    doc["referrers"][0]["owner"] = art["ref"]
    doc["referrers"][0]["subject"] = "sha256:" + "b" * 64 + "\n"
    _refused(doc, "/referrers/0/subject: ")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('"size": 716.0', "716.0 is not an integer"),
        ('"size": NaN', "NaN is not an integer"),
    ],
)
def test_manifest_json_numbers_are_integers(text: str, says: str) -> None:
    data = json.dumps(_doc()).replace('"size": 9', text, 1)
    assert text in data
    with pytest.raises(VerificationError, match=says):
        parse_manifest(data.encode())


def test_a_key_twice_is_refused_not_last_one_wins() -> None:
    data = json.dumps(_doc()).replace('"name": "demo"', '"name": "demo", "name": "other"', 1)
    with pytest.raises(VerificationError, match="the key 'name' appears twice"):
        parse_manifest(data.encode())


def test_a_hostile_value_is_quoted_short_in_the_error() -> None:
    doc = _doc()
    doc["artifacts"][0]["tag"] = "x" * 5_000_000
    message = _refused(doc, "/artifacts/0/")
    assert len(message) < 400 and message.endswith("...")


def test_a_descriptor_digest_with_a_final_newline_is_refused() -> None:
    with pytest.raises(VerificationError, match="malformed digest"):
        Descriptor("application/octet-stream", "sha256:" + "a" * 64 + "\n", 1)


def test_a_name_with_a_newline_forges_no_line_in_inspect_or_the_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mirror.cli import main

    layout = make_layout()
    doc = manifest_doc(layout.files, layout.root)
    forged = dataclasses.replace(doc, name="demo\nmirror: error: fake second line\x1b[2J")
    bundle = tmp_path / "b.tar.zst"
    write_bundle(bundle, forged.to_bytes(), None, members_of(layout.files), mtime=0)
    shown = "demo\\nmirror: error: fake second line\\x1b[2J"
    # Markdown shows a backslash and a bracket as themselves only escaped: `\\n`, `\[`.
    markdown = shown.replace("\\", "\\\\").replace("[", "\\[")
    for fmt, escaped in (("table", shown), ("markdown", markdown)):
        assert main(["inspect", str(bundle), "--format", fmt]) == 0
        out = capsys.readouterr().out
        assert not any(line.startswith("mirror: error") for line in out.splitlines()), out
        assert escaped in out


def test_an_error_is_one_line_whatever_it_quotes(capsys: pytest.CaptureFixture[str]) -> None:
    from mirror.cli import main

    assert main(["verify", "/no/such\nbundle" + ("/" + "x" * 200) * 14]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mirror: error: /no/such\\nbundle/xxx")
    assert err.rstrip().endswith(" characters)") and len(err) < 2100


@pytest.mark.parametrize("host", ["..", "a/../b", "reg.example:5000/x", "UPPER.example"])
def test_an_image_host_must_make_one_path_segment(host: str) -> None:
    """An image lands at <images base>/<host>/<repository>: a host of `..` would climb."""
    doc = _doc()
    art = doc["artifacts"][0]
    image = {
        "ref": f"{host}/app:1", "original": "app:1", "host": host, "repository": "app",
        "tag": "1", "pin": None, "digest": art["digest"], "mediaType": art["mediaType"],
        "size": art["size"], "platforms": [], "neededBy": ["spec"], "layoutRef": "img:1",
    }  # fmt: skip
    doc["images"] = [image]
    _refused(doc, "/images/0/host: ")
    image["host"] = "reg.example:5000"
    parse_manifest(json.dumps(doc).encode())  # the same image from a proper host passes


def test_an_artifact_typed_as_no_manifest_is_refused(tmp_path: Path) -> None:
    """Walked as a blob, such a root hid its layers: a bundle of manifests alone passed
    verify, and import failed half-way ('400 manifest invalid')."""
    from mirror.bundle.verify import verify_bundle

    layout = make_layout()
    doc = manifest_doc(layout.files, layout.root)
    art = dataclasses.replace(doc.artifacts[0], media_type="text/html")
    forged = dataclasses.replace(doc, artifacts=(art, *doc.artifacts[1:]))
    bundle = tmp_path / "b.tar.zst"
    write_bundle(bundle, forged.to_bytes(), None, members_of(layout.files), mtime=0)
    with pytest.raises(VerificationError, match="'text/html' is not a manifest's media type"):
        verify_bundle(bundle, None, allow_unsigned=True, fips=False)
