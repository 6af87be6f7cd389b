"""README's commands must work as written, and docs/CLI.md must match `mirror --help`.

Every `mirror ...` line in a ```sh block is parsed by the real click commands (so a renamed
flag breaks this test, not a reader's first try), and the blocks marked `<!-- flow -->` are
run in order against lab registries, with only the preset and the target host swapped.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from faultproxy import Reg

from mirror.cli import cli, main
from mirror.lab.demo import cli_reference
from mirror.lab.upstream import upstreams_yaml

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
FENCE = re.compile(r"(<!-- flow -->\n)?```sh\n(.*?)```", re.S)


def sh_blocks(text: str) -> Iterator[tuple[bool, list[str]]]:
    """(marked as the flow, command lines without comments) for each ```sh block."""
    for match in FENCE.finditer(text):
        body = match.group(2).replace("\\\n", " ")
        lines = [shlex.split(line, comments=True) for line in body.splitlines()]
        yield match.group(1) is not None, [shlex.join(words) for words in lines if words]


def mirror_commands(text: str) -> list[list[str]]:
    return [
        shlex.split(line)[1:]
        for _, lines in sh_blocks(text)
        for line in lines
        if line.startswith("mirror ")
    ]


def parse(args: list[str]) -> click.Context:
    """Resolve and parse like `mirror ARGS` would, without running anything."""
    ctx = click.Context(cli, info_name="mirror")
    group: click.Group = cli
    rest = list(args)
    while True:
        sub = group.get_command(ctx, rest[0]) if rest else None
        if sub is None:
            raise click.UsageError(f"no such command: mirror {shlex.join(args)}")
        name, rest = rest[0], rest[1:]
        if not isinstance(sub, click.Group):
            return sub.make_context(name, rest, parent=ctx)
        group, ctx = sub, click.Context(sub, info_name=name, parent=ctx)


def test_docs_cli_md_matches_the_help() -> None:
    current = (REPO / "docs" / "CLI.md").read_text()
    assert current == cli_reference(), (
        "docs/CLI.md is stale: run `python -m mirror.lab.demo --cli-doc > docs/CLI.md`"
    )


def test_docs_cli_md_is_what_mirror_help_prints(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each command's real `--help`, on a wide terminal, is in the file word for word (the
    generator once lost the CLI's show_default and nobody saw)."""
    from mirror.cli import main

    monkeypatch.setenv("COLUMNS", "160")
    doc = (REPO / "docs" / "CLI.md").read_text()
    sections = re.findall(r"^## (mirror.*)$", doc, flags=re.M)
    assert len(sections) >= 12
    for section in sections:
        assert main([*section.split()[1:], "--help"]) == 0
        printed = capsys.readouterr().out
        assert f"## {section}\n\n```text\n{printed}```" in doc, section


def test_cli_reference_covers_every_command() -> None:
    doc = cli_reference()
    for name in ("export", "verify", "inspect", "import", "keygen", "registries list"):
        assert f"## mirror {name}\n" in doc
        assert f"Usage: mirror {name}" in doc


def test_readme_has_the_commands_it_promises() -> None:
    commands = mirror_commands(README.read_text())
    used = {c[0] for c in commands}
    assert {"keygen", "export", "verify", "import", "registries"} <= used
    assert len(commands) >= 8


@pytest.mark.parametrize("args", mirror_commands(README.read_text()), ids=shlex.join)
def test_readme_command_parses(args: list[str]) -> None:
    ctx = parse(args)
    assert ctx.command.name != "cli"


def test_parse_rejects_what_click_rejects() -> None:
    """The check above can fail: a misspelt flag or command does not parse."""
    with pytest.raises(click.UsageError):
        parse(["export", "--outptu", "x"])
    with pytest.raises(click.UsageError):
        parse(["exprot"])


def test_readme_make_targets_exist() -> None:
    makefile = (REPO / "Makefile").read_text()
    targets = {m.group(1) for m in re.finditer(r"^([a-z]+):", makefile, re.M)}
    named = {
        line.split()[1]
        for _, lines in sh_blocks(README.read_text())
        for line in lines
        if line.startswith("make ")
    }
    assert {"demo", "test"} <= named
    assert named <= targets, f"the README names make targets the Makefile lacks: {named - targets}"


def test_readme_links_resolve() -> None:
    for target in re.findall(r"\]\(([^)#]+)\)", README.read_text()):
        if "://" not in target:
            assert (REPO / target).exists(), target


def test_readme_first_screen_speaks_to_the_three_readers() -> None:
    first = "\n".join(README.read_text().splitlines()[:40])
    for who in ("Export operator", "Import operator", "Compliance reviewer"):
        assert who in first
    assert "make demo" in first and "make test" in first


# ---------------------------------------------------------------- the flow, for real


def test_readme_flow_runs_against_lab_registries(
    seeded_registry: object,
    registry_factory: object,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source_url = seeded_registry.url  # type: ignore[attr-defined]
    target = registry_factory("anon")  # type: ignore[operator]
    spec = tmp_path / "palette-lab.yaml"
    spec.write_text(
        f"name: lab\nregistries:\n  - name: Palette Registry\n    url: {source_url}\n"
        + upstreams_yaml(source_url)  # the packs' images, where their hosts stand in
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MIRROR_KEY_PASSWORD", "readme")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    flow = [line for marked, lines in sh_blocks(README.read_text()) if marked for line in lines]
    assert len(flow) >= 5
    for line in flow:
        line = line.replace("--preset palette-default", str(spec))
        line = line.replace("https://registry.airgap.example:5000", target.url)
        assert main(shlex.split(line)[1:]) == 0, line
    assert (tmp_path / "palette.tar.zst.sig").is_file()
    images = seeded_registry.images  # type: ignore[attr-defined]
    assert images
    for s in images:  # every image a pack lists is on the target, at Palette's layout
        assert Reg(target.url).digest(f"spectro-images/{s.repository}", s.tag) == s.digest
    offered = seeded_registry.seeded  # type: ignore[attr-defined]
    assert {s.kind for s in offered} >= {"pack", "chart"}
    for s in offered:  # every pack, chart and image the source offers, byte for byte
        assert Reg(target.url).digest(s.repository, s.tag) == s.digest, s.ref
    assert Reg(target.url).dangling() == []
    line = (tmp_path / "mirror-config" / "mirror-registries.txt").read_text().strip()
    host = target.url.split("://", 1)[1]
    assert f"quay.io::{host}/spectro-images/quay.io" in line.split(",")
    assert (tmp_path / "mirror-config" / "certs.d" / "quay.io" / "hosts.toml").is_file()
    catalog = tmp_path / "data" / "mirror" / "registries.json"
    assert "Palette Registry" in catalog.read_text()
