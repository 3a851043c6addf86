"""The TDX root a :class:`~phalanb.policy.Policy` trusts: Intel's pinned SGX root, or — only under simulated
trust — the simulator's root (fixed, or given in the policy)."""

from __future__ import annotations

from typing import Any

from ..policy import Policy

__all__ = ["tdx_root"]


def tdx_root(policy: Policy) -> Any:
    from .verify import TrustRoot

    if not policy.simulated:
        return TrustRoot.intel()
    if policy.tdx_root_der is not None:
        return TrustRoot.from_bytes(policy.tdx_root_der, name="simulated")
    from .sim import simulated_root

    return simulated_root()
