"""A registry repository as a store, read and written: oras-go's `Repository`.

Export reads from it (discovery already fetched the roots, so manifests are remembered);
import writes to it (blobs skipped or mounted, child manifests by digest, the root and its
tag in one PUT). The wire protocol is `registry/client.py`; this class is what the copy
engine sees.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import IO

from mirror.errors import IntegrityError, NotFoundError, RegistryError
from mirror.oci.descriptor import Descriptor, check_bytes, media_type_fits
from mirror.registry.client import RegistryClient
from mirror.stores.interface import KnownManifests


class RegistryStore:
    """One repository. A manifest named by digest that an earlier run kept (`known`, the
    export cache) is not fetched again."""

    def __init__(
        self,
        client: RegistryClient,
        repo: str,
        known: KnownManifests | None = None,
        census: Census | None = None,
    ) -> None:
        self.client = client
        self.repo = repo
        self.where = f"{client.host}/{repo}"
        self.known = known
        self._manifests: dict[str, bytes] = {}  # read or pushed here, by digest
        self._broken: set[str] = set()
        self._lock = threading.Lock()
        self._tags: list[str] | None = None
        self._held: set[str] = set()  # pushed or mounted here by this run
        self.census = census

    # -- read ---------------------------------------------------------------------------

    def tags(self) -> list[str]:
        """The repository's tags, listed once: discovery and companions share the list."""
        if self._tags is None:
            self._tags = self.client.list_tags(self.repo)
        return self._tags

    def get_tag(self, tag: str) -> tuple[Descriptor, bytes]:
        """The manifest a tag names now, asked as a conditional GET when it was seen before."""
        ref = f"{self.where}:{tag}"
        last = self.known.last_seen(ref) if self.known is not None else None
        kept = self.known.manifest(last) if self.known is not None and last else None
        if last is not None and kept is not None and not media_type_fits(last.media_type, kept):
            kept = None  # the hint's type is not these bytes': ask without it
        desc, data = self.client.get_manifest(
            self.repo, tag, (last, kept) if last is not None and kept is not None else None
        )
        self.remember(desc, data)
        if self.known is not None:
            self.known.saw(ref, desc)
        return desc, data

    def remember(self, desc: Descriptor, data: bytes) -> None:
        check_bytes(desc, data, self.where)
        with self._lock:
            self._manifests[desc.digest] = data

    def fetch_manifest(self, desc: Descriptor) -> bytes:
        with self._lock:
            hit = self._manifests.get(desc.digest)
        if hit is None and self.known is not None:
            hit = self.known.manifest(desc)  # content-addressed: checked against desc
        if hit is not None:
            return hit
        _, data = self.client.get_manifest(self.repo, desc.digest)
        check_bytes(desc, data, f"{self.where}@{desc.digest}")
        self.remember(desc, data)
        return data

    @contextmanager
    def fetch(self, desc: Descriptor) -> Iterator[IO[bytes]]:
        with self.client.open_blob(self.repo, desc) as stream:
            yield stream

    # -- write --------------------------------------------------------------------------

    def exists(self, desc: Descriptor) -> bool:
        """Asked of the registry, unless this run wrote it here, or the repository did not
        exist when the census was taken (an import into an empty registry would otherwise
        HEAD every blob only to hear 404)."""
        if desc.digest in self._held:
            return True
        if self.census is not None and self.census.lacks(self.repo):
            return False
        if desc.is_manifest:
            return self.client.manifest_exists(self.repo, desc)
        return self.client.blob_exists(self.repo, desc)

    def push(self, desc: Descriptor, stream: IO[bytes]) -> None:
        if desc.is_manifest:
            self._put_manifest(desc, stream, desc.digest)
        else:
            self.client.push_blob(self.repo, desc, stream, skip_present=False)
            self._hold(desc)

    def push_reference(self, desc: Descriptor, stream: IO[bytes], ref: str) -> None:
        """A root manifest and its tag in one PUT, after oras-go's `PushReference`: the
        registry stores it by digest too, so the HEAD, the PUT by digest and the PUT of the
        tag become one request."""
        self._put_manifest(desc, stream, ref)

    def _put_manifest(self, desc: Descriptor, stream: IO[bytes], ref: str) -> None:
        data = stream.read(desc.size + 1)
        check_bytes(desc, data, self.where)
        self.client.put_manifest(self.repo, ref, data, desc.media_type)
        with self._lock:
            self._manifests[desc.digest] = data
        self._hold(desc)

    def _hold(self, desc: Descriptor) -> None:
        with self._lock:
            self._held.add(desc.digest)
        if self.census is not None:
            self.census.wrote(self.repo)

    def mount(self, desc: Descriptor, sibling: object) -> bool:
        """Link from another repository of the same registry instead of uploading again."""
        if not isinstance(sibling, RegistryStore) or sibling.client is not self.client:
            return False
        mounted = self.client.mount_blob(self.repo, desc, sibling.repo)
        if mounted:
            self._hold(desc)
        return mounted

    def resolve(self, ref: str) -> Descriptor | None:
        """What the tag names now, read whole: one GET shows both the digest and that the
        manifest can be read back (a push killed mid-way can leave a tag whose HEAD answers
        while its content does not; Distribution then answers GET with 500). Not asked in a
        repository the census lacks: a tag needs a manifest, and a manifest its blobs."""
        if self.census is not None and self.census.lacks(self.repo):
            return None
        try:
            desc, data = self.client.get_manifest(self.repo, ref)
        except NotFoundError:
            return None
        except (RegistryError, IntegrityError):
            found = self.client.resolve(self.repo, ref)  # HEAD still names the digest
            if found is not None:
                self._broken.add(found.digest)
            return found
        with self._lock:
            self._manifests[desc.digest] = data
        return desc

    def readable(self, desc: Descriptor) -> bool:
        """False for a manifest `resolve` found named but unreadable: push it again."""
        return desc.digest not in self._broken

    def tag(self, desc: Descriptor, ref: str, annotations: Mapping[str, str]) -> None:
        # Re-PUT the bytes under the tag: Distribution has no "tag this digest" call.
        with self._lock:
            data = self._manifests.get(desc.digest)
        if data is None:
            data = self.client.get_manifest(self.repo, desc.digest)[1]
        self.client.put_manifest(self.repo, ref, data, desc.media_type)
        self._hold(desc)  # a write like any other: the census asks this repository again

    def commit(self) -> None:
        """Nothing to do: a registry makes each manifest visible as it is pushed."""


class Census:
    """The repositories a registry held when an import first asked: one `_catalog` listing.

    Distribution lists every repository holding a blob, tagged or not (a killed import's
    blobs included), so a repository it does not list holds nothing to ask about. A
    registry that will not list (401, 403, 404) or lists more than `pages` pages is asked
    blob by blob instead. Taken lazily, by the engine's check phase, before its first write;
    a repository this run has written to is never lacking again (a later round asks it).
    """

    def __init__(self, client: RegistryClient, pages: int = 20) -> None:
        self.client = client
        self.pages = pages
        self._lock = threading.Lock()
        self._repos: frozenset[str] | None = None
        self._taken = False
        self._written: set[str] = set()

    def wrote(self, repo: str) -> None:
        with self._lock:
            self._written.add(repo)

    def lacks(self, repo: str) -> bool:
        with self._lock:
            if not self._taken:
                self._taken = True
                try:
                    self._repos = frozenset(self.client.catalog(pages=self.pages))
                except RegistryError:
                    self._repos = None
            known = self._repos is not None and repo not in self._repos
            return known and repo not in self._written
