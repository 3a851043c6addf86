"""The nvidia table of fixtures/README.md, as data (imported by the GPU tests; the fixtures live in conftest)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from phalanb.gpu import parse_files, parse_payload


@dataclass(frozen=True)
class Record:
    """One row of the nvidia table: where the evidence is, what it must decode to, how it must verify."""

    name: str
    evidence: str
    chain: str | None
    gpus: int
    arch: str
    nonce_prefix: str
    driver: str
    vbios: str
    signature: str = "pass"
    chain_result: str = "pass"
    fwid: str = "pass"

    def load(self, fixtures: Path):
        base = fixtures / "nvidia"
        if self.chain is None:
            return parse_payload((base / self.evidence).read_text())
        return parse_files(base / self.evidence, base / self.chain)


NVIDIA_TABLE = [
    Record("nvtrust-hopper", "nvtrust/hopperAttestationReport.txt", "nvtrust/hopperCertChain.txt", 1, "HOPPER",
           "931d8dd0add2", "550.90.07", "96.00.9F.00.01"),
    Record("trustee-coco-trailing-byte", "trustee/hopper_coco_report1.txt", "trustee/hopper_coco_certs1.txt", 1,
           "HOPPER", "87d8e24ab336", "580.95.05", "96.00.74.00.1A"),
    Record("sdk-hopper-580", "nvidia_attestation_sdk/hopperAttestationReport.txt",
           "nvidia_attestation_sdk/hopperCertChain.txt", 1, "HOPPER", "5bb22e377702", "580.159.03", "96.00.74.00.20"),
    Record("sdk-sample-hopper-old-driver", "nvidia_attestation_sdk/sample_hopperAttestationReport.txt",
           "nvidia_attestation_sdk/sample_hopperCertChain.txt", 1, "HOPPER", "27a328247bf7", "535.86.09",
           "96.00.5E.00.01", fwid="skipped"),
    Record("sdk-sample-invalid-signature", "nvidia_attestation_sdk/sample_hopperAttestationReportInvalidSignature.txt",
           "nvidia_attestation_sdk/sample_hopperCertChain.txt", 1, "HOPPER", "931d8dd0add2", "560.00",
           "96.00.A5.00.01", signature="fail", fwid="fail"),
    Record("sdk-sample-blackwell", "nvidia_attestation_sdk/sample_blackwellAttestationReport.txt",
           "nvidia_attestation_sdk/sample_blackwellCertChain.txt", 1, "BLACKWELL", "931d8dd0add2", "575.32",
           "97.00.88.00.0F"),
    Record("sdk-json-hopper", "nvidia_attestation_sdk/hopper_evidence.json", None, 1, "HOPPER", "e97b23a17180",
           "590.12", "96.00.A5.00.01"),
    Record("sdk-json-590-12", "nvidia_attestation_sdk/evidence_hopper_590_12.json", None, 1, "HOPPER",
           "e97b23a17180", "590.12", "96.00.A5.00.01"),
    Record("sdk-json-multi-gpu", "nvidia_attestation_sdk/multi_gpu_hopper.json", None, 4, "HOPPER", "e97b23a17180",
           "590.12", "96.00.A5.00.01"),
    Record("chutes-api-8-gpus", "chutes_api/evidence.json", None, 8, "HOPPER", "931d8dd0add2", "580.65.06",
           "96.00.CF.00.02"),
    Record("teep-venice-8-gpus", "teep_venice_eat/nvidia_eat_hopper.json", None, 8, "HOPPER", "dec6216ca055",
           "570.172.08", "96.00.CF.00.02"),
]

BROKEN_CHAINS = {
    "trustee/hopper_cert_chain_case2.txt": "only the root",
    "trustee/hopper_cert_chain_case3.txt": "middle certificate is missing",
    "trustee/hopper_cert_chain_case4.txt": "leaf missing",
}

NEARDIRECT = "reports/neardirect-qwen-2026-06"
CHUTES = "reports/redpill-chutes-deepseek-2026-06"
