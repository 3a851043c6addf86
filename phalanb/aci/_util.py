"""Small readers shared by the ACI parsers: typed member access that names the field on failure."""

from __future__ import annotations

from typing import Any, Mapping

from ..errors import ParseError
from . import jcs

__all__ = ["read_document", "obj", "opt_str", "req_str", "opt_int", "req_int", "hex_bytes"]


def read_document(data: Any, *, what: str, max_bytes: int) -> dict[str, Any]:
    """A JSON object from bytes, text or an already parsed mapping, refused as a :class:`ParseError` when it is
    oversized, not UTF-8, has duplicate member names, floats, non-ASCII member names or is not an object."""
    if isinstance(data, (bytes, bytearray, memoryview, str)):
        data = jcs.loads(bytes(data) if not isinstance(data, str) else data, what=what, max_bytes=max_bytes)
    if not isinstance(data, Mapping):
        raise ParseError(f"an ACI {what} must be a JSON object, got {type(data).__name__}", field=what)
    doc = dict(data)
    # Everything ACI hashes or signs is JCS; a member JCS cannot express (float, non-ASCII name) is refused here,
    # whether the document came as text or as an object someone parsed leniently.
    jcs.canonicalize(doc)
    return doc


def obj(d: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> dict[str, Any] | None:
    value = d.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, Mapping):
        what = "missing" if value is None else f"a {type(value).__name__}"
        raise ParseError(f"must be a JSON object, is {what}", field=f"{where}{key}")
    return dict(value)


def opt_str(d: Mapping[str, Any], key: str, where: str) -> str | None:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ParseError(f"must be a string, is a {type(value).__name__}", field=f"{where}{key}")
    return value


def req_str(d: Mapping[str, Any], key: str, where: str) -> str:
    value = opt_str(d, key, where)
    if value is None:
        raise ParseError("is missing (a string is required)", field=f"{where}{key}")
    return value


def opt_int(d: Mapping[str, Any], key: str, where: str) -> int | None:
    value = d.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParseError(f"must be an integer, is a {type(value).__name__}", field=f"{where}{key}")
    return value


def req_int(d: Mapping[str, Any], key: str, where: str) -> int:
    value = opt_int(d, key, where)
    if value is None:
        raise ParseError("is missing (an integer is required)", field=f"{where}{key}")
    return value


def hex_bytes(value: str, field: str, *, length: int | None = None) -> bytes:
    """Lowercase or uppercase hex (an optional ``0x`` is tolerated) to bytes, with its length checked."""
    body = value[2:] if value[:2] in ("0x", "0X") else value
    try:
        raw = bytes.fromhex(body)
    except ValueError:
        raise ParseError(f"is not hex ({body[:24]!r}…)", field=field) from None
    if length is not None and len(raw) != length:
        raise ParseError(f"is {len(raw)} bytes; {length} expected", field=field)
    return raw
