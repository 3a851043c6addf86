"""A row of verification badges, one per check; click one to read what it checked and the values it used."""

from __future__ import annotations

from typing import Any

import ipywidgets as W
import traitlets

from ..verdict import Check, Verdict
from ._style import BUTTON_STYLES, COLOURS, esc, pretty

__all__ = ["VerdictBadges"]


class VerdictBadges(W.VBox):
    """``VerdictBadges(verdict)``: a summary line, one button per check, and a details pane.

    ``selected`` (a trait) is the id of the last badge clicked; ``statuses`` maps check id → status.
    """

    selected = traitlets.Unicode("", help="id of the check whose details are shown")
    statuses = traitlets.Dict(help="check id → pass / fail / skipped / warning")

    def __init__(self, verdict: Verdict | None = None, **kwargs: Any):
        self.summary = W.HTML()
        self.row = W.HBox(layout=W.Layout(flex_flow="row wrap"))
        self.details = W.HTML()
        super().__init__([self.summary, self.row, self.details], **kwargs)
        self._checks: dict[str, Check] = {}
        self.verdict: Verdict | None = None
        if verdict is not None:
            self.show(verdict)

    @property
    def buttons(self) -> dict[str, W.Button]:
        return {b.description.split(" ", 1)[1]: b for b in self.row.children}

    def show(self, verdict: Verdict | None) -> None:
        self.verdict = verdict
        self.selected = ""
        self.details.value = ""
        if verdict is None:
            self._checks = {}
            self.row.children = ()
            self.statuses = {}
            self.summary.value = ""
            return
        self._checks = {c.id: c for c in verdict}
        buttons = []
        for c in verdict:
            status = c.status.value
            b = W.Button(description=f"{COLOURS[status][2]} {c.id}", tooltip=f"{status}: {c.reason}",
                         button_style=BUTTON_STYLES[status], layout=W.Layout(width="auto", margin="2px"))
            b.on_click(self._clicked)
            buttons.append(b)
        self.row.children = tuple(buttons)
        self.statuses = {c.id: c.status.value for c in verdict}
        bg, fg, sym = COLOURS[{"verified": "pass", "failed": "fail"}.get(verdict.status, "skipped")]
        self.summary.value = (f'<div style="padding:4px 8px;background:{bg};color:{fg};border-radius:4px">'
                              f'<b>{sym} {esc(verdict.status)}</b> — {esc(verdict.summary())}</div>')

    def _clicked(self, button: W.Button) -> None:
        self.select(button.description.split(" ", 1)[1])

    def select(self, check_id: str) -> None:
        """Show the details of one check (what clicking its badge does)."""
        c = self._checks[check_id]
        self.selected = check_id
        required = "required" if c.required else "informative (does not decide the verdict)"
        evidence = (f'<pre style="white-space:pre-wrap;max-height:16em;overflow:auto">{esc(pretty(c.evidence))}'
                    "</pre>") if c.evidence else "<i>no evidence recorded</i>"
        self.details.value = (f"<b>{esc(c.id)}</b>: <b>{esc(c.status.value)}</b> ({required})<br>"
                              f"{esc(c.reason)}<br>{evidence}")
