"""Credentials from docker's config.json and its credential helpers, against real basic auth.

Issue 17, item 4: the README promises "Docker's `config.json` (and credential helpers)" for
every server, the target included. A tiny `docker-credential-labhelper` on PATH speaks the
helper protocol (`get`, the server on stdin, JSON with `Username` and `Secret` out) for the
lab registries' hosts alone, and logs each question it is asked.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faultproxy import Reg, isolated_env, mirror, write_spec

from mirror.lab import LabRegistry
from mirror.lab.content import make_image, make_layer
from mirror.lab.seed import Seeded, client_for, seed_artifact

pytestmark = pytest.mark.timeout(120)
REPO = "production/images/private"

HELPER = """#!{python}
import json, sys
action = sys.argv[1] if len(sys.argv) > 1 else ""
server = sys.stdin.read().strip()
with open({log!r}, "a") as log:
    log.write(json.dumps([action, server]) + "\\n")
known = {known!r}
if action == "get" and server in known:
    user, secret = known[server]
    print(json.dumps({{"ServerURL": server, "Username": user, "Secret": secret}}))
    sys.exit(0)
print("credentials not found in native keychain")
sys.exit(1)
"""


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A fresh DOCKER_CONFIG folder per test, with no config.json in it yet."""
    with isolated_env(tmp_path_factory):
        yield


def docker_dir() -> Path:
    return Path(os.environ["DOCKER_CONFIG"])


def write_config(doc: dict[str, Any]) -> None:
    (docker_dir() / "config.json").write_text(json.dumps(doc))


def write_podman_auth(doc: dict[str, Any], path: Path | None = None) -> Path:
    """podman's auth.json: $XDG_RUNTIME_DIR/containers/auth.json unless `path` is given."""
    path = path or Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


class Helper:
    """`docker-credential-labhelper` in its own folder; `on_path()` puts it first on PATH."""

    def __init__(self, folder: Path, known: dict[str, tuple[str, str]]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.log = folder / "asked.log"
        self.path = folder / "docker-credential-labhelper"
        self.path.write_text(HELPER.format(python=sys.executable, log=str(self.log), known=known))
        self.path.chmod(self.path.stat().st_mode | stat.S_IXUSR)

    def on_path(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PATH", f"{self.path.parent}{os.pathsep}{os.environ['PATH']}")

    def asked(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


def creds(reg: LabRegistry) -> tuple[str, str]:
    assert reg.username and reg.password
    return reg.username, reg.password


def seed_one(reg: LabRegistry, name: str) -> Seeded:
    """One image at REPO:1.0.0, pushed with the registry's own credentials."""
    image = make_image(name, layers=[make_layer(f"{name}/0", 4096)])
    client = client_for(reg)
    try:
        return seed_artifact(client, REPO, "1.0.0", image)
    finally:
        client.close()


@pytest.fixture
def private(basic_registry: LabRegistry) -> tuple[LabRegistry, Seeded]:
    """The basic-auth lab registry holding one image, seeded with its own credentials."""
    return basic_registry, seed_one(basic_registry, "private")


def export(reg: LabRegistry, out: Path) -> Any:
    spec = write_spec(out.parent / "s.yaml", reg.url, repositories=["images/private"])
    return mirror("export", spec, "-o", out, "--cache-dir", out.parent / "cache", "--json")


def bundled_digests(bundle: Path) -> dict[str, str]:
    run = mirror("inspect", bundle, "--json")
    assert run.rc == 0, run.err
    return {f"{a['repository']}:{a['tag']}": a["digest"] for a in run.json()["artifacts"]}


@pytest.mark.parametrize(
    "config", ["credHelpers", "credsStore", "auths", "podman", "podman-namespace"]
)
def test_export_from_a_basic_auth_registry_with_login_credentials(
    config: str,
    private: tuple[LabRegistry, Seeded],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With nothing in docker's config, a 401 in one line and no bundle; then the same
    export succeeds with the credentials from a helper named for the host
    (`credHelpers`), the default helper (`credsStore`), the inline `auths`, or podman's
    auth.json, for the host or (`podman login HOST/production`) the spec's basePath."""
    reg, seeded = private
    out = tmp_path / "b.tar.zst"
    helper = Helper(tmp_path / "bin", {reg.host: creds(reg)})

    first = export(reg, out)
    assert first.rc == 1
    assert "401" in first.error_line()
    assert not out.exists()

    if config == "credHelpers":
        write_config({"credHelpers": {reg.host: "labhelper"}})
    elif config == "credsStore":
        write_config({"credsStore": "labhelper"})
    elif config == "auths":
        auth = base64.b64encode(":".join(creds(reg)).encode()).decode()
        write_config({"auths": {reg.host: {"auth": auth}}})
    else:  # `podman login` (and skopeo's) writes here; docker's config.json has nothing
        auth = base64.b64encode(":".join(creds(reg)).encode()).decode()
        key = reg.host if config == "podman" else f"{reg.host}/{REPO.split('/')[0]}"
        write_podman_auth({"auths": {key: {"auth": auth}}})
    if config in ("credHelpers", "credsStore"):
        # Named, but not on PATH yet: still anonymous, still a 401 in one line.
        missing = export(reg, out)
        assert missing.rc == 1
        assert "401" in missing.error_line()
        assert not out.exists()
        helper.on_path(monkeypatch)

    run = export(reg, out)
    assert run.rc == 0, run.err
    assert bundled_digests(out) == {"images/private:1.0.0": seeded.digest}
    assert reg.password and reg.password not in run.out + run.err
    if config in ("auths", "podman", "podman-namespace"):
        assert helper.asked() == []
    else:
        assert ["get", reg.host] in helper.asked()
        assert all(action == "get" for action, _ in helper.asked())


def test_a_helper_that_does_not_know_the_host_leaves_the_export_anonymous(
    private: tuple[LabRegistry, Seeded], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helper answers "not found" (exit 1) for this host: a 401 in one line, no bundle."""
    reg, _ = private
    helper = Helper(tmp_path / "bin", {"registry.elsewhere.example": ("u", "p")})
    helper.on_path(monkeypatch)
    write_config({"credHelpers": {reg.host: "labhelper"}})
    out = tmp_path / "b.tar.zst"
    run = export(reg, out)
    assert run.rc == 1
    assert "401" in run.error_line()
    assert not out.exists()
    assert helper.asked() and all(server == reg.host for _, server in helper.asked())


def test_import_finds_the_target_credentials_through_a_credential_helper(
    private: tuple[LabRegistry, Seeded],
    registry_factory: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The target's credentials come by the same rule: a basic-auth target refuses the
    import (exit 1, nothing pushed) until docker's config names a helper that knows it."""
    source, seeded = private
    target = registry_factory("basic")
    helper = Helper(tmp_path / "bin", {source.host: creds(source), target.host: creds(target)})
    helper.on_path(monkeypatch)
    write_config({"credHelpers": {source.host: "labhelper"}})
    bundle = tmp_path / "b.tar.zst"
    assert export(source, bundle).rc == 0

    def do_import() -> Any:
        return mirror(
            "import",
            bundle,
            "--target",
            target.url,
            "--allow-unsigned",
            "--catalog",
            tmp_path / "catalog.json",
        )

    refused = do_import()
    assert refused.rc == 1
    assert "401" in refused.error_line()
    on_target = Reg(target.url, auth=creds(target))
    assert on_target.catalog() == []
    assert not (tmp_path / "catalog.json").exists()

    write_config({"credHelpers": {source.host: "labhelper", target.host: "labhelper"}})
    run = do_import()
    assert run.rc == 0, run.err
    assert on_target.digest(REPO, "1.0.0") == seeded.digest
    assert on_target.dangling() == []
    assert ["get", target.host] in helper.asked()
    assert target.password and target.password not in run.out + run.err


def test_import_uses_a_podman_login_to_the_base_path_it_lands_under(
    private: tuple[LabRegistry, Seeded],
    registry_factory: Any,
    tmp_path: Path,
) -> None:
    """`podman login TARGET/edge` then `import --base-path edge`: the namespace's login is
    the target's; under another base path the import stays anonymous and is refused."""
    source, seeded = private
    target = registry_factory("basic")
    source_auth = base64.b64encode(":".join(creds(source)).encode()).decode()
    target_auth = base64.b64encode(":".join(creds(target)).encode()).decode()
    write_podman_auth(
        {
            "auths": {
                source.host: {"auth": source_auth},
                f"{target.host}/edge": {"auth": target_auth},
            }
        }
    )
    bundle = tmp_path / "b.tar.zst"
    assert export(source, bundle).rc == 0
    args = ["import", bundle, "--target", target.url, "--allow-unsigned"]
    refused = mirror(*args, "--base-path", "core", "--catalog", tmp_path / "c1.json")
    assert refused.rc == 1 and "401" in refused.error_line()
    run = mirror(*args, "--base-path", "edge", "--catalog", tmp_path / "c2.json")
    assert run.rc == 0, run.err
    on_target = Reg(target.url, auth=creds(target))
    assert on_target.digest(f"edge/{REPO}", "1.0.0") == seeded.digest


@pytest.mark.parametrize("form", ["auths", "helper"])
def test_an_identity_token_is_traded_for_registry_tokens_by_oauth2(
    form: str, token_registry: LabRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`docker login` to an OAuth2 registry keeps an identity token (a refresh token), inline
    (`identitytoken`) or from a helper that answers Username `<token>`. The export trades it
    at the token service by POST, as docker does; the lab service grants nothing by GET for
    it (there is no password). A token the service does not know: exit 1, one line, no
    bundle, and the token never printed."""
    seeded = seed_one(token_registry, "oauth")
    server = token_registry.token_server
    assert server is not None
    good, bad = server.identity_token("oauth-user"), "refresh-not-issued-by-this-service"

    def configure(token: str) -> None:
        if form == "auths":
            write_config({"auths": {token_registry.host: {"identitytoken": token}}})
            return
        helper = Helper(tmp_path / f"bin-{token[-6:]}", {token_registry.host: ("<token>", token)})
        helper.on_path(monkeypatch)
        write_config({"credHelpers": {token_registry.host: "labhelper"}})

    out = tmp_path / "b.tar.zst"
    configure(bad)
    refused = export(token_registry, out)
    assert refused.rc == 1
    assert "token service refused" in refused.error_line()
    assert bad not in refused.out + refused.err
    assert not out.exists()

    before = len(server.grants)
    configure(good)
    run = export(token_registry, out)
    assert run.rc == 0, run.err
    assert bundled_digests(out) == {"images/private:1.0.0": seeded.digest}
    assert {g.user for g in server.grants[before:]} == {"oauth-user"}
    assert good not in run.out + run.err


def test_the_login_files_and_their_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """REGISTRY_AUTH_FILE first, docker's config.json next, then podman's and skopeo's
    auth.json (XDG_RUNTIME_DIR or /run/containers/UID, which REGISTRY_AUTH_FILE replaces,
    then ~/.config), last `helm registry login`'s. The first file that knows the host
    answers. A login to one namespace (`host/ns`) is not used for the whole host, only for
    what is under it, the deepest login first. A broken file is named when it is reached."""
    from mirror.errors import UsageError
    from mirror.registry.auth import has_namespace_logins, login_credentials

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    host = "registry.lab.example:5000"

    def entry(user: str) -> dict[str, Any]:
        return {host: {"auth": base64.b64encode(f"{user}:pw".encode()).decode()}}

    def who() -> str | None:
        found = login_credentials(host)
        return found.username if found is not None else None

    assert who() is None
    helm = write_podman_auth(
        {"auths": entry("helm")}, tmp_path / "xdg" / "helm" / "registry" / "config.json"
    )
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert who() == "helm"  # `helm registry login`, the last file asked
    monkeypatch.setenv("HELM_REGISTRY_CONFIG", str(tmp_path / "elsewhere.json"))
    assert who() is None
    monkeypatch.setenv("HELM_REGISTRY_CONFIG", str(helm))
    config_home = tmp_path / "xdg" / "containers" / "auth.json"
    write_podman_auth({"auths": entry("home")}, config_home)
    assert who() == "home"  # containers/image reads it under XDG_CONFIG_HOME when set
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert who() == "helm"
    dot_config = tmp_path / "home" / ".config" / "containers" / "auth.json"
    write_podman_auth({"auths": entry("dot-config")}, dot_config)
    assert who() == "dot-config"  # and under ~/.config without it
    dot_config.unlink()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    runtime = write_podman_auth({"auths": entry("runtime")})
    assert who() == "runtime"
    write_config({"auths": entry("docker")})
    assert who() == "docker"
    chosen = write_podman_auth({"auths": entry("chosen")}, tmp_path / "chosen.json")
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(chosen))
    assert who() == "chosen"
    write_podman_auth({"auths": {}}, chosen)
    write_config({})
    assert who() == "home"  # REGISTRY_AUTH_FILE stands in for the runtime file
    monkeypatch.delenv("REGISTRY_AUTH_FILE")
    assert who() == "runtime"
    # Without XDG_RUNTIME_DIR (root, a service), podman logs in to /run/containers/UID/.
    runtime_dir = os.environ["XDG_RUNTIME_DIR"]
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    per_uid = tmp_path / "run-containers" / "{uid}" / "auth.json"
    monkeypatch.setattr("mirror.registry.auth.PER_UID_AUTH", str(per_uid))
    assert who() == "home"
    write_podman_auth({"auths": entry("root")}, Path(str(per_uid).format(uid=os.getuid())))
    assert who() == "root"
    monkeypatch.setenv("XDG_RUNTIME_DIR", runtime_dir)
    assert who() == "runtime"
    ns = {f"{host}/team": entry("runtime")[host]}
    write_podman_auth({"auths": ns})
    assert who() == "home"  # a login to one namespace is not the host's
    for namespace, user in [("team", "runtime"), ("team/apps/x", "runtime"), ("teams", "home")]:
        found = login_credentials(host, namespace)
        assert found is not None and found.username == user, namespace
    ns[f"{host}/team/apps"] = entry("deeper")[host]
    write_podman_auth({"auths": ns})
    found = login_credentials(host, "team/apps/x")
    assert found is not None and found.username == "deeper"
    assert has_namespace_logins(host)  # so the image closure looks up each repository
    assert not has_namespace_logins(host.split(":")[0])  # the bare host name is another registry
    write_podman_auth({"auths": {host: {"auth": "not base64!"}}})
    with pytest.raises(UsageError, match=f"{runtime}: the auth for {host} is not base64"):
        login_credentials(host)  # the file that holds it is named, not docker's
    runtime.write_text("{broken")
    config_home.unlink()
    with pytest.raises(UsageError, match=f"{runtime}: not valid JSON"):
        login_credentials(host)


def _script(folder: Path, name: str, body: str) -> None:
    """A credential helper `docker-credential-NAME` that runs `body` (Python)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"docker-credential-{name}"
    path.write_text(f"#!{sys.executable}\nimport sys, time\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_docker_config_forms_and_their_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read as the docker CLI reads it: a helper named for the host, inline auths, then
    credsStore; https:// and http:// keys count. A missing config, a helper not
    installed or not knowing the host: anonymous. A broken config or a helper answering
    out of protocol: one line naming the file or the helper, never the secret."""
    from mirror.errors import UsageError
    from mirror.registry.auth import login_credentials

    host = "registry.lab.example:5000"
    assert login_credentials(host) is None  # no config.json at all
    write_config({"auths": {f"https://{host}": {"auth": base64.b64encode(b"u:p:w").decode()}}})
    found = login_credentials(host)
    assert found is not None and (found.username, found.password) == ("u", "p:w")
    legacy = base64.b64encode(b"old:pw").decode()
    write_config({"auths": {f"https://{host}/v1/": {"auth": legacy}, "https://x/": {}}})
    found = login_credentials(host)  # older docker keyed auths by URL: matched by host
    assert found is not None and (found.username, found.password) == ("old", "pw")
    assert login_credentials("registry.lab.example") is None  # the port is part of it
    bin_dir = tmp_path / "bin"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    _script(bin_dir, "nokey", "sys.exit(1)")
    _script(bin_dir, "store", 'print(\'{"Username": "s", "Secret": "top-secret"}\')')
    write_config({"credHelpers": {host: "nokey"}, "credsStore": "store"})
    found = login_credentials(host)  # the host's helper does not know it: the store does
    assert found is not None and (found.username, found.password) == ("s", "top-secret")
    write_config({"credHelpers": {host: "not-installed"}})
    assert login_credentials(host) is None
    ident = base64.b64encode(b"00000000-0000-0000-0000-000000000000:").decode()
    write_config({"auths": {host: {"auth": ident, "identitytoken": "top-secret"}}})
    found = login_credentials(host)  # `az acr login`'s form: a user beside the token
    assert found is not None and found.identity_token == "top-secret"
    assert found.username.startswith("0000") and "top-secret" not in repr(found)
    write_config({"auths": {host: {"identitytoken": "top-secret"}}})
    found = login_credentials(host)
    assert found is not None and (found.username, found.identity_token) == ("", "top-secret")
    _script(bin_dir, "oauth", 'print(\'{"Username": "<token>", "Secret": "top-secret"}\')')
    write_config({"credsStore": "oauth"})
    found = login_credentials(host)
    assert found is not None and (found.password, found.identity_token) == ("", "top-secret")
    _script(bin_dir, "garbled", 'print("top-secret")')
    for doc, says in [
        ({"credsStore": "garbled"}, "docker-credential-garbled get: its answer for"),
        ({"credsStore": "../evil"}, "not a credential helper's name"),
        ({"auths": {host: {"auth": "not base64!"}}}, "is not base64 user:password"),
        ([1, 2], "config.json: not a JSON object"),
    ]:
        write_config(doc)  # type: ignore[arg-type]
        with pytest.raises(UsageError, match=says) as caught:
            login_credentials(host)
        assert "top-secret" not in str(caught.value)
    (docker_dir() / "config.json").write_text("{not json")
    with pytest.raises(UsageError, match=r"config\.json: not valid JSON"):
        login_credentials(host)
    (docker_dir() / "config.json").unlink()
    (docker_dir() / "config.json").mkdir()  # unreadable: named, not skipped as missing
    with pytest.raises(UsageError, match=r"config\.json: Is a directory"):
        login_credentials(host)


def test_a_helper_named_for_the_host_is_asked_before_the_files_own_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docker and containers/image ask `credHelpers[host]` before anything else in the
    file: a stale `auths` entry or a namespace login beside it does not shadow the helper
    (we used the stale entry, and the export got a 401 docker would not). A helper that
    knows nothing leaves the rest of the file to answer."""
    from mirror.registry.auth import login_credentials

    host = "registry.lab.example:5000"
    stale = {"auth": base64.b64encode(b"stale:old-pw").decode()}
    bin_dir = tmp_path / "bin"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    _script(bin_dir, "fresh", 'print(\'{"Username": "fresh", "Secret": "new-pw"}\')')
    _script(bin_dir, "nokey", "sys.exit(1)")
    auths = {host: stale, f"{host}/team": stale}
    write_config({"auths": auths, "credHelpers": {host: "fresh"}})
    for namespace in ("", "team/app"):
        found = login_credentials(host, namespace)
        assert found is not None and (found.username, found.password) == ("fresh", "new-pw")
    write_config({"auths": auths, "credHelpers": {host: "nokey"}})
    found = login_credentials(host)
    assert found is not None and found.username == "stale"


def test_a_credential_helper_that_never_answers_is_cut_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mirror.errors import UsageError
    from mirror.registry import auth

    _script(tmp_path / "bin", "stuck", "time.sleep(30)")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(auth, "HELPER_TIMEOUT", 0.5)
    write_config({"credsStore": "stuck"})
    with pytest.raises(UsageError, match=r"docker-credential-stuck get: no answer .* in 0\.5 s"):
        auth.login_credentials("registry.lab.example")


def test_a_credential_helper_that_babbles_is_cut_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A helper's answer is a username and a secret: one that writes without end is
    stopped at the cap, in one line that shows none of what it wrote."""
    from mirror.errors import UsageError
    from mirror.registry import auth

    _script(tmp_path / "bin", "babble", "sys.stdout.write('top-secret' * 10**7)")
    _script(tmp_path / "bin", "quiet", "sys.exit(0)")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    write_config({"credsStore": "babble"})
    with pytest.raises(UsageError) as caught:
        auth.login_credentials("registry.lab.example")
    assert str(caught.value) == (
        "docker-credential-babble get: its answer for registry.lab.example is over 64 KiB"
    )
    write_config({"credsStore": "quiet"})  # ends at once, unread stdin, no answer
    with pytest.raises(UsageError, match="is not Username and Secret JSON"):
        auth.login_credentials("registry.lab.example")


def test_helm_repositories_yaml_is_read_as_helm_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$HELM_CONFIG_HOME beats $XDG_CONFIG_HOME/helm; an entry counts for its own URL
    (a trailing slash aside), and only with both a username and a password, as Helm sends
    basic auth; a file that is not YAML, or is over the cap, is named in one line, exit 2;
    entries of the wrong shape are passed over."""
    from mirror.errors import UsageError
    from mirror.registry.auth import helm_repository_entry

    def found(url: str) -> Any:
        entry = helm_repository_entry(url)
        return entry.credentials if entry is not None else None

    url = "https://charts.example.test/stable"
    entries = [
        {"name": "half", "url": "https://charts.example.test/half", "username": "u"},
        {"name": "s", "url": url + "/", "username": "u", "password": "p"},
    ]
    xdg, home = tmp_path / "xdg", tmp_path / "helm-home"
    (xdg / "helm").mkdir(parents=True)
    (xdg / "helm" / "repositories.yaml").write_text(json.dumps({"repositories": entries}))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    creds = found(url)
    assert creds is not None and (creds.username, creds.password) == ("u", "p")
    assert found("https://charts.example.test/half") is None
    assert found("https://charts.example.test") is None
    monkeypatch.setenv("HELM_CONFIG_HOME", str(home))
    assert found(url) is None  # no file there
    home.mkdir()
    (home / "repositories.yaml").write_text("repositories: [\n")
    with pytest.raises(UsageError, match=r"helm-home/repositories.yaml: not valid YAML"):
        found(url)
    for odd in ("repositories: a string", "[1, 2]", f"repositories: [7, {{url: {url}}}]"):
        (home / "repositories.yaml").write_text(odd)
        assert found(url) is None  # nothing usable in it, so nothing from it
    (home / "repositories.yaml").write_bytes(b"#" * (16 << 20) + b"\n")
    with pytest.raises(UsageError, match=r"repositories.yaml: larger than 16\.0 MiB"):
        found(url)


def test_docker_hub_is_found_under_each_of_its_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`podman login docker.io` files the login as `docker.io` (a namespace as
    `docker.io/ns`), `docker login` as `https://index.docker.io/v1/`; an image on Docker
    Hub is asked of registry-1.docker.io. Each form counts for each name, in file order,
    and a helper is asked with the name docker gives it."""
    from mirror.registry.auth import has_namespace_logins, resolve_credentials

    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    def auth(user: str) -> dict[str, str]:
        return {"auth": base64.b64encode(f"{user}:pw".encode()).decode()}

    def who(host: str, namespace: str = "") -> str | None:
        found = resolve_credentials(host, namespace=namespace)
        return found.username if found is not None else None

    hub = ("registry-1.docker.io", "docker.io", "index.docker.io")
    assert [who(h) for h in hub] == [None, None, None]
    write_podman_auth({"auths": {"docker.io": auth("podman"), "docker.io/acme": auth("acme")}})
    assert [who(h) for h in hub] == ["podman"] * 3
    assert who("registry-1.docker.io", "acme/tool") == "acme"
    assert who("registry-1.docker.io", "acmeco/tool") == "podman"
    assert has_namespace_logins("registry-1.docker.io")
    assert not has_namespace_logins("quay.io") and who("quay.io") is None
    write_config({"auths": {"https://index.docker.io/v1/": auth("docker")}})
    assert [who(h) for h in hub] == ["docker"] * 3  # docker's file comes first
    helper = Helper(tmp_path / "bin", {"https://index.docker.io/v1/": ("helped", "pw")})
    helper.on_path(monkeypatch)
    write_config({"credsStore": "labhelper"})
    assert who("registry-1.docker.io") == "helped"
    assert ["get", "https://index.docker.io/v1/"] in helper.asked()
    assert not any(server.startswith("https://https://") for _, server in helper.asked())
