"""The simulator's attestation report (dstack vllm-proxy v1.1 shape, SPEC §5).

The report binds the signing key to a nonce: ``report_data = address_bytes.ljust(32, b"\\0") ‖ nonce``. The TDX
quote that carries ``report_data`` and the GPU evidence that carries the nonce come from two providers:

- ``tdx``: an object with ``attest(report_data: bytes) -> TdxAttestation`` (quote bytes, event log, info,
  vm_config), implemented by :mod:`phalanb.tdx.sim`;
- ``gpu``: an object with ``payload(nonce_hex: str) -> dict`` (the ``nvidia_payload`` object), implemented by
  :mod:`phalanb.gpu.sim`.

When a provider is absent the corresponding fields are ``null`` and a verifier must report them as missing.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol

from ..tdx.sim import TdxAttestation  # what a simulated TDX platform returns; defined beside it
from .keys import SimKeys

__all__ = ["TdxAttestation", "TdxProvider", "GpuProvider", "build_report"]


class TdxProvider(Protocol):
    def attest(self, report_data: bytes, *, debug: bool = False) -> TdxAttestation: ...


class GpuProvider(Protocol):
    def payload(self, nonce_hex: str) -> dict[str, Any]: ...


def report_data_for(keys: SimKeys, algo: str, nonce: bytes) -> bytes:
    return keys.address_bytes(algo).ljust(32, b"\0") + nonce


def build_report(*, keys: SimKeys, algo: str, nonce: bytes, tdx: TdxProvider | None,
                 gpu: GpuProvider | None, faults: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The report for ``nonce``. ``faults`` (names from :data:`phalanb.sim.config.FAULTS`) make it wrong in one
    specific way each, so every check can be shown failing for its own reason."""
    report_data = report_data_for(keys, algo, nonce)
    quote_hex = None
    event_log = None
    info: dict[str, Any] = {}
    vm_config = ""
    if tdx is not None:
        if "stale_quote" in faults:
            # A quote made earlier, for someone else's nonce, served with our nonce echoed beside it.
            report_data = report_data_for(keys, algo, hashlib.sha256(b"an older request" + nonce).digest())
        att = tdx.attest(report_data, debug="debug_td" in faults)
        quote_hex = att.quote.hex()
        event_log = json.dumps(att.event_log)
        info = att.info
        vm_config = att.vm_config
        if "wrong_compose_hash" in faults and isinstance(info.get("tcb_info"), dict):
            # The configuration shown to users is not the one that was measured.
            compose = info["tcb_info"].get("app_compose", "")
            info["tcb_info"]["app_compose"] = compose.replace("phalanb", "phalanb-evil", 1) or "{}"
    nvidia_payload = None
    if gpu is not None:
        if "gpu_nonce_mismatch" in faults:
            payload = gpu.payload(hashlib.sha256(b"another nonce" + nonce).hexdigest())
            payload["nonce"] = nonce.hex()  # the wrapper claims our nonce; the GPUs signed another one
        else:
            payload = gpu.payload(nonce.hex())
        nvidia_payload = json.dumps(payload)
    if vm_config:
        # The VM's configured GPUs are the simulator's GPUs (none without a GPU provider), as dstack reports them.
        vm = json.loads(vm_config)
        vm["num_gpus"] = len(payload.get("evidence_list", [])) if gpu is not None else 0
        vm_config = json.dumps(vm, separators=(",", ":"))
        if isinstance(info.get("vm_config"), str):
            info = {**info, "vm_config": vm_config}
    entry: dict[str, Any] = {
        "signing_address": keys.address(algo),
        "signing_algo": algo,
        "signing_public_key": keys.ecdsa_public_key_hex if algo == "ecdsa" else keys.ed25519_public_hex,
        "request_nonce": nonce.hex(),
        "intel_quote": quote_hex,
        "quote": quote_hex,
        "nvidia_payload": nvidia_payload,
        "event_log": event_log,
        "info": info,
        "vm_config": vm_config,
    }
    return {**entry, "all_attestations": [dict(entry)]}
