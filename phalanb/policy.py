"""What the verifier trusts and expects — passed in, never global.

>>> Policy()                       # production: Intel's and NVIDIA's pinned roots, TCB UpToDate only
Policy(trust='production', ...)
>>> Policy(trust="simulated")      # phalanb's simulator: its own roots, said so in every result   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import InputError

__all__ = ["Policy", "TRUST_MODES", "JUDGED_REGISTERS", "SIMULATED_KMS_ROOT"]

#: The TD measurement registers judged against published values (tdx.measurements checks them; a policy may relax
#: them by name). Defined here, in the ground layer, so a policy is read without importing the TDX code.
JUDGED_REGISTERS = ("mr_seam", "mr_td")

#: The simulator's dstack-kms root (compressed secp256k1 key; :data:`phalanb.sim.aci_docs.SIM_KMS_ROOT` derives it
#: from its public label and a test holds the two equal). Simulated trust accepts it; production never does.
SIMULATED_KMS_ROOT = "02ce7f8404788b7a04fbfc54715cace5283d0dea5c533193ed17d774b988f0719d"

TRUST_MODES = ("production", "simulated")


@dataclass(frozen=True)
class Policy:
    """Trust roots, accepted TCB statuses and expected measurements.

    ``trust``: ``"production"`` pins Intel's SGX Root CA and NVIDIA's Device Identity CA (shipped in the package;
    nothing else is ever accepted). ``"simulated"`` trusts phalanb's simulated roots (the same for every
    simulator; or given explicitly in ``tdx_root_der`` / ``gpu_root_pem``) — results then say "simulated".
    ``accepted_tcb``: TCB statuses that pass; ``warn_tcb``: statuses that pass with a warning.
    ``expected``: measurements the deployment must have (``mr_seam``, ``mr_td``, ``rt_mr0``…, ``compose_hash``,
    ``os_image_hash``), lowercase hex.

    Judged by default (``tdx.measurements``): MRSEAM and MRTD must be on the lists shipped with phalanb
    (``phalanb/data/measurements.json``); a value no list knows leaves the verdict incomplete.
    ``accept_measurements``: values you accept besides those lists, register → list of hex (pin your own
    deployment); ``relax_measurements``: registers not judged at all (the verdict shows a warning). A value pinned
    in ``expected`` counts as accepted too.
    ``require_nras``: NVIDIA's appraisal of the GPU measurements (NRAS) is required for ``verified``; default
    ``True`` under production trust and ``False`` for the simulator. Without it the GPU evidence is checked
    offline only (signature, chain, nonce), which cannot show revoked certificates or wrong firmware.

    ACI (:mod:`phalanb.aci`): ``aci_kms_roots`` lists the dstack-kms root keys (SEC1-compressed secp256k1 hex) the
    auditor accepts for key custody — empty (the default) means custody is *skipped*, never passed;
    ``aci_required_claims`` are the attested-session claims that must be ``asserted`` with a source in
    ``aci_claim_sources``; ``aci_require_upstream``: an aggregator's upstream verification must also say
    ``required:true`` (default: the profile's ``upstream_flag_required``, else true); ``aci_serving``:
    ``"aggregator"`` (every receipt must show a verified upstream) or ``"direct"`` (the auditor accepts a gateway
    that serves the model itself) — default from the profile, else aggregator. The report's own
    ``service_capabilities.serving`` is bound by nothing and never decides.

    ``service``: the service profile the auditor expects (a name from ``phalanb/data/services.json`` or a
    :class:`~phalanb.services.ServiceProfile`; see :mod:`phalanb.services`). Default: none under production trust
    (a deployment phalanb cannot place is then incomplete) and ``"simulator"`` under simulated trust. A profile's
    KMS roots are used when ``aci_kms_roots`` is empty.

    ``rims``: a folder of NVIDIA's signed reference manifests (RIMs; saved OCSP answers in its ``ocsp/``), or a
    :class:`~phalanb.gpu.appraise.RimStore`. With it phalanb appraises the GPU measurements itself
    (``gpu.measurements``, ``gpu.revocation``); the measurements count as appraised when NRAS *or* this
    appraisal passed, and when both ran and disagree the verdict fails. The RIMs are claims until their
    signatures chain to the pinned NVIDIA CoRIM root: a folder or bundle cannot make a forged one count.
    """

    trust: str = "production"
    accepted_tcb: tuple[str, ...] = ("UpToDate",)
    warn_tcb: tuple[str, ...] = ()
    rejected_advisories: tuple[str, ...] = ()
    require_nras: bool | None = None  # None: True for production trust, False for the simulator
    expected: dict[str, str] = field(default_factory=dict)
    accept_measurements: dict[str, tuple[str, ...]] = field(default_factory=dict)
    relax_measurements: tuple[str, ...] = ()
    tdx_root_der: bytes | None = field(default=None, repr=False)
    gpu_root_pem: bytes | None = field(default=None, repr=False)
    nras_issuer: str | None = None  # None: NVIDIA's NRAS (or the simulator's, under trust="simulated")
    aci_kms_roots: tuple[str, ...] = ()
    aci_required_claims: tuple[str, ...] = ("tee_attested",)
    aci_claim_sources: tuple[str, ...] = ("hardware_proven",)
    aci_require_upstream: bool | None = None
    aci_serving: str | None = None
    service: Any = None
    rims: Any = field(default=None, compare=False)  # a folder of NVIDIA RIMs (str/Path) or a RimStore

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
        self._resolve_service()
        object.__setattr__(self, "aci_kms_roots", tuple(r.lower().removeprefix("0x") for r in self.aci_kms_roots))
        if self.simulated and not self.aci_kms_roots:
            # Simulated trust accepts the simulator's roots — its dstack-kms root among them, as an auditor of a
            # real service lists the KMS root they accept. Production never gets it.
            object.__setattr__(self, "aci_kms_roots", (SIMULATED_KMS_ROOT,))
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.expected.items()):
            raise InputError("expected measurements are name → hex string")
        object.__setattr__(self, "expected", {k: v.lower().removeprefix("0x") for k, v in self.expected.items()})
        if self.require_nras is None:
            object.__setattr__(self, "require_nras", self.trust == "production")
        elif not isinstance(self.require_nras, bool):
            raise InputError(f"require_nras must be true or false, got {self.require_nras!r:.40}")
        object.__setattr__(self, "accept_measurements", _accepted(self.accept_measurements))
        relax = self.relax_measurements
        if not isinstance(relax, (list, tuple)) or not all(r in JUDGED_REGISTERS for r in relax):
            raise InputError(f"relax_measurements names registers among {list(JUDGED_REGISTERS)}, got {relax!r:.80}")
        object.__setattr__(self, "relax_measurements", tuple(relax))
        if self.rims is not None:
            import os

            # The ground cannot import gpu/: a RimStore is known by what it does (the auditor's own object).
            if isinstance(self.rims, (str, os.PathLike)):
                object.__setattr__(self, "rims", os.fspath(self.rims))
            elif not (callable(getattr(self.rims, "digest", None)) and callable(getattr(self.rims, "get", None))):
                raise InputError(f"rims is a folder of NVIDIA RIMs or a RimStore, got {type(self.rims).__name__}")

    def _resolve_service(self) -> None:
        from .services import profile

        prof = self.service
        if prof is None and self.simulated:
            prof = "simulator-direct" if self.aci_serving == "direct" else "simulator"
        prof = profile(prof) if prof is not None else None
        if prof is not None and prof.trust == "simulated" and not self.simulated:
            raise InputError(f"the {prof.name} profile is phalanb's simulator: it needs trust='simulated'")
        object.__setattr__(self, "service", prof)
        if not self.aci_kms_roots and prof is not None:
            object.__setattr__(self, "aci_kms_roots", prof.kms_roots)
        if self.aci_require_upstream is None:
            object.__setattr__(self, "aci_require_upstream", prof.upstream_flag_required if prof else True)
        elif not isinstance(self.aci_require_upstream, bool):
            raise InputError(f"aci_require_upstream must be true or false, got {self.aci_require_upstream!r:.40}")
        if self.aci_serving is None:
            object.__setattr__(self, "aci_serving",
                               "direct" if prof is not None and prof.upstream == "none" else "aggregator")
        if self.aci_serving not in ("aggregator", "direct"):
            raise InputError(f"aci_serving is 'aggregator' or 'direct', got {self.aci_serving!r:.40}")

    @property
    def simulated(self) -> bool:
        return self.trust == "simulated"

    @property
    def upstream_expected(self) -> bool:
        """Every ACI receipt must show a verified upstream (the auditor did not accept direct serving)."""
        return self.aci_serving != "direct"

    @classmethod
    def for_simulator(cls, sim: Any = None, **kw: Any) -> "Policy":
        """Trust phalanb's simulator (its roots are the same for every simulator, so ``sim`` is only a reminder of
        which service this policy is for); every verdict then says "simulated". A simulator started with
        ``aci_mode="direct"`` gets the ``simulator-direct`` profile: whoever started it knows it has no upstream."""
        if getattr(getattr(sim, "config", None), "aci_mode", None) == "direct":
            kw.setdefault("aci_serving", "direct")
        return cls(trust="simulated", **kw)

    def __repr__(self) -> str:
        return f"Policy(trust={self.trust!r}, ...)"

    def to_dict(self) -> dict[str, Any]:
        return {"trust": self.trust, "accepted_tcb": list(self.accepted_tcb), "warn_tcb": list(self.warn_tcb),
                "rejected_advisories": list(self.rejected_advisories), "require_nras": self.require_nras,
                "expected": dict(self.expected),
                "accept_measurements": {k: list(v) for k, v in self.accept_measurements.items()},
                "relax_measurements": list(self.relax_measurements),
                "tdx_root_der": self.tdx_root_der.hex() if self.tdx_root_der else None,
                "gpu_root_pem": self.gpu_root_pem.decode() if self.gpu_root_pem else None,
                "nras_issuer": self.nras_issuer, "aci_kms_roots": list(self.aci_kms_roots),
                "aci_required_claims": list(self.aci_required_claims),
                "aci_claim_sources": list(self.aci_claim_sources), "aci_require_upstream": self.aci_require_upstream,
                "rims": self.rims if isinstance(self.rims, str) or self.rims is None
                else f"RIM store sha256:{self.rims.digest()}",
                "aci_serving": self.aci_serving, "service": self.service.name if self.service else None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Policy":
        return cls(trust=d.get("trust", "production"), accepted_tcb=tuple(d.get("accepted_tcb", ("UpToDate",))),
                   warn_tcb=tuple(d.get("warn_tcb", ())), rejected_advisories=tuple(d.get("rejected_advisories", ())),
                   require_nras=d.get("require_nras"), expected=dict(d.get("expected", {})),
                   accept_measurements=d.get("accept_measurements") or {},
                   relax_measurements=d.get("relax_measurements") or (),
                   tdx_root_der=bytes.fromhex(d["tdx_root_der"]) if d.get("tdx_root_der") else None,
                   gpu_root_pem=d["gpu_root_pem"].encode() if d.get("gpu_root_pem") else None,
                   nras_issuer=d.get("nras_issuer"), aci_kms_roots=tuple(d.get("aci_kms_roots", ())),
                   aci_required_claims=tuple(d.get("aci_required_claims", ("tee_attested",))),
                   aci_claim_sources=tuple(d.get("aci_claim_sources", ("hardware_proven",))),
                   aci_require_upstream=bool(d.get("aci_require_upstream", True)),
                   aci_serving=d.get("aci_serving") if d.get("aci_serving") in ("aggregator", "direct") else None,
                   service=_known_service(d.get("service"), d.get("trust", "production")))


def _known_service(name: Any, trust: Any) -> str | None:
    """A recorded policy's profile name, when phalanb ships it for that trust (a recorded policy never decides
    anything, so a name that does not fit is dropped rather than making the bundle unreadable)."""
    from .services import profiles

    prof = profiles().get(name) if isinstance(name, str) else None
    return name if prof is not None and (prof.trust == "production" or trust == "simulated") else None


_HEX = frozenset("0123456789abcdef")


def _accepted(value: Any) -> dict[str, tuple[str, ...]]:
    """``accept_measurements`` checked and normalised: judged register → tuple of 96-digit lowercase hex."""
    if not isinstance(value, dict):
        raise InputError(f"accept_measurements is register → list of hex values, got {value!r:.80}")
    out: dict[str, tuple[str, ...]] = {}
    for reg, values in value.items():
        if reg not in JUDGED_REGISTERS:
            raise InputError(f"accept_measurements: {reg!r} is not a judged register; use one of "
                             f"{list(JUDGED_REGISTERS)} (other registers are pinned with expected=...)")
        if isinstance(values, str) or not isinstance(values, (list, tuple)):
            raise InputError(f"accept_measurements[{reg!r}] must be a list of hex values, got {values!r:.80}")
        norm = []
        for v in values:
            h = v.lower().removeprefix("0x") if isinstance(v, str) else None
            if h is None or len(h) != 96 or not set(h) <= _HEX:
                raise InputError(f"accept_measurements[{reg!r}]: {v!r:.40} is not a 48-byte measurement in hex "
                                 "(96 hex digits)")
            norm.append(h)
        out[reg] = tuple(norm)
    return out
