"""Run mirror's CLI with a stopwatch on every HTTP request.

    python bench/netclock.py OUT.json -- export SPEC ...

Network time is the wall time during which at least one request was in flight (parallel
requests count once), measured around `requests.Session.send`, which mirror's HTTP layer
uses for every call. A streamed body read later is outside the span, so callers add the
bytes downloaded at a known rate; the warm-cache export downloads none.
"""

from __future__ import annotations

import atexit
import json
import sys
import threading
import time
from collections.abc import Sequence
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


def install(out: Path) -> None:
    import requests

    lock = threading.Lock()
    spans: list[Span] = []
    original = requests.Session.send

    def send(self: requests.Session, request: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(self, request, **kwargs)
        finally:
            with lock:
                spans.append((start, time.perf_counter()))

    def report() -> None:
        with lock:
            doc = {"seconds": union_seconds(spans), "requests": len(spans)}
        out.write_text(json.dumps(doc))

    requests.Session.send = send  # type: ignore[method-assign]
    atexit.register(report)


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        raise SystemExit("usage: netclock.py OUT.json -- MIRROR-ARGS...")
    install(Path(argv[0]))
    sys.argv = ["mirror", *argv[2:]]
    from mirror.cli import run

    run()


if __name__ == "__main__":
    main(sys.argv[1:])
