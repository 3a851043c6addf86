"""Batch verification throughput: N simulator replies sharing one attestation (hashes + signature each, the
attestation verified once), with 1 and 2 worker processes, against the bare cost of the signature recovery alone:
a plain loop of ``eth_account.Account.recover_message`` over the same signed texts, measured in the same run.

    python benchmarks/bench_batch.py [--n 10000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from eth_account import Account
from eth_account.messages import encode_defunct

from phalanb.batch import audit, load_items, write_batch
from phalanb.session import Session, Settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    args = ap.parse_args()

    t0 = time.perf_counter()
    with Session(Settings(sim_options={"seed": 1, "ttft_ms": 0, "tokens_per_second": 0,
                                       "max_signatures": args.n + 10})) as s:
        first = s.chat_and_verify("benchmark", max_tokens=8, stream=False)
        replies = [(first.exchange, first.signature)]
        for i in range(args.n - 1):
            ex = s.client.chat(f"benchmark {i}", max_tokens=8, stream=i % 2 == 0)
            replies.append((ex, s.client.signature(ex.chat_id)))
    print(f"recorded {len(replies)} simulator replies in {time.perf_counter() - t0:.1f} s")

    with tempfile.TemporaryDirectory() as tmp:
        path = write_batch(Path(tmp) / "batch.jsonl", report=first.attestation.report, nonce=first.attestation.nonce,
                           policy=first.policy, verified_at=first.verified_at, collateral=first.online.collateral,
                           nras_response=first.online.nras_response, jwks=first.online.jwks, replies=replies)
        items = load_items([path], trust="simulated")  # simulator evidence, checked as such

    texts = [(sig.text, sig.signature) for _, sig in replies]
    t = time.perf_counter()
    for text, signature in texts:
        Account.recover_message(encode_defunct(text=text), signature=signature)
    baseline = len(texts) / (time.perf_counter() - t)
    print(f"baseline  eth_account.recover_message loop: {baseline:9.0f} signatures/s")

    for workers in (1, 2):
        t = time.perf_counter()
        df = audit(items, workers=workers, progress=False)
        rate = len(df) / (time.perf_counter() - t)
        assert (df["verdict"] == "verified").all(), df["verdict"].value_counts()
        print(f"phalanb   audit, {workers} worker(s):            {rate:9.0f} exchanges/s   "
              f"ratio to baseline {rate / baseline:.2f}")


if __name__ == "__main__":
    main()
