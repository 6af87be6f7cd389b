"""`make demo` from a fresh clone, and the one-line errors a newcomer meets on the way.

The end-to-end test clones HEAD into a temp dir (only committed files count), puts
../shared beside it as CI does, and runs `python -m mirror.lab.demo` there with THIS venv's
python and PYTHONPATH at the clone: `make demo` would only add building a second venv and
apt-get, which `make test` has already done for this checkout. It runs twice: with the
corpus packs, and with the generated packs a checkout without ../shared gets. Both times
every proxy variable points at a closed loopback port, so a request to any host outside
loopback fails the demo.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from mirror.cli import main
from mirror.lab import demo, demolab
from mirror.lab.httpserver import serve_directory
from mirror.lab.registry import INSTALL_HINT, registry_binary, start_registry
from mirror.lab.upstream import pack_image_refs, upstream_image
from mirror.oci.mediatypes import ACCEPT
from mirror.oci.reference import parse_reference

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def _need_registry() -> None:
    if registry_binary() is None:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"{INSTALL_HINT} (CI=true: the demo must run)", pytrace=False)
        pytest.skip(INSTALL_HINT)


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _free_base() -> int:
    """A base port whose +0, +1 and +2 are free, for when the fixed ones are busy."""
    for base in range(5880, 6880, 10):
        if not any(demolab.port_taken(base + i) for i in range(3)):
            return base
    raise AssertionError("no free ports")


def _processes_mentioning(text: str) -> list[str]:
    out = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args:
            out.append(args)
    return out


# ---------------------------------------------------------------- the whole demo


# What the generated packs list (mirror/lab/demolab.py), written out again on purpose.
GENERATED_IMAGES = {
    "docker.io/library/nginx:1.25",
    "ghcr.io/spectrocloud-labs/demo-addon:1.0.0",
    "quay.io/spectrocloud-labs/demo-csi-driver:1.0.0",
    "registry.k8s.io/sig-storage/csi-provisioner:v5.1.0",
}


@pytest.fixture
def no_way_out() -> Iterator[dict[str, str]]:
    """Proxy variables that send every non-loopback request to a port that refuses it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: a connect is refused
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
        names = ("http_proxy", "https_proxy", "all_proxy")
        env = {n: dead for n in names} | {n.upper(): dead for n in names}
        yield env | {"no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}


@pytest.mark.registry
@pytest.mark.timeout(150)
@pytest.mark.parametrize("packs", ["corpus", "generated"])
def test_demo_from_a_fresh_clone(tmp_path: Path, packs: str, no_way_out: dict[str, str]) -> None:
    _need_registry()
    corpus = SHARED / "corpus" / "pack-central"
    if packs == "corpus" and not corpus.is_dir():
        pytest.skip(f"{corpus} is missing: the generated run covers this checkout")
    clone = tmp_path / "main"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    if SHARED.is_dir():
        (tmp_path / "shared").symlink_to(SHARED)
    env = {**os.environ, **no_way_out, "PYTHONPATH": str(clone)}
    env.pop("MIRROR_KEY_PASSWORD", None)
    if packs == "generated":
        env["MIRROR_CORPUS"] = str(tmp_path / "no-corpus")  # as if ../shared were absent
    else:
        env.pop("MIRROR_CORPUS", None)
    base = demolab.DEFAULT_PORT
    if any(demolab.port_taken(base + i) for i in range(3)):
        base = _free_base()  # a demo of the user's own is running; this one uses a copy
    env[demolab.PORT_ENV] = str(base)
    storage = tmp_path / "target-storage"
    # `make demo` itself, in the clone, with this test run's venv: `-o STAMP` keeps make from
    # reinstalling the package into it (that would point this venv at the temporary clone).
    venv = Path(sys.prefix)
    make = ["make", "-s", "demo", f"VENV={venv}", "-o", f"{venv}/.installed"]
    proc = subprocess.run(
        [*make, f"DEMO_ARGS=--target-storage {storage}"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    steps = ("keygen", "images", "export", "verify", "inspect", "import", "registries list")
    at = [proc.stdout.find(f"$ mirror {step}") for step in steps]
    assert -1 not in at and at == sorted(at), at  # each step, in this order
    # then the next day: a delta of the chain --state keeps, exported and imported in turn
    day2 = proc.stdout.find("$ mirror export", at[-1])
    assert day2 > at[-1] and "--state demo-out/state" in proc.stdout[at[2] : at[3]]
    assert proc.stdout.find("$ mirror import demo-out/demo-next-day.tar.zst", day2) > day2
    assert "--mirror-config demo-out/mirror-config" in proc.stdout
    # No process left behind: no registry serving from the clone, no port still listening.
    assert _processes_mentioning(str(clone)) == []
    assert not any(demolab.port_taken(base + i) for i in range(3))

    out = clone / "demo-out"
    manifest = _bundle_manifest(out / "demo.tar.zst")
    images = manifest["images"]
    carried = {i["ref"] for i in images}
    if packs == "generated":
        assert carried == GENERATED_IMAGES
    else:
        listed = {str(r) for r in pack_image_refs(_bundled_pack_dirs(corpus, manifest))}
        assert listed and listed <= carried
    counts = f"{len(manifest['artifacts'])} artifacts and {len(images)} images"
    assert f"the bundle carries {counts}" in proc.stdout
    # The digest each image has at the lab's stand-in for its host (mirror.lab.upstream makes
    # the same bytes for the same reference): the bundle carries exactly that ...
    upstream = {ref: upstream_image(parse_reference(ref)).descriptor.digest for ref in carried}
    assert {i["ref"]: i["digest"] for i in images} == upstream
    # ... and the target serves it at spectro-images/<host>/<path>:<tag>.
    landed = {f"spectro-images/{i['host']}/{i['repository']}:{i['tag']}": i["ref"] for i in images}
    expect = {where: upstream[ref] for where, ref in landed.items()}
    delta = _bundle_manifest(out / "demo-next-day.tar.zst")
    _assert_a_small_delta(delta, manifest, out, proc.stdout)
    expect |= {a["ref"]: a["digest"] for a in delta["artifacts"]}  # the next day's tag too
    _assert_target_serves(storage, tmp_path, manifest["artifacts"], expect)
    first = sorted(landed)[0]
    assert f"-> 127.0.0.1:{base + 2}/{first}  {upstream[landed[first]][:19]}" in proc.stdout
    kinds = {a["kind"] for a in manifest["artifacts"]}
    assert {"image", "pack", "chart"} <= kinds
    assert (out / "demo.tar.zst.sig").is_file() and (out / "keys" / "demo.pub").is_file()
    _assert_mirror_files(out / "mirror-config", {i["host"] for i in images}, base + 2, proc.stdout)

    catalog = json.loads((out / "registries.json").read_text())
    rows = {r["name"]: r for r in catalog["registries"]}
    assert set(rows) == {"Palette Registry", "Palette Registry FIPS", "Public Spectro Helm Repo"}
    assert all(r["scope"] == "system" for r in rows.values())
    assert rows["Palette Registry FIPS"]["fips"] is True
    assert rows["Palette Registry FIPS"]["baseContentPath"] == "production-fips"
    assert rows["Palette Registry"]["fips"] is False
    # Git must not see what the demo made (demo-out/ is in .gitignore).
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True, check=True
    )
    assert "demo-out" not in status.stdout


def _assert_a_small_delta(
    delta: dict[str, Any], first: dict[str, Any], out: Path, stdout: str
) -> None:
    """The next day's bundle: sequence 2 of the first one's chain, carrying the new tag and
    leaving out what day 1 sent (the web family's base and middle layers among it)."""
    assert first["chain"]["sequence"] == 1 and first["chain"].get("base") is None
    assert delta["chain"]["id"] == first["chain"]["id"] and delta["chain"]["sequence"] == 2
    new = {a["ref"] for a in delta["artifacts"]} - {a["ref"] for a in first["artifacts"]}
    assert new == {"production/images/web:2.1.0"}
    sent = {m["sha256"] for m in first["members"]}
    carried = {m["sha256"] for m in delta["members"]}
    left_out = {e["digest"].split(":", 1)[1] for e in delta["external"]}
    assert left_out and left_out <= sent and not carried & left_out
    size = (out / "demo-next-day.tar.zst").stat().st_size
    assert size * 10 < (out / "demo.tar.zst").stat().st_size
    line = f"delta 2 of the chain carries {len(delta['members'])} blobs and leaves out"
    assert f"{line} {len(left_out)} the far side holds" in stdout
    assert "checked: the target serves production/images/web:2.1.0" in stdout


def _bundled_pack_dirs(corpus: Path, manifest: dict[str, Any]) -> list[Path]:
    """The corpus folders of the packs the bundle carries, by pack.json name and version."""
    wanted = {
        tuple(a["ref"].rsplit("/", 1)[1].split(":", 1))
        for a in manifest["artifacts"]
        if a["kind"] == "pack"
    }
    out = []
    for pack_json in sorted(corpus.glob("*/pack.json")):
        try:
            doc = json.loads(pack_json.read_text())
        except ValueError:
            continue
        if (doc.get("name"), str(doc.get("version"))) in wanted:
            out.append(pack_json.parent)
    assert out, wanted
    return out


def _assert_mirror_files(folder: Path, hosts: set[str], port: int, stdout: str) -> None:
    """mirror-registries.txt and one hosts.toml per image host, pointing at the target."""
    assert hosts
    endpoint = {h: f"127.0.0.1:{port}/spectro-images/{h}" for h in hosts}
    line = ",".join(f"{h}::{endpoint[h]}" for h in sorted(hosts))
    assert (folder / "mirror-registries.txt").read_text() == line + "\n"
    assert line in stdout.splitlines()  # the demo prints the file as it is
    certs = folder / "certs.d"
    assert sorted(p.name for p in certs.iterdir()) == sorted(hosts)
    shown = 0
    for host in hosts:
        text = (certs / host / "hosts.toml").read_text()
        server = "registry-1.docker.io" if host == "docker.io" else host
        assert text == (
            f'server = "https://{server}"\n\n'
            f'[host."http://127.0.0.1:{port}/v2/spectro-images/{host}"]\n'
            '  capabilities = ["pull", "resolve"]\n'
            "  override_path = true\n"
        ), host
        shown += text.rstrip("\n") in stdout
    assert shown == 1  # the demo prints one of them


def _bundle_manifest(bundle: Path) -> dict[str, Any]:
    """manifest.json read as a reviewer would: `zstd -dc | tar -xO manifest.json`."""
    import tarfile

    import zstandard

    with (
        bundle.open("rb") as raw,
        zstandard.ZstdDecompressor().stream_reader(raw) as z,
        tarfile.open(fileobj=z, mode="r|") as tar,
    ):
        first = tar.next()
        assert first is not None and first.name == "manifest.json"
        fh = tar.extractfile(first)
        assert fh is not None
        doc: dict[str, Any] = json.loads(fh.read())
        return doc


def _assert_target_serves(
    storage: Path, tmp_path: Path, artifacts: list[Any], images: dict[str, str]
) -> None:
    """A fresh registry on the target's kept storage serves every artifact by tag with its
    digest, and each of `images` (`repository:tag` -> digest) likewise."""
    assert artifacts and images
    wanted = {a["ref"]: a["digest"] for a in artifacts} | images
    with start_registry(tmp_path / "readback", storage_dir=storage) as reg:
        for ref, digest in wanted.items():
            repo, tag = ref.rsplit(":", 1)
            resp = requests.head(
                f"{reg.url}/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT}, timeout=10
            )
            assert resp.status_code == 200, ref
            assert resp.headers["Docker-Content-Digest"] == digest, ref


def test_demo_spec_sends_every_image_host_to_the_lab() -> None:
    """bundles/demo.yaml maps the hosts the demo's packs name to its source registry."""
    ups = demo.spec_upstreams(["--preset", demo.PRESET])
    lab = f"http://127.0.0.1:{demolab.DEFAULT_PORT}"
    assert ups and all(url == f"{lab}/{host}" for host, url in ups.items()), ups
    demolab.check_upstreams([parse_reference(r) for r in sorted(GENERATED_IMAGES)], ups)


@pytest.mark.parametrize(
    ("ref", "ups", "expect"),
    [
        ("gcr.io/x/y:1", {}, "no upstreams entry for gcr.io"),
        ("gcr.io/x/y:1", {"gcr.io": "https://gcr.io/"}, "not on loopback"),
        ("gcr.io/x/y@sha256:" + "0" * 64, {"gcr.io": "http://127.0.0.1:1/gcr.io"}, "pins"),
    ],
)
def test_demo_refuses_an_image_it_would_fetch_from_outside(
    ref: str, ups: dict[str, str], expect: str
) -> None:
    with pytest.raises(demolab.DemoError, match=expect):
        demolab.check_upstreams([parse_reference(ref)], ups)


# ---------------------------------------------------------------- the demo's own errors


def test_demo_without_docker_registry(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MIRROR_DOCKER_REGISTRY", str(tmp_path / "nothing-here"))
    assert demo.main(["--out", str(tmp_path / "out")]) == 1
    line = _one_line(capsys.readouterr().err)
    assert "apt-get install docker-registry" in line and "make demo" in line
    assert not (tmp_path / "out").exists()


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_demo_port_taken(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    taken_port: int,
) -> None:
    _need_registry()
    monkeypatch.setenv(demolab.PORT_ENV, str(taken_port))
    assert demo.main(["--out", str(tmp_path / "out")]) == 1
    line = _one_line(capsys.readouterr().err)
    assert f"port {taken_port}" in line and demolab.PORT_ENV in line
    assert not (tmp_path / "out").exists()


def test_demo_bad_port_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _need_registry()
    monkeypatch.setenv(demolab.PORT_ENV, "eighty")
    assert demo.main(["--out", str(tmp_path / "out")]) == 1
    assert demolab.PORT_ENV in _one_line(capsys.readouterr().err)


def test_demo_refuses_to_wipe_a_folder_it_did_not_make(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _need_registry()
    monkeypatch.setenv(demolab.PORT_ENV, str(_free_base()))
    precious = tmp_path / "out"
    precious.mkdir()
    (precious / "notes.txt").write_text("mine")
    assert demo.main(["--out", str(precious)]) == 1
    assert "not a demo folder" in _one_line(capsys.readouterr().err)
    assert (precious / "notes.txt").read_text() == "mine"


# ---------------------------------------------------------------- the CLI's, as they are


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(args)
    return code, _one_line(capsys.readouterr().err)


def test_no_key_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MIRROR_KEY_PASSWORD", raising=False)
    code, line = _cli(["keygen", "--output-dir", str(tmp_path)], capsys)
    assert code == 2 and "MIRROR_KEY_PASSWORD" in line
    assert not (tmp_path / "mirror.key").exists()
    monkeypatch.setenv("MIRROR_KEY_PASSWORD", "pw")
    assert main(["keygen", "--output-dir", str(tmp_path)]) == 0
    monkeypatch.delenv("MIRROR_KEY_PASSWORD")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: x\nregistries:\n  - name: r\n    kind: oci\n    url: http://127.0.0.1:9\n"
    )
    args = ["export", str(spec), "--key", str(tmp_path / "mirror.key"), "-o", str(tmp_path / "b")]
    code, line = _cli(args, capsys)
    assert code == 2 and "MIRROR_KEY_PASSWORD" in line


@pytest.mark.parametrize(
    ("body", "expect"),
    [
        ("  - name: r\n    kind: ocii\n    url: http://h\n", "/registries/0/kind: 'ocii'"),
        ("  - name: r\n    kind: oci\n    url: http://h\n    basepath: x\n", "'basepath'"),
        ("  - name: Palette Registy\n", "unknown registry 'Palette Registy'"),
        ("  - name: r\n   kind: oci\n", "line 4"),
    ],
)
def test_spec_typo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, expect: str
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: x\nregistries:\n" + body)
    code, line = _cli(["export", str(spec), "-o", str(tmp_path / "b.tar.zst")], capsys)
    assert code == 2
    assert line.startswith(f"mirror: error: {spec}") and expect in line


def test_preset_typo_lists_the_presets(capsys: pytest.CaptureFixture[str]) -> None:
    code, line = _cli(["export", "--preset", "palete-default", "-o", "x.tar.zst"], capsys)
    assert code == 2 and "palette-default" in line and "demo" in line


@pytest.mark.parametrize("command", ["verify", "inspect", "import"])
def test_bundle_path_that_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    missing = tmp_path / "nope.tar.zst"
    extra = ["--target", "http://127.0.0.1:9"] if command == "import" else []
    code, line = _cli([command, str(missing), *extra], capsys)
    assert code == 2 and f"{missing}: no such bundle" in line


@pytest.fixture(scope="module")
def lab_bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    """A running lab registry and a small signed bundle of it: (url, bundle, public key)."""
    from mirror.lab.seed import client_for, seed_many, standard_items

    _need_registry()
    work = tmp_path_factory.mktemp("bundle")
    with start_registry(work / "lab") as reg:
        client = client_for(reg)
        seed_many(client, standard_items("production")[:1])
        client.close()
        spec = work / "spec.yaml"
        spec.write_text(f"registries:\n  - name: Palette Registry\n    url: {reg.url}\n")
        env = os.environ.get("MIRROR_KEY_PASSWORD")
        os.environ["MIRROR_KEY_PASSWORD"] = "pw"
        try:
            assert main(["keygen", "--output-dir", str(work)]) == 0
            out = work / "b.tar.zst"
            args = ["export", str(spec), "--key", str(work / "mirror.key"), "-o", str(out)]
            assert main([*args, "--cache-dir", str(work / "cache")]) == 0
        finally:
            if env is None:
                os.environ.pop("MIRROR_KEY_PASSWORD")
            else:
                os.environ["MIRROR_KEY_PASSWORD"] = env
        yield reg.url, out, work / "mirror.pub"


@pytest.fixture
def signed_bundle(lab_bundle: tuple[str, Path, Path]) -> tuple[Path, Path]:
    return lab_bundle[1], lab_bundle[2]


def test_target_that_is_not_a_registry(
    signed_bundle: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle, pub = signed_bundle
    catalog = tmp_path / "catalog.json"
    with serve_directory(tmp_path) as url:
        args = [
            "import",
            str(bundle),
            "--target",
            url,
            "--key",
            str(pub),
            "--catalog",
            str(catalog),
        ]
        code, line = _cli(args, capsys)
    assert code == 1 and "not an OCI registry" in line
    assert not catalog.exists()


def test_target_that_is_not_listening(
    signed_bundle: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle, pub = signed_bundle
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = ["import", str(bundle), "--target", f"http://127.0.0.1:{port}", "--key", str(pub)]
    code, line = _cli([*args, "--catalog", str(tmp_path / "c.json")], capsys)
    assert code == 1 and f"cannot reach 127.0.0.1:{port}" in line


def test_plain_http_target_without_scheme_says_http(
    signed_bundle: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle, pub = signed_bundle
    with serve_directory(tmp_path) as url:
        host = url.split("://", 1)[1]
        args = ["import", str(bundle), "--target", host, "--key", str(pub)]
        code, line = _cli([*args, "--catalog", str(tmp_path / "c.json")], capsys)
    assert code == 1
    assert line.endswith(f"{host} does not speak TLS; use http://{host} for a plain-HTTP registry")
    assert not (tmp_path / "c.json").exists()


def test_export_into_a_missing_directory(
    lab_bundle: tuple[str, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Either make the folder, or say so in one line before anything is fetched."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"registries:\n  - name: Palette Registry\n    url: {lab_bundle[0]}\n")
    out = tmp_path / "no" / "such" / "b.tar.zst"
    capsys.readouterr()
    code = main(["export", str(spec), "-o", str(out), "--cache-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err
    if code == 0:
        assert out.is_file()
    else:
        line = _one_line(err)
        assert code == 2 and ".tmp" not in line and str(out.parent) in line
