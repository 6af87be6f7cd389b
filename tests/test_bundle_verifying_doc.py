"""docs/VERIFYING.md's shell blocks, run verbatim on bundles this test makes.

As the page says: saved to a file and run with `bash -euo pipefail FILE`, from another
directory than the files' (the page's own `cd ~/review` must take it there; HOME is the
review folder's parent), so every claim the page makes is the one tested.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_bundle_support import (
    Keys,
    Layout,
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
from mirror.lab.content import make_docker_image, make_layer, multiarch
from mirror.oci import mediatypes as mt
from mirror.oci.artifact import OciArtifact

DOC = Path(__file__).resolve().parents[1] / "docs" / "VERIFYING.md"
DOCKER_TYPES = {mt.DOCKER_MANIFEST, mt.DOCKER_LIST}
TOOLS = ("bash", "base64", "openssl", "sha256sum", "zstd", "tar", "sed", "grep", "comm")
pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None for t in TOOLS), reason=f"needs {', '.join(TOOLS)}"
)


def _script() -> str:
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) >= 6
    return "\n".join(blocks)


def _run(directory: Path) -> subprocess.CompletedProcess[str]:
    """The page as a script, from the parent directory: `cd ~/review` must find the files."""
    assert directory.name == "review"
    home = directory.parent
    (home / "tmp").mkdir(exist_ok=True)
    script = home / "verify.sh"
    script.write_text(_script(), encoding="utf-8")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "TMPDIR": str(home / "tmp"),
        "HOME": str(home),
    }
    return subprocess.run(
        ["bash", "-euo", "pipefail", str(script)],
        cwd=home,
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


# ---- a failing step says so, and stops the script ------------------------------------------


def _compact_manifest(k: Keys) -> bytes:
    """The signed manifest's content as one JSON line: valid, but not laid out as mirror
    writes it, so step 5's sed finds no member line."""
    layout = make_layout()
    doc = manifest_doc(layout.files, layout.root, signer=k.fingerprint).to_json()
    return json.dumps(doc).encode() + b"\n"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("sed matches nothing", "FAILED: step 5: no member line"),
        ("symlink", "FAILED: step 2: an entry is not a regular file"),
        ("extra member", "FAILED: step 6: extra or duplicate members"),
    ],
)
def test_a_failing_step_stops_the_script_with_a_message(
    tmp_path: Path, case: str, message: str
) -> None:
    directory, k = _setup(tmp_path)
    layout = make_layout()
    entries = layout_entries(layout.files)
    manifest = manifest_doc(layout.files, layout.root, signer=k.fingerprint).to_bytes()
    if case == "sed matches nothing":
        manifest = _compact_manifest(k)
    elif case == "symlink":
        entries.append(tar_entry("blobs/evil", kind=tarfile.SYMTYPE))
    else:
        entries.append(tar_entry("blobs/sha256/" + sha(b"extra"), b"extra"))
    out = hostile_bundle(directory / "bundle.tar.zst", k, entries, manifest=manifest)
    signing.write_detached(out, bytes.fromhex(sha(out.read_bytes())), k.key)
    result = _run(directory)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "Docker-typed refs checked" not in result.stdout  # stopped there, not later
    assert "bundle verified" not in result.stdout


# ---- Docker-typed refs (step 7) ------------------------------------------------------------


def _docker_layout(*, drop_a_layer: bool = False) -> tuple[Layout, list[OciArtifact]]:
    """The OCI image of make_layout, plus a Docker image and a Docker manifest list, with
    index.json written as mirror writes it (keys sorted, one per line)."""
    base = make_layout()
    image = make_docker_image("docker-app", layers=[make_layer("docker-app/0", 2048)])
    listed = multiarch("multi", 1024, docker=True)
    files = dict(base.files)
    refs: list[dict[str, Any]] = json.loads(files["index.json"])["manifests"]
    for ref, art in (("library/docker-app:1.0", image), ("library/multi:1.0", listed)):
        for desc, data in [*art.blobs, (art.descriptor, art.manifest)]:
            files[f"blobs/sha256/{desc.hex}"] = data
        refs.append({**art.descriptor.to_json(), "annotations": {mt.ANN_REF_NAME: ref}})
    if drop_a_layer:  # a layer of the list's second child: only step 7 walks that deep
        child = json.loads(listed.manifest)["manifests"][1]["digest"].split(":")[1]
        layer = json.loads(files[f"blobs/sha256/{child}"])["layers"][0]["digest"]
        del files[f"blobs/sha256/{layer.split(':')[1]}"]
    doc = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": refs}
    files["index.json"] = json.dumps(doc, sort_keys=True, indent=1).encode() + b"\n"
    return Layout(files, base.root), [image, listed]


def test_procedure_checks_docker_typed_refs_by_name(tmp_path: Path) -> None:
    directory, k = _setup(tmp_path)
    layout, _ = _docker_layout()
    build_bundle(directory / "bundle.tar.zst", k, layout=layout)
    result = _run(directory)
    assert result.returncode == 0, result.stderr
    assert "Docker-typed refs checked by name: 2" in result.stdout
    assert "bundle verified" in result.stdout


def test_procedure_fails_on_a_docker_graph_missing_a_blob_behind_valid_signatures(
    tmp_path: Path,
) -> None:
    """Every member matches the signed manifest; only the Docker graph is not whole."""
    directory, k = _setup(tmp_path)
    layout, _ = _docker_layout(drop_a_layer=True)
    build_bundle(directory / "bundle.tar.zst", k, layout=layout)
    result = _run(directory)
    assert result.returncode != 0
    assert re.search(r"FAILED: step 7: blobs/sha256/[0-9a-f]{64} is missing", result.stderr)
    assert "bundle verified" not in result.stdout


# ---- a real export: the page, inspect's marks and the tools' behaviour, all agree -----------


@dataclass(frozen=True)
class RealExport:
    directory: Path  # the review folder: bundle, FILE.sha256, FILE.sig, mirror.pub
    bundle: Path
    layout: Path  # the bundle extracted, as step 3 would
    inspect: dict[str, Any]

    @property
    def docker_refs(self) -> set[str]:
        return {a["ref"] for a in self.inspect["artifacts"] if a["dockerTyped"]}


@pytest.fixture(scope="module")
def real_export(
    seeded_registry: Any, corpus: Path, tmp_path_factory: pytest.TempPathFactory
) -> RealExport:
    """A signed export of the lab's registry (images of every kind, a Docker image and a
    Docker manifest list among them, as a registry serves them; corpus packs and charts)."""
    from faultproxy import mirror, write_spec

    root = tmp_path_factory.mktemp("real")
    directory = root / "review"
    directory.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIRROR_KEY_PASSWORD", "pw")
        mp.setenv("DOCKER_CONFIG", str(root / "docker"))
        assert mirror("keygen", "--output-dir", directory, "--name", "mirror").rc == 0
        spec = write_spec(root / "s.yaml", seeded_registry.url)
        bundle = directory / "bundle.tar.zst"
        key = directory / "mirror.key"
        run = mirror("export", spec, "-o", bundle, "--key", key, "--no-images")
        assert run.rc == 0, run.err
        key.unlink()  # the reviewer has the public key only
        doc = json.loads(mirror("inspect", bundle, "--json").out)
    assert {a["kind"] for a in doc["artifacts"]} == {"image", "chart", "pack"}
    layout = root / "layout"
    layout.mkdir()
    subprocess.run(f"zstd -dc '{bundle}' | tar -x -C '{layout}'", shell=True, check=True)
    return RealExport(directory, bundle, layout, doc)


def _tool(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_inspect_marks_the_docker_typed_refs(real_export: RealExport, seeded_registry: Any) -> None:
    from faultproxy import mirror

    docker = real_export.docker_refs
    assert docker == {s.ref for s in seeded_registry.seeded if s.media_type in DOCKER_TYPES}
    assert len(docker) == real_export.inspect["totals"]["dockerTyped"] == 2
    table = mirror("inspect", real_export.bundle).out
    rows = [line for line in table.splitlines() if "sha256:" in line]
    assert sum(line.endswith("docker-typed") for line in rows) == 2
    assert "Docker     2 docker-typed refs" in table


def test_the_page_verifies_a_real_export_and_its_docker_typed_refs(
    real_export: RealExport,
) -> None:
    result = _run(real_export.directory)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Verified OK") == 2
    assert "Docker-typed refs checked by name: 2" in result.stdout


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="needs skopeo")
def test_skopeo_reads_oci_typed_refs_only(real_export: RealExport) -> None:
    """What docs/VERIFYING.md step 7 and docs/BUNDLE-FORMAT.md say of skopeo 1.9."""
    where = real_export.layout
    for a in real_export.inspect["artifacts"]:
        res = _tool("skopeo", "inspect", "--raw", f"oci:{where}:{a['ref']}")
        if a["dockerTyped"]:
            assert res.returncode != 0 and "no descriptor found for reference" in res.stderr
        else:
            assert res.returncode == 0, res.stderr


@pytest.mark.skipif(shutil.which("umoci") is None, reason="needs umoci (make debs)")
def test_umoci_reads_single_oci_images_only(real_export: RealExport) -> None:
    """What the pages say of umoci 0.4.7: Docker-typed refs are "not implemented", and it
    reads single container images only."""
    where = real_export.layout
    for a in real_export.inspect["artifacts"]:
        res = _tool("umoci", "stat", "--image", f"{where}:{a['ref']}")
        if a["dockerTyped"]:
            assert res.returncode != 0 and "not implemented" in res.stderr
        elif a["kind"] in ("chart", "pack"):
            assert res.returncode != 0 and "unknown config blob type" in res.stderr
        elif a["mediaType"] == mt.OCI_MANIFEST:
            assert res.returncode == 0, res.stderr
        else:  # an OCI index: umoci wants one image
            assert res.returncode != 0 and "ambiguous" in res.stderr


@pytest.mark.parametrize("damaged", [False, True])
def test_the_page_joins_a_split_bundle_and_checks_its_parts(tmp_path: Path, damaged: bool) -> None:
    """The page named FILE only: on a good split bundle (FILE.001.., FILE.parts.sha256, the
    sidecars of the joined bytes) it failed at step 1 where `mirror verify` passed."""
    import hashlib

    directory, k = _setup(tmp_path)
    bundle = build_bundle(directory / "bundle.tar.zst", k)
    data = bundle.read_bytes()
    size = len(data) // 3 + 1
    sums = []
    for n, start in enumerate(range(0, len(data), size), 1):
        part = directory / f"bundle.tar.zst.{n:03d}"
        part.write_bytes(data[start : start + size])
        sums.append(f"{hashlib.sha256(part.read_bytes()).hexdigest()}  {part.name}\n")
    (directory / "bundle.tar.zst.parts.sha256").write_text("".join(sums))
    bundle.unlink()
    assert len(sums) > 1
    if damaged:
        last = directory / f"bundle.tar.zst.{len(sums):03d}"
        last.write_bytes(last.read_bytes()[:-1])
    result = _run(directory)
    if damaged:
        assert result.returncode != 0 and "step 0: a part is damaged" in result.stderr
    else:
        assert result.returncode == 0, result.stderr
        assert "bundle verified: 6 members" in result.stdout
