"""JCS, the JSON Canonicalization Scheme (RFC 8785) as ACI uses it: the bytes every ACI digest and signature covers.

ACI's canonical form (ACI.md §2.1) is the RFC 8785 subset the gateway implements: UTF-8, no whitespace, member
names ASCII-only and sorted at every level, arrays in order, **integers only** (``2.5`` and even ``2.0`` are
refused: a number that is not an integer has no single canonical spelling across languages), strings escaped as
serde_json escapes them (``"`` ``\\`` ``\\b\\f\\n\\r\\t``, other control characters as ``\\u00xx``, everything
else, non-ASCII included, raw). Python's ``json.dumps(..., ensure_ascii=False, separators=(",", ":"),
sort_keys=True)`` spells strings exactly that way, so the work here is refusing what JCS cannot express.

Duplicate member names cannot be seen once JSON is a ``dict``; :func:`loads` parses text for ACI and refuses them
(a document with two ``"signature"`` members means whatever the reader's parser picks).

>>> canonicalize({"b": [1, "é"], "a": None})
b'{"a":null,"b":[1,"\\xc3\\xa9"]}'
>>> canonicalize({"x": 2.0})
Traceback (most recent call last):
phalanb.errors.ParseError: x: 2.0 is a float; ACI's canonical JSON (JCS) allows integers only
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .. import _json
from ..errors import ParseError

__all__ = ["canonicalize", "sha256_digest", "loads", "MAX_DOCUMENT_BYTES"]

#: No ACI document comes near this (a report with a quote and an event log is ~30 KB; sessions carry evidence of
#: a few MB at most); anything larger is refused before parsing.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024


def _check(value: Any, path: str) -> None:
    """Refuse what JCS cannot express, naming where (``attestation.workload_keyset.not_after``)."""
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        return
    if isinstance(value, float):
        raise ParseError(f"{value!r} is a float; ACI's canonical JSON (JCS) allows integers only",
                         field=path or "document")
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ParseError(f"member name {key!r} is not a string", field=path or "document")
            if not key.isascii():
                raise ParseError(f"member name {key!r} is not ASCII; ACI's canonical JSON sorts ASCII names only",
                                 field=f"{path}.{key}" if path else key)
            _check(item, f"{path}.{key}" if path else key)
        return
    raise ParseError(f"a {type(value).__name__} has no JSON form", field=path or "document")


def canonicalize(value: Any) -> bytes:
    """The JCS bytes of ``value`` (parsed JSON: dict, list, str, int, bool, None). Raises :class:`ParseError`
    on floats, NaN, non-ASCII member names and anything that is not JSON."""
    _check(value, "")
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True,
                          allow_nan=False).encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate ("\ud800") has no UTF-8 form
        raise ParseError(f"a string holds {exc.object[exc.start:exc.end]!r}, which has no UTF-8 form",
                         field="document") from None


def sha256_digest(value: Any) -> str:
    """``"sha256:" + hex(sha256(JCS(value)))``, the form ACI writes digests in."""
    return "sha256:" + hashlib.sha256(canonicalize(value)).hexdigest()


def _no_float(text: str) -> Any:
    raise _Float(text)


class _Float(Exception):
    def __init__(self, text: str):
        self.text = text


def loads(data: str | bytes, *, what: str = "document", max_bytes: int = MAX_DOCUMENT_BYTES) -> Any:
    """Parse an ACI document strictly: at most ``max_bytes``, UTF-8, bounded nesting, no duplicate member
    names, no floats, no NaN/Infinity. Every refusal is a :class:`ParseError` naming ``what`` and the offset."""
    size = len(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    if size > max_bytes:
        raise ParseError(f"{size} bytes is more than the {max_bytes} an ACI {what} may have", field=what)
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    except UnicodeDecodeError as exc:
        raise ParseError(f"not UTF-8 ({exc.reason})", field=what, offset=exc.start) from None
    try:  # phalanb's one reading rule (duplicates, lone surrogates, NaN/Infinity, depth refused), plus: no floats
        return _json.loads(text, field=what, parse_float=_no_float)
    except _Float as exc:
        raise ParseError(f"number {exc.text} is not an integer; ACI documents carry integers only",
                         field=what) from None
    except _json.JSONRefused as exc:
        raise ParseError(f"not JSON phalanb reads ({exc.msg})", field=what, offset=exc.pos) from None
