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
from typing import TYPE_CHECKING, Mapping, TextIO

from ._text import STATUS_COLORS, paint, wrap  # noqa: F401  (re-exported: the CLI's imports)

if TYPE_CHECKING:  # pragma: no cover
    from .verdict import Verdict

__all__ = ["use_color", "width", "paint", "wrap", "verdict_table", "plain_help", "STATUS_COLORS"]

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
