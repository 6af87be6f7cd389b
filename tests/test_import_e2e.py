"""Import end to end against real lab registries (issue 5's "Done when").

Every artifact lands at TARGET/[--base-path/]<ref path>:<tag> with the source's digest; a
re-import uploads nothing; a killed import resumes and never leaves a tag over missing
blobs; a tampered, unsigned or wrongly signed bundle pushes nothing; conflicts are refused
unless --force; the catalog holds the system-scope entries, once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import zstandard
from faultproxy import MANIFEST, UPLOAD, FaultProxy, Reg, isolated_env, mirror, write_spec

from mirror.bundle.reader import BundleReader
from mirror.bundle.toc import FOOTER_SIZE, TocEntry, decode_footer, encode_footer, encode_toc
from mirror.lab import LabRegistry, start_registry
from mirror.lab.content import make_image, make_layer
from mirror.lab.seed import client_for, seed_artifact

pytestmark = pytest.mark.timeout(120)
PASSWORD = "correct horse battery staple"
IMPORT_KEYS = {"target", "artifacts", "pushedBlobs", "skippedBlobs", "registered"}
UPLOAD_METHODS = ("POST", "PUT", "PATCH")
MIRROR = (sys.executable, "-m", "mirror")


@pytest.fixture(scope="module", autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    env = {"MIRROR_KEY_PASSWORD": PASSWORD, "SOURCE_DATE_EPOCH": "1700000000"}
    with isolated_env(tmp_path_factory, set_env=env):
        yield


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    for name in ("signer", "stranger"):
        run = mirror("keygen", "--output-dir", d, "--name", name)
        assert run.rc == 0, run.err
    return d


@pytest.fixture(scope="module")
def bundles(
    seeded_registry: Any, keys: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """A signed and an unsigned bundle of the standard seed, sharing one cache."""
    work = tmp_path_factory.mktemp("bundles")
    spec = write_spec(work / "lab.yaml", seeded_registry.url)
    out = {"signed": work / "signed" / "lab.tar.zst", "unsigned": work / "unsigned" / "lab.tar.zst"}
    for kind, path in out.items():
        path.parent.mkdir()
        key = ["--key", keys / "signer.key"] if kind == "signed" else []
        run = mirror("export", spec, "--output", path, "--cache-dir", work / "cache", *key)
        assert run.rc == 0, run.err
    return out


@pytest.fixture
def target(tmp_path: Path) -> Iterator[LabRegistry]:
    reg = start_registry(tmp_path / "target", flavour="anon")
    try:
        yield reg
    finally:
        reg.stop()


def do_import(bundle: Path, target: str, work: Path, *more: object) -> Any:
    return mirror("import", bundle, "--target", target, "--catalog", work / "catalog.json", *more)


def assert_landed(reg: Reg, seeded: list[Any], base: str = "", images: Sequence[Any] = ()) -> None:
    """Each artifact at its ref, each image under spectro-images/<host>/<path>, none dangling."""
    prefix = f"{base}/" if base else ""
    for s in seeded:
        assert reg.digest(prefix + s.repository, s.tag) == s.digest, s.ref
    for s in images:
        assert reg.digest(f"{prefix}spectro-images/{s.repository}", s.tag) == s.digest, s.ref
    assert reg.dangling() == []


def system_entries(catalog: Path) -> list[dict[str, Any]]:
    run = mirror("registries", "list", "--scope", "system", "--catalog", catalog, "--json")
    assert run.rc == 0, run.err
    return list(run.json())


# ---- a first import, and everything it leaves behind -------------------------------------


@pytest.fixture(scope="module")
def imported(
    bundles: dict[str, Path], keys: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("imported")
    reg = start_registry(work / "target", flavour="anon")
    try:
        run = do_import(
            bundles["signed"],
            reg.url,
            work,
            "--key",
            keys / "signer.pub",
            "--receipt",
            work / "receipt.json",
            "--json",
        )
        assert run.rc == 0, run.err
        yield {"reg": reg, "run": run, "doc": run.json(), "work": work}
    finally:
        reg.stop()


def test_every_artifact_lands_at_its_ref_with_the_source_digest(
    imported: dict[str, Any], seeded_registry: Any
) -> None:
    assert seeded_registry.images
    assert_landed(Reg(imported["reg"].url), seeded_registry.seeded, images=seeded_registry.images)


def test_import_json_has_the_contract_keys(imported: dict[str, Any], seeded_registry: Any) -> None:
    doc, reg = imported["doc"], imported["reg"]
    assert set(doc) >= IMPORT_KEYS
    assert doc["pushedBlobs"] > 0
    # web, api-00 and api-01 share a base layer: uploaded once, mounted into the others.
    assert doc["mountedBlobs"] > 0
    rows = {(a["target"], a["digest"]) for a in doc["artifacts"]}
    assert rows == {(f"{reg.host}/{s.ref}", s.digest) for s in seeded_registry.seeded}
    assert all(a["source"] for a in doc["artifacts"])
    (entry,) = doc["registered"]
    assert entry["name"] == "Lab" and entry["kind"] == "oci" and entry["scope"] == "system"
    assert entry["endpoint"] == reg.url and entry["baseContentPath"] == "production"
    assert entry["fips"] is False


def test_catalog_holds_the_system_scope_entry(imported: dict[str, Any]) -> None:
    (entry,) = system_entries(imported["work"] / "catalog.json")
    assert entry["name"] == "Lab" and entry["scope"] == "system"
    assert entry["url"] == imported["reg"].url and entry["basePath"] == "production"
    assert entry["providerType"] == "pack"


def test_receipt_lists_target_refs_digests_and_blobs(
    imported: dict[str, Any], seeded_registry: Any
) -> None:
    receipt = json.loads((imported["work"] / "receipt.json").read_text())
    reg = Reg(imported["reg"].url)
    assert receipt["target"] == imported["reg"].url
    assert receipt["bundleDigest"] == imported["doc"]["bundleDigest"]
    by_target = {a["target"]: a for a in receipt["artifacts"]}
    assert len(by_target) == len(seeded_registry.seeded) + len(seeded_registry.images)
    for s in seeded_registry.images:  # images are in the receipt, so a delta leaves them out
        row = by_target[f"{imported['reg'].host}/spectro-images/{s.ref}"]
        assert row["digest"] == s.digest
        children, blobs = reg.graph_blobs(f"spectro-images/{s.repository}", s.tag)
        assert set(row["blobs"]) == children | blobs, s.ref
    for s in seeded_registry.seeded:
        row = by_target[f"{imported['reg'].host}/{s.ref}"]
        assert row["digest"] == s.digest
        children, blobs = reg.graph_blobs(s.repository, s.tag)
        assert set(row["blobs"]) == children | blobs, s.ref


def test_reimport_pushes_zero_blobs_and_keeps_one_catalog_entry(
    imported: dict[str, Any], bundles: dict[str, Path], keys: Path, seeded_registry: Any
) -> None:
    reg = imported["reg"]
    work = imported["work"]
    with FaultProxy.running(reg.url) as proxy:
        run = do_import(bundles["signed"], reg.url, work, "--key", keys / "signer.pub", "--json")
        assert run.rc == 0, run.err
        doc = run.json()
        assert doc["pushedBlobs"] == 0
        assert doc["skippedBlobs"] > 0
        entries = system_entries(work / "catalog.json")
        assert [e["name"] for e in entries].count("Lab") == 1
        # And through the proxy (another endpoint, so another catalog): not one upload
        # session opened, by an independent count.
        again = do_import(
            bundles["signed"], proxy.url, work / "via-proxy", "--key", keys / "signer.pub"
        )
        assert again.rc == 0, again.err
        assert sum(proxy.seen(m, UPLOAD) for m in UPLOAD_METHODS) == 0
        assert proxy.seen("PUT", MANIFEST) == 0
    assert_landed(Reg(reg.url), seeded_registry.seeded)


def test_dry_run_after_import_finds_every_byte_present(
    imported: dict[str, Any], bundles: dict[str, Path], keys: Path
) -> None:
    run = do_import(
        bundles["signed"],
        imported["reg"].url,
        imported["work"],
        "--key",
        keys / "signer.pub",
        "--dry-run",
        "--json",
    )
    assert run.rc == 0, run.err
    doc = run.json()
    assert doc["toPushBytes"] == 0 and doc["presentBytes"] > 0


def test_dry_run_pushes_nothing_and_reports_bytes(
    bundles: dict[str, Path], keys: Path, target: LabRegistry, tmp_path: Path
) -> None:
    run = do_import(
        bundles["signed"],
        target.url,
        tmp_path,
        "--key",
        keys / "signer.pub",
        "--dry-run",
        "--json",
        "--receipt",
        tmp_path / "r.json",
    )
    assert run.rc == 0, run.err
    doc = run.json()
    assert doc["toPushBytes"] > 0 and doc["presentBytes"] == 0
    assert Reg(target.url).catalog() == []
    assert not (tmp_path / "catalog.json").exists() and not (tmp_path / "r.json").exists()
    text = do_import(
        bundles["signed"], target.url, tmp_path, "--key", keys / "signer.pub", "--dry-run"
    )
    assert text.rc == 0 and "would push" in text.out
    assert Reg(target.url).catalog() == []


def test_base_path_prefixes_every_landing_ref(
    bundles: dict[str, Path], target: LabRegistry, tmp_path: Path, seeded_registry: Any
) -> None:
    run = do_import(
        bundles["unsigned"],
        target.url,
        tmp_path,
        "--allow-unsigned",
        "--base-path",
        "/edge/m1/",
        "--json",
    )
    assert run.rc == 0, run.err
    assert_landed(
        Reg(target.url), seeded_registry.seeded, base="edge/m1", images=seeded_registry.images
    )
    landed = Reg(target.url).catalog()
    assert all(r.startswith(("edge/m1/production/", "edge/m1/spectro-images/")) for r in landed)
    (entry,) = run.json()["registered"]
    assert entry["baseContentPath"] == "edge/m1/production"


# ---- a killed import resumes ------------------------------------------------------------


@pytest.mark.parametrize("phase", ["blobs", "manifests"])
def test_killed_import_resumes_and_never_tags_missing_blobs(
    phase: str,
    bundles: dict[str, Path],
    keys: Path,
    target: LabRegistry,
    tmp_path: Path,
    seeded_registry: Any,
) -> None:
    pub = keys / "signer.pub"
    with FaultProxy.running(target.url) as proxy:
        path = UPLOAD if phase == "blobs" else MANIFEST
        proxy.add("slow", method="PUT", path=path, delay=0.3)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        argv: list[str | Path] = [*MIRROR, "import", bundles["signed"], "--target", proxy.url]
        proc = subprocess.Popen(
            [*argv, "--key", pub, "--jobs", "2", "--catalog", tmp_path / "catalog.json"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 30
            while proxy.seen("PUT", path, status=201) < 3 and time.monotonic() < deadline:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.02)
            assert proxy.seen("PUT", path, status=201) >= 3, "the import never got going"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    reg = Reg(target.url)
    assert reg.dangling() == []
    tags = sum(len(reg.tags(repo)) for repo in reg.catalog())
    if phase == "manifests":
        assert tags > 0, "the kill came before any tag: the check above proved nothing"
    assert not (tmp_path / "catalog.json").exists()

    run = do_import(bundles["signed"], target.url, tmp_path, "--key", pub, "--json")
    assert run.rc == 0, run.err
    assert run.json()["skippedBlobs"] > 0
    assert_landed(reg, seeded_registry.seeded)
    assert system_entries(tmp_path / "catalog.json")


def test_a_second_run_finds_its_big_layers_on_the_target_by_their_heads(
    bundles: dict[str, Path],
    keys: Path,
    target: LabRegistry,
    tmp_path: Path,
    seeded_registry: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A first run stops before any tag (every manifest PUT refused): its blobs are on the
    target, its graphs not complete, so the second run asks for each blob with a HEAD. A
    HEAD's Content-Length is the blob's size; read as a body bigger than the cap on
    answers read whole, it failed the run for any layer over 16 MiB (here, the cap is
    lowered under the bundle's largest blob)."""
    from mirror.registry import http

    pub = keys / "signer.pub"
    largest = _largest_blob(BundleReader(bundles["signed"])).size
    monkeypatch.setattr(http, "BODY_CAP", largest - 1)
    with FaultProxy.running(target.url) as proxy:
        proxy.add("status", method="PUT", path=MANIFEST, status=400)
        first = do_import(bundles["signed"], proxy.url, tmp_path / "first", "--key", pub)
        assert first.rc != 0 and proxy.seen("PUT", UPLOAD, status=201) > 0
    assert sum(len(Reg(target.url).tags(repo)) for repo in Reg(target.url).catalog()) == 0
    run = do_import(bundles["signed"], target.url, tmp_path, "--key", pub, "--json")
    assert run.rc == 0, run.err
    assert run.json()["skippedBlobs"] > 0
    assert_landed(Reg(target.url), seeded_registry.seeded)


# ---- trust: nothing moves unless the bundle checks out ----------------------------------


def _largest_blob(reader: BundleReader) -> TocEntry:
    blobs = [e for e in reader.toc().values() if e.path.startswith("blobs/")]
    return max(blobs, key=lambda e: e.size)


def _frame_end(path: Path, reader: BundleReader, frame: int) -> int:
    size = path.stat().st_size
    with path.open("rb") as f:
        f.seek(size - FOOTER_SIZE)
        toc_at = decode_footer(f.read(FOOTER_SIZE), size)
    return min([e.frame for e in reader.toc().values() if e.frame > frame] + [toc_at])


def flip_blob_byte(src: Path, dst: Path) -> None:
    """Flip one byte in the middle of the compressed frame of the bundle's largest blob."""
    reader = BundleReader(src)
    entry = _largest_blob(reader)
    end = _frame_end(src, reader, entry.frame)
    data = bytearray(src.read_bytes())
    at = (entry.frame + end) // 2
    data[at] ^= 0x01
    dst.write_bytes(bytes(data))


def repack_manifest(src: Path, dst: Path) -> None:
    """Change one character of manifest.json and re-pack its frame, as an attacker would.

    The result is a well-formed bundle (the table of contents is moved to match) whose only
    lie is manifest.json, so what catches it is the manifest's signature, nothing else.
    """
    reader = BundleReader(src)
    first_end = min(e.frame for e in reader.toc().values() if e.frame > 0)
    raw = src.read_bytes()
    head = zstandard.ZstdDecompressor().decompress(raw[:first_end], max_output_size=1 << 24)
    marker = b'"created": "2023-11-14T22:13:20Z"'
    if marker not in head:
        marker = b'"created":"2023-11-14T22:13:20Z"'
    assert marker in head, head[:600]
    head = head.replace(marker, marker.replace(b"20Z", b"21Z"), 1)
    frame = zstandard.ZstdCompressor(level=3).compress(head)
    delta = len(frame) - first_end
    size = len(raw)
    toc_at = decode_footer(raw[size - FOOTER_SIZE :], size)
    moved = [
        TocEntry(e.path, e.frame + delta if e.frame else 0, e.offset, e.size)
        for e in reader.toc().values()
    ]
    body = frame + raw[first_end:toc_at]
    dst.write_bytes(body + encode_toc(moved) + encode_footer(len(body)))


def misplace_in_toc(src: Path, dst: Path) -> None:
    """Point one blob's table-of-contents entry at the data of the member after it in the
    same frame: every member is intact, only the unsigned seek table lies."""
    reader = BundleReader(src)
    by_frame: dict[int, list[TocEntry]] = {}
    for e in reader.toc().values():
        by_frame.setdefault(e.frame, []).append(e)
    group = next(sorted(g, key=lambda e: e.offset) for g in by_frame.values() if len(g) > 2)
    moved = {group[1].path: TocEntry(group[1].path, group[1].frame, group[2].offset, group[1].size)}
    raw = src.read_bytes()
    toc_at = decode_footer(raw[-FOOTER_SIZE:], len(raw))
    entries = [moved.get(e.path, e) for e in reader.toc().values()]
    dst.write_bytes(raw[:toc_at] + encode_toc(entries) + encode_footer(toc_at))


def _copy_bundle(src: Path, dst_dir: Path, *, sidecars: tuple[str, ...]) -> Path:
    dst_dir.mkdir()
    for suffix in sidecars:
        side = src.with_name(src.name + suffix)
        (dst_dir / side.name).write_bytes(side.read_bytes())
    return dst_dir / src.name


@pytest.mark.parametrize(
    ("kind", "tamper", "sidecars"),
    [
        ("signed", "blob", (".sig", ".sha256")),  # FILE.sig catches it before anything moves
        ("signed", "manifest", (".sig", ".sha256")),
        ("signed", "blob", ()),  # sidecars gone: only the per-member digests are left
        ("signed", "manifest", ()),  # ... and the manifest's own signature
        ("unsigned", "blob", (".sha256",)),
        ("unsigned", "blob", ()),
        ("signed", "toc", ()),  # verify proves each seek the table claims, before the push
        ("unsigned", "toc", ()),
    ],
)
def test_tampered_bundle_exits_3_and_pushes_nothing(
    kind: str,
    tamper: str,
    sidecars: tuple[str, ...],
    bundles: dict[str, Path],
    keys: Path,
    target: LabRegistry,
    tmp_path: Path,
) -> None:
    src = bundles[kind]
    bad = _copy_bundle(src, tmp_path / "bad", sidecars=())
    tampers = {"blob": flip_blob_byte, "manifest": repack_manifest, "toc": misplace_in_toc}
    tampers[tamper](src, bad)
    for suffix in sidecars:  # the sidecars of the GOOD bundle, as an attacker would leave them
        (bad.parent / (bad.name + suffix)).write_bytes(
            src.with_name(src.name + suffix).read_bytes()
        )
    trust = ["--key", keys / "signer.pub"] if kind == "signed" else ["--allow-unsigned"]
    run = do_import(bad, target.url, tmp_path, *trust)
    assert run.rc == 3, run.out + run.err
    run.error_line()
    assert Reg(target.url).catalog() == []
    assert not (tmp_path / "catalog.json").exists()


@pytest.mark.parametrize(
    ("flag", "where", "code", "words"),
    [
        ("--receipt", "/dev/null", 2, "not a regular file"),
        ("--receipt", "afile/r.json", 2, "Not a directory"),
        ("--mirror-config", "afile/m", 2, "not a folder"),
        ("--helm-repo-dir", "helm", 2, "index.yaml: is a directory"),
        ("--catalog", "/proc/c.json", 1, "cannot write in /proc"),
    ],
)
@pytest.mark.parametrize("dry", [False, True], ids=["import", "dry-run"])
def test_outputs_that_cannot_be_written_are_refused_before_the_push(
    flag: str,
    where: str,
    code: int,
    words: str,
    dry: bool,
    bundles: dict[str, Path],
    target: LabRegistry,
    tmp_path: Path,
) -> None:
    """Each was refused only after every blob was pushed and every tag set (exit 2 after
    the target changed); a dry run said nothing. /proc answers only a write: a dry run,
    which writes nothing, cannot know."""
    (tmp_path / "afile").write_text("x")
    (tmp_path / "helm" / "index.yaml").mkdir(parents=True)
    path = where if where.startswith("/") else tmp_path / where
    more = ["--dry-run"] if dry else []
    run = do_import(
        bundles["unsigned"], target.url, tmp_path, "--allow-unsigned", flag, path, *more
    )
    if dry and where.startswith("/proc"):
        assert run.rc == 0, run.err
        return
    assert run.rc == code and words in run.error_line(), run.err
    assert Reg(target.url).catalog() == []
    assert not (tmp_path / "catalog.json").exists() and list(Path("/proc").glob(".mirror*")) == []


def test_unsigned_bundle_needs_allow_unsigned(
    bundles: dict[str, Path], keys: Path, target: LabRegistry, tmp_path: Path
) -> None:
    bare = do_import(bundles["unsigned"], target.url, tmp_path)
    assert bare.rc == 3
    assert "--allow-unsigned" in bare.error_line()
    with_key = do_import(bundles["unsigned"], target.url, tmp_path, "--key", keys / "signer.pub")
    assert with_key.rc == 3
    assert "--allow-unsigned" in with_key.error_line()
    assert Reg(target.url).catalog() == []


def test_wrong_key_exits_3_and_pushes_nothing(
    bundles: dict[str, Path], keys: Path, target: LabRegistry, tmp_path: Path
) -> None:
    run = do_import(bundles["signed"], target.url, tmp_path, "--key", keys / "stranger.pub")
    assert run.rc == 3
    run.error_line()
    assert Reg(target.url).catalog() == []
    no_sig = _copy_bundle(bundles["signed"], tmp_path / "nosig", sidecars=(".sha256",))
    no_sig.write_bytes(bundles["signed"].read_bytes())
    again = do_import(no_sig, target.url, tmp_path, "--key", keys / "stranger.pub")
    assert again.rc == 3, "the manifest's own signature must still name the wrong key"
    assert Reg(target.url).catalog() == []


# ---- conflicts ------------------------------------------------------------------------------


def test_conflicting_tag_is_refused_then_replaced_with_force(
    bundles: dict[str, Path], keys: Path, target: LabRegistry, tmp_path: Path, seeded_registry: Any
) -> None:
    client = client_for(target)
    try:
        other = seed_artifact(
            client,
            "production/images/web",
            "1.0.0",
            make_image("conflict", layers=[make_layer("conflict", 2048)]),
        )
    finally:
        client.close()
    reg = Reg(target.url)
    before = {repo: reg.tags(repo) for repo in reg.catalog()}
    pub = keys / "signer.pub"
    planned = do_import(bundles["signed"], target.url, tmp_path, "--key", pub, "--dry-run")
    assert planned.rc == 1 and "--force" in planned.error_line()  # the plan says so first
    run = do_import(bundles["signed"], target.url, tmp_path, "--key", pub)
    assert run.rc == 1
    line = run.error_line()
    assert "production/images/web:1.0.0" in line and "--force" in line
    assert {repo: reg.tags(repo) for repo in reg.catalog()} == before
    assert reg.digest("production/images/web", "1.0.0") == other.digest
    assert not (tmp_path / "catalog.json").exists()

    forced = do_import(bundles["signed"], target.url, tmp_path, "--key", pub, "--force")
    assert forced.rc == 0, forced.err
    assert_landed(reg, seeded_registry.seeded)


# ---- target access ---------------------------------------------------------------------------


def test_basic_auth_target_with_env_credentials(
    bundles: dict[str, Path],
    keys: Path,
    registry_factory: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    seeded_registry: Any,
) -> None:
    reg = registry_factory("basic")
    monkeypatch.setenv("MIRROR_TARGET_USERNAME", reg.username)
    monkeypatch.setenv("MIRROR_TARGET_PASSWORD", reg.password)
    run = do_import(
        bundles["signed"],
        reg.url,
        tmp_path,
        "--key",
        keys / "signer.pub",
        "--receipt",
        tmp_path / "receipt.json",
        "--json",
    )
    assert run.rc == 0, run.err
    assert_landed(Reg(reg.url, auth=(reg.username, reg.password)), seeded_registry.seeded)
    for text in (run.out, run.err, *(p.read_text() for p in tmp_path.glob("*.json"))):
        assert reg.password not in text


def test_tls_target_with_ca_file(
    bundles: dict[str, Path],
    keys: Path,
    registry_factory: Any,
    tmp_path: Path,
    seeded_registry: Any,
) -> None:
    reg = registry_factory("tls")
    pub = keys / "signer.pub"
    untrusted = do_import(bundles["signed"], reg.url, tmp_path, "--key", pub)
    assert untrusted.rc == 1
    assert "--ca-file" in untrusted.error_line()
    run = do_import(bundles["signed"], reg.url, tmp_path, "--key", pub, "--ca-file", reg.ca_file)
    assert run.rc == 0, run.err
    assert_landed(Reg(reg.url, verify=str(reg.ca_file)), seeded_registry.seeded)
