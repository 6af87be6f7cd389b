"""The lab: real registries, a static HTTP server and synthetic content on loopback.

Tests, `make demo` and the benchmarks share it, so it ships in the package.
"""

from __future__ import annotations

from mirror.lab.registry import (
    INSTALL_HINT,
    LabRegistry,
    registry_binary,
    running_registry,
    start_registry,
)

__all__ = ["INSTALL_HINT", "LabRegistry", "registry_binary", "running_registry", "start_registry"]
