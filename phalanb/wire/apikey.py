"""The API key: where it comes from, and the guarantee that it is never shown.

The key is wrapped in :class:`ApiKey`, whose ``repr``/``str`` never contain it. Only the HTTP layer asks for the
real value, at the moment it builds the ``Authorization`` header.
"""

from __future__ import annotations

import ipaddress
import os
from urllib.parse import urlsplit

from ..errors import InputError, SecretLeakError

__all__ = ["ApiKey", "ENV_VARS", "resolve_api_key", "check_key_transport", "REDACTED"]

#: Environment variables read, in order, when no key is given explicitly.
ENV_VARS = ("PHALANB_API_KEY", "REDPILL_API_KEY")
REDACTED = "<redacted>"


class ApiKey:
    """A secret string. ``str(key)`` and ``repr(key)`` are redacted; ``key.reveal()`` is for the HTTP layer only."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, *, source: str = "argument"):
        if not isinstance(value, str) or not value.strip():
            raise InputError("the API key is empty")
        if any(c in value for c in "\r\n"):
            raise InputError("the API key contains a line break (copied with extra text?)")
        self._value = value.strip()
        self.source = source

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"ApiKey({REDACTED}, source={self.source!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ApiKey) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("ApiKey", self._value))

    def __reduce__(self):  # pickling would write the key to disk or to another process
        raise TypeError("ApiKey cannot be pickled: keys must not leave the process")


def resolve_api_key(key: "str | ApiKey | None", *, environ: "os._Environ[str] | dict[str, str] | None" = None
                    ) -> ApiKey | None:
    """The key given, else the first of ``PHALANB_API_KEY``, ``REDPILL_API_KEY`` that is set, else None."""
    if isinstance(key, ApiKey):
        return key
    if key is not None:
        return ApiKey(key)
    env = os.environ if environ is None else environ
    for name in ENV_VARS:
        value = env.get(name)
        if value:
            return ApiKey(value, source=f"${name}")
    return None


def is_loopback_host(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_key_transport(base_url: str, key: ApiKey | None, *, allow_insecure_http: bool) -> None:
    """Refuse to send a key in clear text to another machine (plain http to a non-loopback host)."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https"):
        raise InputError(f"base URL must start with http:// or https://, got {base_url!r}")
    if not parts.hostname:
        raise InputError(f"base URL has no host: {base_url!r}")
    if parts.username or parts.password:
        raise InputError("put credentials in the API key setting, not in the base URL")
    if key is not None and parts.scheme == "http" and not is_loopback_host(parts.hostname) and not allow_insecure_http:
        raise SecretLeakError(
            f"refusing to send the API key over plain http to {parts.hostname}: anyone on the path could read it. "
            "Use https, or, if this network is yours, --allow-insecure-http (in Python: allow_insecure_http=True).")
