from __future__ import annotations

import itertools

import pytest

from mirror.formats.semver import Range, Version, parse_version, select_tags, version_order


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.2.3", Version(1, 2, 3)),
        ("v1.2.3", Version(1, 2, 3)),
        ("1.16", Version(1, 16, 0)),
        ("1", Version(1, 0, 0)),
        ("23.07.1", Version(23, 7, 1)),
        ("1.0.0-rc.1", Version(1, 0, 0, ("rc", 1))),
        ("0.30.0-5.5.2026", Version(0, 30, 0, (5, 5, 2026))),
        ("2.0.1-up.1", Version(2, 0, 1, ("up", 1))),
    ],
)
def test_parse_loose(text: str, expected: Version) -> None:
    assert parse_version(text) == expected


@pytest.mark.parametrize("text", ["", "latest", "1.2.3.4", "v", "1.2.3-", "1.2.3-a..b", "x.1"])
def test_parse_rejects(text: str) -> None:
    assert parse_version(text) is None


def test_build_metadata_ignored_in_order_but_kept() -> None:
    a, b = parse_version("1.0.0+a"), parse_version("1.0.0+b")
    assert a is not None and b is not None
    assert a == b and not a < b and not b < a
    assert str(a) == "1.0.0+a"


def test_semver_spec_precedence_chain() -> None:
    chain = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.10.0",
        "2.0.0",
    ]
    versions = [v for v in map(parse_version, chain) if v is not None]
    assert len(versions) == len(chain)
    for low, high in itertools.pairwise(versions):
        assert low < high
    assert sorted(reversed(versions)) == versions


@pytest.mark.parametrize(
    ("expr", "version", "ok"),
    [
        (">=1.0.0 <3.0.0", "2.9.9", True),
        (">=1.0.0 <3.0.0", "3.0.0", False),
        (">= 1.0.0, < 3.0.0", "1.0.0", True),  # Helm style: spaces after ops, commas
        ("^1.2.3", "1.9.0", True),
        ("^1.2.3", "2.0.0", False),
        ("^1.2.3", "1.2.2", False),
        ("^0.2.3", "0.2.9", True),
        ("^0.2.3", "0.3.0", False),
        ("^0.0.3", "0.0.4", False),
        ("^0.0.x", "0.0.9", True),
        ("^0.x", "0.9.0", True),
        ("^0.x", "1.0.0", False),
        ("~1.2.3", "1.2.9", True),
        ("~1.2.3", "1.3.0", False),
        ("~1", "1.9.9", True),
        ("~1", "2.0.0", False),
        ("1.x", "1.99.0", True),
        ("1.x", "2.0.0", False),
        ("1.2.*", "1.2.7", True),
        ("1.2.*", "1.3.0", False),
        ("*", "9.9.9", True),
        ("", "0.0.1", True),
        (">1.2", "1.2.9", False),
        (">1.2", "1.3.0", True),
        ("<1.2", "1.1.9", True),
        ("<1.2", "1.2.0", False),
        ("<=1.2", "1.2.9", True),
        ("=1.2.3", "1.2.3", True),
        ("1.2.3", "1.2.4", False),
        ("1.2.3 - 2.3.4", "2.3.4", True),
        ("1.2.3 - 2.3.4", "2.3.5", False),
        ("1.2 - 2.3", "2.3.9", True),
        ("1.2 - 2.3", "1.1.9", False),
        ("1.2.3 - 2", "2.9.0", True),
        ("<1.0.0 || >=2.0.0", "2.1.0", True),
        ("<1.0.0 || >=2.0.0", "1.5.0", False),
        ("v1.2.3", "1.2.3", True),
        # node's prerelease rule
        (">=1.0.0", "1.3.0-rc.1", False),
        (">=1.3.0-rc.0", "1.3.0-rc.1", True),
        (">=1.3.0-rc.0", "1.4.0-rc.1", False),
        ("^1.2.3", "2.0.0-rc.1", False),
        ("*", "1.0.0-alpha", False),
        (">=1.26.0-0", "1.29.1", True),
    ],
)
def test_range(expr: str, version: str, ok: bool) -> None:
    v = parse_version(version)
    assert v is not None
    assert Range(expr).matches(v) is ok


@pytest.mark.parametrize("expr", ["abc", ">=1.2.3.4", "1.x ||", "^", ">=1.2.3<2", "1.2.3 - "])
def test_bad_range_raises_with_expression(expr: str) -> None:
    with pytest.raises(ValueError, match=r"range|semver"):
        Range(expr)


TAGS = [
    "latest",
    "v1.0.0",
    "1.0.0",
    "1.10.0",
    "1.2.0",
    "2.0.0-rc.1",
    "2.0.0",
    "main",
    "1.2.0-debug",
]


def test_version_order_semver_desc_then_names() -> None:
    assert version_order(TAGS) == [
        "2.0.0",
        "2.0.0-rc.1",
        "1.10.0",
        "1.2.0",
        "1.2.0-debug",
        "1.0.0",
        "v1.0.0",
        "latest",
        "main",
    ]


def test_select_latest_and_filters() -> None:
    assert select_tags(TAGS, latest=2) == ["2.0.0", "2.0.0-rc.1"]
    assert select_tags(TAGS, semver=">=1.0.0 <2.0.0", latest=2) == ["1.10.0", "1.2.0"]
    assert select_tags(TAGS, include=[r"^1\."], exclude=["debug"]) == ["1.10.0", "1.2.0", "1.0.0"]
    assert select_tags(TAGS, include=["^m", "^l"]) == ["latest", "main"]
    assert select_tags(TAGS, semver="^1.0.0", latest=0) == []


def test_select_latest_counts_non_semver_after_semver() -> None:
    assert select_tags(["main", "1.0.0", "dev"], latest=2) == ["1.0.0", "dev"]


def test_select_is_deterministic_whatever_the_input_order() -> None:
    assert select_tags(reversed(TAGS)) == select_tags(TAGS) == select_tags(sorted(TAGS))


def test_select_bad_inputs() -> None:
    with pytest.raises(ValueError, match="include"):
        select_tags(TAGS, include=["("])
    with pytest.raises(ValueError, match="exclude"):
        select_tags(TAGS, exclude=["[z-a]"])
    with pytest.raises(ValueError):
        select_tags(TAGS, semver="not a range")
    with pytest.raises(ValueError, match="latest"):
        select_tags(TAGS, latest=-1)
