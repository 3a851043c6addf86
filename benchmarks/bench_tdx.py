"""Time phalanb's TDX verification of a real quote against dcap-qvl alone, in one run, and print the ratio.

    python benchmarks/bench_tdx.py [--fixtures ../shared/fixtures] [--repeat 300]

phalanb path: parse (every field with offsets) + offline chain (quote signature, QE report, QE binding, PCK chain to
the pinned root, SGX extension) + dcap-qvl with stored collateral + policy. Baseline: dcap-qvl's verify alone on
the same bytes and collateral. Both use the quote's stored ``verify_now`` so the collateral is in its window.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import dcap_qvl

from phalanb.tdx import TdxPolicy, TrustRoot, load_collateral, parse_quote, verify_quote_offline, verify_tdx

REPO = Path(__file__).resolve().parent.parent


def timeit(fn, repeat: int) -> list[float]:
    fn()  # warm up (imports, caches)
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


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

    def offline_only() -> None:
        verify_quote_offline(parse_quote(raw), root=root, at=now)

    def phalanb_full() -> None:
        verify_tdx(raw, collateral=col, at=now, policy=policy)

    status = verify_tdx(raw, collateral=col, at=now, policy=policy).dcap
    assert (status.status or f"ERROR: {status.error}") == entry["verify_status"], status
    results = {name: timeit(fn, args.repeat) for name, fn in
               [("dcap-qvl verify alone", baseline), ("phalanb parse", parse_only),
                ("phalanb parse + offline chain", offline_only),
                ("phalanb verify_tdx (parse + offline chain + dcap-qvl + policy)", phalanb_full)]}
    print(f"quote {entry['file']} ({len(raw)} bytes), {args.repeat} runs each, Python {platform.python_version()}, "
          f"dcap-qvl {dcap_qvl.__version__}, {os.cpu_count()} CPUs")
    print(f"{'path':<62} {'median ms':>10} {'p90 ms':>8}")
    for name, ts in results.items():
        ts = sorted(ts)
        print(f"{name:<62} {statistics.median(ts) * 1e3:>10.3f} {ts[int(len(ts) * 0.9)] * 1e3:>8.3f}")
    base = statistics.median(results["dcap-qvl verify alone"])
    full = statistics.median(results["phalanb verify_tdx (parse + offline chain + dcap-qvl + policy)"])
    print(f"ratio (phalanb full / dcap-qvl alone): {full / base:.1f}x")


if __name__ == "__main__":
    main()
