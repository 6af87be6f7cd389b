"""Signed receipts for two-way gaps, and receipts read as the hostile input they are (issue 18,
item 3).

A receipt is far-side data crossing back into the connected side. `import --receipt FILE
--receipt-key PRIV` signs it (FILE.sig, cosign's sign-blob form); `export --since FILE
--receipt-key PUB` refuses it unsigned or wrongly signed (exit 3), and every receipt, signed
or not, is read bounded, depth-checked and schema-checked before a blob is left out for it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from faultproxy import Reg, isolated_env, mirror, write_spec

from mirror.keys import load_public_key
from mirror.lab.content import make_image, make_layer
from mirror.lab.seed import client_for, seed_artifact
from mirror.receipt import MAX_RECEIPT
from mirror.signing import sign_bytes, verify_bytes

PASSWORD = "receipts"
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture(scope="module", autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with isolated_env(tmp_path_factory, set_env={"MIRROR_KEY_PASSWORD": PASSWORD}):
        yield


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """far.key/far.pub (the far side's receipt key) and other.key/other.pub."""
    folder = tmp_path_factory.mktemp("keys")
    for name in ("far", "other"):
        assert mirror("keygen", "--output-dir", folder, "--name", name).rc == 0
    return folder


def _seed(reg: Any, tag: str) -> Any:
    client = client_for(reg)
    try:
        layers = [make_layer("receipts/base", 32 * 1024), make_layer(f"receipts/{tag}", 4096)]
        return seed_artifact(client, "production/images/app", tag, make_image("r", layers=layers))
    finally:
        client.close()


def test_a_signed_receipt_crosses_back_and_a_forged_one_is_exit_3(
    tmp_path: Path, registry_factory: Any, keys: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    _seed(src, "1.0")
    spec = write_spec(tmp_path / "s.yaml", src.url, repositories=["images/app"])
    cache = ["--cache-dir", tmp_path / "cache"]
    full, receipt = tmp_path / "full.tar.zst", tmp_path / "receipt.json"
    assert mirror("export", spec, "-o", full, *cache).rc == 0
    imp = ["--target", dst.url, "--allow-unsigned", "--catalog", tmp_path / "cat.json"]
    run = mirror("import", full, *imp, "--receipt", receipt, "--receipt-key", keys / "far.key")
    assert run.rc == 0, run.err
    sig = receipt.with_name("receipt.json.sig")
    # cosign sign-blob's form: base64 of a DER ECDSA signature over the receipt's bytes
    verify_bytes(load_public_key(keys / "far.pub"), receipt.read_bytes(), sig.read_bytes(), "r")

    new = _seed(src, "1.1")
    since = ["--since", receipt, "--receipt-key", keys / "far.pub", *cache]
    delta = tmp_path / "delta.tar.zst"
    run = mirror("export", spec, "-o", delta, *since, "--json")
    assert run.rc == 0, run.err
    assert run.json()["externalBlobs"] >= 1
    assert mirror("import", delta, *imp).rc == 0
    assert Reg(dst.url).digest("production/images/app", "1.1") == new.digest

    # Wrongly signed: by another key; then one byte of the receipt changed under its .sig.
    other = ["--since", receipt, "--receipt-key", keys / "other.pub", *cache]
    run = mirror("export", spec, "-o", tmp_path / "x.tar.zst", *other)
    assert run.rc == 3 and "does not verify" in run.error_line(), run.err
    good = receipt.read_bytes()
    receipt.write_bytes(good.replace(b'"version": 1', b'"version":  1'))
    run = mirror("export", spec, "-o", tmp_path / "x.tar.zst", *since)
    assert run.rc == 3 and "receipt.json" in run.error_line(), run.err
    receipt.write_bytes(good)
    sig.unlink()
    run = mirror("export", spec, "-o", tmp_path / "x.tar.zst", *since)
    assert run.rc == 3 and "unsigned receipt" in run.error_line(), run.err
    assert not (tmp_path / "x.tar.zst").exists()
    # Without --receipt-key an unsigned receipt is still taken, as before.
    assert mirror("export", spec, "-o", tmp_path / "y.tar.zst", "--since", receipt, *cache).rc == 0


def test_an_unsigned_receipt_leaves_no_stale_signature(
    tmp_path: Path, registry_factory: Any, keys: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    _seed(src, "1.0")
    spec = write_spec(tmp_path / "s.yaml", src.url, repositories=["images/app"])
    bundle, receipt = tmp_path / "b.tar.zst", tmp_path / "receipt.json"
    assert mirror("export", spec, "-o", bundle, "--cache-dir", tmp_path / "cache").rc == 0
    imp = ["--target", dst.url, "--allow-unsigned", "--catalog", tmp_path / "cat.json"]
    imp += ["--receipt", receipt]
    assert mirror("import", bundle, *imp, "--receipt-key", keys / "far.key").rc == 0
    assert receipt.with_name("receipt.json.sig").is_file()
    assert mirror("import", bundle, *imp).rc == 0
    assert not receipt.with_name("receipt.json.sig").exists()  # it vouched for other bytes


def test_receipt_key_flags_say_what_they_need(tmp_path: Path, keys: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("name: t\nimages: [ghcr.io/acme/tool:1]\n")
    run = mirror("export", spec, "-o", tmp_path / "b", "--receipt-key", keys / "far.pub")
    assert run.rc == 2 and "give --since" in run.error_line()
    (tmp_path / "b.tar.zst").write_bytes(b"x")
    run = mirror("import", tmp_path / "b.tar.zst", "--target", "http://127.0.0.1:9",
                 "--receipt-key", keys / "far.key")  # fmt: skip
    assert run.rc == 2 and "give --receipt FILE" in run.error_line()


# ---------------------------------------------------------------- hostile receipts


def _receipt(artifacts: list[Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "target": "registry.local:5000",
        "bundleDigest": DIGEST,
        "importedAt": "2026-12-06T00:00:00Z",
        "artifacts": artifacts
        if artifacts is not None
        else [{"source": "s", "target": "h/production/app:1", "digest": DIGEST, "blobs": []}],
        **extra,
    }


def _export_since(tmp_path: Path, receipt: Path, *more: object) -> Any:
    """The receipt is refused before any source is asked: no registry needed here."""
    spec = tmp_path / "s.yaml"
    spec.write_text("name: t\nimages: [ghcr.io/acme/tool:1]\n")
    out = tmp_path / "b.tar.zst"
    run = mirror("export", spec, "-o", out, "--since", receipt, *more)
    assert not out.exists()
    assert "Traceback" not in run.err and len(run.err.strip().splitlines()) == 1, run.err
    return run


def _sign(keys: Path, path: Path, name: str = "far") -> None:
    from mirror.keys import load_private_key

    key = load_private_key(keys / f"{name}.key", PASSWORD.encode(), fips=False)
    path.with_name(path.name + ".sig").write_bytes(sign_bytes(key, path.read_bytes()))


HOSTILE = {
    "nested": b'{"artifacts": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "extra key": json.dumps(_receipt(credentials="x")).encode(),
    "path in target": json.dumps(
        _receipt([{"source": "s", "target": "h/../v2/_catalog?x:1", "digest": DIGEST, "blobs": []}])
    ).encode(),
    "upper-case repo": json.dumps(
        _receipt([{"source": "s", "target": "h/Prod/App:1", "digest": DIGEST, "blobs": []}])
    ).encode(),
    "bad digest": json.dumps(
        _receipt([{"source": "s", "target": "h/p/a:1", "digest": DIGEST, "blobs": ["sha256:x"]}])
    ).encode(),
    "not utf-8": b'{"version": 1, "target": "\xff\xfe"}',
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_hostile_receipt_is_one_line_exit_2(kind: str, tmp_path: Path) -> None:
    receipt = tmp_path / "receipt.json"
    receipt.write_bytes(HOSTILE[kind])
    run = _export_since(tmp_path, receipt)
    assert run.rc == 2 and "receipt.json" in run.error_line(), run.err


def test_a_signed_hostile_receipt_is_still_validated(tmp_path: Path, keys: Path) -> None:
    receipt = tmp_path / "receipt.json"
    receipt.write_bytes(HOSTILE["path in target"])
    _sign(keys, receipt)
    run = _export_since(tmp_path, receipt, "--receipt-key", keys / "far.pub")
    assert run.rc == 2 and "names no repository" in run.error_line(), run.err


def test_a_huge_receipt_is_refused_unread(tmp_path: Path) -> None:
    receipt = tmp_path / "receipt.json"
    with receipt.open("wb") as fh:
        fh.truncate(MAX_RECEIPT + 1)  # sparse: reading it would take 128 MiB
    run = _export_since(tmp_path, receipt)
    assert run.rc == 2 and "not a receipt" in run.error_line(), run.err


def test_a_huge_signature_is_exit_3(tmp_path: Path, keys: Path) -> None:
    receipt = tmp_path / "receipt.json"
    receipt.write_text(json.dumps(_receipt()))
    receipt.with_name("receipt.json.sig").write_bytes(b"A" * 1_000_000)
    run = _export_since(tmp_path, receipt, "--receipt-key", keys / "far.pub")
    assert run.rc == 3 and "too large to be a signature" in run.error_line(), run.err


def test_with_receipt_key_a_file_dressed_as_a_manifest_is_no_way_around(
    tmp_path: Path, keys: Path
) -> None:
    """Without the key, `--since` tells a manifest.json from a receipt by its content. With
    it, a far-side file that merely looks like a manifest must still be a signed receipt."""
    fake = tmp_path / "receipt.json"
    fake.write_text(json.dumps({"schemaVersion": 1, "members": [], "artifacts": []}))
    run = _export_since(tmp_path, fake, "--receipt-key", keys / "far.pub")
    assert run.rc == 3 and "unsigned receipt" in run.error_line(), run.err


def test_a_receipt_signed_by_the_key_but_tampered_after_is_exit_3(
    tmp_path: Path, keys: Path
) -> None:
    receipt = tmp_path / "receipt.json"
    receipt.write_text(json.dumps(_receipt()))
    _sign(keys, receipt)
    receipt.write_text(json.dumps(_receipt(artifacts=[])))
    run = _export_since(tmp_path, receipt, "--receipt-key", keys / "far.pub")
    assert run.rc == 3 and "does not verify" in run.error_line(), run.err
    _sign(keys, receipt, "other")
    run = _export_since(tmp_path, receipt, "--receipt-key", keys / "far.pub")
    assert run.rc == 3 and "does not verify" in run.error_line(), run.err
