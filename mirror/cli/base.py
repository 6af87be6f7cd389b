"""What every command shares: the group and its global flags, the options several
commands take, and how a command reads a bundle or a key, reports progress and prints JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from mirror import __version__
from mirror.errors import UsageError
from mirror.oci.names import IMAGES_BASE
from mirror.progress import Progress
from mirror.settings import DEFAULT_JOBS as JOBS


class _Named(click.Path):
    """A path that must be named: '' became Path('.'), so `--mirror-config ''` wrote into
    the current folder and `-o ''` took it for a file name."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value:
            self.fail(f"an empty name; give a {self.name} name", param, ctx)
        return super().convert(value, param, ctx)


FILE = _Named(dir_okay=False, path_type=Path)  # a file to read or write
FOLDER = _Named(file_okay=False, path_type=Path)
BUNDLE_ARGUMENT = click.argument("bundle", type=click.Path(path_type=Path))


def presets() -> list[str]:
    """The shipped specs (bundles/*.yaml, packaged as mirror/presets), without loading them."""
    here = Path(__file__).resolve().parent.parent  # the mirror package
    found = {p.stem for d in (here / "presets", here.parent / "bundles") for p in d.glob("*.yaml")}
    return sorted(found)


def examples(*lines: str) -> str:
    """The end of a command's help: examples, kept as written (click's \\b marker)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


SETTINGS: dict[str, Any] = {
    "help_option_names": ["-h", "--help"],
    "max_content_width": 100,
    "show_default": True,
}


@click.group(
    context_settings=SETTINGS,
    epilog=examples(
        "mirror export --preset palette-default --dry-run",
        "mirror verify palette.tar.zst --key keys/release.pub",
        "mirror inspect palette.tar.zst --format markdown --key keys/release.pub",
    ),
)
@click.version_option(__version__, prog_name="mirror")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars, heartbeat or summary lines.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """Take container, Helm and pack registries across an air gap.

    Connected side: `mirror export` snapshots registries into one signed bundle.
    Reviewer: `mirror verify` and `mirror inspect` (or openssl alone, see docs/VERIFYING.md).
    Air-gapped side: `mirror import` verifies, pushes into local registries and registers
    them as system-scope registries.

    Progress: bars when stderr is a terminal; otherwise a line every MIRROR_HEARTBEAT
    seconds (default 15; 0 for none) and one summary line at the end; --quiet for none of
    them. With --json, stdout holds exactly one JSON document, a failure's too:
    {"ok": false, "error": ..., "exitCode": ...}. Shell completion: `mirror completion
    bash|zsh|fish`.
    """
    ctx.ensure_object(dict).update(debug=debug, quiet=quiet)


def run_state(ctx: click.Context | None = None) -> dict[str, Any]:
    """What this run has learnt that `cli.main` needs when a command fails: the root
    context's object, made by `main` for each run (no state outlives the run)."""
    ctx = ctx or click.get_current_context(silent=True)
    if ctx is None:
        return {}
    return ctx.find_root().ensure_object(dict)


def json_option(help: str) -> Callable[[_F], _F]:
    """`--json`, remembered as soon as it is parsed: when the command then fails, `main`
    still prints the one JSON document the contract promises, an error document."""

    def remember(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        if value:
            run_state(ctx)["json"] = True
        return value

    return click.option("--json", "as_json", is_flag=True, help=help, callback=remember)


def progress_for(label: str, phase: str = "") -> Progress:
    """The command's progress, as the global flags ask (`mirror --quiet ...`)."""
    root = click.get_current_context().find_root()
    return Progress(label, phase=phase, quiet=bool((root.obj or {}).get("quiet")))


def emit(doc: Any) -> None:
    """Exactly one JSON document on stdout; `main` prints none after it, even on failure."""
    click.echo(json.dumps(doc, indent=2, sort_keys=False))
    run_state()["emitted"] = True


def selection(command: Any) -> Any:
    """The options that choose what to take, shared by `export` and `images`."""
    options = [
        click.argument("specs", nargs=-1, type=FILE),
        click.option(
            "--preset", "presets", multiple=True, type=click.Choice(presets()), help=PRESET_HELP
        ),
        click.option(
            "--registry",
            "registry_names",
            multiple=True,
            help="Pick registries by name, from the specs given or else from the defaults; "
            "repeatable.",
        ),
        click.option("--fips", is_flag=True, help="VerteX-style: FIPS registries only."),
        click.option("--allow-non-fips", is_flag=True, help=NON_FIPS_HELP),
    ]
    for option in reversed(options):
        command = option(command)
    return command


_F = TypeVar("_F", bound=Callable[..., Any])
CATALOG_OPTION = click.option(
    "--catalog",
    type=FILE,
    help="Where to record the system-scope registries.  "
    "[default: $XDG_DATA_HOME/mirror/registries.json]",
)
ALLOW_DOWNGRADE_OPTION = click.option(
    "--allow-downgrade",
    is_flag=True,
    help="Take a bundle older than one of the same name and signer imported before.",
)
JOBS_OPTION = click.option(
    "--jobs",
    "-j",
    type=click.IntRange(1, 64),
    metavar="N",
    default=JOBS,
    show_default="4 per CPU, 4 to 16",
    help="Parallel transfers and requests.",
)


def cache_dir_option(what: str) -> Callable[[_F], _F]:
    """--cache-dir: the export's cache, wherever a command reads or prunes it."""
    return click.option(
        "--cache-dir", type=FOLDER, help=f"{what}  [default: $XDG_CACHE_HOME/mirror]"
    )


def public_key_option(what: str = "Public key of the signer.") -> Callable[[_F], _F]:
    """--key on the far side: the signer's public key (export's --key is the private one)."""
    return click.option("--key", type=FILE, help=what)


def trust_options(unsigned: str, fips: str) -> Callable[[_F], _F]:
    """--allow-unsigned and --fips: what a TrustPolicy is made of, on every command that
    opens a bundle to use it (verify, import, serve); the help says what each does there."""

    def add(command: _F) -> _F:
        command = click.option("--fips", is_flag=True, help=fips)(command)
        return click.option("--allow-unsigned", is_flag=True, help=unsigned)(command)

    return add


def landing_options(base: str, images: str) -> Callable[[_F], _F]:
    """--base-path and --images-base-path: where content lands (import) or is served, by
    the same names (`oci.names`)."""

    def add(command: _F) -> _F:
        command = click.option(
            "--images-base-path", default=IMAGES_BASE, show_default=True, help=images
        )(command)
        return click.option("--base-path", default="", help=base)(command)

    return add


def ca_file_option(whose: str) -> Callable[[_F], _F]:
    """--ca-file, the same on every command that talks to registries."""
    return click.option(
        "--ca-file",
        type=click.Path(exists=True, dir_okay=False),
        help=f"CA bundle for {whose} with a private CA (added to the system's).",
    )


PRESET_HELP = "A spec shipped with mirror (bundles/NAME.yaml); repeatable."
NON_FIPS_HELP = "Let non-FIPS registries into FIPS mode."


def select_spec(
    specs: Sequence[Path], presets: Sequence[str], names: Sequence[str], fips: bool, allow: bool
) -> Any:
    """Specs and presets loaded, narrowed by --registry, checked for FIPS (spec.select)."""
    from mirror.spec import load_preset, load_spec, select

    loaded = [load_spec(p) for p in specs] + [load_preset(n) for n in presets]
    return select(loaded, names, fips=fips, allow_non_fips=allow)


def require_bundle(path: Path) -> None:
    """A bundle to read: FILE or its parts. One part given for the set is named as such
    (read alone it is a truncated archive, and completion offers exactly it)."""
    from mirror.bundle.parts import exists, whole_of

    whole = whole_of(path)
    if whole is not None:
        raise UsageError(f"{path} is one part of {whole}: pass {whole}, whose parts are read")
    if path.is_dir():
        raise UsageError(f"{path}: a directory, not a bundle")
    if path.exists() and not path.is_file():
        raise UsageError(f"{path}: not a regular file, so not a bundle")
    if not exists(path):
        raise UsageError(f"{path}: no such bundle")


def load_public(key: Path | None) -> Any:
    if key is None:
        return None
    from mirror.keys import load_public_key

    return load_public_key(key)


def load_signing_key(path: Path, fips: bool) -> Any:
    from mirror.keys import key_is_encrypted, key_password, load_private_key

    password = key_password() if key_is_encrypted(path) else None
    return load_private_key(path, password, fips=fips)
