"""verify and import give one verdict (issue 15, item 1; issue 12, item 2).

Each bundle here carries a valid FILE.sig by the trusted key, so a check of FILE.sig alone
would pass it; the archive inside is still wrong. `verify` refuses it, and `import` must
refuse it the same way before a single request writes to the target.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard
from faultproxy import Reg, mirror
from test_bundle_support import Keys, build_bundle, make_keys

from mirror import signing
from mirror.bundle.toc import FOOTER_SIZE, decode_footer, encode_footer
from mirror.lab.registry import LabRegistry


def _after_the_archive(extra: bytes) -> Callable[[bytes], bytes]:
    """A zstd frame of `extra` between the last member's frame and the table of contents."""

    def tamper(raw: bytes) -> bytes:
        toc_at = decode_footer(raw[-FOOTER_SIZE:], len(raw))
        toc = raw[toc_at:-FOOTER_SIZE]
        body = raw[:toc_at] + zstandard.ZstdCompressor().compress(extra)
        return body + toc + encode_footer(len(body))

    return tamper


CASES = {
    "garbage after the end-of-archive marker": _after_the_archive(b"not tar padding" * 64),
    "a zero bomb after the end-of-archive marker": _after_the_archive(bytes(4 << 20)),
}


@pytest.fixture()
def k(tmp_path: Path) -> Keys:
    return make_keys(tmp_path)


@pytest.mark.parametrize("case", sorted(CASES))
def test_import_refuses_what_verify_refuses_and_writes_nothing(
    case: str, k: Keys, tmp_path: Path, registry: LabRegistry
) -> None:
    bundle = build_bundle(tmp_path / "b.tar.zst", k)
    bundle.write_bytes(CASES[case](bundle.read_bytes()))
    # Re-sign the whole file: FILE.sig is valid for these very bytes.
    signing.write_detached(bundle, signing.sha256_file(bundle), k.key)
    pub = k.pub_path
    verdict = mirror("verify", bundle, "--key", pub)
    assert verdict.rc == 3, verdict.err
    run = mirror(
        "import", bundle, "--target", registry.url, "--key", pub,
        "--catalog", tmp_path / "catalog.json",
    )  # fmt: skip
    assert run.rc == 3, run.err
    assert run.error_line() == verdict.error_line()
    assert Reg(registry.url).catalog() == []  # no repository, no blob, no tag
    assert not (tmp_path / "catalog.json").exists()


def test_a_good_signed_bundle_still_imports(k: Keys, tmp_path: Path, registry: LabRegistry) -> None:
    bundle = build_bundle(tmp_path / "b.tar.zst", k)
    run = mirror(
        "import", bundle, "--target", registry.url, "--key", k.pub_path,
        "--catalog", tmp_path / "catalog.json", "--json",
    )  # fmt: skip
    assert run.rc == 0, run.err
    assert Reg(registry.url).catalog() == ["library/app"]


@pytest.mark.parametrize(
    ("flags", "env", "says"),
    [
        (["--base-path", "../x"], {}, "--base-path '../x': not a repository path"),
        (["--base-path", "A/B"], {}, "--base-path 'A/B': not a repository path"),
        (["--images-base-path", "x//y"], {}, "--images-base-path 'x//y'"),
        (["--palette-url", "https://palette.example"], {"PALETTE_API_KEY": ""}, "PALETTE_API_KEY"),
        (["--catalog", "{bad}"], {}, "catalog.json: line 1"),
    ],
)
def test_bad_flags_are_exit_2_before_anything_is_written(
    flags: list[str],
    env: dict[str, str],
    says: str,
    k: Keys,
    tmp_path: Path,
    registry: LabRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    bad_catalog = tmp_path / "catalog.json"
    bad_catalog.write_text("{not json")
    flags = [str(bad_catalog) if f == "{bad}" else f for f in flags]
    if "--catalog" not in flags:
        flags += ["--catalog", str(tmp_path / "good.json")]
    bundle = build_bundle(tmp_path / "b.tar.zst", k)
    run = mirror("import", bundle, "--target", registry.url, "--key", k.pub_path, *flags)
    assert run.rc == 2, run.err
    assert says in run.error_line()
    assert Reg(registry.url).catalog() == []


def test_a_target_url_with_credentials_is_refused(k: Keys, tmp_path: Path) -> None:
    bundle = build_bundle(tmp_path / "b.tar.zst", k)
    run = mirror("import", bundle, "--target", "http://bob:secret@127.0.0.1:1", "--key", k.pub_path)
    assert run.rc == 2 and "credentials don't belong" in run.error_line()
    assert "secret" not in run.err
