"""One small error hierarchy; `cli.main` maps it to exit codes in one table.

Library code raises, never exits. Each error says what was being done and where, in one
line, with credentials already removed (see `redact`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import threading
from collections.abc import Iterator
from urllib.parse import quote, quote_plus


class MirrorError(Exception):
    """Base of everything the CLI reports as one line. Exit code 1 unless a subclass says."""

    exit_code = 1


class UsageError(MirrorError):
    """Bad flags, a bad spec, an unknown registry name: the user can fix the invocation."""

    exit_code = 2


class SpecError(UsageError):
    """A spec file failed to load or validate; the message names the file and JSON pointer."""


class OperationError(MirrorError):
    """Network, registry, disk: the world did not cooperate."""


class RegistryError(OperationError):
    """A registry answered with an error, or not at all."""


class AuthError(RegistryError):
    """401 or 403 after every credential we were allowed to use."""


class NotFoundError(RegistryError):
    """A repository, tag or blob that is not there."""


class ConflictError(OperationError):
    """A target tag already points at other content; `--force` overrides."""


class VerificationError(MirrorError):
    """A signature, digest, size, archive entry or FIPS rule failed: trust nothing after it."""

    exit_code = 3


class IntegrityError(VerificationError):
    """Bytes did not match the digest or size that named them."""


class UnsignedError(VerificationError):
    """No signature where one is required."""


class KeylessError(VerificationError):
    """A keyless (Fulcio certificate, Rekor entry) signature: it cannot be checked offline."""


class FipsError(VerificationError):
    """Content or an algorithm that FIPS mode forbids."""


# The lookbehind starts a scheme only at a word's start: linear time on long words. One
# slash counts too: a URL typed where a path goes comes back with `//` made `/`.
_USERINFO = re.compile(
    r"(?<![a-zA-Z0-9+.-])(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*:/{1,2})[^/?#\s'\"<>]+@"
)

# Where a field name may start: not inside a word, a path or a `name:tag` / scope string
# (`org/vault-token:1.0`, `repository:x-api-key:pull`), but right after an escaped `\r\n`
# as in the bytes repr of a raw request. An optional quote (also JSON-escaped) opens a key.
_NAME = r"(?:(?<![\w/:-])|(?<=\\[nrt]))\\?['\"]?"
# `:` or `=`, with the key's closing quote if it had one.
_SEP = r"\\?['\"]?[ \t]*[:=][ \t]*"
# A quoted value (`'...'`, `"..."`, `b'...'`, `\"...\"`) runs to its closing quote or the
# end of the line; escaped quotes inside it do not end it.
_OPEN = r"(?P<open>b?(?P<q>\\?['\"]))?"
_QUOTED = r"(?:(?!(?P=q))(?:\\.|[^\\\n]))+"
# One unquoted credential: token68, a JWT, a PAT; stops at space, quote, comma, bracket.
_TOKEN = r"[^\s'\"`\\,;()<>\[\]{}]+"
# Digest-style auth-params: `username="bob", realm="r", response="..."`.
_PARAM = rf'[\w-]+=(?:"(?:\\.|[^"\\])*"|{_TOKEN})'
_PARAMS = rf"{_PARAM}(?:[ \t]*,[ \t]*{_PARAM})*"
# Kept in the output: which kind of credential it was helps debugging and gives nothing away.
_SCHEME = (
    r"(?:basic|bearer|digest|token|negotiate|ntlm|hoba|mutual|oauth|aws4-hmac-sha256"
    r"|scram-sha-1|scram-sha-256|vapid|jwt|apikey)"
)
_AUTH_FIELD = re.compile(
    rf"(?i)(?P<lead>{_NAME}[\w-]*authorization{_SEP}){_OPEN}"
    rf"(?P<scheme>{_SCHEME}[ \t]+(?=[^\s'\"]))?"
    # Quoted: all of it. Unquoted after a known scheme: its one credential. Unquoted after
    # an unknown first word: that word too, since it may be the credential itself (unless
    # it is our own `***`, so that redacting twice takes no more words).
    rf"(?(q){_QUOTED}|(?(scheme)(?:{_PARAMS}|{_TOKEN})"
    rf"|(?:(?!\*\*\*[ \t]){_TOKEN}[ \t]+)?(?:{_PARAMS}|{_TOKEN})))"
)
# Every `name=value` pair of a Cookie or Set-Cookie header.
_COOKIE_FIELD = re.compile(
    rf"(?i)(?P<lead>{_NAME}[\w-]*cookie{_SEP}){_OPEN}"
    r"(?(q)" + _QUOTED + r"|[^\s;'\"\\]+(?:;[ \t]*[^\s;'\"\\]+)*)"
)
_SECRET_WORD = (
    r"(?:auth|token|secret|passw(?:or)?d|passphrase|pwd|api[_-]?key|access[_-]?key"
    r"|private[_-]?key|signature|credentials?|session[_-]?id)"
)
_SECRET_FIELD = re.compile(
    rf"(?i)(?P<lead>{_NAME}(?:"
    # Header names: any `:` or `=` form, as in `X-Api-Key:abc`.
    r"(?:x-registry-auth|x-registry-config|x-api-key|api-?key|x-amz-security-token"
    rf"|private-token|job-token|x-auth-token|x-vault-token){_SEP}"
    # Any name ending in a secret word (`token`, `identitytoken`, `X-Amz-Signature`) as a
    # key: `=` or a quoted key. Prose such as "no key password: set X" keeps its words.
    rf"|[\w-]*{_SECRET_WORD}(?:\\?['\"][ \t]*[:=]|[ \t]*=)[ \t]*"
    # `client_secret: x`, `X-Custom-Token: x`: a compound name, then `: ` with a space
    # (a tag such as `vault-token:1.0` has none).
    rf"|[\w-]*[-_]{_SECRET_WORD}[ \t]*:[ \t]+"
    # Short query parameters: Azure SAS `sig`, Google `key`, an OAuth `code`.
    r"|(?<=[?&;])(?:sig|key|code)="
    rf")){_OPEN}(?(q){_QUOTED}|[^\s'\"`\\,;&()<>\[\]{{}}]+)"
)


# What a terminal or a rendered record would act on rather than show: C0 and C1 controls
# (U+009B alone starts an escape sequence), DEL, and the marks that reorder text (U+202E
# makes "SPIF" read as "FIPS").
_UNSAFE = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]}
_UNSAFE.update({0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"})
_UNSAFE.update(
    {
        c: f"\\u{c:04x}"
        for c in [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
    }
)


def terminal_safe(text: str) -> str:
    """`text` with every character a terminal would act on escaped: a name from a bundle or
    a registry must not forge a line (`OK: ...`) or repaint the screen around a message."""
    return text.translate(_UNSAFE)


def shorten(text: str, limit: int) -> str:
    """At most `limit` characters of a message, and how long it was when cut: a hostile
    document's megabyte quoted back must not become the one line an error is."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def redact(text: str) -> str:
    """Strip credentials from URLs and header dumps before anything is shown or logged.

    A value is hidden whole, scheme words included unless known (`Basic ***`): a partial
    match that hides `Basic` and shows the credential is the leak this guards against.
    """
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    text = _AUTH_FIELD.sub(r"\g<lead>\g<open>\g<scheme>***", text)
    text = _COOKIE_FIELD.sub(r"\g<lead>\g<open>***", text)
    return _SECRET_FIELD.sub(r"\g<lead>\g<open>***", text)


class Secrets:
    """The secrets one client sends (passwords, tokens, API keys), to take out of any text
    a server answers with: an error body may echo them back in any of a few encodings,
    where `redact`'s patterns see only a value after a known name.

    Values are added as they become known (a token when it is issued) and may be added
    from several threads; `scrub` reads a snapshot.
    """

    def __init__(self) -> None:
        self._forms: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def add(self, value: str | None, *, user: str | None = None) -> None:
        """`value`, and with `user` the basic-auth form of the pair, in every encoding."""
        if not value:
            return
        forms = set(_encodings(value))
        if user is not None:  # unpadded: the padded form holds it
            forms.add(base64.b64encode(f"{user}:{value}".encode()).decode().rstrip("="))
        with self._lock:
            merged = set(self._forms) | {f for f in forms if f}
            self._forms = tuple(sorted(merged, key=len, reverse=True))  # longest first

    def scrub(self, text: str) -> str:
        """`text` with every known secret replaced by `***` (not `redact`ed: a second pass
        of redact over its own output is not always a no-op, so callers redact once)."""
        for form in self._forms:
            if form in text:
                text = text.replace(form, "***")
        return text

    @contextlib.contextmanager
    def scrubbing(self) -> Iterator[None]:
        """Any MirrorError out of the block, its message scrubbed (its class, hence its
        exit code, kept)."""
        try:
            yield
        except MirrorError as exc:
            if exc.args and isinstance(exc.args[0], str):
                exc.args = (self.scrub(exc.args[0]), *exc.args[1:])
            raise


def _go_json(value: str) -> str:
    """Go's encoding/json also escapes <, > and & (as \u003c, \u003e, \u0026)."""
    quoted = json.dumps(value)[1:-1]
    return quoted.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _encodings(value: str) -> list[str]:
    """How a server or a library may quote a value back: as is, escaped as Python, JSON,
    HTML or a URL does, with its whitespace folded, or base64-encoded."""
    import html  # only where a client holds a secret: not on every command's start-up

    raw = value.encode("utf-8", "surrogatepass")
    return [
        value,
        value.encode("unicode_escape").decode("ascii"),
        repr(value)[1:-1],
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        _go_json(value),
        html.escape(value),
        html.escape(value, quote=False),
        quote(value, safe=""),
        quote_plus(value),
        " ".join(value.split()),
        base64.b64encode(raw).decode().rstrip("="),
    ]
