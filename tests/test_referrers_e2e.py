"""Signatures and referrers travel with every manifest (issue 13), on real registries.

Distribution 2.8 has no referrers API, so referrers live in the referrers tag schema's
`sha256-H` index, as `oras attach` leaves them; cosign's signatures are `sha256-H.sig`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from faultproxy import FaultProxy, Reg, mirror, write_spec

from mirror.bundle.manifest import parse_manifest
from mirror.bundle.reader import BundleReader
from mirror.formats import cosign
from mirror.keys import generate_keypair, load_private_key
from mirror.lab.content import make_image, make_layer, multiarch
from mirror.lab.cosign import seed_bundle, seed_referrer, seed_signature
from mirror.lab.registry import LabRegistry, start_registry
from mirror.lab.seed import client_for, seed_artifact
from mirror.oci import mediatypes as mt
from mirror.oci.descriptor import Descriptor

SBOM = "application/vnd.example.sbom+json"


def _sig_tag(digest: str, suffix: str = ".sig") -> str:
    return "sha256-" + digest.split(":", 1)[1] + suffix


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Any:
    work = tmp_path_factory.mktemp("refs")
    key_path, _ = generate_keypair(work, "signer", b"pw")
    key = load_private_key(key_path, b"pw")
    src = start_registry(work / "src", flavour="anon")
    try:
        c = client_for(src)
        app = seed_artifact(
            c, "production/images/app", "1.0", make_image("app", layers=[make_layer("app", 4096)])
        )
        sig = seed_signature(c, "production/images/app", app.digest, key)
        att = seed_signature(c, "production/images/app", app.digest, key, suffix=".att")
        sbom = seed_referrer(
            c,
            "production/images/app",
            Descriptor(mt.OCI_MANIFEST, app.digest, 0),
            SBOM,
            b'{"sbom":1}',
        )
        sbom_sig = seed_signature(c, "production/images/app", sbom.digest, key)  # a companion's
        sig_att = seed_signature(c, "production/images/app", sig.digest, key, suffix=".att")
        art = multiarch("multi")
        multi = seed_artifact(c, "production/images/multi", "1.0", art)
        child = json.loads(art.manifest)["manifests"][1]["digest"]
        child_sig = seed_signature(c, "production/images/multi", child, key)  # on a child only
        other_path, _ = generate_keypair(work, "other", b"pw")
        other = load_private_key(other_path, b"pw")
        for name, kwargs in (
            ("tampered", {"tamper": True}),
            ("elsewhere", {"claims": "sha256:" + "0" * 64}),
            ("otherkey", {}),
        ):
            img = make_image(name, layers=[make_layer(name, 2048)])
            seeded_img = seed_artifact(c, f"production/images/{name}", "1.0", img)
            signer = other if name == "otherkey" else key
            seed_signature(c, f"production/images/{name}", seeded_img.digest, signer, **kwargs)
        _seed_bundles(c, key, other)
        _seed_upstream_images(c, key)
        c.close()
        seeded = {"app": app, "sig": sig, "att": att, "sbom": sbom, "sbom_sig": sbom_sig,
                  "sig_att": sig_att, "multi": multi, "child": child,
                  "child_sig": child_sig}  # fmt: skip
        yield {"src": src, "work": work, "key": key, "seeded": seeded}
    finally:
        src.stop()


def _seed_bundles(c: Any, key: Any, other: Any) -> None:
    """Images signed only the cosign 3 way, by a sigstore bundle referrer, and a keyless `.sig`."""
    for name, signer, kwargs in (
        ("bundled", key, {}),  # a message signature over the manifest's digest
        ("dsse", key, {"dsse": True}),  # an in-toto statement in a DSSE envelope
        ("bundleother", other, {"dsse": True}),
        ("bundleelsewhere", key, {"claims": "sha256:" + "0" * 64}),
        ("keyless", key, {"keyless": True}),
    ):
        img = make_image(name, layers=[make_layer(name, 1024)])
        seeded = seed_artifact(c, f"production/images/{name}", "1.0", img)
        subject = Descriptor(mt.OCI_MANIFEST, seeded.digest, len(img.manifest))
        seed_bundle(c, f"production/images/{name}", subject, signer, **kwargs)
    img = make_image("keylesssig", layers=[make_layer("keylesssig", 1024)])
    seeded = seed_artifact(c, "production/images/keylesssig", "1.0", img)
    seed_signature(c, "production/images/keylesssig", seeded.digest, key, keyless=True)


def _seed_upstream_images(c: Any, key: Any) -> None:
    """Images of the closure, upstream at "ghcr.io": signed by `.sig`, by a bundle, tampered,
    and not signed at all."""
    for name in ("signed", "bundled", "tampered", "unsigned"):
        repo = f"ghcr.io/acme/{name}"
        img = make_image(f"up-{name}", layers=[make_layer(f"up-{name}", 1024)])
        seeded = seed_artifact(c, repo, "1.0", img)
        if name == "bundled":
            subject = Descriptor(mt.OCI_MANIFEST, seeded.digest, len(img.manifest))
            seed_bundle(c, repo, subject, key, dsse=True)
        elif name != "unsigned":
            seed_signature(c, repo, seeded.digest, key, tamper=name == "tampered")


def _export(lab: Any, tmp: Path, *more: str) -> tuple[Path, Any]:
    # A tag filter that a `sha256-...` tag never matches: the companions travel anyway.
    spec = write_spec(
        tmp / "s.yaml", lab["src"].url, repositories=["images/app", "images/multi"],
        extra=", tags: {include: ['^1\\.']}",
    )  # fmt: skip
    out = tmp / "b.tar.zst"
    run = mirror("export", spec, "-o", out, "--cache-dir", tmp / "cache", "--json", *more)
    assert run.rc == 0, run.err
    return out, run.json()


def test_signatures_sboms_and_attestations_travel_whatever_the_tag_filter(
    lab: Any, tmp_path: Path
) -> None:
    s = lab["seeded"]
    bundle, doc = _export(lab, tmp_path)
    manifest = parse_manifest(BundleReader(bundle).head()[0])
    by_digest = {r.digest: r for r in manifest.referrers}
    assert by_digest[s["sig"].digest].tag == _sig_tag(s["app"].digest)
    assert by_digest[s["att"].digest].tag == _sig_tag(s["app"].digest, ".att")
    sbom = by_digest[s["sbom"].digest]
    assert sbom.tag is None and sbom.artifact_type == SBOM and sbom.subject == s["app"].digest
    assert by_digest[s["sbom_sig"].digest].subject == s["sbom"].digest  # a companion's own
    sig_att = by_digest[s["sig_att"].digest]  # an attestation on a signature
    assert sig_att.subject == s["sig"].digest and sig_att.tag == _sig_tag(s["sig"].digest, ".att")
    child = by_digest[s["child_sig"].digest]
    assert child.subject == s["child"] and child.owner == "production/images/multi:1.0"
    assert {a.tag for a in manifest.artifacts} == {"1.0"}  # no companion is an artifact
    assert doc["referrers"] == len(manifest.referrers) == 6
    assert mirror("verify", bundle, "--allow-unsigned").rc == 0


def test_no_referrers_leaves_them_behind_and_says_so(lab: Any, tmp_path: Path) -> None:
    bundle, doc = _export(lab, tmp_path, "--no-referrers")
    manifest = parse_manifest(BundleReader(bundle).head()[0])
    assert manifest.referrers == () and manifest.no_referrers and doc["referrers"] == 0


def test_import_lands_them_beside_their_subjects_and_merges_the_fallback_index(
    lab: Any, tmp_path: Path, registry: LabRegistry
) -> None:
    s = lab["seeded"]
    bundle, _ = _export(lab, tmp_path)
    # The target already lists an older referrer of app: it must survive the import.
    c = client_for(registry)
    subject = Descriptor(mt.OCI_MANIFEST, s["app"].digest, 0)
    seed_artifact(c, "production/images/app", "1.0", _app_copy(lab))
    old = seed_referrer(c, "production/images/app", subject, "application/x-old", b"old")
    c.close()
    base = ["--target", registry.url, "--allow-unsigned", "--catalog", tmp_path / "cat.json"]
    run = mirror("import", bundle, *base)
    assert run.rc == 0, run.err
    reg = Reg(registry.url)
    assert reg.digest("production/images/app", _sig_tag(s["app"].digest)) == s["sig"].digest
    assert reg.digest("production/images/app", _sig_tag(s["app"].digest, ".att")) == s["att"].digest
    assert reg.digest("production/images/multi", _sig_tag(s["child"])) == s["child_sig"].digest
    assert reg.digest("production/images/app", _sig_tag(s["sbom"].digest)) == s["sbom_sig"].digest
    assert (
        reg.digest("production/images/app", _sig_tag(s["sig"].digest, ".att"))
        == s["sig_att"].digest
    )
    got = reg.manifest("production/images/app", _sig_tag(s["app"].digest, ""))
    assert got is not None
    listed = {m["digest"]: m for m in json.loads(got[2])["manifests"]}
    assert set(listed) == {old.digest, s["sbom"].digest}  # merged, never overwritten
    assert listed[s["sbom"].digest]["artifactType"] == SBOM
    assert reg.dangling() == []
    again = mirror("import", bundle, *base, "--json")
    assert again.rc == 0 and again.json()["pushedBlobs"] == 0  # a re-import pushes nothing


def _app_copy(lab: Any) -> Any:
    return make_image("app", layers=[make_layer("app", 4096)])


def test_cosign_payload_names_the_digest() -> None:
    data = cosign.payload("r", "sha256:" + "a" * 64)
    assert cosign.signed_digest(data) == "sha256:" + "a" * 64
    assert cosign.subject_of_tag("sha256-" + "b" * 64 + ".sig") == ("sha256:" + "b" * 64, ".sig")
    assert cosign.subject_of_tag("1.0") is None


def _policed(lab: Any, tmp: Path, repos: list[str]) -> tuple[Path, Any]:
    spec = write_spec(
        tmp / "s.yaml", lab["src"].url, repositories=repos,
        extra=f", cosignKey: {lab['work'] / 'signer.pub'}",
    )  # fmt: skip
    out = tmp / "out" / "b.tar.zst"
    out.parent.mkdir(exist_ok=True)
    return out, mirror("export", spec, "-o", out, "--cache-dir", tmp / "cache", "--json")


def test_cosign_key_policy_records_who_signed_and_verify_checks_it_again(
    lab: Any, tmp_path: Path
) -> None:
    from mirror.keys import fingerprint, load_public_key

    out, run = _policed(lab, tmp_path, ["images/app"])
    assert run.rc == 0, run.err
    manifest = parse_manifest(BundleReader(out).head()[0])
    fp = fingerprint(load_public_key(lab["work"] / "signer.pub"))
    (app,) = manifest.artifacts
    assert app.signed_by == fp and dict(manifest.cosign_keys)[fp].startswith("-----BEGIN")
    assert mirror("verify", out, "--allow-unsigned").rc == 0
    inspected = mirror("inspect", out, "--format", "markdown")
    assert fp in inspected.out


@pytest.mark.parametrize(
    ("repo", "why"),
    [
        ("images/multi", "no cosign signature"),  # only a child of the index is signed
        ("images/tampered", "does not verify"),
        ("images/elsewhere", "a signature for sha256:0000"),
        ("images/otherkey", "does not verify"),
        ("images/bundleother", "does not verify"),  # a sigstore bundle by another key
        ("images/bundleelsewhere", "a signature for sha256:0000"),
        ("images/keyless", "keyless verification (Fulcio certificate, Rekor) is out of reach"),
        ("images/keylesssig", "keyless verification (Fulcio certificate, Rekor) is out of reach"),
    ],
)
def test_cosign_key_policy_refuses_what_it_must(
    repo: str, why: str, lab: Any, tmp_path: Path
) -> None:
    out, run = _policed(lab, tmp_path, [repo])
    assert run.rc == 3, run.err
    line = run.error_line()
    assert f"production/{repo}:1.0" in line and why in line
    assert list(out.parent.iterdir()) == []


def test_cosign_key_with_no_referrers_is_a_usage_error(lab: Any, tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path / "s.yaml", lab["src"].url, repositories=["images/app"],
        extra=f", cosignKey: {lab['work'] / 'signer.pub'}",
    )  # fmt: skip
    run = mirror("export", spec, "-o", tmp_path / "b.tar.zst", "--no-referrers")
    assert run.rc == 2 and "--no-referrers" in run.error_line()


def test_verifying_md_checks_one_image_signature_with_openssl(lab: Any, tmp_path: Path) -> None:
    """docs/VERIFYING.md's appendix, run verbatim on a real bundle: openssl says Verified OK."""
    import re
    import shutil
    import subprocess

    doc = (Path(__file__).resolve().parents[1] / "docs" / "VERIFYING.md").read_text()
    (block,) = re.findall(r"```shell\n(.*?)```", doc, flags=re.S)
    bundle, _ = _export(lab, tmp_path)
    work = tmp_path / "work"
    (work / "x").mkdir(parents=True)
    subprocess.run(f'zstd -dc "{bundle}" | tar -xf - -C "{work}/x"', shell=True, check=True)
    shutil.copy(lab["work"] / "signer.pub", tmp_path / "publisher.pub")
    script = block.replace("SUBJECT=sha256:...", f"SUBJECT={lab['seeded']['app'].digest}")
    env = {**os.environ, "WORK": str(work)}
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True,
        text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "Verified OK" in run.stdout and lab["seeded"]["app"].digest in run.stdout


def test_a_dry_run_counts_the_signatures_of_packs_too(lab: Any, tmp_path: Path) -> None:
    """A dry run keeps pack layers in memory (a wrapper around the registry store); the
    companion round must see through it to the registry, or a pack's signature is left out
    of the plan that the real export then carries."""
    from mirror.formats.pack import build_pack_archive, pack_artifact

    folder = tmp_path / "web-1.0.0"
    folder.mkdir()
    (folder / "pack.json").write_text(json.dumps({"name": "web", "version": "1.0.0"}))
    (folder / "values.yaml").write_text("pack:\n  content:\n    images: []\n")
    src = start_registry(tmp_path / "reg", flavour="anon")
    try:
        c = client_for(src)
        pack = seed_artifact(c, "production/packs/web", "1.0.0", pack_artifact(
            *reversed(build_pack_archive(folder))
        ))  # fmt: skip
        seed_signature(c, "production/packs/web", pack.digest, lab["key"])
        c.close()
        spec = write_spec(tmp_path / "s.yaml", src.url, repositories=["packs/web"])
        plans = []
        for more in (["--dry-run"], []):
            run = mirror("export", spec, "-o", tmp_path / "b.tar.zst", "--cache-dir",
                         tmp_path / "cache", "--json", *more)  # fmt: skip
            assert run.rc == 0, run.err
            plans.append(run.json()["referrers"])
        assert plans == [1, 1]  # the plan says what the export then carries
    finally:
        src.stop()


@pytest.mark.parametrize("repo", ["images/bundled", "images/dsse"])
def test_cosign_key_policy_accepts_a_sigstore_bundle_referrer(
    repo: str, lab: Any, tmp_path: Path
) -> None:
    """cosign 3's form: the only signature is a bundle referrer (message or DSSE)."""
    from mirror.keys import fingerprint, load_public_key

    out, run = _policed(lab, tmp_path, [repo])
    assert run.rc == 0, run.err
    manifest = parse_manifest(BundleReader(out).head()[0])
    (artifact,) = manifest.artifacts
    assert artifact.signed_by == fingerprint(load_public_key(lab["work"] / "signer.pub"))
    (bundle,) = manifest.referrers
    assert bundle.tag is None and bundle.artifact_type == cosign.SIGSTORE_BUNDLE
    assert bundle.subject == artifact.digest
    assert mirror("verify", out, "--allow-unsigned").rc == 0  # checked again, offline


def _images_spec(lab: Any, tmp: Path, images: list[str]) -> tuple[Path, Any]:
    """A spec whose `images:` are policed by `imagesCosignKey` (beside an unpoliced registry)."""
    spec = write_spec(tmp / "s.yaml", lab["src"].url, repositories=["images/app"])
    with spec.open("a") as f:
        f.write(f"images: {json.dumps(images)}\nimagesFrom: []\n")
        f.write(f"imagesCosignKey: {lab['work'] / 'signer.pub'}\n")
    out = tmp / "out" / "b.tar.zst"
    out.parent.mkdir(exist_ok=True)
    return out, mirror("export", spec, "-o", out, "--cache-dir", tmp / "cache", "--json")


def test_images_cosign_key_accepts_signed_images_and_records_the_signer(
    lab: Any, tmp_path: Path
) -> None:
    from mirror.keys import fingerprint, load_public_key

    refs = ["ghcr.io/acme/signed:1.0", "ghcr.io/acme/bundled:1.0"]
    out, run = _images_spec(lab, tmp_path, refs)
    assert run.rc == 0, run.err
    fp = fingerprint(load_public_key(lab["work"] / "signer.pub"))
    manifest = parse_manifest(BundleReader(out).head()[0])
    assert {i.ref: i.signed_by for i in manifest.images} == {r: fp for r in refs}
    assert dict(manifest.cosign_keys)[fp].startswith("-----BEGIN")
    (app,) = manifest.artifacts
    assert app.signed_by is None  # its registry is not policed
    assert {r["ref"]: r.get("signedBy") for r in run.json()["images"]} == {r: fp for r in refs}
    assert mirror("verify", out, "--allow-unsigned").rc == 0
    shown = mirror("inspect", out, "--format", "markdown").out
    assert f"signed by `{fp}`, checked at export" in shown.split("ghcr.io/acme/signed")[1]


@pytest.mark.parametrize(
    ("image", "why"),
    [
        ("ghcr.io/acme/unsigned:1.0", "no cosign signature"),
        ("ghcr.io/acme/tampered:1.0", "does not verify"),
    ],
)
def test_images_cosign_key_refuses_what_it_must(
    image: str, why: str, lab: Any, tmp_path: Path
) -> None:
    out, run = _images_spec(lab, tmp_path, ["ghcr.io/acme/signed:1.0", image])
    assert run.rc == 3, run.err
    line = run.error_line()
    assert f"image {image}" in line and why in line
    assert list(out.parent.iterdir()) == []


def test_images_cosign_key_with_no_referrers_is_a_usage_error(lab: Any, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "s.yaml", lab["src"].url, repositories=["images/app"])
    with spec.open("a") as f:
        f.write(f"imagesCosignKey: {lab['work'] / 'signer.pub'}\n")
    run = mirror("export", spec, "-o", tmp_path / "b.tar.zst", "--no-referrers")
    assert run.rc == 2 and "imagesCosignKey" in run.error_line()


def test_verify_checks_the_recorded_image_signatures_again(lab: Any, tmp_path: Path) -> None:
    """A manifest that says an image was signed, without the signature beside it, fails."""
    import dataclasses

    from mirror.errors import VerificationError
    from mirror.sigpolicy import check_bundle
    from mirror.stores.bundle import BundleStore

    out, run = _images_spec(lab, tmp_path, ["ghcr.io/acme/signed:1.0"])
    assert run.rc == 0, run.err
    manifest = parse_manifest(BundleReader(out).head()[0])
    source = BundleStore.sealed(BundleReader(out), manifest)
    check_bundle(manifest, source)  # as recorded: it holds
    stripped = dataclasses.replace(manifest, referrers=())
    why = re.escape("image ghcr.io/acme/signed:1.0: no cosign")
    with pytest.raises(VerificationError, match=why):
        check_bundle(stripped, source)


def test_discovery_asks_a_registry_without_the_api_once_and_lists_tags_once(
    lab: Any, tmp_path: Path
) -> None:
    """Discovery's cost (bench goal: <= 10% of export time): on Distribution 2.8 the referrers
    API is asked once per registry, not once per manifest and worker, and each repository's
    tags are listed once, by selection; companions come from that same list."""
    with FaultProxy.running(lab["src"].url) as proxy:
        spec = write_spec(tmp_path / "s.yaml", proxy.url, repositories=["images/*"])
        out = tmp_path / "b.tar.zst"
        run = mirror("export", spec, "-o", out, "--cache-dir", tmp_path / "c", "-j", "8")
        assert run.rc == 0, run.err
        repos = {p.split("/tags/list")[0] for p in proxy.paths("GET", "/tags/list")}
        assert proxy.seen("GET", "/tags/list") == len(repos) >= 10
        assert proxy.seen("GET", "/referrers/") == 1
    manifest = parse_manifest(BundleReader(out).head()[0])
    assert len({r.subject for r in manifest.referrers}) >= 10  # discovery still found them
