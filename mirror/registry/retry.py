"""The one retry rule for every HTTP conversation mirror has: registries, Helm
repositories, legacy pack servers and Palette's API.

Bounded attempts with exponential backoff and jitter, on a lost connection and on 429, 500,
502, 503 and 504; `Retry-After` (seconds) is honoured up to a cap; any other 4xx is an
answer, not a hiccup. The sleep is injectable so tests count attempts without waiting.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # in all, the first try included
    lost_attempts: int = 3  # after a lost connection, which rarely heals in seconds
    base: float = 0.25  # seconds before the second try; doubles each time
    cap: float = 8.0
    retry_after_cap: float = 30.0
    statuses: frozenset[int] = RETRY_STATUS
    sleep: Callable[[float], None] = field(default=lambda s: time.sleep(s), compare=False)

    def retries_status(self, status: int, attempt: int) -> bool:
        """Whether try number `attempt` (1-based) that got `status` deserves another."""
        return status in self.statuses and attempt < self.attempts

    def retries_lost(self, attempt: int) -> bool:
        return attempt < min(self.lost_attempts, self.attempts)

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait after try `attempt`: the server's word, else backoff, jittered."""
        wait = min(self.base * (1 << min(attempt, 30)), self.cap)
        if retry_after and retry_after.strip().isdigit():
            wait = min(float(retry_after), self.retry_after_cap)
        return wait * (0.75 + random.random() / 2)

    def pause(self, attempt: int, retry_after: str | None = None) -> None:
        self.sleep(self.delay(attempt, retry_after))


DEFAULT = RetryPolicy()
