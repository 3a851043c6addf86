"""A timing dashboard: run N chats (or show a run already made), the median / p90 / p99 table and the plots.

Measurement is :func:`phalanb.timing.latency.run_latency`'s and the figures are :mod:`phalanb.timing.plots`'; this module lays
them out.
"""

from __future__ import annotations

import io
from typing import Any

import ipywidgets as W
import traitlets

from ..errors import PhalanbError
from ._style import esc

__all__ = ["TimingDashboard"]


class TimingDashboard(W.VBox):
    """``TimingDashboard(run)`` for a :class:`~phalanb.timing.latency.LatencyRun`, or ``TimingDashboard(client=client)``
    with a *Run* button. ``rows`` (a trait) is the number of exchanges shown."""

    rows = traitlets.Int(0)

    def __init__(self, run: Any = None, *, client: Any = None, n: int = 10, **kwargs: Any):
        self.client = client
        self.run = None
        self.n = W.IntSlider(value=n, min=1, max=200, description="chats")
        self.stream = W.Checkbox(value=True, description="stream", indent=False)
        self.go = W.Button(description="Run", button_style="primary", icon="play",
                           disabled=client is None, tooltip="needs a client" if client is None else "")
        self.go.on_click(lambda _b: self.measure())
        self.table = W.HTML()
        self.message = W.HTML()
        self.plot = W.Image(format="png", layout=W.Layout(max_width="100%"))
        controls = [W.HBox([self.n, self.stream, self.go])] if client is not None else []
        super().__init__(controls + [self.message, self.table, self.plot], **kwargs)
        if run is not None:
            self.show(run)

    def measure(self) -> Any:
        from ..timing.latency import run_latency

        self.go.disabled = True
        self.message.value = f"<i>running {self.n.value} chats…</i>"
        try:
            run = run_latency(self.client, n=self.n.value, stream=self.stream.value, progress=False)
        except PhalanbError as exc:
            self.message.value = f"<span style='color:#cf222e'>{esc(exc)}</span>"
            return None
        finally:
            self.go.disabled = False
        self.show(run)
        return run

    def show(self, run: Any) -> None:
        from ..timing import plots

        self.run = run
        frame = run.frame if hasattr(run, "frame") else run
        self.rows = len(frame)
        summary = run.summary() if hasattr(run, "summary") else None
        if summary is None:
            from ..timing.latency import summarize

            summary = summarize(frame)
        failed = int(frame["error"].notna().sum()) if "error" in frame else 0
        self.message.value = f"{len(frame)} exchanges" + (f", {failed} failed" if failed else "")
        self.table.value = summary.to_html(float_format=lambda x: f"{x:.2f}", border=0)  # ms and tokens/s
        # A PNG in an Image widget shows the same in JupyterLab, Voila and a test (an Output widget needs a kernel).
        buf = io.BytesIO()
        plots.latency_distributions(frame).savefig(buf, format="png", dpi=90)
        self.plot.value = buf.getvalue()
