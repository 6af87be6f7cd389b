"""Help that teaches (issue 16, item 4): every option explained, defaults shown, examples that
parse, presets listed, and shell completion that works the way the README says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from test_readme import README, parse

from mirror.cli import SETTINGS, cli
from mirror.spec import available_presets


def walk() -> Iterator[tuple[click.Context, click.Command]]:
    """Every command and group, each with the context `mirror ... --help` would build."""
    todo = [(click.Context(cli, info_name="mirror", **SETTINGS), cli)]  # type: ignore[arg-type]
    while todo:
        ctx, cmd = todo.pop()
        yield ctx, cmd
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None
                todo.append((click.Context(sub, info_name=name, parent=ctx), sub))


def examples_of(cmd: click.Command) -> list[str]:
    """The example lines of a command's epilog, joined where a line ends in a backslash."""
    text = (cmd.epilog or "").split("Examples:", 1)[-1].replace("\\\n", " ")
    return [line.split("  #")[0].strip() for line in text.splitlines() if line.strip()]


def test_every_option_has_help_and_every_command_ends_with_examples() -> None:
    seen = []
    for ctx, cmd in walk():
        seen.append(ctx.command_path)
        for param in cmd.get_params(ctx):
            if isinstance(param, click.Option):
                assert param.help, f"{ctx.command_path} {param.opts[0]}: no help"
        text = cmd.get_help(ctx)
        after_options = text.rsplit("Options:", 1)[-1]
        assert "\n  Examples:\n" in after_options, f"{ctx.command_path}: no Examples section"
        last = text.rstrip().splitlines()[-1].strip()
        assert last and last in (cmd.epilog or ""), f"{ctx.command_path}: help ends elsewhere"
        lines = examples_of(cmd)
        assert 2 <= len(lines) <= 3, (ctx.command_path, lines)
    assert {"mirror export", "mirror import", "mirror inspect", "mirror registries list"} <= set(
        seen
    )


def test_every_example_parses_with_the_real_commands() -> None:
    for _ctx, cmd in walk():
        for line in examples_of(cmd):
            line = line.split(" > ", 1)[0]  # a shell redirect is not an argument
            words = [w for w in line.split() if "=" not in w or w.startswith("-")]
            assert words[0] == "mirror", line
            parse(words[1:])  # raises click.UsageError on a misspelt flag or command


def test_defaults_are_shown_for_every_option_that_has_one() -> None:
    for ctx, cmd in walk():
        for param in cmd.get_params(ctx):
            if not isinstance(param, click.Option) or param.is_flag or param.multiple:
                continue
            record = param.get_help_record(ctx)
            assert record is not None
            default = param.get_default(ctx, call=False)
            if default is not None and "UNSET" not in repr(default):  # click 8.3+: a sentinel
                assert "[default: " in record[1], f"{ctx.command_path} {param.opts[0]}: {record}"


def test_preset_lists_the_shipped_choices() -> None:
    presets = available_presets()
    assert {"palette-default", "vertex-fips"} <= set(presets)
    ctx = click.Context(cli, info_name="mirror", **SETTINGS)  # type: ignore[arg-type]
    export = cli.get_command(ctx, "export")
    assert export is not None
    text = export.get_help(click.Context(export, info_name="export", parent=ctx))
    assert f"--preset [{'|'.join(presets)}]" in text


def test_export_help_says_what_no_spec_means_and_what_a_replace_does() -> None:
    from mirror.spec import default_registries

    ctx = click.Context(cli, info_name="mirror", **SETTINGS)  # type: ignore[arg-type]
    export = cli.get_command(ctx, "export")
    assert export is not None
    text = " ".join(export.get_help(click.Context(export, info_name="e", parent=ctx)).split())
    assert len(default_registries()) == 6
    assert "With no SPEC and no --preset, export takes all six default registries" in text
    assert "Run with --dry-run first" in text
    assert "replaced atomically, and a note says so" in text


# ---------------------------------------------------------------- shell completion


def _complete(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a shell's completion hook runs it."""
    script = Path(sys.executable).with_name("mirror")
    assert script.is_file(), "the console script is installed by `make venv`"
    return subprocess.run(
        [str(script)], env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )


def test_readme_documents_completion_for_bash_zsh_and_fish_and_each_works() -> None:
    text = README.read_text()
    section = text.split("## Shell completion", 1)[1].split("\n## ", 1)[0]
    shells = re.findall(r"mirror completion (\w+)", section)
    assert shells == ["bash", "zsh", "fish"]
    assert "_MIRROR_COMPLETE=bash_source mirror" in section  # click's own switch, named too
    marks = {"bash": "complete -o nosort -F", "zsh": "#compdef mirror", "fish": "complete"}
    for shell in shells:
        run = _complete({"_MIRROR_COMPLETE": f"{shell}_source"})
        assert run.returncode == 0, run.stderr
        assert marks[shell] in run.stdout and "_MIRROR_COMPLETE" in run.stdout
        printed = subprocess.run(
            [sys.executable, "-m", "mirror", "completion", shell],
            capture_output=True,
            text=True,
            check=True,
        )
        assert printed.stdout.strip() == run.stdout.strip(), shell


def test_completion_offers_commands_options_and_presets() -> None:
    def words(line: str) -> list[str]:
        run = _complete(
            {
                "_MIRROR_COMPLETE": "bash_complete",
                "COMP_WORDS": line,
                "COMP_CWORD": str(len(line.split()) - (0 if line.endswith(" ") else 1)),
            }
        )
        assert run.returncode == 0, run.stderr
        return [w.split(",", 1)[1] for w in run.stdout.split()]

    assert "export" in words("mirror ex")
    assert "--dry-run" in words("mirror export --dr")
    assert set(words("mirror export --preset ")) == set(available_presets())


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script_through_clicks_api(shell: str) -> None:
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None
    source = cls(cli, {}, "mirror", "_MIRROR_COMPLETE").source()
    assert "_MIRROR_COMPLETE" in source and "mirror" in source
