"""Times that come from outside (a bundle's ``verified_at``, ``--at``, a library caller's ``at``) are checked once,
here, before any clock comparison: NaN compares false with everything (a certificate "valid" at NaN), ±inf and
years past 9999 crash ``datetime``, and a negative time is no moment any evidence was made.

>>> parse_time("1782698794", field="--at")
1782698794.0
>>> parse_time(float("nan"), field="verified_at")                          # doctest: +ELLIPSIS
Traceback (most recent call last):
...
phalanb.errors.ParseError: verified_at: ...
"""

from __future__ import annotations

import math
import time
from typing import Any

from .errors import ParseError

__all__ = ["MAX_TIME", "parse_time", "parse_optional_time", "at_argument"]

#: 9999-12-31T23:59:59Z, the last second ``datetime`` (and X.509's GeneralizedTime) can hold.
MAX_TIME = 253402300799.0


def parse_time(value: Any, *, field: str, allow_now: bool = False) -> float:
    """Unix seconds from a number or numeric text; ``"now"`` too when ``allow_now``. Raises :class:`ParseError`
    naming ``field`` for anything else: booleans, NaN, ±inf, negative, or after the year 9999."""
    if allow_now and isinstance(value, str) and value.strip().lower() == "now":
        return time.time()
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ParseError(f"a time is Unix seconds (a number), not {type(value).__name__}", field=field)
    try:
        seconds = float(value)
    except (ValueError, OverflowError):
        hint = ' or "now"' if allow_now else ""
        raise ParseError(f"{str(value)[:40]!r} is not Unix seconds; give a number such as 1782698794{hint}",
                         field=field) from None
    if not math.isfinite(seconds):
        raise ParseError(f"{str(value)[:40]} is not a finite time: give Unix seconds such as 1782698794",
                         field=field)
    if seconds < 0:
        raise ParseError(f"{seconds:.0f} is before 1970: no evidence was made then", field=field)
    if seconds > MAX_TIME:
        raise ParseError(f"{seconds:.4g} is after the year 9999 (the last second certificates can name)",
                         field=field)
    return seconds


def parse_optional_time(value: Any, *, field: str, allow_now: bool = False) -> float | None:
    """:func:`parse_time`, passing None through (None means "now" to the verifiers)."""
    return None if value is None else parse_time(value, field=field, allow_now=allow_now)


def at_argument(text: str) -> float:
    """argparse ``type=`` for ``--at``: Unix seconds or ``now``; a bad value is a usage error (exit 2)."""
    import argparse

    try:
        return parse_time(text, field="--at", allow_now=True)
    except ParseError as exc:
        raise argparse.ArgumentTypeError(exc.reason) from None
