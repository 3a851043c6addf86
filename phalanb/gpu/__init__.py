"""NVIDIA GPU evidence: parse (payload, spdm), verify offline (verify), check NRAS tokens (nras), simulate (sim)."""

from .payload import GpuEvidence, GpuPayload, arch_of_chain, decode_evidence, parse_cert_chain, parse_files, parse_payload
from .spdm import (ByteField, MeasurementBlock, OpaqueData, OpaqueField, SpdmEvidence, SpdmRequest, SpdmResponse,
                   parse_evidence, parse_opaque_data, render_vbios_version)
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
]
