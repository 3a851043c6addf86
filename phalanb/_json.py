"""The one JSON reading rule for everything that comes from outside (reports, receipts, sessions, bundles, batch
lines, SSE events, E2EE replies, payloads, tokens, event logs).

Python's ``json.loads`` reads some documents a strict reader would refuse, and each is a way to show one reader
one thing and another reader another: a *duplicate member* (``"content": "<clear>", "content": "<sealed>"`` reads
as the last value here and the first elsewhere), a *lone surrogate* escape (``"\\ud800"``: no UTF-8 form, so no
two encoders agree on it) and *non-finite numbers* (``NaN``, ``Infinity``, ``1e400``: they compare false with
every bound). :func:`loads` refuses all three, and also the ways ``json.loads`` fails that are not
``json.JSONDecodeError``: deep nesting (``RecursionError`` — or, once ``py_ecc`` has raised the recursion limit, a
segmentation fault), integers longer than 4300 digits and bytes that are not UTF-8. Every refusal is a
:class:`JSONRefused`: phalanb's :class:`~phalanb.errors.ParseError` naming the field (when the caller gives one) and
the offset, and a ``json.JSONDecodeError`` too, so callers keep their ``except json.JSONDecodeError``.

Fast readers (orjson, msgspec) keep the last duplicate; where the batch uses them, :func:`has_duplicates` decides
the same question from the raw bytes and what they parsed to (see its proof).

>>> loads('{"a": [1, 2]}')
{'a': [1, 2]}
>>> loads('{"content": "clear", "content": "sealed"}', field="reply")  # doctest: +ELLIPSIS
Traceback (most recent call last):
phalanb._json.JSONRefused: reply at offset 21: member 'content' appears twice; a document read ... unambiguous
>>> loads("[" * 10000 + "]" * 10000)
Traceback (most recent call last):
phalanb._json.JSONRefused: at offset 512: nesting deeper than 512 levels
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Callable

import orjson

from .errors import ParseError

__all__ = ["MAX_DEPTH", "JSONRefused", "has_duplicates", "loads", "loads_signed", "MAX_DOCUMENT_BYTES"]

#: No real document nests beyond ~10 levels; 512 stays far below the C stack's limit.
MAX_DEPTH = 512


class JSONRefused(json.JSONDecodeError, ParseError):
    """A document :func:`loads` refuses: ``msg`` says why, ``pos`` (= ``offset``) where, ``field`` what it was."""

    def __init__(self, msg: str, doc: str, pos: int, *, field: str | None = None):
        json.JSONDecodeError.__init__(self, msg, doc, pos)
        self.field, self.offset, self.reason = field, pos, msg
        self.args = (f"{field + ' ' if field else ''}at offset {pos}: {msg}",)

    def __reduce__(self) -> Any:  # picklable (batch workers send errors back)
        return _rebuild, (self.msg, self.pos, self.field)


def _rebuild(msg: str, pos: int, field: str | None) -> JSONRefused:
    return JSONRefused(msg, "", pos, field=field)


# A JSON string (skipped whole, so brackets inside strings do not count; an unterminated one runs to the end, so
# the scan stays linear) or one bracket.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.S)
# A surrogate escape (\uD800-\uDFFF); whether it is one of a pair is decided on the parsed strings.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE = re.compile("[\ud800-\udfff]")


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


class _Duplicate(Exception):
    def __init__(self, key: str):
        self.key = key


class _NonFinite(Exception):
    def __init__(self, text: str):
        self.text = text


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Duplicate(key)
            seen.add(key)
    return d


def _constant(name: str) -> Any:
    raise _NonFinite(name)


def _finite(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse_float(text: str) -> Any:
        value = parse(text)
        if isinstance(value, float) and not math.isfinite(value):
            raise _NonFinite(text)
        return value
    return parse_float


_float = _finite(float)


def _member_offset(text: str, key: str) -> int:
    """Where the second ``key`` member starts (its name as written, or as json writes it), else 0."""
    spellings = {json.dumps(key), json.dumps(key, ensure_ascii=False)}
    starts = sorted(m.start() for s in spellings for m in re.finditer(re.escape(s) + r"\s*:", text))
    return starts[1] if len(starts) > 1 else 0


# A string (skipped whole) or a number-like token outside strings.
_STRING_OR_NUMBER = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|(-?Infinity|NaN|-?[0-9][0-9.eE+-]*)')
_MEMBER_BEFORE = re.compile(r'"((?:[^"\\]|\\.){1,80})"\s*:\s*$')


def _number_offset(text: str, token: str) -> int:
    """Where the number ``token`` is written outside strings, else 0."""
    for m in _STRING_OR_NUMBER.finditer(text):
        if m.group(1) == token:
            return m.start()
    return 0


def _member_before(text: str, at: int) -> str:
    """``"member 'name': "`` when the value at ``at`` is a member's, else ''."""
    m = _MEMBER_BEFORE.search(text, max(0, at - 120), at)
    return f"member {m.group(1)!r}: " if m else ""


def _lone_surrogate(value: Any) -> str | None:
    """The first string (member name or value) of ``value`` holding a lone surrogate, or None."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if _LONE.search(v):
                return v
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
    return None


def loads(data: str | bytes | bytearray, *, field: str | None = None,
          parse_float: Callable[[str], Any] | None = None, parse_int: Callable[[str], Any] | None = None) -> Any:
    """Read ``data`` under phalanb's one rule; every refusal is a :class:`JSONRefused` naming ``field`` and the
    offset. ``parse_float`` / ``parse_int`` as for ``json.loads`` (a float they give must still be finite)."""
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONRefused(f"not UTF-8 ({exc.reason})", "", exc.start, field=field) from None
    if not isinstance(data, str):
        raise TypeError(f"the JSON object must be str or bytes, not {type(data).__name__}")
    at = _too_deep(data)
    if at is not None:
        raise JSONRefused(f"nesting deeper than {MAX_DEPTH} levels", data, at, field=field)
    try:
        value = json.loads(data, object_pairs_hook=_object, parse_constant=_constant, parse_int=parse_int,
                           parse_float=_float if parse_float is None else _finite(parse_float))
    except JSONRefused:
        raise
    except json.JSONDecodeError as exc:
        raise JSONRefused(exc.msg, data, exc.pos, field=field) from None
    except _Duplicate as exc:
        raise JSONRefused(f"member {exc.key!r} appears twice; a document read for verification must be "
                          "unambiguous", data, _member_offset(data, exc.key), field=field) from None
    except _NonFinite as exc:
        at = _number_offset(data, exc.text)
        raise JSONRefused(f"{_member_before(data, at)}the number {exc.text} is not finite (NaN and Infinity are not "
                          "JSON numbers)", data, at, field=field) from None
    except (ValueError, OverflowError, RecursionError) as exc:  # e.g. an integer of more than 4300 digits
        raise JSONRefused(str(exc), data, 0, field=field) from None
    if _SURROGATE_ESCAPE.search(data) or _LONE.search(data):
        lone = _lone_surrogate(value)
        if lone is not None:
            m = _SURROGATE_ESCAPE.search(data)
            raise JSONRefused(f"the string {lone[:40]!r} holds a lone UTF-16 surrogate, which has no UTF-8 form",
                              data, m.start() if m else 0, field=field)
    return value


def has_duplicates(raw: bytes | str, value: Any, *, written: bytes | None = None) -> bool | None:
    """Whether the JSON text ``raw`` holds a duplicate member, given ``value``, what a reader that keeps the last
    duplicate (orjson, msgspec, ``json.loads``) parsed it to; None when this cannot tell (``raw`` holds a backslash
    and is not ``written`` itself).

    ``written``: ``value`` as a writer wrote it that writes each member ``value`` holds once and nothing else — a
    msgspec Struct whose absent fields are ``UNSET``, encoded by msgspec; by default ``orjson.dumps(value)``.

    Why it is exact. First, ``raw == written``: a writer never writes two members of one object under one name
    (a dict's keys, a Struct's fields are distinct, and distinct names are written distinctly), so ``raw`` then has
    no duplicate — the usual case for a document a compact writer wrote in the same member order, decided by one
    comparison. Otherwise, by counting colons: without a backslash every ``"`` in ``raw`` opens or closes a string,
    and each string's bytes are its parsed text in UTF-8. A colon outside strings separates a member name from its
    value, one per member written, so ``raw.count(b":")`` = (members written) + (colons inside strings written).
    Parsing keeps one member per distinct name and drops the rest, each with its name and value strings, so
    (members kept) + (colons in the kept strings) — what ``written`` holds, as no writer escapes a colon — falls
    short of that count by at least one for every dropped member, and equals it when none was dropped."""
    if written is None:
        try:  # the same count, in C: orjson writes one colon per member kept and every colon of the kept strings
            written = orjson.dumps(value)
        except (orjson.JSONEncodeError, TypeError):  # e.g. nested beyond orjson's writer: count by walking
            written = None
    if isinstance(raw, (bytes, bytearray)):
        if written is not None and written == raw:
            return False
        if b"\\" in raw:
            return None
        return raw.count(b":") != (written.count(b":") if written is not None else _members_and_colons(value))
    if "\\" in raw:
        return None
    return raw.count(":") != (written.count(b":") if written is not None else _members_and_colons(value))


def _members_and_colons(value: Any) -> int:
    n = 0
    stack = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t is str:
            n += v.count(":")
        elif t is dict:
            n += len(v)
            for key, item in v.items():
                n += key.count(":")
                stack.append(item)
        elif t is list:
            stack.extend(v)
    return n


# -- signed documents (ACI's rule): what a signature covers must read one way only ---------------------------------

#: No ACI document comes near this (a report with a quote and an event log is ~30 KB; sessions carry evidence of
#: a few MB at most); anything larger is refused before parsing.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024


def _no_float(text: str) -> Any:
    raise _Float(text)


class _Float(Exception):
    def __init__(self, text: str):
        self.text = text


def loads_signed(data: str | bytes, *, what: str = "document", max_bytes: int = MAX_DOCUMENT_BYTES) -> Any:
    """Parse a signed (ACI) document strictly: at most ``max_bytes``, UTF-8, and :func:`loads`' rule (duplicate
    members, lone surrogates, NaN/Infinity, excessive depth refused), plus integers only. Every refusal is a
    :class:`ParseError` naming ``what`` and the offset."""
    size = len(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    if size > max_bytes:
        raise ParseError(f"{size} bytes is more than the {max_bytes} an ACI {what} may have", field=what)
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    except UnicodeDecodeError as exc:
        raise ParseError(f"not UTF-8 ({exc.reason})", field=what, offset=exc.start) from None
    try:
        return loads(text, field=what, parse_float=_no_float)
    except _Float as exc:
        raise ParseError(f"number {exc.text} is not an integer; ACI documents carry integers only",
                         field=what) from None
    except JSONRefused as exc:
        raise ParseError(f"not JSON phalanb reads ({exc.msg})", field=what, offset=exc.pos) from None
