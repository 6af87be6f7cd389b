"""The export's last round: what travels with every manifest copied (signatures, SBOMs,
attestations, OCI 1.1 referrers), through the same engine into the same bundle target.

It runs after everything else is copied, so each subject is in the bundle before what
refers to it. Each companion is named in index.json beside its owner (`path:sha256-H.sig`,
or `path@digest` for a referrer) and recorded in manifest.json with its subject, so import
puts it in the repository where its subject lands.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mirror.bundle.manifest import ReferrerRecord
from mirror.copy import (
    CopyOptions,
    CopyReport,
    CopyTask,
    Graph,
    Observer,
    copy_graphs,
    parallel_map,
)
from mirror.discovery.referrers import Companion, find_companions
from mirror.errors import IntegrityError, NotFoundError
from mirror.formats import cosign
from mirror.oci import mediatypes as mt
from mirror.oci.descriptor import Descriptor
from mirror.stores.interface import Source, Target, origin
from mirror.stores.registry import RegistryStore


@dataclass(frozen=True)
class _Owner:
    source: RegistryStore
    ref: str  # the owner's layout ref
    digests: tuple[str, ...]  # every manifest of its graph


def companion_round(
    graphs: Sequence[Graph], target: Target, *, options: CopyOptions, observer: Observer
) -> tuple[list[ReferrerRecord], CopyReport]:
    """Find every companion of every copied manifest, copy them, and say where each goes."""
    owners = [_owner(g) for g in graphs]
    found = [o for o in owners if o is not None]
    lists = parallel_map(
        options.jobs, lambda o: find_companions(o.source, o.digests), found, "refs"
    )
    records: dict[str, ReferrerRecord] = {}
    tasks = []
    for owner, companions in zip(found, lists, strict=True):
        for c in companions:
            record = _record(owner, c)
            if record.layout_ref in records:
                continue  # two tags of one image share their companions
            records[record.layout_ref] = record
            tasks.append(_task(owner, c, record, target))
    report = copy_graphs(tasks, options=options, observer=observer) if tasks else CopyReport()
    return sorted(records.values(), key=lambda r: r.layout_ref), report


def _owner(graph: Graph) -> _Owner | None:
    task = graph.task
    src = origin(task.src)
    if not isinstance(src, RegistryStore) or task.tag is None:
        return None
    digests = tuple(d.digest for d, _ in graph.manifests)
    return _Owner(src, task.tag, digests)


def _base(ref: str) -> str:
    """`path:tag` or `path@digest` -> `path`."""
    if "@" in ref:
        return ref.split("@", 1)[0]
    head, _, tail = ref.rpartition(":")
    return head if head and "/" not in tail else ref


def _record(owner: _Owner, c: Companion) -> ReferrerRecord:
    base = _base(owner.ref)
    layout_ref = f"{base}:{c.tag}" if c.tag else f"{base}@{c.desc.digest}"
    return ReferrerRecord(
        owner=owner.ref,
        subject=c.subject,
        digest=c.desc.digest,
        media_type=c.desc.media_type,
        size=c.desc.size,
        tag=c.tag,
        artifact_type=c.artifact_type,
        layout_ref=layout_ref,
    )


def _task(owner: _Owner, c: Companion, record: ReferrerRecord, target: Target) -> CopyTask:
    return CopyTask(
        src=owner.source,
        dst=target,
        root=c.desc,
        tag=record.layout_ref,
        label=f"companion {record.layout_ref}",
        annotations={mt.ANN_KIND: "other"},
    )


def signed_digests(records: Sequence[ReferrerRecord]) -> set[str]:
    """Subjects that carry a signature (`.sig`, or a sigstore bundle) in the bundle."""
    return {r.subject for r in records if cosign.is_signature(r.tag, r.artifact_type)}


# ---------------------------------------------------------------- import


def import_tasks(
    records: Sequence[ReferrerRecord],
    source: Source,
    landing: dict[str, RegistryStore],
) -> list[tuple[CopyTask, ReferrerRecord]]:
    """Each companion into its owner's repository: cosign's by tag, referrers by digest."""
    out = []
    for r in records:
        dst = landing.get(r.owner)
        if dst is None:
            raise IntegrityError(f"manifest.json: {r.layout_ref} belongs to {r.owner}, not here")
        root = Descriptor(r.media_type, r.digest, r.size)
        out.append((CopyTask(source, dst, root, r.tag, f"companion {r.layout_ref}", {}), r))
    return out


def merge_fallback_indexes(pushed: Sequence[tuple[CopyTask, ReferrerRecord]]) -> int:
    """For a target without the referrers API, list each referrer in its subject's
    `sha256-H` index, merged with what the target already lists (never overwritten).
    Returns how many indexes were written."""
    groups: dict[tuple[int, str, str], list[tuple[RegistryStore, ReferrerRecord]]] = {}
    for task, r in pushed:
        dst = task.dst
        if r.tag is None and isinstance(dst, RegistryStore):
            groups.setdefault((id(dst.client), dst.repo, r.subject), []).append((dst, r))
    written = 0
    for (_, repo, subject), items in groups.items():
        client = items[0][0].client
        if client.referrers(repo, subject) is not None:
            continue  # the registry indexes referrers itself, from their subject field
        tag = "sha256-" + subject.split(":", 1)[1]
        try:
            existing: bytes | None = client.get_manifest(repo, tag)[1]
        except NotFoundError:
            existing = None
        entries = [_entry(r) for _, r in items]
        merged = cosign.fallback_index(existing, entries)
        if merged != existing:
            client.put_manifest(repo, tag, merged, mt.OCI_INDEX)
            written += 1
    return written


def _entry(r: ReferrerRecord) -> dict[str, object]:
    entry: dict[str, object] = {"mediaType": r.media_type, "digest": r.digest, "size": r.size}
    if r.artifact_type:
        entry["artifactType"] = r.artifact_type
    return entry
