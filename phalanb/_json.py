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

__all__ = ["MAX_DEPTH", "loads"]

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
