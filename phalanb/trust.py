"""Which roots a :class:`~phalanb.policy.Policy` trusts: Intel's and NVIDIA's production roots (pinned, shipped
in the package), or — only when the policy says ``trust="simulated"`` — phalanb's simulated roots (fixed for every
simulator, or given explicitly in the policy)."""

from __future__ import annotations

from typing import Any

from .policy import Policy

__all__ = ["tdx_root", "gpu_root", "nras_anchor"]


def tdx_root(policy: Policy) -> Any:
    from .tdx import TrustRoot

    if not policy.simulated:
        return TrustRoot.intel()
    if policy.tdx_root_der is not None:
        return TrustRoot.from_bytes(policy.tdx_root_der, name="simulated")
    from .tdx.sim import simulated_root

    return simulated_root()


def gpu_root(policy: Policy) -> Any:
    from .gpu import TrustRoot, nvidia_device_identity_ca

    if not policy.simulated:
        return nvidia_device_identity_ca()
    if policy.gpu_root_pem is not None:
        return TrustRoot.from_pem(policy.gpu_root_pem, simulated=True)
    from .gpu.sim import simulated_root

    return simulated_root()


def nras_anchor(policy: Policy) -> Any:
    """The certificate NRAS signing keys must chain to: NVIDIA's pinned intermediate, or the simulator's."""
    if not policy.simulated:
        from .gpu.nras import nvidia_nras_anchor

        return nvidia_nras_anchor()
    from .gpu.sim import simulated_nras_anchor

    return simulated_nras_anchor()
