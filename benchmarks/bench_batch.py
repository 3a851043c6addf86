"""Batch audit throughput against the raw cryptography, and its memory at scale.

Baseline, in the same run, over the same signatures: the raw loop of keccak-256 of the EIP-191 message, coincurve
public-key recovery and keccak of the key → address (no bytes hashed, nothing read, texts prepared beforehand).

Against it, for a batch of N simulator replies sharing one attestation:

* phalanb's full per-reply check — both hashes of the exact bytes, recovery, binding to the attested key, the
  verdict row — on replies already read (up to 10,000), in 1 process and in 2 processes that got them by fork
  (only the rows come back): the cryptography and the row alone, reading left out.
* the audit of the file end to end, ``audit(path, workers=…)`` — the workers reading their own spans of the
  file, the shared attestation verified once, the rows, the DataFrame, the worker processes started — with 1 and 2
  workers, for the same replies in both batch formats: JSON lines (``.jsonl``: every line JSON-decoded, the exact
  bytes base64-decoded) and framed (``.pbatch``: the same records, the exact bytes stored raw and each record's
  JSON decoded and type-checked by msgspec). The last line prints the framed batch's two ratios (issue 15,
  target 1): the format phalanb writes for audits at scale.

Each ratio is the median over ``--repeat`` rounds of (rate / the raw rate): each figure is timed between two runs
of the raw loop and set against their mean, so drift on a shared machine hits the figure and its baseline alike.

Then the memory: the audit alone in a fresh process, its peak RSS (VmHWM) and its workers' (ru_maxrss).

    python benchmarks/bench_batch.py [--n 10000] [--repeat 5]
    python benchmarks/bench_batch.py --n 100000 --repeat 1        # memory at scale

Replies are recorded from the simulator up to ``--distinct`` (default 2,000); a larger batch repeats them, each
line verified on its own (nothing is remembered from one reply to the next but the address of a recovered key).
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from coincurve import PublicKey
from eth_hash.auto import keccak

from phalanb.vllm.signatures import fetch_signature
from phalanb.audit import fastpath as _batchscan, batch
from phalanb.audit.batch import audit, write_batch
from phalanb.policy import Policy
from phalanb.session import Session, Settings

# Run in a fresh process: the audit alone, so its peak RSS is the audit's, not the recording's. The process's own
# peak is VmHWM: ru_maxrss survives exec on Linux and would report this benchmark's size at the fork instead.
_MEMORY_PROBE = """
import json, multiprocessing, resource, sys, time
from phalanb.audit.batch import audit

def peak_kb():
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

before = peak_kb()
t = time.perf_counter()
df = audit([sys.argv[1]], workers=int(sys.argv[2]), progress=False, trust="simulated")
took = time.perf_counter() - t
while multiprocessing.active_children():  # the audit does not wait for its workers to exit: reap them to measure them
    time.sleep(0.01)
print(json.dumps({"rows": len(df), "verified": int((df["verdict"] == "verified").sum()), "seconds": took,
                  "self_kb": peak_kb(), "imports_kb": before,
                  "children_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


_READ: list = []  # replies read before the timed region (shared with the forked check processes)
_CELLS: list = []  # the attestation's row cells


def _check_share(share: int, shares: int) -> list[tuple]:
    """phalanb's per-reply check of every ``shares``-th reply from ``share``: the finished rows, as a worker
    sends them back."""
    cells = _CELLS[0]
    return [cells.cells(batch._own(0, r.chat_id, r.request_bytes, r.response_bytes, r.stream, r.signature, None,
                                   r.timings, False)) for r in _READ[share::shares]]


def raw_loop(texts: list[tuple[bytes, bytes]]) -> None:
    for message, sig in texts:
        digest = keccak(b"\x19Ethereum Signed Message:\n" + str(len(message)).encode() + message)
        key = PublicKey.from_signature_and_message(sig[:64] + bytes((sig[64] - 27,)), digest, hasher=None)
        keccak(key.format(compressed=False)[1:])[-20:]


def record(distinct: int) -> tuple[object, list]:
    with Session(Settings(protocol="legacy", sim_options={"seed": 1, "ttft_ms": 0, "tokens_per_second": 0,
                                       "max_signatures": distinct + 10})) as s:
        first = s.chat_and_verify("benchmark", max_tokens=8, stream=False)
        replies = [(first.exchange, first.signature)]
        for i in range(distinct - 1):
            ex = s.client.chat(f"benchmark {i}", max_tokens=8, stream=i % 2 == 0)
            replies.append((ex, fetch_signature(s.client, ex.chat_id)))
    return first, replies


def memory(path: Path, workers: int) -> dict:
    out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(path), str(workers)], capture_output=True,
                         text=True, check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="replies in the batch (default 10,000)")
    ap.add_argument("--distinct", type=int, default=2_000, help="replies recorded from the simulator")
    ap.add_argument("--repeat", type=int, default=5, help="rounds; each figure is their median")
    args = ap.parse_args()

    t0 = time.perf_counter()
    first, replies = record(min(args.n, args.distinct))
    print(f"recorded {len(replies)} simulator replies in {time.perf_counter() - t0:.1f} s")

    with tempfile.TemporaryDirectory() as tmp:
        def write(name: str) -> Path:
            return write_batch(Path(tmp) / name, report=first.attestation.report, nonce=first.attestation.nonce,
                               policy=first.policy, verified_at=first.verified_at,
                               collateral=first.online.collateral, nras_response=first.online.nras_response,
                               jwks=first.online.jwks, replies=itertools.islice(itertools.cycle(replies), args.n))

        path, framed = write("batch.jsonl"), write("batch.pbatch")
        size, framed_size = path.stat().st_size, framed.stat().st_size
        print(f"batch files: {args.n} replies, {size / 1e6:.1f} MB as JSON lines, {framed_size / 1e6:.1f} MB "
              f"framed; {os.cpu_count()} CPUs ({_cpu_model()}), Python {platform.python_version()}")

        # The baseline's inputs, prepared outside the timed region: the signed texts and signatures.
        texts = []
        with path.open("rb") as fh:
            fh.readline()
            for line in fh:
                sig = json.loads(line)["signature"]
                texts.append((sig["text"].encode(), bytes.fromhex(sig["signature"][2:])))
        # phalanb's own per-reply check alone — both hashes, recovery, binding, verdict row — on replies already
        # read (up to 10,000), in this process and in two processes that share them by fork (nothing pickled but
        # the rows coming back): the "full per-reply check", beside the end-to-end audit of the file.
        unit = batch._Batch(path, None, Policy(trust="simulated"))
        first_span = next(_batchscan.spans(str(path), unit.body_start, size=40 << 20))
        _READ[:] = [r for _, r in _batchscan.read_span(str(path), *first_span)[1]][:10_000]
        _CELLS.append(unit.side(_READ[0].signature.signing_address).cells)
        fork = multiprocessing.get_context("fork")
        pools = [ProcessPoolExecutor(1, mp_context=fork) for _ in range(2)]
        for pool in pools:
            pool.submit(len, ()).result()  # started

        def check1() -> int:
            return len(_check_share(0, 1))

        def check2() -> int:
            rows = [row for f in [p.submit(_check_share, i, 2) for i, p in enumerate(pools)] for row in f.result()]
            assert len(rows) == len(_READ) and {r[1] for r in rows} == {"verified"}
            return len(rows)

        def audit_with(workers: int, path: Path) -> Any:
            def run() -> int:
                df = audit([path], workers=workers, progress=False, trust="simulated")
                assert len(df) == args.n and (df["verdict"] == "verified").all(), df["verdict"].value_counts()
                return len(df)
            return run

        def rate(work: Any) -> float:
            t = time.perf_counter()
            done = work()
            return done / (time.perf_counter() - t)

        def raw() -> int:
            raw_loop(texts)
            return len(texts)

        # Each figure is timed between two runs of the raw loop, and set against their mean rate: on a shared
        # machine the load drifts, and a ratio is only fair against the baseline measured at the same moment.
        kinds = {"check1": check1, "check2": check2, "lines1": audit_with(1, path), "lines2": audit_with(2, path),
                 "1": audit_with(1, framed), "2": audit_with(2, framed)}
        rounds: dict[str, list[float]] = {k: [] for k in ("raw", *kinds)}
        ratios: dict[str, list[float]] = {k: [] for k in kinds}
        for _ in range(args.repeat):
            before = rate(raw)
            for k, work in kinds.items():
                got = rate(work)
                after = rate(raw)
                rounds[k].append(got)
                rounds["raw"].append(after)
                ratios[k].append(got / ((before + after) / 2))
                before = after
        for pool in pools:
            pool.shutdown()
        texts.clear()
        del _READ[:]

        med = {k: statistics.median(v) for k, v in ratios.items()}
        rng = {k: f"{min(v):.2f}-{max(v):.2f}" for k, v in ratios.items()}
        print(f"\n{args.repeat} round(s); replies/s (median), ratio to the raw loop run around it (median, range)")
        print(f"raw loop: keccak + coincurve recovery + keccak -> address      {statistics.median(rounds['raw']):8.0f}")
        labels = {"check1": "per-reply check, replies already read, 1 process",
                  "check2": "per-reply check, replies already read, 2 processes",
                  "lines1": "audit of the JSON-lines file end to end, 1 worker",
                  "lines2": "audit of the JSON-lines file end to end, 2 workers",
                  "1": "audit of the framed file end to end, 1 worker",
                  "2": "audit of the framed file end to end, 2 workers"}
        for k, label in labels.items():
            print(f"phalanb {label:<52} {statistics.median(rounds[k]):8.0f}   {med[k]:.2f}  ({rng[k]})")

        print("\nmemory (the audit alone, in a fresh process):")
        for file, file_size in ((path, size), (framed, framed_size)):
            for workers in (1, 2):
                m = memory(file, workers)
                assert m["rows"] == m["verified"] == args.n, m
                worker = f", largest other worker {m['children_kb'] / 1024:.0f} MB" if workers > 1 else ""
                print(f"  {file.suffix}, {workers} worker(s): {m['rows']} rows in {m['seconds']:.1f} s, peak RSS "
                      f"{m['self_kb'] / 1024:.0f} MB ({m['imports_kb'] / 1024:.0f} MB of it before the audit "
                      f"began: Python and the imports){worker}; input file {file_size / 1e6:.0f} MB")
    print(f"per-reply check on replies already read: 1 process {med['check1']:.2f}, 2 processes "
          f"{med['check2']:.2f}")
    print(f"JSON-lines batch end to end: 1 worker {med['lines1']:.2f}, 2 workers {med['lines2']:.2f}")
    print("framed batch end to end, the workers reading their share of the file (the issue's figure; target "
          "1 worker >= 0.85, 2 workers >= 1.6):")
    print(f"ratios to the raw loop: 1 worker {med['1']:.2f}, 2 workers {med['2']:.2f}")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
