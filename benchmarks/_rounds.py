"""Timing rounds shared by the benchmark scripts (each run as ``python benchmarks/NAME.py``, so this directory is on
``sys.path``)."""

from __future__ import annotations

import time


def rounds(fns: dict, repeat: int) -> dict[str, list[float]]:
    """Each function once per round, ``repeat`` rounds, after one warm-up call each (imports, lazy decoding)."""
    for fn in fns.values():
        fn()
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - t)
    return out
