"""The `mirror` command line: parse flags, call the library, print. Nothing else lives here.

`main(argv) -> int` maps every error to the contract's exit codes in one table. The
commands live beside this file by who runs them (`export`, `importing`, `review`,
`serve`, `admin`); what they share is in `base`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from mirror.cli import admin, export, importing, review, serve  # noqa: F401  (registers them)
from mirror.cli.base import SETTINGS, cli
from mirror.entry import INTERRUPTED, interrupt
from mirror.errors import MirrorError, redact, shorten, terminal_safe

__all__ = ["SETTINGS", "bound_malloc_arenas", "cli", "exit_now", "main", "run"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and map every outcome to the contract's exit codes, in this one place.

    Ctrl-C and SIGTERM are exit 1, as the contract's table has "interrupted". `--debug`
    and `--quiet` count anywhere before `--`, as global flags do in docker and zarf."""
    args = list(sys.argv[1:] if argv is None else argv)
    end = args.index("--") if "--" in args else len(args)
    debug = "--debug" in args[:end]
    wanted = [flag for flag in ("--debug", "--quiet", "-q") if flag in args[:end]]
    if wanted:  # global flags, wherever they were typed, go before the command
        args = [*wanted, *(a for a in args[:end] if a not in wanted), *args[end:]]
    state: dict[str, Any] = {}  # what the commands learn; see base.run_state
    try:
        cli.main(args=args, prog_name="mirror", standalone_mode=False, obj=state)
        return 0
    except MirrorError as exc:
        return _fail(str(exc), exc.exit_code, debug, state)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort as exc:  # click's word for a KeyboardInterrupt
        return _fail(_interrupted(exc.__cause__), 1, debug, state)
    except click.exceptions.NoArgsIsHelpError as exc:  # `mirror`, `mirror cache`: the help
        click.echo(exc.ctx.get_help() if exc.ctx else exc.format_message())
        return 0
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "mirror"
        if exc.ctx and "--json" in args[:end] and _takes_json(exc.ctx.command):
            state["json"] = True  # refused before --json itself was parsed
        said = " ".join(exc.format_message().split())  # click lists choices on lines of their own
        return _fail(f"{said} (see '{where} --help')", 2, debug, state)
    except click.ClickException as exc:
        return _fail(exc.format_message(), int(exc.exit_code), debug, state)
    except KeyboardInterrupt as exc:
        return _fail(_interrupted(exc), 1, debug, state)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}", 1, debug, state)
    except Exception as exc:  # a bug: still the contract's one line (--debug: the traceback)
        said = f"internal error: {type(exc).__name__}: {exc}; please report it (--debug)"
        return _fail(said, 1, debug, state)


def _interrupted(exc: BaseException | None) -> str:
    """Ctrl-C or SIGTERM: nothing partial was left, or, held to the end of a step that
    had to land whole (streams.uninterrupted), that step was finished."""
    if isinstance(exc, KeyboardInterrupt) and exc.args:
        return f"interrupted; {exc.args[0]}"
    return INTERRUPTED


def _takes_json(command: click.Command) -> bool:
    return any(param.name == "as_json" for param in command.params)


def _fail(message: str, code: int, debug: bool, state: dict[str, Any]) -> int:
    """The one line, and with --debug the traceback: both redacted, since a usage error
    echoes what was typed and a traceback repeats every message in its chain.

    With --json, stdout also gets the contract's one document, unless the command printed
    its own (verify's verdict): `{"ok": false, "error": LINE, "exitCode": CODE}`, so a
    script that reads stdout finds the failure there too, never an empty stream."""
    if debug:
        click.echo(redact(traceback.format_exc()).rstrip("\n"), err=True)
    line = _one_line(redact(message))
    click.echo(f"mirror: error: {line}", err=True)
    if state.get("json") and not state.get("emitted"):
        click.echo(json.dumps({"ok": False, "error": line, "exitCode": code}, indent=2))
    return code


MAX_ERROR = 2000  # characters of an error line; what a hostile document puts in one is cut


def _one_line(text: str) -> str:
    """The contract's one line: a newline inside (a hostile name, a server's words) is
    shown escaped, and a megabyte of value quoted back is cut, with its length said."""
    return shorten(terminal_safe(text), MAX_ERROR)


def run() -> None:
    """The command line, once imported (`mirror.entry.run` imports it). SIGTERM unwinds
    like Ctrl-C, so every `finally` runs: temp files go, workers stop, nothing is left
    half-written."""
    import signal

    signal.signal(signal.SIGTERM, interrupt)
    bound_malloc_arenas()
    exit_now(main())


M_ARENA_MAX = -8  # glibc's mallopt parameter
MALLOC_ARENAS = 2


def bound_malloc_arenas() -> None:
    """glibc gives every new thread a malloc arena of its own (up to eight per core) and
    gives little of it back: with eight copy workers, an import of 2,000 small images held
    92-106 MB of RSS, and 68-69 MB with two arenas, no slower (bench/FINDINGS.md, stop 29).
    A MALLOC_ARENA_MAX the user set wins; elsewhere than glibc this does nothing."""
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(M_ARENA_MAX, MALLOC_ARENAS)


def exit_now(code: int) -> NoReturn:
    """Exit without tearing the interpreter down.

    By now every file is closed and every worker joined; freeing each module and object
    one by one took 30-50 ms, a tenth of a re-import that finds everything in place.
    stdout and stderr are flushed first. atexit hooks do not run: mirror registers none.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
