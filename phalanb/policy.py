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

    ``trust``: ``"production"`` pins Intel's SGX Root CA and NVIDIA's Device Identity CA; ``"simulated"`` pins
    phalanb's simulator roots instead (only for the simulator; results then say "simulated root").
    ``accepted_tcb``: TCB statuses that pass; ``warn_tcb``: statuses that pass with a warning.
    ``expected``: measurements the deployment must have (``mr_td``, ``rt_mr0``…, ``compose_hash``,
    ``os_image_hash``), lowercase hex.
    """

    trust: str = "production"
    accepted_tcb: tuple[str, ...] = ("UpToDate",)
    warn_tcb: tuple[str, ...] = ()
    rejected_advisories: tuple[str, ...] = ()
    require_nras: bool = False
    expected: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.trust not in TRUST_MODES:
            raise InputError(f"trust must be one of {TRUST_MODES}, got {self.trust!r}")
        object.__setattr__(self, "accepted_tcb", tuple(self.accepted_tcb))
        object.__setattr__(self, "warn_tcb", tuple(self.warn_tcb))
        object.__setattr__(self, "rejected_advisories", tuple(self.rejected_advisories))
        object.__setattr__(self, "expected", {k: v.lower().removeprefix("0x") for k, v in self.expected.items()})

    @property
    def simulated(self) -> bool:
        return self.trust == "simulated"

    def __repr__(self) -> str:
        return f"Policy(trust={self.trust!r}, ...)"

    def to_dict(self) -> dict[str, Any]:
        return {"trust": self.trust, "accepted_tcb": list(self.accepted_tcb), "warn_tcb": list(self.warn_tcb),
                "rejected_advisories": list(self.rejected_advisories), "require_nras": self.require_nras,
                "expected": dict(self.expected)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Policy":
        return cls(trust=d.get("trust", "production"), accepted_tcb=tuple(d.get("accepted_tcb", ("UpToDate",))),
                   warn_tcb=tuple(d.get("warn_tcb", ())), rejected_advisories=tuple(d.get("rejected_advisories", ())),
                   require_nras=bool(d.get("require_nras", False)), expected=dict(d.get("expected", {})))
