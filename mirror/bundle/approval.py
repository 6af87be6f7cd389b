"""The approval record a reviewer signs: `mirror inspect --format markdown`.

It names the file (sha256, size), who signed it and whether *this run* proved it (only
with `--key`, through the one trust path), how it was made (tool, spec digest, time; never
the host), and per artifact and image: kind, source, where it lands, digest, platforms,
size, signature. It is written to read well as plain text (lists, not wide tables) and to
render cleanly as Markdown (no HTML, every table with one column count).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mirror.bundle.inspect import _groups
from mirror.bundle.names import printable
from mirror.oci.names import IMAGES_BASE, artifact_landing, image_landing
from mirror.units import exact

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

    from mirror.bundle.writer import ByteObserver as Observer


def check_file(
    doc: dict[str, Any],
    path: Path,
    key: EllipticCurvePublicKey | None,
    observer: Observer | None = None,
) -> dict[str, Any]:
    """`doc` with the file's sha256 and, given a key, the signer this run verified.

    With a key the bundle goes through `trust.open_trusted` (the full pass `verify` runs,
    which hashes the file on the way); without one the file is only hashed.
    """
    from mirror import signing

    if key is not None:
        from mirror.bundle.trust import TrustPolicy, open_trusted

        trusted = open_trusted(path, TrustPolicy(key), observer=observer)
        assert trusted.result is not None  # no memo here: the full pass always runs
        sha256, signer, verified = trusted.result.file_sha256, trusted.signer, True
    else:
        on_bytes = observer.advance if observer is not None else None
        sha256, signer, verified = signing.sha256_file(path, on_bytes).hex(), doc["signer"], False
    recorded = signing.recorded_digest(path)
    return {
        **doc,
        "signer": signer,
        "signerVerified": verified,
        "sha256": sha256,
        "sha256Sidecar": None if recorded is None else recorded == sha256,
    }


def _code(text: object) -> str:
    quoted = str(text).replace("`", "'")
    return f"`{quoted}`"


# What Markdown would act on inside a table cell: a `|` ends the cell, `<` opens HTML, `&`
# an entity (`&#8238;` reorders the text after it), and emphasis, links and code change
# what a reviewer reads. Each is shown as itself.
_CELL = str.maketrans(
    {"\\": "\\\\", "`": "\\`", "*": "\\*", "_": "\\_", "[": "\\[", "]": "\\]", "|": "\\|"}
    | {"<": "&lt;", "&": "&amp;", "\n": " "}
)


def _cell(text: object) -> str:
    return str(text).translate(_CELL)


def _signature(doc: dict[str, Any]) -> str:
    if not doc["signed"]:
        return "none: the bundle is unsigned"
    if doc.get("signerVerified"):
        return "verified by this run (`mirror inspect --key`)"
    return "claimed, not verified by this run (pass `--key PUB`, or run `mirror verify`)"


def _sidecar(doc: dict[str, Any]) -> str:
    match doc.get("sha256Sidecar"):
        case True:
            return " (matches FILE.sha256)"
        case False:
            return " (DIFFERS from FILE.sha256: damaged or altered)"
    return " (no FILE.sha256 beside it)"


def _header(doc: dict[str, Any], path: Path) -> list[str]:
    t = doc["totals"]
    signer = _code(doc["signer"]) if doc["signer"] else "none named"
    return [
        f"# Approval record: {_cell(doc['name'])}",
        "",
        "| Field | Value |",
        "| --- | --- |",
        f"| File | {_code(path.name)} |",
        f"| SHA-256 | {_code(doc.get('sha256') or 'not computed')}{_sidecar(doc)} |",
        f"| Size | {exact(doc['size'])} on disk |",
        f"| Content | {t['blobs']} blobs, {exact(t['bytes'])} uncompressed |",
        f"| Signer | {signer} |",
        f"| Signature | {_signature(doc)} |",
        f"| Created | {doc['created']} |",
        f"| Tool | mirror {_cell(doc['toolVersion'])} |",
        f"| Spec digest | {_code(doc['specDigest'])} |",
        f"| FIPS bundle | {'yes' if doc['fips'] else 'no'} |",
        f"| Artifacts | {t['artifacts']} ({t['nonFips']} non-FIPS) |",
        f"| Images | {t['images']} |",
    ]


def _registries(doc: dict[str, Any]) -> list[str]:
    lines = ["", "## Registries", "", "| Name | Kind | URL | Base path | FIPS |"]
    lines.append("| --- | --- | --- | --- | --- |")
    for r in doc["registries"]:
        lines.append(
            f"| {_cell(r['name'])} | {r['kind']} | {_cell(r['url'] or '(local folder)')} "
            f"| {_cell(r['basePath'] or '-')} | {'yes' if r['fips'] else 'NO'} |"
        )
    return lines


def _platforms(names: list[str], kind: str = "image") -> str:
    if names:
        return ", ".join(names)
    return "none named (one platform, kept whole)" if kind == "image" else "- (not an image)"


def _signed(row: dict[str, Any]) -> str:
    if row.get("signedBy"):
        return f"signed by {_code(row['signedBy'])}, checked at export"
    return "signature carried, not checked" if row.get("signed") else "no signature"


def _source(reg: dict[str, Any] | None, a: dict[str, Any]) -> str:
    if reg is None or not reg["url"]:
        return f"{a['repository']}:{a['tag']} (local folder)"
    if reg["kind"] == "oci":
        base = "/".join(p.strip("/") for p in (reg["url"], reg["basePath"], a["repository"]) if p)
        return f"{base}:{a['tag']}"
    return f"{reg['url']} {a['repository']} {a['tag']}"


def _artifact(a: dict[str, Any], reg: dict[str, Any] | None) -> list[str]:
    fips = "yes" if a["fips"] else "NO (non-FIPS)"
    lines = [
        f"- {_code(a['repository'] + ':' + a['tag'])}",
        f"  - kind: {a['kind']}; FIPS: {fips}; {_signed(a)}",
        f"  - source: {_code(_source(reg, a))}",
        f"  - lands at: {_code('TARGET/' + artifact_landing(a['ref'], a['tag']) + ':' + a['tag'])}",
        f"  - digest: {_code(a['digest'])}",
        f"  - platforms: {_platforms(a['platforms'], a['kind'])}",
        f"  - size: {exact(a['size'])}",
    ]
    if a.get("pack"):
        p = a["pack"]
        clouds = ", ".join(p.get("cloudTypes") or []) or "-"
        lines.append(
            f"  - pack: {_cell(p.get('displayName') or p['name'])} {p['version']}, "
            f"layer {p.get('layer') or '-'}, clouds {clouds}"
        )
    return lines


def _artifacts(doc: dict[str, Any]) -> list[str]:
    regs = {r["name"]: r for r in doc["registries"]}
    lines = [
        "",
        "## Artifacts",
        "",
        "Landing paths are for `mirror import` with no `--base-path` (with one, each path",
        f"starts with it) and images under `--images-base-path {IMAGES_BASE}`.",
    ]
    for reg, kind, rows in _groups(doc):
        lines += ["", f"### {_cell(reg)}: {kind} ({len(rows)})", ""]
        for a in rows:
            lines += _artifact(a, regs.get(reg))
    return lines


def _image(i: dict[str, Any]) -> list[str]:
    at = image_landing(i["host"], i["repository"], "", IMAGES_BASE)
    at += f"@{i['digest']}" if i.get("pin") or not i.get("tag") else f":{i['tag']}"
    return [
        f"- {_code(i['ref'])}",
        f"  - {_signed(i)}",
        f"  - lands at: {_code('TARGET/' + at)}",
        f"  - digest: {_code(i['digest'])}",
        f"  - platforms: {_platforms(i['platforms'])}",
        f"  - size: {exact(i['size'])}",
    ]


def _images(doc: dict[str, Any]) -> list[str]:
    """Per pack or chart, the images it will run, with digests: what a reviewer approves."""
    if not (doc["images"] or doc["unresolvedImages"] or doc["skippedImages"]):
        return []
    lines = ["", "## Images each artifact will run"]
    for who in sorted({w for i in doc["images"] for w in i["neededBy"]}):
        mine = [i for i in doc["images"] if who in i["neededBy"]]
        title = "the spec's `images:`" if who == "spec" else _code(who)
        lines += ["", f"### {title} ({len(mine)})", ""]
        for i in mine:
            lines += _image(i)
    if doc["unresolvedImages"]:
        lines += ["", "### Not carried: cannot be resolved", ""]
        lines += [
            f"- {_code(u['ref'])}, needed by {_cell(', '.join(u['neededBy']))}: "
            f"{_cell(u['reason'])}"
            for u in doc["unresolvedImages"]
        ]
    if doc["skippedImages"]:
        lines += ["", "### Not carried: skipped on purpose (--no-images)", ""]
        lines += [f"- {_code(ref)}" for ref in doc["skippedImages"]]
    return lines


def render_record(doc: dict[str, Any], path: Path) -> str:
    """The record as Markdown that reads as plain text."""
    doc = printable(doc)
    how = (
        "This run verified the signature and every member, as `mirror verify` does."
        if doc.get("signerVerified")
        else "This run read manifest.json and hashed the file; it did not check the signature. "
        "Verify before approving: `mirror verify BUNDLE --key PUB`, or "
        "`mirror inspect BUNDLE --format markdown --key PUB`, or by hand with openssl, "
        "sha256sum, zstd and tar as docs/VERIFYING.md shows."
    )
    lines = [
        *_header(doc, path),
        *_registries(doc),
        *_artifacts(doc),
        *_images(doc),
        "",
        "## How this record was checked",
        "",
        *_wrap(how),
    ]
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int = 96) -> list[str]:
    """Plain prose kept under a width, so the record reads in a terminal too."""
    out: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*out, line] if line else out
