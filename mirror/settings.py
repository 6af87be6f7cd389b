"""One settings object, built once by the CLI and handed down: how many workers, how the
network is reached (`Net`: CA file, stall and rate limits), where this host keeps its cache
and its memos, and the clock.

The environment is read here and nowhere else for these (XDG_CACHE_HOME,
SOURCE_DATE_EPOCH, MIRROR_READ_TIMEOUT, MIRROR_MIN_RATE, MIRROR_RATE_GRACE,
MIRROR_BLOB_DEADLINE), so a test or an embedding program builds a `Settings` and knows
exactly what the library will do; a bad value is a usage error before any work.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mirror.errors import UsageError
from mirror.units import ascii_int

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


@dataclass(frozen=True)
class Net:
    """How this run reaches registries: a private CA, and how long it waits on them.

    A read that blocks `read_timeout` seconds is a stall; a body averaging under `min_rate`
    bytes a second after `grace` seconds is one too (0: no floor), and no blob may take over
    `deadline` seconds (0: none). docs/SECURITY.md gives each fault's bound.
    """

    ca_file: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 120.0  # MIRROR_READ_TIMEOUT
    min_rate: float = 1024.0  # MIRROR_MIN_RATE
    grace: float = 60.0  # MIRROR_RATE_GRACE
    deadline: float = 0.0  # MIRROR_BLOB_DEADLINE

    @property
    def timeouts(self) -> tuple[float, float]:
        """(connect, read) seconds, as requests takes them."""
        return self.connect_timeout, self.read_timeout

    @classmethod
    def from_env(cls, env: Mapping[str, str], ca_file: str | None = None) -> Net:
        timeout = _number(env, "MIRROR_READ_TIMEOUT", cls.read_timeout)
        if timeout <= 0:
            raise UsageError(
                f"MIRROR_READ_TIMEOUT={timeout:g}: expected a positive number of seconds"
            )
        return cls(
            ca_file=ca_file,
            read_timeout=timeout,
            min_rate=_number(env, "MIRROR_MIN_RATE", cls.min_rate),
            grace=_number(env, "MIRROR_RATE_GRACE", cls.grace),
            deadline=_number(env, "MIRROR_BLOB_DEADLINE", cls.deadline),
        )


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    try:
        return float(text) if text else default
    except ValueError:
        raise UsageError(f"{name}={text!r}: expected a number") from None


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mirror"


@dataclass(frozen=True)
class Settings:
    jobs: int = DEFAULT_JOBS
    net: Net = field(default_factory=Net)  # a private CA, stall and rate limits
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
            net=Net.from_env(env, ca_file),
            cache_dir=cache_dir or home,
            memo=home / "verified-bundles.json",
            clock=Clock(ascii_int(epoch)),
        )
