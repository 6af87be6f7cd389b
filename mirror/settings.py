"""One settings object, built once by the CLI and handed down: how many workers, which CA
file, where this host keeps its cache and its memos, and the clock.

The environment is read here and nowhere else for these (XDG_CACHE_HOME,
SOURCE_DATE_EPOCH), so a test or an embedding program builds a `Settings` and knows
exactly what the library will do.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_JOBS = max(4, min(16, (os.cpu_count() or 2) * 4))  # network-bound: 4 per CPU


@dataclass(frozen=True)
class Clock:
    """Wall time, unless SOURCE_DATE_EPOCH fixes it: the same bundle made twice is the same
    bytes. Archive mtimes are fixed either way (0 when nothing fixes them)."""

    fixed: int | None = None

    def now(self) -> int:
        return self.fixed if self.fixed is not None else int(time.time())

    def mtime(self) -> int:
        return self.fixed if self.fixed is not None else 0

    def stamp(self) -> str:
        """now() as RFC 3339 UTC, to the second, as manifest.json and index.yaml write it."""
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.now()))


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mirror"


@dataclass(frozen=True)
class Settings:
    jobs: int = DEFAULT_JOBS
    ca_file: str | None = None  # a private CA for the registries this run talks to
    cache_dir: Path = field(default_factory=lambda: _home(os.environ))  # export's blob cache
    memo: Path | None = None  # bundles proven whole (bundle/memo.py); None: remember nothing
    clock: Clock = field(default_factory=Clock)

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        jobs: int = DEFAULT_JOBS,
        ca_file: str | None = None,
        cache_dir: Path | None = None,
    ) -> Settings:
        """What the CLI builds: flags first, then the environment, then the defaults."""
        env = os.environ if env is None else env
        home = _home(env)
        epoch = env.get("SOURCE_DATE_EPOCH", "").strip()
        return cls(
            jobs=jobs,
            ca_file=ca_file,
            cache_dir=cache_dir or home,
            memo=home / "verified-bundles.json",
            clock=Clock(int(epoch) if epoch.isdigit() else None),
        )
