"""`registries list`, `keygen`, `completion` and `cache prune`: the small commands."""

from __future__ import annotations

from pathlib import Path

import click

from mirror.cli.base import (
    FOLDER,
    cache_dir_option,
    cli,
    emit,
    examples,
    json_option,
)
from mirror.errors import UsageError


@cli.group(
    epilog=examples("mirror registries list", "mirror registries list --scope system --json")
)
def registries() -> None:
    """The default Palette registries and this host's system-scope registries."""


@registries.command(
    "list",
    epilog=examples(
        "mirror registries list --fips",
        "mirror registries list --scope system",
        "mirror registries list --scope all --json",
    ),
)
@click.option(
    "--scope",
    type=click.Choice(["default", "system", "all"]),
    default="default",
    show_default=True,
    help="default: Palette's registries; system: those imported on this host.",
)
@click.option("--fips", is_flag=True, help="Only FIPS registries (VerteX's default).")
@click.option(
    "--catalog",
    type=click.Path(path_type=Path),
    help="System catalog file.  [default: $XDG_DATA_HOME/mirror/registries.json]",
)
@json_option("Print JSON.")
def registries_list(scope: str, fips: bool, catalog: Path | None, as_json: bool) -> None:
    """List registries."""
    from mirror.catalog import list_rows, render_table

    rows = list_rows(scope, fips, catalog)
    if as_json:
        emit(rows)
    else:
        click.echo(render_table(rows))


# ---- keygen ----------------------------------------------------------------------------


@cli.command(
    epilog=examples(
        "mirror keygen --output-dir keys --name release",
        "MIRROR_KEY_PASSWORD=... mirror keygen --name ci-signer",
    )
)
@click.option(
    "--output-dir",
    type=FOLDER,
    default=Path("."),
    show_default=True,
    help="Folder for the key pair; an existing NAME.key there is never overwritten.",
)
@click.option("--name", default="mirror", show_default=True, help="Writes NAME.key and NAME.pub.")
def keygen(output_dir: Path, name: str) -> None:
    """Make an ECDSA P-256 key pair (cosign's key format).

    The password comes from MIRROR_KEY_PASSWORD, or a prompt on a terminal.
    """
    from mirror.keys import fingerprint, generate_keypair, key_password, load_public_key

    if not name or name in (".", "..") or "/" in name or not name.isprintable():
        raise UsageError(f"--name {name!r}: a file name, without a folder (--output-dir)")
    key_path, pub_path = generate_keypair(output_dir, name, key_password(confirm=True))
    click.echo(f"private key: {key_path} (mode 0600)", err=True)
    click.echo(f"public key:  {pub_path}", err=True)
    click.echo(f"fingerprint: {fingerprint(load_public_key(pub_path))}", err=True)


# ---- completion -------------------------------------------------------------------------


@cli.command(
    epilog=examples(
        "mirror completion bash > /etc/bash_completion.d/mirror",
        'mirror completion zsh > "${fpath[1]}/_mirror"',
        "mirror completion fish > ~/.config/fish/completions/mirror.fish",
    )
)
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script: commands, options, presets and file paths.

    Or, in ~/.bashrc or ~/.zshrc: eval "$(mirror completion bash)" (or zsh). The same
    script as `_MIRROR_COMPLETE=SHELL_source mirror`, click's own mechanism.
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None  # click ships all three
    click.echo(cls(cli, {}, "mirror", "_MIRROR_COMPLETE").source())


# ---- cache ------------------------------------------------------------------------------


@cli.group(
    epilog=examples(
        "mirror cache prune --max-size 50G", "mirror cache prune --max-size 0 --dry-run --json"
    )
)
def cache() -> None:
    """The export's blob cache: what lets an interrupted or repeated export fetch less."""


@cache.command(
    "prune",
    epilog=examples(
        "mirror cache prune --max-size 50G                 # after each monthly export",
        "mirror cache prune --max-size 0 --dry-run         # what every blob comes to",
        "mirror cache prune --max-size 20G --cache-dir /srv/mirror-cache --json",
    ),
)
@click.option(
    "--max-size",
    required=True,
    metavar="SIZE",
    help="Keep at most this much (700M, 50G, 50GB); 0 removes every blob.",
)
@cache_dir_option("The cache to prune.")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@json_option("Print what was removed and kept as JSON.")
def cache_prune(max_size: str, cache_dir: Path | None, dry_run: bool, as_json: bool) -> None:
    """Remove the least recently used blobs until the cache fits in --max-size.

    Refuses (exit 1) while an export is using the cache. A pruned blob costs only a fetch
    the next time an export needs it.
    """
    from mirror.bundle.parts import parse_size
    from mirror.cacheprune import prune
    from mirror.settings import Settings
    from mirror.units import human

    limit = parse_size(max_size, "--max-size", 0)
    root = Settings.from_env(cache_dir=cache_dir).cache_dir
    report = prune(root, limit, dry_run=dry_run)
    if as_json:
        emit({**report.to_json(), "dryRun": dry_run})
        return
    click.echo(
        f"{'would remove' if dry_run else 'removed'} {report.removed_blobs} blobs "
        f"({human(report.removed_bytes)}), "
        f"kept {report.kept_blobs} blobs ({human(report.kept_bytes)}) in {root}"
    )
