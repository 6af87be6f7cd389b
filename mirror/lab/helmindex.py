"""A Bitnami-shaped Helm index.yaml of any size, the same bytes for the same arguments.

The big public indexes are block-style YAML as Go's yaml.v2 writes it: a few hundred
charts, each with many versions, each version a Chart.yaml's fields plus `urls`,
`digest` and `created`, about 950 bytes of it. Scale benchmarks and tests parse this
instead of fetching a real one (tests never leave loopback).
"""

from __future__ import annotations

import hashlib

_CATEGORIES = ("Database", "Analytics", "Infrastructure", "DeveloperTools", "WorkFlow")


def _hex(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


def _version(chart: str, i: int, base: str) -> str:
    """One entry, indented as under `entries: <chart>:`; versions newest first."""
    major, minor, patch = 30 - i // 40, (i // 8) % 5, i % 8
    version = f"{major}.{minor}.{patch}"
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
        f"    digest: {_hex(chart, version)}\n"
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


def bitnami_index(versions: int, *, per_chart: int = 90, base: str = "charts/") -> bytes:
    """`versions` chart versions, `per_chart` of each chart (the last chart takes the rest).

    `base` prefixes each download URL (relative ones resolve against the repository).
    """
    charts = chart_names(max(1, -(-versions // per_chart)))
    out = ["apiVersion: v1\nentries:\n"]
    left = versions
    for chart in charts:
        out.append(f"  {chart}:\n")
        for i in range(min(per_chart, left)):
            out.append(_version(chart, i, base))
        left -= min(per_chart, left)
    out.append('generated: "2024-03-06T10:21:40.113054551Z"\n')
    return "".join(out).encode()
