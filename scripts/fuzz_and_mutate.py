#!/usr/bin/env python
"""The full fuzz and mutation run of issue 8 (not part of pytest; the tests run a bounded sample of the same).

1. Fuzz: ``--fuzz`` random inputs (default 100,000) spread over every parser by weight — random bytes, structured
   mutations of the real fixtures (valid framing with random length fields, JSON shapes with random values, NRAS
   answers signed with a throwaway key so the claims reach the checks) — plus a truncation at every offset of one
   quote, one SPDM report and the CCEL log. Every input must parse or raise ``PhalanbError``, within 2 s.
2. Mutation matrix: every byte of every region of every real quote in ``tdx/ground_truth.json`` and of the field
   shapes' quotes (Tinfoil, Chutes evidence API, a NEAR AI Cloud gateway), of every GPU report of the nvidia table
   (evidence and certificate chain), of the report fields those shapes bind (``fuzzkit.BOUND_FIELDS``: a gateway's
   key, nonce and TLS fingerprint, Tinfoil v3's report_data inputs, a Chutes e2e key), of a few recorded
   simulator exchanges and of ACI's bound artefacts (a receipt and its signature, a session, the real report's
   workload keyset, the sealed values of an E2EE reply, buffered and streamed), flipped
   with each mask of ``--masks``. A flip inside a signed region must turn the result to failed; flips outside
   (quote padding, bytes between PEM certificates, SPDM trailing bytes) are counted and allowed to pass.

Prints inputs per parser, rejections by error class, unexpected exceptions, hangs, peak memory, silent passes and
the runtime; exits 1 if any of unexpected / hangs / silent passes is not zero.

    python scripts/fuzz_and_mutate.py                       # the full run (2 workers)
    python scripts/fuzz_and_mutate.py --fuzz 2000 --masks 01 --quick   # a smoke run
"""

from __future__ import annotations

import argparse
import base64
import collections
import multiprocessing as mp
import os
import random
import resource
import sys
import time
import warnings
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

import fuzzkit as fk  # noqa: E402

FIXTURES = Path(os.environ.get("PHALANB_FIXTURES", REPO.parent / "shared" / "fixtures"))
FUZZ_BOUND_S = 2.0      # per fuzz input
MUTATION_BOUND_S = 5.0  # per mutated artefact (re-parse and full re-verification)
MEMORY_HEADROOM = 2 << 30  # a worker may grow 2 GiB beyond its size after imports; beyond is "unbounded memory"

_CORPUS: fk.Corpus | None = None
_RECORDED: list[fk.Recorded] = []
_JUDGES: dict = {}


def _init(bundles: list[tuple[str, dict, str]]) -> None:
    global _CORPUS, _RECORDED
    warnings.simplefilter("ignore")  # cryptography warns about the odd certificates mutations make; not findings
    _CORPUS = fk.Corpus(FIXTURES)
    fk.targets()
    _RECORDED = [fk.Recorded(n, b, s) for n, b, s in bundles]
    # Cap the address space: a parser that allocates without bound gets a MemoryError (an unexpected exception,
    # reported) instead of taking the machine down.
    with open("/proc/self/statm") as fh:
        size = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (size + MEMORY_HEADROOM, resource.RLIM_INFINITY))


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# -- phase 1: fuzz ---------------------------------------------------------------------------------------------

def _fuzz_chunk(task: tuple[str, str, list]) -> dict:
    """Run one chunk of inputs of one target. ``kind`` is "random" (items are seeds) or "truncate" (items are
    (seed name, length))."""
    kind, name, items = task
    target = fk.targets()[name]
    out = {"target": name, "tried": 0, "truncations": len(items) if kind == "truncate" else 0, "parsed": 0, "rejected": collections.Counter(), "unexpected": [],
           "hangs": [], "slowest": 0.0}
    for item in items:
        if kind == "random":
            rng = random.Random(zlib.crc32(f"{name}:{item}".encode()))
            value = target.generate(rng, _CORPUS)
        else:
            value = fk.truncated_input(_CORPUS, item[0], item[1])
        o = fk.run_one(target.call, value, bound=FUZZ_BOUND_S)
        out["tried"] += 1
        out["slowest"] = max(out["slowest"], o.seconds)
        if o.kind == "parsed":
            out["parsed"] += 1
        elif o.kind == "rejected":
            out["rejected"][o.error] += 1
        elif o.kind == "hang":
            out["hangs"].append((item, o.message))
        else:
            out["unexpected"].append((item, o.error, o.message))
    out["rss"] = _peak_rss()
    return out


def fuzz_tasks(total: int, chunk: int = 250) -> list[tuple[str, str, list]]:
    targets = fk.targets()
    weight = sum(t.weight for t in targets.values())
    tasks = []
    for name, t in targets.items():
        n = max(1, round(total * t.weight / weight))
        seeds = list(range(n))
        tasks += [("random", name, seeds[i:i + chunk]) for i in range(0, n, chunk)]
    for name, seed, length in fk.truncations(fk.Corpus(FIXTURES)):
        if tasks[-1][0] == "truncate" and tasks[-1][1] == name and len(tasks[-1][2]) < chunk * 4:
            tasks[-1][2].append((seed, length))
        else:
            tasks.append(("truncate", name, [(seed, length)]))
    return tasks


# -- phase 2: the mutation matrix ------------------------------------------------------------------------------

def _judge(kind: str, key: str):
    if (kind, key) not in _JUDGES:
        if kind == "tdx":
            seed = next(q for q in _CORPUS.quotes if q.name == key)
            _JUDGES[kind, key] = (seed.raw, fk.QuoteJudge(seed))
        elif kind in ("gpu.evidence", "gpu.chain"):
            seed = next(g for g in _CORPUS.gpus if g.name == key)
            j = fk.GpuJudge(seed)
            _JUDGES[kind, key] = (seed.evidence, j.evidence) if kind == "gpu.evidence" else (seed.chain_pem, j.chain)
        elif kind == "report":
            source, path, encoding, _cap = fk.BOUND_FIELDS[int(key)]
            j = fk.ReportFieldJudge(_CORPUS, source, path, encoding)
            _JUDGES[kind, key] = (j.data, j)
        elif kind == "aci":
            _JUDGES[kind, key] = fk.aci_artefact(_CORPUS, key)
        else:
            rec = next(r for r in _RECORDED if r.name == key)
            region = kind.split(":", 1)[1]
            data = dict(rec.regions())[region]
            _JUDGES[kind, key] = (data, lambda d, rec=rec, region=region: rec.judge(region, d))
    return _JUDGES[kind, key]


def _mutation_chunk(task: tuple) -> dict:
    kind, key, region, signed, start, end, masks = task
    data, judge = _judge(kind, key)
    out = {"kind": kind.split(":")[0], "signed": signed, "tried": 0, "failed": 0, "passed": 0, "unexpected": [],
           "silent": [], "hangs": []}
    for i in range(start, end):
        for mask in masks:
            out["tried"] += 1
            try:
                with fk.time_bound(MUTATION_BOUND_S):
                    result = judge(fk.flip(data, i, mask))
            except fk.Hang as exc:
                out["hangs"].append((key, region, i, mask, str(exc)))
                continue
            if result == "failed":
                out["failed"] += 1
            elif result == "passed":
                out["passed"] += 1
                if signed:
                    out["silent"].append((key, region, i, mask))
            else:
                out["unexpected"].append((key, region, i, mask, result))
    out["rss"] = _peak_rss()
    return out


def mutation_tasks(corpus: fk.Corpus, recorded: list[fk.Recorded], masks: tuple[int, ...], *, quick: bool,
                   chunk: int = 400) -> list[tuple]:
    tasks = []

    def add(kind, key, regions):
        for r in regions:
            for s in range(r.start, r.end, chunk):
                tasks.append((kind, key, r.name, r.signed, s, min(r.end, s + chunk), masks))

    quotes = corpus.quotes[:2] if quick else corpus.quotes
    gpus = corpus.gpus[:2] if quick else corpus.gpus
    for q in quotes:
        add("tdx", q.name, fk.quote_regions(q.raw))
    seen_chains: set[bytes] = set()
    for g in gpus:
        add("gpu.evidence", g.name, fk.spdm_regions(g.evidence))
        # A chain several GPUs share (identical bytes) is one signed artefact: flipped once.
        if g.chain_pem not in seen_chains:
            seen_chains.add(g.chain_pem)
            add("gpu.chain", g.name, fk.chain_regions(g.chain_pem))
    for rec in recorded:
        for region, data in rec.regions():
            add(f"exchange:{region}", rec.name, [fk.Region(region, 0, len(data))])
    # Issue 12: the values the field shapes' report_data commits to (gateway key, nonce and TLS fingerprint, Tinfoil
    # v3 inputs, a Chutes e2e key). Sizes are known without verifying: the judge is built in the worker.
    for i, (source, path, encoding, cap) in enumerate(fk.BOUND_FIELDS if not quick else fk.BOUND_FIELDS[:3]):
        value = corpus.reports[source.split("/", 1)[1]] if source.startswith("reports/") else \
            corpus.field_reports[source.split("/", 1)[1]][0]
        for key in path:
            value = value[key]
        size = len(bytes.fromhex(value.removeprefix("0x"))) if encoding == "hex" else len(base64.b64decode(value))
        add("report", str(i), [fk.Region(".".join(map(str, path)), 0, min(size, cap or size))])
    # Issue 19: ACI receipts (document and signature), sessions, the real report's keyset and E2EE replies (the
    # sealed values, buffered and streamed): every byte is bound by a signature, a digest or an AEAD tag.
    for name in fk.ACI_ARTEFACTS:
        add("aci", name, fk.aci_regions(corpus, name))
    return tasks


# -- the run ---------------------------------------------------------------------------------------------------

def _pool_map(pool, fn, tasks, label: str):
    it = pool.imap_unordered(fn, tasks)
    done = 0
    t0 = time.time()
    while True:
        try:
            # A worker stuck in C code never comes back: give up on the run rather than wait forever.
            yield it.next(timeout=600)
        except StopIteration:
            return
        except mp.TimeoutError:
            raise SystemExit(f"{label}: no chunk finished in 600 s — a hang the per-input alarm could not break")
        done += 1
        if done % max(1, len(tasks) // 10) == 0:
            print(f"  [{fk.now_utc()}] {label}: {done}/{len(tasks)} chunks, {time.time() - t0:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fuzz", type=int, default=100_000, help="random fuzz inputs (truncations come on top)")
    ap.add_argument("--masks", default="01,20,ff", help="XOR masks of the single-byte flips, hex, comma-separated")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--quick", action="store_true", help="mutation matrix over 2 quotes and 2 GPUs only")
    args = ap.parse_args(argv)
    masks = tuple(int(m, 16) for m in args.masks.split(","))
    warnings.simplefilter("ignore")
    started = time.time()
    print(f"phalanb fuzz and mutation run, fixtures {FIXTURES}, {args.workers} workers, masks "
          f"{', '.join(f'0x{m:02x}' for m in masks)}")

    corpus = fk.Corpus(FIXTURES)
    recorded = fk.record_exchanges(n_stream=2, n_json=1, ed25519=True)
    print(f"recorded {len(recorded)} simulator exchanges: " + ", ".join(f"{r.name} ({r.status})" for r in recorded))
    bundles = [(r.name, r.bundle, r.status) for r in recorded]
    bad = 0
    peak = _peak_rss()
    with mp.get_context("fork").Pool(args.workers, initializer=_init, initargs=(bundles,)) as pool:
        # ---- fuzz
        t0 = time.time()
        per: dict[str, dict] = {}
        for r in _pool_map(pool, _fuzz_chunk, fuzz_tasks(args.fuzz), "fuzz"):
            p = per.setdefault(r["target"], {"tried": 0, "truncations": 0, "parsed": 0,
                                             "rejected": collections.Counter(), "unexpected": [], "hangs": [],
                                             "slowest": 0.0})
            for k in ("tried", "truncations", "parsed"):
                p[k] += r[k]
            p["rejected"].update(r["rejected"])
            p["unexpected"] += r["unexpected"]
            p["hangs"] += r["hangs"]
            p["slowest"] = max(p["slowest"], r["slowest"])
            peak = max(peak, r["rss"])
        fuzz_s = time.time() - t0
        total = sum(p["tried"] for p in per.values())
        unexpected = sum(len(p["unexpected"]) for p in per.values())
        hangs = sum(len(p["hangs"]) for p in per.values())
        by_class: collections.Counter = collections.Counter()
        cuts = sum(p["truncations"] for p in per.values())
        print(f"\n== FUZZ: {total:,} inputs in {fuzz_s:.0f} s ({total - cuts:,} generated: random bytes and "
              f"structured mutations of the fixtures; {cuts:,} truncations at every offset) ==")
        print(f"{'parser':<40} {'inputs':>8} {'of them cuts':>12} {'parsed':>8} {'rejected':>9} {'unexpected':>10} "
              f"{'hangs':>6} {'slowest':>8}")
        for name in fk.targets():
            p = per[name]
            rej = sum(p["rejected"].values())
            by_class.update(p["rejected"])
            print(f"{name:<40} {p['tried']:>8,} {p['truncations']:>12,} {p['parsed']:>8,} {rej:>9,} {len(p['unexpected']):>10} "
                  f"{len(p['hangs']):>6} {p['slowest']:>7.2f}s")
        print("rejections by error class: " + ", ".join(f"{k} {v:,}" for k, v in by_class.most_common()))
        print(f"unexpected exceptions: {unexpected}")
        print(f"hangs (> {FUZZ_BOUND_S:g} s): {hangs}")
        for name, p in per.items():
            for item in p["unexpected"][:5]:
                print(f"  UNEXPECTED {name} input {item[0]}: {item[1]}: {item[2]}")
            for item in p["hangs"][:5]:
                print(f"  HANG {name} input {item[0]}: {item[1]}")
        bad += unexpected + hangs

        # ---- mutation matrix
        t0 = time.time()
        tasks = mutation_tasks(corpus, recorded, masks, quick=args.quick)
        agg: dict[tuple[str, bool], dict] = {}
        silent, m_unexpected, m_hangs = [], [], []
        for r in _pool_map(pool, _mutation_chunk, tasks, "mutation"):
            a = agg.setdefault((r["kind"], r["signed"]), {"tried": 0, "failed": 0, "passed": 0})
            for k in a:
                a[k] += r[k]
            silent += r["silent"]
            m_unexpected += r["unexpected"]
            m_hangs += r["hangs"]
            peak = max(peak, r["rss"])
        mut_s = time.time() - t0
        n_artefacts = (len(corpus.quotes) if not args.quick else 2, len(corpus.gpus) if not args.quick else 2,
                       len(recorded), len(fk.BOUND_FIELDS) if not args.quick else 3, len(fk.ACI_ARTEFACTS))
        print(f"\n== MUTATION MATRIX: {sum(a['tried'] for a in agg.values()):,} single-byte flips in {mut_s:.0f} s "
              f"({n_artefacts[0]} quotes, {n_artefacts[1]} GPU reports with their chains, {n_artefacts[2]} "
              f"exchanges, {n_artefacts[3]} bound report fields, {n_artefacts[4]} ACI artefacts (receipt, its "
              f"signature, session, report keyset, E2EE replies); every byte x {len(masks)} masks) ==")
        print(f"{'artefact':<14} {'region':<9} {'flips':>9} {'failed':>9} {'passed':>8}")
        for (kind, signed), a in sorted(agg.items()):
            print(f"{kind:<14} {'signed' if signed else 'unsigned':<9} {a['tried']:>9,} {a['failed']:>9,} "
                  f"{a['passed']:>8,}")
        print(f"silent passes (signed region, still passed): {len(silent)}")
        print(f"unexpected exceptions: {len(m_unexpected)}")
        print(f"hangs (> {MUTATION_BOUND_S:g} s): {len(m_hangs)}")
        for s in silent[:10]:
            print(f"  SILENT PASS {s}")
        for u in m_unexpected[:10]:
            print(f"  UNEXPECTED {u}")
        for h in m_hangs[:10]:
            print(f"  HANG {h}")
        bad += len(silent) + len(m_unexpected) + len(m_hangs)

    peak = max(peak, _peak_rss(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
    print(f"\npeak memory (largest process RSS): {peak / 2**20:.0f} MiB")
    print(f"total runtime: {time.time() - started:.0f} s")
    print("RESULT: " + ("OK — 0 unexpected exceptions, 0 hangs, 0 silent passes" if not bad else f"{bad} PROBLEMS"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
