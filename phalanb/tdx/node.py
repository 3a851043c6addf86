"""What both protocols check of a node's TDX evidence: the quote, the event log and the measurements, in one function.

A model server's report (:mod:`phalanb.vllm.verify`) and an ACI report (:mod:`phalanb.aci.verify`) carry the same
TDX evidence in different shapes; each protocol reads its shape and hands the pieces to :func:`node_tdx_checks`.
"""

from __future__ import annotations

from typing import Any, Iterable

from ..errors import InputError, ParseError, PhalanbError, UnsupportedError
from ..policy import JUDGED_REGISTERS, Policy
from ..verdict import Check, Status
from .measurements import KnownMeasurements, check_measurements
from .roots import tdx_root

__all__ = ["node_tdx_checks", "measurement_check", "attested_ids", "TDX_CHECK_IDS"]

#: The checks :func:`node_tdx_checks` always returns (skipped with a reason when they cannot run).
TDX_CHECK_IDS = ("tdx.quote_signature", "tdx.qe_report", "tdx.pck_chain", "tdx.tcb_status", "tdx.debug_disabled",
                 "tdx.event_log", "app.compose_hash", "tdx.measurements")
_TDX_IDS = TDX_CHECK_IDS


def _skipped(ids: Any, reason: str) -> list[Check]:
    return [Check(i, Status.SKIPPED, reason) for i in ids]


def node_tdx_checks(intel_quote: Any, *, event_log: Any, info: Any, vm_config: Any, policy: Policy,
                    collateral: Any = None, at: float | None = None) -> tuple[list[Check], Any]:
    """The TDX links of one node: quote chain, TCB status, debug, event-log replay, compose hash, expectations.
    Returns the checks and the parsed quote (None when absent or unreadable).

    ``intel_quote``: the quote (bytes or hex, as the report carries it); ``event_log``: the node's event log
    (a list or its JSON text; None or empty when absent); ``info``/``vm_config``: the node's app info and VM
    configuration. Both protocols call this for the TDX evidence of the node they verify.
    """
    from . import TdxPolicy, load_collateral, parse_quote, verify_tdx

    if not intel_quote:
        return _skipped(_TDX_IDS, "the report carries no TDX quote"), None
    try:
        quote = parse_quote(intel_quote)
    except UnsupportedError as exc:
        return [Check("tdx.quote_signature", Status.FAIL, str(exc))] + _skipped(_TDX_IDS[1:], "not a TDX quote"), None
    except ParseError as exc:
        return ([Check("tdx.quote_signature", Status.FAIL, f"the quote cannot be decoded: {exc}")]
                + _skipped(_TDX_IDS[1:], "the quote cannot be decoded")), None
    root = tdx_root(policy)
    tpol = TdxPolicy(accepted_statuses=policy.accepted_tcb, warn_statuses=policy.warn_tcb,
                     rejected_advisories=policy.rejected_advisories, trust_root=root)
    collateral_error = None
    if collateral is not None:
        try:
            collateral = load_collateral(collateral)
        except (ParseError, InputError) as exc:
            collateral, collateral_error = None, Check("tdx.tcb_status", Status.FAIL,
                                                       f"the collateral cannot be read: {exc}")
    log = event_log
    has_log = log not in (None, "", [])
    checks = verify_tdx(quote, collateral=collateral, at=at, policy=tpol, event_log=log if has_log else None,
                        info=info).checks
    if collateral_error is not None:
        checks = [collateral_error if c.id == "tdx.tcb_status" else c for c in checks]
    if not has_log:
        checks.extend(_skipped(("tdx.event_log", "app.compose_hash"), "the report carries no event log, so the "
                               "RTMRs cannot be tied to the software that runs"))
    checks.append(measurement_check(quote, policy))
    checks.extend(_expectation_checks(quote, info, vm_config, log, policy))
    return checks, quote


def measurement_check(quote: Any, policy: Policy) -> Check:
    """``tdx.measurements``: MRSEAM and MRTD judged against the lists shipped with phalanb, the user's pins
    (``policy.accept_measurements`` and ``policy.expected``) and relaxations; under simulated trust the simulator's
    own two values are known as well."""

    known = KnownMeasurements.shipped()
    if policy.simulated:
        from .sim import SIM_MR_SEAM, SIM_MR_TD

        known = (known.with_values("mr_seam", [SIM_MR_SEAM.hex()], name="phalanb's simulated TDX module")
                 .with_values("mr_td", [SIM_MR_TD.hex()], name="phalanb's simulated OS image"))
    pinned: dict[str, set[str]] = {k: set(v) for k, v in policy.accept_measurements.items()}
    for reg in JUDGED_REGISTERS:
        if reg in policy.expected:  # a value the user pinned exactly (policy.measurements compares it)
            pinned.setdefault(reg, set()).add(policy.expected[reg])
    actual = {"mr_seam": quote.body.mr_seam.hex(), "mr_td": quote.body.mr_td.hex()}
    return check_measurements(actual, known=known, pinned=pinned, relaxed=policy.relax_measurements)


def _expectation_checks(quote: Any, info: Any, vm_config: Any, log: Any, policy: Policy) -> list[Check]:
    """``policy.measurements``: the measurements the user said the deployment must have."""
    if not policy.expected:
        return []
    from . import derive

    actual: dict[str, Any] = {"mr_seam": quote.body.mr_seam.hex(), "mr_td": quote.body.mr_td.hex()}
    for i, r in enumerate(quote.body.rtmrs):
        actual[f"rt_mr{i}"] = r.hex()
    try:
        facts = (derive(log, info=info, vm_config=vm_config, quote=quote)
                 if log not in (None, "", []) else None)
    except PhalanbError:
        facts = None
    actual["compose_hash"] = getattr(facts, "compose_hash", None)
    actual["os_image_hash"] = getattr(facts, "os_image_hash", None)
    ev: dict[str, Any] = {"expected": dict(policy.expected), "actual": {k: actual.get(k) for k in policy.expected}}
    unknown = sorted(set(policy.expected) - set(actual))
    if unknown:
        return [Check("policy.measurements", Status.FAIL, f"unknown expected measurement(s) {unknown}; phalanb "
                      f"knows {sorted(actual)}", ev)]
    missing = [k for k in policy.expected if actual.get(k) is None]
    wrong = [k for k in policy.expected if actual.get(k) is not None and actual[k] != policy.expected[k]]
    if wrong:
        return [Check("policy.measurements", Status.FAIL, "not the expected deployment: " + ", ".join(
            f"{k} is {str(actual[k])[:16]}…, expected {policy.expected[k][:16]}…" for k in wrong), ev)]
    if missing:
        return [Check("policy.measurements", Status.SKIPPED, f"cannot compare {', '.join(missing)}: not in this "
                      "report", ev)]
    return [Check("policy.measurements", Status.PASS, f"{', '.join(policy.expected)} as expected", ev)]


def attested_ids(event_log: Any, checks: Iterable[Check]) -> tuple[str | None, str | None]:
    """(app id, compose hash) read from RTMR3 events of ``event_log`` — only when ``tdx.event_log`` passed among
    ``checks`` (the log replays into the quote), since otherwise they are the log's own word."""
    from . import parse_event_log

    if not any(c.id == "tdx.event_log" and c.status is Status.PASS for c in checks):
        return None, None
    try:
        log = parse_event_log(event_log)
    except PhalanbError:
        return None, None
    app, compose = log.runtime("app-id"), log.runtime("compose-hash")
    return (app.event_payload.hex() if app is not None else None,
            compose.event_payload.hex() if compose is not None else None)
