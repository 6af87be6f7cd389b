"""Progress bars on stderr, only when stderr is a terminal (the engine just reports)."""

from __future__ import annotations

import sys
import threading
from types import TracebackType
from typing import Any

from mirror.oci.descriptor import Descriptor


class Progress:
    """An observer for the copy engine and the bundle writer: bytes, blobs, rate, ETA."""

    def __init__(
        self, label: str, *, phases: tuple[str, ...] = (), enabled: bool | None = None
    ) -> None:
        self.label = label
        self._phases = list(phases)  # names for successive bars: export fetches, then packs
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar: Any = None
        self._blobs = 0
        self._lock = threading.Lock()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def planned(self, blobs: int, nbytes: int, label: str = "") -> None:
        """Start a new bar; each phase (fetch, write, verify) calls this once."""
        if not self.enabled:
            return
        from tqdm import tqdm

        self.close()
        phase = label or (self._phases.pop(0) if self._phases else "")
        desc = f"{self.label} {phase}" if phase else self.label
        with self._lock:
            self._blobs = 0
            self._bar = tqdm(
                total=nbytes,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=desc,
                file=sys.stderr,
                dynamic_ncols=True,
                leave=True,
            )

    def advance(self, nbytes: int) -> None:
        if self._bar is None:
            return
        with self._lock:
            if self._bar is not None:
                self._bar.update(nbytes)

    def blob_done(self, desc: Descriptor, how: str) -> None:
        if self._bar is None:
            return
        with self._lock:
            self._blobs += 1
            if self._bar is not None:
                self._bar.set_postfix_str(f"{self._blobs} blobs", refresh=False)
