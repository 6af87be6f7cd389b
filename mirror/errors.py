"""One small error hierarchy; `cli.main` maps it to exit codes in one table.

Library code raises, never exits. Each error says what was being done and where, in one
line, with credentials already removed (see `redact`).
"""

from __future__ import annotations

import re


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


class FipsError(VerificationError):
    """Content or an algorithm that FIPS mode forbids."""


_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
_SECRET_HEADER = re.compile(
    r"(?i)(authorization|apikey|x-api-key)(['\"]?\s*[:=]\s*['\"]?)([^\s'\",}]+)"
)


def redact(text: str) -> str:
    """Strip credentials from URLs and header dumps before anything is shown or logged."""
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    return _SECRET_HEADER.sub(r"\1\2***", text)
