"""The OCI distribution pull API and static Helm repositories, as one WSGI application.

Read-only: every method that would change the store answers 405 with the spec's
`UNSUPPORTED` error. Blobs stream out of the archive in chunks, so memory stays bounded
whatever their size; a single `Range` is honoured (206, or 416 past the end).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote

from mirror.errors import IntegrityError
from mirror.oci import mediatypes as mt
from mirror.serve.store import OCTET, ServedStore

CHUNK = 1024 * 1024
MAX_PAGE = 10_000
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_ROUTE = re.compile(r"/v2/(?P<name>.+?)/(?P<kind>manifests|blobs|referrers)/(?P<ref>[^/]+)")
_TAGS = re.compile(r"/v2/(?P<name>.+?)/tags/list")
_HELM = re.compile(r"/charts/(?P<slug>[a-z0-9-]+)/(?P<file>[^/]+)")
# At most 18 digits each: a longer number is past any blob, and int() refuses 4,300 digits.
_RANGE = re.compile(r"bytes=([0-9]{0,18})-([0-9]{0,18})")
_PAGE_N = re.compile(r"[0-9]+")
CHECK_EVERY = 64 << 20  # bytes of a blob sent between two looks at the bundle's stamp
READ_METHODS = ("GET", "HEAD")
UNSATISFIABLE = (-1, -1)

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


@dataclass
class Response:
    status: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: Iterable[bytes] = ()


def error(status: str, code: str, message: str, **headers: str) -> Response:
    """The distribution spec's error document."""
    body = json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()
    return _bytes(status, body, "application/json", list(headers.items()))


def _bytes(
    status: str, body: bytes, content_type: str, headers: list[tuple[str, str]] | None = None
) -> Response:
    head = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    return Response(status, head + (headers or []), [body])


class RegistryApp:
    """A WSGI callable over one ServedStore; it keeps no state between requests."""

    def __init__(self, store: ServedStore) -> None:
        self.store = store

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            resp = self.route(method, environ.get("PATH_INFO") or "/", environ)
        except Exception as exc:  # a bug or a value no check foresaw: still an OCI answer
            said = f"{type(exc).__name__}: {exc}"[:300]
            resp = error("500 Internal Server Error", "UNKNOWN", said)
        headers = [*resp.headers, ("Docker-Distribution-API-Version", "registry/2.0")]
        start_response(resp.status, headers)
        if method == "HEAD":
            _close(resp.body)
            return []
        return resp.body

    def route(self, method: str, path: str, environ: dict[str, Any]) -> Response:
        if method not in READ_METHODS:
            if path.startswith(("/v2", "/charts/")):
                return error(
                    "405 Method Not Allowed", "UNSUPPORTED",
                    f"{method} is not supported: this registry is a read-only bundle",
                    Allow="GET, HEAD",
                )  # fmt: skip
            return error("404 Not Found", "NAME_UNKNOWN", "not found")
        query = parse_qs(environ.get("QUERY_STRING") or "")
        if path in ("/v2", "/v2/"):
            return _bytes("200 OK", b"{}", "application/json")
        if path == "/v2/_catalog":
            return self._page("/v2/_catalog", "repositories", sorted(self.store.repos), query)
        if m := _TAGS.fullmatch(path):
            return self._tags(m["name"], query)
        if m := _ROUTE.fullmatch(path):
            handler = {"manifests": self._manifest, "blobs": self._blob}.get(m["kind"])
            if handler is None:
                return self._referrers(m["name"], m["ref"], query)
            return handler(m["name"], m["ref"], environ)
        if m := _HELM.fullmatch(path):
            return self._helm(m["slug"], m["file"], environ)
        return error("404 Not Found", "NAME_UNKNOWN", f"{path}: no such endpoint")

    # ------------------------------------------------------------------ listing

    def _tags(self, name: str, query: dict[str, list[str]]) -> Response:
        repo = self.store.repos.get(name)
        if repo is None:
            return error("404 Not Found", "NAME_UNKNOWN", f"repository {name} is not known")
        resp = self._page(f"/v2/{name}/tags/list", "tags", sorted(repo.tags), query)
        if resp.status.startswith("200"):
            doc = json.loads(b"".join(resp.body))
            body = json.dumps({"name": name, **doc}).encode()
            resp = _bytes("200 OK", body, "application/json", resp.headers[2:])
        return resp

    def _page(self, path: str, key: str, items: list[str], query: dict[str, list[str]]) -> Response:
        """`n` and `last` pagination with a `Link` to the next page, as the spec has it."""
        last = (query.get("last") or [""])[0]
        raw_n = (query.get("n") or [""])[0]
        if raw_n and not _PAGE_N.fullmatch(raw_n):  # ASCII: str.isdigit() takes "²"
            return error("400 Bad Request", "PAGINATION_NUMBER_INVALID", f"n={raw_n[:40]!r}")
        digits = raw_n.lstrip("0") or ("0" if raw_n else "")  # n=0000001 is n=1
        n = MAX_PAGE if not digits or len(digits) > 6 else min(int(digits), MAX_PAGE)
        rest = [i for i in items if i > last] if last else items
        page, more = rest[:n], len(rest) > n
        headers = []
        if more and page:
            link = f"{path}?n={n}&last={quote(page[-1], safe='')}"
            headers.append(("Link", f'<{link}>; rel="next"'))
        return _bytes("200 OK", json.dumps({key: page}).encode(), "application/json", headers)

    def _referrers(self, name: str, ref: str, query: dict[str, list[str]]) -> Response:
        repo = self.store.repos.get(name)
        if repo is None:
            return error("404 Not Found", "NAME_UNKNOWN", f"repository {name} is not known")
        if not _DIGEST.fullmatch(ref):
            return error("400 Bad Request", "DIGEST_INVALID", f"{ref} is not a digest")
        entries = repo.referrers.get(ref, [])
        wanted = query.get("artifactType")
        headers = []
        if wanted:
            entries = [e for e in entries if e.get("artifactType") in wanted]
            headers.append(("OCI-Filters-Applied", "artifactType"))
        doc = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}
        return _bytes("200 OK", json.dumps(doc).encode(), mt.OCI_INDEX, headers)

    # ------------------------------------------------------------------ content

    def _manifest(self, name: str, ref: str, environ: dict[str, Any]) -> Response:
        repo = self.store.repos.get(name)
        if repo is None:
            return error("404 Not Found", "NAME_UNKNOWN", f"repository {name} is not known")
        digest = ref if _DIGEST.fullmatch(ref) else repo.tags.get(ref)
        if digest is None and not _TAG.fullmatch(ref):
            return error("400 Bad Request", "MANIFEST_INVALID", f"{ref} is no tag or digest")
        desc = repo.manifests.get(digest or "")
        if desc is None:
            return error("404 Not Found", "MANIFEST_UNKNOWN", f"{name}:{ref} is not known")
        # By digest the content is fixed: it is answered whatever Accept lists, as
        # docker-registry does (the spec's 404 is for a manifest that is not there).
        by_tag = digest != ref
        if by_tag and not _accepts(environ.get("HTTP_ACCEPT", ""), desc.media_type):
            return error(
                "404 Not Found", "MANIFEST_UNKNOWN",
                f"{name}:{ref} is a {desc.media_type}, which the request does not accept",
            )  # fmt: skip
        data = self.store.manifest_bytes(desc)
        return _bytes("200 OK", data, desc.media_type, [("Docker-Content-Digest", desc.digest)])

    def _blob(self, name: str, digest: str, environ: dict[str, Any]) -> Response:
        repo = self.store.repos.get(name)
        if repo is None:
            return error("404 Not Found", "NAME_UNKNOWN", f"repository {name} is not known")
        if not _DIGEST.fullmatch(digest):
            return error("400 Bad Request", "DIGEST_INVALID", f"{digest} is not a digest")
        if digest not in repo.blobs and digest not in repo.manifests:
            return error("404 Not Found", "BLOB_UNKNOWN", f"{name}@{digest} is not known")
        return self._stream(digest, OCTET, environ)

    def _helm(self, slug: str, filename: str, environ: dict[str, Any]) -> Response:
        repo = self.store.helm.get(slug)
        if repo is None:
            return error("404 Not Found", "NAME_UNKNOWN", f"no Helm repository {slug}")
        if filename == "index.yaml":
            return _bytes("200 OK", repo.index, "application/x-yaml")
        digest = repo.files.get(filename)
        if digest is None:
            return error("404 Not Found", "BLOB_UNKNOWN", f"{slug}/{filename} is not known")
        return self._stream(digest, "application/gzip", environ)

    def _stream(self, digest: str, content_type: str, environ: dict[str, Any]) -> Response:
        try:
            self.store.check_unchanged()
        except IntegrityError as exc:
            return error("500 Internal Server Error", "UNKNOWN", str(exc))
        size = self.store.size_of(digest)
        span = _range(environ.get("HTTP_RANGE", ""), size)
        if_range = environ.get("HTTP_IF_RANGE")
        if if_range is not None and if_range.strip() != f'"{digest}"':
            span = None  # another representation's validator: the whole blob (RFC 9110 13.1.5)
        headers = [
            ("Content-Type", content_type),
            ("Docker-Content-Digest", digest),
            ("Accept-Ranges", "bytes"),
            ("ETag", f'"{digest}"'),
        ]
        if span == UNSATISFIABLE:
            headers = [("Content-Range", f"bytes */{size}"), ("Content-Length", "0")]
            return Response("416 Range Not Satisfiable", headers, [])
        if span is None:
            headers.append(("Content-Length", str(size)))
            return Response("200 OK", headers, self._chunks(digest, 0, size))
        start, end = span
        headers += [("Content-Length", str(end - start)), ("Content-Range", _crange(span, size))]
        return Response("206 Partial Content", headers, self._chunks(digest, start, end))

    def _chunks(self, digest: str, start: int, end: int) -> Iterator[bytes]:
        """The blob's bytes [start, end), read lazily: nothing opens until the first chunk.

        The bundle's stamp is looked at again every CHECK_EVERY bytes and before the last
        chunk goes: a file changed while a blob streams ends the response short (the client
        sees a cut body, never a whole 206 of other bytes, which no digest could catch)."""
        with self.store.open_blob(digest) as stream:
            skip = start
            while skip > 0:
                got = len(stream.read(min(skip, CHUNK)))
                skip -= got
            left, since = end - start, 0
            while left > 0:
                chunk = stream.read(min(left, CHUNK))
                if not chunk:
                    return
                left, since = left - len(chunk), since + len(chunk)
                if left == 0 or since >= CHECK_EVERY:
                    self.store.check_unchanged()  # raises: the server cuts the connection
                    since = 0
                yield chunk


def _range(header: str, size: int) -> tuple[int, int] | None:
    """A single `bytes=` range as [start, end), None for the whole blob, or UNSATISFIABLE."""
    m = _RANGE.fullmatch(header.strip())
    if m is None or (not m[1] and not m[2]):
        return None  # absent, malformed or several ranges: the whole blob (RFC 9110 allows it)
    if not m[1]:  # the last N bytes
        n = int(m[2])
        return (max(0, size - n), size) if n > 0 and size > 0 else UNSATISFIABLE
    start = int(m[1])
    end = min(int(m[2]) + 1, size) if m[2] else size
    if start >= size or end <= start:
        return UNSATISFIABLE
    return start, end


def _crange(span: tuple[int, int], size: int) -> str:
    return f"bytes {span[0]}-{span[1] - 1}/{size}"


def _accepts(accept: str, media_type: str) -> bool:
    """No Accept (or */*) takes anything; else the manifest's own type must be listed."""
    types = {part.split(";")[0].strip() for part in accept.split(",") if part.strip()}
    return not types or bool(types & {media_type, "*/*", "application/*"})


def _close(body: Iterable[bytes]) -> None:
    close = getattr(body, "close", None)
    if close is not None:
        close()
