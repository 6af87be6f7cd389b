"""`import`: the air-gapped side, from a verified bundle into a registry and its catalog."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from mirror.cli.base import (
    ALLOW_DOWNGRADE_OPTION,
    BUNDLE_ARGUMENT,
    CATALOG_OPTION,
    FILE,
    FOLDER,
    JOBS_OPTION,
    ca_file_option,
    cli,
    emit,
    examples,
    json_option,
    landing_options,
    load_public,
    load_signing_key,
    progress_for,
    public_key_option,
    require_bundle,
    trust_options,
)
from mirror.errors import UsageError


@cli.command(
    "import",
    epilog=examples(
        "mirror import palette.tar.zst --target https://registry.airgap.example:5000 \\",
        "    --key keys/release.pub --mirror-config mirror-config",
        "mirror import palette.tar.zst --target https://registry.airgap.example:5000 \\",
        "    --key keys/release.pub --dry-run --json",
    ),
)
@BUNDLE_ARGUMENT
@click.option("--target", required=True, help="Registry URL; http:// means plain HTTP.")
@public_key_option()
@trust_options(
    unsigned="Accept a bundle without a signature (not with --fips).",
    fips="Refuse non-FIPS content and unsigned bundles.",
)
@landing_options(
    base="Prefix for every repository on the target.",
    images="Where images land under the target: BASE/IMAGES-BASE/HOST/PATH.",
)
@click.option(
    "--mirror-config",
    type=FOLDER,
    help="Write mirror-registries.txt (image-swap) and containerd certs.d/ here.",
)
@click.option(
    "--helm-repo-dir",
    type=FOLDER,
    help="Also write every chart of the bundle here as a static Helm repository "
    "(index.yaml + .tgz); a Helm repository's own index entry wins over an OCI copy.",
)
@CATALOG_OPTION
@click.option("--palette-url", help="Register in Palette too (key from PALETTE_API_KEY).")
@click.option(
    "--receipt",
    type=FILE,
    help="Write what the target now holds here: the next export's --since.",
)
@click.option(
    "--receipt-key",
    type=FILE,
    help="Private key: sign the receipt (FILE.sig beside it); --key stays the bundle's public key.",
)
@ca_file_option("a target registry")
@JOBS_OPTION
@click.option("--force", is_flag=True, help="Replace target tags that point elsewhere.")
@ALLOW_DOWNGRADE_OPTION
@click.option("--dry-run", is_flag=True, help="Verify and print the plan; push nothing.")
@json_option("Print the result as JSON.")
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

    require_bundle(bundle)
    if palette_url:  # refused now, not after the push
        from mirror.palette import check_palette_url

        check_palette_url(palette_url)
    register = None
    if palette_url and not dry_run:
        register = _palette(palette_url, ca_file)
    opts = ImportOptions(
        bundle=bundle,
        target=target,
        pub=load_public(key),
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
        register=register,
    )
    with progress_for("import", "push") as progress:
        result = import_bundle(opts, progress)
        done = result.to_json()
        pushed = "toPush" if dry_run else "pushed"  # a dry run counts what it would push
        progress.summary(
            artifacts=len(done["artifacts"]),
            blobs=done[f"{pushed}Blobs"],
            nbytes=done[f"{pushed}Bytes"],
            dry_run=dry_run,
        )
    palette = result.palette
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
    return load_signing_key(path, fips) if path is not None else None


def _palette(url: str, ca_file: str | None) -> Callable[[Sequence[Any]], list[Any]]:
    """Registration with Palette, its key and the target's login checked now, not after
    the push; the importer calls it once the content is in place."""
    from mirror.palette import PaletteClient, check_api_key, registry_auth_from_env

    api_key = os.environ.get("PALETTE_API_KEY", "")
    if not api_key:
        raise UsageError("--palette-url needs PALETTE_API_KEY in the environment")
    check_api_key(api_key)
    auth = registry_auth_from_env()

    def register(entries: Sequence[Any]) -> list[Any]:
        with PaletteClient(url, api_key, ca_file=ca_file) as palette:
            return palette.register(entries, auth)

    return register


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
