"""Image discovery as a pure function: references, values.yaml lists, chart annotations."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from mirror.discovery.images import (
    SPEC,
    Scan,
    build_closure,
    chart_annotation_images,
    scan_artifact,
    values_images,
)
from mirror.formats.pack import build_pack_archive, pack_artifact
from mirror.oci.reference import parse_reference
from mirror.stores.memory import MemorySource


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("nginx", "docker.io/library/nginx:latest"),
        ("nginx:1.25", "docker.io/library/nginx:1.25"),
        ("dellemc/sdc:4.5.1", "docker.io/dellemc/sdc:4.5.1"),
        ("docker.io/curlimages/curl", "docker.io/curlimages/curl:latest"),
        ("index.docker.io/library/busybox:1", "docker.io/library/busybox:1"),
        ("localhost/app:1", "localhost/app:1"),
        ("localhost:5000/app", "localhost:5000/app:latest"),
        ("ghcr.io/in-toto/archivista:0.8.0", "ghcr.io/in-toto/archivista:0.8.0"),
        (
            "Quay.IO/jetstack/cert-manager-webhook:v1.11.0",
            "quay.io/jetstack/cert-manager-webhook:v1.11.0",
        ),
        ("registry.k8s.io/pause@sha256:" + "a" * 64, "registry.k8s.io/pause@sha256:" + "a" * 64),
        ("ghcr.io/x/y:1.0@sha256:" + "b" * 64, "ghcr.io/x/y:1.0@sha256:" + "b" * 64),
        ("127.0.0.1:5000/a/b:c", "127.0.0.1:5000/a/b:c"),
    ],
)
def test_references_normalize_as_docker_does(text: str, want: str) -> None:
    assert str(parse_reference(text)) == want


def test_docker_hub_is_asked_at_its_api_host_and_a_pin_by_digest() -> None:
    ref = parse_reference("nginx:1.25")
    assert (ref.host, ref.api_host, ref.reference) == ("docker.io", "registry-1.docker.io", "1.25")
    pinned = parse_reference("ghcr.io/x/y:1.0@sha256:" + "c" * 64)
    assert pinned.reference == "sha256:" + "c" * 64 and pinned.tag == "1.0"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ghcr.io/x/{{ .Values.tag }}",
        "{{.spectro.pack.edge-native-byoi.options.system.uri}}",
        "UPPER/case:1",
        "ghcr.io/x:bad tag",
        "ghcr.io/x@sha256:short",
        "ghcr.io/x:-leading-dash",
        "ghcr.io/",
        "a" * 600,
        "nginx@",  # an empty pin was `:latest`, a mutable tag where a digest was meant
        "ghcr.io/acme/x@",
        "ghcr.io./x:1",  # accepted, fetched, then exit 3: no repository lands under it
        "[::1]:5000/x:1",
    ],
)
def test_malformed_and_templated_references_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_reference(text)


VALUES = b"""
pack:
  namespace: demo
  content:
    images:
      - image: ghcr.io/acme/tool:1.2.3
      - image: nginx
      - image: "{{ .spectro.system.registry }}/app:1"
charts:
  demo:
    image:
      repository: quay.io/acme/sidecar
      tag: v2
    other:
      image: ghcr.io/acme/tool:1.2.3
"""


def test_values_list_and_fuzzy_guesses() -> None:
    listed, maybe = values_images(VALUES)
    assert listed == [
        "ghcr.io/acme/tool:1.2.3",
        "nginx",
        "{{ .spectro.system.registry }}/app:1",
    ]
    assert "quay.io/acme/sidecar:v2" in maybe


@pytest.mark.timeout(30)
def test_a_billion_laughs_values_yaml_is_walked_once_per_node() -> None:
    """Nine levels of aliases, 1.3 KB: as a tree, 10^9 visits and minutes at 100% CPU with
    Ctrl-C unheard (verify scans every pack it carries). Each node is visited once."""
    lines = ["a0: &a0 {image: ghcr.io/acme/lol:1, repository: r, tag: t}"]
    for n in range(1, 10):
        refs = ", ".join([f"*a{n - 1}"] * 10)
        lines.append(f"a{n}: &a{n} [{refs}]")
    listed, maybe = values_images(("\n".join(lines) + "\n").encode())
    assert listed == [] and set(maybe) == {"ghcr.io/acme/lol:1", "r:t"}


def test_closure_deduplicates_attributes_and_warns_once_per_template() -> None:
    a = Scan(listed=["ghcr.io/acme/tool:1.2.3", "nginx", "{{ x }}/y:1"], maybe=["quay.io/s:1"])
    b = Scan(listed=["docker.io/library/nginx:latest"], maybe=["ghcr.io/acme/tool:1.2.3"])
    closure = build_closure([("packs/a:1", a), ("packs/b:1", b)], ["nginx:latest"])
    refs = {str(n.ref): n.needed_by for n in closure.images}
    assert refs == {
        "docker.io/library/nginx:latest": (SPEC, "packs/a:1", "packs/b:1"),
        "ghcr.io/acme/tool:1.2.3": ("packs/a:1",),
    }
    (bad,) = closure.unresolved
    assert bad.text == "{{ x }}/y:1" and bad.needed_by == ("packs/a:1",)
    assert "packs/a:1" in bad.warning() and "{{ x }}/y:1" in bad.warning()
    # A listed image is never also a "maybe"; an unlisted one is, and is not carried.
    assert [str(m.ref) for m in closure.maybe] == ["quay.io/s:1"]


def _chart_tgz(name: str, images: list[str], subcharts: dict[str, bytes] | None = None) -> bytes:
    """A chart archive whose Chart.yaml lists `images` in artifacthub.io/images."""
    listing = "".join(f"- name: i{n}\n  image: {img}\n" for n, img in enumerate(images))
    chart = {
        "apiVersion": "v2",
        "name": name,
        "version": "1.0.0",
        "annotations": {"artifacthub.io/images": listing},
    }
    files = {f"{name}/Chart.yaml": json.dumps(chart).encode(), f"{name}/values.yaml": b"{}\n"}
    for sub, data in (subcharts or {}).items():
        files[f"{name}/charts/{sub}.tgz"] = data
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_chart_annotations_both_keys() -> None:
    doc = {
        "name": "c",
        "annotations": {
            "artifacthub.io/images": "- name: a\n  image: ghcr.io/a:1\n",
            "helm.sh/images": "- name: b\n  image: quay.io/b:2\n",
        },
    }
    assert chart_annotation_images(json.dumps(doc).encode()) == ["ghcr.io/a:1", "quay.io/b:2"]
    assert chart_annotation_images(b"name: c\nannotations: {artifacthub.io/images: 3}\n") == []


def test_a_pack_folder_names_its_list_and_its_charts_and_subcharts(tmp_path: Path) -> None:
    sub = _chart_tgz("redis", ["docker.io/bitnami/redis:7.2"])
    top = _chart_tgz("web", ["ghcr.io/acme/web:1"], {"redis": sub})
    pack = tmp_path / "web-1.0.0"
    (pack / "charts").mkdir(parents=True)
    (pack / "charts" / "web-1.0.0.tgz").write_bytes(top)
    (pack / "pack.json").write_text(
        json.dumps({"name": "web", "version": "1.0.0", "layer": "addon", "addonType": "app"})
    )
    (pack / "values.yaml").write_bytes(VALUES)
    filename, archive = build_pack_archive(pack)
    art = pack_artifact(archive, filename)
    source = MemorySource("t", [art])
    scan = scan_artifact(source, art.descriptor, packs=True, charts=True)
    assert sorted(scan.listed) == [
        "docker.io/bitnami/redis:7.2",
        "ghcr.io/acme/tool:1.2.3",
        "ghcr.io/acme/web:1",
        "nginx",
        "{{ .spectro.system.registry }}/app:1",
    ]
    # imagesFrom: [charts] reads only the charts; [packs] only the list; [] nothing.
    only_charts = scan_artifact(source, art.descriptor, packs=False, charts=True)
    assert set(only_charts.listed) == {"ghcr.io/acme/web:1", "docker.io/bitnami/redis:7.2"}
    only_list = scan_artifact(source, art.descriptor, packs=True, charts=False)
    assert len(only_list.listed) == 3
    assert scan_artifact(source, art.descriptor, packs=False, charts=False).listed == []


def test_a_values_yaml_that_is_not_yaml_is_said_not_silent(tmp_path: Path) -> None:
    """An unquoted `{{ .spectro... }}` elsewhere in values.yaml made its whole list vanish:
    `mirror images` printed [] with no word, and verify, reading the same way, agreed."""
    from mirror.discovery.images import build_closure

    pack = tmp_path / "web-1.0.0"
    pack.mkdir()
    (pack / "pack.json").write_text(
        json.dumps({"name": "web", "version": "1.0.0", "layer": "addon", "addonType": "app"})
    )
    broken = VALUES + b"\nhost: {{ .spectro.system.cluster.name }}\n"
    (pack / "values.yaml").write_bytes(broken)
    filename, archive = build_pack_archive(pack)
    art = pack_artifact(archive, filename)
    scan = scan_artifact(MemorySource("t", [art]), art.descriptor, packs=True, charts=True)
    assert scan.listed == [] and len(scan.unread) == 1
    notes = build_closure([("web:1.0.0", scan)]).notes
    assert notes == [f"web:1.0.0: {scan.unread[0]}"] and "values.yaml is not YAML" in notes[0]
    (pack / "values.yaml").write_bytes(b"")  # empty: names nothing, and says nothing
    filename, archive = build_pack_archive(pack)
    art = pack_artifact(archive, filename)
    assert (
        scan_artifact(MemorySource("t", [art]), art.descriptor, packs=True, charts=True).unread
        == []
    )


def test_a_broken_archive_names_nothing_and_does_not_crash() -> None:
    from mirror.oci import mediatypes as mt
    from mirror.oci.artifact import single_layer_artifact

    art = single_layer_artifact(b"{}", mt.UNKNOWN_CONFIG, b"not a tarball", mt.OCI_LAYER_TAR, {})
    scan = scan_artifact(MemorySource("t", [art]), art.descriptor, packs=True, charts=True)
    assert scan.listed == [] and scan.maybe == []


def test_every_corpus_pack_list_resolves_and_deduplicates(corpus: Path) -> None:
    """The real corpus: 62 packs list `pack.content.images` (two more say `images:` only in
    a comment or elsewhere); every listed reference normalizes."""
    scans = []
    for values in sorted(corpus.glob("*/values.yaml")):
        listed, _ = values_images(values.read_bytes())
        if listed:
            scans.append((values.parent.name, Scan(listed=listed)))
    assert len(scans) == 62
    closure = build_closure(scans)
    assert closure.unresolved == []
    assert len(closure.images) == 323
    hosts = {n.ref.host for n in closure.images}
    assert {"ghcr.io", "quay.io", "registry.k8s.io", "docker.io", "public.ecr.aws"} <= hosts
    short = next(n for n in closure.images if str(n.ref) == "docker.io/dellemc/sdc:4.5.1")
    assert short.original == "dellemc/sdc:4.5.1"
    pins = [n for n in closure.images if n.ref.digest]
    assert pins and all(n.ref.reference == n.ref.digest for n in pins)
    shared = [n for n in closure.images if len(n.needed_by) > 1]
    assert shared, "some image is needed by two packs"


def test_a_layer_scanned_as_it_landed_is_not_read_again(tmp_path: Path) -> None:
    """The engine's hook scans a pack layer on the copy worker, reading it back from the
    bundle store; discovery then uses that scan and fetches nothing (the layer used to be
    read twice on every export)."""
    from contextlib import contextmanager

    from mirror.cache import BlobCache
    from mirror.copy import CopyOptions, CopyTask, copy_graphs
    from mirror.discovery.landed import ContentScan
    from mirror.stores.bundle import BundleStore

    pack = tmp_path / "web-1.0.0"
    pack.mkdir()
    (pack / "pack.json").write_text(json.dumps({"name": "web", "version": "1.0.0"}))
    (pack / "values.yaml").write_bytes(VALUES)
    filename, archive = build_pack_archive(pack)
    art = pack_artifact(archive, filename)
    target, hook = BundleStore.staging(BlobCache(tmp_path / "cache")), ContentScan()
    task = CopyTask(MemorySource("m", [art]), target, art.descriptor, "web:1.0.0", "web")
    copy_graphs([task], options=CopyOptions(hooks=(hook,)))
    assert set(hook.scans) == {d.digest for d, _ in art.blobs if d.media_type.endswith("tar")}

    class NoFetch(MemorySource):
        @contextmanager  # type: ignore[override]
        def fetch(self, desc: object) -> object:
            raise AssertionError("the layer was read again")
            yield

    source = NoFetch("t", [art])
    scan = scan_artifact(source, art.descriptor, packs=True, charts=True, known=hook.scans)
    assert scan.listed[:2] == ["ghcr.io/acme/tool:1.2.3", "nginx"]
    assert hook.packs  # pack.json from the same single read
