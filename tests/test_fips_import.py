"""VerteX end to end: a FIPS bundle signed with an OpenSSL PKCS#8 key, imported with --fips.

Issue 17, item 4: every FIPS test refused something; none proved that the README's VerteX
flow succeeds. Here it does, on the lab: `openssl genpkey ... -aes-256-cbc` (PBKDF2 + AES,
FIPS-acceptable), a spec with `fips: true` over a registry marked `fips: true`, export,
`verify --fips`, `import --fips`, and the target and the catalog hold what was promised.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faultproxy import Reg, isolated_env, mirror, write_spec

from mirror.lab import LabRegistry

pytestmark = pytest.mark.timeout(120)
PASSWORD = "vertex key password"


@pytest.fixture(scope="module", autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    env = {"MIRROR_KEY_PASSWORD": PASSWORD, "SOURCE_DATE_EPOCH": "1700000000"}
    with isolated_env(tmp_path_factory, set_env=env):
        yield


@pytest.fixture(scope="module")
def pkcs8(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The README's two openssl commands, password-protected with AES-256-CBC."""
    d = tmp_path_factory.mktemp("vertex-keys")
    key, pub = d / "release.key", d / "release.pub"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-aes-256-cbc", "-pass", f"pass:{PASSWORD}", "-out", str(key)],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        ["openssl", "pkey", "-in", str(key), "-passin", f"pass:{PASSWORD}", "-pubout",
         "-out", str(pub)],
        check=True, capture_output=True,
    )  # fmt: skip
    assert "ENCRYPTED PRIVATE KEY" in key.read_text()
    return key, pub


def fips_spec(path: Path, url: str, *, fips: bool = True) -> Path:
    """The lab spec, with the registry (and, for FIPS, the spec) marked FIPS."""
    flag = "true" if fips else "false"
    write_spec(path, url, extra=f", fips: {flag}")
    path.write_text(f"fips: {flag}\n" + path.read_text())
    return path


@pytest.fixture(scope="module")
def vertex(
    seeded_registry: Any, pkcs8: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    work = tmp_path_factory.mktemp("vertex")
    out = work / "vertex.tar.zst"
    spec = fips_spec(work / "vertex.yaml", seeded_registry.url)
    run = mirror("export", spec, "--key", pkcs8[0], "-o", out, "--cache-dir", work / "cache")
    assert run.rc == 0, run.err
    return out


def test_a_fips_bundle_signed_with_pkcs8_verifies_and_imports_with_fips(
    vertex: Path,
    pkcs8: tuple[Path, Path],
    seeded_registry: Any,
    registry: LabRegistry,
    tmp_path: Path,
) -> None:
    pub = pkcs8[1]
    doc = mirror("inspect", vertex, "--json").json()
    assert doc["fips"] is True and doc["signed"] is True
    assert doc["artifacts"] and all(a["fips"] for a in doc["artifacts"])

    verified = mirror("verify", vertex, "--key", pub, "--fips", "--json")
    assert verified.rc == 0, verified.err
    assert verified.json()["fips"] is True

    catalog = tmp_path / "catalog.json"
    run = mirror(
        "import", vertex, "--target", registry.url, "--key", pub, "--fips",
        "--catalog", catalog, "--json",
    )  # fmt: skip
    assert run.rc == 0, run.err
    result = run.json()
    assert result["pushedBlobs"] > 0
    (entry,) = result["registered"]
    assert entry["fips"] is True and entry["endpoint"] == registry.url

    reg = Reg(registry.url)
    for s in seeded_registry.seeded:
        assert reg.digest(s.repository, s.tag) == s.digest, s.ref
    for s in seeded_registry.images:
        assert reg.digest(f"spectro-images/{s.repository}", s.tag) == s.digest, s.ref
    assert reg.dangling() == []

    listed = mirror("registries", "list", "--scope", "system", "--catalog", catalog, "--json")
    assert listed.rc == 0, listed.err
    (row,) = listed.json()
    assert row["fips"] is True and row["url"] == registry.url
    assert json.loads(catalog.read_text())  # written, and JSON


def test_import_fips_refuses_a_non_fips_bundle_and_pushes_nothing(
    seeded_registry: Any,
    pkcs8: tuple[Path, Path],
    registry: LabRegistry,
    tmp_path: Path,
) -> None:
    """The same key and content, not marked FIPS: exit 3 in one line, target untouched."""
    spec = fips_spec(tmp_path / "plain.yaml", seeded_registry.url, fips=False)
    out = tmp_path / "plain.tar.zst"
    spec_args = ["--key", pkcs8[0], "-o", out, "--cache-dir", tmp_path / "cache"]
    assert mirror("export", spec, *spec_args).rc == 0
    run = mirror(
        "import", out, "--target", registry.url, "--key", pkcs8[1], "--fips",
        "--catalog", tmp_path / "catalog.json",
    )  # fmt: skip
    assert run.rc == 3
    assert "not FIPS" in run.error_line()
    assert Reg(registry.url).catalog() == []
    assert not (tmp_path / "catalog.json").exists()
