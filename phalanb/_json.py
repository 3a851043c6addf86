"""``json.loads`` for text that comes from outside (reports, bundles, payloads, tokens, event logs, streams).

Python's own ``json.loads`` has three ways to fail that are not :class:`json.JSONDecodeError`: deeply nested input
(``RecursionError`` — or, once ``py_ecc``, imported by eth-account, has raised the interpreter's recursion limit to
100000, a *segmentation fault* of the whole process), integers longer than 4300 digits (a plain ``ValueError``)
and bytes that are not UTF-8 (``UnicodeDecodeError``). :func:`loads` turns all three into ``JSONDecodeError``, so
every caller keeps its one ``except json.JSONDecodeError`` and its own message.

>>> loads('{"a": [1, 2]}')
{'a': [1, 2]}
>>> loads("[" * 10000 + "]" * 10000)
Traceback (most recent call last):
json.decoder.JSONDecodeError: nesting deeper than 512 levels: line 1 column 513 (char 512)
"""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import ParseError

__all__ = ["MAX_DEPTH", "loads", "loads_signed", "MAX_DOCUMENT_BYTES"]

#: No real document nests beyond ~10 levels; 512 stays far below the C stack's limit.
MAX_DEPTH = 512

# A JSON string (skipped whole, so brackets inside strings do not count; an unterminated one runs to the end, so
# the scan stays linear) or one bracket.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.S)


def _too_deep(text: str) -> int | None:
    """Offset where nesting exceeds :data:`MAX_DEPTH`, or None."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return None  # cannot nest that deep: skip the scan (the usual case for small documents)
    depth = 0
    for m in _TOKENS.finditer(text):
        c = m.group()
        if c in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return m.start()
        elif c in "]}":
            depth -= 1
    return None


def loads(data: str | bytes | bytearray) -> Any:
    """Like :func:`json.loads`, but every malformed input raises :class:`json.JSONDecodeError`."""
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise json.JSONDecodeError(f"not UTF-8 ({exc.reason})", "", exc.start) from None
    if not isinstance(data, str):
        raise TypeError(f"the JSON object must be str or bytes, not {type(data).__name__}")
    at = _too_deep(data)
    if at is not None:
        raise json.JSONDecodeError(f"nesting deeper than {MAX_DEPTH} levels", data, at)
    try:
        return json.loads(data)
    except json.JSONDecodeError:
        raise
    except (ValueError, RecursionError) as exc:  # e.g. "Exceeds the limit (4300 digits) for integer string conversion"
        raise json.JSONDecodeError(str(exc), data, 0) from None


# -- signed documents (ACI's rule): what a signature covers must read one way only ---------------------------------

#: No ACI document comes near this (a report with a quote and an event log is ~30 KB; sessions carry evidence of
#: a few MB at most); anything larger is refused before parsing.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _Duplicate(key)
        seen[key] = value
    return seen


class _Duplicate(Exception):
    def __init__(self, key: str):
        self.key = key


def _no_float(text: str) -> Any:
    raise _Float(text)


class _Float(Exception):
    def __init__(self, text: str):
        self.text = text


def _no_constant(name: str) -> Any:
    raise _Float(name)


def loads_signed(data: str | bytes, *, what: str = "document", max_bytes: int = MAX_DOCUMENT_BYTES) -> Any:
    """Parse an ACI document strictly: at most ``max_bytes``, UTF-8, bounded nesting, no duplicate member
    names, no floats, no NaN/Infinity. Every refusal is a :class:`ParseError` naming ``what`` and the offset."""
    size = len(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    if size > max_bytes:
        raise ParseError(f"{size} bytes is more than the {max_bytes} an ACI {what} may have", field=what)
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    except UnicodeDecodeError as exc:
        raise ParseError(f"not UTF-8 ({exc.reason})", field=what, offset=exc.start) from None
    if _too_deep(text) is not None:
        raise ParseError(f"nested deeper than {MAX_DEPTH} levels", field=what, offset=_too_deep(text))
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_float=_no_float,
                          parse_constant=_no_constant)
    except _Duplicate as exc:
        raise ParseError(f"member {exc.key!r} appears twice; a signed document must be unambiguous",
                         field=what) from None
    except _Float as exc:
        raise ParseError(f"number {exc.text} is not an integer; ACI documents carry integers only",
                         field=what) from None
    except json.JSONDecodeError as exc:
        raise ParseError(f"not JSON ({exc.msg})", field=what, offset=exc.pos) from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of more than 4300 digits
        raise ParseError(f"not JSON ({exc})", field=what) from None
