"""Re-imports skip the full hash of a bundle proven whole and unchanged since."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from faultproxy import write_spec

from mirror.bundle.memo import Proof, VerifiedMemo
from mirror.cli import main


@pytest.fixture
def signed_bundle(
    seeded_registry: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, Path]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    key, pub = tmp_path / "k.key", tmp_path / "k.pub"
    gen = ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
    subprocess.run([*gen, "-out", str(key)], check=True)
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)], check=True)
    spec = write_spec(
        tmp_path / "spec.yaml", seeded_registry.url, repositories=["images/api-00"], provider=None
    )
    bundle = tmp_path / "b.tar.zst"
    assert main(["export", str(spec), "-o", str(bundle), "--key", str(key)]) == 0
    return bundle, pub


def _import(bundle: Path, pub: Path, target: str, tmp_path: Path) -> int:
    catalog = tmp_path / "cat.json"
    return main(["import", str(bundle), "--target", target, "--key", str(pub),
                 "--catalog", str(catalog), "--json"])  # fmt: skip


def test_reimport_skips_the_full_pass_until_the_file_changes(
    signed_bundle: tuple[Path, Path],
    registry: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bundle, pub = signed_bundle
    assert _import(bundle, pub, registry.url, tmp_path) == 0
    memo = tmp_path / "xdg" / "mirror" / "verified-bundles.json"
    assert json.loads(memo.read_text())[0]["path"] == str(bundle.resolve())

    passes: list[str] = []

    def boom(*a: object, **k: object) -> None:
        passes.append("full pass")
        raise AssertionError("full pass ran")  # main reports it as an internal error

    with monkeypatch.context() as m:
        m.setattr("mirror.signing.sha256_file", boom)
        m.setattr("mirror.bundle.trust.verify_bundle", boom)  # the one verdict (trust.py)
        assert _import(bundle, pub, registry.url, tmp_path) == 0 and not passes
        bundle.write_bytes(bundle.read_bytes())  # same bytes, new ctime: proves nothing
        assert _import(bundle, pub, registry.url, tmp_path) == 1
        assert passes and "internal error: AssertionError: full pass ran" in capsys.readouterr().err
    capsys.readouterr()

    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 0x01
    bundle.write_bytes(bytes(data))
    assert _import(bundle, pub, registry.url, tmp_path) == 3
    assert "b.tar.zst" in capsys.readouterr().err


def test_a_proof_is_for_one_key_and_mode(tmp_path: Path) -> None:
    f = tmp_path / "x"
    f.write_bytes(b"x")
    memo = VerifiedMemo(tmp_path / "memo.json")
    memo.record(Proof.of(f, "abc", fips=False))
    assert memo.holds(Proof.of(f, "abc", fips=False))
    assert not memo.holds(Proof.of(f, "other", fips=False))
    assert not memo.holds(Proof.of(f, "abc", fips=True))
    assert not memo.holds(Proof.of(f, None, fips=False))
    # The schema check is skipped on a hit: only for the manifest bytes that passed it.
    memo.record(Proof.of(f, "abc", False, "sha256:" + "1" * 64))
    assert memo.holds(Proof.of(f, "abc", False, "sha256:" + "1" * 64))
    assert not memo.holds(Proof.of(f, "abc", False, "sha256:" + "2" * 64))
    (tmp_path / "memo.json").write_text("not json")
    assert not memo.holds(Proof.of(f, "abc", fips=False))


def test_a_proof_from_a_check_that_covered_less_proves_nothing(tmp_path: Path) -> None:
    """A proof recorded before verify proved the table of contents: the file is checked
    again in full, or import and serve would seek by a table nobody proved."""
    import json

    f = tmp_path / "x"
    f.write_bytes(b"x")
    memo = VerifiedMemo(tmp_path / "memo.json")
    memo.record(Proof.of(f, "abc", fips=False))
    assert memo.holds(Proof.of(f, "abc", fips=False))
    entries = json.loads((tmp_path / "memo.json").read_text())
    for entry in entries:
        del entry["checks"]
    (tmp_path / "memo.json").write_text(json.dumps(entries))
    assert not memo.holds(Proof.of(f, "abc", fips=False))


def test_a_reimport_validates_nothing_it_validated_before(
    signed_bundle: tuple[Path, Path], registry: Any, tmp_path: Path
) -> None:
    """The second import of a proven bundle checks the signature and the target, but not
    the manifest's or the catalog's schema again: jsonschema is not even imported."""
    import os
    import sys

    bundle, pub = signed_bundle
    assert _import(bundle, pub, registry.url, tmp_path) == 0
    argv = ["import", str(bundle), "--target", registry.url, "--key", str(pub),
            "--catalog", str(tmp_path / "cat.json"), "--json"]  # fmt: skip
    code = (  # schema_problem is wrapped before any module imports it by name
        "import sys; import mirror.formats.schema as s; seen = []; check = s.schema_problem; "
        "s.schema_problem = lambda name, *a, **k: seen.append(name) or check(name, *a, **k); "
        "from mirror.cli import main; rc = main(sys.argv[1:]); "
        "print('JSONSCHEMA' if 'jsonschema' in sys.modules else 'NONE', file=sys.stderr); "
        "print('CHECKED ' + ' '.join(sorted(set(seen))), file=sys.stderr); "
        "sys.exit(rc)"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    run = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env
    )
    assert run.returncode == 0, run.stderr
    assert "NONE\nCHECKED \n" in run.stderr, run.stderr
    assert json.loads(run.stdout)["skippedBlobs"] > 0

    (tmp_path / "cat.json").write_text((tmp_path / "cat.json").read_text() + " ")  # an edit
    run = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr.strip().endswith("CHECKED registry-catalog.schema.json")  # changed: again
