"""`verify` and `inspect`: the reviewer's commands, reading a bundle and changing nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mirror.cli.base import (
    BUNDLE_ARGUMENT,
    cli,
    emit,
    examples,
    json_option,
    load_public,
    progress_for,
    public_key_option,
    require_bundle,
    trust_options,
)
from mirror.errors import MirrorError, UsageError, redact


@cli.command(
    epilog=examples(
        "mirror verify palette.tar.zst --key keys/release.pub",
        "mirror verify vertex.tar.zst --key release.pub --fips --json",
        "mirror verify lab.tar.zst --allow-unsigned",
    )
)
@BUNDLE_ARGUMENT
@public_key_option()
@trust_options(
    unsigned="Accept a bundle without a signature.", fips="Also fail on any non-FIPS artifact."
)
@json_option("Print the verdict as JSON.")
def verify(bundle: Path, key: Path | None, allow_unsigned: bool, fips: bool, as_json: bool) -> None:
    """Check a bundle end to end, fail-closed: signatures, every member, the OCI layout."""
    from mirror.bundle.parts import total_size
    from mirror.bundle.trust import TrustPolicy, open_trusted
    from mirror.bundle.verify import MissingImagesError

    try:  # with --json, any refusal (a missing file, a bad key) is a verdict document too
        require_bundle(bundle)
        pub = load_public(key)
        with progress_for("verify") as progress:
            progress.planned(0, total_size(bundle))
            policy = TrustPolicy(pub, allow_unsigned=allow_unsigned, fips=fips)
            res = open_trusted(bundle, policy, observer=progress).result
            assert res is not None  # no memo: the full pass always runs here
            progress.summary(artifacts=res.artifacts, blobs=res.blobs, nbytes=res.bytes)
    except MirrorError as exc:
        if as_json:
            keys = ("artifacts", "blobs", "bytes", "signer", "signed", "fips", "images")
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
        "signed": res.signed,  # with signer null: signed, not checked (no --key)
        "fips": res.fips,
        "images": res.images,
        "missingImages": list(res.missing_images),  # all skipped on purpose, or not ok
        "error": None,
    }
    if as_json:
        emit(doc)
    else:
        unchecked = "signed, not checked (no --key"  # the audit (stop 31): not "UNSIGNED"
        signer = res.signer or (
            f"{unchecked}; accepted with --allow-unsigned)"
            if res.signed
            else "UNSIGNED (accepted with --allow-unsigned)"
        )
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
@BUNDLE_ARGUMENT
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "markdown"]),
    default="table",
    help="table: for a terminal; json: for scripts; markdown: an approval record to sign "
    "(it also hashes the whole file for its sha256).",
)
@json_option("Same as --format json.")
@public_key_option(
    "Public key: verify the bundle first, as `mirror verify` does, and say so. "
    "Without it the signer shown is only claimed."
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
    require_bundle(bundle)
    pub = load_public(key)
    doc = inspect_bundle(bundle)
    if pub is not None or fmt == "markdown":
        with progress_for("inspect") as progress:
            progress.planned(0, total_size(bundle), "verify" if pub is not None else "hash")
            doc = check_file(doc, bundle, pub, progress)
    if as_json or fmt == "json":
        emit(doc)
    elif fmt == "markdown":
        click.echo(render_record(doc, bundle), nl=False)
    else:
        click.echo(render_table(doc))
