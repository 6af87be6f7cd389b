"""The `mirror` command line: parse flags, call the library, print. Nothing else lives here.

`main(argv) -> int` maps every error to the contract's exit codes in one table.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from mirror import __version__
from mirror.errors import MirrorError, UsageError, redact
from mirror.progress import Progress
from mirror.settings import DEFAULT_JOBS as JOBS


def _presets() -> list[str]:
    """The shipped specs (bundles/*.yaml, packaged as mirror/presets), without loading them."""
    here = Path(__file__).resolve().parent
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
    them. Shell completion: `mirror completion bash|zsh|fish`.
    """
    ctx.obj = {"debug": debug, "quiet": quiet}


def _progress(label: str, phase: str = "") -> Progress:
    """The command's progress, as the global flags ask (`mirror --quiet ...`)."""
    root = click.get_current_context().find_root()
    return Progress(label, phase=phase, quiet=bool((root.obj or {}).get("quiet")))


def emit(doc: Any) -> None:
    """Exactly one JSON document on stdout."""
    click.echo(json.dumps(doc, indent=2, sort_keys=False))


def _selection(command: Any) -> Any:
    """The options that choose what to take, shared by `export` and `images`."""
    options = [
        click.argument("specs", nargs=-1, type=click.Path(dir_okay=False, path_type=Path)),
        click.option(
            "--preset", "presets", multiple=True, type=click.Choice(_presets()), help=PRESET_HELP
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
JOBS_OPTION = click.option(
    "--jobs",
    "-j",
    type=click.IntRange(1, 64),
    metavar="N",
    default=JOBS,
    show_default="4 per CPU, 4 to 16",
    help="Parallel transfers and requests.",
)


def ca_file_option(whose: str) -> Callable[[_F], _F]:
    """--ca-file, the same on every command that talks to registries."""
    return click.option(
        "--ca-file",
        type=click.Path(exists=True, dir_okay=False),
        help=f"CA bundle for {whose} with a private CA (added to the system's).",
    )


PRESET_HELP = "A spec shipped with mirror (bundles/NAME.yaml); repeatable."
NON_FIPS_HELP = "Let non-FIPS registries into FIPS mode."


def _select(
    specs: Sequence[Path], presets: Sequence[str], names: Sequence[str], fips: bool, allow: bool
) -> Any:
    """Specs and presets loaded, narrowed by --registry, checked for FIPS (spec.select)."""
    from mirror.spec import load_preset, load_spec, select

    loaded = [load_spec(p) for p in specs] + [load_preset(n) for n in presets]
    return select(loaded, names, fips=fips, allow_non_fips=allow)


# ---- registries ------------------------------------------------------------------------


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
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
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
    type=click.Path(file_okay=False, path_type=Path),
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
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The cache to prune.  [default: $XDG_CACHE_HOME/mirror]",
)
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print what was removed and kept as JSON.")
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


# ---- export ----------------------------------------------------------------------------


@cli.command(
    epilog=examples(
        "mirror export --preset palette-default --dry-run      # the plan first",
        "mirror export --preset palette-default --key keys/release.key -o palette.tar.zst",
        "mirror export edge.yaml --registry Bitnami --no-cache --split-size 4G -o edge.tar.zst",
    )
)
@_selection
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The bundle to write (required unless --dry-run). One already there is replaced "
    "atomically, and a note says so.",
)
@click.option(
    "--key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Private key to sign with (writes FILE.sig). Without it the bundle is unsigned, a "
    "note says so, and import refuses it unless --allow-unsigned.",
)
@click.option(
    "--since",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="What the far side holds: an import receipt, or an earlier bundle or its "
    "manifest.json (one-way links); ship only the blobs it does not hold.",
)
@click.option(
    "--receipt-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Public key: every --since must be a receipt signed by it (FILE.sig; exit 3 if not).",
)
@click.option(
    "--state",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep what each export of a spec sent here; each run is a numbered delta against the "
    "last (name the output with {seq}: -o outbox/palette-{seq}.tar.zst).",
)
@click.option("--full", is_flag=True, help="With --state: a full bundle that starts a new chain.")
@click.option(
    "--split-size",
    help="Cut the bundle into FILE.001, FILE.002, ... of at most this size (700M, 4G, 4GB).",
)
@JOBS_OPTION
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Verified blob cache: an interrupted export fetches only what is missing.  "
    "[default: $XDG_CACHE_HOME/mirror]",
)
@click.option(
    "--no-cache",
    is_flag=True,
    help="Write the bundle while blobs arrive: no disk beyond it but a 256 MiB spool. "
    "Nothing is kept for a rerun; blobs the cache already holds are read from it.",
)
@click.option("--with-dependencies", is_flag=True, help="Add packs that selected packs require.")
@click.option(
    "--no-referrers",
    is_flag=True,
    help="Leave signatures, SBOMs and attestations behind; the bundle records that.",
)
@click.option(
    "--no-images",
    is_flag=True,
    help="Carry no images; the bundle records the closure as skipped on purpose.",
)
@ca_file_option("source registries")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Resolve and print the plan; fetch only pack and chart layers (dependencies, images).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def export(
    specs: tuple[Path, ...],
    presets: tuple[str, ...],
    registry_names: tuple[str, ...],
    fips: bool,
    allow_non_fips: bool,
    output: Path | None,
    key: Path | None,
    since: tuple[Path, ...],
    receipt_key: Path | None,
    state: Path | None,
    full: bool,
    split_size: str | None,
    jobs: int,
    cache_dir: Path | None,
    no_cache: bool,
    with_dependencies: bool,
    no_referrers: bool,
    no_images: bool,
    ca_file: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Snapshot registries into one bundle (FILE, FILE.sha256 and, with --key, FILE.sig).

    With no SPEC and no --preset, export takes all six default registries (`mirror
    registries list`): every version of every chart in Bitnami too, which is large. Run
    with --dry-run first; a copy of 1 GiB or more prints its size before it starts.
    """
    from mirror.bundle.parts import parse_size
    from mirror.export import ExportOptions
    from mirror.export import export as run_export
    from mirror.settings import Settings

    parts = parse_size(split_size) if split_size else None
    if output is None and not dry_run:
        raise UsageError("missing --output FILE (or --dry-run for the plan alone)")
    if full and state is None:
        raise UsageError("--full starts a new chain of --state FILE; give --state")
    if output is not None and not dry_run and not output.resolve().parent.is_dir():
        raise UsageError(f"{output.parent}: no such directory for --output; create it first")
    spec = _select(specs, presets, registry_names, fips, allow_non_fips)
    if not (specs or presets or registry_names):
        names = ", ".join(r.name for r in spec.registries)
        click.echo(
            f"note: no spec or --preset: exporting all {len(spec.registries)} default "
            f"registries ({names}); --dry-run shows the plan first",
            err=True,
        )
    private = _load_signing_key(key, spec.fips) if key else None
    opts = ExportOptions(
        output=output or Path("bundle.tar.zst"),
        settings=Settings.from_env(jobs=jobs, ca_file=ca_file, cache_dir=cache_dir),
        dry_run=dry_run,
        key=private,
        with_dependencies=with_dependencies,
        since=since,
        receipt_key=_receipt_pub(receipt_key, since),
        split_size=parts,
        images=not no_images,
        referrers=not no_referrers,
        state=state,
        full=full,
        no_cache=no_cache,
    )
    with _progress("export", "fetch") as progress:
        result = run_export(spec, opts, progress)
    if output is None:
        result.output = None  # a dry run without --output names no file
    for note in result.notes:
        if note not in progress.said:
            click.echo(f"note: {note}", err=True)
    progress.summary(
        artifacts=result.artifacts, blobs=result.blobs, nbytes=result.bytes, dry_run=dry_run
    )
    if as_json:
        emit(result.to_json())
    else:
        _print_export(result)


def _receipt_pub(path: Path | None, since: tuple[Path, ...]) -> Any:
    if path is not None and not since:
        raise UsageError("--receipt-key checks the receipts that --since names; give --since")
    return _load_public(path) if path is not None else None


def _load_signing_key(path: Path, fips: bool) -> Any:
    from mirror.keys import key_is_encrypted, key_password, load_private_key

    password = key_password() if key_is_encrypted(path) else None
    return load_private_key(path, password, fips=fips)


def _print_export(result: Any) -> None:
    from mirror.units import exact, human

    verb = "would copy" if result.dry_run else "wrote"
    for row in result.plan if result.dry_run else []:
        click.echo(f"  {row['kind']:<6} {row['ref']}  {row['digest'][:19]}")
    if result.images or result.skipped_images:
        carried = f"{len(result.images)} images" + (" (planned)" if result.dry_run else "")
        skipped = f", {len(result.skipped_images)} skipped (--no-images)"
        click.echo(carried + (skipped if result.skipped_images else ""))
    click.echo(
        f"{verb} {result.artifacts} artifacts, {result.blobs} blobs, {exact(result.bytes)}"
        f" ({human(result.downloaded_bytes)} downloaded, {human(result.cached_bytes)} cached)"
        + ("" if result.dry_run else f" -> {result.output}{_parts_note(result.output)}")
        + (" [signed]" if result.signed and not result.dry_run else "")
    )


def _parts_note(output: str) -> str:
    """Where a split bundle went: only its parts are on disk, never FILE itself."""
    from mirror.bundle.parts import parts_of

    parts = parts_of(Path(output))
    if len(parts) < 2 and (not parts or parts[0].name == Path(output).name):
        return ""
    return f" (in {len(parts)} parts: {parts[0].name} to {parts[-1].name})"


# ---- images ----------------------------------------------------------------------------


@cli.command(
    epilog=examples(
        "mirror images --preset palette-default",
        "mirror images edge.yaml --registry 'Palette Registry' --json",
    )
)
@_selection
@JOBS_OPTION
@ca_file_option("source registries")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The export's cache: archives already there are read from it.  "
    "[default: $XDG_CACHE_HOME/mirror]",
)
@click.option(
    "--with-dependencies",
    is_flag=True,
    help="Add the images of packs that selected packs require, as export would carry.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the closure as a JSON array.")
def images(
    specs: tuple[Path, ...],
    presets: tuple[str, ...],
    registry_names: tuple[str, ...],
    fips: bool,
    allow_non_fips: bool,
    jobs: int,
    ca_file: str | None,
    cache_dir: Path | None,
    with_dependencies: bool,
    as_json: bool,
) -> None:
    """Print the image closure of a selection: every image export would carry.

    Reads the selected packs' and charts' archives, and asks no image host anything.
    "maybe" lines (stderr with --json) are image-looking values that no list names: they
    are not carried unless listed in the pack or the spec's `images:`.
    """
    from mirror.cache import BlobCache
    from mirror.closure import closure_of
    from mirror.discovery.select import discover_all
    from mirror.settings import Settings

    spec = _select(specs, presets, registry_names, fips, allow_non_fips)
    settings = Settings.from_env(jobs=jobs, ca_file=ca_file, cache_dir=cache_dir)
    cache = BlobCache(settings.cache_dir)
    selection = discover_all(spec, net=settings.net, jobs=jobs, known=cache)
    found = list(selection.found)
    if with_dependencies:  # the packs export --with-dependencies would add, and their images
        from mirror.discovery.packdeps import check_packs

        found += check_packs(found, cache, add=True, store=True, jobs=jobs).added
    closure = closure_of(spec, found, cache, jobs=jobs)
    for note in closure.notes:
        click.echo(f"warning: {note}", err=True)
    if as_json:
        emit([n.to_json() for n in closure.images])
        for n in closure.maybe:
            click.echo(f"maybe: {n.ref} (in {', '.join(n.needed_by)})", err=True)
        return
    for n in closure.images:
        click.echo(f"{n.ref}  <- {', '.join(n.needed_by)}")
    if closure.maybe:
        click.echo("maybe (named in values, in no list; not carried):")
        for n in closure.maybe:
            click.echo(f"  {n.ref}  <- {', '.join(n.needed_by)}")
    click.echo(f"{len(closure.images)} images, {len(closure.unresolved)} unresolved", err=True)


# ---- verify / inspect ------------------------------------------------------------------


@cli.command(
    epilog=examples(
        "mirror verify palette.tar.zst --key keys/release.pub",
        "mirror verify vertex.tar.zst --key release.pub --fips --json",
        "mirror verify lab.tar.zst --allow-unsigned",
    )
)
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option(
    "--key", type=click.Path(dir_okay=False, path_type=Path), help="Public key of the signer."
)
@click.option("--allow-unsigned", is_flag=True, help="Accept a bundle without a signature.")
@click.option("--fips", is_flag=True, help="Also fail on any non-FIPS artifact.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
def verify(bundle: Path, key: Path | None, allow_unsigned: bool, fips: bool, as_json: bool) -> None:
    """Check a bundle end to end, fail-closed: signatures, every member, the OCI layout."""
    from mirror.bundle.parts import total_size
    from mirror.bundle.trust import TrustPolicy, open_trusted
    from mirror.bundle.verify import MissingImagesError

    try:  # with --json, any refusal (a missing file, a bad key) is a verdict document too
        _require_file(bundle)
        pub = _load_public(key)
        with _progress("verify") as progress:
            progress.planned(0, total_size(bundle))
            policy = TrustPolicy(pub, allow_unsigned=allow_unsigned, fips=fips)
            res = open_trusted(bundle, policy, observer=progress).result
            assert res is not None  # no memo: the full pass always runs here
            progress.summary(artifacts=res.artifacts, blobs=res.blobs, nbytes=res.bytes)
    except MirrorError as exc:
        if as_json:
            keys = ("artifacts", "blobs", "bytes", "signer", "fips", "images")
            missing = exc.missing if isinstance(exc, MissingImagesError) else []
            emit(
                {
                    "ok": False,
                    **dict.fromkeys(keys),
                    "missingImages": missing,
                    "error": redact(str(exc)),
                }
            )
        raise
    doc: dict[str, Any] = {
        "ok": True,
        "artifacts": res.artifacts,
        "blobs": res.blobs,
        "bytes": res.bytes,
        "signer": res.signer,
        "fips": res.fips,
        "images": res.images,
        "missingImages": [],
        "error": None,
    }
    if as_json:
        emit(doc)
    else:
        signer = res.signer or "UNSIGNED (accepted with --allow-unsigned)"
        from mirror.units import exact

        click.echo(
            f"OK: {res.artifacts} artifacts, {res.images} images, {res.blobs} blobs, "
            f"{exact(res.bytes)} uncompressed; signer {signer}"
        )


@cli.command(
    epilog=examples(
        "mirror inspect palette.tar.zst",
        "mirror inspect palette.tar.zst --format markdown --key keys/release.pub > approval.md",
        "mirror inspect palette.tar.zst --json",
    )
)
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "markdown"]),
    default="table",
    help="table: for a terminal; json: for scripts; markdown: an approval record to sign "
    "(it also hashes the whole file for its sha256).",
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option(
    "--key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Public key: verify the bundle first, as `mirror verify` does, and say so. "
    "Without it the signer shown is only claimed.",
)
def inspect(bundle: Path, fmt: str, as_json: bool, key: Path | None) -> None:
    """Show what a bundle holds, reading only its head (instant on any size).

    The signer shown is the one the manifest claims, unless --key verifies it (which reads
    the whole bundle, as `mirror verify` does).
    """
    from mirror.bundle.approval import check_file, render_record
    from mirror.bundle.inspect import inspect_bundle, render_table
    from mirror.bundle.parts import total_size

    if as_json and fmt not in ("json", "table"):
        raise UsageError(f"--json and --format {fmt} ask for two outputs; give one")
    _require_file(bundle)
    pub = _load_public(key)
    doc = inspect_bundle(bundle)
    if pub is not None or fmt == "markdown":
        with _progress("inspect") as progress:
            progress.planned(0, total_size(bundle), "verify" if pub is not None else "hash")
            doc = check_file(doc, bundle, pub, progress)
    if as_json or fmt == "json":
        emit(doc)
    elif fmt == "markdown":
        click.echo(render_record(doc, bundle), nl=False)
    else:
        click.echo(render_table(doc))


# ---- import ----------------------------------------------------------------------------


@cli.command(
    "import",
    epilog=examples(
        "mirror import palette.tar.zst --target https://registry.airgap.example:5000 \\",
        "    --key keys/release.pub --mirror-config mirror-config",
        "mirror import palette.tar.zst --target https://registry.airgap.example:5000 \\",
        "    --key keys/release.pub --dry-run --json",
    ),
)
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--target", required=True, help="Registry URL; http:// means plain HTTP.")
@click.option(
    "--key", type=click.Path(dir_okay=False, path_type=Path), help="Public key of the signer."
)
@click.option(
    "--allow-unsigned", is_flag=True, help="Accept a bundle without a signature (not with --fips)."
)
@click.option("--fips", is_flag=True, help="Refuse non-FIPS content and unsigned bundles.")
@click.option("--base-path", default="", help="Prefix for every repository on the target.")
@click.option(
    "--images-base-path",
    default="spectro-images",
    show_default=True,
    help="Where images land under the target: BASE/IMAGES-BASE/HOST/PATH.",
)
@click.option(
    "--mirror-config",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write mirror-registries.txt (image-swap) and containerd certs.d/ here.",
)
@click.option(
    "--helm-repo-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write every chart of the bundle here as a static Helm repository "
    "(index.yaml + .tgz); a Helm repository's own index entry wins over an OCI copy.",
)
@click.option(
    "--catalog",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to record the system-scope registries.  "
    "[default: $XDG_DATA_HOME/mirror/registries.json]",
)
@click.option("--palette-url", help="Register in Palette too (key from PALETTE_API_KEY).")
@click.option(
    "--receipt",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write what the target now holds here: the next export's --since.",
)
@click.option(
    "--receipt-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Private key: sign the receipt (FILE.sig beside it); --key stays the bundle's public key.",
)
@ca_file_option("a target registry")
@JOBS_OPTION
@click.option("--force", is_flag=True, help="Replace target tags that point elsewhere.")
@click.option(
    "--allow-downgrade",
    is_flag=True,
    help="Import a bundle older than one of the same name and signer imported before.",
)
@click.option("--dry-run", is_flag=True, help="Verify and print the plan; push nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def import_(
    bundle: Path,
    target: str,
    key: Path | None,
    allow_unsigned: bool,
    fips: bool,
    base_path: str,
    images_base_path: str,
    mirror_config: Path | None,
    helm_repo_dir: Path | None,
    catalog: Path | None,
    palette_url: str | None,
    receipt: Path | None,
    receipt_key: Path | None,
    ca_file: str | None,
    jobs: int,
    force: bool,
    allow_downgrade: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Verify a bundle, push it into a registry, register it as system-scope registries.

    The target's credentials: MIRROR_TARGET_USERNAME and MIRROR_TARGET_PASSWORD, else a
    `docker login` or `podman login` to it (to TARGET/BASE-PATH counts too). A TARGET
    without a scheme means https://; http:// means plain HTTP.
    """
    from mirror.catalog import default_catalog_path
    from mirror.importer import ImportOptions, import_bundle
    from mirror.settings import Settings

    _require_file(bundle)
    if palette_url and not dry_run and not os.environ.get("PALETTE_API_KEY"):
        raise UsageError("--palette-url needs PALETTE_API_KEY in the environment")
    opts = ImportOptions(
        bundle=bundle,
        target=target,
        pub=_load_public(key),
        catalog=catalog or default_catalog_path(),
        allow_unsigned=allow_unsigned,
        fips=fips,
        base_path=base_path.strip("/"),
        images_base_path=images_base_path.strip("/"),
        mirror_config=mirror_config,
        helm_repo_dir=helm_repo_dir,
        receipt=receipt,
        receipt_key=_receipt_signer(receipt_key, receipt, fips),
        settings=Settings.from_env(jobs=jobs, ca_file=ca_file),
        dry_run=dry_run,
        force=force,
        allow_downgrade=allow_downgrade,
    )
    with _progress("import", "push") as progress:
        result = import_bundle(opts, progress)
        done = result.to_json()
        pushed = "toPush" if dry_run else "pushed"  # a dry run counts what it would push
        progress.summary(
            artifacts=len(done["artifacts"]),
            blobs=done[f"{pushed}Blobs"],
            nbytes=done[f"{pushed}Bytes"],
            dry_run=dry_run,
        )
    palette = []
    if palette_url and not dry_run:
        palette = _register_palette(palette_url, result.registered, ca_file)
    if as_json:
        emit({**result.to_json(), "palette": palette, "catalog": str(opts.catalog)})
    else:
        _print_import(result)
        for row in palette:
            click.echo(f"palette: {row['action']} {row['kind']} registry {row['name']}")
        if not dry_run:
            where = (
                "registered in Palette too"
                if palette_url
                else ("Palette itself was not changed (--palette-url registers there)")
            )
            click.echo(f"system-scope catalog: {opts.catalog}; {where}")


def _receipt_signer(path: Path | None, receipt: Path | None, fips: bool) -> Any:
    if path is not None and receipt is None:
        raise UsageError("--receipt-key signs the receipt: give --receipt FILE too")
    return _load_signing_key(path, fips) if path is not None else None


def _register_palette(url: str, entries: Sequence[Any], ca_file: str | None) -> list[Any]:
    from mirror.palette import PaletteClient, registry_auth_from_env

    api_key = os.environ.get("PALETTE_API_KEY")
    if not api_key:
        raise UsageError("--palette-url needs PALETTE_API_KEY in the environment")
    with PaletteClient(url, api_key, ca_file=ca_file) as palette:
        return palette.register(entries, registry_auth_from_env())


def _print_import(result: Any) -> None:
    from mirror.units import human

    doc = result.to_json()
    for row in doc["artifacts"]:
        click.echo(f"  {row['target']}  {row['digest'][:19]}")
    for row in doc["images"]:  # where each image lands: what the mirror config points at
        click.echo(f"  {row['target']}  <- {row['ref']}")
    if result.dry_run:
        click.echo(
            f"would push {doc['toPushBlobs']} blobs ({human(doc['toPushBytes'])}); "
            f"{doc['skippedBlobs']} blobs ({human(doc['presentBytes'])}) already present"
        )
        return
    click.echo(
        f"pushed {doc['pushedBlobs']} blobs, mounted {doc['mountedBlobs']}, "
        f"skipped {doc['skippedBlobs']} already present"
    )
    for reg in doc["registered"]:
        fips = " (FIPS)" if reg["fips"] else ""
        click.echo(f"registered {reg['name']}{fips}: {reg['endpoint']}/{reg['baseContentPath']}")
    for m in doc["mirrors"]:
        click.echo(f"mirror {m['upstream']} -> {m['endpoint']}")
    for path in doc.get("mirrorConfig") or []:
        click.echo(f"wrote {path}")


# ---- serve -----------------------------------------------------------------------------


@cli.command(
    epilog=examples(
        "mirror serve palette.tar.zst --key keys/release.pub",
        "mirror serve palette.tar.zst --key keys/release.pub --listen 0.0.0.0:5000 \\",
        "    --tls-cert registry.pem --tls-key registry-key.pem --base-path edge",
    )
)
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--key", type=click.Path(dir_okay=False, path_type=Path), help="Public key.")
@click.option("--allow-unsigned", is_flag=True, help="Serve a bundle without a signature.")
@click.option("--fips", is_flag=True, help="Refuse non-FIPS content and unsigned bundles.")
@click.option(
    "--listen", default="127.0.0.1:5000", show_default=True, help="HOST:PORT; port 0 picks one."
)
@click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path), help="PEM chain.")
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), help="PEM key.")
@click.option(
    "--tls-client-ca",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Mutual TLS: serve only clients whose certificate this CA signed.",
)
@click.option("--base-path", default="", help="Prefix for every repository, as on import.")
@click.option(
    "--images-base-path",
    default="spectro-images",
    show_default=True,
    help="Where images are served: BASE/IMAGES-BASE/HOST/PATH.",
)
def serve(
    bundle: Path,
    key: Path | None,
    allow_unsigned: bool,
    fips: bool,
    listen: str,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_client_ca: Path | None,
    base_path: str,
    images_base_path: str,
) -> None:
    """Serve a verified bundle as a read-only OCI registry, with nothing unpacked.

    The bundle is verified first, as by import (exit 3 on what import refuses). Then it
    answers the OCI distribution pull API under the repository names import would create,
    and every Helm repository of the bundle at /charts/SLUG/index.yaml, until SIGTERM or
    Ctrl-C. The mirror configuration for its own address goes to stdout; access logs go
    to stderr in common log format.
    """
    from mirror.bundle.parts import total_size
    from mirror.serve.server import ServeOptions, check_options, open_store
    from mirror.settings import Settings

    _require_file(bundle)
    opts = ServeOptions(
        bundle=bundle,
        pub=_load_public(key),
        allow_unsigned=allow_unsigned,
        fips=fips,
        listen=listen,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_client_ca=tls_client_ca,
        base_path=base_path.strip("/"),
        images_base_path=images_base_path.strip("/"),
        memo=Settings.from_env().memo,
    )
    host, port = check_options(opts)
    with _progress("verify") as progress:
        progress.planned(0, total_size(bundle))
        store, trusted = open_store(opts, progress)
    _serve_until_signal(store, opts, trusted.signer, host, port)


def _serve_until_signal(store: Any, opts: Any, signer: str | None, host: str, port: int) -> None:
    """Bind, print where and how to pull, then serve until SIGTERM or SIGINT."""
    import signal
    import threading

    from mirror.serve.app import RegistryApp
    from mirror.serve.server import AccessLog, Server, mirror_config_text

    def log(line: str) -> None:
        click.echo(line, err=True)

    tls = (opts.tls_cert, opts.tls_key) if opts.tls_cert else None
    app = AccessLog(RegistryApp(store), log)
    server = Server(app, host, port, tls=tls, client_ca=opts.tls_client_ca)
    try:
        bound_host, bound_port = server.address
        scheme = "https" if tls else "http"
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        where = f"{scheme}://{shown}:{bound_port}"
        click.echo(f"serving {opts.bundle} at {where} (signer {signer or 'none'})")
        click.echo(f"  {len(store.repos)} repositories; pull API at {where}/v2/")
        for slug_ in sorted(store.helm):
            click.echo(f"  Helm repository: {where}/charts/{slug_}/index.yaml")
        click.echo(mirror_config_text(store, opts, bound_host, bound_port), nl=False)
        sys.stdout.flush()
    except BaseException:
        server.release()  # bound, never run: its worker pool would outlive the error
        raise
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.run(stop)
    click.echo("stopped", err=True)


# ---- shared helpers --------------------------------------------------------------------


def _require_file(path: Path) -> None:
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


def _load_public(key: Path | None) -> Any:
    if key is None:
        return None
    from mirror.keys import load_public_key

    return load_public_key(key)


# ---- entry points ----------------------------------------------------------------------


INTERRUPTED = "interrupted; nothing partial was left, and a second run carries on from here"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and map every outcome to the contract's exit codes, in this one place.

    Ctrl-C and SIGTERM are exit 1, as the contract's table has "interrupted". `--debug`
    and `--quiet` count anywhere before `--`, as global flags do in docker and zarf."""
    args = list(sys.argv[1:] if argv is None else argv)
    end = args.index("--") if "--" in args else len(args)
    debug = "--debug" in args[:end]
    wanted = [flag for flag in ("--debug", "--quiet") if flag in args[:end]]
    if wanted:  # global flags, wherever they were typed, go before the command
        args = [*wanted, *(a for a in args[:end] if a not in wanted), *args[end:]]
    try:
        cli.main(args=args, prog_name="mirror", standalone_mode=False)
        return 0
    except MirrorError as exc:
        return _fail(str(exc), exc.exit_code, debug)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        return _fail(INTERRUPTED, 1, debug)
    except click.exceptions.NoArgsIsHelpError as exc:  # `mirror`, `mirror cache`: the help
        click.echo(exc.ctx.get_help() if exc.ctx else exc.format_message())
        return 0
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "mirror"
        return _fail(f"{exc.format_message()} (see '{where} --help')", 2, debug)
    except click.ClickException as exc:
        return _fail(exc.format_message(), int(exc.exit_code), debug)
    except KeyboardInterrupt:
        return _fail(INTERRUPTED, 1, debug)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}", 1, debug)


def _fail(message: str, code: int, debug: bool) -> int:
    """The one line, and with --debug the traceback: both redacted, since a usage error
    echoes what was typed and a traceback repeats every message in its chain."""
    if debug:
        click.echo(redact(traceback.format_exc()).rstrip("\n"), err=True)
    click.echo(f"mirror: error: {_one_line(redact(message))}", err=True)
    return code


MAX_ERROR = 2000  # characters of an error line; what a hostile document puts in one is cut


def _one_line(text: str) -> str:
    """The contract's one line: a newline inside (a hostile name, a server's words) is
    shown escaped, and a megabyte of value quoted back is cut, with its length said."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= MAX_ERROR else f"{text[:MAX_ERROR]}... ({len(text)} characters)"


def run() -> None:
    """The console script and `python -m mirror`. SIGTERM unwinds like Ctrl-C, so every
    `finally` runs: temp files go, workers stop, nothing is left half-written."""
    import signal

    signal.signal(signal.SIGTERM, _interrupt)
    exit_now(main())


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


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
