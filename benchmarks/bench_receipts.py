"""Batch verification of ACI receipts sharing one keyset, against a raw Ed25519 verify loop.

phalanb's :func:`phalanb.aci.batch.audit_receipts` decides, per receipt, everything
:func:`phalanb.aci.verify_receipt` decides (canonical JSON, the Ed25519 signature by the established keyset's key,
the keyset digest, both exact-body hashes, the event rules). The baseline, measured in the same run over the same
receipts: ``cryptography``'s ``Ed25519PublicKey.verify`` over precomputed signing inputs, nothing else.

    python benchmarks/bench_receipts.py [--n 5000] [--rounds 5]

Last line: ``ratio to the raw Ed25519 loop: X.XX`` (throughput of phalanb / throughput of the raw loop; the
median of the rounds).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import time

from phalanb.aci import verify_aci_report
from phalanb.aci.batch import ReceiptItem, audit_receipts
from phalanb.wire.client import Client
from phalanb.policy import Policy
from phalanb.sim import SimConfig, Simulator
from phalanb.sim.aci_docs import sign_receipt


def _receipts(n: int):
    """A real receipt of the simulated gateway, then ``n`` receipts like it over different exact bodies, signed by
    the gateway's receipt key (as the gateway signs every request's)."""
    # The batch fast path covers the August shape's JCS receipts; v3 envelopes take the single verifier's path.
    with Simulator(SimConfig(seed=7, ttft_ms=0, tokens_per_second=0, protocol="aci", aci_shape="aug-2026")) as sim:
        with Client(base_url=sim.base_url, model=sim.model) as c:
            ex = c.chat("a receipt to imitate", max_tokens=24)
            template = c.receipt(ex.receipt_id).document
            att = c.aci_attestation()
        keys = sim.aci.keys
    keyset = verify_aci_report(att.raw, nonce=att.nonce, policy=Policy(trust="simulated")).keyset
    assert keyset is not None, "the simulator's report must establish a keyset"
    items, inputs, pub = [], [], None
    for i in range(n):
        req = json.dumps({"model": "m", "messages": [{"role": "user", "content": f"question {i} " * 20}]}).encode()
        resp = (b"data: " + json.dumps({"id": f"chatcmpl-{i}", "choices": [{"delta": {"content": "word " * 8}}]})
                .encode() + b"\n\n") * 30 + b"data: [DONE]\n\n"
        events = []
        for e in template["event_log"]:
            e = dict(e)
            if e["type"] in ("request.received", "request.forwarded", "middleware.forwarded"):
                e["body_hash"] = "sha256:" + hashlib.sha256(req).hexdigest()
            elif e["type"] in ("response.received", "response.returned"):
                e["body_hash"] = "sha256:" + hashlib.sha256(resp).hexdigest()
            events.append(e)
        doc = sign_receipt({**template, "receipt_id": f"rcpt-{i:024x}", "chat_id": f"chatcmpl-{i}",
                            "event_log": events}, keys)
        raw = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
        items.append(ReceiptItem(raw, req, resp, source=str(i)))
        unsigned = {k: v for k, v in doc.items() if k != "signature"}
        inputs.append((bytes.fromhex(doc["signature"]),
                       json.dumps(unsigned, separators=(",", ":"), sort_keys=True).encode()))
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    entry = next(iter(keyset.receipt_keys.values()))
    pub = Ed25519PublicKey.from_public_bytes(bytes.fromhex(entry["public_key"]))
    return keyset, items, inputs, pub


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=5000, help="receipts per round (default 5000)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds; the median is reported (default 5)")
    args = ap.parse_args()
    keyset, items, inputs, pub = _receipts(args.n)
    rows = list(audit_receipts(items, keyset=keyset))
    assert all(r.status == "pass" for r in rows), "every benchmark receipt must verify"
    print(f"{args.n} receipts sharing one keyset, {os.cpu_count()} CPU(s); each round: raw loop, then phalanb")
    ratios = []
    for r in range(args.rounds):
        t0 = time.perf_counter()
        for sig, msg in inputs:
            pub.verify(sig, msg)
        raw = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in audit_receipts(items, keyset=keyset):
            pass
        ours = time.perf_counter() - t0
        ratios.append(raw / ours)
        print(f"round {r + 1}: raw Ed25519 loop {args.n / raw:,.0f}/s, phalanb audit_receipts {args.n / ours:,.0f}/s,"
              f" ratio {raw / ours:.2f}")
    spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
    print(f"median of {args.rounds} rounds (spread {spread})")
    print(f"ratio to the raw Ed25519 loop: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
