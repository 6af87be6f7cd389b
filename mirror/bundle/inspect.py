"""What a bundle claims to hold, read from its head only: instant on a 100 GB bundle.

Nothing here verifies a signature: the signer shown is the one manifest.json claims, and every
rendering says so. `mirror verify` is the check; `inspect` is the table of contents.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from mirror.bundle.manifest import parse_manifest
from mirror.bundle.names import printable
from mirror.bundle.parts import total_size
from mirror.bundle.reader import BundleReader
from mirror.formats import cosign
from mirror.oci import mediatypes as mt
from mirror.units import exact

_CLAIMED = "claimed by manifest.json, not verified (run `mirror verify --key PUB`)"
# Kept byte for byte (digests, signatures); skopeo 1.9 and umoci 0.4.7 cannot read such a
# ref from the extracted layout, so inspect marks it (docs/BUNDLE-FORMAT.md).
_DOCKER = frozenset({mt.DOCKER_MANIFEST, mt.DOCKER_LIST})
_DOCKER_MARK = "  docker-typed"
_DOCKER_NOTE = (
    "skopeo 1.9 and umoci 0.4.7 cannot read them from the extracted layout; "
    "docs/VERIFYING.md step 7 checks them"
)


def inspect_bundle(path: Path) -> dict[str, Any]:
    """The contract's `inspect --json` document, plus registries, toolVersion and totals."""
    data, signature = BundleReader(path).head()
    m = parse_manifest(data)
    signed = {r.subject for r in m.referrers if cosign.is_signature(r.tag, r.artifact_type)}
    artifacts = [
        {
            "registry": a.registry,
            "kind": a.kind,
            "repository": a.repository,
            "tag": a.tag,
            "ref": a.ref,
            "digest": a.digest,
            "mediaType": a.media_type,
            "size": a.size,
            "fips": a.fips,
            "platforms": list(a.platforms),
            "pack": a.pack.to_json() if a.pack else None,
            "chart": a.chart.to_json() if a.chart else None,
            "signed": a.digest in signed,
            "signedBy": a.signed_by,
            "dockerTyped": a.media_type in _DOCKER,
        }
        for a in m.artifacts
    ]
    images = [
        {**i.to_json(), "signed": i.digest in signed, "dockerTyped": i.media_type in _DOCKER}
        for i in m.images
    ]
    refs = {a.ref: a.media_type for a in m.artifacts}  # index.json names, each once
    refs |= {i.layout_ref: i.media_type for i in m.images}
    refs |= {r.layout_ref: r.media_type for r in m.referrers}
    blobs = [mem for mem in m.members if mem.path.startswith("blobs/")]
    return {
        "name": m.name,
        "created": m.created,
        "fips": m.fips,
        "signed": signature is not None,
        "signer": m.signer,
        "signerVerified": False,
        "size": total_size(path),
        "toolVersion": m.tool_version,
        "specDigest": m.spec_digest,
        "registries": [r.to_json() for r in m.registries],
        "since": list(m.since),
        "external": {"blobs": len(m.external), "bytes": sum(e.size for e in m.external)},
        "artifacts": artifacts,
        "images": images,
        "referrers": [r.to_json() for r in m.referrers],
        "unresolvedImages": [u.to_json() for u in m.unresolved_images],
        "skippedImages": list(m.skipped_images),
        "totals": {
            "artifacts": len(artifacts),
            "nonFips": sum(1 for a in artifacts if not a["fips"]),
            "byKind": dict(sorted(Counter(a["kind"] for a in artifacts).items())),
            "blobs": len(blobs),
            "bytes": sum(mem.size for mem in m.members),
            "images": len(m.images),
            "dockerTyped": sum(1 for t in refs.values() if t in _DOCKER),
        },
    }


def human(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _signer_line(doc: dict[str, Any]) -> str:
    if not doc["signed"]:
        return "no (unsigned bundle)"
    if doc.get("signerVerified"):
        return f"yes, signer {doc['signer']} (verified by this run)"
    return f"yes, signer {doc['signer'] or 'not named'} ({_CLAIMED})"


def _groups(doc: dict[str, Any]) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """Artifacts grouped by registry (manifest order), then kind (sorted)."""
    order = [r["name"] for r in doc["registries"]]
    order += sorted({a["registry"] for a in doc["artifacts"]} - set(order))
    out = []
    for reg in order:
        mine = [a for a in doc["artifacts"] if a["registry"] == reg]
        for kind in sorted({a["kind"] for a in mine}):
            rows = sorted(
                (a for a in mine if a["kind"] == kind), key=lambda a: (a["repository"], a["tag"])
            )
            out.append((reg, kind, rows))
    return out


def _fips_mark(fips: bool) -> str:
    return "yes" if fips else "NO (non-FIPS)"


def render_table(doc: dict[str, Any]) -> str:
    doc = printable(doc)
    lines = [
        f"Bundle     {doc['name']}",
        f"Created    {doc['created']}",
        f"Tool       mirror {doc['toolVersion']}",
        f"FIPS       {'yes' if doc['fips'] else 'no'}",
        f"Signed     {_signer_line(doc)}",
        f"Size       {human(doc['size'])} on disk",
    ]
    if doc["since"]:
        ext = doc["external"]
        lines.append(
            f"Delta      against {len(doc['since'])} receipt(s): {ext['blobs']} blobs "
            f"({human(ext['bytes'])}) left out, held by the target"
        )
    lines += ["", "Registries"]
    for r in doc["registries"]:
        where = r["url"] or "(local folder)"
        base = f" basePath={r['basePath']}" if r["basePath"] else ""
        lines.append(f"  {r['name']}  [{r['kind']}] {where}{base}  fips={_fips_mark(r['fips'])}")
    # FIPS marks matter where FIPS is in play; in a plain bundle they would be noise.
    fips_in_play = doc["fips"] or any(a["fips"] for a in doc["artifacts"])
    for reg, kind, rows in _groups(doc):
        lines += ["", f"{reg} / {kind} ({len(rows)})"]
        width = max(len(f"{a['repository']}:{a['tag']}") for a in rows)
        for a in rows:
            name = f"{a['repository']}:{a['tag']}".ljust(width)
            size = human(a["size"]).rjust(10)
            mark = f"  fips={_fips_mark(a['fips'])}" if fips_in_play else ""
            mark += _DOCKER_MARK if a.get("dockerTyped") else ""
            lines.append(f"  {name}  {a['digest'][:19]}  {size}{mark}")
            if a.get("pack"):
                lines.append(f"    {_pack_line(a['pack'])}")
    if doc["images"]:
        lines += ["", f"Images ({len(doc['images'])})"]
        for i in doc["images"]:
            mark = _DOCKER_MARK if i.get("dockerTyped") else ""
            lines.append(f"  {i['ref']}  {i['digest'][:19]}  {human(i['size']).rjust(10)}{mark}")
    for u in doc["unresolvedImages"]:
        lines.append(f"  UNRESOLVED {u['ref']}: {u['reason']} ({', '.join(u['neededBy'])})")
    t = doc["totals"]
    kinds = ", ".join(f"{k} {n}" for k, n in t["byKind"].items()) or "none"
    lines += [
        "",
        f"Totals     {t['images']} images, {t['artifacts']} artifacts ({kinds}), "
        f"{t['nonFips']} non-FIPS, {t['blobs']} blobs, {exact(t['bytes'])} uncompressed",
    ]
    if t.get("dockerTyped"):
        lines.append(f"Docker     {t['dockerTyped']} docker-typed refs: {_DOCKER_NOTE}")
    return "\n".join(lines) + "\n"


def _pack_line(pack: dict[str, Any]) -> str:
    """A pack's own words: display name, layer and clouds, as Palette shows them."""
    clouds = ",".join(pack.get("cloudTypes") or []) or "-"
    display = pack.get("displayName") or pack["name"]
    return f"pack {display} {pack['version']} layer={pack.get('layer') or '-'} clouds={clouds}"
