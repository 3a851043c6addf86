"""What the verifier trusts and expects — passed in, never global.

>>> Policy()                       # production: Intel's and NVIDIA's pinned roots, TCB UpToDate only
Policy(trust='production', ...)
>>> Policy(trust="simulated")      # phalanb's simulator: its own roots, said so in every result   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import InputError

__all__ = ["Policy", "TRUST_MODES"]

TRUST_MODES = ("production", "simulated")


@dataclass(frozen=True)
class Policy:
    """Trust roots, accepted TCB statuses and expected measurements.

    ``trust``: ``"production"`` pins Intel's SGX Root CA and NVIDIA's Device Identity CA (shipped in the package;
    nothing else is ever accepted). ``"simulated"`` trusts phalanb's simulated roots (the same for every
    simulator; or given explicitly in ``tdx_root_der`` / ``gpu_root_pem``) — results then say "simulated".
    ``accepted_tcb``: TCB statuses that pass; ``warn_tcb``: statuses that pass with a warning.
    ``expected``: measurements the deployment must have (``mr_td``, ``rt_mr0``…, ``compose_hash``,
    ``os_image_hash``), lowercase hex.

    ACI (:mod:`phalanb.aci`): ``aci_kms_roots`` lists the dstack-kms root keys (SEC1-compressed secp256k1 hex) the
    auditor accepts for key custody — empty (the default) means custody is *skipped*, never passed;
    ``aci_required_claims`` are the attested-session claims that must be ``asserted`` with a source in
    ``aci_claim_sources``; ``aci_require_upstream``: an aggregator's receipt must show a required, successful
    upstream verification.
    """

    trust: str = "production"
    accepted_tcb: tuple[str, ...] = ("UpToDate",)
    warn_tcb: tuple[str, ...] = ()
    rejected_advisories: tuple[str, ...] = ()
    require_nras: bool = False
    expected: dict[str, str] = field(default_factory=dict)
    tdx_root_der: bytes | None = field(default=None, repr=False)
    gpu_root_pem: bytes | None = field(default=None, repr=False)
    nras_issuer: str | None = None  # None: NVIDIA's NRAS (or the simulator's, under trust="simulated")
    aci_kms_roots: tuple[str, ...] = ()
    aci_required_claims: tuple[str, ...] = ("tee_attested",)
    aci_claim_sources: tuple[str, ...] = ("hardware_proven",)
    aci_require_upstream: bool = True

    def __post_init__(self) -> None:
        if self.trust not in TRUST_MODES:
            raise InputError(f"trust must be one of {TRUST_MODES}, got {self.trust!r}")
        if self.trust == "production" and (self.tdx_root_der or self.gpu_root_pem or self.nras_issuer):
            # Production trust is the pinned roots and nothing else: a bundle cannot smuggle in its own.
            raise InputError("production trust uses Intel's and NVIDIA's pinned roots; other roots need "
                             "trust='simulated'")
        for name in ("accepted_tcb", "warn_tcb", "rejected_advisories", "aci_kms_roots", "aci_required_claims",
                     "aci_claim_sources"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                # Policies are also read from bundles: a number or object here would fail deep in verification.
                raise InputError(f"{name} must be a list of strings, got {value!r:.80}")
            object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, "aci_kms_roots", tuple(r.lower().removeprefix("0x") for r in self.aci_kms_roots))
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.expected.items()):
            raise InputError("expected measurements are name → hex string")
        object.__setattr__(self, "expected", {k: v.lower().removeprefix("0x") for k, v in self.expected.items()})

    @property
    def simulated(self) -> bool:
        return self.trust == "simulated"

    @classmethod
    def for_simulator(cls, sim: Any = None, **kw: Any) -> "Policy":
        """Trust phalanb's simulator (its roots are the same for every simulator, so ``sim`` is only a reminder of
        which service this policy is for); every verdict then says "simulated"."""
        return cls(trust="simulated", **kw)

    def __repr__(self) -> str:
        return f"Policy(trust={self.trust!r}, ...)"

    def to_dict(self) -> dict[str, Any]:
        return {"trust": self.trust, "accepted_tcb": list(self.accepted_tcb), "warn_tcb": list(self.warn_tcb),
                "rejected_advisories": list(self.rejected_advisories), "require_nras": self.require_nras,
                "expected": dict(self.expected),
                "tdx_root_der": self.tdx_root_der.hex() if self.tdx_root_der else None,
                "gpu_root_pem": self.gpu_root_pem.decode() if self.gpu_root_pem else None,
                "nras_issuer": self.nras_issuer, "aci_kms_roots": list(self.aci_kms_roots),
                "aci_required_claims": list(self.aci_required_claims),
                "aci_claim_sources": list(self.aci_claim_sources), "aci_require_upstream": self.aci_require_upstream}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Policy":
        return cls(trust=d.get("trust", "production"), accepted_tcb=tuple(d.get("accepted_tcb", ("UpToDate",))),
                   warn_tcb=tuple(d.get("warn_tcb", ())), rejected_advisories=tuple(d.get("rejected_advisories", ())),
                   require_nras=bool(d.get("require_nras", False)), expected=dict(d.get("expected", {})),
                   tdx_root_der=bytes.fromhex(d["tdx_root_der"]) if d.get("tdx_root_der") else None,
                   gpu_root_pem=d["gpu_root_pem"].encode() if d.get("gpu_root_pem") else None,
                   nras_issuer=d.get("nras_issuer"), aci_kms_roots=tuple(d.get("aci_kms_roots", ())),
                   aci_required_claims=tuple(d.get("aci_required_claims", ("tee_attested",))),
                   aci_claim_sources=tuple(d.get("aci_claim_sources", ("hardware_proven",))),
                   aci_require_upstream=bool(d.get("aci_require_upstream", True)))
