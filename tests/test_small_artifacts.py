"""Small artifacts at scale (issue 19, item 2): per-request waste the profile showed."""

from __future__ import annotations

import pytest

from mirror.registry.http import _Session


def test_plain_http_carries_no_ca_path_so_requests_skips_its_isdir(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With REQUESTS_CA_BUNDLE set (as on this box), requests stat()ed the CA path on every
    request, TLS or not: 5% of a 500-image import's samples. HTTPS still gets the path."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/env/ca.pem")
    s = _Session()
    plain = s.merge_environment_settings("http://127.0.0.1:5000/v2/", None, None, True, None)
    assert plain["verify"] is True
    tls = s.merge_environment_settings("https://127.0.0.1:5000/v2/", None, None, True, None)
    assert tls["verify"] == "/env/ca.pem"
