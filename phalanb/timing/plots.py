"""Figures for latency runs, signature-window probes and the layout of a TDX quote. Each function returns a
matplotlib ``Figure``.

Figures are built with ``matplotlib.figure.Figure`` directly, never through ``pyplot``: nothing opens a window and
nothing depends on the global backend (Agg renders them when saved). They carry their own PNG representation, so
a notebook shows a returned or ``display``-ed figure as an image in any kernel — with or without ``MPLBACKEND``,
with or without ``%matplotlib inline``, in JupyterLab, Voila or nbconvert — never as ``<Figure size …>``. Save
one with ``fig.savefig("latency.png")``.

>>> from phalanb.timing.plots import latency_distributions                             # doctest: +SKIP
>>> fig = latency_distributions(run.frame)                                      # doctest: +SKIP
>>> fig.savefig("latency.png", dpi=120)                                         # doctest: +SKIP
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Sequence

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..errors import InputError
from ..wire.exchange import Exchange, Timings

if TYPE_CHECKING:  # pragma: no cover
    from .window import WindowResult

__all__ = ["latency_distributions", "token_timeline", "tokens_per_second", "signature_availability",
           "compare_runs", "quote_byte_map", "save", "ShownFigure"]

_OK, _MISS, _ERR, _MEDIAN = "tab:green", "tab:red", "tab:gray", "black"


class ShownFigure(Figure):
    """A ``Figure`` that IPython displays as a PNG by itself.

    IPython shows a plain ``Figure`` as an image only after the inline backend registered its formatter (which
    happens when pyplot is imported under that backend, or on ``%matplotlib inline``); before that, or under
    ``MPLBACKEND=Agg``, the reader sees ``<Figure size 800x400 with 1 Axes>``. ``_repr_png_`` removes that
    dependency. When the inline formatter is registered it takes precedence (IPython looks up type printers
    first), so a figure is never shown twice.
    """

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()


def _figure(**kw) -> ShownFigure:
    return ShownFigure(layout="constrained", **kw)


def _frame(data) -> pd.DataFrame:
    frame = getattr(data, "frame", data)  # a LatencyRun or its frame
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"expected a latency DataFrame or LatencyRun, got {type(data).__name__}")
    if "error" in frame.columns:
        frame = frame[frame["error"].isna()]
    return frame


def _values(frame: pd.DataFrame, column: str) -> list[float]:
    if column not in frame.columns:
        raise InputError(f"the frame has no column {column!r}; it needs the columns run_latency produces")
    return [float(v) for v in pd.to_numeric(frame[column], errors="coerce") if not math.isnan(v)]


def _median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def latency_distributions(data, *, bins: int = 20, title: str | None = None) -> Figure:
    """Histograms of time to first token and total time (ms), each with its median as a dashed line.

    >>> fig = latency_distributions(run)                                      # doctest: +SKIP
    """
    frame = _frame(data)
    fig = _figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    for ax, column, name in zip(axes, ("ttft_ms", "total_ms"), ("time to first token", "total time")):
        xs = _values(frame, column)
        ax.set_title(name)
        ax.set_xlabel("ms")
        ax.set_ylabel("exchanges")
        if not xs:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center")
            continue
        ax.hist(xs, bins=bins, color="tab:blue", alpha=0.75)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts of exchanges: no 1.75
        med = _median(xs)
        ax.axvline(med, color=_MEDIAN, linestyle="--", label=f"median {med:.0f} ms")
        ax.legend(loc="upper right")
    fig.suptitle(title or f"latency of {len(frame)} exchanges")
    return fig


def token_timeline(exchange: Exchange | Timings, *, title: str | None = None) -> Figure:
    """Per-token arrival of one stream: cumulative content chunks against milliseconds since the request was sent
    (the unit of the timing tables), with time to first byte and first token marked.

    >>> fig = token_timeline(run.exchanges[0])                                # doctest: +SKIP
    """
    t = exchange.timings if isinstance(exchange, Exchange) else exchange
    if not isinstance(t, Timings):
        raise InputError(f"expected an Exchange or Timings, got {type(exchange).__name__}")
    if not t.token_ns:
        raise InputError("this exchange has no content chunks to draw (an error reply, or no stamps were kept)")
    xs = [(ns - t.request_sent_ns) / 1e6 for ns in t.token_ns]
    ys = list(range(1, len(xs) + 1))
    fig = _figure(figsize=(8, 4))
    ax = fig.subplots()
    ax.step(xs, ys, where="post", color="tab:blue", label="content chunks")
    ax.plot(xs, ys, "o", color="tab:blue", markersize=3)
    if t.ttfb_s is not None:
        ax.axvline(t.ttfb_s * 1000, color=_ERR, linestyle=":", label=f"first byte {t.ttfb_s * 1000:.1f} ms")
    ax.axvline(xs[0], color=_MEDIAN, linestyle="--", label=f"first token {xs[0]:.1f} ms")
    ax.set_xlabel("ms since the request was sent")
    ax.set_ylabel("content chunks received")
    ax.legend(loc="lower right")
    chat = exchange.chat_id if isinstance(exchange, Exchange) else None
    ax.set_title(title or f"token arrival{' of ' + chat if chat else ''}")
    return fig


def tokens_per_second(data, *, column: str = "tokens_per_s", title: str | None = None) -> Figure:
    """Decode rate of each run in order (bars), with the median as a dashed line.

    >>> fig = tokens_per_second(run)                                          # doctest: +SKIP
    """
    frame = _frame(data)
    ys = pd.to_numeric(frame[column], errors="coerce") if column in frame.columns else None
    if ys is None:
        raise InputError(f"the frame has no column {column!r}")
    runs = frame["run"].tolist() if "run" in frame.columns else list(range(len(frame)))
    pairs = [(r, y) for r, y in zip(runs, ys.tolist()) if not math.isnan(y)]
    fig = _figure(figsize=(8, 4))
    ax = fig.subplots()
    if pairs:
        ax.bar([p[0] for p in pairs], [p[1] for p in pairs], color="tab:blue", alpha=0.8)
        med = _median([p[1] for p in pairs])
        ax.axhline(med, color=_MEDIAN, linestyle="--", label=f"median {med:.1f} tokens/s")
        ax.legend(loc="lower right")
    else:
        ax.text(0.5, 0.5, "no streamed runs (tokens/s needs at least two tokens)", transform=ax.transAxes,
                ha="center")
    ax.set_xlabel("run")
    ax.set_ylabel("tokens / s")
    ax.set_title(title or "tokens per second by run")
    return fig


def signature_availability(result: "WindowResult", *, title: str | None = None) -> Figure:
    """Every probe of a window measurement: signature found (1) or not (0) against seconds since the chat
    ended; the band from last success to first failure is the window estimate. Multi-node misses (a 404 then a
    200) are drawn hollow; errors grey at 0.5.

    >>> fig = signature_availability(probe.run())                            # doctest: +SKIP
    """
    fig = _figure(figsize=(9, 4))
    ax = fig.subplots()
    groups = {
        "found (200)": ([p for p in result.probes if p.outcome == "ok"], 1.0, _OK, "o"),
        "expired (404)": ([p for p in result.probes if p.outcome == "missing" and not p.multi_node_miss],
                          0.0, _MISS, "x"),
        "multi-node miss (404, later 200)": ([p for p in result.probes if p.multi_node_miss], 0.0, _MISS, "o"),
        "error": ([p for p in result.probes if p.outcome == "error"], 0.5, _ERR, "s"),
    }
    for label, (probes, y, color, marker) in groups.items():
        if not probes:
            continue
        kw = {"facecolors": "none", "edgecolors": color} if "miss" in label else {"color": color}
        ax.scatter([p.elapsed_s for p in probes], [y + 0.03 * p.chat for p in probes], marker=marker,
                   label=label, zorder=3, **kw)
    if result.lower_s is not None and result.upper_s is not None and result.upper_s > result.lower_s:
        ax.axvspan(result.lower_s, result.upper_s, color="tab:orange", alpha=0.25,
                   label=f"window {result.estimate_s:.1f} ± {result.uncertainty_s:.1f} s")
    elif result.lower_s is not None:
        ax.axvline(result.lower_s, color="tab:orange", linestyle="--", label=f"alive at {result.lower_s:.1f} s")
    ax.set_yticks([0, 0.5, 1], ["404", "error", "200"])
    ax.set_ylim(-0.25, 1.25 + 0.03 * max(0, result.chats - 1))
    ax.set_xlabel("seconds since the chat ended")
    what = getattr(result, "what", "signature")
    ax.set_title(title or f"{what} availability, {getattr(result, 'endpoint', '')} ({result.status}, "
                          f"{len(result.probes)} probes, {result.chats} chat{'s' if result.chats != 1 else ''})")
    ax.legend(loc="center left", fontsize="small")
    return fig


def compare_runs(a, b, *, labels: tuple[str, str] = ("A", "B"),
                 metrics: Sequence[str] = ("ttft_ms", "total_ms", "tokens_per_s"), title: str | None = None) -> Figure:
    """Two endpoints or two settings side by side: one panel per metric, a box for each, medians annotated.

    >>> fig = compare_runs(run_stream, run_json, labels=("stream", "no stream"))   # doctest: +SKIP
    """
    fa, fb = _frame(a), _frame(b)
    fig = _figure(figsize=(4 * len(metrics), 4))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        if "tokens_per" in metric:  # a rate, although its name ends in _s
            scale, unit = 1, "tokens / s"
        elif metric.endswith("_ms"):
            scale, unit = 1, "ms"
        elif metric.endswith("_s"):  # a frame of one's own in seconds: drawn in ms like the rest
            scale, unit = 1000, "ms"
        else:
            scale, unit = 1, ""
        data = [[v * scale for v in _values(f, metric)] for f in (fa, fb)]
        present = [(d, lab) for d, lab in zip(data, labels) if d]
        if present:
            ax.boxplot([d for d, _ in present], tick_labels=[lab for _, lab in present])
            for i, (d, _) in enumerate(present, start=1):
                ax.annotate(f"{_median(d):.1f}", (i, _median(d)), textcoords="offset points", xytext=(18, 0),
                            fontsize="small")
        else:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center")
        ax.set_title(metric)
        ax.set_ylabel(unit)
    fig.suptitle(title or f"{labels[0]} vs {labels[1]}")
    return fig


def _leader_labels(ax, spans: Sequence[tuple[str, int, int]], *, rotation: float = 90,
                   fontsize: float = 7) -> None:
    """Label each span above the bar, the labels spread evenly across the axes in byte order and joined to
    their span by a thin line, so that neighbouring small fields never print on top of each other."""
    n = len(spans)
    for i, (name, start, end) in enumerate(spans):
        x = (i + 0.5) / n
        ax.text(x, 1.25, name, transform=ax.transAxes, rotation=rotation, fontsize=fontsize, ha="center",
                va="bottom", rotation_mode="anchor" if rotation == 0 else "default", clip_on=False)
        # the leader line: an annotation without text, from the span's middle to the label
        ax.annotate("", xy=((start + end) / 2, 1.0), xycoords="data", xytext=(x, 1.24), textcoords="axes fraction",
                    annotation_clip=False, arrowprops={"arrowstyle": "-", "color": "0.55", "lw": 0.6,
                                                       "shrinkA": 0, "shrinkB": 0})


def _lane(ax, spans: Sequence[tuple[str, int, int]], start: int, end: int, colour: str, xlabel: str, *,
          rotation: float = 90) -> None:
    for i, (_name, a, b) in enumerate(spans):
        ax.broken_barh([(a, b - a)], (0, 1), color=colour, alpha=1.0 if i % 2 else 0.65, edgecolor="white")
    _leader_labels(ax, spans, rotation=rotation)
    ax.set_xlim(start, end)
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_xlabel(xlabel, fontsize=8)
    for side in ("top", "left", "right"):
        ax.spines[side].set_visible(False)


_REGION_COLOURS = {"header": "#54aeff", "TD report (body)": "#4ac26b", "signature data": "#d4a72c",
                   "trailing": "#8c959f"}


def quote_byte_map(quote, *, title: str | None = None) -> Figure:
    """Where every field of a parsed TDX quote lies: the quote's regions, then the TD report's fields, then the
    signature data's (the QE report's fields drawn as one block). Labels sit above the bars, evenly spaced and
    joined to their field, so none overlaps another however small the field.

    >>> fig = quote_byte_map(parse_quote(raw))                               # doctest: +SKIP
    """
    for attr in ("fields", "body_offset", "signed_length", "end", "raw"):
        if not hasattr(quote, attr):
            raise InputError(f"expected a parsed TDX quote (phalanb.tdx.parse_quote), got {type(quote).__name__}")
    regions = [("header", 0, quote.body_offset), ("TD report (body)", quote.body_offset, quote.signed_length),
               ("signature data", quote.signed_length, quote.end)]
    if len(quote.raw) > quote.end:
        regions.append(("trailing", quote.end, len(quote.raw)))
    rows = list(quote.fields())
    body = [(f.name, f.offset, f.end) for f in rows if quote.body_offset <= f.offset < quote.signed_length]
    grouped: dict[str, tuple[int, int]] = {}
    for f in rows:
        if quote.signed_length <= f.offset < quote.end:
            key = "qe_report (fields)" if f.name.startswith("qe_report.") else f.name
            a, b = grouped.get(key, (f.offset, f.end))
            grouped[key] = (min(a, f.offset), max(b, f.end))
    sig = [(k, a, b) for k, (a, b) in grouped.items()]

    fig = _figure(figsize=(11, 7.5))
    top, mid, low = fig.subplots(3, 1, height_ratios=[1, 1, 1])
    for name, a, b in regions:
        top.broken_barh([(a, b - a)], (0, 1), color=_REGION_COLOURS[name])
    _leader_labels(top, [(f"{n} {a}..{b}", a, b) for n, a, b in regions], rotation=0, fontsize=8)
    top.set_xlim(0, len(quote.raw))
    top.set_ylim(0, 1)
    top.set_yticks([])
    top.set_xlabel("byte offset in the quote", fontsize=8)
    _lane(mid, body, quote.body_offset, quote.signed_length, _REGION_COLOURS["TD report (body)"],
          "TD report fields (byte offsets)")
    _lane(low, sig, quote.signed_length, quote.end, _REGION_COLOURS["signature data"],
          "signature data fields (byte offsets)")
    fig.suptitle(title or f"TDX quote v{quote.version}: {len(quote.raw)} bytes; the attestation key signs bytes "
                          f"0..{quote.signed_length}")
    return fig


def save(fig: Figure, path, *, dpi: int = 120) -> None:
    """Write ``fig`` as an image (format from the suffix); a bad path is an InputError, not a traceback."""
    try:
        fig.savefig(path, dpi=dpi)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot save the figure to {path}: {exc}") from None
