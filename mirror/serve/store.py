"""The bundle store seen from the other end: repositories, tags and blobs named as import would.

Built once at start, from a trusted manifest: every artifact, image and companion is put in
the repository `import` would push it to (`names.artifact_landing`, `names.image_landing`,
the owner's repository for a companion), and each graph is walked so a repository answers
only for the manifests and blobs that are really its own. Bytes are never copied here: a
read goes back to the archive (manifests through `BundleStore`, hashed every time; blobs
straight from their frames, once `check_unchanged` shows the file is the one proven).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

from mirror.bundle.manifest import BundleManifest
from mirror.bundle.parts import stamp
from mirror.errors import IntegrityError, UsageError
from mirror.oci.descriptor import Descriptor, parse_manifest, successors
from mirror.oci.names import IMAGES_BASE, artifact_landing, image_landing
from mirror.serve.helm import HelmRepo, helm_repos
from mirror.stores.bundle import BundleStore

OCTET = "application/octet-stream"


@dataclass
class Repo:
    """One repository as a registry would list it."""

    tags: dict[str, str] = field(default_factory=dict)  # tag -> manifest digest
    manifests: dict[str, Descriptor] = field(default_factory=dict)  # every manifest here
    blobs: set[str] = field(default_factory=set)  # configs and layers reachable here
    referrers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by subject


@dataclass(frozen=True)
class _Node:
    desc: Descriptor
    children: tuple[Descriptor, ...]
    doc: dict[str, Any]


class ServedStore:
    """What `mirror serve` answers for; read-only after construction, so threads share it."""

    def __init__(
        self,
        source: BundleStore,
        manifest: BundleManifest,
        *,
        base_path: str = "",
        images_base: str = IMAGES_BASE,
        proven: tuple[int, ...] = (),
    ) -> None:
        if manifest.external:
            raise UsageError(
                f"{source.where}: a delta bundle ({len(manifest.external)} blobs left at the "
                "far side) cannot be served alone; serve the full bundle"
            )
        if source.reader is None:
            raise UsageError("only a written bundle can be served")
        self.source = source
        self.reader = source.reader
        self.proven = proven or stamp(self.reader.path)  # the file open_trusted proved
        self.sizes = {m.path.rsplit("/", 1)[-1]: m.size for m in manifest.members}
        self.repos: dict[str, Repo] = {}
        self.image_hosts = sorted({i.host for i in manifest.images})
        self._nodes: dict[str, _Node] = {}
        owners = self._roots(manifest, base_path, images_base)
        self._companions(manifest, owners)
        self.helm: dict[str, HelmRepo] = helm_repos(manifest, self)

    # ------------------------------------------------------------------ building

    def _roots(self, manifest: BundleManifest, base: str, images_base: str) -> dict[str, str]:
        """Artifacts and images into their repositories; returns owner ref -> repository."""
        owners: dict[str, str] = {}
        for art in manifest.artifacts:
            name = artifact_landing(art.ref, art.tag, base)
            self._add(name, Descriptor(art.media_type, art.digest, art.size), art.tag)
            owners[art.ref] = name
        for image in manifest.images:
            name = image_landing(image.host, image.repository, base, images_base)
            tag = None if image.pin else image.tag
            self._add(name, Descriptor(image.media_type, image.digest, image.size), tag)
            owners[image.layout_ref] = name
        return owners

    def _companions(self, manifest: BundleManifest, owners: dict[str, str]) -> None:
        """Cosign's tags and OCI 1.1 referrers, in their owner's repository, as import puts them."""
        for r in manifest.referrers:
            name = owners.get(r.owner)
            if name is None:
                raise IntegrityError(
                    f"manifest.json: {r.layout_ref} belongs to {r.owner}, not here"
                )
            desc = Descriptor(r.media_type, r.digest, r.size)
            self._add(name, desc, r.tag)
            if r.tag is None:
                entry = _referrer_entry(desc, self._nodes[r.digest].doc, r.artifact_type)
                self.repos[name].referrers.setdefault(r.subject, []).append(entry)

    def _add(self, name: str, root: Descriptor, tag: str | None) -> None:
        repo = self.repos.setdefault(name, Repo())
        if tag is not None:
            repo.tags[tag] = root.digest
        todo = [root]
        while todo:
            desc = todo.pop()
            if desc.digest in repo.manifests:
                continue
            node = self._node(desc)
            repo.manifests[desc.digest] = node.desc
            for child in node.children:
                if child.hex not in self.sizes:
                    continue  # left out on purpose (a platform filter keeps the index whole)
                if child.is_manifest:
                    todo.append(child)
                else:
                    repo.blobs.add(child.digest)

    def _node(self, desc: Descriptor) -> _Node:
        """A manifest read once (verified) and kept parsed: graphs share children."""
        node = self._nodes.get(desc.digest)
        if node is None:
            sized = Descriptor(desc.media_type, desc.digest, self.size_of(desc.digest))
            data = self.source.fetch_manifest(sized)
            doc = parse_manifest(data, desc.digest)
            inner = doc.get("mediaType")
            media_type = desc.media_type if desc.is_manifest else str(inner or desc.media_type)
            kids = tuple(successors(Descriptor(media_type, desc.digest, sized.size), data))
            node = _Node(Descriptor(media_type, desc.digest, sized.size), kids, doc)
            self._nodes[desc.digest] = node
        return node

    # ------------------------------------------------------------------ reading

    def size_of(self, digest: str) -> int:
        size = self.sizes.get(digest.split(":", 1)[-1])
        if size is None:
            raise IntegrityError(f"{self.source.where}: {digest} is not in the bundle")
        return size

    def manifest_bytes(self, desc: Descriptor) -> bytes:
        return self.source.fetch_manifest(desc)

    def manifest_doc(self, digest: str) -> dict[str, Any]:
        return self._nodes[digest].doc

    def check_unchanged(self) -> None:
        """The bundle is still the file proven whole at start (device, inode, size, times)."""
        if stamp(self.reader.path) != self.proven:
            raise IntegrityError(
                f"{self.source.where}: changed since it was verified; restart mirror serve"
            )

    @contextmanager
    def open_blob(self, digest: str) -> Iterator[IO[bytes]]:
        """The blob's bytes straight out of its zstd frame, exactly its signed size.

        Its sha256 is not computed again: the whole file was proven at start, and
        `check_unchanged` shows it is still that file. Hashing every byte served again
        would halve throughput (bench/serve.py), and every registry client checks the
        digest of what it pulls anyway.
        """
        self.check_unchanged()
        hexdigest = digest.split(":", 1)[-1]
        path, size = f"blobs/sha256/{hexdigest}", self.size_of(digest)
        with self.reader.open_member(path, hexdigest, size, verify=False) as stream:
            yield stream  # type: ignore[misc]


def _referrer_entry(
    desc: Descriptor, doc: dict[str, Any], artifact_type: str | None
) -> dict[str, Any]:
    """A descriptor as the referrers API lists it: artifactType and the manifest's annotations."""
    config = doc.get("config") or {}
    kind = artifact_type or doc.get("artifactType") or config.get("mediaType")
    entry: dict[str, Any] = {"mediaType": desc.media_type, "digest": desc.digest, "size": desc.size}
    if kind:
        entry["artifactType"] = kind
    if doc.get("annotations"):
        entry["annotations"] = doc["annotations"]
    return entry
