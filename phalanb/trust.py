"""Which roots a :class:`~phalanb.policy.Policy` trusts: Intel's and NVIDIA's production roots (pinned, shipped
in the package), or the roots of one phalanb simulator that the policy names explicitly."""

from __future__ import annotations

from typing import Any

from .errors import InputError
from .policy import Policy

__all__ = ["tdx_root", "gpu_root"]


def tdx_root(policy: Policy) -> Any:
    from .tdx import TrustRoot

    if not policy.simulated:
        return TrustRoot.intel()
    if policy.tdx_root_der is None:
        raise InputError("trust='simulated' needs the simulator's TDX root: use Policy.for_simulator(sim)")
    return TrustRoot.from_bytes(policy.tdx_root_der, name="simulated")


def gpu_root(policy: Policy) -> Any:
    from .gpu import TrustRoot, nvidia_device_identity_ca

    if not policy.simulated:
        return nvidia_device_identity_ca()
    if policy.gpu_root_pem is None:
        raise InputError("trust='simulated' needs the simulator's GPU root: use Policy.for_simulator(sim)")
    return TrustRoot.from_pem(policy.gpu_root_pem, simulated=True)
