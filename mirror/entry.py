"""The console script's first step: Ctrl-C and SIGTERM mean "interrupted" from the very
start, before the ~0.2 s of imports the command line needs, in which they were a traceback
of import machinery (Ctrl-C) or a silent death (SIGTERM). Imports nothing heavy itself."""

from __future__ import annotations

import gc
import os
import signal
import sys

INTERRUPTED = "interrupted; nothing partial was left, and a second run carries on from here"
# Container objects allocated between two young-generation collections (CPython's: 700).
# mirror allocates in bursts it mostly frees at once (imports, JSON documents, tar headers):
# at 700 a cacheless export of the bench's 306 MB ran the collector 164 times, 64 ms with
# the GIL held; at 20,000, 3 times, 16 ms (bench/FINDINGS.md, stop 32). Cycles are still
# collected, in bigger batches; the older generations keep their thresholds.
GC_YOUNG = 20_000


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run() -> None:
    """The `mirror` console script and `python -m mirror`."""
    signal.signal(signal.SIGTERM, interrupt)
    gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])
    try:
        from mirror.cli import run as run_cli
    except KeyboardInterrupt:  # nothing was begun: nothing can be partial
        sys.stderr.write(f"mirror: error: {INTERRUPTED}\n")
        sys.stderr.flush()
        os._exit(1)
    run_cli()
