"""phalanb's streaming overhead, measured: phalanb's Client vs plain httpx vs the openai SDK, same simulator, same run.

Each client streams the same chats from one embedded simulator; the clients take turns chat by chat (rotating who
goes first) so drift on a busy machine hits all of them alike. For every chat the caller-visible numbers are
taken the same way for all clients: wall time of the whole call, and time until the first piece of reply text
reached the caller. Two settings are run:

* **realistic**: 200 ms TTFT, 50 tokens/s: what a user feels (overhead is a small fraction of waiting);
* **zero-latency**: the simulator answers as fast as it can: the clients' own cost per chat dominates.

Then phalanb's latency run measures the simulator configured at 200 ms / 50 tokens/s (with jitter) and prints the
recovered median TTFT and tokens/s against the configured values.

    python benchmarks/bench_stream.py            # ~1.5 minutes on 2 cores
    python benchmarks/bench_stream.py --n 10     # quicker
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Callable

import httpx

from phalanb.wire.client import Client, default_transport
from phalanb.sim import SimConfig, Simulator
from phalanb.timing.latency import run_latency

PROMPT = "Stream me a short answer about attestation."


def _phalanb(sim: Simulator, max_tokens: int) -> tuple[Callable[[], tuple[float, float]], Callable[[], None]]:
    client = Client(base_url=sim.base_url, model=sim.model, api_key_env=False)

    def one() -> tuple[float, float]:
        first: list[float] = []
        t0 = time.perf_counter()
        client.chat(PROMPT, stream=True, max_tokens=max_tokens,
                    on_text=lambda text: first.append(time.perf_counter()) if text and not first else None)
        return time.perf_counter() - t0, first[0] - t0

    return one, client.close


def _httpx(sim: Simulator, max_tokens: int, *, nodelay: bool):
    client = httpx.Client(transport=default_transport() if nodelay else None, timeout=60)
    body = json.dumps({"model": sim.model, "messages": [{"role": "user", "content": PROMPT}],
                       "stream": True, "max_tokens": max_tokens}).encode()
    url = sim.base_url + "/chat/completions"

    def one() -> tuple[float, float]:
        # What a careful hand-written client does: stream lines, decode each event, note the first text.
        first = None
        t0 = time.perf_counter()
        with client.stream("POST", url, content=body, headers={"Content-Type": "application/json"}) as resp:
            for line in resp.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                choices = event.get("choices") or [{}]
                if first is None and (choices[0].get("delta") or {}).get("content"):
                    first = time.perf_counter()
        return time.perf_counter() - t0, first - t0

    return one, client.close


def _openai(sim: Simulator, max_tokens: int):
    from openai import OpenAI

    client = OpenAI(base_url=sim.base_url, api_key="sk-not-used-by-the-simulator", max_retries=0)

    def one() -> tuple[float, float]:
        first = None
        t0 = time.perf_counter()
        for chunk in client.chat.completions.create(model=sim.model, stream=True, max_tokens=max_tokens,
                                                    messages=[{"role": "user", "content": PROMPT}]):
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter()
        return time.perf_counter() - t0, first - t0

    return one, client.close


def compare(config: SimConfig, *, n: int, max_tokens: int, title: str) -> None:
    with Simulator(config) as sim:
        makers = {"phalanb": _phalanb(sim, max_tokens), "httpx": _httpx(sim, max_tokens, nodelay=False),
                  "httpx+nodelay": _httpx(sim, max_tokens, nodelay=True), "openai": _openai(sim, max_tokens)}
        names = list(makers)
        samples: dict[str, list[tuple[float, float]]] = {k: [] for k in names}
        for name in names:  # warm-up: connect, import lazily loaded parts
            makers[name][0]()
        for i in range(n):
            order = names[i % len(names):] + names[:i % len(names)]
            for name in order:
                samples[name].append(makers[name][0]())
        for _, close in makers.values():
            close()
    base_wall = statistics.median(w for w, _ in samples["httpx"])
    base_ttft = statistics.median(f for _, f in samples["httpx"])
    print(f"\n{title}: {n} streamed chats each, {max_tokens} tokens, clients interleaved")
    print(f"{'client':<15}{'median wall':>14}{'median TTFT':>14}{'wall / httpx':>14}{'TTFT / httpx':>14}")
    for name in names:
        wall = statistics.median(w for w, _ in samples[name])
        ttft = statistics.median(f for _, f in samples[name])
        print(f"{name:<15}{wall * 1000:>11.2f} ms{ttft * 1000:>11.2f} ms{wall / base_wall:>14.3f}"
              f"{ttft / base_ttft:>14.3f}")


def recovery(*, n: int, max_tokens: int) -> None:
    config = SimConfig(seed=7, ttft_ms=200.0, tokens_per_second=50.0, ttft_jitter=0.25, token_jitter=0.3,
                       ttft_distribution="lognormal")
    with Simulator(config) as sim, Client(base_url=sim.base_url, model=sim.model, api_key_env=False) as client:
        # Record what the simulator actually drew, to tell sampling spread (n draws from the configured
        # distribution) apart from measurement error (what phalanb adds or loses on the way).
        generator = sim.state.generator
        drawn: list[list[float]] = []
        draw = generator.delays
        generator.delays = lambda k: drawn.append(draw(k)) or drawn[-1]  # type: ignore[method-assign]
        t0 = time.perf_counter()
        run = run_latency(client, n=n, max_tokens=max_tokens, concurrency=3, warmup=0, progress=False)
        took = time.perf_counter() - t0
    f = run.frame
    ttft, rate = f["ttft_ms"].median() / 1000, f["tokens_per_s"].median()
    drawn_ttft = statistics.median(d[0] for d in drawn)
    drawn_rate = statistics.median((len(d) - 1) / sum(d[1:]) for d in drawn)
    exact = bool((f["ttfb_ns"] + f["chunk_gap_sum_ns"] == f["total_ns"]).all())
    print(f"\nrecovery: {n} chats, concurrency 3, lognormal TTFT (sigma 0.25), token jitter ±30%, {took:.1f} s")
    print(f"  median TTFT      measured {ttft * 1000:6.1f} ms  configured 200 ms ({(ttft / 0.200 - 1) * 100:+.1f}%)"
          f"  drawn by the simulator {drawn_ttft * 1000:6.1f} ms")
    print(f"  median tokens/s  measured {rate:6.1f}     configured 50     ({(rate / 50.0 - 1) * 100:+.1f}%)"
          f"  drawn by the simulator {drawn_rate:6.1f}")
    print(f"  measurement offset (measured median - drawn median): TTFT {(ttft - drawn_ttft) * 1000:+.2f} ms, "
          f"rate {rate - drawn_rate:+.2f} tokens/s")
    print(f"  ttfb + chunk gaps == total for every row: {exact}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20, help="chats per client and setting (default 20)")
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args(argv)
    compare(SimConfig(seed=1, ttft_ms=200.0, tokens_per_second=50.0), n=args.n, max_tokens=args.max_tokens,
            title="realistic (200 ms TTFT, 50 tokens/s)")
    compare(SimConfig(seed=1, ttft_ms=0.0, tokens_per_second=0.0), n=max(args.n, 50), max_tokens=args.max_tokens,
            title="zero-latency simulator (client overhead dominates)")
    recovery(n=max(3 * args.n, 60), max_tokens=args.max_tokens)
    return 0


if __name__ == "__main__":
    sys.exit(main())
