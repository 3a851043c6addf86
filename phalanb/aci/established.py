"""What a verified ACI report establishes: :class:`EstablishedKeyset` (the keyset whose keys sign receipts and
receive E2EE prompts) and :class:`AciAttestation` (the checks that decided it).

:func:`phalanb.aci.verify.verify_aci_report` makes them; the E2EE code (:mod:`phalanb.aci.e2ee`,
:mod:`phalanb.aci.e2ee_wire`) only reads them, so they live here, below both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import InputError
from ..verdict import Check, Verdict
from . import jcs
from .report import AciReport

__all__ = ["EstablishedKeyset", "AciAttestation"]


@dataclass(frozen=True)
class EstablishedKeyset:
    """A keyset a *verified* report established: its digest, receipt keys, expiry and the serving mode the report
    *claims* (``serving`` is outside the keyset digest and the statement: shown, never used to choose a check).

    The public path (:func:`verify_aci_report`) creates one only when the keyset digest, the statement, the
    report_data, the quote slot and the quote itself verified. Constructing one by hand is for unit tests of the
    receipt layer only: it asserts a trust decision nothing checked.
    """

    digest: str
    keyset: Mapping[str, Any] = field(repr=False)
    shape: str = "current"
    serving: str = "aggregator"
    workload_id: str | None = None
    established: bool = field(default=True, repr=False)

    @classmethod
    def given(cls, keyset: Mapping[str, Any]) -> "EstablishedKeyset":
        """A keyset the user handed over directly (``phalanb receipt --keyset``): receipts can be checked against
        it (signature, digest, hashes), but no verified report binds it to a TEE, so ``established`` is False and
        the verdict carries ``aci.keyset_given`` skipped."""
        if not isinstance(keyset, Mapping):
            raise InputError("a keyset given directly must be a workload_keyset JSON object")
        # A keyset object is hashed as JCS: the current/preview rule. (A v3 keyset is bytes: see report.keyset_bytes.)
        shape = "preview" if ("keyset_epoch" in keyset or "workload_identity" in keyset) else "current"
        return cls(digest=jcs.sha256_digest(keyset), keyset=keyset, shape=shape, serving="unknown",
                   established=False)

    @classmethod
    def given_v3(cls, keyset_bytes: bytes) -> "EstablishedKeyset":
        """A v3 keyset handed over as its exact bytes (digest = their sha256); established no more than
        :meth:`given`'s."""
        from .report import parse_v3_keyset
        from .v3 import served_sha256

        raw = bytes(keyset_bytes)
        return cls(digest=served_sha256(raw), keyset=parse_v3_keyset(raw, field_name="keyset"), shape="v3",
                   serving="unknown", established=False)

    @property
    def receipt_keys(self) -> dict[str, dict[str, Any]]:
        return {k["key_id"]: dict(k) for k in self.keyset.get("receipt_signing_keys") or []
                if isinstance(k, Mapping) and isinstance(k.get("key_id"), str)}

    @property
    def not_after(self) -> int | None:
        """The keyset's expiry, read from the keyset itself (the digest covers it); None when it states none."""
        epoch = self.keyset.get("keyset_epoch")
        value = epoch.get("not_after") if isinstance(epoch, Mapping) else self.keyset.get("not_after")
        return value if type(value) is int else None

    @property
    def e2ee_keys(self) -> list[dict[str, Any]]:
        return [dict(k) for k in self.keyset.get("e2ee_public_keys") or [] if isinstance(k, Mapping)]


@dataclass
class AciAttestation:
    checks: list[Check]
    keyset: EstablishedKeyset | None
    report: AciReport | None
    reason: str | None = None   # why no keyset was established

    @property
    def verdict(self) -> Verdict:
        return Verdict(self.checks)
