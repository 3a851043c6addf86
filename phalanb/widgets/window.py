"""The signature-window probe in a notebook: Start, a live plot as probes arrive, Stop at any time.

The measurement is :class:`phalanb.timing.window.WindowProbe`'s (it runs in its own thread); this panel only starts it,
redraws :func:`phalanb.timing.plots.signature_availability` as probes come in (at most every ``min_redraw`` seconds), and
asks it to stop.
"""

from __future__ import annotations

import io
import threading
import time
from typing import Any

import ipywidgets as W
import traitlets

from ._style import esc

__all__ = ["WindowProbePanel"]


class WindowProbePanel(W.VBox):
    """``WindowProbePanel(client, horizon=1800, min_interval=1.0, ...)``; keyword arguments go to
    :meth:`phalanb.timing.window.WindowProbe.for_client`.

    Traits: ``state`` (``idle``, ``running``, ``stopping``, then the result's status, or ``error``) and
    ``probes`` (how many probes so far). ``probe`` is the running :class:`~phalanb.timing.window.WindowProbe`.
    """

    state = traitlets.Unicode("idle")
    probes = traitlets.Int(0)

    def __init__(self, client: Any, *, min_redraw: float = 1.0, **probe_kwargs: Any):
        self.client = client
        self.probe_kwargs = probe_kwargs
        self.min_redraw = min_redraw
        self.probe = None
        self._last_draw = 0.0
        self._lock = threading.Lock()
        self.start_button = W.Button(description="Start", button_style="primary", icon="play")
        self.stop_button = W.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.start_button.on_click(lambda _b: self.start())
        self.stop_button.on_click(lambda _b: self.stop())
        self.message = W.HTML("<i>not started</i>")
        self.plot = W.Image(format="png", layout=W.Layout(max_width="100%"))
        super().__init__([W.HBox([self.start_button, self.stop_button]), self.message, self.plot])

    def start(self) -> None:
        from ..timing.window import WindowProbe

        if self.probe is not None and self.probe.running:
            return
        self.probe = WindowProbe.for_client(self.client, on_probe=self._on_probe, **self.probe_kwargs)
        self.probes = 0
        self.state = "running"
        self.start_button.disabled = True
        self.stop_button.disabled = False
        self.message.value = ("<i>making a chat, then probing what the service keeps for it (an ACI gateway: its "
                              "receipt; a model server: its signature)…</i>")
        self.probe.start()
        threading.Thread(target=self._finish, name="phalanb-window-panel", daemon=True).start()

    def stop(self) -> None:
        if self.probe is not None and self.probe.running:
            self.state = "stopping"
            self.message.value = "<i>stopping after the current probe…</i>"
            self.probe.stop()

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the probe ends (for scripts and tests); returns its result."""
        if self.probe is None:
            return None
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.state in ("running", "stopping"):
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(0.05)
        return self.probe.result

    # -- drawing ---------------------------------------------------------------------------------------
    def _snapshot(self) -> Any:
        from ..timing.window import WindowResult

        p = self.probe
        return WindowResult(status="running", lower_s=p.lower_s, upper_s=p.upper_s, probes=list(p.probes),
                            chats=len(p.chats), schedule=p.schedule, horizon_s=p.horizon,
                            min_interval_s=p.min_interval)

    def _draw(self, result: Any) -> None:
        from ..timing import plots

        buf = io.BytesIO()
        plots.signature_availability(result).savefig(buf, format="png", dpi=80)
        self.plot.value = buf.getvalue()

    def _on_probe(self, _probe: Any) -> None:
        with self._lock:
            self.probes = len(self.probe.probes)
            now = time.monotonic()
            if now - self._last_draw < self.min_redraw:
                return
            self._last_draw = now
        lo, hi = self.probe.lower_s, self.probe.upper_s
        bounds = f"alive at {lo:.1f} s" if lo is not None else "not seen yet"
        if hi is not None:
            bounds += f", gone at {hi:.1f} s"
        self.message.value = f"{self.probes} probes; {esc(bounds)}"
        self._draw(self._snapshot())

    def _finish(self) -> None:
        try:
            result = self.probe.wait()
        except Exception as exc:  # shown in the panel: the probe's own errors are phalanb's, with a reason
            self.state = "error"
            self.message.value = f"<span style='color:#cf222e'>{esc(exc)}</span>"
        else:
            self.probes = len(result.probes)
            self._draw(result)
            self.message.value = esc(str(result))
            self.state = result.status
        finally:
            self.start_button.disabled = False
            self.stop_button.disabled = True
