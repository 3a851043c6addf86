"""Latency runs (issue 6): exact timing columns, recovered simulator settings, summaries, failures as rows."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pandas as pd
import pytest

from phalanb.cli import main
from phalanb.errors import InputError
from phalanb.wire.exchange import Timings
from phalanb.policy import Policy
from phalanb.sim.generator import TextGenerator
from phalanb.timing.latency import SUMMARY_METRICS, exchange_row, percentile, run_latency, summarize


def test_ttfb_plus_inter_chunk_gaps_equals_total_exactly(sim, client_for):
    run = run_latency(client_for(sim), n=6, concurrency=2, max_tokens=8, progress=False)
    f = run.frame
    assert len(f) == 6 and f["error"].isna().all()
    # Integers: exact, not approximately.
    assert (f["ttfb_ns"] + f["chunk_gap_sum_ns"] == f["total_ns"]).all()
    for ex in run.exchanges:
        t = ex.timings
        assert t.ttfb_ns + sum(t.chunk_gaps_ns) == t.last_byte_total_ns
        assert t.last_byte_ns == t.chunks[-1][0] and t.first_byte_ns == t.chunks[0][0]
        assert t.total_s >= t.last_byte_s  # done includes closing and parsing after the last byte
    # The millisecond columns are the same numbers, rounded to the microsecond.
    assert np.allclose(f["ttfb_ms"] + f["chunk_gap_sum_ns"] / 1e6, f["total_ms"], rtol=0, atol=2e-3)


def test_last_byte_survives_a_round_trip_and_old_records_get_it_from_the_chunks():
    t = Timings(request_sent_ns=100, first_byte_ns=150, last_byte_ns=400, done_ns=420,
                chunks=[(150, 10), (300, 5), (400, 7)], token_ns=[300, 400])
    again = Timings.from_dict(t.to_dict())
    assert again == t
    legacy = t.to_dict()
    del legacy["last_byte_ns"]
    assert Timings.from_dict(legacy).last_byte_ns == 400
    assert t.ttfb_ns + sum(t.chunk_gaps_ns) == t.last_byte_total_ns == 300


def test_measured_ttft_and_tokens_per_second_recover_the_configured_200ms_and_50_per_s(fresh_sim, client_for):
    cfg = dict(seed=11, ttft_ms=200.0, tokens_per_second=50.0, ttft_jitter=0.15, token_jitter=0.2,
               ttft_distribution="lognormal")
    sim = fresh_sim(**cfg)
    run = run_latency(client_for(sim), n=16, concurrency=4, max_tokens=16, warmup=1, progress=False)
    f = run.frame
    assert f["error"].isna().all()
    ttft, rate = f["ttft_ms"].median(), f["tokens_per_s"].median()
    # The bounds: medians within 10% of what was configured.
    assert abs(ttft - 200) <= 20, f"median TTFT {ttft:.1f} ms vs 200 ms configured"
    assert abs(rate - 50.0) <= 5.0, f"median {rate:.1f} tokens/s vs 50 configured"
    assert (f["tokens_source"] == "usage").all() and (f["output_tokens"] == 16).all()


def test_the_latency_model_keeps_median_ttft_and_mean_token_gap():
    for dist in ("uniform", "normal", "lognormal"):
        g = TextGenerator(5, ttft_ms=200, tokens_per_second=50, ttft_jitter=0.3, token_jitter=0.3,
                          ttft_distribution=dist, token_distribution=dist)
        draws = [g.delays(21) for _ in range(400)]
        assert statistics.median(d[0] for d in draws) == pytest.approx(0.2, rel=0.05), dist
        gaps = [x for d in draws for x in d[1:]]
        assert statistics.fmean(gaps) == pytest.approx(0.02, rel=0.03), dist
        assert statistics.pstdev(gaps) > 0.002  # jitter really spreads them
    assert TextGenerator(1, ttft_ms=0, tokens_per_second=0).delays(3) == [0.0, 0.0, 0.0]


def test_summary_reports_median_p90_p99_per_metric(sim, client_for):
    run = run_latency(client_for(sim), n=5, max_tokens=4, progress=False, attestation=True)
    s = run.summary()
    assert list(s.columns) == ["count", "mean", "median", "p90", "p99", "min", "max"]
    assert {"ttfb_ms", "ttft_ms", "total_ms", "tokens_per_s", "signature_ms", "attestation_ms"} <= set(s.index)
    assert set(s.index) <= set(SUMMARY_METRICS)
    assert s.loc["ttft_ms", "median"] == pytest.approx(run.frame["ttft_ms"].median(), abs=0.005)
    assert s.loc["total_ms", "p99"] == pytest.approx(np.percentile(run.frame["total_ms"], 99), abs=0.005)
    assert (s["min"] <= s["median"]).all() and (s["median"] <= s["p90"]).all() and (s["p90"] <= s["p99"]).all()
    assert (run.frame["signature_status"] == 200).all() and (run.frame["attestation_ms"] > 0).all()


def test_percentile_matches_numpy():
    xs = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6]
    for q in (0, 10, 50, 90, 99, 100):
        assert percentile(xs, q) == pytest.approx(np.percentile(xs, q))
    assert math.isnan(percentile([], 50))


def test_output_tokens_come_from_usage_else_from_counted_chunks(sim, client_for):
    client = client_for(sim)
    with_usage = run_latency(client, n=2, max_tokens=5, warmup=0, progress=False).frame
    counted = run_latency(client, n=2, max_tokens=5, warmup=0, include_usage=False, progress=False).frame
    assert (with_usage["tokens_source"] == "usage").all() and (with_usage["output_tokens"] == 5).all()
    assert (counted["tokens_source"] == "chunks").all()
    assert (counted["output_tokens"] == counted["n_content_chunks"]).all() and (counted["output_tokens"] == 5).all()


def test_non_streamed_replies_have_no_decode_rate_but_an_end_to_end_one(sim, client_for):
    f = run_latency(client_for(sim), n=2, stream=False, max_tokens=3, warmup=0, progress=False).frame
    assert not f["stream"].any() and f["tokens_per_s"].isna().all()
    assert (f["e2e_tokens_per_s"] > 0).all() and (f["ttft_ms"] == f["ttfb_ms"]).all()
    assert (f["ttfb_ns"] + f["chunk_gap_sum_ns"] == f["total_ns"]).all()


def test_warmup_chats_are_not_recorded_and_every_run_is(fresh_sim, client_for):
    sim = fresh_sim()
    run = run_latency(client_for(sim), n=5, warmup=2, concurrency=3, max_tokens=2, progress=False)
    assert list(run.frame["run"]) == [0, 1, 2, 3, 4] and len(run.exchanges) == 5
    assert len(sim.state.cache) == 7  # the service saw the two warm-ups, the frame does not


def test_each_thread_can_have_its_own_client_and_they_are_closed(sim, client_for):
    made = []

    def factory():
        made.append(client_for(sim))
        return made[-1]

    run = run_latency(client_for(sim), n=6, concurrency=3, warmup=0, max_tokens=2, progress=False,
                      client_factory=factory)
    assert run.frame["error"].isna().all() and 1 <= len(made) <= 3
    assert all(c._http.is_closed for c in made)


def test_verdict_is_recorded_when_verification_is_on(sim, client_for):
    f = run_latency(client_for(sim), n=2, max_tokens=3, attestation=True, verify=True,
                    policy=Policy(trust="simulated"), progress=False).frame
    assert set(f["verdict"]) <= {"verified", "failed", "incomplete"} and f["verdict"].notna().all()
    assert (f["verify_ms"] > 0).all()


def test_a_failed_chat_is_a_row_with_its_error(fresh_sim, client_for):
    sim = fresh_sim(faults={"chat_500"})
    run = run_latency(client_for(sim), n=3, warmup=1, progress=False)
    f = run.frame
    assert len(f) == 3 and f["error"].str.contains("HTTP 500").all() and (f["status"] == 500).all()
    assert run.summary().empty and len(run.ok) == 0


def test_frames_write_to_csv_and_back(sim, client_for, tmp_path):
    run = run_latency(client_for(sim), n=3, max_tokens=3, progress=False)
    back = pd.read_csv(run.to_csv(tmp_path / "latency.csv"))
    assert list(back.columns) == list(run.frame.columns)
    assert (back["ttfb_ns"] + back["chunk_gap_sum_ns"] == back["total_ns"]).all()
    # Every cell is a scalar: nothing that CSV or Parquet would mangle.
    assert not any(isinstance(v, (list, dict, tuple)) for v in run.frame.to_numpy().ravel())


def test_grouped_summary_compares_two_settings(sim, client_for):
    client = client_for(sim)
    a = run_latency(client, n=3, max_tokens=3, label="stream", progress=False).frame
    b = run_latency(client, n=3, max_tokens=3, stream=False, label="json", progress=False).frame
    s = summarize(pd.concat([a, b]), by="label")
    assert {"stream", "json"} == set(s.index.get_level_values("label"))
    assert s.loc[("stream", "ttft_ms"), "count"] == 3


def test_progress_bar_says_what_it_does_not_where_and_can_be_switched_off(sim, client_for, capsys):
    client = client_for(sim)
    run_latency(client, n=2, max_tokens=2, progress=True, label=client.base_url)
    err = capsys.readouterr().err
    assert "timing 2 chats" in err and "http" not in err  # the label (here a URL) stays in the frame
    run_latency(client, n=2, max_tokens=2, progress=False)
    assert "timing" not in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, words", [
    ({"n": 0}, "n must be"), ({"concurrency": 0}, "concurrency"), ({"warmup": -1}, "warmup"),
    ({"prompts": []}, "prompts"), ({"verify": True}, "needs signature=True and attestation=True"),
    ({"verify": True, "attestation": True}, "needs a policy"),
])
def test_bad_arguments_say_what_to_change(sim, client_for, kwargs, words):
    with pytest.raises(InputError, match=words):
        run_latency(client_for(sim), progress=False, **kwargs)
    with pytest.raises(InputError, match="no such column"):
        summarize(pd.DataFrame({"a": [1]}), by="label")


def test_bench_latency_cli_writes_csv_and_plot(sim, api_key, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PHALANB_API_KEY", api_key)
    csv, png = tmp_path / "lat.csv", tmp_path / "lat.png"
    rc = main(["bench-latency", "--base-url", sim.base_url, "--n", "3", "--max-tokens", "3", "--no-progress",
               "--csv", str(csv), "--plot", str(png)])
    out = capsys.readouterr()
    assert rc == 0 and "median" in out.out and "ttft_ms" in out.out
    assert len(pd.read_csv(csv)) == 3 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert api_key not in out.out + out.err


def test_exchange_row_needs_no_network(sim, client_for):
    ex = client_for(sim).chat("offline row", max_tokens=4)
    row = exchange_row(ex)
    assert row["chat_id"] == ex.chat_id and row["n_content_chunks"] == 4 and row["tokens_source"] == "chunks"


@pytest.mark.parametrize("n", [1, 2, 3, 7, 24, 100])
def test_simulated_replies_are_whole_sentences_of_exactly_the_asked_token_count(n):
    g = TextGenerator(2026, ttft_ms=0, tokens_per_second=0)
    tokens = g.tokens("What does a quote prove?", n)
    text = "".join(tokens)
    assert len(tokens) == n  # one token per word: the usage count stays exact
    assert tokens == g.tokens("What does a quote prove?", n)  # deterministic for a seed and prompt
    assert text[0].isupper() and text.endswith(".")
    for sentence in text.split(". "):
        assert sentence[0].isupper(), text
