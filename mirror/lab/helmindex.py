"""A Bitnami-shaped Helm index.yaml of any size, the same bytes for the same arguments.

The big public indexes are block-style YAML as Go's yaml.v2 writes it: a few hundred
charts, each with many versions, each version a Chart.yaml's fields plus `urls`,
`digest` and `created`, about 950 bytes of it. Scale benchmarks and tests parse this
instead of fetching a real one (tests never leave loopback).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from collections.abc import Mapping

_CATEGORIES = ("Database", "Analytics", "Infrastructure", "DeveloperTools", "WorkFlow")


def _hex(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


def version_of(i: int) -> str:
    """The i-th version of each chart, all distinct for i < 1200 (newest is i = 39)."""
    return f"{30 - i // 40}.{(i // 8) % 5}.{i % 8}"


def chart_tgz(name: str, version: str) -> bytes:
    """A minimal chart archive (Chart.yaml, values.yaml), the same bytes every time."""
    files = {
        f"{name}/Chart.yaml": f"apiVersion: v2\nname: {name}\nversion: {version}\n".encode(),
        f"{name}/values.yaml": b"replicaCount: 1\n",
    }
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def _version(chart: str, i: int, base: str, digests: Mapping[tuple[str, str], str]) -> str:
    """One entry, indented as under `entries: <chart>:`; versions newest first."""
    version = version_of(i)
    app = f"{2 + i % 7}.{i % 11}.{i % 13}"
    stamp = f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T10:{i % 60:02d}:38.960941862Z"
    return (
        "  - annotations:\n"
        f"      category: {_CATEGORIES[i % len(_CATEGORIES)]}\n"
        "      images: |\n"
        f"        - name: {chart}\n"
        f"          image: docker.io/bitnami/{chart}:{app}-debian-12-r{i % 30}\n"
        "      licenses: Apache-2.0\n"
        "    apiVersion: v2\n"
        f"    appVersion: {app}\n"
        f'    created: "{stamp}"\n'
        "    dependencies:\n"
        "    - name: common\n"
        "      repository: oci://registry-1.docker.io/bitnamicharts\n"
        "      tags:\n"
        "      - bitnami-common\n"
        "      version: 2.x.x\n"
        f"    description: {chart.capitalize()} is an open source, advanced key-value store.\n"
        f"    digest: {digests.get((chart, version)) or _hex(chart, version)}\n"
        "    home: https://bitnami.com\n"
        f"    icon: https://bitnami.com/assets/stacks/{chart}/img/{chart}-stack-220x234.png\n"
        "    keywords:\n"
        f"    - {chart}\n"
        "    - database\n"
        "    maintainers:\n"
        "    - name: Broadcom, Inc.\n"
        "      url: https://github.com/bitnami/charts\n"
        f"    name: {chart}\n"
        "    sources:\n"
        f"    - https://github.com/bitnami/charts/tree/main/bitnami/{chart}\n"
        "    urls:\n"
        f"    - {base}{chart}-{version}.tgz\n"
        f"    version: {version}\n"
    )


def chart_names(charts: int) -> list[str]:
    return [f"chart{n:03d}" for n in range(charts)]


def bitnami_index(
    versions: int,
    *,
    per_chart: int = 90,
    base: str = "charts/",
    digests: Mapping[tuple[str, str], str] | None = None,
) -> bytes:
    """`versions` chart versions, `per_chart` of each chart (the last chart takes the rest).

    `base` prefixes each download URL (relative ones resolve against the repository), as
    Bitnami's absolute ones do. Digests are made up, except those `digests` gives for
    (chart, version): the charts a test or benchmark serves for real (`chart_tgz`).
    """
    charts = chart_names(max(1, -(-versions // per_chart)))
    out = ["apiVersion: v1\nentries:\n"]
    left = versions
    for chart in charts:
        out.append(f"  {chart}:\n")
        for i in range(min(per_chart, left)):
            out.append(_version(chart, i, base, digests or {}))
        left -= min(per_chart, left)
    out.append('generated: "2024-03-06T10:21:40.113054551Z"\n')
    return "".join(out).encode()
