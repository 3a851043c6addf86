"""Time phalanb's offline verification of the 8-GPU NEAR payload beside the naive walk of its cryptography.

    python benchmarks/bench_gpu.py [--fixtures ../shared/fixtures] [--repeat 50]

phalanb path: ``verify_payload`` on the parsed payload (8 SPDM signatures by offset; the chains to the pinned root
with ``cryptography.x509.verification``, the upper three certificates the eight GPUs share validated once and each
GPU's leaf and GSP BROM validated to them; FWID, nonces, agreement, the checks and their evidence). "cold" forgets
validated upper chains before every call (the upper chain validated once per payload: 26 P-384 verifications);
"warm" is the steady state of a process that validated it before, at the same time and under the same root
(24). Also shown: ``parse_payload`` + ``verify_payload`` (JSON, base64, SPDM decode with offsets, PEM chains).

Baseline, measured in the same run on the same bytes, everything decoded beforehand: the naive walk — 8 full
five-certificate chain validations and 8 SPDM signatures, 40 P-384 verifications of which only 26 are distinct (so
about 0.65x is the limit for code that does each distinct verification once). Rounds interleave the paths, so drift
on a shared machine hits all of them alike; each figure is the median.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from pathlib import Path

import cryptography
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509 import verification as xv

from _rounds import rounds
from phalanb.gpu import nvidia_device_identity_ca, parse_payload, verify_payload
from phalanb.gpu.verify import clear_chain_cache

REPO = Path(__file__).resolve().parent.parent


def ms(samples: list[float]) -> str:
    return f"median {statistics.median(samples) * 1e3:7.2f} ms  (min {min(samples) * 1e3:.2f}, " \
           f"max {max(samples) * 1e3:.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", type=Path,
                    default=Path(os.environ.get("PHALANB_FIXTURES", REPO.parent / "shared" / "fixtures")))
    ap.add_argument("--repeat", type=int, default=50)
    args = ap.parse_args()

    base = args.fixtures / "reports/neardirect-qwen-2026-06"
    report = json.loads((base / "attestation_report.json").read_text())
    nonce = json.loads((base / "manifest.json").read_text())["nonce_hex"]
    text = report["nvidia_payload"]
    root = nvidia_device_identity_ca()

    payload = parse_payload(text)
    now = payload.gpus[0].certificates[0].not_valid_before_utc.replace(year=2026)  # one clock for every path

    def phalanb_full() -> None:
        result = verify_payload(parse_payload(text), root=root, expected_nonce=nonce, at=now)
        assert result.verdict().status == "verified"

    def phalanb_verify_only() -> None:
        verify_payload(payload, root=root, expected_nonce=nonce, at=now)

    def phalanb_verify_cold() -> None:
        clear_chain_cache()
        verify_payload(payload, root=root, expected_nonce=nonce, at=now)

    # The unavoidable work, prepared outside the timed region: keys, DER signatures, signed bytes, certificates.
    jobs = []
    for g in payload.gpus:
        sig = g.spdm.signature
        der = encode_dss_signature(int.from_bytes(sig[:48], "big"), int.from_bytes(sig[48:], "big"))
        jobs.append((g.certificates[0].public_key(), der, g.spdm.signed_bytes, g.certificates))

    def raw_crypto() -> None:
        verifier = xv.PolicyBuilder().store(xv.Store([root.certificate])).time(now).build_client_verifier()
        for key, der, signed, certs in jobs:
            key.verify(der, signed, ec.ECDSA(hashes.SHA384()))
            verifier.verify(certs[0], list(certs[1:-1]))

    def raw_signatures() -> None:
        for key, der, signed, _ in jobs:
            key.verify(der, signed, ec.ECDSA(hashes.SHA384()))

    def raw_chains() -> None:
        verifier = xv.PolicyBuilder().store(xv.Store([root.certificate])).time(now).build_client_verifier()
        for _, _, _, certs in jobs:
            verifier.verify(certs[0], list(certs[1:-1]))

    def raw_distinct() -> None:
        # Each distinct verification once: one full chain, then each leaf + BROM to the validated ICA.
        verifier = xv.PolicyBuilder().store(xv.Store([root.certificate])).time(now).build_client_verifier()
        anchored = xv.PolicyBuilder().store(xv.Store([jobs[0][3][2]])).time(now).build_client_verifier()
        for i, (key, der, signed, certs) in enumerate(jobs):
            key.verify(der, signed, ec.ECDSA(hashes.SHA384()))
            if i == 0:
                verifier.verify(certs[0], list(certs[1:-1]))
            else:
                anchored.verify(certs[0], [certs[1]])

    r = rounds({"verify": phalanb_verify_only, "cold": phalanb_verify_cold, "full": phalanb_full,
                "naive": raw_crypto, "sigs": raw_signatures,
                "chains": raw_chains, "distinct": raw_distinct}, args.repeat)

    print(f"NVIDIA GPU evidence, 8x H100 (neardirect-qwen-2026-06), {args.repeat} rounds, {os.cpu_count()} CPUs")
    print(f"python {platform.python_version()}, cryptography {cryptography.__version__}, {platform.machine()}")
    print()
    print(f"phalanb verify_payload (parsed), warm      {ms(r['verify'])}")
    print(f"phalanb verify_payload (parsed), cold      {ms(r['cold'])}")
    print(f"phalanb parse_payload + verify_payload     {ms(r['full'])}")
    print(f"naive walk: 8 chains + 8 sigs (40 P-384)   {ms(r['naive'])}")
    print(f"  of which 8 ECDSA P-384 verifications     {ms(r['sigs'])}")
    print(f"  of which 8 chain validations             {ms(r['chains'])}")
    print(f"raw, each distinct verification once (26)  {ms(r['distinct'])}")
    print()
    # Ratios are taken round by round (same moment, same machine load) and their median reported.
    def ratio(name: str) -> tuple[float, float, float]:
        q = statistics.quantiles([a / b for a, b in zip(r[name], r["naive"])], n=4)
        return q[1], q[0], q[2]

    full, distinct, verify, cold = ratio("full"), ratio("distinct"), ratio("verify"), ratio("cold")
    print("ratios to the naive walk, median of the rounds' ratios (interquartile range):")
    print(f"  raw, each distinct verification once (the limit)  {distinct[0]:.2f}  ({distinct[1]:.2f}-{distinct[2]:.2f})")
    print(f"  phalanb parse + verify, warm                      {full[0]:.2f}  ({full[1]:.2f}-{full[2]:.2f})")
    print(f"  phalanb verify, cold (upper chain once per payload) {cold[0]:.2f}  ({cold[1]:.2f}-{cold[2]:.2f})")
    print(f"  phalanb verify, warm (upper chain remembered)     {verify[0]:.2f}  ({verify[1]:.2f}-{verify[2]:.2f})")
    print(f"ratio to the naive chain walk: {verify[0]:.2f}")


if __name__ == "__main__":
    main()
