"""NVIDIA GPU evidence (SPEC §9), in three rooms kept apart:

- parse: :mod:`.payload` (every ``nvidia_payload`` variant) and :mod:`.spdm` (the SPDM bytes, with offsets);
- verify: :mod:`.verify` (signature, chain to a pinned root, FWID, nonce, agreement; offline) and :mod:`.nras`
  (NVIDIA's remote appraisal: fetch online, verify its ES384 tokens offline);
- simulate: :mod:`.sim` (GPUs and an NRAS for the local service; their root is never trusted by default).

Reference measurements (NVIDIA's signed RIMs), kept apart the same way: :mod:`.rim` reads them, :mod:`.rim_verify`
and :mod:`.ocsp` verify them (XML signature, chain to the pinned CoRIM root at the judged time, saved OCSP
answers), :mod:`.appraise` compares them with a GPU's measurements (``gpu.measurements``), :mod:`.rim_fetch` gets
them online, :mod:`.rim_sim` simulates them.

NVSwitch (LS10) evidence is read only by :func:`.payload.parse_switch_files` / :func:`.payload.parse_switch_payload`
and verified by :mod:`.switch` (the same steps, checks ``nvswitch.*``); every GPU reader and verifier refuses it.

>>> from phalanb.gpu import parse_payload, verify_payload, nvidia_device_identity_ca
>>> result = verify_payload(parse_payload(report["nvidia_payload"]), root=nvidia_device_identity_ca(),
...                         expected_nonce=my_nonce)                       # doctest: +SKIP
>>> print(result.verdict().table())                                       # doctest: +SKIP
"""

from .payload import GpuEvidence, GpuPayload, arch_of_chain, decode_evidence, parse_cert_chain, parse_files, parse_payload
from .payload import SwitchEvidenceRefused, parse_switch_files, parse_switch_payload
from .spdm import (ByteField, MeasurementBlock, OpaqueData, OpaqueField, SpdmEvidence, SpdmRequest, SpdmResponse,
                   parse_evidence, parse_opaque_data, render_vbios_version)
from .nras import (NRAS_ISSUER, NRAS_URL, NVIDIA_NRAS_INTERMEDIATE_SPKI_SHA256, Jwks, JwksCache, Jwt, NrasAnchor,
                   NrasKey, NrasResponse, NrasVerification, build_nras_request, decode_jwt, fetch_jwks, fetch_nras,
                   nvidia_nras_anchor, parse_nras_response, verify_jwt, verify_nras)
from .sim import SIM_NRAS_ISSUER, SimulatedGpus, simulated_nras_anchor, simulated_root
from .rim import Rim, parse_rim, rim_ids
from .rim_verify import NVIDIA_RIM_ROOT_SHA256, nvidia_rim_root, verify_rim
from .appraise import GpuAppraisal, MeasurementAppraisal, RimStore, appraise_evidence, appraise_payload
from .switch import appraise_switch_payload, verify_switch_payload
from .verify import (NVIDIA_DEVICE_IDENTITY_CA_SHA256, GpuFacts, GpuResult, GpuVerification, StepResult, TrustRoot,
                     chutes_gpu_nonce, gpu_facts, leaf_fwids, nvidia_device_identity_ca, verify_chain, verify_fwid,
                     verify_gpu, verify_payload, verify_signature)

__all__ = [
    "GpuEvidence", "GpuPayload", "arch_of_chain", "decode_evidence", "parse_cert_chain", "parse_files",
    "parse_payload",
    "ByteField", "MeasurementBlock", "OpaqueData", "OpaqueField", "SpdmEvidence", "SpdmRequest", "SpdmResponse",
    "parse_evidence", "parse_opaque_data", "render_vbios_version",
    "NVIDIA_DEVICE_IDENTITY_CA_SHA256", "GpuFacts", "GpuResult", "GpuVerification", "StepResult", "TrustRoot",
    "chutes_gpu_nonce", "gpu_facts", "leaf_fwids", "nvidia_device_identity_ca", "verify_chain", "verify_fwid",
    "verify_gpu", "verify_payload", "verify_signature",
    "NRAS_ISSUER", "NRAS_URL", "Jwks", "JwksCache", "Jwt", "NrasResponse", "NrasVerification", "build_nras_request",
    "decode_jwt", "fetch_jwks", "fetch_nras", "parse_nras_response", "verify_jwt", "verify_nras",
    "NVIDIA_NRAS_INTERMEDIATE_SPKI_SHA256", "NrasAnchor", "NrasKey", "nvidia_nras_anchor",
    "SIM_NRAS_ISSUER", "SimulatedGpus", "simulated_root", "simulated_nras_anchor",
    "Rim", "parse_rim", "rim_ids", "NVIDIA_RIM_ROOT_SHA256", "nvidia_rim_root", "verify_rim",
    "GpuAppraisal", "MeasurementAppraisal", "RimStore", "appraise_evidence", "appraise_payload",
    "SwitchEvidenceRefused", "parse_switch_files", "parse_switch_payload", "verify_switch_payload",
    "appraise_switch_payload",
]
