"""The signature-window probe (issue 6, SPEC §2): scheduling on a fake clock, one real run on the simulator."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest

from phalanb.cli import main
from phalanb.errors import InputError
from phalanb.timing.window import WindowProbe, grid_probe_count, probe_window


class FakeService:
    """A signature cache on a fake clock: time passes only when the probe sleeps or a request is made."""

    def __init__(self, ttl: float, *, rtt: float = 0.002, miss_at: set[int] = frozenset(),
                 always_missing: bool = False):
        self.now = 1000.0
        self.ttl = ttl
        self.rtt = rtt
        self.born: dict[str, float] = {}
        self.sends: list[float] = []
        self.miss_at = set(miss_at)  # probe numbers answered by a node that never saw the chat
        self.always_missing = always_missing

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds

    def new_chat(self) -> str:
        self.now += 0.05  # the chat itself takes a moment
        chat_id = f"chatcmpl-{len(self.born)}"
        self.born[chat_id] = self.now
        return chat_id

    def fetch(self, chat_id: str) -> int:
        self.sends.append(self.now)
        n = len(self.sends) - 1
        self.now += self.rtt
        if self.always_missing or n in self.miss_at:
            return 404
        return 200 if self.now - self.born[chat_id] < self.ttl else 404

    def probe(self, **kw) -> WindowProbe:
        return WindowProbe(self.fetch, self.new_chat, clock=self.clock, sleep=self.sleep, **kw)


def test_exponential_then_bisection_beats_the_grid_and_brackets_the_ttl():
    svc = FakeService(ttl=5.0)
    result = svc.probe(min_interval=0.25, resolution=0.5, horizon=60).run()
    assert result.status == "expired"
    assert result.lower_s < 5.0 <= result.upper_s
    assert abs(result.estimate_s - 5.0) <= 0.5 and result.uncertainty_s <= 0.25
    assert len(result.probes) < grid_probe_count(5.0, 0.25)
    assert result.chats >= 2  # a bisection step that landed after the expiry needed a fresh chat


@pytest.mark.parametrize("ttl", [0.8, 3.3, 47.0, 1200.0])
def test_estimate_contains_the_true_window_for_any_ttl(ttl):
    result = FakeService(ttl=ttl).probe(min_interval=0.5, horizon=1800).run()
    assert result.status == "expired" and result.lower_s < ttl <= result.upper_s
    resolution = max(0.5, 0.02 * result.upper_s)
    assert result.upper_s - result.lower_s <= resolution + 0.01


@pytest.mark.parametrize("schedule", ["exponential", "grid"])
def test_never_polls_faster_than_the_minimum_interval(schedule):
    svc = FakeService(ttl=7.3, miss_at={1, 4, 9})
    svc.probe(min_interval=0.4, resolution=0.4, schedule=schedule, horizon=60).run()
    gaps = [b - a for a, b in zip(svc.sends, svc.sends[1:])]
    assert len(svc.sends) > 5 and min(gaps) >= 0.4 - 1e-9


def test_stops_at_the_horizon_and_reports_a_lower_bound():
    svc = FakeService(ttl=1200.0)
    result = svc.probe(min_interval=1.0, horizon=30).run()
    assert result.status == "alive_at_horizon" and result.estimate_s is None and result.upper_s is None
    assert max(p.elapsed_s for p in result.probes) <= 30 + 1e-9
    assert result.lower_s == pytest.approx(30, abs=0.01)
    assert "still retrievable at 30.0 s" in str(result)


def test_a_404_followed_by_a_200_is_a_multi_node_miss_not_expiry():
    svc = FakeService(ttl=5.0, miss_at={2})
    result = svc.probe(min_interval=0.25, resolution=0.5, horizon=60).run()
    miss = result.probes[2]
    assert miss.status == 404 and miss.multi_node_miss and result.probes[3].status == 200
    assert result.multi_node_misses == 1 and "multi-node" in str(result)
    assert result.status == "expired" and abs(result.estimate_s - 5.0) <= 0.5


def test_an_unconfirmed_404_at_the_start_does_not_end_the_measurement():
    svc = FakeService(ttl=5.0, miss_at={0})
    result = svc.probe(min_interval=0.25, resolution=0.5, horizon=60).run()
    assert result.probes[0].multi_node_miss and result.status == "expired"


def test_a_signature_that_never_appears_is_reported_as_such():
    result = FakeService(ttl=5.0, always_missing=True).probe(min_interval=0.5, horizon=20).run()
    assert result.status == "never_available" and result.lower_s is None and len(result.probes) == 2


def test_grid_schedule_probes_one_chat_at_fixed_steps():
    svc = FakeService(ttl=3.0)
    result = svc.probe(schedule="grid", min_interval=0.5, horizon=10).run()
    assert result.chats == 1 and result.status == "expired"
    elapsed = [p.elapsed_s for p in result.probes if p.phase == "grid"]
    assert all(b - a == pytest.approx(0.5) for a, b in zip(elapsed, elapsed[1:]))
    assert result.lower_s < 3.0 <= result.upper_s and result.upper_s - result.lower_s <= 0.5 + 0.01


def test_every_probe_is_recorded_in_a_frame():
    result = FakeService(ttl=2.0).probe(min_interval=0.25, horizon=10).run()
    frame = result.frame()
    assert len(frame) == len(result.probes)
    assert {"chat", "elapsed_s", "status", "outcome", "phase", "multi_node_miss"} <= set(frame.columns)
    assert set(frame["status"]) == {200, 404}
    # seconds on the plot's axis, round trips in ms, as the timing tables
    assert "rtt_ms" in frame.columns and frame["rtt_ms"].tolist() == [round(p.rtt_s * 1000, 3) for p in result.probes]


def test_runs_in_the_background_with_a_callback_and_stops_when_asked():
    seen: list = []
    got_three = threading.Event()

    def on_probe(p):
        seen.append(p)
        if len(seen) == 3:
            got_three.set()

    probe = WindowProbe(lambda chat_id: 200, lambda: "chatcmpl-x", min_interval=0.02, first_probe=0.02,
                        factor=1.1, horizon=600, on_probe=on_probe).start()
    assert got_three.wait(5)
    t0 = time.monotonic()
    probe.stop()
    result = probe.wait(timeout=5)
    assert time.monotonic() - t0 < 2  # the stop button acts at once, not after the next scheduled probe
    assert not probe.running and result.status == "stopped" and len(result.probes) >= 3
    assert result.lower_s is not None and seen == result.probes


@pytest.mark.parametrize("kwargs, words", [
    ({"min_interval": 0}, "min_interval"), ({"schedule": "random"}, "schedule"),
    ({"interval": 0.1, "min_interval": 1}, "shorter than min_interval"), ({"factor": 1}, "factor"),
    ({"confirm": 0}, "confirm"), ({"horizon": 0.5, "min_interval": 1}, "horizon"),
])
def test_bad_settings_say_what_to_change(kwargs, words):
    with pytest.raises(InputError, match=words):
        WindowProbe(lambda c: 200, lambda: "x", **kwargs)


def test_a_5_second_ttl_on_the_simulator_is_estimated_within_half_a_second(fresh_sim, client_for):
    sim = fresh_sim(signature_ttl=5.0)
    result = probe_window(client_for(sim), horizon=30, min_interval=0.25, resolution=0.5, first_probe=0.5)
    assert result.status == "expired", str(result)
    assert abs(result.estimate_s - 5.0) <= 0.5, str(result)
    assert len(result.probes) <= grid_probe_count(5.0, 0.25, first_probe=0.5), str(result)
    assert all(p.status in (200, 404) for p in result.probes)


def test_probe_window_cli_against_the_embedded_simulator(tmp_path, capsys):
    csv, png = tmp_path / "window.csv", tmp_path / "window.png"
    rc = main(["probe-window", "--sim-ttl", "1", "--min-interval", "0.2", "--horizon", "5",
               "--csv", str(csv), "--plot", str(png)])
    out = capsys.readouterr()
    # the embedded simulator is an ACI gateway by default: what it keeps is the receipt, and the output says so
    assert rc == 0 and "receipt window" in out.out and "probed GET /v1/aci/receipts/{id}" in out.out
    assert "probing receipts: GET /v1/aci/receipts/{id}" in out.err
    frame = pd.read_csv(csv)
    assert set(frame["status"]) == {200, 404} and png.read_bytes()[:4] == b"\x89PNG"


# -- what the service keeps today (issue 21, item 5) --------------------------------------------------------------
def test_against_an_aci_gateway_the_probe_measures_the_receipts_window(fresh_sim, client_for):
    sim = fresh_sim(protocol="aci", receipt_ttl=1.0, signature_ttl=30.0)
    result = probe_window(client_for(sim), horizon=10, min_interval=0.2, resolution=0.3, first_probe=0.4)
    assert result.what == "receipt" and result.endpoint == "GET /v1/aci/receipts/{id}"
    assert result.status == "expired" and abs(result.estimate_s - 1.0) <= 0.3, str(result)
    assert str(result).startswith("receipt window") and result.to_dict()["endpoint"] == result.endpoint


def test_against_a_model_server_the_probe_measures_the_signatures_window(fresh_sim, client_for):
    sim = fresh_sim(protocol="legacy", signature_ttl=1.0)
    result = probe_window(client_for(sim), horizon=10, min_interval=0.2, resolution=0.3, first_probe=0.4)
    assert result.what == "signature" and "probed GET /v1/signature/{chat_id}" in str(result)
    assert abs(result.estimate_s - 1.0) <= 0.3, str(result)


def test_the_aci_simulator_honours_the_signature_ttl_on_its_legacy_endpoint(fresh_sim, client_for):
    import time

    from phalanb.errors import SignatureExpiredError
    from phalanb.vllm.signatures import fetch_signature

    sim = fresh_sim(protocol="aci", receipt_ttl=60.0, signature_ttl=0.5)
    client = client_for(sim)
    ex = client.chat("Say OK.", max_tokens=1)
    fetch_signature(client, ex.chat_id)  # within its window
    time.sleep(0.7)
    with pytest.raises(SignatureExpiredError):
        fetch_signature(client, ex.chat_id)
    client.receipt(ex.receipt_id)  # the receipt is kept for its own, longer window


def test_the_plot_names_what_was_probed(fresh_sim, client_for):
    from phalanb.timing import plots

    sim = fresh_sim(protocol="aci", receipt_ttl=0.6)
    result = probe_window(client_for(sim), horizon=5, min_interval=0.2, schedule="grid")
    title = plots.signature_availability(result).axes[0].get_title()
    assert title.startswith("receipt availability, GET /v1/aci/receipts/{id}")
