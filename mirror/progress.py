"""Progress on stderr: bars on a terminal, plain lines in a log (the engine just reports).

When stderr is not a terminal (CI logs, `nohup`, a pipe), bars would be noise, and silence
looks like a hang: a heartbeat line every MIRROR_HEARTBEAT seconds says what moved, and the
command ends with one summary line (bytes, artifacts, rate). A copy of at least
LARGE_FETCH bytes is announced with its size before it starts, in both modes.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TextIO

from mirror.errors import terminal_safe
from mirror.oci.descriptor import Descriptor
from mirror.units import exact, human

HEARTBEAT_ENV = "MIRROR_HEARTBEAT"
DEFAULT_HEARTBEAT = 15.0  # seconds between lines when stderr is not a terminal; 0: none
LARGE_FETCH = 1 << 30  # a copy this large is announced before its first byte moves


def heartbeat_seconds(env: Mapping[str, str] | None = None) -> float:
    """MIRROR_HEARTBEAT, in seconds; unset or unreadable means the default, 0 means none."""
    raw = (os.environ if env is None else env).get(HEARTBEAT_ENV, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_HEARTBEAT
    except ValueError:
        return DEFAULT_HEARTBEAT
    return max(value, 0.0)


class Progress:
    """An observer for the copy engine and the bundle writer: bytes, blobs, rate, ETA."""

    def __init__(
        self,
        label: str,
        *,
        phase: str = "",
        enabled: bool | None = None,
        heartbeat: float | None = None,
        quiet: bool = False,
        stream: TextIO | None = None,
        large: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self._default = phase  # a phase not named by its caller: export's fetch, import's push
        self._stream = stream if stream is not None else sys.stderr
        self.enabled = _isatty(self._stream) if enabled is None else enabled  # bars
        self._every = heartbeat_seconds() if heartbeat is None else heartbeat
        self.quiet = quiet  # --quiet: no bars, beats, plan or summary; notes still said
        if quiet:
            self.enabled, self._every = False, 0.0
        self._large = LARGE_FETCH if large is None else large
        self._clock = clock
        self._started = clock()
        self._phase_started = self._started
        self._bar: Any = None
        self._blobs = 0
        self._phase = ""
        self._total = 0  # bytes planned for the current phase
        self._done = 0  # bytes moved in the current phase
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beater: threading.Thread | None = None
        self.said: set[str] = set()  # notes already said (`note`)

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._stop_beating()
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def plan(self, artifacts: int, blobs: int, nbytes: int) -> None:
        """The size of a copy before it starts: said aloud only when it is large."""
        if nbytes >= self._large and (blobs or nbytes) and not self.quiet:
            self.close_bar()  # a line between bars, not through one
            self._say(
                f"{self.label}: plan: {artifacts} artifacts, {blobs} blobs, "
                f"{exact(nbytes)} to copy (estimated from the manifests)"
            )

    def note(self, text: str) -> None:
        """Said at once, between bars; `said` keeps it from being said again at the end."""
        self.close_bar()
        self.said.add(text)
        self._say(f"note: {terminal_safe(text)}")

    def planned(self, blobs: int, nbytes: int, label: str = "") -> None:
        """Start a new phase (fetch, pack, verify, push): one bar each, none for a phase
        with nothing to move (a round that found everything already there)."""
        self.close_bar()
        with self._lock:
            self._phase, self._total, self._done, self._blobs = label or self._default, nbytes, 0, 0
            self._phase_started = self._clock()
        if self.enabled:
            if blobs or nbytes:
                self._open_bar(nbytes)
        elif self._every > 0 and self._beater is None:
            self._beater = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
            self._beater.start()

    def close_bar(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def _open_bar(self, nbytes: int) -> None:
        from tqdm import tqdm

        desc = f"{self.label} {self._phase}" if self._phase else self.label
        with self._lock:
            self._bar = tqdm(
                total=nbytes,
                unit="iB",  # KiB, MiB: the binary units every other line uses
                unit_scale=True,
                unit_divisor=1024,
                desc=desc,
                file=self._stream,
                dynamic_ncols=True,
                leave=True,
            )

    def advance(self, nbytes: int) -> None:
        with self._lock:
            self._done += nbytes
            if self._bar is not None:
                self._bar.update(nbytes)

    def blob_done(self, desc: Descriptor, how: str) -> None:
        with self._lock:
            self._blobs += 1
            if self._bar is not None:
                self._bar.set_postfix_str(f"{self._blobs} blobs", refresh=False)

    def heartbeat_line(self) -> str:
        """What moved so far in this phase, and how fast: one line a log can keep."""
        with self._lock:
            phase, done, total, blobs = self._phase, self._done, self._total, self._blobs
            began = self._phase_started
        now = self._clock()
        elapsed = max(now - self._started, 1e-9)
        rate = done / max(now - began, 1e-9)  # this phase's, not diluted by the ones before
        name = f"{self.label} {phase}" if phase else self.label
        share = f" of {human(total)} ({100 * done // total}%)" if total > 0 else ""
        return (
            f"{name}: {human(done)}{share}, {blobs} blobs, "
            f"{_elapsed(elapsed)} elapsed, {human(rate)}/s"
        )

    def summary(self, *, artifacts: int, blobs: int, nbytes: int, dry_run: bool = False) -> None:
        """The last line in a log: what the command's result counted, and the rate (a dry
        run moved nothing: it says what it planned)."""
        if self.enabled or self.quiet:
            return  # a terminal has seen the bars (stdout says the rest), or asked for none
        self._stop_beating()  # the summary is the last line: no beat may follow it
        elapsed = max(self._clock() - self._started, 1e-9)
        what = f"{artifacts} artifacts, {blobs} blobs, {exact(nbytes)}"
        if dry_run:
            self._say(f"{self.label}: planned (dry run): {what} in {_elapsed(elapsed)}")
            return
        self._say(
            f"{self.label}: done: {what} in {_elapsed(elapsed)} ({human(nbytes / elapsed)}/s)"
        )

    def _stop_beating(self) -> None:
        self._stop.set()
        if self._beater is not None:
            self._beater.join()
            self._beater = None

    def _beat(self) -> None:
        while not self._stop.wait(self._every):
            self._say(self.heartbeat_line())

    def _say(self, line: str) -> None:
        with self._lock:
            print(line, file=self._stream, flush=True)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _elapsed(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}"
