"""verify's layout check gives import's verdict (a hostile-input sweep found two gaps):
an index nested deeper than the copy engine follows passed verify and serve but failed
import, and a descriptor naming a blob a second time with another size went unchecked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_bundle_support import REF, Layout, _desc, build_bundle, make_layout, sha

from mirror.cli import main
from mirror.oci import mediatypes as mt
from mirror.oci.descriptor import MAX_NESTING


def _rooted(files: dict[str, bytes], root: bytes, media_type: str) -> Layout:
    index = {"schemaVersion": 2, "manifests": [_desc(media_type, root)]}
    index["manifests"][0]["annotations"] = {mt.ANN_REF_NAME: REF}
    files = {**files, "index.json": json.dumps(index).encode(), f"blobs/sha256/{sha(root)}": root}
    return Layout(files, root)


def _nested(levels: int) -> Layout:
    """The plain image under `levels` indexes, each listing the one below."""
    base = make_layout()
    files = {p: d for p, d in base.files.items() if p != "index.json"}
    child, kind = base.root, mt.OCI_MANIFEST
    for _ in range(levels):
        index = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                            "manifests": [_desc(kind, child)]}).encode()  # fmt: skip
        files[f"blobs/sha256/{sha(child)}"] = child
        child, kind = index, mt.OCI_INDEX
    return _rooted(files, child, kind)


@pytest.mark.parametrize("levels", [MAX_NESTING, MAX_NESTING + 1])
def test_verify_follows_indexes_exactly_as_deep_as_import(
    levels: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = build_bundle(tmp_path / "b.tar.zst", None, layout=_nested(levels))
    code = main(["verify", str(bundle), "--allow-unsigned"])
    err = capsys.readouterr().err
    if levels <= MAX_NESTING:
        assert code == 0, err
    else:
        assert code == 3 and "manifests nested too deep" in err, err


def test_a_second_descriptor_of_a_blob_may_not_lie_about_its_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = make_layout()
    image = json.loads(base.root)
    layer = image["layers"][1]
    image["layers"].insert(1, {**layer, "size": layer["size"] + 1})  # checked after the true one
    root = json.dumps(image).encode()
    files = {p: d for p, d in base.files.items() if p not in ("index.json",)}
    del files[f"blobs/sha256/{sha(base.root)}"]
    bundle = build_bundle(
        tmp_path / "b.tar.zst", None, layout=_rooted(files, root, mt.OCI_MANIFEST)
    )
    assert main(["verify", str(bundle), "--allow-unsigned"]) == 3
    err = capsys.readouterr().err
    assert f"says {layer['size'] + 1} bytes, it has {layer['size']}" in err, err
