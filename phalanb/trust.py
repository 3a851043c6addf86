"""Which roots a :class:`~phalanb.policy.Policy` trusts: Intel's and NVIDIA's production roots (pinned, shipped
in the package), or — only when the policy says ``trust="simulated"`` — phalanb's simulated roots (fixed for every
simulator, or given explicitly in the policy)."""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from .errors import InputError
from .policy import Policy

__all__ = ["tdx_root", "gpu_root", "rim_root", "nras_anchor", "is_loopback_url", "require_loopback_for_simulated"]


def is_loopback_url(url: str) -> bool:
    """True when ``url``'s host is this machine: 127.0.0.0/8, ::1 or ``localhost``."""
    try:
        host = urlsplit(str(url)).hostname
    except ValueError:
        return False
    if not host:
        return False
    host = host.rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def require_loopback_for_simulated(url: str | None, *, trust: str | None, what: str = "the service") -> None:
    """Refuse simulated trust for anything but a loopback URL.

    The simulated roots' keys are derived from public labels: anyone can mint "evidence" under them. They are
    meant for phalanb's simulator on this machine; trusting them for a remote service (say ``PHALANB_TRUST``
    left at ``simulated`` by ``phalanb lab`` while ``PHALANB_BASE_URL`` points elsewhere) would call a forgery
    verified."""
    if trust != "simulated" or url is None:
        return
    if not is_loopback_url(url):
        raise InputError(f"simulated trust applies only to phalanb's simulator on this machine (127.0.0.1, ::1 or "
                         f"localhost), but {what} is {url}: anyone can forge evidence under the simulated roots. "
                         "Use production trust for a real service (unset PHALANB_TRUST or pass --trust production).")


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


def rim_root(policy: Policy) -> Any:
    """The root NVIDIA's RIM signing chains must reach: the pinned CoRIM signing Root CA, or the simulator's."""
    if not policy.simulated:
        from .gpu.rim_verify import nvidia_rim_root

        return nvidia_rim_root()
    from .gpu.rim_sim import simulated_rim_root

    return simulated_rim_root()


def nras_anchor(policy: Policy) -> Any:
    """The certificate NRAS signing keys must chain to: NVIDIA's pinned intermediate, or the simulator's."""
    if not policy.simulated:
        from .gpu.nras import nvidia_nras_anchor

        return nvidia_nras_anchor()
    from .gpu.sim import simulated_nras_anchor

    return simulated_nras_anchor()
