"""Checks and verdicts: what was checked, what held, and what could not be checked.

A :class:`Check` is one link of the trust chain with a stable id (``"signature.valid"``), a :class:`Status` and a
one-line reason a person can read. A :class:`Verdict` is the list of checks plus the overall answer:

- ``failed`` when any check failed, required or optional;
- ``verified`` otherwise, when there is at least one required check and every required check passed or held with
  a warning — an *optional* check (``required=False``: informative, such as ``channel.tls_spki`` on plain http)
  may be skipped, and every face names it and says it does not decide the verdict;
- ``incomplete`` otherwise — a required check was skipped (offline, not implemented, no collateral, a format that
  cannot bind) or there was none, and the verdict lists what and why.

A ``warning`` is a check that held with a caveat the policy explicitly accepts (e.g. TCB status
SWHardeningNeeded when the user allowed it): it counts as held, and the verdict shows it.

>>> v = Verdict([Check("request.hash", Status.PASS, "sha256 of the sent bytes matches the signed text")])
>>> v.status
'verified'
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from ._text import STATUS_COLORS, paint, wrap

__all__ = ["Status", "Check", "Verdict"]


class Status(str, enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    SKIPPED = "skipped"
    WARNING = "warning"

    def __str__(self) -> str:  # so f-strings print "pass", not "Status.PASS"
        return self.value


@dataclass(frozen=True)
class Check:
    """One link of the chain.

    ``evidence`` holds the values the check used (hashes, addresses, offsets) so a reader can redo it by hand.
    ``required`` checks decide the verdict; optional ones only inform. ``optional_because`` says, for an optional
    check, which rule or policy made it optional ("under this policy (require_nras=False) …"), so a summary can
    tell a reader why its skipping still allows ``verified``; it is written by the verifier that made the check,
    and never changes the verdict.
    """

    id: str
    status: Status
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)
    required: bool = True
    optional_because: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))

    @property
    def passed(self) -> bool:
        return self.status is Status.PASS

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status.value,
            "reason": self.reason,
            "required": self.required,
            "evidence": _jsonable(self.evidence),
            **({"optional_because": self.optional_because} if self.optional_because and not self.required else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Check":
        return cls(
            id=data["id"],
            status=Status(data["status"]),
            reason=data["reason"],
            evidence=dict(data.get("evidence") or {}),
            required=bool(data.get("required", True)),
            optional_because=str(data.get("optional_because") or ""),
        )


VERIFIED = "verified"
FAILED = "failed"
INCOMPLETE = "incomplete"


class Verdict:
    """An ordered list of checks and the overall answer derived from them (never stored separately)."""

    def __init__(self, checks: Iterable[Check] = ()):
        self.checks: list[Check] = list(checks)
        ids = [c.id for c in self.checks]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"duplicate check ids in a verdict: {sorted(dup)}")

    def __iter__(self):
        return iter(self.checks)

    def __len__(self) -> int:
        return len(self.checks)

    def __getitem__(self, check_id: str) -> Check:
        for c in self.checks:
            if c.id == check_id:
                return c
        raise KeyError(check_id)

    def get(self, check_id: str) -> Check | None:
        for c in self.checks:
            if c.id == check_id:
                return c
        return None

    @property
    def status(self) -> str:
        if any(c.status is Status.FAIL for c in self.checks):
            return FAILED
        required = [c for c in self.checks if c.required]
        if required and all(c.status in (Status.PASS, Status.WARNING) for c in required):
            return VERIFIED
        return INCOMPLETE

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status is Status.FAIL]

    @property
    def skipped(self) -> list[Check]:
        return [c for c in self.checks if c.required and c.status is Status.SKIPPED]

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if c.status is Status.WARNING]

    def exit_code(self) -> int:
        """CLI convention: 0 verified, 1 failed, 3 incomplete (2 is reserved for usage and input errors)."""
        return {VERIFIED: 0, FAILED: 1, INCOMPLETE: 3}[self.status]

    @property
    def optional_skipped(self) -> list[Check]:
        """Optional checks that could not be made: they do not decide the verdict, and a face must say so."""
        return [c for c in self.checks if not c.required and c.status is Status.SKIPPED]

    def summary(self) -> str:
        """The verdict in one line that never says more than the checks did.

        ``verified`` names how many checks held and, when some optional check was skipped, which and why, that
        it does not decide the verdict (only required checks do), and which rule or policy made it optional::

            verified: 55 of 56 checks held (3 with warnings), every required one among them; skipped, optional
            (does not decide the verdict): channel.tls_spki (no TLS key observed …); channel.tls_spki is optional
            under every policy: …
        """
        optional = self.optional_skipped
        also = (f"; skipped, optional (does not decide the verdict): {_grouped(optional)}{_why_optional(optional)}"
                if optional else "")
        if self.status == VERIFIED:
            held = sum(c.status in (Status.PASS, Status.WARNING) for c in self.checks)
            warn = f" ({len(self.warnings)} with warnings)" if self.warnings else ""
            if held == len(self.checks):
                return f"verified: all {held} checks held{warn}"
            return f"verified: {held} of {len(self.checks)} checks held{warn}, every required one among them{also}"
        if self.status == FAILED:
            return "failed: " + _grouped(self.failed)
        return "incomplete: not checked: " + _grouped(self.skipped) + also

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "checks": [c.to_dict() for c in self.checks]}

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Verdict":
        # The stored "status" is deliberately ignored: a verdict is recomputed from its checks, never believed.
        return cls(Check.from_dict(c) for c in data.get("checks", []))

    def tally(self) -> str:
        """One line a person scans: how many checks, and how many of each outcome.

        >>> Verdict([Check("a", Status.PASS, ""), Check("b", Status.WARNING, "")]).tally()
        '2 checks: 1 pass, 1 warning'
        """
        n = {s: sum(c.status is s for c in self.checks) for s in Status}
        parts = [f"{n[Status.PASS]} pass"] if n[Status.PASS] else []
        if n[Status.FAIL]:
            parts.append(f"{n[Status.FAIL]} fail")
        if n[Status.SKIPPED]:
            parts.append(f"{n[Status.SKIPPED]} skipped")
        if n[Status.WARNING]:
            parts.append(f"{n[Status.WARNING]} warning{'s' if n[Status.WARNING] != 1 else ''}")
        total = len(self.checks)
        return f"{total} check{'s' if total != 1 else ''}: " + (", ".join(parts) or "none")

    def table(self, *, color: bool = False, width: int | None = None) -> str:
        """A fixed-width text table (the CLI's output): one row per check, then the tally, the verdict on a short
        line of its own, and below it what failed or could not be checked.

        Plain by default. ``color=True`` colours each status (pass green, fail red, warning yellow, skipped grey;
        the CLI asks :func:`phalanb._term.use_color`, so a pipe or ``NO_COLOR`` stays plain). ``width`` wraps long
        reasons onto indented continuation lines so no line is longer (long words such as hashes stay whole).
        """
        idw = max([len(c.id) for c in self.checks] + [5])
        indent = idw + 2 + 8 + 1
        lines = [f"{'check':<{idw}}  {'status':<8} reason", f"{'-' * idw}  {'-' * 8} {'-' * 40}"]
        for c in self.checks:
            pad = " " * (8 - len(c.status.value))  # padded outside the colour codes, so columns stay aligned
            status = paint(c.status.value, STATUS_COLORS.get(c.status.value), enabled=color) + pad
            reason = wrap(c.reason, width, indent=indent) if width else [c.reason]
            lines.append(f"{c.id:<{idw}}  {status} {reason[0]}")
            lines.extend(reason[1:])
        lines.append("")
        lines.append(self.tally())
        word = paint(self.status, STATUS_COLORS.get(self.status), enabled=color)
        warn = f" ({len(self.warnings)} with warnings)" if self.status == VERIFIED and self.warnings else ""
        lines.append(f"verdict: {word}{warn}")
        if self.status == VERIFIED and self.optional_skipped:
            lines.append("  every required check held; the skipped ones are optional and do not decide the verdict")
        for label, checks in (("failed", self.failed), ("not checked", self.skipped),
                              ("skipped, optional", self.optional_skipped)):
            if checks:
                detail = f"  {label}: {_grouped(checks)}"
                lines.extend(wrap(detail, width, indent=4) if width else [detail])
        return "\n".join(lines)

    def __repr__(self) -> str:
        counts = {s.value: sum(c.status is s for c in self.checks) for s in Status}
        return f"<Verdict {self.status} {counts}>"


def _grouped(checks: list[Check]) -> str:
    """``a, b (reason); c (other reason)``: checks sharing a reason are named together."""
    by_reason: dict[str, list[str]] = {}
    for c in checks:
        by_reason.setdefault(c.reason, []).append(c.id)
    return "; ".join(f"{', '.join(ids)} ({reason})" for reason, ids in by_reason.items())


def _why_optional(checks: list[Check]) -> str:
    """``; a, b is optional <why>``: what made each skipped check optional, as the verifier that made it recorded.
    A check whose maker recorded nothing is said to be so, rather than given a reason it was not."""
    by_why: dict[str, list[str]] = {}
    for c in checks:
        by_why.setdefault(c.optional_because, []).append(c.id)
    parts = []
    for why, ids in by_why.items():
        verb = "is" if len(ids) == 1 else "are"
        parts.append(f"{', '.join(ids)} {verb} optional {why}" if why
                     else f"{', '.join(ids)} {verb} optional (the check does not record which policy made it so)")
    return "".join(f"; {p}" for p in parts)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value
