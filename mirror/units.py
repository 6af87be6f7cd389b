"""Byte counts, said one way by every command: the exact number, then a readable one."""

from __future__ import annotations


def human(n: float) -> str:
    """Binary units, as the progress bars show them: 1.4 MiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def ascii_int(text: str | None, digits: int = 18) -> int | None:
    """A number as HTTP headers, file names and variables write one: ASCII digits, at most
    `digits` of them; None for anything else. str.isdigit() takes '²', which int() refuses:
    a registry's `Retry-After: ²` was an internal error."""
    text = (text or "").strip()
    if not text or len(text) > digits or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def exact(n: int) -> str:
    """`1454909 bytes (1.4 MiB)`: export, inspect and verify print the same for one bundle."""
    return f"{n} bytes ({human(n)})"
