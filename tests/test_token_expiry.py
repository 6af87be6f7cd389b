"""Bearer tokens that expire mid-run are fetched again, transparently (issue 12).

Both registries use Distribution's token auth with tokens that live 2 seconds; a fault
proxy slows every blob so the export and the import each run well past that.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from faultproxy import BLOB_GET, UPLOAD, FaultProxy, mirror, write_spec

from mirror.lab.content import make_image, make_layer
from mirror.lab.registry import start_registry
from mirror.lab.seed import client_for, seed_artifact

pytestmark = pytest.mark.timeout(120)
TTL = 2


def test_tokens_expiring_every_two_seconds_do_not_stop_export_or_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry_factory: Any
) -> None:
    del registry_factory  # asked for so a missing docker-registry skips (fails under CI)
    source = start_registry(tmp_path / "src", flavour="token", token_ttl=TTL)
    target = start_registry(tmp_path / "dst", flavour="token", token_ttl=TTL)
    try:
        client = client_for(source)
        for i in range(6):
            layers = [make_layer(f"expiry/{i}/{n}", 8 * 1024) for n in range(2)]
            seed_artifact(
                client, f"production/images/app{i}", "1.0", make_image(f"a{i}", layers=layers)
            )
        client.close()
        monkeypatch.setenv("MIRROR_TARGET_USERNAME", target.username or "")
        monkeypatch.setenv("MIRROR_TARGET_PASSWORD", target.password or "")
        monkeypatch.setenv("SRC_USER", source.username or "")
        monkeypatch.setenv("SRC_PASS", source.password or "")
        bundle = tmp_path / "b.tar.zst"
        with FaultProxy.running(source.url) as slow:
            slow.add("slow", method="GET", path=BLOB_GET, delay=0.3)
            spec = write_spec(
                tmp_path / "s.yaml",
                slow.url,
                extra=", auth: {usernameEnv: SRC_USER, passwordEnv: SRC_PASS}",
            )
            started = time.monotonic()
            run = mirror("export", spec, "-o", bundle, "--cache-dir", tmp_path / "c", "-j", "1")
            took = time.monotonic() - started
        assert run.rc == 0, run.err
        assert took > 2 * TTL, f"the export took {took:.1f} s: too short to prove renewal"
        assert len(source.token_server.grants) > 2  # type: ignore[union-attr]
        with FaultProxy.running(target.url) as slow:
            slow.add("slow", method="PUT", path=UPLOAD, delay=0.3)
            started = time.monotonic()
            run = mirror("import", bundle, "--target", slow.url, "--allow-unsigned",
                         "--catalog", tmp_path / "cat.json", "-j", "1")  # fmt: skip
            took = time.monotonic() - started
        assert run.rc == 0, run.err
        assert took > 2 * TTL, f"the import took {took:.1f} s: too short to prove renewal"
        check = client_for(target)  # Reg speaks basic auth only; this one follows tokens
        try:
            for i in range(6):
                assert check.resolve(f"production/images/app{i}", "1.0") is not None
        finally:
            check.close()
    finally:
        source.stop()
        target.stop()
