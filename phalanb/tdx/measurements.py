"""Which TDX module and which OS image: the measurements an auditor knows, judged by default.

A genuine quote proves only that *some* TD on a genuine Intel platform said this. Whether it ran a TDX module Intel
released (MRSEAM) and an OS image someone published (MRTD) is a separate question, answered here from lists shipped
as data with their provenance (``phalanb/data/measurements.json``: Intel's TDX module releases, teep's dstack and
sek8s defaults). The judgement (check ``tdx.measurements``):

- a known-bad value **fails** (a withdrawn module, a development image);
- every judged register known-good (or pinned by the user) **passes**;
- a value no list knows is **skipped, required**: the verdict is *incomplete*, naming the register and how to pin
  it — never *verified* on the strength of "some TD";
- a register the user relaxed is not judged, and the check is a **warning** that says so.

RTMR0 follows each VM's configuration (CPUs, memory, GPUs) and is not judged; RTMR1-2 are judged only when pinned
(``Policy(expected=...)``), since no complete published values exist for them.

>>> known = KnownMeasurements.shipped()
>>> known.lookup("mr_seam", "49b66faa" + "…")                  # doctest: +SKIP
('good', 'Intel TDX module 1.5.08', ['intel-tdx-module-releases', 'teep-dstack-defaults'])
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Iterable, Mapping

from ..policy import JUDGED_REGISTERS  # the registers judged by default, named once in the policy
from ..verdict import Check, Status

__all__ = ["JUDGED_REGISTERS", "KnownMeasurements", "check_measurements"]

_LABELS = {"mr_seam": "MRSEAM (the TDX module)", "mr_td": "MRTD (the OS image's firmware)"}


@dataclass(frozen=True)
class Entry:
    value: str
    name: str
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class KnownMeasurements:
    """Known-good and known-bad values per register, with where each came from."""

    good: Mapping[str, Mapping[str, Entry]] = field(default_factory=dict)
    bad: Mapping[str, Mapping[str, Entry]] = field(default_factory=dict)
    sources: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def shipped(cls) -> "KnownMeasurements":
        """The lists shipped inside the package (read once)."""
        return _shipped()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "KnownMeasurements":
        good: dict[str, dict[str, Entry]] = {}
        bad: dict[str, dict[str, Entry]] = {}
        for reg, lists in data.get("registers", {}).items():
            for key, into in (("known_good", good), ("known_bad", bad)):
                into[reg] = {e["value"].lower(): Entry(e["value"].lower(), e.get("name", ""),
                                                       tuple(e.get("sources", ()))) for e in lists.get(key, [])}
        return cls(good, bad, dict(data.get("sources", {})))

    def with_values(self, register: str, values: Iterable[str], *, name: str, bad: bool = False
                    ) -> "KnownMeasurements":
        """A copy that also knows ``values`` for ``register`` (the simulator's own, a user's pins)."""
        target = {k: dict(v) for k, v in (self.bad if bad else self.good).items()}
        reg = target.setdefault(register, {})
        for v in values:
            v = v.lower().removeprefix("0x")
            reg[v] = Entry(v, name)
        if bad:
            return KnownMeasurements(self.good, target, self.sources)
        return KnownMeasurements(target, self.bad, self.sources)

    def lookup(self, register: str, value: str) -> tuple[str, Entry | None]:
        """``("bad", entry)``, ``("good", entry)`` or ``("unknown", None)``; a value on both lists is bad."""
        value = value.lower()
        if value in self.bad.get(register, {}):
            return "bad", self.bad[register][value]
        if value in self.good.get(register, {}):
            return "good", self.good[register][value]
        return "unknown", None


@lru_cache(maxsize=1)
def _shipped() -> KnownMeasurements:
    text = resources.files("phalanb.data").joinpath("measurements.json").read_text(encoding="utf-8")
    return KnownMeasurements.from_dict(json.loads(text))


def check_measurements(actual: Mapping[str, str], *, known: KnownMeasurements,
                       pinned: Mapping[str, Iterable[str]] | None = None, relaxed: Iterable[str] = (),
                       registers: Iterable[str] = JUDGED_REGISTERS) -> Check:
    """``tdx.measurements``: judge each of ``registers`` in ``actual`` (register → lowercase hex).

    ``pinned``: values the user accepts per register (their own deployment); ``relaxed``: registers the user chose
    not to judge (shown as a warning)."""
    pinned = {k: {v.lower().removeprefix("0x") for v in vs} for k, vs in (pinned or {}).items()}
    relaxed = set(relaxed)
    ev: dict[str, Any] = {}
    bad, unknown, known_names, skipped_relaxed = [], [], [], []
    for reg in registers:
        value = actual.get(reg)
        if value is None:
            continue
        kind, entry = known.lookup(reg, value)
        ev[reg] = {"value": value, "status": kind, "name": entry.name if entry else None,
                   "sources": list(entry.sources) if entry else []}
        if kind == "bad":
            # A known-bad value fails even when relaxed or pinned: relaxing means "I accept unknown", not "bad".
            bad.append(f"{_LABELS.get(reg, reg)} {value[:16]}… is known bad ({entry.name})")
        elif reg in relaxed:
            skipped_relaxed.append(reg)
            ev[reg]["status"] = "relaxed"
        elif value in pinned.get(reg, ()):
            ev[reg]["status"] = "pinned"
            known_names.append(f"{reg} pinned by your policy")
        elif kind == "good":
            known_names.append(f"{reg} = {entry.name}")
        else:
            unknown.append(reg)
    if bad:
        return Check("tdx.measurements", Status.FAIL, "; ".join(bad), ev)
    if unknown:
        names = ", ".join(f"{_LABELS.get(r, r)} {actual[r][:16]}…" for r in unknown)
        return Check("tdx.measurements", Status.SKIPPED, f"{names} is on no published list shipped with phalanb: "
                     "this proves some TD signed the quote, not that it runs the deployment you meant; pin it to "
                     "accept (" + " ".join(f"--accept-measurement {r}=<hex>" for r in unknown) + "; in Python "
                     "Policy(accept_measurements={" + ", ".join(f"'{r}': ['<hex>']" for r in unknown)
                     + "})) or relax the register (" + " ".join(f"--relax-measurement {r}" for r in unknown)
                     + "; Policy(relax_measurements=(…)))", ev)
    if skipped_relaxed:
        held = f" ({'; '.join(known_names)})" if known_names else ""
        return Check("tdx.measurements", Status.WARNING, f"not judged by your policy: {', '.join(skipped_relaxed)}"
                     f" (relaxed){held}", ev)
    if not known_names:
        return Check("tdx.measurements", Status.SKIPPED, "no measurement to judge", ev)
    return Check("tdx.measurements", Status.PASS, "; ".join(known_names), ev)
