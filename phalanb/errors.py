"""phalanb's exceptions.

Every error phalanb raises on purpose is a :class:`PhalanbError`. Callers (the CLI, the widgets, the batch
auditor) catch that one class and can rely on ``str(err)`` being a sentence a person can act on. Parsers raise
:class:`ParseError` naming the field and the byte offset, so bad input never surfaces as ``IndexError`` or
``struct.error``.

A *failed check* is not an exception: verification returns results (see :mod:`phalanb.verdict`). Exceptions are
for input that cannot be read and for services that cannot be reached.
"""

from __future__ import annotations

__all__ = [
    "PhalanbError",
    "ParseError",
    "InputError",
    "UnsupportedError",
    "SignatureFormatError",
    "TransportError",
    "ServiceError",
    "NotFoundError",
    "SignatureExpiredError",
    "SecretLeakError",
    "E2EEError",
]


class PhalanbError(Exception):
    """Base class of every error phalanb raises deliberately."""


class ParseError(PhalanbError, ValueError):
    """Bytes or text that do not match the wire format.

    ``field`` names the structure member (as Intel, NVIDIA or the service names it); ``offset`` is the absolute
    byte offset where reading failed, when the input is binary.

    >>> raise ParseError("body_size 900 exceeds the 702 bytes left", field="body_size", offset=50)
    Traceback (most recent call last):
    phalanb.errors.ParseError: body_size at offset 50: body_size 900 exceeds the 702 bytes left
    """

    def __init__(self, message: str, *, field: str | None = None, offset: int | None = None):
        self.field = field
        self.offset = offset
        self.reason = message
        where = ""
        if field is not None and offset is not None:
            where = f"{field} at offset {offset}: "
        elif field is not None:
            where = f"{field}: "
        elif offset is not None:
            where = f"at offset {offset}: "
        super().__init__(where + message)


class InputError(PhalanbError, ValueError):
    """A value given by the user (argument, setting, file) is unusable; the message says which and why."""


class UnsupportedError(PhalanbError):
    """The input is well-formed but of a kind phalanb deliberately does not handle (e.g. an SGX quote)."""


class SignatureFormatError(ParseError):
    """A signature record, signed text or signature value is malformed (hex, length, algorithm, parts)."""


class TransportError(PhalanbError):
    """The service could not be reached or the connection broke (refused, timeout, stream cut mid-way)."""

    def __init__(self, message: str, *, url: str | None = None):
        self.url = url
        super().__init__(message)


class ServiceError(PhalanbError):
    """The service answered with an HTTP error. Carries the status and the server's own error message."""

    def __init__(self, message: str, *, status: int, server_message: str | None = None, url: str | None = None):
        self.status = status
        self.server_message = server_message
        self.url = url
        super().__init__(message)


class NotFoundError(ServiceError):
    """HTTP 404 from the service."""


class SignatureExpiredError(NotFoundError):
    """The service no longer (or never) had a signature for this chat id.

    This is a normal outcome, not a bug: signatures live in a per-node cache (1200 s by default, at most 1000
    entries), appear only after the stream ended, and a multi-node service can route the lookup to a node that
    never saw the chat.
    """


class SecretLeakError(PhalanbError):
    """Refused an action that would expose the API key (e.g. sending it over plain HTTP to a remote host)."""


class E2EEError(PhalanbError):
    """End-to-end encryption (ACI E2EE v2) could not be applied or did not hold: a key that is not an attested
    v2 key, a field that fails authentication, or a reply field that arrived unencrypted. ``field`` names the JSON
    field path (``choices.0.message.content``) when one is at fault."""

    def __init__(self, message: str, *, field: str | None = None):
        self.field = field
        super().__init__(message)
