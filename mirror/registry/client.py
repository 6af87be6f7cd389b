"""OCI Distribution operations: list, fetch and push manifests and blobs, byte for byte."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

from mirror.errors import IntegrityError, NotFoundError, RegistryError, redact, shorten
from mirror.oci import mediatypes as mt
from mirror.oci.descriptor import MAX_MANIFEST, Descriptor, digest_of, media_type_of
from mirror.oci.names import is_repository_path, is_tag
from mirror.registry.answer import Answer
from mirror.registry.auth import Credentials
from mirror.registry.http import ConnectionLost, Endpoint, Http
from mirror.registry.retry import RateFloor, RetriesExhausted, RetryPolicy
from mirror.settings import Net
from mirror.streams import LimitedReader, VerifyingReader
from mirror.units import ascii_int

MONOLITHIC_MAX = 32 * 1024 * 1024  # above this, blobs go up in PATCH chunks
CHUNK = 64 * 1024 * 1024
MAX_LISTED = 1_000_000  # names in one listing: ~100 MB of strings, more than any registry
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


class RegistryClient:
    """Thread-safe client for one registry; each thread uses its own HTTP session."""

    def __init__(
        self,
        url: str,
        *,
        credentials: Credentials | None = None,
        net: Net | None = None,  # the run's CA file, read timeout and rate floor
        chunk_size: int = CHUNK,
        monolithic_max: int = MONOLITHIC_MAX,
        login_hint: str | None = None,  # what a 401 without credentials says to do
    ) -> None:
        net = net or Net()
        self.endpoint = Endpoint.parse(url, ca_file=net.ca_file)
        self._floor = RateFloor.of(net)
        self.http = Http(self.endpoint, credentials, timeout=net.timeouts, floor=self._floor)
        if login_hint:
            self.http.login_hint = login_hint
        self.chunk_size = chunk_size
        self.monolithic_max = monolithic_max
        # Whether the registry has the referrers API: None until its first answer, which
        # one request alone asks for (the others wait), so a registry without it is asked once.
        self._referrers_api: bool | None = None
        self._probe = threading.Lock()

    @property
    def host(self) -> str:
        return self.endpoint.host

    def close(self) -> None:
        self.http.close()

    # ---- discovery -------------------------------------------------------------------

    def ping(self) -> None:
        """Fail early, in one line, when the URL is not a registry at all."""
        resp = self.http.request("GET", "/v2/", ok=(200,), what="not an OCI registry (/v2/)")
        if "Docker-Distribution-API-Version" not in resp.headers and resp.text.strip() not in (
            "{}",
            "",
        ):
            raise RegistryError(f"{self.host}: /v2/ does not look like an OCI registry")

    def catalog(self, page: int = 1000, pages: int = 100_000) -> list[str]:
        """Every repository; RegistryError past `pages` pages rather than a partial list.
        Each an OCI repository name: a listed `../../etc` went into every URL after it,
        outside /v2/, with the registry's credentials."""
        return self._paged(
            f"/v2/_catalog?n={page}",
            "repositories",
            None,
            "catalog",
            (is_repository_path, "an OCI repository name"),
            pages,
        )

    def list_tags(self, repo: str, page: int = 1000) -> list[str]:
        """The repository's tags, each an OCI tag: a listed `../../x` would otherwise go
        into a manifest URL (and be resolved into another path on the same host)."""
        return self._paged(
            f"/v2/{repo}/tags/list?n={page}",
            "tags",
            _pull(repo),
            f"repository {repo}",
            (is_tag, "an OCI tag"),
        )

    def _paged(
        self,
        path: str,
        key: str,
        scope: str | None,
        what: str,
        valid: tuple[Callable[[str], bool], str],
        pages: int = 100_000,
    ) -> list[str]:
        """A listing, page after page, each name checked as it comes. A Link back to a page
        already read, or more than MAX_LISTED names, ends it: a registry that answered
        20,000 tags a page, each page linking to itself, grew RSS by 110 MB a second."""
        out: list[str] = []
        asked: set[str] = set()
        next_path: str | None = path
        while next_path is not None:
            if next_path in asked:
                raise RegistryError(f"{self.host}: {what}: the listing links in a circle")
            if len(asked) >= pages:
                raise RegistryError(f"{self.host}: {what}: more than {pages} pages")
            asked.add(next_path)
            resp = self.http.request("GET", next_path, scope=scope, what=f"{what} not found")
            try:
                names = resp.json().get(key) or []
            except (ValueError, AttributeError):
                raise RegistryError(f"{self.host}: {what}: listing is not JSON") from None
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise RegistryError(f"{self.host}: {what}: `{key}` is not a list of names")
            for name in names:
                if not valid[0](name):
                    raise IntegrityError(
                        f"{self.host}: {what}: the registry listed "
                        f"{redact(shorten(repr(name), 80))}, which is not {valid[1]}"
                    )
            out.extend(names)
            if len(out) > MAX_LISTED:
                raise RegistryError(f"{self.host}: {what}: more than {MAX_LISTED:,} names")
            match = _NEXT.search(resp.headers.get("Link", ""))
            next_path = match.group(1) if match else None
        return out

    # ---- manifests -------------------------------------------------------------------

    def get_manifest(
        self, repo: str, ref: str, known: tuple[Descriptor, bytes] | None = None
    ) -> tuple[Descriptor, bytes]:
        """The exact bytes, so digests survive; checked against the ref when it is a digest.

        `known`: what the ref named last time, bytes already checked. It is sent as
        `If-None-Match`, and a `304 Not Modified` returns it without a body.
        """
        headers = {"Accept": mt.ACCEPT}
        if known is not None:
            headers["If-None-Match"] = f'"{known[0].digest}"'
        resp = self.http.request(
            "GET",
            f"/v2/{repo}/manifests/{ref}",
            scope=_pull(repo),
            headers=headers,
            stream=True,
            ok=(200, 304) if known is not None else (200,),
            what=f"manifest {repo}:{ref} not found",
        )
        with resp:
            if resp.status_code == 304 and known is not None:
                resp.raw.read()  # the empty body: read, so the connection is kept, not closed
                return known
            data = _read_capped(resp, MAX_MANIFEST, f"{self.host}/{repo}:{ref}")
        try:
            media = media_type_of(data, resp.headers.get("Content-Type"))
        except IntegrityError as exc:  # an HTML login page: the registry's fault, not the data's
            where = f"{self.host}/{repo}:{ref}"
            raise RegistryError(f"{where}: the answer is no manifest ({exc})") from None
        if media not in mt.ALL_MANIFESTS:
            raise RegistryError(
                f"{self.host}/{repo}:{ref}: unsupported manifest media type {media!r}"
            )
        desc = Descriptor(media, digest_of(data), len(data))
        expected = ref if ref.startswith("sha256:") else resp.headers.get("Docker-Content-Digest")
        if expected and expected.startswith("sha256:") and expected != desc.digest:
            raise IntegrityError(
                f"{self.host}/{repo}@{expected}: manifest bytes hash to {desc.digest}"
            )
        return desc, data

    def referrers(self, repo: str, digest: str) -> list[dict[str, Any]] | None:
        """OCI 1.1 referrers of `digest`, following pagination; None when the registry has no
        referrers API (Distribution 2.8 answers 404), which is then not asked again."""
        if self._referrers_api is None:
            with self._probe:
                if self._referrers_api is None:
                    listed = self._list_referrers(repo, digest)
                    self._referrers_api = listed is not None
                    return listed
        return self._list_referrers(repo, digest) if self._referrers_api else None

    def _list_referrers(self, repo: str, digest: str) -> list[dict[str, Any]] | None:
        out: list[dict[str, Any]] = []
        path: str | None = f"/v2/{repo}/referrers/{digest}"
        for _ in range(1000):
            if path is None:
                break
            try:
                resp = self.http.request("GET", path, scope=_pull(repo), what="referrers")
            except NotFoundError:
                return None
            try:
                found = resp.json().get("manifests") or []
            except (ValueError, AttributeError):
                raise RegistryError(f"{self.host}/{repo}: referrers list is not JSON") from None
            out += [m for m in found if isinstance(m, dict)]
            match = _NEXT.search(resp.headers.get("Link", ""))
            path = match.group(1) if match else None
        return out

    def resolve(self, repo: str, ref: str) -> Descriptor | None:
        """HEAD a manifest; None when absent. Used to detect tag conflicts before pushing.
        A 404 is an answer here, not an error (whose words would be made for nothing)."""
        resp = self.http.request(
            "HEAD",
            f"/v2/{repo}/manifests/{ref}",
            scope=_pull(repo),
            headers={"Accept": mt.ACCEPT},
            ok=(200, 404),
            what="manifest",
        )
        if resp.status_code == 404:
            return None
        digest = resp.headers.get("Docker-Content-Digest")
        size = ascii_int(resp.headers.get("Content-Length"))
        if not digest or size is None:  # the GET proves what the HEAD could not
            try:
                desc, _ = self.get_manifest(repo, ref)
            except NotFoundError:  # the HEAD's word against the GET's: absent, pushed again
                return None
            return desc
        media = (resp.headers.get("Content-Type") or "").split(";")[0]
        return Descriptor(media or mt.OCI_MANIFEST, digest, size)

    def manifest_exists(self, repo: str, desc: Descriptor) -> bool:
        return self.resolve(repo, desc.digest) is not None

    def put_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> None:
        """Store the bytes as they are: a registry that says it stored others (re-encoded
        JSON, another digest) has not, and the tag would not name what was pushed."""
        resp = self.http.request(
            "PUT",
            f"/v2/{repo}/manifests/{ref}",
            scope=_push(repo),
            headers={"Content-Type": media_type},
            data=data,
            ok=(200, 201, 202),
            what=f"repository {repo}",
        )
        said = resp.headers.get("Docker-Content-Digest") or ""
        if said.startswith("sha256:") and said != (pushed := digest_of(data)):
            raise RegistryError(
                f"{self.host}/{repo}:{ref}: the registry stored {said}, not the pushed "
                f"{pushed}; it rewrote the manifest"
            )

    # ---- blobs -----------------------------------------------------------------------

    def blob_exists(self, repo: str, desc: Descriptor) -> bool:
        resp = self.http.request(
            "HEAD", f"/v2/{repo}/blobs/{desc.digest}", scope=_pull(repo), ok=(200, 404), what="blob"
        )
        if resp.status_code == 404:
            return False
        if "Content-Length" not in resp.headers:
            return True
        return ascii_int(resp.headers["Content-Length"]) == desc.size  # garbled: push again

    @contextmanager
    def open_blob(self, repo: str, desc: Descriptor) -> Iterator[IO[bytes]]:
        """Stream a blob, checking size and digest as it flows; never held whole.

        A body cut off mid-way is asked for again from the byte it reached (`Range`), under
        the transport's lost-connection budget; the digest check runs on across the seam.
        """
        path = f"/v2/{repo}/blobs/{desc.digest}"
        what = f"blob {desc.digest} not found in {repo}"

        def get(offset: int) -> Answer:
            headers = {"Range": f"bytes={offset}-"} if offset else None
            return self.http.request(
                "GET",
                path,
                scope=_pull(repo),
                headers=headers,
                stream=True,
                allow_redirects=True,  # registries hand blobs off to object storage
                ok=(200, 206) if offset else (200,),
                what=what,
            )

        where = f"{self.host}/{repo}@{desc.digest}"
        guarded = _Guarded(get(0), where, self._floor, resume=get, retry=self.http.retry)
        try:
            yield VerifyingReader(guarded, desc, where)  # type: ignore[misc]
        finally:
            guarded.close()

    def mount_blob(self, repo: str, desc: Descriptor, from_repo: str) -> bool:
        """Cross-repository mount: 201 means done, 202 means the registry declined."""
        resp = self.http.request(
            "POST",
            f"/v2/{repo}/blobs/uploads/?mount={desc.digest}&from={from_repo}",
            scope=f"repository:{repo}:pull,push repository:{from_repo}:pull",
            ok=(201, 202),
            what=f"repository {repo}",
        )
        if resp.status_code == 201:
            return True
        self._cancel(resp)
        return False

    def push_blob(
        self, repo: str, desc: Descriptor, stream: IO[bytes], *, skip_present: bool = True
    ) -> None:
        """Upload unless present: one PUT for small blobs, PATCH chunks for large ones.

        The copy engine has already asked `blob_exists`, so it passes skip_present=False
        to spare a second HEAD per blob.
        """
        if skip_present and self.blob_exists(repo, desc):
            return
        resp = self.http.request(
            "POST",
            f"/v2/{repo}/blobs/uploads/",
            scope=_push(repo),
            ok=(202,),
            what=f"repository {repo} takes no upload",
        )
        location = self._location(resp)
        if desc.size > self.monolithic_max:
            location = self._patch_chunks(repo, location, desc, stream)
            body: Any = b""
        else:
            body = LimitedReader(stream, desc.size)
        self.http.request(
            "PUT",
            _with_digest(location, desc.digest),
            scope=_push(repo),
            headers={"Content-Type": "application/octet-stream"},
            data=body,
            ok=(201, 204),
            what=f"upload session for {desc.digest}",
        )

    def _patch_chunks(self, repo: str, location: str, desc: Descriptor, stream: IO[bytes]) -> str:
        start = 0
        while start < desc.size:
            length = min(self.chunk_size, desc.size - start)
            resp = self.http.request(
                "PATCH",
                location,
                scope=_push(repo),
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{start}-{start + length - 1}",
                    "Content-Length": str(length),
                },
                data=LimitedReader(stream, length),
                ok=(202, 204),
                what=f"upload session for {desc.digest}",
            )
            location = self._location(resp)
            start += length
        return location

    def _location(self, resp: Answer) -> str:
        """The upload session's URL, on this registry's host only: credentials go nowhere
        else, and the URL is not shown (a server may have put a secret in it)."""
        loc = resp.headers.get("Location")
        if not loc:
            raise RegistryError(f"{self.host}: upload answered without a Location")
        url = self._here(loc)
        if url is None:
            named = _host(loc).rsplit("@", 1)[-1]  # never its userinfo
            elsewhere = self.http.secrets.scrub(named or "an unreadable URL")
            raise RegistryError(f"{self.host}: upload redirected to another host ({elsewhere})")
        return url

    def _cancel(self, resp: Answer) -> None:
        url = self._here(resp.headers.get("Location") or "")
        if url:  # an abandoned session expires on its own; cancelling is a courtesy
            with contextlib.suppress(RegistryError):
                self.http.request("DELETE", url, ok=(202, 204, 404))

    def _here(self, loc: str) -> str | None:
        """`loc` as a URL when it is on this registry's host, else None."""
        url = self.http.url(loc) if loc.startswith("/") else loc
        return None if not loc or ("://" in url and _host(url) != self.host) else url


class _Guarded:
    """A response body whose network failures are ours: one line, resumed with `Range` where
    the server allows it, else retried whole by the engine."""

    def __init__(
        self,
        resp: Answer,
        where: str,
        floor: RateFloor,
        *,
        resume: Callable[[int], Answer] | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._resp = resp
        self._where = where
        self._seen = 0
        self._floor = floor
        self._started = self._floor.clock()
        self._resume = resume
        self._retry = retry
        self._tries = 1  # requests made for this blob so far
        self._resumed_at = 0  # the rate floor measures each request from its own start

    def read(self, n: int = -1, /) -> bytes:
        while True:
            try:
                chunk: bytes = self._resp.raw.read(n)
                break
            except OSError:  # BodyError too
                lost = f"{self._where}: connection broken after {self._seen} bytes"
                if self._resume is None or self._retry is None:
                    raise ConnectionLost(lost) from None  # the engine retries the blob whole
                # One budget for the whole blob, not per read: a body cut short again and
                # again does not get a fresh budget each time it brought a few bytes.
                if not self._retry.retries_lost(self._tries):  # and no whole retry on top
                    raise RetriesExhausted(f"{lost} (after {self._tries} tries)") from None
                if not self._reopen(self._tries):
                    raise ConnectionLost(lost) from None
                self._tries += 1
        self._seen += len(chunk)
        if chunk:
            problem = self._floor.problem(self._started, self._seen - self._resumed_at)
            if problem:
                raise ConnectionLost(f"{self._where}: too slow: {problem}")
        return chunk

    def _reopen(self, attempt: int) -> bool:
        """Ask again from the byte reached: a 206 goes on from there, a 200 is skipped to it."""
        assert self._resume is not None and self._retry is not None
        self._retry.pause(attempt)
        self._resp.close()
        try:
            self._resp = self._resume(self._seen)
        except RegistryError:
            return False
        self._started, self._resumed_at = self._floor.clock(), self._seen
        start = _range_start(self._resp.headers.get("Content-Range", ""))
        if self._resp.status_code == 206:
            return start == self._seen
        try:
            _skip(self._resp.raw, self._seen)
        except OSError:  # BodyError too
            return False
        return True

    def close(self) -> None:
        self._resp.close()


def _range_start(content_range: str) -> int | None:
    """`bytes START-END/TOTAL` -> START."""
    unit, _, rest = content_range.strip().partition(" ")
    start = rest.split("-", 1)[0]
    return ascii_int(start) if unit == "bytes" else None


def _skip(raw: Any, count: int) -> None:
    while count > 0:
        chunk = raw.read(min(count, 1 << 20))
        if not chunk:
            raise OSError("the body ended before the byte to resume from")
        count -= len(chunk)


def _pull(repo: str) -> str:
    return f"repository:{repo}:pull"


def _push(repo: str) -> str:
    return f"repository:{repo}:pull,push"


def _host(url: str) -> str:
    """host[:port] of a URL; empty for one urlsplit cannot read (`http://[zz`)."""
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).netloc
    except ValueError:
        return ""


def _with_digest(location: str, digest: str) -> str:
    return f"{location}{'&' if '?' in location else '?'}digest={digest}"


def _read_capped(resp: Answer, cap: int, where: str) -> bytes:
    data = resp.raw.read(cap + 1, decode_content=True)
    if len(data) > cap:
        raise IntegrityError(f"{where}: manifest larger than {cap} bytes")
    return bytes(data)
