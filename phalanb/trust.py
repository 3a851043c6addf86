"""Which roots a :class:`~phalanb.policy.Policy` trusts: Intel's and NVIDIA's production roots (pinned, shipped
in the package), or — only when the policy says ``trust="simulated"`` — phalanb's simulated roots (fixed for every
simulator, or given explicitly in the policy).

This module holds what is TEE-neutral (simulated trust is for loopback only); each TEE picks its own roots
beside its code: :func:`phalanb.tdx.roots.tdx_root`, :func:`phalanb.gpu.roots.gpu_root` and
:func:`phalanb.gpu.roots.nras_anchor`."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from .errors import InputError

__all__ = ["is_loopback_url", "require_loopback_for_simulated"]


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
