"""Packs through the whole path: constraints, FIPS selections, round trips byte for byte."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import require_registry
from faultproxy import Reg

from mirror.bundle.reader import BundleReader
from mirror.cli import main
from mirror.formats.pack import build_pack_archive, pack_artifact
from mirror.lab.registry import LabRegistry, running_registry
from mirror.lab.seed import seed_artifact
from mirror.registry.client import RegistryClient


def _pack_dir(root: Path, name: str, version: str, deps: list[dict[str, str]]) -> Path:
    d = root / f"{name}-{version}"
    d.mkdir(parents=True)
    doc = {
        "name": name,
        "displayName": name.title(),
        "version": version,
        "layer": "addon",
        "addonType": "system app",
        "cloudTypes": ["all"],
        "constraints": {"dependencies": deps},
    }
    (d / "pack.json").write_text(json.dumps(doc))
    (d / "values.yaml").write_text(f"pack:\n  name: {name}\n")
    return d


def _push_pack(client: RegistryClient, base: str, folder: Path) -> str:
    filename, data = build_pack_archive(folder)
    art = pack_artifact(data, filename)
    name, version = folder.name.rsplit("-", 1)
    return seed_artifact(
        client, f"{base}/spectro-packs/archive/{name}", version, art, "pack"
    ).digest


@pytest.fixture(scope="module")
def pack_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRegistry]:
    """`app` requires `base >= 1.1.0`; three `base` versions; one FIPS pack."""
    require_registry()
    with running_registry(tmp_path_factory.mktemp("lab")) as reg:
        client = RegistryClient(reg.url)
        root = tmp_path_factory.mktemp("packs")
        need = {"packName": "base", "layer": "addon", "minVersion": "1.1.0", "type": "required"}
        _push_pack(client, "production", _pack_dir(root, "app", "2.0.0", [need]))
        for v in ("1.0.0", "1.1.0", "1.2.0"):
            _push_pack(client, "production", _pack_dir(root, "base", v, []))
        _push_pack(client, "production-fips", _pack_dir(root, "secure", "1.0.0", []))
        yield reg


def _spec(tmp_path: Path, reg: LabRegistry, **extra: object) -> Path:
    doc = {
        "name": "packs",
        "registries": [
            {
                "name": "Lab",
                "kind": "oci",
                "url": reg.url,
                "basePath": "production",
                "providerType": "pack",
                "repositories": ["spectro-packs/archive/app"],
            }
        ],
        **extra,
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_dry_run_warns_about_a_missing_required_pack(
    tmp_path: Path, pack_registry: LabRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(tmp_path, pack_registry)
    code = main(["export", str(spec), "--dry-run", "--cache-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 0
    assert "app:2.0.0" in err and "base >=1.1.0" in err and "base:1.2.0" in err


def test_with_dependencies_adds_the_newest_fitting_pack(
    tmp_path: Path, pack_registry: LabRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(tmp_path, pack_registry)
    out = tmp_path / "b.tar.zst"
    args = ["export", str(spec), "-o", str(out), "--cache-dir", str(tmp_path / "c")]
    assert main([*args, "--with-dependencies", "--json"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    refs = sorted(f"{a['repository']}:{a['tag']}" for a in doc["artifacts"])
    assert refs == ["spectro-packs/archive/app:2.0.0", "spectro-packs/archive/base:1.2.0"]
    manifest = json.loads(BundleReader(out).head()[0])
    shown = {a["repository"]: a["pack"] for a in doc["artifacts"]}
    packs = {a["repository"]: a.get("pack") for a in manifest["artifacts"]}
    assert shown == packs
    assert main(["inspect", str(out)]) == 0
    assert "pack App 2.0.0 layer=addon clouds=all" in capsys.readouterr().out
    assert packs["spectro-packs/archive/app"] == {
        "name": "app",
        "version": "2.0.0",
        "layer": "addon",
        "cloudTypes": ["all"],
        "displayName": "App",
    }


def _fips_spec(tmp_path: Path, reg: LabRegistry, with_plain: bool) -> Path:
    regs = [
        {
            "name": "Lab FIPS",
            "kind": "oci",
            "url": reg.url,
            "basePath": "production-fips",
            "providerType": "pack",
            "fips": True,
        }
    ]
    if with_plain:
        regs.append(
            {
                "name": "Lab",
                "kind": "oci",
                "url": reg.url,
                "basePath": "production",
                "providerType": "pack",
                "repositories": ["spectro-packs/archive/base"],
            }
        )
    path = tmp_path / "fips.yaml"
    path.write_text(yaml.safe_dump({"name": "vx", "fips": True, "registries": regs}))
    return path


def test_fips_selection_refuses_non_fips_without_the_flag(
    tmp_path: Path, pack_registry: LabRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _fips_spec(tmp_path, pack_registry, with_plain=True)
    assert main(["export", str(spec), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--allow-non-fips" in err[0] and "Lab" in err[0]


def test_fips_bundle_round_trip_and_verify_fips(
    tmp_path: Path,
    pack_registry: LabRegistry,
    registry_factory: object,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import subprocess

    key = tmp_path / "k.key"
    subprocess.run(
        [
            "openssl",
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            str(key),
        ],
        check=True,
    )
    pub = tmp_path / "k.pub"
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)], check=True)
    cache = str(tmp_path / "c")
    pure, mixed = tmp_path / "pure.tar.zst", tmp_path / "mixed.tar.zst"
    spec = _fips_spec(tmp_path, pack_registry, with_plain=False)
    assert (
        main(["export", str(spec), "-o", str(pure), "--key", str(key), "--cache-dir", cache]) == 0
    )
    spec = _fips_spec(tmp_path, pack_registry, with_plain=True)
    args = ["export", str(spec), "--allow-non-fips", "-o", str(mixed), "--key", str(key)]
    assert main([*args, "--cache-dir", cache]) == 0
    capsys.readouterr()
    assert main(["verify", str(pure), "--key", str(pub), "--fips"]) == 0
    assert main(["verify", str(mixed), "--key", str(pub)]) == 0
    assert main(["verify", str(mixed), "--key", str(pub), "--fips"]) == 3
    assert "FIPS" in capsys.readouterr().err
    assert main(["inspect", str(mixed)]) == 0
    assert "non-FIPS" in capsys.readouterr().out
    target: LabRegistry = registry_factory()  # type: ignore[operator]
    catalog = tmp_path / "cat.json"
    imp = ["import", str(mixed), "--target", target.url, "--key", str(pub)]
    assert main([*imp, "--catalog", str(catalog), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["registered"]
    assert sorted((r["name"], r["fips"], r["baseContentPath"]) for r in rows) == [
        ("Lab", False, "production"),
        ("Lab FIPS", True, "production-fips"),
    ]
    client = RegistryClient(target.url)
    src = RegistryClient(pack_registry.url)
    for repo, tag in [("production-fips/spectro-packs/archive/secure", "1.0.0")]:
        assert client.get_manifest(repo, tag)[1] == src.get_manifest(repo, tag)[1]
    monkeypatch.setenv("MIRROR_KEY_PASSWORD", "unused")
    empty: LabRegistry = registry_factory()  # type: ignore[operator]
    capsys.readouterr()
    fresh = ["import", str(mixed), "--target", empty.url, "--key", str(pub), "--fips"]
    assert main([*fresh, "--catalog", str(tmp_path / "fresh.json")]) == 3
    assert capsys.readouterr().err == (
        "mirror: error: spectro-packs/archive/base:1.0.0: not FIPS content (registry Lab)\n"
    )
    assert Reg(empty.url).catalog() == []  # refused before the first byte moved
    assert not (tmp_path / "fresh.json").exists()


def test_fips_export_refuses_a_scrypt_protected_key(
    tmp_path: Path,
    pack_registry: LabRegistry,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MIRROR_KEY_PASSWORD", "pw")
    assert main(["keygen", "--output-dir", str(tmp_path), "--name", "cosign"]) == 0
    spec = _fips_spec(tmp_path, pack_registry, with_plain=False)
    out = tmp_path / "b.tar.zst"
    capsys.readouterr()
    assert main(["export", str(spec), "-o", str(out), "--key", str(tmp_path / "cosign.key")]) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "openssl genpkey" in err
    assert not out.exists()


def test_images_with_dependencies_lists_what_export_with_dependencies_carries(
    tmp_path: Path, pack_registry: LabRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mirror images --with-dependencies`: the images of the packs export would add too,
    so the list a reviewer reads before the export matches what it carries."""
    client = RegistryClient(pack_registry.url)
    need = {"packName": "lib", "layer": "addon", "minVersion": "1.0.0", "type": "required"}
    for name, version, deps, image in [
        ("web", "1.0.0", [need], "registry.example/web:1.0"),
        ("lib", "1.0.0", [], "registry.example/lib:1.0"),
    ]:
        folder = _pack_dir(tmp_path / "src", name, version, deps)
        values = f"pack:\n  name: {name}\n  content:\n    images:\n      - image: {image}\n"
        (folder / "values.yaml").write_text(values)
        _push_pack(client, "withimages", folder)
    doc = {
        "name": "web",
        "registries": [
            {"name": "Lab", "kind": "oci", "url": pack_registry.url, "basePath": "withimages",
             "providerType": "pack", "repositories": ["spectro-packs/archive/web"]},
        ],
    }  # fmt: skip
    spec = tmp_path / "web.yaml"
    spec.write_text(yaml.safe_dump(doc))
    args = ["images", str(spec), "--json", "--cache-dir", str(tmp_path / "c")]
    assert main(args) == 0
    assert [r["ref"] for r in json.loads(capsys.readouterr().out)] == ["registry.example/web:1.0"]
    assert main([*args, "--with-dependencies"]) == 0
    rows = {r["ref"]: r["neededBy"] for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"registry.example/web:1.0", "registry.example/lib:1.0"}
    assert any("lib" in who for who in rows["registry.example/lib:1.0"])
    assert list((tmp_path / "c" / "blobs" / "sha256").iterdir())  # --cache-dir was the cache
