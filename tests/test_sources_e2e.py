"""Helm repositories, pack folders and legacy pack registries, across the gap and back.

One bundle carries all three kinds of source; the far side gets OCI charts and OCI packs
at the contract's places, a static Helm repository, and one system-scope registry each.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml
from conftest import HelmRepo
from faultproxy import mirror

from mirror.cli import main
from mirror.formats.helm import chart_tag
from mirror.formats.pack import build_pack_archive, load_pack_dir
from mirror.lab.legacyserver import serve_legacy
from mirror.lab.registry import LabRegistry
from mirror.lab.seed import client_for, seed_many
from mirror.lab.upstream import lab_upstreams, pack_image_refs, upstream_items
from mirror.oci import mediatypes as mt
from mirror.registry.client import RegistryClient

PACKS = ["kubehunter-1.0.3", "permission-manager-1.0.0", "vast-block-2.6.5"]


@dataclass
class Sources:
    helm: HelmRepo
    packs: Path
    legacy_url: str


@pytest.fixture(scope="module")
def sources(
    helm_repo: HelmRepo, corpus: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sources]:
    root = tmp_path_factory.mktemp("packs")
    for name in PACKS:
        shutil.copytree(corpus / name, root / "folder" / name)
    shutil.copytree(corpus / PACKS[0], root / "legacy" / PACKS[0])
    with serve_legacy(root / "legacy", username="u", password="legacy-pw") as url:
        yield Sources(helm_repo, root / "folder", url)


def _spec(tmp_path: Path, src: Sources, upstream: LabRegistry) -> Path:
    """The three kinds of source; the packs' images come from `upstream`'s stand-ins."""
    client = client_for(upstream)
    try:
        seed_many(client, upstream_items(pack_image_refs(sorted(src.packs.iterdir()))))
    finally:
        client.close()
    doc = {
        "name": "mixed",
        "upstreams": lab_upstreams(upstream.url),
        "registries": [
            {"name": "Team Charts", "kind": "helm", "url": src.helm.url},
            {"name": "Local Packs", "kind": "pack", "path": str(src.packs)},
            {
                "name": "Old Packs",
                "kind": "pack",
                "url": src.legacy_url,
                "auth": {"usernameEnv": "LEGACY_USER", "passwordEnv": "LEGACY_PASS"},
            },
        ],
    }
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_helm_packs_and_legacy_round_trip(
    tmp_path: Path,
    sources: Sources,
    registry: LabRegistry,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LEGACY_USER", "u")
    monkeypatch.setenv("LEGACY_PASS", "legacy-pw")
    bundle = tmp_path / "b.tar.zst"
    spec = _spec(tmp_path, sources, registry)
    args = ["export", str(spec), "-o", str(bundle), "--cache-dir", str(tmp_path / "cache")]
    assert main([*args, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["artifacts"] == len(sources.helm.charts) + len(PACKS) + 1
    # vast-block lists two images, one a Docker Hub short name: both travel.
    assert {i["ref"] for i in summary["images"]} == {
        "cgr.dev/chainguard/wolfi-base:latest",
        "docker.io/vastdataorg/csi:v2.6.5",
    }
    assert "legacy-pw" not in json.dumps(summary)

    helm_dir = tmp_path / "helm"
    catalog = tmp_path / "catalog.json"
    imp = ["import", str(bundle), "--target", registry.url, "--allow-unsigned"]
    imp += ["--base-path", "edge", "--helm-repo-dir", str(helm_dir), "--catalog", str(catalog)]
    receipt = tmp_path / "receipt.json"
    assert main([*imp, "--json", "--receipt", str(receipt)]) == 0
    result = json.loads(capsys.readouterr().out)
    _check_receipt(receipt, result, registry)

    client = RegistryClient(registry.url)
    _check_charts(client, sources.helm, helm_dir)
    _check_packs(client, sources.packs)
    legacy = client.get_manifest("edge/old-packs/spectro-packs/archive/kubehunter", "1.0.3")[1]
    assert mt.OCI_LAYER_TAR.encode() in legacy
    registered = {r["name"]: r for r in result["registered"]}
    assert registered["Team Charts"]["baseContentPath"] == "edge/charts/team-charts"
    assert registered["Local Packs"]["baseContentPath"] == "edge/local-packs"
    assert registered["Old Packs"]["baseContentPath"] == "edge/old-packs"
    assert {r["kind"] for r in registered.values()} == {"oci"}
    assert "legacy-pw" not in catalog.read_text()

    assert main([*imp, "--json"]) == 0  # again: nothing moves, nothing duplicates
    again = json.loads(capsys.readouterr().out)
    assert again["pushedBlobs"] == 0
    assert len(json.loads(catalog.read_text())["registries"]) == 3


def _check_receipt(path: Path, result: dict[str, object], registry: LabRegistry) -> None:
    """Valid under its schema, and true: every blob it lists is on the target."""
    from mirror.formats.schema import schema_problem

    doc = json.loads(path.read_text())
    assert schema_problem("receipt.schema.json", doc) is None
    assert doc["bundleDigest"] == result["bundleDigest"]
    rows = [*result["artifacts"], *result["images"]]  # type: ignore[misc]
    assert len(doc["artifacts"]) == len(rows)
    client = RegistryClient(registry.url)
    for art in doc["artifacts"]:
        repo, _, tag = art["target"].split("/", 1)[1].rpartition(":")
        assert client.resolve(repo, tag).digest == art["digest"]  # type: ignore[union-attr]
        assert art["blobs"]
        for digest in art["blobs"]:  # blobs and child manifests both answer a blob HEAD
            head = requests.head(f"{registry.url}/v2/{repo}/blobs/{digest}", timeout=10)
            assert head.status_code == 200, (repo, digest)


def _check_charts(client: RegistryClient, helm: HelmRepo, helm_dir: Path) -> None:
    index = yaml.safe_load((helm_dir / "index.yaml").read_text())
    for tgz in helm.charts:
        name, version = _chart_name_version(helm, tgz)
        repo = f"edge/charts/team-charts/{name}"
        doc = json.loads(client.get_manifest(repo, chart_tag(version))[1])
        layer = next(x for x in doc["layers"] if x["mediaType"] == mt.HELM_CHART)
        assert layer["digest"] == "sha256:" + hashlib.sha256(tgz.read_bytes()).hexdigest()
        entry = next(e for e in index["entries"][name] if e["version"] == version)
        copied = helm_dir / entry["urls"][0]
        assert copied.read_bytes() == tgz.read_bytes()


def _chart_name_version(helm: HelmRepo, tgz: Path) -> tuple[str, str]:
    index = yaml.safe_load((helm.path / "index.yaml").read_text())
    for name, versions in index["entries"].items():
        for v in versions:
            if any(u.endswith(tgz.name) for u in v["urls"]):
                return name, str(v["version"])
    raise AssertionError(f"{tgz.name} not in the source index")


def _check_packs(client: RegistryClient, folder: Path) -> None:
    """Pulled back byte-identical: the pack archive on the target is the one built here."""
    for d in sorted(folder.iterdir()):
        info, _ = load_pack_dir(d)
        filename, data = build_pack_archive(d)
        repo = f"edge/local-packs/spectro-packs/archive/{info.name}"
        doc = json.loads(client.get_manifest(repo, info.version)[1])
        (layer,) = doc["layers"]
        assert layer["annotations"][mt.ANN_TITLE] == filename
        from mirror.oci.descriptor import Descriptor

        with client.open_blob(repo, Descriptor.from_json(layer)) as stream:
            assert stream.read() == data


def private_helm_export(tmp_path: Path, url: str, out: Path) -> list[str]:
    """`mirror export` of a spec with one Helm repository, "Private", at `url`."""
    spec = tmp_path / "s.yaml"
    registry = {"name": "Private", "kind": "helm", "url": url}
    spec.write_text(yaml.safe_dump({"name": "h", "registries": [registry]}))
    return ["export", str(spec), "-o", str(out), "--cache-dir", str(tmp_path / "c")]


def test_a_private_helm_repository_uses_docker_config_credentials(
    helm_repo: HelmRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One credential rule for every kind: a Helm repository whose credentials are only in
    docker's config.json (issue 12) exports; without them it is one line, exit 1."""
    import base64

    from mirror.lab.httpserver import serve_directory

    config = tmp_path / "docker"
    config.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    with serve_directory(helm_repo.path, basic=("helm-user", "helm-pw")) as url:
        out = tmp_path / "b.tar.zst"
        args = private_helm_export(tmp_path, url, out)
        assert main(args) == 1 and not out.exists()
        host = url.split("://", 1)[1]
        auth = base64.b64encode(b"helm-user:helm-pw").decode()
        (config / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
        assert main([*args, "--json"]) == 0
    assert out.is_file()


def test_a_private_helm_repository_uses_what_helm_repo_add_saved(
    helm_repo: HelmRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`helm repo add NAME URL --username --password` keeps them in Helm's repositories.yaml:
    the export finds them there for that URL only (not for another path on the same host),
    at $HELM_REPOSITORY_CONFIG when it is set. A wrong password there is a 401 that says
    where the credentials came from, and never prints them."""
    from mirror.lab.httpserver import serve_directory

    def helm_repo_add(path: Path, url: str, password: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"name": "private", "url": url, "username": "helm-user", "password": password}
        path.write_text(yaml.safe_dump({"apiVersion": "", "repositories": [entry]}))

    default = Path(os.environ["XDG_CONFIG_HOME"]) / "helm" / "repositories.yaml"
    with serve_directory(helm_repo.path, basic=("helm-user", "helm-pw")) as url:
        out = tmp_path / "b.tar.zst"
        args = private_helm_export(tmp_path, url, out)
        helm_repo_add(default, f"{url}/other", "helm-pw")
        assert main(args) == 1 and not out.exists()
        helm_repo_add(default, url + "/", "wrong-pw")
        run = mirror(*args)
        assert run.rc == 1 and "401" in run.err and "Helm's repositories.yaml" in run.err
        assert "wrong-pw" not in run.out + run.err and not out.exists()
        chosen = tmp_path / "chosen.yaml"
        helm_repo_add(chosen, url, "helm-pw")
        monkeypatch.setenv("HELM_REPOSITORY_CONFIG", str(chosen))
        run = mirror(*args, "--json")
        assert run.rc == 0, run.err
        assert "helm-pw" not in run.out + run.err
    assert out.is_file()


def test_a_helm_repository_on_a_private_ca_uses_the_ca_file_helm_repo_add_saved(
    helm_repo: HelmRepo, tmp_path: Path
) -> None:
    """`helm repo add NAME URL --ca-file CA` keeps the CA beside the URL: an HTTPS repository
    signed by a private CA is refused (exit 1, no bundle) until repositories.yaml names
    it, `insecure_skip_tls_verify` there or not (the error says Helm skips, mirror does
    not); a caFile that is no CA bundle is named, exit 2."""
    from mirror.lab.certs import write_certs
    from mirror.lab.httpserver import serve_directory

    certs = write_certs(tmp_path / "certs")
    saved = Path(os.environ["XDG_CONFIG_HOME"]) / "helm" / "repositories.yaml"
    saved.parent.mkdir(parents=True)
    with serve_directory(helm_repo.path, tls=certs) as url:
        out = tmp_path / "b.tar.zst"
        args = private_helm_export(tmp_path, url, out)
        refused = mirror(*args)
        assert refused.rc == 1 and "certificate" in refused.error_line(), refused.err
        assert "set it in Helm's repositories.yaml" in refused.error_line()  # where to fix it
        assert not out.exists()
        insecure = {"name": "private", "url": url, "insecure_skip_tls_verify": True}
        saved.write_text(yaml.safe_dump({"repositories": [insecure]}))
        skipped = mirror(*args)  # Helm would not verify; mirror still does, and says why
        assert skipped.rc == 1 and "Helm skips verifying" in skipped.error_line()
        assert not out.exists()
        runs = []
        for ca in (tmp_path / "no-ca.pem", certs.ca_file):
            entry = {"name": "private", "url": url, "caFile": str(ca)}
            saved.write_text(yaml.safe_dump({"repositories": [entry]}))
            runs.append(mirror(*args, "--json"))
    missing, good = runs
    assert missing.rc == 2 and "no-ca.pem: not a CA bundle" in missing.error_line()
    assert good.rc == 0, good.err
    assert out.is_file()


def test_a_helm_repository_that_asks_for_a_client_certificate_gets_the_saved_one(
    helm_repo: HelmRepo, tmp_path: Path
) -> None:
    """`helm repo add --cert-file --key-file`: a repository that asks every client for a
    certificate gets the pair repositories.yaml keeps for its URL; without it, exit 1 and
    no bundle; half a pair is named, exit 2."""
    from mirror.lab.certs import write_certs
    from mirror.lab.httpserver import serve_directory

    certs = write_certs(tmp_path / "certs")
    saved = Path(os.environ["XDG_CONFIG_HOME"]) / "helm" / "repositories.yaml"
    saved.parent.mkdir(parents=True)
    runs = []
    with serve_directory(helm_repo.path, tls=certs, mtls=True) as url:
        out = tmp_path / "b.tar.zst"
        args = private_helm_export(tmp_path, url, out)
        ca = {"name": "private", "url": url, "caFile": str(certs.ca_file)}
        half = {**ca, "certFile": str(certs.client_cert)}
        pair = {**half, "keyFile": str(certs.client_key)}
        for entry in (ca, half, pair):
            saved.write_text(yaml.safe_dump({"repositories": [entry]}))
            runs.append(mirror(*args, "--json"))
    without, halved, good = runs
    assert without.rc == 1 and "certificate" in without.error_line(), without.err
    assert "or in Helm's repositories.yaml" in without.error_line()
    assert halved.rc == 2 and "certFile and keyFile go together" in halved.error_line()
    assert good.rc == 0, good.err
    assert out.is_file()


def test_a_note_that_could_save_the_run_is_said_before_the_copy(
    helm_repo: HelmRepo, tmp_path: Path
) -> None:
    """ "No chart filters, taking every version of every chart" is the cue for Ctrl-C on a
    Bitnami-sized repository: the observer hears it before the first phase is planned,
    and the CLI does not say it a second time at the end."""
    from mirror.export import ExportOptions, export
    from mirror.lab.httpserver import serve_directory
    from mirror.progress import Progress
    from mirror.settings import Settings
    from mirror.spec import load_spec

    events: list[str] = []

    class Heard(Progress):
        def note(self, text: str) -> None:
            events.append("note: " + text.split(":", 1)[1].split(",", 1)[0].strip())
            super().note(text)

        def planned(self, blobs: int, nbytes: int, label: str = "") -> None:
            events.append("planned")
            super().planned(blobs, nbytes, label)

    with serve_directory(helm_repo.path) as url:
        spec = tmp_path / "s.yaml"
        spec.write_text(yaml.safe_dump({"name": "h", "registries": [
            {"name": "All", "kind": "helm", "url": url}
        ]}))  # fmt: skip
        settings = Settings.from_env(cache_dir=tmp_path / "c")
        opts = ExportOptions(output=tmp_path / "b.tar.zst", settings=settings)
        with Heard("export", enabled=False, heartbeat=0, stream=io.StringIO()) as progress:
            result = export(load_spec(spec), opts, progress)
    assert events[0] == "note: no chart filters" and "planned" in events[1:]
    assert any("no chart filters" in n for n in result.notes)  # still in --json's notes
    assert all(n in progress.said for n in result.notes if "no chart filters" in n)


class _ChartHost(http.server.SimpleHTTPRequestHandler):
    """A chart host apart from the index: with `expected`, it wants that Authorization and
    then redirects to `target` (as release downloads do); with `refuse_auth`, it serves
    only requests without one (a presigned object-store URL answers such a request 400)."""

    expected = ""
    target = ""
    refuse_auth = False
    seen: list[str] = []

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        sent = self.headers.get("Authorization")
        self.seen.append(f"{type(self).__name__} {'auth' if sent else 'anonymous'}")
        if self.refuse_auth and sent:
            self.send_error(400, "only one auth mechanism allowed")
        elif self.expected and sent != self.expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="charts"')
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.target:
            self.send_response(302)
            self.send_header("Location", self.target + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            super().do_GET()


def test_helm_pass_credentials_all_sends_them_to_the_chart_host_the_index_names(
    helm_repo: HelmRepo, tmp_path: Path
) -> None:
    """`helm repo add --pass-credentials` (`pass_credentials_all` in repositories.yaml):
    the repository's credentials go to a chart URL on another host too; without it that
    host is asked anonymously (a 401, exit 1, no bundle). As with Helm (Go's client), a
    redirect from there to a third host gets none. From an https repository they never
    go to a plain-http chart host."""
    import base64
    import functools

    from mirror.lab.certs import write_certs
    from mirror.lab.httpserver import serve, serve_directory

    user, password = "helm-user", "helm-pw"
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    seen: list[str] = []
    store = type("Store", (_ChartHost,), {"refuse_auth": True, "seen": seen})
    saved = Path(os.environ["XDG_CONFIG_HOME"]) / "helm" / "repositories.yaml"
    saved.parent.mkdir(parents=True)
    certs = write_certs(tmp_path / "certs")
    with serve(functools.partial(store, directory=str(helm_repo.path)), "store") as objects:
        cdn = type("Cdn", (_ChartHost,), {"expected": expected, "target": objects, "seen": seen})
        with serve(cdn, "cdn") as charts:
            index = yaml.safe_load((helm_repo.path / "index.yaml").read_text())
            for versions in index["entries"].values():
                for cv in versions:
                    cv["urls"] = [f"{charts}/{u}" for u in cv["urls"]]
            folder = tmp_path / "index"
            folder.mkdir()
            (folder / "index.yaml").write_text(yaml.safe_dump(index))
            runs = []
            for tls, passing in ((None, False), (None, True), (certs, True)):
                with serve_directory(folder, basic=(user, password), tls=tls) as url:
                    entry = {"name": "p", "url": url, "username": user, "password": password}
                    entry |= {"pass_credentials_all": passing, "caFile": str(certs.ca_file)}
                    saved.write_text(yaml.safe_dump({"repositories": [entry]}))
                    out = tmp_path / f"b{len(runs)}.tar.zst"
                    runs.append((mirror(*private_helm_export(tmp_path, url, out)), out))
    (home_only, no_bundle), (passed, bundle), (https, refused) = runs
    assert home_only.rc == 1 and "401" in home_only.error_line() and not no_bundle.exists()
    assert passed.rc == 0, passed.err
    assert bundle.is_file() and password not in passed.out + passed.err
    assert https.rc == 1 and "401" in https.error_line() and not refused.exists()
    charts = len(helm_repo.charts)  # the cdn got them once per chart, in the second run only
    assert seen.count("Cdn auth") == charts and seen.count("Store anonymous") == charts
    assert "Store auth" not in seen and "Cdn anonymous" in seen
