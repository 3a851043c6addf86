"""The window-probe panel: live redraws while the probe runs in the background, and a Stop that stops it."""

import time

from phalanb.widgets import WindowProbePanel


def test_panel_measures_a_short_window_in_the_background(fresh_sim, client_for):
    sim = fresh_sim(signature_ttl=1.5)
    panel = WindowProbePanel(client_for(sim), horizon=6, min_interval=0.25, min_redraw=0.0)
    panel.start_button.click()
    assert panel.state == "running" and panel.stop_button.disabled is False
    result = panel.wait(timeout=60)
    assert panel.state == "expired" and result.lower_s < 1.5 <= result.upper_s
    assert panel.probes == len(result.probes) > 2
    assert bytes(panel.plot.value).startswith(b"\x89PNG")
    assert panel.start_button.disabled is False and panel.stop_button.disabled is True


def test_stop_ends_a_long_probe_promptly(fresh_sim, client_for):
    sim = fresh_sim(signature_ttl=600)
    panel = WindowProbePanel(client_for(sim), horizon=600, min_interval=0.2, schedule="grid", min_redraw=0.0)
    panel.start()
    deadline = time.monotonic() + 20
    while panel.probes < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert panel.probes >= 2 and panel.plot.value  # drawn live, before the end
    panel.stop_button.click()
    result = panel.wait(timeout=10)
    assert panel.state == "stopped" and result.status == "stopped" and result.upper_s is None
