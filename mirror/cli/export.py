"""`export` and `images`: the connected side, from a selection to a bundle or a list."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from mirror.cli.base import (
    FILE,
    FOLDER,
    JOBS_OPTION,
    ca_file_option,
    cache_dir_option,
    cli,
    emit,
    examples,
    json_option,
    load_public,
    load_signing_key,
    progress_for,
    select_spec,
    selection,
)
from mirror.errors import UsageError, terminal_safe


@cli.command(
    epilog=examples(
        "mirror export --preset palette-default --dry-run      # the plan first",
        "mirror export --preset palette-default --key keys/release.key -o palette.tar.zst",
        "mirror export edge.yaml --registry Bitnami --no-cache --split-size 4G -o edge.tar.zst",
    )
)
@selection
@click.option(
    "--output",
    "-o",
    type=FILE,
    help="The bundle to write (required unless --dry-run). One already there is replaced "
    "atomically, and a note says so.",
)
@click.option(
    "--key",
    type=FILE,
    help="Private key to sign with (writes FILE.sig). Without it the bundle is unsigned, a "
    "note says so, and import refuses it unless --allow-unsigned.",
)
@click.option(
    "--since",
    multiple=True,
    type=FILE,
    help="What the far side holds: an import receipt, or an earlier bundle or its "
    "manifest.json (one-way links); ship only the blobs it does not hold.",
)
@click.option(
    "--receipt-key",
    type=FILE,
    help="Public key: every --since must be a receipt signed by it (FILE.sig; exit 3 if not).",
)
@click.option(
    "--state",
    type=FOLDER,
    help="Keep what each export of a spec sent here; each run is a numbered delta against the "
    "last (name the output with {seq}: -o outbox/palette-{seq}.tar.zst).",
)
@click.option("--full", is_flag=True, help="With --state: a full bundle that starts a new chain.")
@click.option(
    "--split-size",
    help="Cut the bundle into FILE.001, FILE.002, ... of at most this size (700M, 4G, 4GB).",
)
@JOBS_OPTION
@cache_dir_option("Verified blob cache: an interrupted export fetches only what is missing.")
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
@json_option("Print the summary as JSON.")
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
    if output is not None and not dry_run and not output.name:  # `-o ''`: Path('.')
        raise UsageError(f"--output {str(output)!r}: a folder; give a file name")
    if output is not None and not dry_run and not output.resolve().parent.is_dir():
        raise UsageError(f"{output.parent}: no such directory for --output; create it first")
    if output is not None and not dry_run:
        from mirror.bundle.parts import SHA256_SIDECAR, SIG_SIDECAR, sidecar
        from mirror.streams import refuse_special

        written = (output, sidecar(output, SHA256_SIDECAR), sidecar(output, SIG_SIDECAR))
        for path in written:
            refuse_special(path)  # before anything is fetched, not at the rename
        inputs = [*specs, *since, *(p for p in (key, receipt_key, state) if p is not None)]
        _refuse_replacing_inputs(written, [*inputs, *([Path(ca_file)] if ca_file else [])])
    spec = select_spec(specs, presets, registry_names, fips, allow_non_fips)
    if not (specs or presets or registry_names):
        names = ", ".join(r.name for r in spec.registries)
        click.echo(
            f"note: no spec or --preset: exporting all {len(spec.registries)} default "
            f"registries ({names}); --dry-run shows the plan first",
            err=True,
        )
    private = load_signing_key(key, spec.fips) if key else None
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
    with progress_for("export", "fetch") as progress:
        result = run_export(spec, opts, progress)
    if output is None:
        result.output = None  # a dry run without --output names no file
    for note in result.notes:
        if note not in progress.said:
            click.echo(f"note: {terminal_safe(note)}", err=True)
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
    return load_public(path) if path is not None else None


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


def _refuse_replacing_inputs(written: Sequence[Path], inputs: Sequence[Path]) -> None:
    """`export spec.yaml -o spec.yaml` replaced the spec with the bundle, and `--since B
    -o B` the base with its delta: an input is never among what the export writes."""
    for path in inputs:
        for out in written:
            same = path.resolve() == out.resolve()
            if same or (path.exists() and out.exists() and path.samefile(out)):
                raise UsageError(
                    f"--output would write {out}, which is {path}, an input of this export; "
                    "choose another name"
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
@selection
@JOBS_OPTION
@ca_file_option("source registries")
@cache_dir_option("The export's cache: archives already there are read from it.")
@click.option(
    "--with-dependencies",
    is_flag=True,
    help="Add the images of packs that selected packs require, as export would carry.",
)
@json_option("Print the closure as a JSON array.")
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

    spec = select_spec(specs, presets, registry_names, fips, allow_non_fips)
    settings = Settings.from_env(jobs=jobs, ca_file=ca_file, cache_dir=cache_dir)
    cache = BlobCache(settings.cache_dir)
    selection = discover_all(spec, net=settings.net, jobs=jobs, known=cache)
    found = list(selection.found)
    if with_dependencies:  # the packs export --with-dependencies would add, and their images
        from mirror.discovery.packdeps import check_packs

        found += check_packs(found, cache, add=True, store=True, jobs=jobs).added
    closure = closure_of(spec, found, cache, jobs=jobs)
    for note in closure.notes:
        click.echo(f"warning: {terminal_safe(note)}", err=True)
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
