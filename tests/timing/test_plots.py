"""Plots (issue 6): each figure renders headless and carries the data it claims to show."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from phalanb.timing import plots
from phalanb.errors import InputError
from phalanb.wire.exchange import Timings
from phalanb.timing.latency import run_latency
from phalanb.timing.window import Probe, WindowResult


@pytest.fixture(scope="module")
def runs(sim):
    """Two small runs against the session simulator: streamed and not."""
    from phalanb.wire.client import Client
    from tests.conftest import TEST_API_KEY

    with Client(base_url=sim.base_url, model=sim.model, api_key=TEST_API_KEY) as client:
        stream = run_latency(client, n=6, max_tokens=6, progress=False, label="stream")
        json_ = run_latency(client, n=4, max_tokens=6, stream=False, progress=False, label="json")
    return stream, json_


def _renders(fig: Figure, tmp_path, name: str) -> None:
    assert isinstance(fig, Figure)
    path = tmp_path / f"{name}.png"
    fig.savefig(path)  # Agg, no display: pyplot is never imported by phalanb.timing.plots
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _vlines(ax) -> list[float]:
    return [line.get_xdata()[0] for line in ax.lines if len(set(line.get_xdata())) == 1]


def test_figures_are_built_without_pyplot_or_a_display(tmp_path):
    # A fresh interpreter with no display: drawing and saving must neither need one nor import pyplot.
    code = ("import sys, pandas as pd; from phalanb.timing import plots; "
            "fig = plots.tokens_per_second(pd.DataFrame({'run': [0, 1], 'tokens_per_s': [49.0, 51.0]})); "
            f"plots.save(fig, {str(tmp_path / 'headless.png')!r}); "
            "print('pyplot' if 'matplotlib.pyplot' in sys.modules else 'no pyplot')")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MPLBACKEND", "WAYLAND_DISPLAY")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "no pyplot" and (tmp_path / "headless.png").read_bytes()[:4] == b"\x89PNG"


def test_latency_distributions_show_ttft_and_total_with_medians(runs, tmp_path):
    stream, _ = runs
    fig = plots.latency_distributions(stream, bins=5)
    _renders(fig, tmp_path, "latency")
    assert len(fig.axes) == 2
    for ax, column in zip(fig.axes, ("ttft_ms", "total_ms")):
        bars = [p for p in ax.patches if isinstance(p, Rectangle)]
        assert len(bars) == 5 and sum(b.get_height() for b in bars) == len(stream.frame)
        assert _vlines(ax) == [pytest.approx(stream.frame[column].median())]  # the table's ms are the plot's
        assert "median" in ax.get_legend().get_texts()[0].get_text()


def test_token_timeline_plots_each_content_chunk_at_its_arrival(runs, tmp_path):
    stream, _ = runs
    ex = stream.exchanges[0]
    fig = plots.token_timeline(ex)
    _renders(fig, tmp_path, "timeline")
    ax = fig.axes[0]
    t = ex.timings
    expected = [(ns - t.request_sent_ns) / 1e6 for ns in t.token_ns]  # ms, as the timing tables
    step = ax.lines[0]
    assert np.allclose(step.get_xdata(), expected) and list(step.get_ydata()) == list(range(1, 7))
    assert pytest.approx(t.ttft_s * 1000) in _vlines(ax) and pytest.approx(t.ttfb_s * 1000) in _vlines(ax)
    with pytest.raises(InputError, match="no content chunks"):
        plots.token_timeline(Timings())


def test_tokens_per_second_has_one_bar_per_run_and_the_median(runs, tmp_path):
    stream, _ = runs
    fig = plots.tokens_per_second(stream)
    _renders(fig, tmp_path, "rate")
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx(stream.frame["tokens_per_s"].tolist())
    horizontal = [line.get_ydata()[0] for line in ax.lines]
    assert horizontal == [pytest.approx(stream.frame["tokens_per_s"].median())]


def test_signature_availability_shows_probes_and_the_window_band(tmp_path):
    probes = [Probe(0, "a", 0.5, 0.01, 200, "ok", "exponential"), Probe(0, "a", 1.0, 0.01, 404, "missing",
              "exponential", multi_node_miss=True), Probe(0, "a", 1.5, 0.01, 200, "ok", "confirm"),
              Probe(0, "a", 6.0, 0.01, 404, "missing", "exponential"), Probe(1, "b", 4.0, 0.01, 200, "ok", "bisect"),
              Probe(1, "b", 5.0, 0.01, 404, "missing", "bisect"), Probe(1, "b", 5.5, 0.0, None, "error", "bisect")]
    result = WindowResult("expired", 4.0, 5.01, probes, chats=2)
    fig = plots.signature_availability(result)
    _renders(fig, tmp_path, "window")
    ax = fig.axes[0]
    scatters = {c.get_label(): c for c in ax.collections if isinstance(c, PathCollection)}
    assert sorted(scatters["found (200)"].get_offsets()[:, 0]) == [0.5, 1.5, 4.0]
    assert sorted(scatters["expired (404)"].get_offsets()[:, 0]) == [5.0, 6.0]
    assert list(scatters["multi-node miss (404, later 200)"].get_offsets()[:, 0]) == [1.0]
    assert list(scatters["error"].get_offsets()[:, 0]) == [5.5]
    band = [p for p in ax.patches if "window" in p.get_label()]
    span = band[0]  # a Rectangle in recent matplotlib, a Polygon in older ones
    xs = [span.get_x(), span.get_x() + span.get_width()] if isinstance(span, Rectangle) else span.get_xy()[:, 0]
    assert len(band) == 1 and min(xs) == pytest.approx(4.0) and max(xs) == pytest.approx(5.01)
    assert "4.5 ± 0.5 s" in band[0].get_label()


def test_signature_availability_without_an_expiry_marks_the_lower_bound():
    result = WindowResult("alive_at_horizon", 30.0, None, [Probe(0, "a", 30.0, 0.01, 200, "ok", "exponential")],
                          chats=1)
    ax = plots.signature_availability(result).axes[0]
    assert _vlines(ax) == [30.0] and not [p for p in ax.patches if "window" in p.get_label()]


def test_compare_runs_puts_two_settings_side_by_side(runs, tmp_path):
    stream, json_ = runs
    fig = plots.compare_runs(stream, json_, labels=("stream", "json"))
    _renders(fig, tmp_path, "compare")
    assert [ax.get_title() for ax in fig.axes] == ["ttft_ms", "total_ms", "tokens_per_s"]
    ttft_ax, _, rate_ax = fig.axes
    assert [t.get_text() for t in ttft_ax.get_xticklabels()] == ["stream", "json"]
    medians = [a.get_text() for a in ttft_ax.texts]
    assert medians == [f"{stream.frame['ttft_ms'].median():.1f}", f"{json_.frame['ttft_ms'].median():.1f}"]
    # A non-streamed reply has no decode rate: only the streamed box is drawn, in tokens/s (not ms).
    assert [t.get_text() for t in rate_ax.get_xticklabels()] == ["stream"] and rate_ax.get_ylabel() == "tokens / s"


def test_plots_refuse_what_they_cannot_draw(tmp_path):
    with pytest.raises(InputError, match="expected a latency DataFrame"):
        plots.latency_distributions([1, 2, 3])
    with pytest.raises(InputError, match="cannot save"):
        plots.save(Figure(), tmp_path / "missing-dir" / "x.png")


def test_every_figure_shows_itself_as_a_png_in_ipython_without_the_inline_backend(runs):
    # IPython's own formatter, fresh: no %matplotlib inline, no pyplot import, so no Figure printer registered.
    from IPython.core.formatters import PNGFormatter

    from phalanb.tdx import parse_quote
    from tests.conftest import FIXTURES

    stream, json_ = runs
    quote = parse_quote((FIXTURES / "tdx/dcap-qvl/tdx_quote").read_bytes())
    figures = [plots.latency_distributions(stream), plots.token_timeline(stream.exchanges[0]),
               plots.tokens_per_second(stream), plots.compare_runs(stream, json_), plots.quote_byte_map(quote)]
    png = PNGFormatter()
    for fig in figures:
        data = png(fig)
        assert isinstance(data, bytes) and data[:8] == b"\x89PNG\r\n\x1a\n", type(fig).__name__


def test_quote_byte_map_labels_every_field_and_no_two_labels_overlap(tmp_path):
    from phalanb.tdx import parse_quote
    from tests.conftest import FIXTURES

    quote = parse_quote((FIXTURES / "tdx/dcap-qvl/tdx_quote").read_bytes())
    fig = plots.quote_byte_map(quote)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)  # lay out (constrained) as when shown, then measure each label
    top, body, sig = fig.axes
    body_labels = [t.get_text() for t in body.texts if t.get_text()]  # (leader lines are text-less)
    assert body_labels == [f.name for f in quote.fields() if 48 <= f.offset < 632]  # every TD report field
    assert "report_data" in body_labels and "qe_report (fields)" in [t.get_text() for t in sig.texts]
    assert [t.get_text().split()[0] for t in top.texts if t.get_text()] == ["header", "TD", "signature", "trailing"]
    for ax in fig.axes:
        boxes = [t.get_window_extent(renderer) for t in ax.texts if t.get_text()]
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert not a.overlaps(b), f"labels overlap in {ax.get_xlabel()!r}"
