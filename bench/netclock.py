"""Run mirror's CLI with a stopwatch on every HTTP request.

    python bench/netclock.py OUT.json -- export SPEC ...

Network time is the wall time during which at least one request was in flight (parallel
requests count once), measured around `Http._transport`, which every request of mirror's
HTTP layer passes through on its way to a transport (the wire or requests), and
`Http._ask_token_service`. A streamed body read later is outside the span, so callers add
the bytes downloaded at a known rate; the warm-cache export downloads none.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

Span = tuple[float, float]


def union_seconds(spans: Sequence[Span]) -> float:
    """Total length of the union of [start, end) intervals."""
    total, cur_start, cur_end = 0.0, None, 0.0
    for start, end in sorted(spans):
        if cur_start is None or start > cur_end:
            if cur_start is not None:
                total += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_start is not None:
        total += cur_end - cur_start
    return total


def install(out: Path) -> Callable[[], None]:
    """Time every request from now on; call the returned function to write OUT.json."""
    from mirror.registry.http import Http

    lock = threading.Lock()
    spans: list[Span] = []

    def timed(original: Callable[..., Any]) -> Callable[..., Any]:
        def send(self: Any, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(self, *args, **kwargs)
            finally:
                with lock:
                    spans.append((start, time.perf_counter()))

        return send

    def report() -> None:
        with lock:
            doc = {"seconds": union_seconds(spans), "requests": len(spans)}
        out.write_text(json.dumps(doc))

    Http._transport = timed(Http._transport)  # type: ignore[method-assign]
    Http._ask_token_service = timed(Http._ask_token_service)  # type: ignore[method-assign]
    return report


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        raise SystemExit("usage: netclock.py OUT.json -- MIRROR-ARGS...")
    report = install(Path(argv[0]))
    from mirror.cli import exit_now
    from mirror.cli import main as mirror_main

    code = mirror_main(argv[2:])
    report()
    exit_now(code)  # as the console script ends, so the run is timed the same way


if __name__ == "__main__":
    main(sys.argv[1:])
