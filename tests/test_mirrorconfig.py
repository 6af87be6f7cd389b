"""Mirror config: exact bytes for image-swap and containerd, and no writes outside DIR."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from mirror.errors import UsageError
from mirror.mirrorconfig import Mirror, hosts_toml, mirror_string, write_mirror_config

GHCR = Mirror("ghcr.io", "registry.local:5000/spectro-images/ghcr.io")
HUB = Mirror("docker.io", "registry.local:5000/spectro-images/docker.io")
K8S = Mirror("registry.k8s.io", "registry.local:5000/spectro-images/registry.k8s.io")


def test_mirror_string_is_sorted_and_deduplicated() -> None:
    assert mirror_string([K8S, GHCR, HUB, GHCR]) == (
        "docker.io::registry.local:5000/spectro-images/docker.io,"
        "ghcr.io::registry.local:5000/spectro-images/ghcr.io,"
        "registry.k8s.io::registry.local:5000/spectro-images/registry.k8s.io"
    )


def test_mirror_string_has_no_v2_and_keeps_ports() -> None:
    local = Mirror("127.0.0.1:5000", "reg.local/spectro-images/127.0.0.1:5000")
    assert mirror_string([local]) == "127.0.0.1:5000::reg.local/spectro-images/127.0.0.1:5000"


def test_mirror_string_of_nothing_is_empty() -> None:
    assert mirror_string([]) == ""


def test_one_upstream_with_two_endpoints_is_refused() -> None:
    other = Mirror("ghcr.io", "other.local/spectro-images/ghcr.io")
    with pytest.raises(UsageError, match=r"ghcr\.io has two endpoints"):
        mirror_string([GHCR, other])


def test_docker_hub_server_is_its_api_host() -> None:
    assert hosts_toml(HUB, scheme="https") == (
        'server = "https://registry-1.docker.io"\n'
        "\n"
        '[host."https://registry.local:5000/v2/spectro-images/docker.io"]\n'
        '  capabilities = ["pull", "resolve"]\n'
        "  override_path = true\n"
    )


def test_endpoint_with_path_over_http() -> None:
    assert hosts_toml(GHCR, scheme="http") == (
        'server = "https://ghcr.io"\n'
        "\n"
        '[host."http://registry.local:5000/v2/spectro-images/ghcr.io"]\n'
        '  capabilities = ["pull", "resolve"]\n'
        "  override_path = true\n"
    )


def test_endpoint_without_path_needs_no_override() -> None:
    for endpoint in ("registry.local:5000", "registry.local:5000/"):
        text = hosts_toml(Mirror("quay.io", endpoint), scheme="https")
        assert text == (
            'server = "https://quay.io"\n'
            "\n"
            '[host."https://registry.local:5000"]\n'
            '  capabilities = ["pull", "resolve"]\n'
        )


def test_ca_file_and_skip_verify() -> None:
    text = hosts_toml(K8S, scheme="https", ca_file="/etc/certs/mirror.pem", skip_verify=True)
    assert text == (
        'server = "https://registry.k8s.io"\n'
        "\n"
        '[host."https://registry.local:5000/v2/spectro-images/registry.k8s.io"]\n'
        '  capabilities = ["pull", "resolve"]\n'
        "  override_path = true\n"
        '  ca = "/etc/certs/mirror.pem"\n'
        "  skip_verify = true\n"
    )


def test_skip_verify_is_off_unless_asked() -> None:
    assert "skip_verify" not in hosts_toml(GHCR, scheme="https", ca_file="ca.pem")


def test_toml_strings_are_escaped() -> None:
    odd = 'C:\\certs\\my "mirror".pem\n'
    text = hosts_toml(GHCR, scheme="https", ca_file=odd)
    assert '  ca = "C:\\\\certs\\\\my \\"mirror\\".pem\\n"\n' in text
    doc = tomllib.loads(text)
    host = doc["host"]["https://registry.local:5000/v2/spectro-images/ghcr.io"]
    assert host["ca"] == odd
    assert host["override_path"] is True
    assert doc["server"] == "https://ghcr.io"


@pytest.mark.parametrize("scheme", ["", "ftp", "HTTPS", "https://"])
def test_bad_scheme_is_refused(scheme: str) -> None:
    with pytest.raises(UsageError, match="scheme"):
        hosts_toml(GHCR, scheme=scheme)


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://registry.local/spectro-images/ghcr.io",
        "",
        "/spectro-images",
        "registry.local/a b",
        "registry.local/a,b",
        'registry.local/a"b',
        "registry.local/../x",
        "registry.local/a//b",
    ],
)
def test_bad_endpoint_is_refused(endpoint: str) -> None:
    with pytest.raises(UsageError, match="HOST"):
        mirror_string([Mirror("ghcr.io", endpoint)])


def test_double_colon_is_refused_because_image_swap_splits_on_it() -> None:
    with pytest.raises(UsageError, match="image-swap cannot parse"):
        mirror_string([Mirror("[::1]:5000", "reg.local/x")])
    with pytest.raises(UsageError, match="image-swap cannot parse"):
        mirror_string([Mirror("ghcr.io", "reg.local/a::b")])


def test_write_mirror_config_files_and_content(tmp_path: Path) -> None:
    local = Mirror("127.0.0.1:5000", "registry.local:5000/spectro-images/127.0.0.1:5000")
    out = tmp_path / "cfg"
    written = write_mirror_config(out, [GHCR, local, HUB, GHCR], scheme="https", ca_file="ca.crt")
    assert written == [
        out / "certs.d" / "127.0.0.1:5000" / "hosts.toml",
        out / "certs.d" / "docker.io" / "hosts.toml",
        out / "certs.d" / "ghcr.io" / "hosts.toml",
        out / "mirror-registries.txt",
    ]
    assert (out / "mirror-registries.txt").read_text() == (
        "127.0.0.1:5000::registry.local:5000/spectro-images/127.0.0.1:5000,"
        "docker.io::registry.local:5000/spectro-images/docker.io,"
        "ghcr.io::registry.local:5000/spectro-images/ghcr.io\n"
    )
    for m in (GHCR, local, HUB):
        text = (out / "certs.d" / m.upstream / "hosts.toml").read_text()
        assert text == hosts_toml(m, scheme="https", ca_file="ca.crt")
    assert (
        (out / "certs.d" / "127.0.0.1:5000" / "hosts.toml")
        .read_text()
        .startswith('server = "https://127.0.0.1:5000"\n')
    )
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == written


def test_rewrite_replaces_content(tmp_path: Path) -> None:
    write_mirror_config(tmp_path, [GHCR], scheme="https")
    moved = Mirror("ghcr.io", "new.local/images/ghcr.io")
    write_mirror_config(tmp_path, [moved], scheme="http")
    assert (tmp_path / "mirror-registries.txt").read_text() == "ghcr.io::new.local/images/ghcr.io\n"
    assert (
        '[host."http://new.local/v2/images/ghcr.io"]'
        in (tmp_path / "certs.d" / "ghcr.io" / "hosts.toml").read_text()
    )
    assert not [p for p in tmp_path.rglob("*.tmp")]


@pytest.mark.parametrize(
    "upstream", ["", "..", "../etc", "ghcr.io/../..", "a/b", "/abs", "a\\b", ".hidden", "a..b"]
)
def test_traversal_is_refused_and_nothing_is_written(tmp_path: Path, upstream: str) -> None:
    out = tmp_path / "cfg"
    with pytest.raises(UsageError, match="not a registry host name"):
        write_mirror_config(out, [GHCR, Mirror(upstream, "reg.local/x")], scheme="https")
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_duplicate_upstream_writes_nothing(tmp_path: Path) -> None:
    clash = Mirror("ghcr.io", "other.local/ghcr.io")
    with pytest.raises(UsageError):
        write_mirror_config(tmp_path, [GHCR, clash], scheme="https")
    assert list(tmp_path.iterdir()) == []


def test_bad_scheme_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        write_mirror_config(tmp_path, [GHCR], scheme="ftp")
    assert list(tmp_path.iterdir()) == []
