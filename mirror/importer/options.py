"""What `mirror import` is asked to do, and everything the flags alone can get wrong,
refused before the bundle is even read."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # cryptography is imported only when a key is in play
    from cryptography.hazmat.primitives.asymmetric.ec import (
        EllipticCurvePrivateKey,
        EllipticCurvePublicKey,
    )

from mirror.catalog import CatalogEntry, load_catalog
from mirror.errors import UsageError
from mirror.formats.schema import ValidMemo
from mirror.oci.names import IMAGES_BASE, check_repository_prefix
from mirror.registry.auth import Credentials, resolve_credentials
from mirror.registry.http import Endpoint
from mirror.settings import Settings
from mirror.streams import check_writable, refuse_special, sweep_for

TARGET_USER_ENV = "MIRROR_TARGET_USERNAME"
TARGET_PASSWORD_ENV = "MIRROR_TARGET_PASSWORD"


@dataclass(frozen=True)
class ImportOptions:
    bundle: Path
    target: str
    pub: EllipticCurvePublicKey | None
    catalog: Path
    allow_unsigned: bool = False
    fips: bool = False
    base_path: str = ""
    images_base_path: str = IMAGES_BASE
    mirror_config: Path | None = None  # mirror-registries.txt and certs.d/ go here
    helm_repo_dir: Path | None = None
    receipt: Path | None = None
    receipt_key: EllipticCurvePrivateKey | None = None  # `--receipt-key`: sign the receipt
    settings: Settings = field(default_factory=Settings)  # jobs, CA file, memo, clock
    dry_run: bool = False
    force: bool = False
    allow_downgrade: bool = False  # import a bundle older than one imported before
    # `--palette-url`: registers the catalog entries, after the push and before any record
    register: Callable[[Sequence[CatalogEntry]], list[dict[str, Any]]] | None = None


VALID_MEMO_NAME = "valid-documents.json"  # formats/schema.ValidMemo


def valid_memo(opts: ImportOptions) -> ValidMemo | None:
    """Beside the bundle memo: the catalog this host wrote last need not be validated again."""
    memo = opts.settings.memo
    return ValidMemo(memo.with_name(VALID_MEMO_NAME)) if memo else None


def target_credentials(host: str, base_path: str = "") -> Credentials | None:
    """MIRROR_TARGET_* or the login files; --base-path finds a login to that namespace."""
    return resolve_credentials(host, (TARGET_USER_ENV, TARGET_PASSWORD_ENV), base_path)


def check_options(opts: ImportOptions) -> None:
    """Everything the flags alone can get wrong, refused before the bundle is even read."""
    for flag, value in (
        ("--base-path", opts.base_path),
        ("--images-base-path", opts.images_base_path),
    ):
        check_repository_prefix(flag, value)
    if "@" in opts.target.split("://", 1)[-1].split("/", 1)[0]:
        raise UsageError(
            "--target: credentials don't belong in a URL; "
            f"use {TARGET_USER_ENV}/{TARGET_PASSWORD_ENV} or docker's config.json"
        )
    Endpoint.parse(opts.target)  # a URL that is none is named before a byte is read
    _check_outputs(opts)
    load_catalog(opts.catalog, valid_memo(opts))  # a bad catalog fails now, not after the push
    sweep_for(opts.catalog, opts.receipt, opts.settings.memo)  # a killed import's temp files


def _check_outputs(opts: ImportOptions) -> None:
    """Where the import writes once the content is in place, checked before it is: a
    flag that cannot be honoured is refused while the target is still untouched."""
    from mirror.mirrorconfig import MIRROR_FILE
    from mirror.stores.helmdir import INDEX

    probe = not opts.dry_run
    for path in (opts.catalog, opts.receipt):
        if path is not None:
            check_writable(path, probe=probe)
    for folder, inside in ((opts.mirror_config, MIRROR_FILE), (opts.helm_repo_dir, INDEX)):
        if folder is not None:
            check_writable(folder, folder=True, probe=probe)
            refuse_special(folder / inside)
