"""Small labelled tables for notebooks: a title, every cell in full (long text wraps instead of being cut with
"..."), and one mark for "no value" whether the data said ``None`` or ``NaN``.

pandas' own HTML cuts text at ``display.max_colwidth`` (50 characters) mid-sentence and prints ``None`` beside
``NaN``; a reader of a verification notebook needs the whole reason. The frame is kept (``.frame``) for code.

>>> t = table([("tdx.quote_signature", "pass")], columns=["check", "status"], title="Checks")   # doctest: +SKIP
>>> t                                                                                          # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import pandas as pd

from ._style import esc

__all__ = ["Table", "table", "MISSING"]

#: What an empty cell shows (``None``, ``NaN`` and ``NaT`` alike).
MISSING = "—"

_CSS = ("border-collapse:collapse;font-size:0.9em;margin:0.3em 0 0.8em 0;")
_CELL = ("text-align:left;vertical-align:top;padding:0.2em 0.7em;border-bottom:1px solid #d0d7de;"
         "white-space:normal;overflow-wrap:anywhere;max-width:{max}")


class Table:
    """A titled table that shows every character of every cell (wrapped in HTML, in full in text)."""

    def __init__(self, frame: pd.DataFrame, *, title: str | None = None, max_width: str = "48em"):
        self.frame = frame
        self.title = title
        self.max_width = max_width

    def _cells(self) -> list[list[str]]:
        return [[MISSING if _missing(v) else str(v) for v in row] for row in self.frame.itertuples(index=False)]

    def _repr_html_(self) -> str:
        cell = _CELL.format(max=self.max_width)
        head = "".join(f"<th style='{cell};font-weight:600'>{esc(c)}</th>" for c in self.frame.columns)
        body = "".join("<tr>" + "".join(f"<td style='{cell}'>{esc(v)}</td>" for v in row) + "</tr>"
                       for row in self._cells())
        caption = (f"<caption style='caption-side:top;text-align:left;font-weight:600;padding:0.2em 0'>"
                   f"{esc(self.title)}</caption>") if self.title else ""
        return f"<table style='{_CSS}'>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __repr__(self) -> str:
        cols = [str(c) for c in self.frame.columns]
        rows = self._cells()
        widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]
        lines = [self.title] if self.title else []
        lines.append("  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip())
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
        return "\n".join(lines)

    def __len__(self) -> int:
        return len(self.frame)


def table(data: pd.DataFrame | Iterable[Any], columns: Sequence[str] | None = None, *, title: str | None = None,
          max_width: str = "48em") -> Table:
    """``data`` (a DataFrame, or rows as tuples or dicts) as a :class:`Table` with an optional ``title``."""
    frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(list(data), columns=columns)
    if isinstance(data, pd.DataFrame) and columns is not None:
        frame = frame[list(columns)]
    return Table(frame, title=title, max_width=max_width)


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists, arrays: a value, not missing
        return False
