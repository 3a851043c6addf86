"""What the terminal can show: colour only on a TTY (never when piped, never with ``NO_COLOR``), and its width.

The CLI asks here once and passes plain booleans and numbers down (``Verdict.table(color=…, width=…)``), so the
formatting code stays testable without a terminal.

>>> use_color(io.StringIO())        # piped, or a file: plain text
False
"""

from __future__ import annotations

import io  # noqa: F401  (the doctest above)
import os
import re
import shutil
import sys
import textwrap
from typing import TYPE_CHECKING, Mapping, TextIO

if TYPE_CHECKING:  # pragma: no cover
    from .verdict import Verdict

__all__ = ["use_color", "width", "paint", "wrap", "verdict_table", "plain_help", "STATUS_COLORS"]

_RESET = "\033[0m"
_CODES = {"green": "32", "red": "31", "yellow": "33", "grey": "90", "bold": "1"}

#: The colour of each check status: pass green, fail red, warning yellow, skipped grey.
STATUS_COLORS = {"pass": "green", "fail": "red", "warning": "yellow", "skipped": "grey",
                 "verified": "green", "failed": "red", "incomplete": "yellow"}


def use_color(stream: TextIO | None, *, environ: Mapping[str, str] | None = None) -> bool:
    """True when ``stream`` is a terminal and the user did not opt out: ``NO_COLOR`` set to anything non-empty
    (https://no-color.org) or ``TERM=dumb`` turn colour off."""
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR") or env.get("TERM") == "dumb":
        return False
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def width(stream: TextIO | None = None, *, default: int = 100, minimum: int = 60) -> int:
    """Columns to format for: the terminal's width on a TTY (``COLUMNS`` wins, as in the shell), else
    ``default``; never less than ``minimum`` so a narrow window still gets readable lines."""
    try:
        tty = bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        tty = False
    cols = shutil.get_terminal_size((default, 24)).columns if tty else default
    return max(minimum, cols)


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


def verdict_table(verdict: "Verdict", stream: TextIO | None = None) -> str:
    """``verdict.table()`` as the CLI prints it to ``stream`` (default stdout): coloured and wrapped to the window
    on a terminal; plain and unwrapped when piped or redirected, so every reason stays on one greppable line."""
    stream = sys.stdout if stream is None else stream
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError):
        tty = False
    return verdict.table(color=use_color(stream), width=width(stream) if tty else None)


_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def plain_help(doc: str | None) -> str:
    """A module docstring as ``--help`` text: reST roles (``:class:`X```) and literals (````x````) become
    plain words, since a terminal prints markup verbatim.

    >>> plain_help("``phalanb gpu``: see :class:`~phalanb.gpu.GpuPayload`")
    'phalanb gpu: see phalanb.gpu.GpuPayload'
    """
    return _LITERAL.sub(r"\1", _ROLE.sub(r"\1", doc or ""))
