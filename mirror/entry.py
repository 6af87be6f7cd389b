"""The console script's first step: Ctrl-C and SIGTERM mean "interrupted" from the very
start, before the ~0.2 s of imports the command line needs, in which they were a traceback
of import machinery (Ctrl-C) or a silent death (SIGTERM). Imports nothing heavy itself."""

from __future__ import annotations

import os
import signal
import sys

INTERRUPTED = "interrupted; nothing partial was left, and a second run carries on from here"


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run() -> None:
    """The `mirror` console script and `python -m mirror`."""
    signal.signal(signal.SIGTERM, interrupt)
    try:
        from mirror.cli import run as run_cli
    except KeyboardInterrupt:  # nothing was begun: nothing can be partial
        sys.stderr.write(f"mirror: error: {INTERRUPTED}\n")
        sys.stderr.flush()
        os._exit(1)
    run_cli()
