"""Time phalanb's offline verification of the 8-GPU NEAR payload beside the raw ``cryptography`` work it needs.

    python benchmarks/bench_gpu.py [--fixtures ../shared/fixtures] [--repeat 50]

phalanb path: ``parse_payload`` (JSON, base64, SPDM decode with offsets, PEM chains) + ``verify_payload`` (8 SPDM
signatures by offset, 8 five-certificate chains to the pinned root with ``cryptography.x509.verification``, FWID,
nonces, agreement). Baseline, measured in the same run on the same bytes: the 8 ECDSA P-384 verifications and the 8
chain validations alone, with everything decoded beforehand. The ratio is what phalanb's parsing, checks and
reporting cost on top of the cryptography that cannot be avoided.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import cryptography
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509 import verification as xv

from phalanb.gpu import nvidia_device_identity_ca, parse_payload, verify_payload

REPO = Path(__file__).resolve().parent.parent


def timeit(fn, repeat: int) -> list[float]:
    fn()  # warm up (imports, lazy decoding, caches)
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


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

    def phalanb_full() -> None:
        result = verify_payload(parse_payload(text), root=root, expected_nonce=nonce)
        assert result.verdict().status == "verified"

    payload = parse_payload(text)

    def phalanb_verify_only() -> None:
        verify_payload(payload, root=root, expected_nonce=nonce)

    # The unavoidable work, prepared outside the timed region: keys, DER signatures, signed bytes, certificates.
    jobs = []
    for g in payload.gpus:
        sig = g.spdm.signature
        der = encode_dss_signature(int.from_bytes(sig[:48], "big"), int.from_bytes(sig[48:], "big"))
        jobs.append((g.certificates[0].public_key(), der, g.spdm.signed_bytes, g.certificates))
    now = payload.gpus[0].certificates[0].not_valid_before_utc.replace(year=2026)

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

    full = timeit(phalanb_full, args.repeat)
    verify_only = timeit(phalanb_verify_only, args.repeat)
    base_all = timeit(raw_crypto, args.repeat)
    sigs = timeit(raw_signatures, args.repeat)
    chains = timeit(raw_chains, args.repeat)

    print(f"NVIDIA GPU evidence, 8x H100 (neardirect-qwen-2026-06), {args.repeat} runs each")
    print(f"python {platform.python_version()}, cryptography {cryptography.__version__}, {platform.machine()}")
    print()
    print(f"phalanb parse + verify (8 GPUs)          {ms(full)}")
    print(f"phalanb verify only (already parsed)     {ms(verify_only)}")
    print(f"raw cryptography: 8 sigs + 8 chains      {ms(base_all)}")
    print(f"  of which 8 ECDSA P-384 verifications   {ms(sigs)}")
    print(f"  of which 8 chain validations           {ms(chains)}")
    print()
    ratio_full = statistics.median(full) / statistics.median(base_all)
    ratio_verify = statistics.median(verify_only) / statistics.median(base_all)
    print(f"ratio phalanb (parse + verify) / raw cryptography: {ratio_full:.2f}x")
    print(f"ratio phalanb (verify only)    / raw cryptography: {ratio_verify:.2f}x")


if __name__ == "__main__":
    main()
