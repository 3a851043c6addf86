"""The GPU roots a :class:`~phalanb.policy.Policy` trusts: NVIDIA's pinned device-identity CA and NRAS
intermediate, or — only under simulated trust — the simulator's."""

from __future__ import annotations

from typing import Any

from ..policy import Policy

__all__ = ["gpu_root", "nras_anchor", "rim_root"]


def gpu_root(policy: Policy) -> Any:
    from .verify import TrustRoot, nvidia_device_identity_ca

    if not policy.simulated:
        return nvidia_device_identity_ca()
    if policy.gpu_root_pem is not None:
        return TrustRoot.from_pem(policy.gpu_root_pem, simulated=True)
    from .sim import simulated_root

    return simulated_root()


def nras_anchor(policy: Policy) -> Any:
    """The certificate NRAS signing keys must chain to: NVIDIA's pinned intermediate, or the simulator's."""
    if not policy.simulated:
        from .nras import nvidia_nras_anchor

        return nvidia_nras_anchor()
    from .sim import simulated_nras_anchor

    return simulated_nras_anchor()


def rim_root(policy: Policy) -> Any:
    """The root NVIDIA's RIM signing chains must reach: the pinned CoRIM signing Root CA, or the simulator's."""
    if not policy.simulated:
        from .rim_verify import nvidia_rim_root

        return nvidia_rim_root()
    from .rim_sim import simulated_rim_root

    return simulated_rim_root()
