"""pyproject.toml as a packager reads it: the license is an SPDX expression (PEP 639).

`project.license` as a TOML table makes setuptools >= 77 warn on every `pip install`, and it
stops building in 2027. The string form needs setuptools 77 or later at build time.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_the_license_is_an_spdx_expression_the_build_backend_reads() -> None:
    doc = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    assert doc["project"]["license"] == "Apache-2.0"
    (backend,) = [
        Requirement(r) for r in doc["build-system"]["requires"] if r.startswith("setuptools")
    ]
    assert not backend.specifier.contains("76.9"), "setuptools < 77 cannot read the string form"
    assert backend.specifier.contains("77.0.0")
