"""Collateral (TCB info, QE identity, CRLs) and TCB status with dcap-qvl, plus the policy that judges it.

Three separate jobs, so offline re-verification is the same code as online verification (SPEC §7 steps 5-6):

- **fetch** (:func:`fetch_collateral`, async; :func:`fetch_collateral_sync`): ask a PCCS or Intel PCS;
- **verify** (:func:`verify_with_collateral`): dcap-qvl with stored collateral, a trust root and a time;
- **judge** (:func:`judge`, :class:`TdxPolicy`): which TCB statuses and advisories are acceptable; DEBUG TDs are
  always rejected.

>>> col = load_collateral("tdx_quote_collateral.json")                       # doctest: +SKIP
>>> res = verify_with_collateral(quote, col, at=1752919234)                  # doctest: +SKIP
>>> res.status, [c.status.value for c in judge(quote, res, TdxPolicy())]    # doctest: +SKIP
('UpToDate', ['pass', 'pass'])

Collateral is valid for about 30 days. Verifying outside its window is an explained *skipped* check (the verdict
becomes incomplete), never a crash and never a pass.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import re
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable

import dcap_qvl
from cryptography import x509

from .. import _json
from ..errors import InputError, ParseError, TransportError
from ..timeutil import parse_time
from ..verdict import Check, Status
from .quote import Quote, parse_quote
from .verify import TrustRoot, pck_extension, verify_pck_chain, verify_quote_offline

__all__ = [
    "TCB_STATUSES",
    "Collateral",
    "load_collateral",
    "fetch_collateral",
    "fetch_collateral_sync",
    "DcapResult",
    "verify_with_collateral",
    "TdxPolicy",
    "judge",
    "debug_check",
    "verify_tdx",
    "TdxResult",
]

#: TCB statuses Intel's TCB info can give a platform (SPEC §7), with what each means for a user.
TCB_STATUSES: dict[str, str] = {
    "UpToDate": "the platform has all security updates",
    "SWHardeningNeeded": "up to date, but some attacks need software mitigations the TD must apply itself",
    "ConfigurationNeeded": "up to date, but the platform's BIOS configuration needs changes",
    "ConfigurationAndSWHardeningNeeded": "configuration changes and software mitigations needed",
    "OutOfDate": "the platform misses security updates (microcode / TDX module)",
    "OutOfDateConfigurationNeeded": "out of date and misconfigured",
    "Revoked": "the platform's keys are revoked: nothing it signs can be trusted",
    "TDRelaunchAdvised": "a TDX module update happened at runtime; relaunch the TD to benefit from it",
}


# --------------------------------------------------------------------------------------------------------------
# Collateral as data (JSON-able, for audit bundles)

def _iso(ts: str) -> int:
    return int(_dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp())


@dataclass(frozen=True)
class Collateral:
    """dcap-qvl's collateral (its own JSON form) plus where it came from. Save :meth:`to_dict` in a bundle."""

    data: dict[str, Any]
    source: str = ""
    fetched_at: int | None = None

    def dcap(self, *, platform_only: bool = False) -> "dcap_qvl.QuoteCollateralV3":
        """dcap-qvl's object. ``platform_only`` leaves out ``pck_certificate_chain``: see :meth:`platform`."""
        return self._dcap_platform if platform_only else self._dcap

    @cached_property
    def _dcap(self) -> "dcap_qvl.QuoteCollateralV3":
        # Built once: the collateral is immutable once loaded (``data`` is not to be changed in place).
        try:
            return dcap_qvl.QuoteCollateralV3.from_json(json.dumps(self.data))
        except ValueError as exc:
            raise InputError(f"the collateral is not in dcap-qvl's QuoteCollateralV3 form: {exc}") from None

    @cached_property
    def _dcap_platform(self) -> "dcap_qvl.QuoteCollateralV3":
        return self._dcap if "pck_certificate_chain" not in self.data else self.platform()._dcap

    def platform(self) -> "Collateral":
        """This collateral without ``pck_certificate_chain``: what every machine of the platform type shares.

        A PCCS answers with the PCK chain of the machine whose quote asked, and dcap-qvl prefers that chain to
        the one in the quote it verifies. Kept and reused for another machine of the same FMSPC, it makes that
        machine's genuine quote fail ("Signature is invalid for qe_report"); handed over by a liar, it would
        have dcap-qvl judge a chain other than the one phalanb's own checks verified. So a quote that carries
        its chain is verified with it, and cached collateral keeps only the per-platform items."""
        if "pck_certificate_chain" not in self.data:
            return self
        return Collateral({k: v for k, v in self.data.items() if k != "pck_certificate_chain"}, self.source,
                          self.fetched_at)

    @property
    def tcb_info(self) -> dict[str, Any]:
        return _json.loads(self.data["tcb_info"])

    @property
    def qe_identity(self) -> dict[str, Any]:
        return _json.loads(self.data["qe_identity"])

    @cached_property
    def fmspc(self) -> str:  # read once: every verification compares it with the quote's
        return str(self.tcb_info.get("fmspc", "")).lower()

    def window(self) -> tuple[int, int, dict[str, tuple[int, int]]]:
        """(valid from, valid until, per item) in Unix seconds: the latest issue date and the earliest next update
        of TCB info, QE identity and both CRLs. dcap-qvl accepts the collateral only inside this window."""
        return self._window

    @cached_property
    def _window(self) -> tuple[int, int, dict[str, tuple[int, int]]]:
        items: dict[str, tuple[int, int]] = {}
        for name in ("tcb_info", "qe_identity"):
            d = _json.loads(self.data[name])
            items[name] = (_iso(d["issueDate"]), _iso(d["nextUpdate"]))
        for name in ("root_ca_crl", "pck_crl"):
            raw = self.data[name]
            der = bytes.fromhex(raw) if isinstance(raw, str) else bytes(raw)
            crl = x509.load_der_x509_crl(der)
            nxt = crl.next_update_utc
            items[name] = (int(crl.last_update_utc.timestamp()), int(nxt.timestamp()) if nxt else 2**63)
        return max(a for a, _ in items.values()), min(b for _, b in items.values()), items

    def to_dict(self) -> dict[str, Any]:
        return {"format": "dcap-qvl QuoteCollateralV3", "source": self.source, "fetched_at": self.fetched_at,
                "collateral": self.data}

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_dcap(cls, col: "dcap_qvl.QuoteCollateralV3", *, source: str = "",
                  fetched_at: int | None = None) -> "Collateral":
        return cls(json.loads(col.to_json()), source, fetched_at)


def load_collateral(value: Any, *, source: str | None = None) -> Collateral:
    """Collateral from a path, JSON text, a dict (dcap-qvl's form or :meth:`Collateral.to_dict`), or a
    ``dcap_qvl.QuoteCollateralV3``."""
    if isinstance(value, Collateral):
        return value
    if isinstance(value, dcap_qvl.QuoteCollateralV3):
        return Collateral.from_dcap(value, source=source or "")
    if isinstance(value, Path) or (isinstance(value, str) and not value.lstrip().startswith("{")):
        path = Path(value)
        try:
            text = path.read_text()
        except OSError as exc:
            raise InputError(f"cannot read collateral file {path}: {exc.strerror or exc}") from None
        return load_collateral(text, source=source or f"file:{path}")
    if isinstance(value, (bytes, str)):
        try:
            value = _json.loads(value)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"the collateral is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InputError(f"collateral must be a path, JSON text or a dict, not {type(value).__name__}")
    if "collateral" in value and isinstance(value["collateral"], dict):
        col = Collateral(value["collateral"], source or value.get("source", ""), value.get("fetched_at"))
    else:
        col = Collateral(value, source or "")
    missing = [k for k in ("tcb_info", "qe_identity", "pck_crl", "root_ca_crl", "tcb_info_issuer_chain")
               if k not in col.data]
    if missing:
        raise InputError(f"the collateral lacks {missing}; expected dcap-qvl's QuoteCollateralV3 JSON")
    col.dcap()  # validates the whole shape now rather than at verification time
    for name in ("tcb_info", "qe_identity"):
        # dcap-qvl keeps these two as text and reads them only when verifying; phalanb reads them earlier (FMSPC,
        # validity window), so they are checked here: a JSON object, or an InputError naming the item.
        try:
            item = _json.loads(col.data[name]) if isinstance(col.data[name], (str, bytes)) else None
        except json.JSONDecodeError as exc:
            raise InputError(f"the collateral's {name} is not JSON: {exc}") from None
        if not isinstance(item, dict):
            raise InputError(f"the collateral's {name} must be a JSON object in a string")
    return col


async def fetch_collateral(quote: Quote | bytes | str, pccs_url: str) -> Collateral:
    """Fetch collateral for ``quote`` from a PCCS (or Intel PCS) at ``pccs_url`` (async; network).

    ``pccs_url`` is the service root, e.g. ``https://pccs.phala.network`` or a simulator's ``…/pccs``; the
    ``/sgx|tdx/certification/v4/…`` paths are added by dcap-qvl.
    """
    raw = quote.raw if isinstance(quote, Quote) else parse_quote(quote).raw
    try:
        col = await dcap_qvl.get_collateral(pccs_url, raw)
    except ValueError as exc:
        raise TransportError(f"could not fetch collateral from {pccs_url}: {exc}", url=pccs_url) from None
    return Collateral.from_dcap(col, source=f"pccs:{pccs_url}", fetched_at=int(time.time()))


def fetch_collateral_sync(quote: Quote | bytes | str, pccs_url: str, *, timeout: float = 60.0) -> Collateral:
    """:func:`fetch_collateral` for synchronous callers; works inside a running event loop (Jupyter) too, by
    running the coroutine on a private loop in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(asyncio.wait_for(fetch_collateral(quote, pccs_url), timeout))
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = asyncio.run(asyncio.wait_for(fetch_collateral(quote, pccs_url), timeout))
        except BaseException as exc:  # handed back to the caller's thread
            box["error"] = exc

    t = threading.Thread(target=run, name="phalanb-collateral", daemon=True)
    t.start()
    t.join(timeout + 5)
    if "error" in box:
        raise box["error"]
    if "value" not in box:
        raise TransportError(f"fetching collateral from {pccs_url} took longer than {timeout} s", url=pccs_url)
    return box["value"]


# --------------------------------------------------------------------------------------------------------------
# Verify with dcap-qvl

_EXPIRY_MARKERS = ("expired", "issue date is in the future", "notvalidyet", "crlexpired", "certexpired")


def _date(unix: int | float) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(unix))
    except (OverflowError, OSError, ValueError):
        return f"Unix time {unix}"


def plain_dcap_error(message: str, *, start: float | None = None, end: float | None = None) -> str:
    """dcap-qvl's errors are Rust debug text (``Verification failed: CrlExpired { time: UnixTime(1795799865),
    next_update: UnixTime(1775215317) }``); say the same in words a person can act on.

    >>> plain_dcap_error("Verification failed: CrlExpired { time: UnixTime(1795799865), next_update: UnixTime(1775215317) }")
    "the collateral's CRL expired on 2026-04-03 11:21 UTC (checked as of 2026-11-27 17:17 UTC); pass --at a time when the collateral was valid, or fetch fresh collateral"
    """
    text = message.removeprefix("Verification failed:").strip()
    hint = "pass --at a time when the collateral was valid, or fetch fresh collateral"
    if start is not None and end is not None:
        hint = (f"the collateral is valid from {_date(start)} to {_date(end)}: pass --at a time in that window "
                f"(e.g. --at {int(start + (end - start) / 2)}), or fetch fresh collateral")
    m = re.fullmatch(r"(\w+)Expired \{ time: UnixTime\((\d+)\), next_update: UnixTime\((\d+)\) \}", text)
    if m:
        what = {"Crl": "CRL", "TcbInfo": "TCB info", "QeIdentity": "QE identity"}.get(m.group(1), m.group(1))
        return (f"the collateral's {what} expired on {_date(int(m.group(3)))} (checked as of "
                f"{_date(int(m.group(2)))}); {hint}")
    if "issue date is in the future" in text:
        what = text.split(" issue date")[0].replace("TCBInfo", "TCB info").replace("QEIdentity", "QE identity")
        return f"the collateral's {what} was issued after the time of verification; {hint}"
    if re.search(r"\w+ \{ .* \}", text) or "UnixTime(" in text:
        # An unknown Rust debug form: keep its facts, drop the syntax.
        words = re.sub(r"([a-z])([A-Z])", r"\1 \2", re.sub(r"[{}]", "", text)).lower()
        words = re.sub(r"unix time\((\d+)\)", lambda x: _date(int(x.group(1))), words)
        return "dcap-qvl says: " + " ".join(words.split())
    return message  # already a sentence (e.g. "Verification failed: No matching TCB level found")


@dataclass
class DcapResult:
    """What dcap-qvl said. ``status`` is the TCB status when verification succeeded; otherwise ``error`` holds
    its message and ``expired`` tells whether the cause is the collateral's validity window."""

    at: int
    root: str
    status: str | None = None
    advisory_ids: list[str] = field(default_factory=list)
    error: str | None = None
    expired: bool = False
    wrong_collateral: bool = False
    window: tuple[int, int] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status is not None

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "root": self.root, "status": self.status, "advisory_ids": self.advisory_ids,
                "error": self.error, "expired": self.expired, "wrong_collateral": self.wrong_collateral, "window": list(self.window) if self.window else None}


def verify_with_collateral(quote: Quote | bytes | str, collateral: Any, *, at: int | float | None = None,
                           root: TrustRoot | None = None, fmspc: bytes | None = None) -> DcapResult:
    """dcap-qvl verification (signatures, chain to ``root``, CRLs, TCB info, QE identity) at time ``at`` (Unix
    seconds; default now). Never raises for a quote that fails: the reason is in the result."""
    q = quote if isinstance(quote, Quote) else parse_quote(quote)
    col = load_collateral(collateral)
    root = root or TrustRoot.intel()
    now = int(time.time() if at is None else parse_time(at, field="at"))
    result = DcapResult(at=now, root=root.name)
    quote_fmspc = fmspc.hex() if fmspc is not None else None
    if quote_fmspc is None:
        try:
            quote_fmspc = pck_extension(q)[0].fmspc.hex()
        except ParseError:
            pass
    if quote_fmspc is not None and col.fmspc and col.fmspc != quote_fmspc:
        # Collateral of another platform type says nothing about this one: not a failure of the quote.
        result.error = (f"the collateral is for FMSPC {col.fmspc}, but the quote's PCK certificate says "
                        f"{quote_fmspc}: fetch the collateral of this platform")
        result.wrong_collateral = True
        return result
    try:
        start, end, _ = col.window()
        result.window = (start, end)
    except (KeyError, ValueError, TypeError):
        start = end = None
    try:
        # The quote's own PCK chain (the one tdx.pck_chain verified), never one that travels with the collateral.
        verified = dcap_qvl.verify_with_root_ca(q.raw, col.dcap(platform_only=bool(q.pck_chain_pem)), root.der, now)
    except ValueError as exc:
        raw = " ".join(str(exc).split())
        msg = plain_dcap_error(raw, start=start, end=end)
        result.error = msg
        outside = start is not None and end is not None and not start <= now <= end
        result.expired = outside or any(m in msg.lower().replace(" ", "") for m in
                                        (x.replace(" ", "") for x in _EXPIRY_MARKERS)) or any(
            m in raw.lower() for m in _EXPIRY_MARKERS)
        if not result.expired:
            # Name the root when it is the reason, in words a user can act on.
            chain = verify_pck_chain(q, root, now)
            if not chain.ok:
                result.error = f"{msg} ({chain.reason})"
        return result
    result.status = verified.status
    result.advisory_ids = list(verified.advisory_ids)
    try:
        details = json.loads(verified.to_json())
        result.details = {k: details.get(k) for k in ("qe_status", "platform_status")}
    except (ValueError, AttributeError):
        pass
    return result


# --------------------------------------------------------------------------------------------------------------
# Judge

@dataclass(frozen=True)
class TdxPolicy:
    """What a TDX quote must satisfy beyond valid signatures.

    ``accepted_statuses`` pass; ``warn_statuses`` are accepted but reported as warnings (opt in, e.g.
    ``TdxPolicy().allowing("SWHardeningNeeded")``); anything else fails. ``rejected_advisories`` fail even when
    the status is accepted. DEBUG TDs are always rejected (not configurable: a debug TD has no confidentiality).
    ``trust_root`` defaults to Intel's pinned root; the simulator's root must be passed explicitly.
    """

    accepted_statuses: frozenset[str] = frozenset({"UpToDate"})
    warn_statuses: frozenset[str] = frozenset()
    rejected_advisories: frozenset[str] = frozenset()
    trust_root: TrustRoot | None = None

    def __post_init__(self) -> None:
        for name in ("accepted_statuses", "warn_statuses", "rejected_advisories"):
            object.__setattr__(self, name, frozenset(getattr(self, name)))
        unknown = (self.accepted_statuses | self.warn_statuses) - set(TCB_STATUSES)
        if unknown:
            raise InputError(f"unknown TCB status {sorted(unknown)}; known: {sorted(TCB_STATUSES)}")
        if "Revoked" in self.accepted_statuses | self.warn_statuses:
            raise InputError("a Revoked platform can never be accepted")

    def allowing(self, *statuses: str) -> "TdxPolicy":
        """A copy that also accepts ``statuses``, as warnings."""
        return TdxPolicy(self.accepted_statuses, self.warn_statuses | set(statuses), self.rejected_advisories,
                         self.trust_root)

    def rejecting(self, advisories: Iterable[str]) -> "TdxPolicy":
        return TdxPolicy(self.accepted_statuses, self.warn_statuses,
                         self.rejected_advisories | set(advisories), self.trust_root)

    @property
    def root(self) -> TrustRoot:
        return self.trust_root or TrustRoot.intel()


def debug_check(quote: Quote) -> Check:
    """``tdx.debug_disabled``: the TD's DEBUG attribute is off (from the quote alone; no collateral needed)."""
    attrs = quote.body.attributes
    ev = {"td_attributes": quote.body.td_attributes.hex(), "flags": attrs.flags}
    if attrs.debug:
        return Check("tdx.debug_disabled", Status.FAIL, "the TD runs in DEBUG mode: the host can read its memory, "
                     "so nothing it attests is confidential", ev)
    return Check("tdx.debug_disabled", Status.PASS, f"DEBUG is off (td_attributes {attrs})", ev)


def _fmt(ts: int) -> str:
    return _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def judge(quote: Quote, result: DcapResult | None, policy: TdxPolicy | None = None) -> list[Check]:
    """``tdx.tcb_status`` (from dcap-qvl's result and the policy) and ``tdx.debug_disabled``."""
    policy = policy or TdxPolicy()
    checks: list[Check] = []
    if result is None:
        checks.append(Check("tdx.tcb_status", Status.SKIPPED, "no collateral given: TCB status, revocation and QE "
                            "identity not checked (fetch it from a PCCS or pass a stored copy)"))
    elif not result.ok and result.wrong_collateral:
        checks.append(Check("tdx.tcb_status", Status.SKIPPED, result.error or "collateral of another platform",
                            result.to_dict()))
    elif not result.ok and result.expired:
        if result.window:
            start, end = result.window
            reason = (f"the collateral is not valid at {_fmt(result.at)} (valid {_fmt(start)} to {_fmt(end)}): "
                      f"fetch fresh collateral, or verify at a time inside its window (e.g. --at "
                      f"{int(start + (end - start) / 2)})")
        else:
            reason = f"{result.error}"
        checks.append(Check("tdx.tcb_status", Status.SKIPPED, reason, result.to_dict()))
    elif not result.ok and quote.body.attributes.debug and "debug" in (result.error or "").lower():
        # dcap-qvl stops at the DEBUG attribute before judging the TCB; the fault is tdx.debug_disabled's to name.
        checks.append(Check("tdx.tcb_status", Status.SKIPPED, "dcap-qvl does not evaluate the TCB of a DEBUG TD "
                            "(see tdx.debug_disabled)", result.to_dict()))
    elif not result.ok:
        reason = result.error or "dcap-qvl refused the quote"
        checks.append(Check("tdx.tcb_status", Status.FAIL, f"DCAP verification failed: {reason}", result.to_dict()))
    else:
        status = result.status or "Unknown"
        meaning = TCB_STATUSES.get(status, "an unknown status")
        bad_adv = sorted(set(result.advisory_ids) & policy.rejected_advisories)
        adv = f"; advisories {', '.join(result.advisory_ids)}" if result.advisory_ids else ""
        if bad_adv:
            checks.append(Check("tdx.tcb_status", Status.FAIL, f"TCB {status}, but advisories {bad_adv} are "
                                "rejected by the policy", result.to_dict()))
        elif status in policy.accepted_statuses:
            checks.append(Check("tdx.tcb_status", Status.PASS, f"TCB {status} ({meaning}){adv}", result.to_dict()))
        elif status in policy.warn_statuses:
            # Held with a caveat the user explicitly accepted: a warning counts as held and stays visible.
            checks.append(Check("tdx.tcb_status", Status.WARNING, f"TCB {status} accepted by policy: {meaning}{adv}",
                                result.to_dict()))
        else:
            checks.append(Check("tdx.tcb_status", Status.FAIL, f"TCB {status} ({meaning}) is not accepted by the "
                                f"policy (accepted: {sorted(policy.accepted_statuses | policy.warn_statuses)}){adv}",
                                result.to_dict()))
    checks.append(debug_check(quote))
    return checks




@dataclass
class TdxResult:
    """Everything :func:`verify_tdx` found: the checks (the verdict's input) and the results behind them."""

    quote: Quote
    checks: list[Check]
    offline: Any            # phalanb.tdx.verify.OfflineResult: the four steps, the PCK extension values
    dcap: DcapResult | None  # None when no collateral was given

    def __iter__(self):
        return iter(self.checks)


def verify_tdx(quote: Quote | bytes | str, *, collateral: Any = None, at: int | float | None = None,
               policy: TdxPolicy | None = None, event_log: Any = None, info: Any = None) -> TdxResult:
    """Every TDX check in order — ``tdx.quote_signature``, ``tdx.qe_report``, ``tdx.pck_chain``,
    ``tdx.tcb_status``, ``tdx.debug_disabled``, then ``tdx.event_log`` and ``app.compose_hash`` when an event log
    is given. The one function the CLI, the report verifier and the notebooks call (offline: collateral is
    passed in, never fetched here).

    >>> Verdict(verify_tdx(raw, collateral=col, at=1752919234).checks).status        # doctest: +SKIP
    'verified'
    """
    from .dstack import check_compose_hash
    from .eventlog import check_event_log

    q = quote if isinstance(quote, Quote) else parse_quote(quote)
    policy = policy or TdxPolicy()
    root = policy.root
    offline = verify_quote_offline(q, root=root, at=at)
    checks = offline.checks()
    fmspc = offline.pck.fmspc if offline.pck is not None else None
    dcap = None if collateral is None else verify_with_collateral(q, collateral, at=at, root=root, fmspc=fmspc)
    checks += judge(q, dcap, policy)
    if event_log is not None:
        checks.append(check_event_log(q, event_log))
        checks.append(check_compose_hash(q, event_log, info=info))
    return TdxResult(q, checks, offline, dcap)
