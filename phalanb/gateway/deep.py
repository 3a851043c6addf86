"""The deep audit: an ACI session's evidence re-verified by phalanb itself, as ``upstream.*`` checks.

A session records how the gateway verified its upstream; its evidence is another protocol's document (a model
server's report, the NEAR AI gateway's attestation, a Tinfoil verifier's summary, or nothing at all). Each kind is
identified by the shape registry (:mod:`phalanb.gateway.shapes`) and handled for what it is:

- a model server's report (dstack, TLS-bound, NEAR node, Chutes…): :func:`phalanb.vllm.verify.attest_report`;
- the NEAR AI Cloud gateway's evidence: that gateway's own TD — quote, TCB, event log, compose, report_data binding
  its signing address, TLS fingerprint and the nonce — scoped to the gateway (no model node, no GPU);
- a Tinfoil verifier's summary or an empty evidence (Chutes): named, never verified — the upstream rests on the
  gateway's word, and the verdict stays incomplete.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .. import _json
from ..errors import ParseError, PhalanbError
from ..policy import Policy
from ..verdict import Check, Status
from .shapes import found_fields, identify

__all__ = ["UpstreamReport", "upstream_report", "deep_audit", "parse_near_gateway_evidence", "near_gateway_checks"]


@dataclass
class UpstreamReport:
    """A session evidence part phalanb can re-verify: the JSON document, its registry shape, the parsed report
    (a :class:`~phalanb.vllm.report.AttestationReport`), the signing address the session names and the report's
    own nonce (the one the *gateway* chose when it verified the upstream)."""

    document: Any
    shape: str
    parsed: Any
    signer: str | None
    nonce: bytes | None


def parse_near_gateway_evidence(doc: Mapping[str, Any]) -> Any:
    """The NEAR AI gateway evidence of a session (``{provider: "nearai", request_nonce, tls_cert_fingerprint,
    gateway_attestation}``) as a one-node :class:`~phalanb.vllm.report.AttestationReport` of the gateway's TD:
    its report_data is ``sha256(signing address ‖ TLS fingerprint) ‖ nonce`` (the TLS layout)."""
    from ..vllm.report import AttestationReport, parse_report

    ga = doc.get("gateway_attestation")
    if not isinstance(ga, Mapping):
        raise ParseError("must be an object", field="gateway_attestation")
    inner = dict(ga)
    # The outer fields are the verifier's record of what it asked and saw; the inner ones are the gateway's answer.
    for key in ("request_nonce", "tls_cert_fingerprint"):
        if key not in inner and isinstance(doc.get(key), str):
            inner[key] = doc[key]
    inner.pop("report_data", None)  # a claim: report_data is read from the quote itself
    parsed = parse_report(inner)
    node = parsed.nodes[0]
    node.shape = "near-gateway-evidence"
    return AttestationReport("dstack-tls", [node], raw=dict(doc))


def near_gateway_checks(node: Any, *, nonce: bytes | None, policy: Policy, collateral: Any = None,
                        at: Any = None) -> list[Check]:
    """The NEAR AI Cloud gateway's TD on its own: signing key, report_data binding (TLS layout) and nonce, quote,
    TCB, event log, compose, measurements. ``nonce``: the one the verifier asked with."""
    from ..vllm.report import binding_checks, check_signing_public_key
    from ..vllm.verify import tdx_checks

    checks: list[Check] = []
    key = check_signing_public_key(node)
    if key is not None:
        checks.append(key)
    tdx, quote = tdx_checks(node, policy=policy, collateral=collateral, at=at)
    checks += binding_checks(node, quote.body.report_data if quote is not None else None, nonce)
    return checks + tdx


def _nonce_of(node: Any) -> bytes | None:
    if node is None or not node.request_nonce:
        return None
    try:
        return bytes.fromhex(node.request_nonce)
    except ValueError:
        return None


def upstream_report(session: Any) -> UpstreamReport | None:
    """The first evidence part of ``session`` that phalanb can re-verify (a registry shape that verifies); None
    when there is none."""
    for part in session.evidence_parts:
        try:
            doc = _json.loads(part.data)
            shape = identify(doc)
            if not shape.verifies or shape.protocol == "aci":
                continue
            parsed = shape.parse(doc)
        except (ValueError, PhalanbError):
            continue
        signer = (session.identity or {}).get("signing_address")
        return UpstreamReport(doc, shape.name, parsed, signer if isinstance(signer, str) else None,
                              _nonce_of(parsed.nodes[0] if parsed.nodes else None))
    return None


def _unverifiable(session: Any) -> Check:
    """``upstream.evidence`` skipped, naming what the evidence is."""
    if not session.evidence_parts:
        return Check("upstream.evidence", Status.SKIPPED, "the session carries no evidence (Chutes sessions: "
                     "evidence {}): no deep audit is possible, the upstream's TEE rests on the gateway's claims only",
                     {"kind": "empty"})
    names = []
    for part in session.evidence_parts:
        try:
            doc = _json.loads(part.data)
        except (ValueError, PhalanbError):
            names.append(f"{part.media_type} that is not JSON")
            continue
        try:
            shape = identify(doc)
        except PhalanbError:
            names.append(f"a {part.media_type} document of no shape phalanb knows (it has "
                         f"{found_fields(doc) if isinstance(doc, Mapping) else type(doc).__name__})")
            continue
        names.append(f"{shape.title}" if not shape.verifies else f"a {shape.name} document that cannot be read")
    return Check("upstream.evidence", Status.SKIPPED, f"the evidence is {'; '.join(names)}: phalanb cannot "
                 "re-verify it, so the upstream's TEE rests on the gateway's claims only", {"kinds": names})


def _channel_check(session: Any, node: Any) -> Check | None:
    """``upstream.channel``: the TLS key the gateway pinned for the upstream (channel_binding) is the one the
    upstream's quote commits to (its tls_cert_fingerprint)."""
    fp = getattr(node, "tls_cert_fingerprint", None)
    spkis = [str(b.get("spki_sha256", "")).lower() for b in session.channel_binding
             if isinstance(b, Mapping) and b.get("type") == "tls_spki_sha256"]
    if not fp or not spkis:
        return None
    ok = fp.lower() in spkis
    return Check("upstream.channel", Status.PASS if ok else Status.FAIL,
                 "the session's TLS channel binding is the fingerprint the upstream's quote commits to" if ok else
                 "the session's TLS channel binding is not the fingerprint the upstream's quote commits to",
                 {"tls_cert_fingerprint": fp, "channel_binding": spkis})


def deep_audit(session: Any, policy: Policy, *, at: Any = None, collateral: Any = None, nras_response: Any = None,
               jwks: Any = None) -> list[Check]:
    """Re-verify ``session``'s evidence (an :class:`~phalanb.aci.session.AttestedSession`) as ``upstream.*``
    checks; the :data:`~phalanb.aci.verify.EvidenceAuditor` :func:`phalanb.gateway.verify_aci` hands to ACI."""
    from ..vllm.verify import attest_report

    if not session.evidence_parts:
        return [_unverifiable(session)]
    if session.evidence_digest is None or session.evidence_sha256 != session.evidence_digest:
        return [Check("upstream.evidence", Status.SKIPPED, "the evidence does not match its digest, so it is not "
                      "audited")]
    found = upstream_report(session)
    if found is None:
        return [_unverifiable(session)]
    signer, nonce = found.signer, found.nonce
    if found.shape == "near-gateway-evidence":
        node = found.parsed.nodes[0]
        out = [Check("upstream.evidence", Status.PASS, "the evidence is the NEAR AI Cloud gateway's own attestation; "
                     "re-verified below by phalanb. Scope: the gateway's TD (its quote, event log, compose and the "
                     "binding of its signing address, TLS key and the verifier's nonce) — nothing here attests a "
                     "model node or a GPU", {"shape": found.shape, "signing_address": node.signing_address},
                     required=False)]
        out += [_upstream(c) for c in near_gateway_checks(node, nonce=nonce, policy=policy, collateral=collateral,
                                                          at=at)]
        channel = _channel_check(session, node)
        return out + ([channel] if channel else [])
    att = attest_report(found.document, nonce=nonce, signer=signer, policy=policy, collateral=collateral,
                        nras_response=nras_response, jwks=jwks, at=at)
    shape = found.parsed.shape
    out = [Check("upstream.evidence", Status.PASS, f"the evidence is a {shape} report; re-verified below by "
                 "phalanb (what binds: the upstream's quote to its own signing key and the gateway's nonce; what "
                 "cannot: the reply itself — the gateway's receipt, not the model server, signs it)",
                 {"shape": shape}, required=False)]
    out += [_upstream(c) for c in att.checks if c.id != "trust.simulated"]
    channel = _channel_check(session, att.node)
    if channel is not None:
        out.append(channel)
    if signer:
        bound = att.node is not None and (att.node.signing_address or "").lower() == signer.lower()
        out.append(Check("upstream.identity", Status.PASS if bound else Status.FAIL,
                         "the session's identity is the attested node's signing address" if bound else
                         "the session's identity is not the signing address the upstream report attests",
                         {"session": signer, "report": att.node.signing_address if att.node else None}))
    return out


def _upstream(c: Check) -> Check:
    if c.id == "report.nonce_fresh" and c.status is Status.PASS:
        c = Check(c.id, Status.WARNING, "the upstream report answers the nonce the gateway chose, not ours: it "
                  "shows the report was made for the gateway's request, not when", c.evidence, c.required)
    return Check("upstream." + c.id, c.status, c.reason, c.evidence, c.required)

