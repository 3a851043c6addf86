"""ACI verification: the bindings, signatures and deep audit of ACI.md §8, judged by the auditor's Policy.

The chain, link by link:

1. the report: its keyset hashes to the digest it claims (``aci.keyset_digest``); the statement rebuilt from *our*
   nonce and the *recomputed* digest hashes to ``report_data`` (``aci.report_data``, ``aci.nonce_fresh``);
   that value sits in the TDX quote's report_data slot (``aci.quote_slot``); the quote verifies to Intel's root
   (``tdx.*``); the event log replays and measures the app_compose shown (``app.*``, ``aci.provenance``); the
   keys descend from an allow-listed KMS root (``aci.key_custody``); the keyset has not expired
   (``aci.keyset_expiry``). Only when the binding and the quote hold is the keyset **established**.
2. the receipt: signed by a key of the *established* keyset (``receipt.signature``), citing its digest
   (``receipt.keyset``), over the hashes of our exact request and response bytes (``receipt.request_hash``,
   ``receipt.response_hash``; under E2EE v2 the restored request and the sealed wire reply), and, behind an
   aggregator, citing a successful upstream verification (``receipt.upstream``). Under E2EE v2 also: the prompt
   went to a key of the established keyset (``e2ee.key_attested``), left encrypted (``e2ee.request_encrypted``),
   and the reply authenticates under its AAD (``e2ee.response_authenticated``).
3. the session the receipt cites: its id, evidence digest, claims, refuted claims and window (``session.*``),
   and its evidence re-verified by the ``auditor`` handed in (``upstream.*``): the upstream's report is another
   protocol's, so the deep audit lives above both protocols (:func:`phalanb.gateway.verify_aci` passes it).

Each document is judged by its own shape's rules (v3, current, preview; ACI-v3.md §9), never a mixture: in v3 the
keyset digest is sha256 of ``workload_keyset_b64``'s exact bytes (``aci.keyset_b64``), ``aci.tee_type`` names what
cannot be verified yet (``sev_snp``), receipts are envelopes signed over their decoded payload bytes, session ids
are ``sha256:`` of the served bytes, and E2EE v3 adds ``e2ee.model_key``, ``e2ee.request_sealed``, ``e2ee.open``.

Nothing passes on a document's own word; anything that cannot be checked is skipped with its reason.

>>> verdict = verify_aci(exchange, receipt=receipt_bytes, report=report_bytes, nonce=nonce,
...                      sessions={sid: session_bytes})                       # doctest: +SKIP
>>> verdict.status                                                            # doctest: +SKIP
'incomplete'
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..errors import InputError, ParseError, PhalanbError
from ..policy import Policy
from ..verdict import Check, Status, Verdict
from . import jcs
from ._util import hex_bytes
from .crypto import compressed, ed25519_ok, eth_address, recover_secp256k1, secp256k1_rs_ok
from .custody import custody_chain, roles_needed
from .established import AciAttestation, EstablishedKeyset
from .receipt import Receipt, SignatureWrapper, parse_receipt, parse_signature_wrapper
from .report import AciReport, parse_aci_report
from .session import AttestedSession, parse_session

__all__ = ["EstablishedKeyset", "AciAttestation", "verify_aci_report", "verify_receipt", "verify_session",
           "verify_aci", "verify_legacy_gateway", "statement", "report_data_for", "workload_id_of",
           "MAX_KEYSET_LIFETIME_S", "EvidenceAuditor", "keyset_endorsement_check"]

#: A keyset valid for more than this is implausible (the live preview keyset says u64::MAX: never expires).
MAX_KEYSET_LIFETIME_S = 10 * 365 * 24 * 3600

_PURPOSE = "aci.report_data.v1"
_ENDORSEMENT_PURPOSE = "aci.keyset.endorsement.v1"
_QUOTE_CHECKS = ("tdx.quote_signature", "tdx.qe_report", "tdx.pck_chain")


# -- recomputations (public so notebooks can show the bytes) ---------------------------------------------------

def workload_id_of(report: AciReport) -> str | None:
    """Preview: ``"sha256:" + hex(sha256(JCS(workload_identity.public_key)))``."""
    pk = report.identity_public_key
    return jcs.sha256_digest(pk) if pk is not None else None


def statement(keyset_digest: str, nonce_hex: str | None, *, shape: str = "current",
              workload_id: str | None = None) -> bytes:
    """The exact statement bytes whose sha256 is ``report_data`` (ACI.md §2.1/§2.2; v3: ACI-v3.md §4, the same
    template as current, with a nonce of 1-128 characters of ``[0-9A-Za-z_-]`` — anything else is refused here,
    before any statement is built)."""
    if shape == "v3" and nonce_hex is not None:
        from .v3 import check_nonce

        check_nonce(nonce_hex)
    if shape == "preview":
        return jcs.canonicalize({"nonce": nonce_hex, "purpose": _PURPOSE, "workload_id": workload_id,
                                 "workload_keyset_digest": keyset_digest})
    return jcs.canonicalize({"keyset_digest": keyset_digest, "nonce": nonce_hex, "purpose": _PURPOSE})


def report_data_for(keyset_digest: str, nonce_hex: str | None, *, shape: str = "current",
                    workload_id: str | None = None) -> str:
    return hashlib.sha256(statement(keyset_digest, nonce_hex, shape=shape, workload_id=workload_id)).hexdigest()


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- the report -------------------------------------------------------------------------------------------------

def _tdx_checks(report: AciReport, *, policy: Policy, collateral: Any, at: Any) -> tuple[list[Check], Any]:
    """The report's TDX evidence, checked as every node's is (:func:`phalanb.tdx.node.node_tdx_checks`)."""
    from ..tdx.node import node_tdx_checks  # on first use, as the TDX code always was here

    ev = report.evidence
    return node_tdx_checks(ev.quote, event_log=ev.event_log_text or ev.event_log,
                           info={"app_compose": ev.app_compose} if ev.app_compose is not None else {},
                           vm_config=ev.vm_config, policy=policy, collateral=collateral, at=at)


def _binding_checks(report: AciReport, nonce: bytes | None, digest: str, wid: str | None
                    ) -> tuple[Check, Check]:
    """``aci.report_data`` and ``aci.nonce_fresh``."""
    claimed = report.report_data.lower()
    ours = _nonce_text(nonce)
    kw = {"shape": report.shape, "workload_id": wid}
    null_rd = report_data_for(digest, None, **kw)
    ev: dict[str, Any] = {"report_data": claimed, "keyset_digest": digest, "workload_id": wid, "nonce": ours,
                          "null_nonce_report_data": null_rd}
    if ours is not None and report.shape == "v3":
        from .v3 import NONCE_RULE, nonce_ok

        if not nonce_ok(ours):
            why = (f"the nonce {ours[:40]!r}{'…' if len(ours) > 40 else ''} is not {NONCE_RULE}: no v3 statement is "
                   "built from it (the service must have refused it too)")
            return Check("aci.report_data", Status.FAIL, why, ev), Check("aci.nonce_fresh", Status.FAIL, why, ev)
    if ours is not None:
        st = statement(digest, ours, **kw)
        want = hashlib.sha256(st).hexdigest()
        ev.update(statement=st.decode(), expected=want)
        if claimed == want:
            return (Check("aci.report_data", Status.PASS, "sha256(statement from our nonce and the recomputed "
                          "keyset digest) equals report_data", ev),
                    Check("aci.nonce_fresh", Status.PASS, "report_data commits to the nonce we sent", ev))
        if claimed == null_rd:
            why = ("report_data commits to a null nonce: the report binds the keyset but answers no request of "
                   "ours, so a replay looks the same")
            return (Check("aci.report_data", Status.FAIL, why, ev), Check("aci.nonce_fresh", Status.FAIL, why, ev))
        return (Check("aci.report_data", Status.FAIL, "report_data is not sha256 of the statement for our nonce and "
                      "this keyset: the quote vouches for another keyset or another request", ev),
                Check("aci.nonce_fresh", Status.FAIL, "report_data does not commit to our nonce (replayed, or "
                      "answered someone else's request)", ev))
    if claimed == null_rd:
        ev["statement"] = statement(digest, None, **kw).decode()
        return (Check("aci.report_data", Status.PASS, "sha256(statement with a null nonce and the recomputed keyset "
                      "digest) equals report_data (the report was requested without a nonce)", ev),
                Check("aci.nonce_fresh", Status.SKIPPED, "we sent no nonce (and the report carries none): "
                      "freshness cannot be shown", ev))
    return (Check("aci.report_data", Status.SKIPPED, "report_data commits to a nonce that was not given: pass the "
                  "nonce you sent to rebuild the statement", ev),
            Check("aci.nonce_fresh", Status.SKIPPED, "no nonce given, so freshness cannot be shown", ev))


def _nonce_text(nonce: bytes | str | None) -> str | None:
    """The nonce as the statement carries it: bytes we sent travel as lowercase hex; a v3 nonce may be given as the
    exact string sent (1-128 characters of [0-9A-Za-z_-])."""
    if nonce is None or isinstance(nonce, str):
        return nonce
    return bytes(nonce).hex()


def _tee_type_check(report: AciReport) -> Check:
    """``aci.tee_type`` (v3): ``tdx`` is verified as a TDX quote; ``sev_snp`` is a type v3 defines that phalanb
    cannot verify yet (named, never passed); anything else needs a published verifier extension."""
    from .v3 import UNVERIFIABLE_TEE_TYPES

    tee = report.tee_type
    ev = {"tee_type": tee}
    if tee == "tdx":
        return Check("aci.tee_type", Status.PASS, "tee_type tdx: the evidence is checked as an Intel TDX quote", ev)
    if tee in UNVERIFIABLE_TEE_TYPES:
        return Check("aci.tee_type", Status.SKIPPED, f"tee_type {tee}: {UNVERIFIABLE_TEE_TYPES[tee]}", ev)
    return Check("aci.tee_type", Status.FAIL, f"tee_type {tee!r} is not one v3 defines (tdx, sev_snp): it needs a "
                 "published verifier extension, and phalanb has none", ev)


def _slot_check(report: AciReport, quote: Any) -> Check:
    """``aci.quote_slot``: quote report_data == evidence.quote_report_data == report_data ‖ 32 zero bytes."""
    want = report.report_data.lower() + "00" * 32
    served = (report.evidence.quote_report_data or "").lower()
    ev: dict[str, Any] = {"expected_slot": want, "quote_report_data": served or None}
    if report.shape == "v3" and report.tee_type == "sev_snp":
        return Check("aci.quote_slot", Status.SKIPPED, "tee_type sev_snp: phalanb cannot read an SEV-SNP report's "
                     "report_data yet", ev)
    if quote is None:
        return Check("aci.quote_slot", Status.FAIL if report.evidence.quote else Status.SKIPPED,
                     "the quote cannot be decoded, so its report_data cannot be read" if report.evidence.quote
                     else "the report carries no quote", ev)
    in_quote = quote.body.report_data.hex()
    ev["quote_body_report_data"] = in_quote
    problems = []
    if in_quote != want:
        problems.append("the quote's report_data is not report_data ‖ 32 zero bytes")
    if served != want and report.shape != "v3":
        # v3 (ACI-v3.md §5, trap 9): quote_report_data's length varies (the reference fixture: 32 bytes); the slot
        # is read from the quote itself, as the reference CLI does.
        problems.append("evidence.quote_report_data is not report_data ‖ 32 zero bytes")
    if problems:
        return Check("aci.quote_slot", Status.FAIL, "; ".join(problems), ev)
    return Check("aci.quote_slot", Status.PASS, "the TDX quote's report_data (offset 568 in a v4 quote) is "
                 "report_data ‖ 32 zero bytes, as evidence.quote_report_data says", ev)


def _expiry_check(report: AciReport, at: float) -> Check:
    na = report.not_after
    ev = {"not_after": na, "at": int(at), "shape": report.shape}
    if na <= at:
        return Check("aci.keyset_expiry", Status.FAIL, f"the keyset expired (not_after {na} ≤ now {int(at)})", ev)
    if na - at > MAX_KEYSET_LIFETIME_S:
        why = (f"not_after {na} is more than 10 years ahead: the keyset effectively never expires, so a leaked "
               "key stays valid")
        if report.shape == "preview":
            return Check("aci.keyset_expiry", Status.WARNING, why + " (the live preview build sets u64::MAX)", ev)
        return Check("aci.keyset_expiry", Status.FAIL, why, ev)
    return Check("aci.keyset_expiry", Status.PASS, f"the keyset is valid until {na}", ev)


def keyset_endorsement_check(report: AciReport, digest: str) -> Check:
    """``aci.keyset_endorsement`` (preview shape): the workload identity key signed the recomputed keyset digest."""
    e = report.keyset_endorsement
    pk = report.identity_public_key or {}
    payload = jcs.canonicalize({"purpose": _ENDORSEMENT_PURPOSE, "workload_keyset_digest": digest})
    ev: dict[str, Any] = {"payload": payload.decode(), "identity_key": pk.get("public_key"), "endorsement": e}
    if not e:
        return Check("aci.keyset_endorsement", Status.FAIL, "a preview report must carry keyset_endorsement", ev)
    algo, value = e.get("algo"), e.get("value")
    try:
        sig = hex_bytes(value if isinstance(value, str) else "", "keyset_endorsement.value")
        key = hex_bytes(pk.get("public_key") or "", "workload_identity.public_key")
    except ParseError as exc:
        return Check("aci.keyset_endorsement", Status.FAIL, str(exc), ev)
    if algo != pk.get("algo"):
        return Check("aci.keyset_endorsement", Status.FAIL, f"endorsement algo {algo!r} is not the identity key's "
                     f"{pk.get('algo')!r}", ev)
    if algo == "ecdsa-secp256k1":
        ok = secp256k1_rs_ok(key, sig, payload)
    elif algo == "ed25519":
        ok = ed25519_ok(key, sig, payload)
    else:
        return Check("aci.keyset_endorsement", Status.FAIL, f"refused: unknown endorsement algo {algo!r}", ev)
    if ok:
        return Check("aci.keyset_endorsement", Status.PASS, f"the workload identity key signed the recomputed keyset "
                     f"digest ({algo})", ev)
    return Check("aci.keyset_endorsement", Status.FAIL, "the endorsement does not verify under the workload identity "
                 "key for the recomputed keyset digest", ev)


def _provenance_check(report: AciReport, tdx: list[Check]) -> Check:
    by_id = {c.id: c for c in tdx}
    log, compose = by_id.get("tdx.event_log"), by_id.get("app.compose_hash")
    ev: dict[str, Any] = {"source_provenance": report.source_provenance,
                          "labels_only": "repo_url/repo_commit are labels unless a policy ties them to the "
                                         "measurement"}
    if report.evidence.app_compose is None:
        return Check("aci.provenance", Status.SKIPPED, "the report carries no app_compose: the measured "
                     "configuration cannot be shown", ev)
    if compose is not None:
        ev.update({k: compose.evidence.get(k) for k in ("sha256_app_compose", "compose_hash_event")})
    if log is None or compose is None:
        return Check("aci.provenance", Status.SKIPPED, "no readable quote and event log to corroborate app_compose",
                     ev)
    if log.status is Status.FAIL or compose.status is Status.FAIL:
        return Check("aci.provenance", Status.FAIL, "app_compose is not corroborated by the quote: "
                     + (log.reason if log.status is Status.FAIL else compose.reason), ev)
    if log.status is Status.PASS and compose.status is Status.PASS:
        return Check("aci.provenance", Status.PASS, "sha256(app_compose) equals the compose-hash event, and the "
                     "event log replays to the quote's RTMR3", ev)
    return Check("aci.provenance", Status.SKIPPED, "app_compose cannot be corroborated: "
                 + (log.reason if log.status is not Status.PASS else compose.reason), ev)


def _custody_check(report: AciReport, policy: Policy, event_log_ok: bool) -> Check:
    from ..tdx import parse_event_log

    custody = report.evidence.key_custody
    ev: dict[str, Any] = {"allowed_roots": list(policy.aci_kms_roots)}
    if not policy.aci_kms_roots:
        return Check("aci.key_custody", Status.SKIPPED, "no KMS root allow-list in the policy (aci_kms_roots): the "
                     "keys' custody chain is not judged", ev)
    if not custody or custody.get("provider") != "dstack-kms":
        return Check("aci.key_custody", Status.SKIPPED if not custody else Status.FAIL,
                     "the report carries no key custody evidence" if not custody else
                     f"custody provider {custody.get('provider')!r} is not dstack-kms", ev)
    if not event_log_ok:
        return Check("aci.key_custody", Status.SKIPPED, "the event log did not replay to the quote, so its app-id "
                     "(which the KMS signature covers) cannot be believed", ev)
    try:
        app = parse_event_log(report.evidence.event_log).runtime("app-id")
    except PhalanbError:
        app = None
    if app is None or len(app.event_payload) != 20:
        return Check("aci.key_custody", Status.FAIL, "the event log has no 20-byte app-id event", ev)
    ev["app_id"] = app.event_payload.hex()
    links = [custody_chain(k, shape=report.shape, app_id=app.event_payload) for k in custody["keys"]]
    ev["links"] = [link.to_dict() for link in links]
    keyset_keys = {str(k.get("public_key")).lower() for k in report.receipt_signing_keys + report.e2ee_public_keys}
    if report.identity_public_key:
        keyset_keys.add(str(report.identity_public_key.get("public_key")).lower())
    problems = []
    for role in roles_needed(report.shape):
        mine = [(link, k) for link, k in zip(links, custody["keys"]) if link.role == role]
        if not mine:
            problems.append(f"no custody entry for the {role} key")
            continue
        for link, entry in mine:
            if str(entry.get("public_key", "")).lower() not in keyset_keys:
                problems.append(f"the {role} custody entry covers a key the keyset does not list")
            elif link.problem:
                problems.append(f"{role}: {link.problem}")
            elif link.root not in policy.aci_kms_roots:
                problems.append(f"{role}: chain ends at KMS root {link.root}, not in the allow-list")
    good = {str(entry.get("public_key", "")).lower() for link, entry in zip(links, custody["keys"])
            if link.role == "receipt" and not link.problem and link.root in policy.aci_kms_roots}
    for k in report.receipt_signing_keys:
        if str(k.get("public_key")).lower() not in good:
            # Every key that may sign receipts needs its own chain: one covered key must not vouch for another.
            problems.append(f"receipt key {k.get('key_id')!r} has no custody chain to an allow-listed root")
    if problems:
        return Check("aci.key_custody", Status.FAIL, "; ".join(dict.fromkeys(problems)), ev)
    note = (" (the chain covers the KMS-derived secp256k1 key; its Ed25519/X25519 form rests on the measured code)"
            if report.shape in ("current", "v3") else "")
    return Check("aci.key_custody", Status.PASS, f"{', '.join(roles_needed(report.shape))} key(s) descend from an "
                 f"allow-listed KMS root via app {ev['app_id']}{note}", ev)


#: Why no policy requires the TLS link: the reply is bound by the receipt's signature, not by the channel.
TLS_OPTIONAL = ("under every policy: the receipt's signature by a key of the attested keyset binds the reply; the "
                "TLS key would only add that the connection itself ended inside the gateway")


def _tls_check(report: AciReport, spki: str | None, host: str | None) -> Check:
    entries = report.tls_public_keys
    ev: dict[str, Any] = {"observed_spki_sha256": spki, "host": host, "tls_public_keys": entries}
    if spki is None:
        return Check("channel.tls_spki", Status.SKIPPED, "no TLS key observed (plain http or not captured): that the "
                     "connection ended inside the attested gateway is not shown; the receipt still binds the "
                     "reply", ev, required=False, optional_because=TLS_OPTIONAL)
    spki = spki.lower().removeprefix("sha256:")
    listed = [e for e in entries if isinstance(e, Mapping) and (e.get("domain") in (None, host))]
    if any(str(e.get("spki_sha256", "")).lower().removeprefix("sha256:") == spki for e in listed):
        return Check("channel.tls_spki", Status.PASS, f"the TLS key we saw is in the keyset for {host or 'any host'}",
                     ev)
    return Check("channel.tls_spki", Status.FAIL, f"the TLS key we saw ({spki[:16]}…) is not in the keyset's "
                 f"tls_public_keys for {host or 'this host'}: another replica, or a TLS terminator outside the TEE",
                 ev)


def verify_aci_report(report: AciReport | bytes | str | Mapping[str, Any], *, nonce: bytes | str | None,
                      policy: Policy,
                      collateral: Any = None, at: float | None = None, keyset_digest_header: str | None = None,
                      tls_spki_sha256: str | None = None, host: str | None = None) -> AciAttestation:
    """Every check of an ACI report; ``.keyset`` is set only when the binding and the quote verified.

    ``nonce``: the 32 bytes we sent (None: none was sent); for a v3 report also the exact nonce string sent.
    ``collateral``: Intel collateral for the TCB status
    (without it ``tdx.tcb_status`` is skipped and the verdict is at best incomplete).
    """
    if not isinstance(report, AciReport):
        try:
            report = parse_aci_report(report)
        except ParseError as exc:
            reason = f"the ACI report cannot be read: {exc}"
            return AciAttestation([Check("aci.shape", Status.FAIL, reason)] + [
                Check(i, Status.SKIPPED, reason) for i in ("aci.keyset_digest", "aci.report_data", "aci.nonce_fresh",
                                                          "aci.keyset_expiry", "aci.provenance")], None, None, reason)
    at = time.time() if at is None else at
    checks = [Check("aci.shape", Status.PASS, f"{report.shape}: {report.description}",
                    {"shape": report.shape, "serving": report.serving, "serving_raw": report.serving_raw},
                    required=False)]
    if report.shape == "v3":
        # ACI-v3.md §3: the digest covers the decoded bytes exactly as served, never a re-canonicalisation.
        from .v3 import served_sha256

        raw = report.keyset_bytes or b""
        checks.append(Check("aci.keyset_b64", Status.PASS, f"workload_keyset_b64 is canonical base64 of {len(raw)} "
                            "bytes that parse as a keyset (strict JSON: no duplicate members)",
                            {"bytes": len(raw)}))
        digest = served_sha256(raw)
        rule = "sha256(decoded workload_keyset_b64, as served)"
    else:
        digest = jcs.sha256_digest(report.keyset)
        rule = "sha256(JCS(workload_keyset))"
    ok_digest = digest == report.claimed_keyset_digest
    checks.append(Check("aci.keyset_digest", Status.PASS if ok_digest else Status.FAIL,
                        f"{rule} equals workload_keyset_digest" if ok_digest else
                        f"the keyset does not hash to the digest the report claims ({rule}): it was altered",
                        {"recomputed": digest, "claimed": report.claimed_keyset_digest, "rule": rule}))
    wid = None
    if report.shape == "preview":
        wid = workload_id_of(report)
        ok = wid == report.workload_id
        checks.append(Check("aci.workload_id", Status.PASS if ok else Status.FAIL,
                            "workload_id = sha256(JCS(workload_identity.public_key))" if ok else
                            "workload_id is not the hash of the workload identity key",
                            {"recomputed": wid, "claimed": report.workload_id}))
    rd, fresh = _binding_checks(report, nonce, digest, wid)
    checks += [rd, fresh]
    if report.shape == "v3":
        checks.append(_tee_type_check(report))
    if report.shape == "v3" and report.tee_type != "tdx":
        tdx, quote = [Check(i, Status.SKIPPED, f"tee_type {report.tee_type!r}: no Intel TDX quote to verify"
                            + (" (SEV-SNP verification comes later)" if report.tee_type == "sev_snp" else ""))
                      for i in _QUOTE_CHECKS], None
    else:
        tdx, quote = _tdx_checks(report, policy=policy, collateral=collateral, at=at)
    checks.append(_slot_check(report, quote))
    checks.append(_expiry_check(report, at))
    if report.shape == "preview":
        checks.append(keyset_endorsement_check(report, digest))
    checks.append(_provenance_check(report, tdx))
    log_ok = any(c.id == "tdx.event_log" and c.status is Status.PASS for c in tdx)
    checks.append(_custody_check(report, policy, log_ok))
    from ..services import profile_check
    from ..tdx.node import attested_ids

    app_id, compose_hash = attested_ids(report.evidence.event_log, tdx)
    checks.append(profile_check(policy, protocol="aci", shape=report.shape, app_id=app_id, compose_hash=compose_hash))
    checks.append(_tls_check(report, tls_spki_sha256, host))
    if keyset_digest_header is not None:
        ok = keyset_digest_header.strip().lower() == digest
        checks.append(Check("aci.keyset_header", Status.PASS if ok else Status.FAIL,
                            "X-ACI-Keyset-Digest names this keyset" if ok else
                            "X-ACI-Keyset-Digest names another keyset: a different replica/keyset answered",
                            {"header": keyset_digest_header, "recomputed": digest}))
    checks += tdx
    if policy.simulated:
        checks.append(Check("trust.simulated", Status.WARNING, "verified against phalanb's SIMULATED roots: this "
                            "proves the checks work, not that real Intel hardware answered", required=False))
    status = {c.id: c.status for c in checks}
    needed = ["aci.keyset_digest", "aci.report_data", "aci.quote_slot", *_QUOTE_CHECKS]
    if report.shape == "preview":
        needed += ["aci.workload_id", "aci.keyset_endorsement"]
    if report.shape == "v3":
        needed += ["aci.keyset_b64", "aci.tee_type"]
    missing = [i for i in needed if status.get(i) is not Status.PASS]
    # A key that expired, a debug TD, a revoked TCB or keys from an unaccepted KMS: the quote may verify, but the
    # keys it vouches for are not trusted to sign receipts.
    missing += [i for i in ("aci.keyset_expiry", "tdx.debug_disabled", "tdx.tcb_status", "aci.key_custody",
                            "service.profile") if status.get(i) is Status.FAIL]
    if missing:
        return AciAttestation(checks, None, report, f"the keyset is not established: {', '.join(missing)} did not "
                              "pass")
    keyset = EstablishedKeyset(digest=digest, keyset=report.keyset, shape=report.shape, serving=report.serving,
                               workload_id=wid)
    return AciAttestation(checks, keyset, report)


# -- the receipt ------------------------------------------------------------------------------------------------

def _signature_check(receipt: Receipt, keyset: EstablishedKeyset | None) -> Check:
    ev: dict[str, Any] = {"key_id": receipt.key_id, "shape": receipt.shape}
    if keyset is None:
        return Check("receipt.signature", Status.SKIPPED, "no established keyset (no verified report): the receipt's "
                     "signing key cannot be trusted", ev)
    if receipt.shape != keyset.shape:
        return Check("receipt.signature", Status.FAIL, f"a {receipt.shape}-shape receipt against a {keyset.shape}-"
                     "shape keyset: the shapes' rules are never mixed", ev)
    entry = keyset.receipt_keys.get(receipt.key_id or "")
    if entry is None:
        return Check("receipt.signature", Status.FAIL, f"key_id {receipt.key_id!r} is not among the established "
                     f"keyset's receipt_signing_keys ({', '.join(keyset.receipt_keys) or 'none'})", ev)
    algo = entry.get("algo")
    ev.update(algo=algo, public_key=entry.get("public_key"))
    if receipt.signature_algo is not None and receipt.signature_algo != algo:
        return Check("receipt.signature", Status.FAIL, f"the receipt says algo {receipt.signature_algo!r} but the "
                     f"keyset lists {receipt.key_id!r} as {algo!r}", ev)
    allowed = ("ed25519",) if receipt.shape in ("current", "v3") else ("ed25519", "ecdsa-secp256k1")
    if algo not in allowed:
        return Check("receipt.signature", Status.FAIL, f"refused: algo {algo!r} is not a receipt algorithm of the "
                     f"{receipt.shape} shape ({', '.join(allowed)})", ev)
    message = receipt.signing_input()
    ev["signing_input_sha256"] = hashlib.sha256(message).hexdigest()
    try:
        sig = hex_bytes(receipt.signature, "signature")
        key = hex_bytes(str(entry.get("public_key")), "receipt_signing_keys.public_key")
    except ParseError as exc:
        return Check("receipt.signature", Status.FAIL, str(exc), ev)
    if algo == "ed25519":
        from ..ed25519 import check_public_key

        try:
            check_public_key(key, field=f"receipt_signing_keys[{receipt.key_id}].public_key")
        except ParseError as exc:
            return Check("receipt.signature", Status.FAIL, f"refused before any signature math: {exc}", ev)
        ok = ed25519_ok(key, sig, message)
        what = {"current": "Ed25519 over JCS(receipt minus signature)",
                "v3": "Ed25519 over the decoded payload_b64 bytes, as served"}.get(
            receipt.shape, "Ed25519 over JCS(receipt minus signature.value)")
    else:
        if len(sig) != 65:
            return Check("receipt.signature", Status.FAIL, f"an ecdsa-secp256k1 receipt signature is 65 bytes "
                         f"r‖s‖v, got {len(sig)}", ev)
        recovered = recover_secp256k1(sig, hashlib.sha256(message).digest())
        ok = recovered is not None and recovered == compressed(key)
        ev["recovered"] = recovered.hex() if recovered else None
        what = "ECDSA-secp256k1 over sha256(JCS(receipt minus signature.value)), recovering the listed key"
    if ok:
        whose = "the established keyset" if keyset.established else \
            "the keyset given directly (NOT established: no verified report binds it to a TEE)"
        return Check("receipt.signature", Status.PASS, f"{what} by {receipt.key_id} of {whose}", ev)
    return Check("receipt.signature", Status.FAIL, f"the signature does not verify under {receipt.key_id} (the "
                 "receipt was altered or signed by another key)", ev)


def _hash_check(check_id: str, receipt: Receipt, event: str, data: bytes | None, what: str) -> Check:
    logged = receipt.body_hash(event)
    ev: dict[str, Any] = {"event": event, "logged": logged}
    if receipt.shape == "preview" and event == "response.returned":
        e = receipt.event(event) or {}
        ev["cleartext_hash"] = e.get("cleartext_hash")
    if receipt.event(event) is None:
        return Check(check_id, Status.FAIL, f"the receipt has no {event} event", ev)
    if len(receipt.events_of(event)) > 1:
        return Check(check_id, Status.FAIL, f"{event} appears {len(receipt.events_of(event))} times: which bytes the "
                     "gateway received or returned is ambiguous", ev)
    if data is None:
        return Check(check_id, Status.SKIPPED, f"the exact {what} bytes were not given", ev)
    ours = _sha(data)
    ev["computed"] = ours
    if (logged or "").lower() == ours:
        return Check(check_id, Status.PASS, f"sha256 of our exact {what} bytes equals {event}", ev)
    hint = (" (with E2EE the gateway hashes the decrypted body it restored, not the ciphertext sent)"
            if event == "request.received" and what == "request" else "")
    return Check(check_id, Status.FAIL, f"sha256 of our exact {what} bytes ({ours[7:23]}…) is not what {event} "
                 f"records ({str(logged)[7:23]}…){hint}", ev)


def _rewrite_check(receipt: Receipt) -> Check:
    rec, fwd = receipt.body_hash("request.received"), receipt.body_hash("request.forwarded")
    ev = {"received": rec, "forwarded": fwd}
    if fwd is None:
        return Check("receipt.rewrite", Status.SKIPPED, "no request.forwarded event (a refused request is never "
                     "forwarded)", ev, required=False)
    if fwd != rec:
        return Check("receipt.rewrite", Status.WARNING, f"the gateway forwarded different bytes ({str(fwd)[7:23]}…) "
                     f"from those it received ({str(rec)[7:23]}…): the model saw a rewritten request", ev,
                     required=False)
    return Check("receipt.rewrite", Status.PASS, "the gateway forwarded exactly the bytes it received", ev,
                 required=False)


def _upstream_check(receipt: Receipt, keyset: EstablishedKeyset | None, require: bool, expected: bool) -> Check:
    """``expected``: the auditor's word (Policy.aci_serving / the service profile) that this gateway is an
    aggregator. The report's ``service_capabilities.serving`` is bound by no digest or signature, so it is shown in
    the evidence and never consulted: a liar would simply write "direct"."""
    events = receipt.events_of("upstream.verified")
    claimed = keyset.serving if keyset is not None else None
    ev: dict[str, Any] = {"serving_claimed_by_report": claimed, "upstream_expected": expected, "events": events,
                          "require_upstream": require}
    if not events:
        if not expected:
            return Check("receipt.upstream", Status.SKIPPED, "no upstream.verified event, and your policy accepts a "
                         "gateway that serves the model itself (aci_serving='direct'): the gateway's own TEE is the "
                         "model's", ev, required=False)
        why = ("no upstream.verified event: the gateway does not say it verified the model server's TEE (an "
               "aggregator's receipt needs one; the report's serving claim is not bound and is not believed)")
        return Check("receipt.upstream", Status.FAIL, why, ev)
    failed = [e for e in events if e.get("result") != "verified"]
    if failed:
        e = failed[0]
        return Check("receipt.upstream", Status.FAIL, f"the upstream verification of {e.get('model_id')!r} "
                     f"{e.get('result')!r}: {e.get('reason') or 'no reason given'}", ev)
    no_session = [e for e in events if not e.get("session_id")]
    if no_session:
        return Check("receipt.upstream", Status.FAIL, "upstream.verified cites no session_id: the verification "
                     "cannot be audited", ev)
    if require and not all(e.get("required") is True for e in events):
        return Check("receipt.upstream", Status.FAIL, "the upstream was verified but the request did not require it "
                     "(required:false): send provider.aci_verified:true so a failed verification refuses the "
                     "request", ev)
    return Check("receipt.upstream", Status.PASS, "the gateway verified the upstream (result verified, session "
                 f"{str(events[0].get('session_id'))[:16]}…)", ev)


#: How far a receipt's served_at may run ahead of the clock it is judged by (clocks of two machines differ).
SERVED_AT_SKEW_S = 300


def _served_at_check(receipt: Receipt, keyset: EstablishedKeyset | None, at: float | None = None) -> Check:
    """``receipt.served_at``: the receipt was served while the keyset that signs it was valid, and not after the
    time it is judged at (``at``, when given). ``served_at`` is under the signature and ``not_after`` under the
    keyset digest, so both are bound; the verification time alone (``aci.keyset_expiry``) says nothing about when
    a receipt was signed."""
    na = keyset.not_after if keyset is not None else None
    ev = {"served_at": receipt.served_at, "not_after": na, "at": int(at) if at is not None else None}
    if receipt.served_at is None:
        return Check("receipt.served_at", Status.SKIPPED, "the receipt states no served_at: when it was served "
                     "cannot be placed in the keyset's validity or the session's window", ev)
    if keyset is None or na is None:
        return Check("receipt.served_at", Status.SKIPPED, "no established keyset with a not_after to place "
                     "served_at before", ev)
    if receipt.served_at >= na:
        return Check("receipt.served_at", Status.FAIL, f"served_at {receipt.served_at} is not before the keyset's "
                     f"not_after {na}: the receipt claims a time when its key was no longer valid", ev)
    if at is not None and receipt.served_at > at + SERVED_AT_SKEW_S:
        return Check("receipt.served_at", Status.FAIL, f"served_at {receipt.served_at} is after the time it is "
                     f"judged at ({int(at)}, {SERVED_AT_SKEW_S} s of clock skew allowed): a receipt from the future, "
                     "or a clock set back", ev)
    return Check("receipt.served_at", Status.PASS, f"served at {receipt.served_at}, before the keyset's not_after "
                 f"{na}", ev)


def verify_receipt(receipt: Receipt | bytes | str | Mapping[str, Any], *, keyset: EstablishedKeyset | None,
                   request_bytes: bytes | None, response_bytes: bytes | None, require_upstream: bool = True,
                   restored_request: bool = False, upstream_expected: bool = True,
                   at: float | None = None) -> list[Check]:
    """The receipt's checks against an established keyset and our exact bytes (None: not at hand → skipped).
    ``restored_request``: ``request_bytes`` is an E2EE request's restored body (ACI.md §6), not the wire bytes.
    ``upstream_expected``: the auditor expects an aggregator (:attr:`Policy.upstream_expected`); False only when
    the auditor accepts a gateway serving the model itself. ``at``: the clock the receipt is judged by; a
    ``served_at`` after it fails (None: not compared)."""
    if not isinstance(receipt, Receipt):
        try:
            receipt = parse_receipt(receipt)
        except ParseError as exc:
            reason = f"the receipt cannot be read: {exc}"
            return [Check(i, Status.FAIL if i == "receipt.signature" else Status.SKIPPED, reason)
                    for i in ("receipt.signature", "receipt.keyset", "receipt.request_hash", "receipt.response_hash",
                              "receipt.upstream")]
    checks = [_signature_check(receipt, keyset)]
    ok = receipt.api_version == "aci/1"
    checks.append(Check("receipt.api_version", Status.PASS if ok else Status.FAIL,
                        "api_version is aci/1" if ok else "the receipt has no api_version; an ACI receipt says aci/1"
                        if receipt.api_version is None else f"api_version is {receipt.api_version!r}, not 'aci/1'",
                        {"api_version": receipt.api_version}))
    ev = {"receipt": receipt.workload_keyset_digest, "established": keyset.digest if keyset else None}
    if keyset is None:
        checks.append(Check("receipt.keyset", Status.SKIPPED, "no established keyset to compare the receipt's "
                            "workload_keyset_digest with (verify the report first)", ev))
    elif receipt.workload_keyset_digest == keyset.digest:
        checks.append(Check("receipt.keyset", Status.PASS, "the receipt cites the keyset the verified report "
                            "established", ev))
    else:
        checks.append(Check("receipt.keyset", Status.FAIL, f"the receipt cites keyset {receipt.workload_keyset_digest}"
                            f" but the verified report established {keyset.digest}: re-attest: another replica or a "
                            "rotated keyset", ev))
    checks.append(_hash_check("receipt.request_hash", receipt, "request.received", request_bytes,
                              "restored (decrypted) request" if restored_request else "request"))
    checks.append(_hash_check("receipt.response_hash", receipt, "response.returned", response_bytes, "response"))
    checks.append(_served_at_check(receipt, keyset, at))
    checks.append(_rewrite_check(receipt))
    checks.append(_upstream_check(receipt, keyset, require_upstream, upstream_expected))
    if checks[0].status is not Status.PASS:
        # An unsigned (or unverifiable) receipt is only a claim: what it says may match, but proves nothing.
        checks = checks[:1] + [
            Check(c.id, Status.SKIPPED, f"{c.reason} — but the receipt's signature is not verified, so this is only "
                  "its own claim", c.evidence, c.required) if c.status in (Status.PASS, Status.WARNING) else c
            for c in checks[1:]]
    return checks


# -- sessions ---------------------------------------------------------------------------------------------------

def _claims_check(session: AttestedSession, policy: Policy) -> Check:
    ev = {"claims": {k: vars(v) for k, v in session.claims.items()}, "extra": session.extra_claims,
          "required": list(policy.aci_required_claims), "accepted_sources": list(policy.aci_claim_sources)}
    problems = []
    for name in policy.aci_required_claims:
        c = session.claims.get(name)
        if c is None:
            problems.append(f"{name} is absent")
        elif c.status != "asserted":
            problems.append(f"{name} is {c.status}" + (f" ({c.reason})" if c.reason else ""))
        elif c.source not in policy.aci_claim_sources:
            problems.append(f"{name} is asserted by {c.source}, not {' or '.join(policy.aci_claim_sources)}")
    if problems:
        return Check("session.claims", Status.FAIL, "the session's claims do not meet the policy: "
                     + "; ".join(problems), ev)
    if not policy.aci_required_claims:
        return Check("session.claims", Status.SKIPPED, "the policy requires no claims", ev)
    return Check("session.claims", Status.PASS, f"{', '.join(policy.aci_required_claims)} asserted "
                 f"({' or '.join(policy.aci_claim_sources)})", ev)


#: ``auditor(session, policy, *, at, collateral, nras_response, jwks) -> list[Check]``: re-verifies a session's
#: evidence. ACI cannot read the upstream's reports itself (they are another protocol's); the composition above both
#: protocols supplies it (:func:`phalanb.gateway.deep_audit`, used by :func:`phalanb.gateway.verify_aci`).
EvidenceAuditor = Callable[..., list[Check]]


def _binding_check(session: AttestedSession) -> Check:
    """``session.channel_binding`` (v3, informative): how the gateway says it reached the upstream. Covered by the
    session id, but about a connection phalanb never sees: the gateway's word, shown with what each type means."""
    from .session import BINDING_TYPES

    known = [b for b in session.channel_binding if b.get("type") in BINDING_TYPES]
    unknown = sorted({str(b.get("type")) for b in session.channel_binding if b.get("type") not in BINDING_TYPES})
    ev = {"bindings": session.channel_binding, "not_enforceable": unknown,
          "meaning": {"tls_spki_sha256": "sha256 of the upstream TLS key (SPKI)",
                      "tls_certificate_sha256": "sha256 of the upstream's DER leaf certificate (renewal-fragile)",
                      "e2ee_public_key_sha256": "sha256 of the upstream E2EE key the gateway encrypted to"}}
    why = (f"{len(known)} binding(s) ({', '.join(sorted({str(b.get('type')) for b in known})) or 'none known'}) "
           "of the gateway's connection to the upstream, covered by the session id; phalanb does not see that "
           "connection, so they are the gateway's signed word")
    if unknown:
        why += f"; not enforceable (unknown type): {', '.join(unknown)}"
    return Check("session.channel_binding", Status.WARNING if unknown else Status.PASS, why, ev, required=False)


def _refuted_check(session: AttestedSession) -> Check | None:
    """``session.refuted_claims``: a claim the gateway itself *refutes* is news the auditor must see, whatever the
    policy requires (a refuted ``tcb_up_to_date`` means the upstream runs on an out-of-date platform)."""
    refuted = {name: c for name, c in session.claims.items() if c.status == "refuted"}
    if not refuted:
        return None
    names = "; ".join(f"{name} refuted ({c.source or 'no source'}: {c.reason or 'no reason given'})"
                      for name, c in refuted.items())
    return Check("session.refuted_claims", Status.WARNING, f"the gateway's own session refutes: {names}",
                 {"refuted": {k: vars(v) for k, v in refuted.items()}, "extra": session.extra_claims},
                 required=False)


def _clock_check(session: AttestedSession, at: float | None, served_at: int | None) -> Check | None:
    """``session.clock``: a clock pinned with ``at`` outside the session's window judges the upstream evidence (its
    certificates, collateral, tokens) at a time the session did not exist — a TCB that passes there (old collateral,
    a clock set back) says nothing about the session. It fails when the receipt was served inside the window (only
    the clock is off); when ``served_at`` is itself outside, ``session.window`` already fails and this warns."""
    if at is None or session.established_at is None or session.expires_at is None:
        return None
    ev = {"at": int(at), "served_at": served_at, "established_at": session.established_at,
          "expires_at": session.expires_at}
    if session.established_at <= at <= session.expires_at:
        return Check("session.clock", Status.PASS, "the clock the evidence is judged at lies within the session's "
                     "window", ev)
    served_inside = served_at is not None and session.established_at <= served_at <= session.expires_at
    return Check("session.clock", Status.FAIL if served_inside else Status.WARNING,
                 f"the clock the evidence is judged at ({int(at)}) is outside the session's window "
                 f"[{session.established_at}, {session.expires_at}]: certificates, collateral and tokens are judged "
                 "at a time the session did not exist, so what passes there says nothing about the session", ev,
                 required=served_inside)


def verify_session(session: AttestedSession | bytes | str | Mapping[str, Any], *, expected_id: str | None,
                   served_at: int | None, policy: Policy, deep: bool = True, at: float | None = None,
                   collateral: Any = None, nras_response: Any = None, jwks: Any = None,
                   auditor: EvidenceAuditor | None = None) -> list[Check]:
    """A cited session's checks: its id, evidence digest, claims (by policy), refuted claims, window, the clock,
    and the deep audit of its evidence by ``auditor`` (without one, ``upstream.evidence`` is skipped and says
    where the deep audit lives: :func:`phalanb.gateway.verify_session`)."""
    if not isinstance(session, AttestedSession):
        try:
            v3_cited = expected_id is not None and _cited_form(expected_id) == "v3"
            session = parse_session(session, cited=expected_id if v3_cited else None)
        except ParseError as exc:
            reason = f"the session cannot be read: {exc}"
            return [Check("session.id", Status.FAIL, reason)] + [
                Check(i, Status.SKIPPED, reason) for i in ("session.evidence_digest", "session.claims",
                                                          "session.window", "upstream.evidence")]
    checks = []
    ev: dict[str, Any] = {"computed": session.id, "expected": expected_id, "declared": session.declared_id,
                          "shape": session.shape}
    rule = {"current": "sha256(JCS(document))", "v3": "sha256(the exact bytes served)"}.get(
        session.shape, "the preview as_ id rule")
    if expected_id is None:
        checks.append(Check("session.id", Status.SKIPPED, f"no expected id given; the document hashes to "
                            f"{session.id} ({rule})", ev))
    elif (session.id != (expected_id if session.shape == "v3" else expected_id.lower())
          or (session.declared_id not in (None, session.id))):
        checks.append(Check("session.id", Status.FAIL, f"the document hashes to {session.id} by {rule}, not the "
                            f"cited {expected_id}: it was edited or is another session", ev))
    else:
        checks.append(Check("session.id", Status.PASS, f"{rule} equals the cited session id", ev))
    dev = {"claimed": session.evidence_digest, "computed": session.evidence_sha256,
           "media_type": session.evidence_media_type}
    if session.evidence_bytes is None:
        # v3 (ACI-v3.md §10, U.2): missing evidence is a failure, not a skip.
        checks.append(Check("session.evidence_digest", Status.FAIL if session.shape == "v3" else Status.SKIPPED,
                            "the session carries no evidence data" + (" (v3 requires it: U.2)"
                                                                      if session.shape == "v3" else ""), dev))
    elif session.evidence_sha256 == session.evidence_digest:
        checks.append(Check("session.evidence_digest", Status.PASS, "sha256 of the decoded evidence equals "
                            "evidence.digest", dev))
    else:
        checks.append(Check("session.evidence_digest", Status.FAIL, "the decoded evidence does not hash to "
                            "evidence.digest", dev))
    checks.append(_claims_check(session, policy))
    refuted = _refuted_check(session)
    if refuted is not None:
        checks.append(refuted)
    if session.shape == "v3" and session.channel_binding:  # shown only when the session names a binding
        checks.append(_binding_check(session))
    wev = {"served_at": served_at, "established_at": session.established_at, "expires_at": session.expires_at}
    if served_at is None:
        checks.append(Check("session.window", Status.SKIPPED, "no served_at to place in the session's window", wev))
    elif session.established_at is None or session.expires_at is None:
        checks.append(Check("session.window", Status.FAIL, "the session states no established_at/expires_at", wev))
    elif session.established_at <= served_at <= session.expires_at:
        if session.shape == "preview":
            # The preview id rule leaves the timestamps out: anyone may rewrite them without changing the id.
            checks.append(Check("session.window", Status.WARNING, "the receipt was served within the window the "
                                "session states — but the preview session id does not cover established_at/"
                                "expires_at, so the window is only the document's word", wev, required=False))
        else:
            checks.append(Check("session.window", Status.PASS, "the receipt was served within the session's "
                                "window (its timestamps are covered by the session id)", wev))
    else:
        checks.append(Check("session.window", Status.FAIL, "the receipt was served outside the session's window",
                            wev))
    if checks[0].status is not Status.PASS:
        # Without the cited id matching, the document is not the one the receipt vouches for: its own word only.
        checks = checks[:1] + [
            Check(c.id, Status.SKIPPED, f"{c.reason} — but the document is not shown to be the cited session, so "
                  "this is only its own claim", c.evidence, c.required) if c.status is Status.PASS else c
            for c in checks[1:]]
    clock = _clock_check(session, at, served_at)
    if clock is not None:
        checks.append(clock)
    if deep:
        if auditor is None:
            upstream = [Check("upstream.evidence", Status.SKIPPED, "the session's evidence was not audited here: "
                              "phalanb.gateway.verify_session / verify_aci re-verify it (the upstream's report is "
                              "another protocol's)")]
        else:
            upstream = auditor(session, policy, at=at, collateral=collateral, nras_response=nras_response,
                               jwks=jwks)
        if checks[0].status is not Status.PASS:
            # The same holds for the evidence inside it: a genuine upstream report in an edited (or uncited)
            # document proves nothing about the session the receipt cites.
            upstream = [Check(c.id, Status.SKIPPED, f"{c.reason} — but the session document is not the cited one",
                              c.evidence, c.required) if c.status in (Status.PASS, Status.WARNING) else c
                        for c in upstream]
        checks += upstream
    return checks


# -- one call ---------------------------------------------------------------------------------------------------

def _cited_form(sid: Any) -> str | None:
    from .v3 import session_id_shape

    try:
        return session_id_shape(sid)
    except ParseError:
        return None


@dataclass
class _Bytes:
    request_bytes: bytes | None
    response_bytes: bytes | None


def _unique(checks: list[Check], suffix: str) -> list[Check]:
    return [Check(c.id + suffix, c.status, c.reason, c.evidence, c.required) for c in checks]


def verify_aci(exchange_or_bytes: Any = None, *, receipt: Any, report: Any, nonce: bytes | None,
               sessions: Mapping[str, bytes] | None = None, policy: Policy | None = None, collateral: Any = None,
               at: float | None = None, tls_spki_sha256: str | None = None, keyset_digest_header: str | None = None,
               host: str | None = None, request_bytes: bytes | None = None, response_bytes: bytes | None = None,
               nras_response: Any = None, jwks: Any = None,
               upstream: Mapping[str, Mapping[str, Any]] | None = None, e2ee: Any = None,
               keyset: Mapping[str, Any] | bytes | None = None, auditor: EvidenceAuditor | None = None) -> Verdict:
    """Verify one ACI reply end to end: report → established keyset → receipt → cited sessions (→ deep audit).

    ``exchange_or_bytes``: an :class:`~phalanb.wire.exchange.Exchange` (its exact request/response bytes), a
    ``(request_bytes, response_bytes)`` pair, or None;
    ``request_bytes``/``response_bytes`` override it. ``receipt``: bytes, text, mapping or a legacy signature
    wrapper (its receipt is used). ``report``: the ``/v1/aci/attestation`` answer fetched with ``nonce``.
    ``sessions``: session id → the exact bytes of ``GET /v1/aci/sessions/{id}``.

    ``e2ee``: the :class:`~phalanb.aci.e2ee_wire.E2EERecord` of an E2EE v2 exchange (default: the exchange's own
    ``.e2ee``; ``False`` ignores it). The request/response bytes are then the wire bytes (ciphertext); the
    receipt's ``request.received`` is compared with the record's restored request and ``response.returned`` with
    the wire reply, and ``e2ee.key_attested``, ``e2ee.request_encrypted``, ``e2ee.response_authenticated`` are
    added — all re-checkable offline from a saved exchange, without any private key.

    ``upstream``: session id → ``{"collateral", "nras_response", "jwks"}`` for that session's upstream report
    (its quote is another machine's); a session without an entry uses ``collateral``/``nras_response``/``jwks``.

    ``keyset``: a ``workload_keyset`` given directly instead of a report (a v3 keyset: its exact bytes). The receipt is judged under it (a forged
    or edited receipt fails), but nothing establishes it: ``aci.keyset_given`` is skipped and the verdict is at
    best incomplete.

    ``auditor``: re-verifies each cited session's evidence (:data:`EvidenceAuditor`); the full chain, with the
    deep audit, is :func:`phalanb.gateway.verify_aci`.
    """
    from .e2ee_wire import E2EERecord, e2ee_checks

    policy = policy or Policy()
    if e2ee is None:
        e2ee = getattr(exchange_or_bytes, "e2ee", None)
    if e2ee is False:
        e2ee = None
    from .e2ee_v3 import E2EEv3Record, e2ee_v3_checks

    if e2ee is not None and not isinstance(e2ee, (E2EERecord, E2EEv3Record)):
        raise InputError("e2ee= takes the E2EE record of an E2EE exchange (exchange.e2ee), or False")
    if isinstance(exchange_or_bytes, tuple) and len(exchange_or_bytes) == 2:
        exchange_or_bytes = _Bytes(*exchange_or_bytes)
    if exchange_or_bytes is not None:
        request_bytes = request_bytes if request_bytes is not None else getattr(exchange_or_bytes, "request_bytes",
                                                                                None)
        response_bytes = response_bytes if response_bytes is not None else getattr(exchange_or_bytes,
                                                                                   "response_bytes", None)
    if keyset is not None:
        if report is not None:
            raise InputError("give either the ACI report (which establishes a keyset) or a keyset directly, not both")
        if isinstance(keyset, (bytes, bytearray, str)):
            # Bytes are a v3 keyset as served (its digest is their sha256); a parsed object is hashed as JCS.
            given = EstablishedKeyset.given_v3(keyset.encode() if isinstance(keyset, str) else keyset)
        else:
            given = EstablishedKeyset.given(keyset)
        att = AciAttestation([Check("aci.keyset_given", Status.SKIPPED, "a keyset given directly is not established "
                                    f"(no verified report binds it to a TEE); it hashes to {given.digest}: the receipt "
                                    "is judged under it, but what it proves rests on where you got the keyset",
                                    {"recomputed": given.digest})], given, None, "keyset given directly")
    elif report is None:
        att = AciAttestation([Check("aci.report", Status.SKIPPED, "no ACI report was given: no keyset can be "
                                    "established")], None, None, "no report")
    else:
        att = verify_aci_report(report, nonce=nonce, policy=policy, collateral=collateral, at=at,
                                keyset_digest_header=keyset_digest_header, tls_spki_sha256=tls_spki_sha256, host=host)
    parsed: Receipt | None = None
    try:
        if isinstance(receipt, Receipt):
            parsed = receipt
        elif isinstance(receipt, SignatureWrapper):
            parsed = receipt.receipt
        else:
            doc = jcs.loads(receipt, what="receipt") if isinstance(receipt, (bytes, str)) else receipt
            from .receipt import is_signature_wrapper

            parsed = parse_signature_wrapper(doc).receipt if is_signature_wrapper(doc) else parse_receipt(doc)
    except ParseError as exc:
        rchecks = verify_receipt(b"", keyset=None, request_bytes=None, response_bytes=None)
        rchecks = [Check(c.id, c.status, f"the receipt cannot be read: {exc}") for c in rchecks]
    else:
        rchecks = verify_receipt(parsed, keyset=att.keyset,
                                 request_bytes=e2ee.restored_request if e2ee is not None else request_bytes,
                                 response_bytes=response_bytes, require_upstream=policy.aci_require_upstream,
                                 restored_request=e2ee is not None, upstream_expected=policy.upstream_expected,
                                 at=time.time() if at is None else at)
    checks = rchecks + att.checks
    if e2ee is not None:
        response_hash = next((c for c in rchecks if c.id == "receipt.response_hash"), None)
        judge = e2ee_v3_checks if isinstance(e2ee, E2EEv3Record) else e2ee_checks
        checks += judge(e2ee, keyset=att.keyset if att.keyset is None or att.keyset.established else None,
                        request_bytes=request_bytes, response_bytes=response_bytes, response_hash=response_hash)
    if parsed is not None:  # every cited session is judged, whatever the report says about its serving mode
        sessions = dict(sessions or {})
        cited = parsed.cited_session_ids
        for i, sid in enumerate(cited):
            suffix = "" if i == 0 else f"#{i + 1}"
            form = _cited_form(sid)
            if form != parsed.shape:
                reason = (f"the {parsed.shape}-shape receipt cites {str(sid)[:80]!r}, " +
                          (f"an id of the {form} shape" if form else "which is no session id of any shape") +
                          ": one receipt and its sessions are always of one shape")
                checks += _unique([Check("session.id", Status.FAIL, reason)] + [
                    Check(x, Status.SKIPPED, reason) for x in ("session.evidence_digest", "session.claims",
                                                               "session.window", "upstream.evidence")], suffix)
                continue
            data = sessions.get(sid)
            if data is None:
                fetch = sid[7:] if form == "v3" else sid
                reason = f"session {sid} was not given: fetch GET /v1/aci/sessions/{fetch}"
                checks += _unique([Check(x, Status.SKIPPED, reason) for x in
                                   ("session.id", "session.evidence_digest", "session.claims", "session.window",
                                    "upstream.evidence")], suffix)
                continue
            ev = (upstream or {}).get(sid) or {}
            checks += _unique(verify_session(data, expected_id=sid, served_at=parsed.served_at, policy=policy,
                                             at=at, collateral=ev.get("collateral", collateral),
                                             nras_response=ev.get("nras_response", nras_response),
                                             jwks=ev.get("jwks", jwks), auditor=auditor),
                              suffix)
    return Verdict(checks)


# -- legacy -----------------------------------------------------------------------------------------------------

def verify_legacy_gateway(report: Mapping[str, Any] | bytes | str | None, signature_wrapper: Any, *,
                          aci: AciAttestation | None = None, request_bytes: bytes | None = None,
                          response_bytes: bytes | None = None, policy: Policy | None = None) -> Verdict:
    """The gateway's legacy answers (``/v1/attestation/report``, ``/v1/signature/{id}``), verified per ACI.md §4.

    The legacy signer is tied only to the secp256k1 E2EE key of a keyset that a *verified ACI report* (``aci``)
    established — never to the keyset printed in the legacy body, which its quote does not bind.
    """
    from ..signers import recover_signer
    from .report import is_legacy_gateway_report

    policy = policy or Policy()
    checks = [Check("legacy.gateway", Status.WARNING, "the legacy answer attests the GATEWAY, not the model: the "
                    "model's TEE is proven only through the receipt's upstream session", required=False)]
    if report is not None:
        try:
            doc = jcs.loads(report, what="report") if isinstance(report, (bytes, str)) else report
        except ParseError as exc:
            doc = None
            checks.append(Check("legacy.report", Status.FAIL, f"the legacy report cannot be read: {exc}"))
        if doc is not None and not is_legacy_gateway_report(doc):
            checks.append(Check("legacy.report", Status.FAIL, "this is not the gateway's legacy report (no keyset "
                                "fields beside signing_address/intel_quote)"))
    try:
        wrapper = (signature_wrapper if isinstance(signature_wrapper, SignatureWrapper)
                   else parse_signature_wrapper(signature_wrapper))
    except ParseError as exc:
        checks.append(Check("legacy.signature", Status.FAIL, f"the signature answer cannot be read: {exc}"))
        return Verdict(checks)
    r = wrapper.receipt
    want = f"{str(r.body_hash('request.received')).removeprefix('sha256:')}:" \
           f"{str(r.body_hash('response.returned')).removeprefix('sha256:')}"
    ok = wrapper.text == want
    checks.append(Check("legacy.text", Status.PASS if ok else Status.FAIL,
                        "text = received:returned body hashes of the receipt beside it" if ok else
                        "text is not the receipt's received:returned hashes", {"text": wrapper.text, "expected": want}))
    try:
        signer = recover_signer(wrapper.text, wrapper.signature, wrapper.signing_algo,
                                public_key=wrapper.signing_address if wrapper.signing_algo == "ed25519" else None)
        sig_ok = (signer or "").lower() == (wrapper.signing_address or "").lower()
        checks.append(Check("legacy.signature", Status.PASS if sig_ok else Status.FAIL,
                            f"{wrapper.signing_algo} signature over text by {signer}" if sig_ok else
                            f"the signature recovers {signer}, not signing_address {wrapper.signing_address}",
                            {"signer": signer}))
    except PhalanbError as exc:
        signer = None
        checks.append(Check("legacy.signature", Status.FAIL, str(exc)))
    keyset = aci.keyset if aci is not None else None
    if keyset is None:
        checks.append(Check("legacy.signer_bound", Status.SKIPPED, "no keyset established by a verified ACI report: "
                            "the legacy signer cannot be tied to the gateway"))
    elif wrapper.signing_algo == "ecdsa":
        addrs = set()
        for k in keyset.e2ee_keys:
            if k.get("algo") in ("secp256k1-aes-256-gcm-hkdf-sha256", "ecdsa"):
                try:
                    a = eth_address(hex_bytes(str(k.get("public_key")), "e2ee_public_keys.public_key"))
                except ParseError:
                    a = None
                if a:
                    addrs.add(a)
        bound = signer is not None and signer.lower() in addrs
        checks.append(Check("legacy.signer_bound", Status.PASS if bound else Status.FAIL,
                            "the signer is the keccak address of the established keyset's secp256k1 E2EE key" if bound
                            else "the signer is not the address of any secp256k1 E2EE key of the established keyset",
                            {"signer": signer, "keyset_addresses": sorted(addrs)}))
    else:
        listed = {str(k.get("public_key")).lower() for k in keyset.e2ee_keys if k.get("algo") == "ed25519"}
        bound = signer is not None and signer.lower() in listed
        checks.append(Check("legacy.signer_bound", Status.PASS if bound else Status.SKIPPED,
                            "the legacy Ed25519 key is listed in the established (preview) keyset" if bound else
                            "the legacy Ed25519 key is not in the established keyset and has no custody evidence",
                            {"signer": signer}))
    checks += verify_receipt(r, keyset=keyset, request_bytes=request_bytes, response_bytes=response_bytes,
                             require_upstream=policy.aci_require_upstream, upstream_expected=policy.upstream_expected)
    return Verdict(checks)
