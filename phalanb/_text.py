"""Plain text for tables: status colours as ANSI codes and word wrapping that keeps hashes whole.

No terminal here (that is :mod:`phalanb._term`): the verdict's table uses these with plain booleans and numbers,
and the terminal module asks the TTY which ones to pass.

>>> paint("pass", "green", enabled=False)
'pass'
"""

from __future__ import annotations

import textwrap

__all__ = ["paint", "wrap", "STATUS_COLORS"]

_RESET = "\033[0m"
_CODES = {"green": "32", "red": "31", "yellow": "33", "grey": "90", "bold": "1"}

#: The colour of each check status: pass green, fail red, warning yellow, skipped grey.
STATUS_COLORS = {"pass": "green", "fail": "red", "warning": "yellow", "skipped": "grey",
                 "verified": "green", "failed": "red", "incomplete": "yellow"}


def paint(text: str, color: str | None, *, enabled: bool = True) -> str:
    """``text`` in ``color`` (a name of :data:`STATUS_COLORS`' values or ``"bold"``) when ``enabled``."""
    if not enabled or not color or color not in _CODES:
        return text
    return f"\033[{_CODES[color]}m{text}{_RESET}"


def wrap(text: str, width: int, *, indent: int = 0) -> list[str]:
    """``text`` cut at spaces into lines of at most ``width`` characters; lines after the first start with
    ``indent`` spaces (the first line's indent is the caller's). Words longer than a line (hashes, URLs) are kept
    whole rather than cut, so they can still be copied."""
    room = max(20, width - indent)
    lines = textwrap.wrap(text, width=room, break_long_words=False, break_on_hyphens=False) or [""]
    return [lines[0]] + [" " * indent + line for line in lines[1:]]
