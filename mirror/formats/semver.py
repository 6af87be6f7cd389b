"""Loose semantic versions and node-semver ranges, for tag and chart selection.

Registries tag with anything ("v1.2", "1.16", "23.07.1"), so parsing is loose: a leading
"v" or "=", missing minor/patch (taken as 0) and leading zeros are accepted. Ordering follows
semver 2.0: build metadata is ignored and a prerelease sorts before its release.

Ranges follow node-semver (https://github.com/npm/node-semver#ranges): comparators
`< <= > >= =` joined by spaces (AND; commas are accepted too, as Helm writes them), `||`
(OR), `^`, `~` (and `~>`), x-ranges (`1.x`, `1.2.*`, `*`) and hyphen ranges `1.2.3 - 2.3.4`.
Prereleases follow node's rule: `1.3.0-rc.1` matches only a comparator set in which some
comparator names 1.3.0 with a prerelease (so `>=1.3.0-rc.0` matches it, `>=1.0.0` does not).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import total_ordering

_VERSION = re.compile(
    r"^\s*[vV=]?\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?\s*$"
)
_PARTIAL = re.compile(
    r"^[vV=]?(\d+|[xX*])?(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z.-]+)?$"
)
_OPERATOR = re.compile(r"^(<=|>=|<|>|=|\^|~>|~)?\s*(.*)$")
_HYPHEN = re.compile(r"^\s*(\S+)\s+-\s+(\S+)\s*$")

PreId = int | str


@total_ordering
@dataclass(frozen=True)
class Version:
    """A parsed version; equality and order ignore `build`, as semver precedence does."""

    major: int
    minor: int = 0
    patch: int = 0
    prerelease: tuple[PreId, ...] = ()
    build: str = field(default="", compare=False)

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        pre = tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    @property
    def release(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(str(p) for p in self.prerelease)
        return text + (f"+{self.build}" if self.build else "")


def _prerelease(text: str | None) -> tuple[PreId, ...]:
    if not text:
        return ()
    return tuple(int(p) if p.isdigit() else p for p in text.split("."))


def parse_version(text: str) -> Version | None:
    """A loose semver, or None for anything else ("latest", "1.2.3.4", "")."""
    m = _VERSION.match(text)
    if not m:
        return None
    major, minor, patch, pre, build = m.groups()
    return Version(int(major), int(minor or 0), int(patch or 0), _prerelease(pre), build or "")


Comparator = tuple[str, Version]  # (op, version) with op in <, <=, >, >=, =


def _bump(v: Version, part: int) -> Version:
    """The lowest version above everything sharing v's first `part` numbers: the `-0` bound."""
    if part == 0:
        return Version(v.major + 1, 0, 0, (0,))
    if part == 1:
        return Version(v.major, v.minor + 1, 0, (0,))
    return Version(v.major, v.minor, v.patch + 1, (0,))


def _partial(text: str, expr: str) -> tuple[Version, int]:
    """A version that may stop early or use x: returns it (zeros filled) and how many parts."""
    m = _PARTIAL.match(text)
    if not m or text == "":
        raise ValueError(f"invalid version {text!r} in range {expr!r}")
    parts: list[int] = []
    for raw in m.groups()[:3]:
        if raw is None or raw in "xX*":
            break
        parts.append(int(raw))
    pre = _prerelease(m.group(4)) if len(parts) == 3 else ()
    full = [*parts, 0, 0, 0][:3]
    return Version(full[0], full[1], full[2], pre), len(parts)


def _comparator(token: str, expr: str) -> list[Comparator]:
    m = _OPERATOR.match(token)
    assert m is not None  # the pattern matches any string
    op, rest = m.group(1) or "", m.group(2)
    v, n = _partial(rest, expr)
    if n == 0:  # *, x, or an operator on x: anything (">x" matches nothing in node; rare)
        return [("<", Version(0, 0, 0, (0,)))] if op in ("<", ">") else []
    if op == "^":
        first_nonzero = next((i for i, x in enumerate(v.release) if x), 2)
        return [(">=", v), ("<", _bump(v, min(first_nonzero, n - 1)))]
    if op in ("~", "~>"):
        return [(">=", v), ("<", _bump(v, 1 if n >= 2 else 0))]
    if n == 3:
        return [(op or "=", v)]
    # A partial version: 1.2 means the x-range 1.2.x.
    upper = _bump(v, n - 1)
    table: dict[str, list[Comparator]] = {
        "": [(">=", v), ("<", upper)],
        "=": [(">=", v), ("<", upper)],
        ">=": [(">=", v)],
        ">": [(">=", Version(*upper.release))],
        "<": [("<", Version(*v.release, (0,)))],
        "<=": [("<", upper)],
    }
    return table[op]


def _comparator_set(text: str, expr: str) -> list[Comparator]:
    hyphen = _HYPHEN.match(text)
    if hyphen:
        low, _ = _partial(hyphen.group(1), expr)
        high, n = _partial(hyphen.group(2), expr)
        return [(">=", low), ("<=", high) if n == 3 else ("<", _bump(high, n - 1))]
    # Glue a lone operator to its version: ">= 1.2.3" is one comparator.
    text = re.sub(r"(<=|>=|<|>|=|\^|~>|~)\s+", r"\1", text.replace(",", " "))
    out: list[Comparator] = []
    for token in text.split():
        out += _comparator(token, expr)
    return out


def _holds(op: str, v: Version, bound: Version) -> bool:
    if op == "<":
        return v < bound
    if op == "<=":
        return v <= bound
    if op == ">":
        return v > bound
    if op == ">=":
        return v >= bound
    return v == bound


class Range:
    """A node-semver range; a bad expression raises ValueError naming it."""

    def __init__(self, expr: str) -> None:
        if not isinstance(expr, str):
            raise ValueError(f"semver range must be a string, not {type(expr).__name__}")
        self.expr = expr
        self._sets = [_comparator_set(part, expr) for part in expr.split("||")]
        if any(not part.strip() for part in expr.split("||")) and "||" in expr:
            raise ValueError(f"empty alternative in semver range {expr!r}")

    def matches(self, v: Version) -> bool:
        return any(self._set_matches(s, v) for s in self._sets)

    @staticmethod
    def _set_matches(comparators: list[Comparator], v: Version) -> bool:
        if not all(_holds(op, v, bound) for op, bound in comparators):
            return False
        if not v.prerelease:
            return True
        return any(b.prerelease and b.release == v.release for _, b in comparators)

    def __repr__(self) -> str:
        return f"Range({self.expr!r})"


def _compile(patterns: Sequence[str], what: str) -> list[re.Pattern[str]]:
    out = []
    for pattern in patterns:
        try:
            out.append(re.compile(pattern))
        except re.error as exc:
            raise ValueError(f"invalid {what} regex {pattern!r}: {exc}") from None
    return out


def version_order(names: Iterable[str]) -> list[str]:
    """Semver descending (ties by name), then everything that is not semver, by name."""
    semver: list[tuple[str, Version]] = []
    others: list[str] = []
    for name in sorted(set(names)):
        v = parse_version(name)
        if v is None:
            others.append(name)
        else:
            semver.append((name, v))
    semver.sort(key=lambda p: p[1], reverse=True)  # stable: equal versions stay by name
    return [name for name, _ in semver] + others


def select_tags(
    tags: Iterable[str],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    semver: str | None = None,
    latest: int | None = None,
) -> list[str]:
    """Filter tags (regex search include/exclude, then semver range), keep the `latest` N."""
    inc, exc = _compile(include, "include"), _compile(exclude, "exclude")
    rng = Range(semver) if semver is not None else None
    if latest is not None and latest < 0:
        raise ValueError(f"latest must be >= 0, not {latest}")
    kept = []
    for tag in tags:
        if inc and not any(p.search(tag) for p in inc):
            continue
        if any(p.search(tag) for p in exc):
            continue
        if rng is not None:
            v = parse_version(tag)
            if v is None or not rng.matches(v):
                continue
        kept.append(tag)
    ordered = version_order(kept)
    return ordered if latest is None else ordered[:latest]
