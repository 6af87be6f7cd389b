"""The hostile-bundle corpus, one table: each case's verdict for `verify`, `import`, `inspect`
and `serve` (issue 15, items 1 and 7; serve takes verify's verdict, as import does).

Every bundle is framed as mirror frames one (a table of contents pointing at each listed
member's right bytes) and carries a valid FILE.sig by the trusted key, so a reader that
trusted FILE.sig and seeked through the table would be fooled: the only lie is the one the
case names. `import` must give `verify`'s verdict, in the same line, before a single request
reaches the target: the fault proxy in front of the lab registry counts them. `inspect`
reads only the head: it refuses what it cannot read there, and says nothing of the rest.
"""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from faultproxy import FaultProxy, Reg, isolated_env, mirror
from test_bundle_support import (
    Keys,
    framed_bundle,
    layout_entries,
    make_keys,
    make_layout,
    manifest_doc,
    sha,
    tar_entry,
)

from mirror import signing
from mirror.lab.registry import LabRegistry

pytestmark = [pytest.mark.registry, pytest.mark.timeout(120)]
Entry = tuple[tarfile.TarInfo, bytes]
LAYER = "blobs/sha256/" + sha(b"layer two")


@dataclass(frozen=True)
class Case:
    """How to build the bundle, then the exit code of verify, import and inspect."""

    build: Callable[[Path, Keys, Keys], Path]
    verify: int
    imports: int
    inspect: int
    says: str = ""  # a regex verify's one line must match


def _files() -> dict[str, bytes]:
    return make_layout().files


def _manifest(k: Keys, listed: dict[str, bytes] | None = None, **change: Any) -> bytes:
    layout = make_layout()
    files = layout.files if listed is None else listed
    doc = json.loads(manifest_doc(files, layout.root, signer=k.fingerprint).to_bytes())
    doc.update(change)
    return json.dumps(doc).encode()


def _framed(entries: list[Entry], **kw: Any) -> Callable[[Path, Keys, Keys], Path]:
    def build(out: Path, k: Keys, other: Keys) -> Path:
        return framed_bundle(out, k, entries, manifest=_manifest(k), **kw)

    return build


def _with(extra: Entry, at: int = -1) -> list[Entry]:
    entries = layout_entries(_files())
    entries.insert(len(entries) if at < 0 else at, extra)
    return entries


def _replace(path: str, new: Entry) -> list[Entry]:
    return [new if info.name == path else (info, data) for info, data in layout_entries(_files())]


def _renamed(path: str, to: str) -> list[Entry]:
    """The member PATH, its ustar name kept, renamed to TO by a pax header."""
    info, data = tar_entry(path, _files()[path])
    info.pax_headers = {"path": to}
    return _replace(path, (info, data))


def _link(name: str, kind: bytes) -> Entry:
    return tar_entry(name, kind=kind)


def _missing_layer(out: Path, k: Keys, other: Keys) -> Path:
    entries = [e for e in layout_entries(_files()) if e[0].name != LAYER]
    return framed_bundle(out, k, entries, manifest=_manifest(k))


def _flipped_blob() -> list[Entry]:
    info, data = tar_entry(LAYER, _files()[LAYER])
    return _replace(LAYER, (info, bytes([data[0] ^ 1]) + data[1:]))


def _larger_than_listed() -> list[Entry]:
    return _replace(LAYER, tar_entry(LAYER, _files()[LAYER] + b"!"))


def _head(manifest: bytes, sig: bytes | None) -> list[Entry]:
    head = [tar_entry("manifest.json", manifest)]
    return head + ([tar_entry("manifest.json.sig", sig)] if sig is not None else [])


def _manifest_not_first(out: Path, k: Keys, other: Keys) -> Path:
    m = _manifest(k)
    entries = layout_entries(_files())
    entries[1:1] = _head(m, signing.sign_bytes(k.key, m))
    return framed_bundle(out, k, entries, manifest=m, head=False)


def _signed_by(which: str) -> Callable[[Path, Keys, Keys], Path]:
    """manifest.json signed by the other key, or not signed at all."""

    def build(out: Path, k: Keys, other: Keys) -> Path:
        m = _manifest(k)
        sig = signing.sign_bytes(other.key, m) if which == "other" else None
        entries = [*_head(m, sig), *layout_entries(_files())]
        return framed_bundle(out, k, entries, manifest=m, head=False)

    return build


def _file_sig_by_other(out: Path, k: Keys, other: Keys) -> Path:
    framed_bundle(out, k, layout_entries(_files()), manifest=_manifest(k))
    signing.write_detached(out, signing.sha256_file(out), other.key)
    return out


def _manifest_is(body: Callable[[Keys], bytes]) -> Callable[[Path, Keys, Keys], Path]:
    def build(out: Path, k: Keys, other: Keys) -> Path:
        return framed_bundle(out, k, layout_entries(_files()), manifest=body(k))

    return build


def _schema_violation(k: Keys) -> bytes:
    doc = json.loads(_manifest(k))
    doc["artifacts"][0]["kind"] = "virus"
    return json.dumps(doc).encode()


def _cut_in_a_blob(out: Path, k: Keys, other: Keys) -> Path:
    framed_bundle(out, k, layout_entries(_files()), manifest=_manifest(k))
    out.write_bytes(out.read_bytes()[: out.stat().st_size * 2 // 3])
    signing.write_detached(out, signing.sha256_file(out), k.key)
    return out


def _not_zstd(out: Path, k: Keys, other: Keys) -> Path:
    out.write_bytes(b"PK\x03\x04 not a bundle at all" * 100)
    signing.write_detached(out, signing.sha256_file(out), k.key)
    return out


def _index_names_an_absent_blob(out: Path, k: Keys, other: Keys) -> Path:
    files = _files()
    del files[LAYER]
    return framed_bundle(out, k, layout_entries(files), manifest=_manifest(k, files))


SYM, HARD = tarfile.SYMTYPE, tarfile.LNKTYPE
CASES: dict[str, Case] = {
    "a good bundle (the control)": Case(_framed(layout_entries(_files())), 0, 0, 0),
    # names
    "an unlisted ../x member": Case(
        _framed(_with(tar_entry("../x", b"evil"), 0)), 3, 3, 0, r"\.\./x: unsafe member name"
    ),
    "an absolute /etc/x member": Case(
        _framed(_with(tar_entry("/etc/x", b"evil"))), 3, 3, 0, "/etc/x: unsafe member name"
    ),
    "a member in no normal form (./index.json)": Case(
        _framed(_with(tar_entry("./index.json", b"{}"))), 3, 3, 0, "not in normal form"
    ),
    "an unlisted blob": Case(
        _framed(_with(tar_entry("blobs/sha256/" + sha(b"x"), b"x"))), 3, 3, 0, "not listed"
    ),
    # kinds
    "an extra symlink": Case(
        _framed(_with(_link("blobs/evil", SYM))), 3, 3, 0, "blobs/evil: symlink entries"
    ),
    "a listed member that is a symlink": Case(
        _framed(_replace("oci-layout", _link("oci-layout", SYM))), 3, 3, 0, "oci-layout: symlink"
    ),
    "a listed member that is a hardlink": Case(
        _framed(_replace(LAYER, _link(LAYER, HARD))), 3, 3, 0, f"{LAYER}: hardlink entries"
    ),
    "a FIFO": Case(_framed(_with(_link("blobs/f", tarfile.FIFOTYPE))), 3, 3, 0, "FIFO entries"),
    "a character device": Case(
        _framed(_with(_link("blobs/c", tarfile.CHRTYPE))), 3, 3, 0, "character device entries"
    ),
    "a block device": Case(
        _framed(_with(_link("blobs/b", tarfile.BLKTYPE))), 3, 3, 0, "block device entries"
    ),
    "a directory": Case(
        _framed(_with(_link("blobs/d", tarfile.DIRTYPE))), 3, 3, 0, "directory entries"
    ),
    # presence
    "a listed member that is missing": Case(
        _missing_layer, 3, 3, 0, f"{LAYER}: listed in manifest.json but not in the archive"
    ),
    "a duplicate that shadows a listed member": Case(
        _framed(_with(tar_entry("index.json", b'{"evil": 1}'))), 3, 3, 0, "index.json: duplicate"
    ),
    "a second manifest.json": Case(
        _framed(_with(tar_entry("manifest.json", b"{}"))), 3, 3, 0, "manifest.json: duplicate"
    ),
    "a pax header renames a listed member to an unlisted name": Case(
        _framed(_renamed(LAYER, "blobs/sha256/" + sha(b"elsewhere"))), 3, 3, 0, "not listed"
    ),
    "a pax header renames a member to ../x": Case(
        _framed(_renamed(LAYER, "../x")), 3, 3, 0, r"\.\./x: unsafe member name"
    ),
    "a pax header renames a member onto another": Case(
        _framed(_renamed(LAYER, "index.json")), 3, 3, 0, "index.json: duplicate member"
    ),
    "the table of contents leaves a member out": Case(
        _framed(layout_entries(_files()), not_in_toc=("index.json",)),
        *(3, 3, 0),
        "index.json: archive and table of contents disagree",
    ),
    "an index.json naming a blob nobody packed": Case(
        _index_names_an_absent_blob, 3, 3, 0, f"{LAYER}: named by"
    ),
    # bytes
    "a flipped byte in a blob": Case(
        _framed(_flipped_blob()), 3, 3, 0, f"{LAYER}: sha256 does not match"
    ),
    "a header larger than the listed size": Case(
        _framed(_larger_than_listed()), 3, 3, 0, f"{LAYER}: archive says 10 bytes"
    ),
    "garbage after the end-of-archive marker": Case(
        _framed(layout_entries(_files()), trailer=b"smuggled" * 64), 3, 3, 0, "after the end"
    ),
    "a zero bomb after the end-of-archive marker": Case(
        _framed(layout_entries(_files()), trailer=bytes(4 << 20)), 3, 3, 0, "after the end"
    ),
    "cut short inside a blob, then signed": Case(_cut_in_a_blob, 3, 3, 0),
    "not a zstd file": Case(_not_zstd, 3, 3, 3),
    # the head
    "manifest.json is not the first member": Case(
        _manifest_not_first, 3, 3, 3, "manifest.json is not the first member"
    ),
    "manifest.json signed by another key": Case(
        _signed_by("other"), 3, 3, 0, "manifest.json: signature does not verify"
    ),
    "manifest.json not signed at all": Case(
        _signed_by("nobody"), 3, 3, 0, "manifest.json: the bundle is not signed"
    ),
    "FILE.sig by another key": Case(
        _file_sig_by_other, 3, 3, 0, r"b\.tar\.zst\.sig: signature does not verify"
    ),
    "a manifest claiming another signer": Case(
        _manifest_is(lambda k: _manifest(k, signer="ab" * 32)), 3, 3, 0, "claims signer"
    ),
    "a manifest that breaks its schema": Case(
        _manifest_is(_schema_violation), 3, 3, 3, "schema violation at /artifacts/0/kind"
    ),
    "a manifest nested 200,000 deep": Case(
        _manifest_is(lambda k: b"[" * 200_000 + b"]" * 200_000), 3, 3, 3, "nested deeper"
    ),
    "a manifest listing a member twice": Case(
        _manifest_is(lambda k: _manifest(k, members=[*json.loads(_manifest(k))["members"]] * 2)),
        *(3, 3, 3),
        "a member is listed twice",
    ),
}


@pytest.fixture(scope="module", autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with isolated_env(tmp_path_factory):
        yield


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Keys, Keys]:
    d = tmp_path_factory.mktemp("keys")
    return make_keys(d), make_keys(d, "other")


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LabRegistry, FaultProxy]]:
    """One lab registry for the whole table, behind a proxy that counts every request."""
    from conftest import require_registry

    from mirror.lab import start_registry

    require_registry()
    reg = start_registry(tmp_path_factory.mktemp("target"), flavour="anon")
    try:
        with FaultProxy.running(reg.url) as proxy:
            yield reg, proxy
    finally:
        reg.stop()


def _serve_gives(rc: int, line: str, bundle: Path, k: Keys) -> None:
    """`serve` opens its store by the same verdict: refused in the same words, or served."""
    from mirror.errors import MirrorError
    from mirror.serve.server import ServeOptions, open_store

    opts = ServeOptions(bundle, k.pub)
    if rc == 0:
        store, _ = open_store(opts)
        assert store is not None
        return
    with pytest.raises(MirrorError) as refused:
        open_store(opts)
    assert refused.value.exit_code == rc
    assert line.strip() == f"mirror: error: {refused.value}"


def _slug(case: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", case.lower()).strip("-")


@pytest.mark.parametrize("case", list(CASES))
def test_each_hostile_bundle_gets_one_verdict_per_command(
    case: str,
    keys: tuple[Keys, Keys],
    target: tuple[LabRegistry, FaultProxy],
    tmp_path: Path,
) -> None:
    k, other = keys
    want = CASES[case]
    bundle = want.build(tmp_path / "b.tar.zst", k, other)

    verdict = mirror("verify", bundle, "--key", k.pub_path)
    assert verdict.rc == want.verify, verdict.err
    if want.verify:
        assert re.search(want.says, verdict.error_line()), verdict.err

    reg, proxy = target
    proxy.clear()
    base = _slug(case)
    catalog = tmp_path / "catalog.json"
    run = mirror(
        "import", bundle, "--target", proxy.url, "--key", k.pub_path,
        "--catalog", catalog, "--base-path", base,
    )  # fmt: skip
    assert run.rc == want.imports, run.err
    landed = [r for r in Reg(reg.url).catalog() if r.startswith(base + "/")]
    if want.imports:
        assert run.error_line() == verdict.error_line()  # one verdict, in the same words
        assert proxy.seen() == 0, "a refused bundle sent a request to the target"
        assert landed == [] and not catalog.exists()
    else:
        assert landed == [f"{base}/library/app"] and Reg(reg.url).dangling() == []

    _serve_gives(verdict.rc, verdict.err, bundle, k)

    shown = mirror("inspect", bundle, "--json")
    assert shown.rc == want.inspect, shown.err
    if want.inspect:
        shown.error_line()
    else:
        assert shown.json()["signerVerified"] is False  # a claim, never a verdict
