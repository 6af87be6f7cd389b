"""A source registry behind a private CA: --ca-file, and nothing else, makes it work."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from mirror.cli import main
from mirror.lab.certs import write_certs
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


def test_the_system_store_is_trusted_and_a_ca_file_adds_to_it(
    registry_factory: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """As curl, docker and skopeo: a CA the host trusts (installed in its store; here
    SSL_CERT_FILE, which OpenSSL's default paths read) needs no flag, and --ca-file for a
    second private registry adds to that trust rather than replacing it, so one export
    reads both. With requests alone, the first failed, and the second made the first fail."""
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_DIR"):
        monkeypatch.delenv(var, raising=False)
    system, private = registry_factory("tls"), registry_factory("tls")
    monkeypatch.setenv("SSL_CERT_FILE", str(system.ca_file))
    seeded = {}
    for name, reg in (("s", system), ("p", private)):
        art = single_layer_artifact(
            b"{}", mt.UNKNOWN_CONFIG, os.urandom(512), mt.OCI_LAYER_TAR, {mt.ANN_TITLE: "p.tgz"}
        )
        path = f"b{name}/spectro-packs/archive/p{name}"
        seeded[f"{path}:1.0.0"] = seed_artifact(client_for(reg), path, "1.0.0", art, "pack").digest
    spec = tmp_path / "spec.yaml"
    entries = [
        f"  - {{name: {n}, kind: oci, url: '{r.url}', basePath: b{n}}}"
        for n, r in (("s", system), ("p", private))
    ]
    spec.write_text("registries:\n" + "\n".join(entries) + "\n")
    out = tmp_path / "b.tar.zst"
    args = ["export", str(spec), "-o", str(out), "--cache-dir", str(tmp_path / "c")]
    assert main(args) == 1  # the private registry's CA is in no store
    assert f"{private.host}: TLS verification failed" in capsys.readouterr().err
    bogus = tmp_path / "not-a-ca.pem"
    bogus.write_text("not a certificate\n")
    assert main([*args, "--ca-file", str(bogus)]) == 2  # named, not a TLS riddle
    assert (
        capsys.readouterr().err
        == f"mirror: error: {bogus}: not a CA bundle (NO_CERTIFICATE_OR_CRL_FOUND)\n"
    )
    assert not out.exists()
    assert main([*args, "--ca-file", str(private.ca_file)]) == 0
    capsys.readouterr()
    assert main(["inspect", str(out), "--json"]) == 0
    carried = json.loads(capsys.readouterr().out)["artifacts"]
    assert {a["ref"]: a["digest"] for a in carried} == seeded


def test_a_registry_s_own_ca_folder_is_read_as_docker_and_podman_read_it(
    tls_registry: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`certs.d/HOST:PORT/*.crt` (under /etc/containers, /etc/docker or ~/.config/containers)
    trusts a CA for that registry alone, no flag needed; a file there that is no CA is
    named in one line."""
    from mirror.registry import http

    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(var, raising=False)
    roots = (str(tmp_path / "etc-containers"), str(tmp_path / "etc-docker"))
    monkeypatch.setattr(http, "CERTS_D", roots)
    art = single_layer_artifact(
        b"{}", mt.UNKNOWN_CONFIG, os.urandom(256), mt.OCI_LAYER_TAR, {mt.ANN_TITLE: "p.tgz"}
    )
    seed_artifact(client_for(tls_registry), "base/spectro-packs/archive/p", "1", art)
    spec = tmp_path / "spec.yaml"
    entry = f"{{name: Private, kind: oci, url: '{tls_registry.url}', basePath: base}}"
    spec.write_text(f"registries:\n  - {entry}\n")
    out = tmp_path / "b.tar.zst"
    args = ["export", str(spec), "-o", str(out), "--cache-dir", str(tmp_path / "c"), "--json"]
    assert main(args) == 1
    assert "TLS verification failed" in capsys.readouterr().err
    folder = Path(roots[1]) / tls_registry.host
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("not read: only *.crt")
    (folder / "ca.crt").write_bytes(tls_registry.ca_file.read_bytes())
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["artifacts"] == 1
    (folder / "zz-broken.crt").write_text("no certificate here")
    assert main(args) == 2
    assert capsys.readouterr().err.startswith(f"mirror: error: {folder / 'zz-broken.crt'}: ")


def test_a_registry_that_asks_for_a_client_certificate_gets_the_one_in_certs_d(
    registry_factory: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Mutual TLS as docker and podman do it: `certs.d/HOST:PORT/client.cert` with its
    `client.key` is offered to that registry. Without one, or with one it does not trust,
    or with half a pair, the error says which, and nothing is written."""
    from mirror.registry import http

    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(var, raising=False)
    reg = registry_factory("mtls")
    assert reg.certs is not None
    monkeypatch.setattr(http, "CERTS_D", (str(tmp_path / "certs.d"),))
    folder = tmp_path / "certs.d" / reg.host
    folder.mkdir(parents=True)
    (folder / "ca.crt").write_bytes(reg.certs.ca_file.read_bytes())
    cert, key = folder / "client.cert", folder / "client.key"
    cert.write_bytes(reg.certs.client_cert.read_bytes())
    key.write_bytes(reg.certs.client_key.read_bytes())
    art = single_layer_artifact(
        b"{}", mt.UNKNOWN_CONFIG, os.urandom(256), mt.OCI_LAYER_TAR, {mt.ANN_TITLE: "p.tgz"}
    )
    seeded = seed_artifact(client_for(reg), "base/spectro-packs/archive/p", "1", art)
    spec = tmp_path / "spec.yaml"
    entry = f"{{name: Private, kind: oci, url: '{reg.url}', basePath: base}}"
    spec.write_text(f"registries:\n  - {entry}\n")
    out = tmp_path / "b.tar.zst"
    args = ["export", str(spec), "-o", str(out), "--cache-dir", str(tmp_path / "c"), "--json"]

    kept = tmp_path / "kept"
    kept.mkdir()
    cert.rename(kept / cert.name)
    assert main(args) == 2  # half a pair is a mistake in the folder, named
    assert capsys.readouterr().err == (f"mirror: error: {key}: no client.cert beside it\n")
    key.rename(kept / key.name)
    assert main(args) == 1
    err = capsys.readouterr().err  # an alert, or (TLS 1.3's race) the connection closed
    assert err.startswith(f"mirror: error: {reg.host} ") and err.count("\n") == 1, err
    assert err.endswith(
        f"put it and its key in certs.d/{reg.host}/ as client.cert and client.key, as for docker\n"
    )
    other = write_certs(tmp_path / "other")  # a pair from a CA the registry does not know
    cert.write_bytes(other.client_cert.read_bytes())
    key.write_bytes(other.client_key.read_bytes())
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"mirror: error: {reg.host} refused the client certificate {cert}")
    key.write_text("not a key")
    assert main(args) == 2
    assert capsys.readouterr().err.startswith(
        f"mirror: error: {cert}: not a client certificate with its key ("
    )
    assert not out.exists()
    (kept / cert.name).rename(cert)
    (kept / key.name).rename(key)
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["artifacts"] == 1
    assert main(["inspect", str(out), "--json"]) == 0
    carried = json.loads(capsys.readouterr().out)["artifacts"]
    assert [a["digest"] for a in carried] == [seeded.digest]


def test_a_client_certificate_goes_to_its_own_host_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A redirect (a blob on object storage) is another host: it gets a context without
    the registry's client certificate, so it never learns who we are."""
    import requests

    from mirror.deadlines import HeadDeadline
    from mirror.registry import http, viarequests

    certs = write_certs(tmp_path / "pki")
    monkeypatch.setattr(http, "CERTS_D", (str(tmp_path / "certs.d"),))
    folder = tmp_path / "certs.d" / "reg.example:5000"
    folder.mkdir(parents=True)
    (folder / "me.cert").write_bytes(certs.client_cert.read_bytes())
    (folder / "me.key").write_bytes(certs.client_key.read_bytes())
    trust = http._TrustStore("reg.example:5000")
    adapter = viarequests._TrustAdapter(trust, HeadDeadline(30))

    def context_for(url: str) -> Any:
        req = requests.Request("GET", url).prepare()
        return adapter.build_connection_pool_key_attributes(req, True)[1]["ssl_context"]

    elsewhere = context_for("https://blobs.example/x")
    assert trust.client is None
    home = context_for("https://reg.example:5000/v2/")
    assert trust.client == (str(folder / "me.cert"), str(folder / "me.key"))
    assert home is not elsewhere
    assert context_for("https://REG.example:5000/v2/x") is home
    assert context_for("https://blobs.example/y") is elsewhere
