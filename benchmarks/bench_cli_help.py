"""How long ``phalanb --help`` takes, against starting Python itself (``python -c pass``) in the same run.

Each round times both, interleaved; the figure is the median over rounds of (help − bare start) and of the ratio.

    python benchmarks/bench_cli_help.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def _once(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=15)
    n = p.parse_args().rounds
    extra, ratio = [], []
    for _ in range(n):
        bare = _once(["-c", "pass"])
        helped = _once(["-m", "phalanb.cli", "--help"])
        extra.append(helped - bare)
        ratio.append(helped / bare)
    print(f"phalanb --help: {statistics.median(extra) * 1000:.0f} ms beyond starting Python "
          f"(median of {n}; range {min(extra) * 1000:.0f}-{max(extra) * 1000:.0f} ms); "
          f"{statistics.median(ratio):.2f}x python -c pass")


if __name__ == "__main__":
    main()
