"""What a hostile-input sweep found (stop 30): each case is refused in one line, with the
contract's exit code, and leaves what was there as it was.

Outputs that are not files (a FIFO stands in for /dev/null, which an export once replaced),
inputs without an end (/dev/zero), YAML whose aliases expand past any bound, URLs and sizes
that Python's parsers reject with their own exceptions, and answers from a registry that
no registry gives.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import responses
from faultproxy import mirror, write_spec

from mirror.errors import IntegrityError, RegistryError, UsageError


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _still_fifo(path: Path) -> bool:
    return stat.S_ISFIFO(path.lstat().st_mode)


def _one_error(run: Any, code: int) -> str:
    lines = [line for line in run.err.splitlines() if line.strip()]
    assert run.rc == code and len(lines) == 1, run.err
    assert lines[0].startswith("mirror: error: ") and "internal error" not in lines[0], run.err
    return lines[0]


# ---- outputs that are not files ------------------------------------------------------------


@pytest.mark.parametrize("which", ["bundle", "FILE.sha256", "FILE.001"])
def test_an_export_never_replaces_what_is_not_a_file(
    seeded_registry: Any, tmp_path: Path, which: str
) -> None:
    """`-o /dev/null` as root once turned the device into a bundle. A device, FIFO or
    socket at the output path, at a sidecar's or at a part's is refused (exit 2) before
    anything is fetched, and stays what it was."""
    spec = write_spec(tmp_path / "s.yaml", seeded_registry.url, repositories=["images/api-00"])
    out = tmp_path / "out" / "b.tar.zst"
    out.parent.mkdir()
    special = {"bundle": out, "FILE.sha256": Path(f"{out}.sha256"), "FILE.001": Path(f"{out}.001")}
    fifo = _fifo(special[which])
    more = ["--split-size", "1M"] if which == "FILE.001" else []
    run = mirror("export", spec, "-o", out, "--cache-dir", tmp_path / "c", "--json", *more)
    assert "not a regular file" in _one_error(run, 2)
    assert json.loads(run.out)["exitCode"] == 2
    assert _still_fifo(fifo) and sorted(p.name for p in out.parent.iterdir()) == [fifo.name]


@pytest.mark.parametrize("which", ["spec", "spec-link", "since", "key", "sidecar"])
def test_an_export_never_writes_over_its_own_inputs(tmp_path: Path, which: str) -> None:
    """`export spec.yaml -o spec.yaml` replaced the spec with the bundle (with a note),
    and `--since B -o B` the base with its delta. Refused before anything is read."""
    name = "s.sha256" if which == "sidecar" else "s.yaml"  # -o s writes s.sha256 too
    spec, base, key = tmp_path / name, tmp_path / "b.tar.zst", tmp_path / "k.key"
    before = {path: f"{path.name} as it was" for path in (spec, base, key)}
    for path, text in before.items():
        path.write_text(text)
    (tmp_path / "link.yaml").symlink_to(spec)
    out = {"spec": spec, "spec-link": tmp_path / "link.yaml", "since": base, "key": key}
    out["sidecar"] = tmp_path / "s"
    run = mirror(
        "export", spec, "-o", out[which], "--since", base, "--key", key, "--cache-dir",
        tmp_path / "c",
    )  # fmt: skip
    assert "an input of this export" in _one_error(run, 2)
    assert {path: path.read_text() for path in before} == before


def test_an_empty_output_name_is_a_usage_error(tmp_path: Path) -> None:
    """`-o ''` became Path('.'), whose sidecar name raised ValueError: a traceback; and
    `import --mirror-config ''` wrote mirror-registries.txt into the current folder."""
    run = mirror("export", "--preset", "demo", "-o", "", "--json")
    assert "give a file name" in _one_error(run, 2)
    for flag in ("--mirror-config", "--helm-repo-dir", "--receipt", "--catalog"):
        run = mirror("import", tmp_path / "b.tar.zst", "--target", "http://127.0.0.1:1", flag, "")
        assert "an empty name" in _one_error(run, 2)


def test_atomic_writes_refuse_a_special_file_and_replace_a_link(tmp_path: Path) -> None:
    """Every atomic write goes through streams.atomic_file: a FIFO is refused, a symbolic
    link is replaced by the file (its target left alone), as mv would."""
    from mirror.streams import atomic_file

    fifo = _fifo(tmp_path / "fifo")
    with pytest.raises(UsageError, match="not a regular file"), atomic_file(fifo) as fh:
        fh.write(b"x")
    assert _still_fifo(fifo)
    target, link = tmp_path / "target", tmp_path / "link"
    target.write_bytes(b"old")
    link.symlink_to(target)
    with atomic_file(link) as fh:
        fh.write(b"new")
    assert not link.is_symlink() and link.read_bytes() == b"new" and target.read_bytes() == b"old"


def test_keygen_writes_a_named_file_in_its_folder_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--name is a file name: `../x`, `a/b`, `` and `..` are exit 2 (`../x` wrote x.key
    beside the folder); a line break or escape in it too (a file name no listing shows
    plainly); an existing NAME.key, a FIFO too, is never overwritten."""
    monkeypatch.setenv("MIRROR_KEY_PASSWORD", "pw")
    for name in ("../x", "a/b", "", "..", "a\nb", "k\x1b[2J", "nul\0"):
        assert "a file name, without a folder" in _one_error(
            mirror("keygen", "--output-dir", tmp_path / "k", "--name", name), 2
        )
    (tmp_path / "k").mkdir()
    fifo = _fifo(tmp_path / "k" / "release.key")
    run = mirror("keygen", "--output-dir", tmp_path / "k", "--name", "release")
    assert "refusing to overwrite" in _one_error(run, 2) and _still_fifo(fifo)
    assert not (tmp_path / "x.key").exists()


# ---- inputs without an end -----------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["images", "/dev/zero", "--json"],
        ["registries", "list", "--scope", "system", "--catalog", "/dev/zero", "--json"],
    ],
    ids=["spec", "catalog"],
)
def test_an_endless_input_file_is_read_only_to_its_cap(argv: list[str]) -> None:
    """A spec or a catalog at /dev/zero was read until memory ran out (the kernel killed
    the import). Each is read at most one byte past its cap, then refused, exit 2."""
    run = mirror(*argv)
    assert "/dev/zero" in _one_error(run, 2) and "larger than" in run.err
    assert json.loads(run.out)["exitCode"] == 2


def test_an_oversized_login_file_is_named_not_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mirror.registry.auth import login_credentials

    config = tmp_path / "docker"
    config.mkdir()
    with (config / "config.json").open("wb") as fh:
        fh.truncate(17 << 20)  # sparse: 17 MiB of zeros, past the 16 MiB cap
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    with pytest.raises(UsageError, match=r"config\.json: larger than 16\.0 MiB"):
        login_credentials("registry.example:5000")


# ---- YAML past its bounds --------------------------------------------------------------------


def _laughs(levels: int = 9) -> list[str]:
    """A "billion laughs": each anchor a list of nine of the one before: 9^levels values."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return lines


REGISTRY = "registries:\n  - {name: A, kind: oci, url: 'http://127.0.0.1:9'}\n"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("x-laughs:\n" + "".join(f"  {x}\n" for x in _laughs()) + "name: *l9\n" + REGISTRY,
         "aliases expand to more than 1,000,000 values"),
        ("\n".join(_laughs()) + "\nname: x\nimages: *l9\n" + REGISTRY,
         "aliases expand to more than 1,000,000 values"),
        ("a: &a [*a]\nname: x\n" + REGISTRY, "nested deeper than 64 levels"),
        ("name: x\n" + REGISTRY.rstrip("}\n") + ", tags: {latest: " + "9" * 5000 + "}}\n",
         "a number with too many digits"),
    ],
    ids=["laughs-in-a-field", "laughs-in-a-list", "a-cycle", "5000-digits"],
)  # fmt: skip
def test_a_spec_past_yamls_bounds_is_exit_2_at_once(tmp_path: Path, text: str, says: str) -> None:
    """Nine lines of anchors stand for 387 million values: the schema check's error message
    quoted the whole expansion, and the run never ended. They are counted (with each node
    once) before anything walks the document."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    run = mirror("images", spec, "--json")
    assert says in _one_error(run, 2)


def test_chart_yaml_and_values_past_yamls_bounds_are_refused_or_passed_over() -> None:
    """The same bounds hold for what charts and packs carry: Chart.yaml is refused in its
    parser's words (the chart is unreadable), a values.yaml names no image, and says why
    (the scan turns that into a note naming the pack)."""
    import yaml

    from mirror.discovery.images import values_images
    from mirror.formats.helm import _safe_yaml

    laughs = ("\n".join(_laughs()) + "\nname: *l9\n").encode()
    with pytest.raises(yaml.YAMLError, match="aliases expand"):
        _safe_yaml(laughs)
    with pytest.raises(yaml.YAMLError, match="too many digits"):
        _safe_yaml(b"version: " + b"9" * 5000)
    with pytest.raises(ValueError, match="digits"):
        values_images(b"image: x/y:1\nbig: " + b"9" * 5000)


def test_check_yaml_counts_shared_nodes_once_and_lets_real_documents_through() -> None:
    from mirror.formats.jsondoc import DocumentError, check_yaml

    shared: list[Any] = list(range(1000))
    check_yaml({"a": [shared] * 900})  # 900,000 values expanded: under the bound
    with pytest.raises(DocumentError, match="expand to more than"):
        check_yaml({"a": [shared] * 1100})
    check_yaml({"members": [{"path": str(i), "size": i} for i in range(50_000)]})


# ---- values Python's parsers refuse in their own words ---------------------------------------


@pytest.mark.parametrize(
    "target", ["http://[::1", "http://127.0.0.1:99999", "127.0.0.1:port"], ids=str
)
def test_a_malformed_target_url_is_a_usage_error(tmp_path: Path, target: str) -> None:
    """`Invalid IPv6 URL` and `Port out of range` were tracebacks, or exit 1 after a try."""
    bundle = tmp_path / "b.tar.zst"
    bundle.write_bytes(b"x")
    run = mirror("import", bundle, "--target", target, "--allow-unsigned", "--json")
    assert "not a registry URL" in _one_error(run, 2)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://[::1", "expected https://HOST"),
        ("ftp://palette.example", "expected https://HOST"),
        ("https://user:S3cr3t-XYZ@palette.example", "credentials don't belong in the URL"),
    ],
)
def test_a_bad_palette_url_is_refused_before_the_import_touches_anything(
    seeded_registry: Any, tmp_path: Path, url: str, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--palette-url was checked only after every artifact was pushed and the catalog and
    receipt written; now before the bundle is opened."""
    from mirror.lab.registry import running_registry

    spec = write_spec(tmp_path / "s.yaml", seeded_registry.url, repositories=["images/api-00"])
    bundle = tmp_path / "b.tar.zst"
    assert mirror("export", spec, "-o", bundle, "--cache-dir", tmp_path / "c").rc == 0
    catalog, receipt = tmp_path / "cat.json", tmp_path / "r.json"
    monkeypatch.setenv("PALETTE_API_KEY", "key")
    with running_registry(tmp_path / "target") as target:
        where = ["--catalog", catalog, "--receipt", receipt]
        args = ["--target", target.url, "--allow-unsigned", "--palette-url", url, *where]
        run = mirror("import", bundle, *args)
        assert says in _one_error(run, 2) and "S3cr3t" not in run.err
        from mirror.registry.client import RegistryClient

        assert RegistryClient(target.url).catalog() == []
    assert not catalog.exists() and not receipt.exists()


@pytest.mark.parametrize(
    "size", ["9" * 400, "\uff11\uff10G", "1e999"], ids=["400-nines", "wide", "e999"]
)
def test_a_size_past_any_disk_or_in_other_digits_is_exit_2(tmp_path: Path, size: str) -> None:
    """400 nines were float infinity and an OverflowError; full-width digits were read as
    10 by float()."""
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / ".lock").touch()
    run = mirror("cache", "prune", "--max-size", size, "--cache-dir", tmp_path / "c")
    _one_error(run, 2)


def test_cache_prune_removes_blobs_only_from_a_cache_mirror_made(tmp_path: Path) -> None:
    """An OCI layout or containerd's content store has `blobs/` too; prune once took any
    folder with one and would have emptied it."""
    layout = tmp_path / "layout"
    blob = layout / "blobs" / "sha256" / ("a" * 64)
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"keep me")
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    run = mirror("cache", "prune", "--max-size", "0", "--cache-dir", layout)
    assert "is not an export cache" in _one_error(run, 2)
    assert blob.read_bytes() == b"keep me"


# ---- answers no registry gives -----------------------------------------------------------------


@responses.activate
def test_a_listed_tag_that_is_no_tag_never_reaches_a_url() -> None:
    """`../../x` in a tag list became `GET /v2/x` on the same host (the path resolved)."""
    from mirror.registry.client import RegistryClient

    listing = {"name": "a/b", "tags": ["1.0", "../../x"]}
    responses.get("https://reg.example/v2/a/b/tags/list?n=1000", json=listing)
    with pytest.raises(IntegrityError, match=r"listed '\.\./\.\./x', which is not an OCI tag"):
        RegistryClient("reg.example").list_tags("a/b")
    assert len(responses.calls) == 1


@responses.activate
def test_a_listed_repository_that_is_no_name_never_reaches_a_url() -> None:
    """`../../etc` in `_catalog` became `GET /etc/tags/list`, `/etc/manifests/...` and
    `/etc/blobs/...`, outside /v2/, each with the registry's credentials."""
    from mirror.registry.client import RegistryClient

    listing = {"repositories": ["a/b", "../../etc"]}
    responses.get("https://reg.example/v2/_catalog?n=1000", json=listing)
    with pytest.raises(IntegrityError, match=r"listed '\.\./\.\./etc', which is not an OCI rep"):
        RegistryClient("reg.example").catalog()
    assert len(responses.calls) == 1


@pytest.mark.parametrize("kind", ["same-page", "two-page-loop", "endless"])
@responses.activate
def test_a_listing_that_never_ends_is_refused_before_memory_runs_out(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20,000 tags a page, each page linking to itself: RSS grew 110 MB a second until
    100,000 pages. A page asked twice is a circle; past MAX_LISTED names, enough."""
    from mirror.registry import client as module

    monkeypatch.setattr(module, "MAX_LISTED", 100)
    base = "https://reg.example/v2/a/tags/list"

    def page(request: Any) -> tuple[int, dict[str, str], str]:
        n = int(request.params.get("p", "0"))
        target = {"same-page": 0, "two-page-loop": 1 - n, "endless": n + 1}[kind]
        link = f'</v2/a/tags/list?n=1000&p={target}>; rel="next"'
        tags = [f"t{n}-{i}" for i in range(20)]
        return 200, {"Link": link}, json.dumps({"name": "a", "tags": tags})

    responses.add_callback(responses.GET, base, callback=page)
    words = "more than 100 names" if kind == "endless" else "links in a circle"
    with pytest.raises(RegistryError, match=words):
        module.RegistryClient("reg.example").list_tags("a")
    assert len(responses.calls) <= 6


_REG = "https://reg.example"
_SECRET = "pa55-w0rd-Zq"


def _client() -> Any:
    from mirror.registry.auth import Credentials
    from mirror.registry.client import RegistryClient

    return RegistryClient("reg.example", credentials=Credentials("u", _SECRET))


@responses.activate
def test_a_manifest_the_registry_stored_as_other_bytes_is_a_failure() -> None:
    """A registry that re-encodes a pushed manifest says so in Docker-Content-Digest: the
    tag then names other bytes than the import reported (exit 0, a wrong --json)."""
    other = "sha256:" + "1c" * 32
    responses.put(f"{_REG}/v2/a/manifests/1", status=201, headers={"Docker-Content-Digest": other})
    with pytest.raises(RegistryError, match=f"stored {other}, not the pushed sha256:"):
        _client().put_manifest("a", "1", b"{}", "application/vnd.oci.image.manifest.v1+json")


@pytest.mark.parametrize("where", ["http://elsewhere:9/v2/up/{}", "http://[zz/{}"])
@responses.activate
def test_an_upload_sent_elsewhere_names_no_secret_and_sends_nothing_there(where: str) -> None:
    """The Location's URL was printed whole: a server put the password in it."""
    from io import BytesIO

    from mirror.oci.descriptor import descriptor_for

    loc = where.format(_SECRET)
    responses.post(f"{_REG}/v2/a/blobs/uploads/", status=202, headers={"Location": loc})
    data = b"x"
    with pytest.raises(RegistryError, match="upload redirected to another host") as info:
        _client().push_blob("a", descriptor_for(data, "x"), BytesIO(data), skip_present=False)
    assert _SECRET not in str(info.value) and len(responses.calls) == 1


@responses.activate
def test_a_declined_mount_is_cancelled_on_this_host_only() -> None:
    """The courtesy DELETE of a declined mount went to whatever host the Location named."""
    from mirror.oci.descriptor import descriptor_for

    loc = {"Location": "http://elsewhere:9/v2/a/blobs/uploads/x"}
    responses.post(f"{_REG}/v2/a/blobs/uploads/", status=202, headers=loc)
    assert not _client().mount_blob("a", descriptor_for(b"x", "x"), "b")
    assert [c.request.method for c in responses.calls] == ["POST"]


@responses.activate
def test_a_page_for_a_manifest_is_the_registrys_failure_with_its_place() -> None:
    """An HTML login page for a manifest was exit 3 (a tampered bundle, to a script) and
    named neither host nor repository."""
    html = {"body": b"<html>log in</html>", "content_type": "text/html"}
    responses.get(f"{_REG}/v2/a/b/manifests/1", status=200, **html)
    with pytest.raises(RegistryError, match=r"reg\.example/a/b:1: the answer is no manifest"):
        _client().get_manifest("a/b", "1")


@responses.activate
def test_a_404_says_so_with_the_registrys_words() -> None:
    """An upload refused 404 said only the repository's name, no status, no reason."""
    from io import BytesIO

    from mirror.errors import NotFoundError
    from mirror.oci.descriptor import descriptor_for

    words = {"errors": [{"code": "NAME_UNKNOWN", "message": "repository name not known"}]}
    responses.post(f"{_REG}/v2/a/blobs/uploads/", status=404, json=words)
    with pytest.raises(NotFoundError, match=r"takes no upload \(404: .*name not known"):
        _client().push_blob("a", descriptor_for(b"x", "x"), BytesIO(b"x"), skip_present=False)


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"config": "x", "layers": 7}'])
def test_a_manifest_that_is_no_json_object_is_named_not_a_traceback(body: bytes) -> None:
    from mirror.discovery.oci import kind_of
    from mirror.oci import mediatypes as mt
    from mirror.oci.descriptor import descriptor_for

    desc = descriptor_for(body, mt.OCI_MANIFEST)
    if body.startswith(b"{"):
        assert kind_of(desc, body)  # odd fields: classified by what is there
        return
    with pytest.raises(IntegrityError, match="manifest sha256:"):
        kind_of(desc, body)


def test_a_bug_is_still_one_line_and_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever escapes the error hierarchy (a bug) is the contract's one line, exit 1,
    saying it is one; --debug shows the traceback."""
    import mirror.cli.review as review

    def broken(*args: Any, **kwargs: Any) -> None:
        raise KeyError("surprise")

    monkeypatch.setattr(review, "require_bundle", broken)
    run = mirror("verify", "x.tar.zst", "--json")
    lines = run.err.splitlines()
    assert run.rc == 1 and len(lines) == 1 and "internal error: KeyError" in lines[0]
    assert mirror("--debug", "verify", "x.tar.zst").err.count("Traceback") == 1


def test_a_small_file_that_is_no_file_is_refused_without_a_leak(tmp_path: Path) -> None:
    """A folder, or (found beside a bundle) a FIFO, is refused before it is read; the
    descriptor opened to look is closed, however often it happens."""
    from mirror.streams import read_small_file

    os.mkfifo(tmp_path / "fifo")
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        for found in (False, True):
            with pytest.raises(IsADirectoryError):
                read_small_file(tmp_path, 10, found=found)
        with pytest.raises(OSError, match="not a regular file"):
            read_small_file(tmp_path / "fifo", 10, found=True)
    assert len(os.listdir("/proc/self/fd")) == before
    assert read_small_file(tmp_path / "absent", 10, found=True) is None
