"""A source registry behind a private CA: --ca-file, and nothing else, makes it work."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from mirror.cli import main
from mirror.lab.seed import client_for, seed_artifact
from mirror.oci import mediatypes as mt
from mirror.oci.artifact import single_layer_artifact


def test_export_from_a_private_ca_registry(
    tls_registry: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    art = single_layer_artifact(
        b"{}", mt.UNKNOWN_CONFIG, os.urandom(2048), mt.OCI_LAYER_TAR, {mt.ANN_TITLE: "p.tar.gz"}
    )
    seeded = seed_artifact(
        client_for(tls_registry), "base/spectro-packs/archive/p", "1.0.0", art, "pack"
    )
    spec = tmp_path / "spec.yaml"
    entry = f"{{name: Private, kind: oci, url: '{tls_registry.url}', basePath: base}}"
    spec.write_text(f"registries:\n  - {entry}\n")
    out = tmp_path / "b.tar.zst"
    args = ["export", str(spec), "-o", str(out), "--cache-dir", str(tmp_path / "c")]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"mirror: error: {tls_registry.host}: TLS verification failed "
        "(certificate verify failed: unable to get local issuer certificate); "
        "pass --ca-file with the registry's CA"
    )
    # Nothing left: no output, and no blob in the cache (whose folder and lock an export
    # makes before its first request).
    assert {p.name for p in tmp_path.iterdir()} <= {"spec.yaml", "c"}
    assert not [f for f in (tmp_path / "c").rglob("*") if f.is_file() and f.name != ".lock"]
    assert main([*args, "--ca-file", str(tls_registry.ca_file)]) == 0
    assert main(["verify", str(out), "--allow-unsigned"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(out), "--json"]) == 0
    carried = json.loads(capsys.readouterr().out)["artifacts"]
    assert [(a["ref"], a["digest"]) for a in carried] == [
        ("base/spectro-packs/archive/p:1.0.0", seeded.digest)
    ]
