"""Time phalanb's TDX verification of a real quote against dcap-qvl alone, in one run, and print the ratio.

    python benchmarks/bench_tdx.py [--fixtures ../shared/fixtures] [--repeat 300]

phalanb path: parse (every field with offsets) + offline chain (quote signature, QE report, QE binding, PCK chain to
the pinned root, SGX extension) + dcap-qvl with stored collateral + policy. Baseline: dcap-qvl's verify alone on
the same bytes and collateral. Both use the quote's stored ``verify_now`` so the collateral is in its window.

phalanb remembers what it verified of a PCK chain (and of the QE report it signs), keyed by every byte verified,
the root and the time: the quotes of one platform share them, so an audit verifies them once. "warm" is that
steady state (the quote's own signature is still checked every time, and dcap-qvl still runs in full); "cold"
forgets the chain before every call. Rounds interleave the paths; ratios are taken round by round.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from pathlib import Path

import dcap_qvl

from _rounds import rounds
from phalanb.tdx import TdxPolicy, TrustRoot, load_collateral, parse_quote, verify_quote_offline, verify_tdx
from phalanb.tdx.verify import clear_chain_cache

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", type=Path,
                    default=Path(os.environ.get("PHALANB_FIXTURES", REPO.parent / "shared" / "fixtures")))
    ap.add_argument("--quote", default="dcap-qvl/tdx_quote", help="quote path relative to fixtures/tdx")
    ap.add_argument("--repeat", type=int, default=300)
    args = ap.parse_args()

    tdx = args.fixtures / "tdx"
    entry = next(e for e in json.loads((tdx / "ground_truth.json").read_text()) if e["file"] == args.quote)
    raw = (tdx / entry["file"]).read_bytes()
    col_text = (tdx / entry["collateral"]).read_text()
    now = entry["verify_now"]
    root = TrustRoot.intel()
    policy = TdxPolicy(trust_root=root)
    col = load_collateral(col_text)
    dcap_col = dcap_qvl.QuoteCollateralV3.from_json(col_text)

    def baseline() -> None:
        try:
            dcap_qvl.verify(raw, dcap_col, now)
        except ValueError:  # e.g. "No matching TCB level found": still a full verification run
            pass

    def parse_only() -> None:
        parse_quote(raw)

    def offline_cold() -> None:
        clear_chain_cache()
        verify_quote_offline(parse_quote(raw), root=root, at=now)

    def offline_warm() -> None:
        verify_quote_offline(parse_quote(raw), root=root, at=now)

    def full_cold() -> None:
        clear_chain_cache()
        verify_tdx(raw, collateral=col, at=now, policy=policy)

    def full_warm() -> None:
        verify_tdx(raw, collateral=col, at=now, policy=policy)

    status = verify_tdx(raw, collateral=col, at=now, policy=policy).dcap
    assert (status.status or f"ERROR: {status.error}") == entry["verify_status"], status
    names = {"dcap": "dcap-qvl verify alone", "parse": "phalanb parse",
             "offline_cold": "phalanb parse + offline chain, cold",
             "offline_warm": "phalanb parse + offline chain, warm",
             "full_cold": "phalanb verify_tdx (parse + offline + dcap-qvl + policy), cold",
             "full_warm": "phalanb verify_tdx (parse + offline + dcap-qvl + policy), warm"}
    results = rounds({"dcap": baseline, "parse": parse_only, "offline_cold": offline_cold,
                      "offline_warm": offline_warm, "full_cold": full_cold, "full_warm": full_warm}, args.repeat)
    print(f"quote {entry['file']} ({len(raw)} bytes), {args.repeat} rounds, Python {platform.python_version()}, "
          f"dcap-qvl {dcap_qvl.__version__}, {os.cpu_count()} CPUs")
    print(f"{'path':<66} {'median ms':>10} {'p90 ms':>8}")
    for key, ts in results.items():
        ts = sorted(ts)
        print(f"{names[key]:<66} {statistics.median(ts) * 1e3:>10.3f} {ts[int(len(ts) * 0.9)] * 1e3:>8.3f}")

    def ratio(key: str) -> list[float]:
        return statistics.quantiles([a / b for a, b in zip(results[key], results["dcap"])], n=4)

    cold, warm = ratio("full_cold"), ratio("full_warm")
    print("ratios to dcap-qvl alone, median of the rounds' ratios (interquartile range):")
    print(f"  cold (chain verified by phalanb and by dcap-qvl)   {cold[1]:.2f}  ({cold[0]:.2f}-{cold[2]:.2f})")
    print(f"  warm (chain remembered, by fingerprint)           {warm[1]:.2f}  ({warm[0]:.2f}-{warm[2]:.2f})")
    print(f"ratio (phalanb full / dcap-qvl alone): {warm[1]:.1f}x")


if __name__ == "__main__":
    main()
