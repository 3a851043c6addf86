"""The ``bench-latency`` and ``probe-window`` subcommands.

Without ``--base-url`` both start phalanb's embedded simulator (no key, no network) with a realistic latency
model, so the commands show real shapes offline; with it, the API key comes from the environment only.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Iterator

from . import COMMANDS
from ..wire.apikey import ENV_VARS
from ..wire.client import Client
from ..errors import InputError

__all__ = ["register"]

#: The embedded simulator's latency for bench-latency: 200 ms median TTFT, 50 tokens/s, both with jitter.
SIM_TTFT_MS, SIM_TOKENS_PER_SECOND = 200.0, 50.0


def _number(kind, *, minimum: float = 0.0, strict: bool = False):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {minimum:g}, got {text}")
        return value
    return parse


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base-url", help="service base URL, e.g. https://api.redpill.ai/v1 (default: the embedded "
                   f"simulator). The API key comes from ${ENV_VARS[0]} or ${ENV_VARS[1]}.")
    p.add_argument("--model", help="model id (default: the first one the service lists)")
    p.add_argument("--timeout", type=_number(float, strict=True), default=60.0, help="seconds (default 60)")
    p.add_argument("--allow-insecure-http", action="store_true",
                   help="allow sending the API key over plain http to a non-loopback host")
    p.add_argument("--csv", type=Path, metavar="FILE", help="write the table as CSV")
    p.add_argument("--plot", type=Path, metavar="FILE.png", help="save the figure (PNG, SVG or PDF by suffix)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench-latency", help=COMMANDS["bench-latency"][1],
                       description="Run N chats and print median / p90 / p99 of time to first byte and token, total "
                       "time, inter-token gaps, tokens/s and signature / attestation fetch times.")
    _common(p)
    p.add_argument("--n", type=_number(int, minimum=1), default=50, help="measured chats (default 50)")
    p.add_argument("--warmup", type=_number(int), default=1, help="unrecorded warm-up chats (default 1)")
    p.add_argument("--concurrency", type=_number(int, minimum=1), default=1, help="chats at once (default 1)")
    p.add_argument("--no-stream", action="store_true", help="ask for non-streaming replies")
    p.add_argument("--max-tokens", type=_number(int, minimum=1), default=None,
                   help="the most tokens each reply may have (default: the service's own limit)")
    p.add_argument("--prompt", action="append", dest="prompts", metavar="TEXT",
                   help="prompt to send (repeatable; used in turn; default: four short questions)")
    p.add_argument("--attestation", action="store_true", help="also time a fresh attestation fetch per chat")
    p.add_argument("--verify", action="store_true", help="also verify every reply (implies --attestation)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_bench_latency)

    p = sub.add_parser("probe-window", help=COMMANDS["probe-window"][1],
                       description="Make a fresh chat and poll what the service keeps for it — an ACI gateway's receipt (GET "
                       "/v1/aci/receipts/{id}), a model server's signature (GET /v1/signature/{chat_id}) — until "
                       "it answers 404 (confirmed), "
                       "then narrow the window by bisection on fresh chats. Prints the estimate with its "
                       "uncertainty; every probe goes to --csv.")
    _common(p)
    p.add_argument("--horizon", type=_number(float, strict=True), default=1800.0,
                   help="stop looking this many seconds after a chat (default 1800)")
    p.add_argument("--min-interval", type=_number(float, strict=True), default=1.0, metavar="S",
                   help="never poll faster than this (default 1 s)")
    p.add_argument("--schedule", choices=("exponential", "grid"), default="exponential",
                   help="exponential then bisection (default), or a fixed grid at --min-interval")
    p.add_argument("--resolution", type=_number(float, strict=True), default=None, metavar="S",
                   help="stop bisecting when the window is known to this width (default: max(min-interval, "
                   "2%% of the window))")
    p.add_argument("--confirm", type=_number(int, minimum=1), default=2,
                   help="404s in a row that count as expiry (default 2; a 404 then a 200 is a multi-node miss)")
    p.add_argument("--max-chats", type=_number(int, minimum=1), default=6, help="fresh chats at most (default 6)")
    p.add_argument("--sim-ttl", type=_number(float, strict=True), default=10.0, metavar="S",
                   help="how long the embedded simulator keeps receipts and signatures (default 10 s; ignored "
                   "with --base-url)")
    p.add_argument("--protocol", choices=("aci", "legacy"), default="aci",
                   help="what the embedded simulator speaks: an ACI gateway, whose receipts are probed (default), "
                   "or a model server alone, whose signatures are (ignored with --base-url)")
    p.set_defaults(func=cmd_probe_window)


@contextlib.contextmanager
def _client(args: argparse.Namespace, **sim_config) -> Iterator[tuple[Client, bool]]:
    if args.base_url:
        with Client(base_url=args.base_url, model=args.model, timeout=args.timeout,
                    allow_insecure_http=args.allow_insecure_http) as client:
            if client.model is None:
                models = client.models()
                if not models:
                    raise InputError("the service lists no models; pass --model")
                client.model = models[0]
            yield client, False
        return
    from ..sim import SimConfig, Simulator

    with Simulator(SimConfig(**sim_config)) as sim:
        # The embedded simulator needs no key; never send the user's real key to it.
        with Client(base_url=sim.base_url, model=args.model or sim.model, timeout=args.timeout,
                    api_key_env=False) as client:
            yield client, True


def _write_csv(frame, path: Path | None) -> None:
    if path is None:
        return
    try:
        frame.to_csv(path, index=False)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(f"wrote {path}", file=sys.stderr)


def cmd_bench_latency(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..policy import Policy
    from ..timing.latency import DEFAULT_PROMPTS, run_latency

    attestation = args.attestation or args.verify
    with _client(args, ttft_ms=SIM_TTFT_MS, ttft_jitter=0.25, ttft_distribution="lognormal",
                 tokens_per_second=SIM_TOKENS_PER_SECOND, token_jitter=0.3) as (client, simulated):
        if simulated:
            print(f"Using phalanb's embedded simulator at {client.base_url} (configured: median TTFT "
                  f"{SIM_TTFT_MS:.0f} ms, {SIM_TOKENS_PER_SECOND:.0f} tokens/s).", file=sys.stderr)
        run = run_latency(client, n=args.n, prompts=tuple(args.prompts or DEFAULT_PROMPTS),
                          stream=not args.no_stream, max_tokens=args.max_tokens, concurrency=args.concurrency,
                          warmup=args.warmup, attestation=attestation, verify=args.verify,
                          policy=Policy(trust="simulated" if simulated else "production") if args.verify else None,
                          label=client.base_url, progress=not args.no_progress)
    summary = run.summary()
    # Times in ms and rates per second, already rounded to 0.01 by summarize(): print them as they are, never
    # in scientific notation.
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.float_format",
                           "{:.2f}".format):
        print(summary.to_string())
    failed = run.frame["error"].notna().sum()
    if failed:
        print(f"{failed} of {len(run.frame)} chats failed; see the 'error' column (--csv)", file=sys.stderr)
    if args.verify:
        print("verdicts: " + ", ".join(f"{k} {v}" for k, v in run.frame["verdict"].value_counts().items()))
    _write_csv(run.frame, args.csv)
    if args.plot:
        from ..timing.plots import latency_distributions, save

        save(latency_distributions(run, title=f"{client.model} at {client.base_url}"), args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 1 if failed == len(run.frame) else 0


def cmd_probe_window(args: argparse.Namespace) -> int:
    from ..timing.window import ENDPOINTS, WindowProbe

    if args.resolution is not None and args.resolution < args.min_interval:
        raise InputError(f"--resolution {args.resolution} is finer than --min-interval {args.min_interval}: "
                         "the probe cannot poll that often")
    with _client(args, ttft_ms=0.0, tokens_per_second=0.0, signature_ttl=args.sim_ttl, receipt_ttl=args.sim_ttl,
                 protocol=args.protocol) as (client, simulated):
        if simulated:
            kind, kept = ("an ACI gateway", "receipts") if args.protocol == "aci" else ("a model server", "signatures")
            print(f"Using phalanb's embedded simulator ({kind}) at {client.base_url}, keeping {kept} "
                  f"{args.sim_ttl:g} s.", file=sys.stderr)

        def show(p) -> None:
            print(f"  chat {p.chat} at {p.elapsed_s:8.2f} s: {p.status if p.status is not None else 'error'}"
                  f"{' (' + p.phase + ')' if p.phase in ('confirm', 'bisect') else ''}", file=sys.stderr)

        probe = WindowProbe.for_client(client, horizon=args.horizon, min_interval=args.min_interval,
                                       schedule=args.schedule, resolution=args.resolution, confirm=args.confirm,
                                       max_chats=args.max_chats, on_probe=show)
        shown = []

        def first(p) -> None:  # name what is probed once the first chat said which protocol answered
            if not shown:
                shown.append(1)
                print(f"probing {probe.what}s: {ENDPOINTS[probe.what]}", file=sys.stderr)
            show(p)

        probe.on_probe = first
        result = probe.run()
    print(result)
    _write_csv(result.frame(), args.csv)
    if args.plot:
        from ..timing.plots import save, signature_availability

        save(signature_availability(result), args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0 if result.status in ("expired", "alive_at_horizon") else 3
