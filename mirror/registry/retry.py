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

from mirror.errors import RegistryError
from mirror.settings import Net
from mirror.units import ascii_int

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
        asked = ascii_int(retry_after)
        if asked is not None:
            wait = min(float(asked), self.retry_after_cap)
        return wait * (0.75 + random.random() / 2)

    def pause(self, attempt: int, retry_after: str | None = None) -> None:
        self.sleep(self.delay(attempt, retry_after))

    def too_long(self, retry_after: str | None) -> bool:
        """A server that asks for more than the cap is not waited for at all: fail fast."""
        asked = ascii_int(retry_after)
        return asked is not None and asked > self.retry_after_cap


class RetriesExhausted(RegistryError):
    """The HTTP layer already spent this request's retry budget: nobody retries it again.

    The copy engine retries a whole blob only after a failure the HTTP layer could not
    retry itself (a body cut off mid-stream, an upload stream that cannot be replayed), so
    a permanent 503 costs one budget (5 tries), not 5 x 3.
    """


class RetryLater(RegistryError):
    """A retryable answer (429, 5xx) to a request the HTTP layer cannot replay: a streamed
    upload. The engine retries the whole blob, after the wait the answer asked for."""

    def __init__(self, message: str, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


DEFAULT = RetryPolicy()


def before_whole_retry(exc: Exception, attempt: int, policy: RetryPolicy = DEFAULT) -> None:
    """The engine's pause before trying a whole blob again: the policy's backoff or the
    server's Retry-After for an answer that asked to wait; past the cap, a fast failure."""
    if not isinstance(exc, RetryLater):
        return  # a body cut off mid-stream: try again at once
    if policy.too_long(exc.retry_after):
        raise RetriesExhausted(
            f"{exc}, asked to wait {exc.retry_after} s, more than the "
            f"{policy.retry_after_cap:.0f} s mirror waits"
        ) from None
    policy.pause(attempt, exc.retry_after)


@dataclass(frozen=True)
class RateFloor:
    """A body that trickles is a stall: after `grace` seconds, a blob averaging less than
    `min_rate` bytes a second fails (and is retried whole); none may take over `deadline`.

    Set for slow links through `settings.Net` (MIRROR_MIN_RATE, MIRROR_RATE_GRACE,
    MIRROR_BLOB_DEADLINE). One read can still block for the read timeout (120 s), so a
    trickle fails within grace + 120 s, a stall within 120 s.
    """

    min_rate: float = 1024.0
    grace: float = 60.0
    deadline: float = 0.0
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)

    @classmethod
    def of(cls, net: Net) -> RateFloor:
        return cls(min_rate=net.min_rate, grace=net.grace, deadline=net.deadline)

    def problem(self, started: float, seen: int) -> str | None:
        """Why a transfer that began at `started` and moved `seen` bytes must stop, if so."""
        elapsed = self.clock() - started
        if self.deadline and elapsed > self.deadline:
            return f"took longer than {self.deadline:.0f} s (MIRROR_BLOB_DEADLINE)"
        if self.min_rate and elapsed > self.grace and seen / elapsed < self.min_rate:
            return (
                f"{seen / elapsed:.0f} bytes/s after {elapsed:.0f} s, under the "
                f"{self.min_rate:.0f} bytes/s floor (MIRROR_MIN_RATE)"
            )
        return None
