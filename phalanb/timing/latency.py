"""Latency runs: N chats against one endpoint, one tidy pandas row per exchange, and a median/p90/p99 summary.

What a provider's TEE path costs is answered in the units people compare: time to first byte and first token,
inter-token gaps, total time, tokens per second, and how long the attestation report and the signature take to
fetch. Every number comes from the ``perf_counter_ns`` stamps the :class:`~phalanb.wire.exchange.ExchangeRecorder`
took while the bytes arrived; nothing is re-timed here.

Times are in milliseconds (columns ``*_ms``, rounded to the microsecond; the summary to 0.01 ms), the unit the
plots use, so a table and a figure read the same numbers. The byte columns also have exact integer-nanosecond
twins: ``ttfb_ns + chunk_gap_sum_ns == total_ns`` (``total`` is the arrival of the last body byte). ``done_ms``
additionally includes closing and parsing the response. Rates stay per second (``tokens_per_s``). Columns are
plain scalars (numbers, strings, booleans, ``None``), so a frame goes to CSV or Parquet unchanged.

>>> from phalanb.wire.client import Client                                                   # doctest: +SKIP
>>> with Client(base_url=sim.base_url, model=sim.model) as client:                      # doctest: +SKIP
...     run = run_latency(client, n=20, concurrency=2, warmup=1)
>>> run.summary().loc["ttft_ms", ["median", "p90", "p99"]]                               # doctest: +SKIP
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import pandas as pd

from ..errors import InputError, PhalanbError, ServiceError, SignatureExpiredError, TransportError
from ..vllm.signatures import fetch_signature
from ..wire.exchange import Exchange

if TYPE_CHECKING:  # pragma: no cover
    from ..wire.client import Client
    from ..policy import Policy

__all__ = ["DEFAULT_PROMPTS", "LatencyRun", "SUMMARY_METRICS", "exchange_row", "run_latency", "summarize",
           "percentile"]

DEFAULT_PROMPTS = (
    "In one sentence: what does a TDX quote prove?",
    "Name three things an attestation report contains.",
    "Why must the client send its own nonce?",
    "What is a signing address?",
)

#: The columns :func:`summarize` reports by default, in this order.
SUMMARY_METRICS = ("ttfb_ms", "ttft_ms", "total_ms", "itl_median_ms", "itl_p90_ms", "tokens_per_s",
                   "e2e_tokens_per_s", "output_tokens", "signature_ms", "attestation_ms", "verify_ms")

#: Decimal places: frame cells to the microsecond (perf_counter_ns stamps, loopback jitter is larger), summary
#: statistics to 0.01 ms and 0.01 tokens/s.
FRAME_DECIMALS, SUMMARY_DECIMALS = 3, 2

_NAN = float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation, as ``numpy.percentile``; NaN when empty.

    >>> percentile([1, 2, 3, 4], 50)
    2.5
    """
    xs = sorted(v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v)))
    if not xs:
        return _NAN
    if not 0 <= q <= 100:
        raise InputError(f"a percentile is between 0 and 100, got {q}")
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _ms(ns: int | None) -> float:
    return _NAN if ns is None else round(ns / 1e6, FRAME_DECIMALS)


def _ms_of_s(seconds: float | None) -> float:
    return _NAN if seconds is None or math.isnan(seconds) else round(seconds * 1000, FRAME_DECIMALS)


def _r(ms: float) -> float:
    return ms if math.isnan(ms) else round(ms, FRAME_DECIMALS)


def exchange_row(exchange: Exchange) -> dict[str, Any]:
    """The timing columns of one exchange (no network): what :func:`run_latency` puts in each row.

    Output tokens come from ``usage.completion_tokens`` when the service sent it, else from the number of
    content-carrying chunks (``tokens_source`` says which). ``tokens_per_s`` is the decode rate,
    ``(tokens - 1) / (last token - first token)``: the quantity a configured "50 tokens/s" means, and undefined
    (NaN) for a non-streamed reply. ``e2e_tokens_per_s`` is ``tokens / total``.

    >>> row = exchange_row(exchange)                                               # doctest: +SKIP
    >>> row["ttfb_ns"] + row["chunk_gap_sum_ns"] == row["total_ns"]                 # doctest: +SKIP
    True
    """
    t = exchange.timings
    gaps_ns = t.chunk_gaps_ns
    token_gaps = [g / 1e6 for g in t.token_gaps_ns]  # ms
    usage_tokens = exchange.output_tokens
    n_content = len(t.token_ns)
    if usage_tokens is not None:
        tokens, source = usage_tokens, "usage"
    else:
        tokens, source = n_content, "chunks"
    span_ns = (t.token_ns[-1] - t.token_ns[0]) if n_content >= 2 else 0
    total_ns = t.last_byte_total_ns
    ttfb_ns = t.ttfb_ns
    return {
        "chat_id": exchange.chat_id,
        "status": exchange.status,
        "stream": exchange.stream,
        "complete": exchange.complete,
        "headers_ms": _NAN if t.headers_ns is None else _ms(t.headers_ns - t.request_sent_ns),
        "ttfb_ms": _ms(ttfb_ns),
        "ttft_ms": _NAN if t.first_token_ns is None else _ms(t.first_token_ns - t.request_sent_ns),
        "total_ms": _ms(total_ns),
        "done_ms": _NAN if t.done_ns is None else _ms(t.done_ns - t.request_sent_ns),
        # Integer twins of the byte columns: these add up exactly, the float milliseconds only to rounding.
        "ttfb_ns": ttfb_ns,
        "total_ns": total_ns,
        "chunk_gap_sum_ns": sum(gaps_ns),
        "n_chunks": len(t.chunks),
        "chunk_gap_max_ms": _ms(max(gaps_ns)) if gaps_ns else _NAN,
        "n_content_chunks": n_content,
        "itl_mean_ms": _r(statistics.fmean(token_gaps)) if token_gaps else _NAN,
        "itl_median_ms": _r(statistics.median(token_gaps)) if token_gaps else _NAN,
        "itl_p90_ms": _r(percentile(token_gaps, 90)),
        "itl_max_ms": _r(max(token_gaps)) if token_gaps else _NAN,
        "itl_std_ms": _r(statistics.pstdev(token_gaps)) if len(token_gaps) >= 2 else _NAN,
        "output_tokens": tokens,
        "tokens_source": source,
        "tokens_per_s": (tokens - 1) / (span_ns / 1e9) if span_ns > 0 and tokens >= 2 else _NAN,
        "e2e_tokens_per_s": tokens / (total_ns / 1e9) if total_ns and tokens else _NAN,
        "request_bytes": len(exchange.request_bytes),
        "response_bytes": len(exchange.response_bytes),
        "started_at": t.wall_start,
    }


# Every row has every column, so failed runs and runs without signature/attestation line up in one frame.
_EXTRA_COLUMNS: dict[str, Any] = {
    "signature_ms": _NAN, "signature_status": None, "attestation_ms": _NAN, "verify_ms": _NAN, "verdict": None,
    "error": None,
}


@dataclass
class LatencyRun:
    """The result of :func:`run_latency`: the tidy ``frame`` (one row per measured exchange), the exchanges
    themselves (for per-token timelines), and what was run (``meta``)."""

    frame: pd.DataFrame
    exchanges: list[Exchange | None] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def summary(self, metrics: Sequence[str] | None = None) -> pd.DataFrame:
        """Median / p90 / p99 (and count, mean, min, max) of each metric; see :func:`summarize`."""
        return summarize(self.frame, metrics=metrics)

    @property
    def ok(self) -> pd.DataFrame:
        """The rows whose chat succeeded."""
        return self.frame[self.frame["error"].isna()]

    def to_csv(self, path: str | Path) -> Path:
        path = Path(path)
        try:
            self.frame.to_csv(path, index=False)
        except OSError as exc:
            raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
        return path

    def __repr__(self) -> str:
        n_err = int(self.frame["error"].notna().sum()) if "error" in self.frame else 0
        return (f"<LatencyRun {len(self.frame)} exchanges ({n_err} failed) {self.meta.get('label', '')!s} "
                f"stream={self.meta.get('stream')} concurrency={self.meta.get('concurrency')}>")


def summarize(frame: pd.DataFrame, metrics: Sequence[str] | None = None, *, by: str | None = None) -> pd.DataFrame:
    """One row per metric: ``count, mean, median, p90, p99, min, max`` over the successful exchanges, rounded to
    :data:`SUMMARY_DECIMALS` places (times in ms, rates per second).

    ``by`` groups first (e.g. ``by="label"`` for two endpoints in one frame) and gives a (group, metric) index.
    Metrics missing from the frame or entirely NaN are left out rather than shown as empty rows.

    >>> summarize(run.frame).loc["ttft_ms", "median"]                             # doctest: +SKIP
    201.23
    """
    if by is not None:
        if by not in frame.columns:
            raise InputError(f"cannot group by {by!r}: the frame has no such column "
                             f"(columns: {', '.join(map(str, frame.columns))})")
        parts = {key: summarize(group, metrics) for key, group in frame.groupby(by, sort=False)}
        return pd.concat(parts, names=[by, "metric"]) if parts else pd.DataFrame()
    wanted = list(metrics) if metrics is not None else list(SUMMARY_METRICS)
    unknown = [m for m in wanted if m not in frame.columns] if metrics is not None else []
    if unknown:
        raise InputError(f"unknown metric(s) {unknown}; the frame has {', '.join(map(str, frame.columns))}")
    ok = frame[frame["error"].isna()] if "error" in frame.columns else frame
    rows = {}
    for m in wanted:
        if m not in ok.columns:
            continue
        values = pd.to_numeric(ok[m], errors="coerce").dropna()
        if values.empty:
            continue
        xs = values.tolist()
        stats = {"mean": statistics.fmean(xs), "median": statistics.median(xs), "p90": percentile(xs, 90),
                 "p99": percentile(xs, 99), "min": min(xs), "max": max(xs)}
        rows[m] = {"count": len(xs), **{k: round(float(v), SUMMARY_DECIMALS) for k, v in stats.items()}}
    out = pd.DataFrame.from_dict(rows, orient="index",
                                 columns=["count", "mean", "median", "p90", "p99", "min", "max"])
    out.index.name = "metric"
    return out


def _progress(total: int, *, enabled: bool, desc: str):
    """A tqdm bar (notebook-aware via ``tqdm.auto``), or a silent stand-in when disabled."""
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="chat", leave=True)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def run_latency(client: "Client", *, n: int = 20, prompts: str | Sequence[str] = DEFAULT_PROMPTS,
                stream: bool = True, max_tokens: int | None = None, concurrency: int = 1, warmup: int = 1,
                signature: bool = True, attestation: bool = False, verify: bool = False,
                policy: "Policy | None" = None, include_usage: bool = True, label: str | None = None,
                progress: bool = True, keep_exchanges: bool = True,
                client_factory: Callable[[], "Client"] | None = None) -> LatencyRun:
    """Run ``n`` chats and measure each; returns a :class:`LatencyRun` (``.frame``, ``.summary()``).

    ``prompts`` are used in turn. ``warmup`` chats run first, one at a time, and are not recorded (they open
    the connection and warm caches, which would otherwise inflate the first row). ``concurrency`` chats run at
    once on threads; they share ``client`` (httpx's connection pool is thread-safe) unless ``client_factory``
    gives each thread its own. ``signature`` times ``GET /signature`` right after each reply; ``attestation``
    times a fresh ``GET /attestation/report``; ``verify`` (needs both) runs the full verification and records
    the verdict. ``include_usage`` asks a stream for a final usage chunk, so output tokens are the service's
    count rather than the number of chunks. A chat that fails becomes a row with ``error`` set, never a gap.

    >>> run = run_latency(client, n=50, concurrency=4, progress=False)            # doctest: +SKIP
    >>> run.frame[["ttft_ms", "tokens_per_s"]].median()                           # doctest: +SKIP
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise InputError(f"n must be a positive number of chats, got {n!r}")
    if not isinstance(concurrency, int) or concurrency < 1:
        raise InputError(f"concurrency must be at least 1 (chats at once), got {concurrency!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise InputError(f"warmup must be 0 or more chats, got {warmup!r}")
    if isinstance(prompts, str):
        prompts = (prompts,)
    prompts = tuple(prompts)
    if not prompts or not all(isinstance(p, str) and p for p in prompts):
        raise InputError("prompts must be a non-empty string or a non-empty list of non-empty strings")
    if verify and not (signature and attestation):
        raise InputError("verify=True needs signature=True and attestation=True: a verdict is built from the "
                         "reply, its signature and a fresh attestation report")
    if verify and policy is None:
        raise InputError("verify=True needs a policy: Policy() for a real service, Policy(trust='simulated') "
                         "for phalanb's simulator")
    if verify:
        from ..trust import require_loopback_for_simulated

        require_loopback_for_simulated(client.base_url, trust=policy.trust)
    body = {"stream_options": {"include_usage": True}} if stream and include_usage else None

    local = threading.local()
    made: list["Client"] = []
    made_lock = threading.Lock()

    def thread_client() -> "Client":
        if client_factory is None:
            return client
        c = getattr(local, "client", None)
        if c is None:
            c = local.client = client_factory()
            with made_lock:
                made.append(c)
        return c

    def one(i: int, prompt: str) -> tuple[dict[str, Any], Exchange | None]:
        c = thread_client()
        row: dict[str, Any] = {"run": i, "label": label, "prompt_index": i % len(prompts),
                               "concurrency": concurrency}
        row.update(_EXTRA_COLUMNS)
        try:
            ex = c.chat(prompt, stream=stream, max_tokens=max_tokens, body=body)
        except (TransportError, ServiceError) as exc:
            partial = getattr(exc, "partial", None)
            if isinstance(partial, Exchange):
                row.update(exchange_row(partial))
            row.update({"error": f"{type(exc).__name__}: {exc}", "stream": stream,
                        "status": getattr(exc, "status", row.get("status"))})
            return row, partial
        row.update(exchange_row(ex))
        sig = None
        if signature and ex.chat_id:
            t0 = time.perf_counter()
            try:
                sig = fetch_signature(c, ex.chat_id)
                row["signature_status"] = 200
            except SignatureExpiredError:
                row["signature_status"] = 404
            except ServiceError as exc:
                row["signature_status"] = exc.status
            except TransportError:
                row["signature_status"] = None
            row["signature_ms"] = _ms_of_s(time.perf_counter() - t0)
        att = None
        if attestation:
            try:
                att = c.attestation(signing_algo=sig.signing_algo if sig else None,
                                    signing_address=sig.signing_address if sig else None)
                row["attestation_ms"] = _ms_of_s(att.elapsed_s)
            except PhalanbError as exc:
                row["error"] = f"attestation: {type(exc).__name__}: {exc}"
        if verify:
            if sig is None or att is None:
                row["verdict"] = "incomplete"
            else:
                from ..gateway import verify_exchange

                t0 = time.perf_counter()
                try:
                    verdict = verify_exchange(ex, sig, att.report, nonce=att.nonce, policy=policy)
                except PhalanbError as exc:
                    # Input the verifier refused is a result of this run; any other exception is a bug and
                    # propagates.
                    row["verdict"] = "error"
                    row["error"] = f"verify: {type(exc).__name__}: {exc}"
                else:
                    row["verdict"] = verdict.status
                row["verify_ms"] = _ms_of_s(time.perf_counter() - t0)
        return row, ex

    for w in range(warmup):
        try:
            thread_client().chat(prompts[w % len(prompts)], stream=stream, max_tokens=max_tokens, body=body)
        except (TransportError, ServiceError):
            pass  # a failed warm-up is not data; the measured runs will show the failure if it persists

    results: list[tuple[dict[str, Any], Exchange | None] | None] = [None] * n
    # The bar says what it does; the endpoint is in the frame and meta, not in the bar (a URL reads as noise).
    bar = _progress(n, enabled=progress, desc=f"timing {n} chat{'s' if n != 1 else ''}")
    try:
        if concurrency == 1:
            for i in range(n):
                results[i] = one(i, prompts[i % len(prompts)])
                bar.update(1)
        else:
            with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="phalanb-latency") as pool:
                futures = {pool.submit(one, i, prompts[i % len(prompts)]): i for i in range(n)}
                for fut in as_completed(futures):
                    results[futures[fut]] = fut.result()
                    bar.update(1)
    finally:
        bar.close()
        for c in made:
            c.close()

    rows = [r[0] for r in results if r is not None]
    frame = pd.DataFrame(rows)
    first = ["run", "label", "chat_id", "status", "error", "ttfb_ms", "ttft_ms", "total_ms", "tokens_per_s",
             "output_tokens"]
    frame = frame[[c for c in first if c in frame.columns] + [c for c in frame.columns if c not in first]]
    meta = {"base_url": getattr(client, "base_url", None), "model": getattr(client, "model", None), "n": n,
            "stream": stream, "concurrency": concurrency, "warmup": warmup, "max_tokens": max_tokens,
            "label": label, "signature": signature, "attestation": attestation, "verify": verify}
    frame.attrs.update({k: v for k, v in meta.items() if v is not None})
    exchanges = [r[1] for r in results if r is not None] if keep_exchanges else []
    return LatencyRun(frame=frame, exchanges=exchanges, meta=meta)
