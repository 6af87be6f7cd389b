"""docs/VERIFYING.md's shell blocks, run verbatim with bash on bundles this test makes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from test_bundle_support import (
    Keys,
    build_bundle,
    hostile_bundle,
    layout_entries,
    make_keys,
    make_layout,
    manifest_doc,
    sha,
    tar_entry,
)

from mirror import signing

DOC = Path(__file__).resolve().parents[1] / "docs" / "VERIFYING.md"
TOOLS = ("bash", "base64", "openssl", "sha256sum", "zstd", "tar", "sed", "grep", "comm")
pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None for t in TOOLS), reason=f"needs {', '.join(TOOLS)}"
)


def _script() -> str:
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) >= 6
    return "\n".join(blocks)


def _run(directory: Path) -> subprocess.CompletedProcess[str]:
    (directory / "tmp").mkdir(exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TMPDIR": str(directory / "tmp")}
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", _script()],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _setup(tmp_path: Path) -> tuple[Path, Keys]:
    directory = tmp_path / "review"
    directory.mkdir()
    return directory, make_keys(directory, "mirror")


def test_procedure_verifies_a_good_bundle(tmp_path: Path) -> None:
    directory, k = _setup(tmp_path)
    build_bundle(directory / "bundle.tar.zst", k)
    result = _run(directory)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Verified OK") == 2
    assert "bundle verified: 6 members" in result.stdout


def test_procedure_fails_on_a_flipped_byte(tmp_path: Path) -> None:
    directory, k = _setup(tmp_path)
    bundle = build_bundle(directory / "bundle.tar.zst", k)
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 1
    bundle.write_bytes(bytes(data))
    result = _run(directory)
    assert result.returncode != 0
    assert "bundle verified" not in result.stdout


def test_procedure_fails_on_another_signer(tmp_path: Path) -> None:
    directory, _ = _setup(tmp_path)
    build_bundle(directory / "bundle.tar.zst", make_keys(tmp_path, "other"))
    result = _run(directory)
    assert result.returncode != 0
    assert "Verification failure" in result.stdout + result.stderr


def _resigned(directory: Path, k: Keys, entries: list[tuple[tarfile.TarInfo, bytes]]) -> None:
    """A hostile archive whose FILE.sig is valid: only the inner checks can catch it."""
    layout = make_layout()
    manifest = manifest_doc(layout.files, layout.root, signer=k.fingerprint).to_bytes()
    out = hostile_bundle(directory / "bundle.tar.zst", k, entries, manifest=manifest)
    signing.write_detached(out, bytes.fromhex(sha(out.read_bytes())), k.key)


@pytest.mark.parametrize("case", ["edited blob", "extra member", "symlink", "dotdot", "dup"])
def test_procedure_fails_on_inner_tampering_behind_a_valid_file_sig(
    tmp_path: Path, case: str
) -> None:
    directory, k = _setup(tmp_path)
    files = make_layout().files
    entries = layout_entries(files)
    if case == "edited blob":
        info, data = entries[-1]
        entries[-1] = (info, bytes([data[0] ^ 1]) + data[1:])
    elif case == "extra member":
        entries.append(tar_entry("blobs/sha256/" + sha(b"extra"), b"extra"))
    elif case == "symlink":
        entries.append(tar_entry("blobs/evil", kind=tarfile.SYMTYPE))
    elif case == "dotdot":
        entries.append(tar_entry("../evil", b"evil"))
    else:
        entries.append(entries[-1])
    _resigned(directory, k, entries)
    result = _run(directory)
    assert result.returncode != 0, result.stdout
    assert "bundle verified" not in result.stdout
    assert not (tmp_path / "evil").exists()


def test_procedure_fails_when_manifest_signature_is_wrong(tmp_path: Path) -> None:
    directory, k = _setup(tmp_path)
    other = make_keys(tmp_path, "other")
    layout = make_layout()
    manifest = manifest_doc(layout.files, layout.root, signer=k.fingerprint).to_bytes()
    out = hostile_bundle(
        directory / "bundle.tar.zst", other, layout_entries(layout.files), manifest=manifest
    )
    signing.write_detached(out, bytes.fromhex(sha(out.read_bytes())), k.key)
    result = _run(directory)
    assert result.returncode != 0
    assert result.stdout.count("Verified OK") == 1  # FILE.sig yes, manifest.json.sig no
