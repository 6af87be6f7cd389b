"""Register imported registries with Palette as system-scope registries.

Calls and bodies follow `../shared/palette-api/registries-openapi.json` (Palette 4.8):
existing registries are found by name through `GET /v1/registries/metadata?scope=system`
and updated with PUT, so a second import never creates a duplicate. The API key travels only
in the `ApiKey` header; it and the registry password are scrubbed from every message.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, urlencode

from mirror.catalog import CatalogEntry
from mirror.errors import (
    AuthError,
    ConflictError,
    OperationError,
    RegistryError,
    UsageError,
    redact,
    shorten,
)
from mirror.registry.answer import Answer
from mirror.registry.auth import env_text
from mirror.registry.http import Endpoint, Http, split_url
from mirror.registry.retry import DEFAULT, RetryPolicy

log = logging.getLogger(__name__)

USERNAME_ENV = "MIRROR_TARGET_USERNAME"
PASSWORD_ENV = "MIRROR_TARGET_PASSWORD"
# Palette's providerType enum for basic OCI registries; "image" registries are not packs.
_OCI_PROVIDERS = ("helm", "zarf", "pack")
_UID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")  # Palette's are 24 hex digits
_KIND_WORDS = {"oci": {"oci", "basic", "ecr"}, "helm": {"helm"}, "pack": {"pack", "spectro"}}


@dataclass(frozen=True)
class RegistryAuth:
    """How Palette should log in to the target registry (not Palette's own API key)."""

    username: str
    password: str = field(repr=False)


def registry_auth_from_env(env: Mapping[str, str] | None = None) -> RegistryAuth | None:
    """MIRROR_TARGET_USERNAME + MIRROR_TARGET_PASSWORD, both or neither; neither = noAuth."""
    username, password = env_text(USERNAME_ENV, env) or "", env_text(PASSWORD_ENV, env) or ""
    if not username and not password:
        return None
    if not username or not password:
        missing = USERNAME_ENV if not username else PASSWORD_ENV
        raise UsageError(f"{missing} is not set; set both {USERNAME_ENV} and {PASSWORD_ENV}")
    return RegistryAuth(username, password)


def _auth_json(auth: RegistryAuth | None) -> dict[str, Any]:
    if auth is None:
        return {"type": "noAuth"}
    return {"type": "basic", "username": auth.username, "password": auth.password}


def _url_of(entry: CatalogEntry) -> str:
    """Helm and legacy pack registries have no base path field: it joins the endpoint."""
    base = entry.base_content_path.strip("/")
    return f"{entry.endpoint.rstrip('/')}/{base}" if base else entry.endpoint


def _body(entry: CatalogEntry, auth: RegistryAuth | None, uid: str | None) -> dict[str, Any]:
    """Request body for create (uid None) or update, per the OpenAPI definitions."""
    metadata: dict[str, Any] = {"name": entry.name}
    if uid:
        metadata["uid"] = uid
    spec: dict[str, Any]
    if entry.kind == "oci":
        spec = {
            "endpoint": entry.endpoint,
            "baseContentPath": entry.base_content_path,
            "providerType": entry.provider_type,
            "isSyncSupported": entry.provider_type in ("pack", "helm"),
        }
    elif entry.kind == "helm":
        spec = {"endpoint": _url_of(entry), "name": entry.name, "isPrivate": auth is not None}
    else:
        spec = {"endpoint": _url_of(entry), "name": entry.name, "private": auth is not None}
    spec["auth"] = _auth_json(auth)
    spec["scope"] = "system"
    return {"metadata": metadata, "spec": spec}


def _paths(kind: str, uid: str | None) -> str:
    if kind == "oci":
        return f"/v1/registries/oci/{uid}/basic" if uid else "/v1/registries/oci/basic"
    return f"/v1/registries/{kind}/{uid}" if uid else f"/v1/registries/{kind}"


def check_api_key(api_key: str) -> None:
    """PALETTE_API_KEY, checked before the import pushes: a key that cannot travel in a
    header (a line break pasted with it) would fail only afterwards, in words quoting it."""
    if not api_key:
        raise UsageError("PALETTE_API_KEY is not set")
    if not (api_key.isascii() and api_key.isprintable()) or any(c.isspace() for c in api_key):
        raise UsageError(
            "PALETTE_API_KEY holds a space, line break, control or non-ASCII character; "
            "copy the key again"
        )


def _uid(value: object, where: str) -> str:
    """A registry's uid as Palette gives it, before it goes into a URL path."""
    if not isinstance(value, str) or not _UID.fullmatch(value):
        shown = redact(shorten(repr(value), 60))
        raise OperationError(f"{where}: not a registry uid: {shown}; is --palette-url Palette's?")
    return value


def check_palette_url(base_url: str) -> SplitResult:
    """--palette-url, checked before the import touches anything: https://HOST[:PORT][/path],
    no credentials in it (the key comes from PALETTE_API_KEY)."""
    bad = UsageError(f"--palette-url {redact(base_url)!r}: expected https://HOST")
    try:
        parts = split_url(base_url)
    except ValueError:
        raise bad from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise bad
    if "@" in parts.netloc:
        raise UsageError(
            f"--palette-url {redact(base_url)!r}: credentials don't belong in the URL; "
            "the key comes from PALETTE_API_KEY"
        )
    return parts


class PaletteClient:
    """Palette's API through the one transport (`registry/http.Http`): its retry rule, its
    timeouts, one session per thread. Use as a context manager to close."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        ca_file: str | None = None,
        timeout: float = 30,
        retry: RetryPolicy = DEFAULT,
    ) -> None:
        parts = check_palette_url(base_url)
        check_api_key(api_key)
        self._prefix = parts.path.rstrip("/")
        endpoint = Endpoint(parts.scheme, parts.netloc.rsplit("@", 1)[-1], ca_file or True)
        headers = {"ApiKey": api_key, "Accept": "application/json"}
        self._http = Http(endpoint, None, timeout=(10.0, timeout), retry=retry, headers=headers)
        self._http.secrets.add(api_key)

    def __enter__(self) -> PaletteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _scrub(self, text: str) -> str:
        return redact(self._http.secrets.scrub(text))

    def _registry_uid(self, value: object, where: str) -> str:
        """A uid that holds the API key (a server echoing the header back) is not one: it
        would be printed in the import's result and the --json document."""
        uid = _uid(value, where)
        if self._http.secrets.scrub(uid) != uid:
            raise OperationError(f"{where}: not a registry uid: it holds the API key")
        return uid

    def _request(
        self, method: str, path: str, *, params: dict[str, str] | None = None, body: Any = None
    ) -> Answer:
        where = f"Palette {method} {path}"
        query = f"?{urlencode(params)}" if params else ""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        create = method == "POST"  # sent once: a retry after a lost answer made two
        try:
            response = self._http.request(
                method, self._prefix + path + query, headers=headers, data=data, check=False,
                once=create,
            )  # fmt: skip
        except RegistryError as exc:  # unreachable, or the retry budget spent
            said = f"{self._http.endpoint.host}: {method} {self._prefix + path}: "
            exc.args = (str(exc).removeprefix(said), *exc.args[1:])  # `where` says it
            maybe = "; it may have been created: importing again updates it by name"
            raise OperationError(
                f"{where}: {self._scrub(str(exc))}{maybe if create else ''}"
            ) from None
        log.debug("%s -> %s", where, response.status_code)
        status = response.status_code
        if status in (401, 403):
            raise AuthError(f"{where}: {status}: Palette refused the API key (PALETTE_API_KEY)")
        if 300 <= status < 400:
            target = self._scrub(response.headers.get("Location", "?"))
            raise OperationError(f"{where}: {status} redirect to {target}; check --palette-url")
        if status >= 400:
            raise OperationError(f"{where}: {status}: {self._error_text(response)}")
        return response

    def _error_text(self, response: Answer) -> str:
        try:
            detail = response.json().get("message") or response.reason
        except (ValueError, AttributeError):
            detail = response.text or response.reason
        # Scrubbed before whitespace is folded and the text cut: either could hide an echo.
        return shorten(" ".join(self._scrub(str(detail)).split()), 300)

    def existing(self) -> dict[str, dict[str, Any]]:
        """System-scope registries by name, as `v1RegistryMetadata` items."""
        response = self._request("GET", "/v1/registries/metadata", params={"scope": "system"})
        where = "Palette GET /v1/registries/metadata"
        try:
            items = response.json().get("items") or []
        except (ValueError, AttributeError):
            raise OperationError(f"{where}: not JSON") from None
        if not isinstance(items, list):
            raise OperationError(f"{where}: `items` is not a list")
        for item in items:  # one skipped would be created again: a duplicate
            fields = (item.get("name"), item.get("kind") or "") if isinstance(item, dict) else ()
            if not fields or not all(isinstance(f, str) for f in fields) or not fields[0]:
                shown = redact(shorten(repr(item), 80))
                raise OperationError(f"{where}: an item without a name and kind: {shown}")
        return {i["name"]: i for i in items if i.get("scope", "system") == "system"}

    def register(
        self, entries: Sequence[CatalogEntry], auth: RegistryAuth | None
    ) -> list[dict[str, Any]]:
        """Create or update each entry; one result dict per entry, in order."""
        if auth is not None:
            self._http.secrets.add(auth.password, user=auth.username)
        results = []
        with self._http.secrets.scrubbing():  # Palette's own words (a uid) quoted too
            found = self.existing()
            for entry in entries:
                result = self._register_one(entry, auth, found)
                log.info("Palette: %s %s registry %r", result["action"], entry.kind, entry.name)
                results.append(result)
        return results

    def _register_one(
        self, entry: CatalogEntry, auth: RegistryAuth | None, found: dict[str, dict[str, Any]]
    ) -> dict[str, Any]:
        result: dict[str, Any] = {"name": entry.name, "kind": entry.kind, "uid": None}
        if entry.kind == "oci" and entry.provider_type not in _OCI_PROVIDERS:
            reason = f"Palette registers OCI registries of {', '.join(_OCI_PROVIDERS)} only"
            return {**result, "action": "skipped", "reason": reason}
        current = found.get(entry.name)
        uid = None
        if current:
            uid = self._registry_uid(current.get("uid"), f"Palette's registry {entry.name!r}")
            self._check_kind(entry, current)
        path = _paths(entry.kind, uid)
        if uid:
            self._request("PUT", path, body=_body(entry, auth, uid))
            return {**result, "uid": uid, "action": "updated"}
        response = self._request("POST", path, body=_body(entry, auth, None))
        try:
            answer = response.json()
        except ValueError:
            answer = None
        # A 200 with an HTML login page, or nothing, registered nothing: not a success.
        where = f"Palette POST {path}"
        uid = self._registry_uid(answer.get("uid") if isinstance(answer, dict) else None, where)
        found[entry.name] = {"name": entry.name, "uid": uid, "kind": entry.kind}
        return {**result, "uid": uid, "action": "created"}

    @staticmethod
    def _check_kind(entry: CatalogEntry, current: Mapping[str, Any]) -> None:
        kind = str(current.get("kind") or "").lower()
        known = set().union(*_KIND_WORDS.values())
        if kind in known and kind not in _KIND_WORDS[entry.kind]:
            raise ConflictError(
                f"Palette already has a system registry named {entry.name!r} of kind {kind}; "
                f"cannot register {entry.kind} content under that name"
            )
