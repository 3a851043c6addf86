"""Fetching the online evidence a verdict can use: Intel collateral (TCB status) and NVIDIA's NRAS answer.

Fetching is kept apart from verifying: these functions only download; :func:`~phalanb.verify.verify_exchange`
judges what they return, and an audit bundle stores it so the same verdict is reached offline later. A fetch
that fails is recorded with its reason (the verdict then says what was not checked), never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import PhalanbError
from .report import parse_report

__all__ = ["OnlineEvidence", "DEFAULT_PCCS_URL", "fetch_online_evidence"]

#: dcap-qvl's default collateral source (a public PCCS that mirrors Intel PCS).
DEFAULT_PCCS_URL = "https://pccs.phala.network"


@dataclass
class OnlineEvidence:
    collateral: dict[str, Any] | None = None
    nras_response: Any = None
    jwks: Any = None
    problems: list[str] = field(default_factory=list)


def fetch_online_evidence(report: Mapping[str, Any], *, signing_address: str | None, nonce: bytes | None,
                          pccs_url: str | None = DEFAULT_PCCS_URL, nras_url: str | None = None,
                          timeout: float = 60.0) -> OnlineEvidence:
    """Collateral for the node's quote from ``pccs_url`` and, when ``nras_url`` is given, NRAS's appraisal of
    its GPU evidence with the JWKS to check it. ``None`` skips a source."""
    from .gpu import parse_payload
    from .gpu.nras import build_nras_request, fetch_jwks, fetch_nras
    from .tdx import fetch_collateral_sync, parse_quote

    out = OnlineEvidence()
    try:
        node = parse_report(report).select(signing_address)
    except PhalanbError as exc:
        out.problems.append(f"report: {exc}")
        return out
    if pccs_url and node.intel_quote:
        try:
            out.collateral = fetch_collateral_sync(parse_quote(node.intel_quote), pccs_url, timeout=timeout).to_dict()
        except PhalanbError as exc:
            out.problems.append(f"collateral from {pccs_url}: {exc}")
    source = node.gpu_evidence if node.binding == "chutes" else node.nvidia_payload
    if nras_url and source:
        try:
            payload = parse_payload(source)
            request = build_nras_request(payload, nonce=None if nonce is None or node.binding == "chutes"
                                         else nonce.hex())
            out.nras_response = fetch_nras(request, base_url=nras_url, timeout=timeout)
            out.jwks = fetch_jwks(base_url=nras_url, timeout=timeout)
        except PhalanbError as exc:
            out.problems.append(f"NRAS at {nras_url}: {exc}")
    return out
