"""Byte-map explorers: pick a field, see exactly which bytes of the quote (or GPU evidence) it is.

The rows come from the parsers (:meth:`phalanb.tdx.Quote.fields`, :meth:`phalanb.gpu.SpdmEvidence.byte_map`); this
module only draws them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import ipywidgets as W
import traitlets

from ._style import esc

__all__ = ["ByteMapExplorer", "QuoteExplorer", "hex_view"]

_MARK = "background:#ffd33d;color:#000"


def hex_view(raw: bytes, start: int, end: int, *, width: int = 16, context: int = 2, max_lines: int = 24) -> str:
    """HTML hex dump of the lines around ``raw[start:end]``, with those bytes highlighted.

    Long fields are cut in the middle (``…``) so a 4 kB certificate chain stays readable.
    """
    if not 0 <= start <= end <= len(raw):
        raise ValueError(f"range {start}..{end} is outside the {len(raw)} bytes")
    first = max(0, start // width - context)
    last = min((max(end - 1, start)) // width + context, (len(raw) - 1) // width)
    lines = list(range(first, last + 1))
    if len(lines) > max_lines:
        half = max_lines // 2
        lines = lines[:half] + [-1] + lines[-half:]
    out = []
    for ln in lines:
        if ln < 0:
            out.append("          …")
            continue
        base = ln * width
        cells, text = [], []
        for i in range(base, min(base + width, len(raw))):
            b = raw[i]
            ch = chr(b) if 32 <= b < 127 else "."
            if start <= i < end:
                cells.append(f'<span style="{_MARK}">{b:02x}</span>')
                text.append(f'<span style="{_MARK}">{esc(ch)}</span>')
            else:
                cells.append(f"{b:02x}")
                text.append(esc(ch))
        pad = "   " * (width - len(cells))
        out.append(f"{base:08x}  {' '.join(cells)}{pad}  {''.join(text)}")
    return ('<pre style="font-family:monospace;font-size:12px;line-height:1.35;margin:0">' + "\n".join(out)
            + "</pre>")


def _rows(rows: Iterable[Sequence[Any]]) -> list[tuple[str, int, int, str, Any]]:
    out = []
    for r in rows:
        name, offset, size = r[0], int(r[1]), int(r[2])
        value = r[3] if len(r) > 4 else None
        meaning = r[4] if len(r) > 4 else (r[3] if len(r) == 4 else "")
        out.append((str(name), offset, size, str(meaning or ""), value))
    return out


class ByteMapExplorer(W.VBox):
    """``ByteMapExplorer(raw, rows)``: ``rows`` are ``(name, offset, size[, value, meaning])`` tuples.

    ``field`` (a trait) is the selected field's name; ``highlight`` is its ``(offset, end)``.
    """

    field = traitlets.Unicode("")
    highlight = traitlets.Tuple((0, 0))

    def __init__(self, raw: bytes, rows: Iterable[Sequence[Any]], *, title: str = "", **kwargs: Any):
        self.raw = bytes(raw)
        self.rows = _rows(rows)
        if not self.rows:
            raise ValueError("a byte map needs at least one field")
        self._by_name = {r[0]: r for r in self.rows}
        self.picker = W.Dropdown(options=[(f"{o:>5}  {n}  ({s} B)", n) for n, o, s, _m, _v in self.rows],
                                 description="Field", layout=W.Layout(width="min(100%, 520px)"))
        self.about = W.HTML()
        self.hex = W.HTML()
        self.picker.observe(lambda ch: self.select(ch["new"]), names="value")
        head = [W.HTML(f"<b>{esc(title)}</b> ({len(self.raw)} bytes)")] if title else []
        super().__init__(head + [self.picker, self.about, self.hex], **kwargs)
        self.select(self.rows[0][0])

    def select(self, name: str) -> None:
        n, offset, size, meaning, value = self._by_name[name]
        if self.picker.value != name:
            self.picker.value = name  # calls back into select once, with the same name
            return
        self.field = n
        self.highlight = (offset, offset + size)
        shown = ""
        if value is not None:
            text = value.hex() if isinstance(value, (bytes, bytearray)) else str(value)
            shown = f"<br>value: <code>{esc(text[:160])}{'…' if len(text) > 160 else ''}</code>"
        self.about.value = (f"<b>{esc(n)}</b> — bytes {offset}..{offset + size} ({size} B)"
                            + (f": {esc(meaning)}" if meaning else "") + shown)
        self.hex.value = hex_view(self.raw, offset, offset + size)


class QuoteExplorer(ByteMapExplorer):
    """``QuoteExplorer(quote)`` for a parsed :class:`phalanb.tdx.Quote` (its ``fields()`` byte map)."""

    def __init__(self, quote: Any, **kwargs: Any):
        kwargs.setdefault("title", f"TDX quote v{quote.version}")
        super().__init__(quote.raw, list(quote.fields()), **kwargs)
