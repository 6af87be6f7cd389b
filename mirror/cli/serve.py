"""`serve`: a verified bundle as a read-only registry, with nothing unpacked."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from mirror.cli.base import (
    ALLOW_DOWNGRADE_OPTION,
    BUNDLE_ARGUMENT,
    CATALOG_OPTION,
    FILE,
    cli,
    examples,
    landing_options,
    load_public,
    progress_for,
    public_key_option,
    require_bundle,
    trust_options,
)


@cli.command(
    epilog=examples(
        "mirror serve palette.tar.zst --key keys/release.pub",
        "mirror serve palette.tar.zst --key keys/release.pub --listen 0.0.0.0:5000 \\",
        "    --tls-cert registry.pem --tls-key registry-key.pem --base-path edge",
    )
)
@BUNDLE_ARGUMENT
@public_key_option("Public key.")
@trust_options(
    unsigned="Serve a bundle without a signature.",
    fips="Refuse non-FIPS content and unsigned bundles.",
)
@click.option(
    "--listen", default="127.0.0.1:5000", show_default=True, help="HOST:PORT; port 0 picks one."
)
@click.option(
    "--advertise",
    metavar="HOST",
    help="The name or address other nodes reach this server by, for the printed mirror "
    "configuration (default: the --listen host; this host's name for 0.0.0.0 or ::).",
)
@click.option("--tls-cert", type=FILE, help="PEM chain.")
@click.option("--tls-key", type=FILE, help="PEM key.")
@click.option(
    "--tls-client-ca",
    type=FILE,
    help="Mutual TLS: serve only clients whose certificate this CA signed.",
)
@landing_options(
    base="Prefix for every repository, as on import.",
    images="Where images are served: BASE/IMAGES-BASE/HOST/PATH.",
)
@CATALOG_OPTION
@ALLOW_DOWNGRADE_OPTION
def serve(
    bundle: Path,
    key: Path | None,
    allow_unsigned: bool,
    fips: bool,
    listen: str,
    advertise: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_client_ca: Path | None,
    base_path: str,
    images_base_path: str,
    catalog: Path | None,
    allow_downgrade: bool,
) -> None:
    """Serve a verified bundle as a read-only OCI registry, with nothing unpacked.

    The bundle is verified first, as by import (exit 3 on what import refuses, a bundle
    older than one this host imported included: --catalog names where import keeps that
    record). Then it
    answers the OCI distribution pull API under the repository names import would create,
    and every Helm repository of the bundle at /charts/SLUG/index.yaml, until SIGTERM or
    Ctrl-C. The mirror configuration for its own address goes to stdout; access logs go
    to stderr in common log format.
    """
    from mirror.bundle.parts import total_size
    from mirror.catalog import default_catalog_path
    from mirror.freshness import FILE_NAME as FRESHNESS_FILE
    from mirror.serve.server import ServeOptions, check_options, open_store
    from mirror.settings import Settings

    require_bundle(bundle)
    opts = ServeOptions(
        bundle=bundle,
        pub=load_public(key),
        allow_unsigned=allow_unsigned,
        fips=fips,
        listen=listen,
        advertise=advertise,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_client_ca=tls_client_ca,
        base_path=base_path.strip("/"),
        images_base_path=images_base_path.strip("/"),
        memo=Settings.from_env().memo,
        freshness=None
        if allow_downgrade
        else (catalog or default_catalog_path()).with_name(FRESHNESS_FILE),
    )
    host, port = check_options(opts)
    with progress_for("verify") as progress:
        progress.planned(0, total_size(bundle))
        store, trusted = open_store(opts, progress)
    _serve_until_signal(store, opts, trusted.signer, host, port)


def _serve_until_signal(store: Any, opts: Any, signer: str | None, host: str, port: int) -> None:
    """Bind, print where and how to pull, then serve until SIGTERM or SIGINT."""
    import signal
    import threading

    from mirror.serve.app import RegistryApp
    from mirror.serve.server import AccessLog, Server, advertised_host, mirror_config_text

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
        named, reachable = advertised_host(opts, bound_host)
        if store.image_hosts and host in ("0.0.0.0", "::") and not reachable:
            click.echo(
                f"note: the mirror configuration names {named}, which other nodes cannot "
                "reach; pass --advertise HOST",
                err=True,
            )
        sys.stdout.flush()
    except BaseException:
        server.release()  # bound, never run: its worker pool would outlive the error
        raise
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.run(stop)
    click.echo("stopped", err=True)
