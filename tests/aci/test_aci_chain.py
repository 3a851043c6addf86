"""The whole ACI chain on a simulated gateway (spec keyset, phalanb's simulated TDX and GPUs): verified when every
link holds, and each link broken the way a liar would break it."""

from __future__ import annotations

import copy
import json

import pytest

import acikit as k
from phalanb.aci import EstablishedKeyset, verify_aci_report, verify_receipt
from phalanb.gateway import verify_aci, verify_session
from phalanb.wire.exchange import Exchange
from phalanb.verdict import Status


@pytest.fixture(scope="module")
def collateral():
    return k.sim_collateral()


@pytest.fixture(scope="module")
def upstream():
    return k.upstream_session()


def run(*, report=None, receipt=None, sessions=None, policy=None, collateral=None, request=k.REQUEST,
        response=k.RESPONSE, nonce=k.NONCE, upstream=None, **kw):
    sid, sbytes = upstream
    report = k.sim_report() if report is None else report
    receipt = k.sign_receipt(k.cite(k.receipt_doc(), sid)) if receipt is None else receipt
    return verify_aci(None, receipt=receipt, report=report, nonce=nonce,
                      sessions={sid: sbytes} if sessions is None else sessions, policy=policy or k.sim_policy(),
                      collateral=collateral, at=k.AT, request_bytes=request, response_bytes=response, **kw)


def test_every_link_holding_is_verified(collateral, upstream):
    v = run(collateral=collateral, upstream=upstream)
    assert v.status == "verified", v.table()
    for cid in ("receipt.signature", "receipt.keyset", "receipt.request_hash", "receipt.response_hash",
                "receipt.upstream", "aci.keyset_digest", "aci.report_data", "aci.nonce_fresh", "aci.keyset_expiry",
                "aci.provenance", "aci.key_custody", "session.id", "session.evidence_digest", "session.claims",
                "session.window", "upstream.tdx.quote_signature", "upstream.gpu.evidence_signature", "tdx.tcb_status"):
        assert v[cid].status is Status.PASS, cid
    assert v["channel.tls_spki"].status is Status.SKIPPED and not v["channel.tls_spki"].required


def test_exact_bytes_come_from_an_exchange(collateral, upstream):
    ex = Exchange.from_bytes(request_bytes=k.REQUEST, response_bytes=k.RESPONSE, stream=False)
    sid, sbytes = upstream
    v = verify_aci(ex, receipt=k.sign_receipt(k.cite(k.receipt_doc(), sid)), report=k.sim_report(), nonce=k.NONCE,
                   sessions={sid: sbytes}, policy=k.sim_policy(), collateral=collateral, at=k.AT)
    assert v["receipt.request_hash"].status is Status.PASS and v["receipt.response_hash"].status is Status.PASS


def test_without_collateral_the_verdict_is_incomplete(upstream):
    v = run(upstream=upstream)
    assert v["tdx.tcb_status"].status is Status.SKIPPED and v.status == "incomplete"


# -- the receipt -----------------------------------------------------------------------------------------------

def test_receipt_signed_by_a_key_not_in_the_keyset_fails(collateral, upstream):
    v = run(receipt=k.sign_receipt(k.cite(k.receipt_doc(), upstream[0]), key=k.OTHER_KEY), collateral=collateral,
            upstream=upstream)
    assert v["receipt.signature"].status is Status.FAIL and v.status == "failed"


def test_receipt_naming_a_key_id_the_keyset_does_not_list_fails(collateral, upstream):
    v = run(receipt=k.sign_receipt(k.cite(k.receipt_doc(key_id="receipt-9"), upstream[0])), collateral=collateral,
            upstream=upstream)
    assert v["receipt.signature"].status is Status.FAIL and "receipt-9" in v["receipt.signature"].reason


def test_receipt_naming_another_keyset_digest_fails_naming_both(collateral, upstream):
    other = "sha256:" + "77" * 32
    v = run(receipt=k.sign_receipt(k.cite(k.receipt_doc(workload_keyset_digest=other), upstream[0])),
            collateral=collateral, upstream=upstream)
    c = v["receipt.keyset"]
    assert c.status is Status.FAIL and other in c.reason and k.A["keyset"]["workload_keyset_digest"] in c.reason
    assert "re-attest" in c.reason


def test_receipt_key_of_an_unknown_algo_is_refused(collateral, upstream):
    ks = copy.deepcopy(k.A["keyset"]["object"])
    ks["receipt_signing_keys"][0]["algo"] = "rsa-pss"
    report = k.sim_report(keyset=ks)
    receipt = k.receipt_doc(workload_keyset_digest=report["workload_keyset_digest"])
    v = run(report=report, receipt=k.sign_receipt(k.cite(receipt, upstream[0])), collateral=collateral,
            upstream=upstream)
    assert v["receipt.signature"].status is Status.FAIL and "refused" in v["receipt.signature"].reason


def test_tampered_request_byte_fails_request_hash(collateral, upstream):
    bad = bytearray(k.REQUEST)
    bad[5] ^= 1
    v = run(request=bytes(bad), collateral=collateral, upstream=upstream)
    assert v["receipt.request_hash"].status is Status.FAIL and v.status == "failed"


def test_tampered_response_byte_fails_response_hash(collateral, upstream):
    v = run(response=k.RESPONSE + b" ", collateral=collateral, upstream=upstream)
    assert v["receipt.response_hash"].status is Status.FAIL


def test_edited_receipt_body_fails_the_signature(collateral, upstream):
    doc = json.loads(k.sign_receipt(k.cite(k.receipt_doc(), upstream[0])))
    doc["model"] = "a-cheaper-model"
    v = run(receipt=json.dumps(doc).encode(), collateral=collateral, upstream=upstream)
    assert v["receipt.signature"].status is Status.FAIL


def test_rewritten_request_is_a_warning_showing_both_hashes(collateral, upstream):
    doc = k.cite(k.receipt_doc(), upstream[0])
    fwd = next(e for e in doc["event_log"] if e["type"] == "request.forwarded")
    fwd["body_hash"] = "sha256:" + "ee" * 32
    v = run(receipt=k.sign_receipt(doc), collateral=collateral, upstream=upstream)
    c = v["receipt.rewrite"]
    assert c.status is Status.WARNING and c.evidence["forwarded"] == fwd["body_hash"]
    assert c.evidence["received"] == k.A["receipt"]["request_body_hash"]


def test_failed_upstream_verification_fails_with_its_reason(collateral, upstream):
    doc = k.receipt_doc()
    for e in doc["event_log"]:
        if e["type"] == "upstream.verified":
            e.update(result="failed", reason="quote TCB OutOfDate")
            e.pop("session_id")
    v = run(receipt=k.sign_receipt(doc), collateral=collateral, upstream=upstream)
    assert v["receipt.upstream"].status is Status.FAIL and "OutOfDate" in v["receipt.upstream"].reason


def test_upstream_not_required_fails_when_the_policy_requires_it(collateral, upstream):
    doc = k.cite(k.receipt_doc(), upstream[0])
    for e in doc["event_log"]:
        if e["type"] == "upstream.verified":
            e["required"] = False
    v = run(receipt=k.sign_receipt(doc), collateral=collateral, upstream=upstream)
    assert v["receipt.upstream"].status is Status.FAIL
    relaxed = run(receipt=k.sign_receipt(doc), collateral=collateral, upstream=upstream,
                  policy=k.sim_policy(aci_require_upstream=False))
    assert relaxed["receipt.upstream"].status is Status.PASS


def test_aggregator_receipt_without_upstream_event_fails(collateral, upstream):
    doc = k.receipt_doc()
    doc["event_log"] = [e for e in doc["event_log"] if e["type"] != "upstream.verified"]
    v = run(receipt=k.sign_receipt(doc), collateral=collateral, upstream=upstream)
    assert v["receipt.upstream"].status is Status.FAIL


def test_direct_serving_is_the_auditors_choice_and_needs_no_upstream(collateral, upstream):
    doc = k.receipt_doc()
    doc["event_log"] = [e for e in doc["event_log"] if e["type"] != "upstream.verified"]
    v = run(report=k.sim_report(serving="direct"), receipt=k.sign_receipt(doc), collateral=collateral,
            upstream=upstream, policy=k.sim_policy(aci_serving="direct"))
    c = v["receipt.upstream"]
    assert c.status is Status.SKIPPED and not c.required and v.status == "verified"


def test_a_receipt_never_passes_without_an_established_keyset():
    checks = {c.id: c for c in verify_receipt(k.A["receipt"]["document_jcs"], keyset=None, request_bytes=k.REQUEST,
                                              response_bytes=k.RESPONSE)}
    assert checks["receipt.signature"].status is Status.SKIPPED
    assert checks["receipt.keyset"].status is Status.SKIPPED


def test_current_receipt_against_a_preview_keyset_is_refused():
    ks = EstablishedKeyset(digest=k.A["keyset"]["workload_keyset_digest"], keyset=k.A["keyset"]["object"],
                           shape="preview")
    checks = {c.id: c for c in verify_receipt(k.A["receipt"]["document_jcs"], keyset=ks, request_bytes=None,
                                              response_bytes=None)}
    assert checks["receipt.signature"].status is Status.FAIL


# -- the report ------------------------------------------------------------------------------------------------

def test_null_nonce_report_is_not_fresh_and_establishes_nothing(collateral):
    att = verify_aci_report(k.sim_report(statement_nonce=None), nonce=k.NONCE, policy=k.sim_policy(),
                            collateral=collateral, at=k.AT)
    c = {c.id: c for c in att.checks}
    assert c["aci.report_data"].status is Status.FAIL and c["aci.nonce_fresh"].status is Status.FAIL
    assert "null nonce" in c["aci.nonce_fresh"].reason and att.keyset is None


def test_null_nonce_report_without_our_nonce_binds_but_is_not_fresh(collateral):
    att = verify_aci_report(k.sim_report(statement_nonce=None), nonce=None, policy=k.sim_policy(),
                            collateral=collateral, at=k.AT)
    c = {c.id: c for c in att.checks}
    assert c["aci.report_data"].status is Status.PASS and c["aci.nonce_fresh"].status is Status.SKIPPED
    assert att.verdict.status == "incomplete"


def test_expired_keyset_fails_and_establishes_nothing(collateral):
    ks = dict(k.A["keyset"]["object"], not_after=k.AT - 1)
    att = verify_aci_report(k.sim_report(keyset=ks), nonce=k.NONCE, policy=k.sim_policy(), collateral=collateral,
                            at=k.AT)
    assert next(c for c in att.checks if c.id == "aci.keyset_expiry").status is Status.FAIL
    assert att.keyset is None


def test_implausible_expiry_fails_in_the_current_shape(collateral):
    ks = dict(k.A["keyset"]["object"], not_after=2**64 - 1)
    att = verify_aci_report(k.sim_report(keyset=ks), nonce=k.NONCE, policy=k.sim_policy(), collateral=collateral,
                            at=k.AT)
    assert next(c for c in att.checks if c.id == "aci.keyset_expiry").status is Status.FAIL


def test_edited_keyset_fails_its_digest_and_receipts_cannot_pass(collateral, upstream):
    report = k.sim_report()
    report["attestation"]["workload_keyset"]["receipt_signing_keys"][0]["public_key"] = "00" * 32
    v = run(report=report, collateral=collateral, upstream=upstream)
    assert v["aci.keyset_digest"].status is Status.FAIL
    assert v["receipt.signature"].status is Status.SKIPPED and v.status == "failed"


def test_quote_slot_for_another_report_data_fails(collateral):
    att = verify_aci_report(k.sim_report(quote_rd=b"\x01" * 32), nonce=k.NONCE, policy=k.sim_policy(),
                            collateral=collateral, at=k.AT)
    assert next(c for c in att.checks if c.id == "aci.quote_slot").status is Status.FAIL and att.keyset is None


def test_app_compose_not_measured_fails_provenance(collateral):
    att = verify_aci_report(k.sim_report(app_compose='{"evil": true}'), nonce=k.NONCE, policy=k.sim_policy(),
                            collateral=collateral, at=k.AT)
    assert next(c for c in att.checks if c.id == "aci.provenance").status is Status.FAIL


def test_no_app_compose_skips_provenance(collateral):
    att = verify_aci_report(k.sim_report(app_compose=None), nonce=k.NONCE, policy=k.sim_policy(),
                            collateral=collateral, at=k.AT)
    assert next(c for c in att.checks if c.id == "aci.provenance").status is Status.SKIPPED


def test_custody_to_a_root_outside_the_allow_list_fails(collateral):
    import coincurve

    report = k.sim_report()
    app_id = bytes.fromhex(k.sim_tdx().app_id)
    report["attestation"]["evidence"]["key_custody"]["keys"] = [
        k.custody_entry(app_id, root=coincurve.PrivateKey(b"\x0d" * 32))]
    att = verify_aci_report(report, nonce=k.NONCE, policy=k.sim_policy(), collateral=collateral, at=k.AT)
    assert next(c for c in att.checks if c.id == "aci.key_custody").status is Status.FAIL


def test_simulated_trust_allow_lists_only_the_simulators_kms_root(collateral):
    # Without an allow-list custody is skipped (production: tests/aci/test_aci_real.py); simulated trust accepts the
    # simulator's roots, its dstack-kms root among them — and nothing else, never under production trust.
    from phalanb.policy import Policy
    from phalanb.sim.aci_docs import SIM_KMS_ROOT

    assert Policy(trust="simulated").aci_kms_roots == (SIM_KMS_ROOT,)
    assert Policy().aci_kms_roots == ()
    att = verify_aci_report(k.sim_report(), nonce=k.NONCE, policy=Policy(trust="simulated"), collateral=collateral,
                            at=k.AT)
    c = next(c for c in att.checks if c.id == "aci.key_custody")
    assert c.status is Status.FAIL  # acikit's chain ends at its own test root, not the simulator's


# -- sessions --------------------------------------------------------------------------------------------------

def test_edited_session_document_fails_its_id(collateral, upstream):
    sid, sbytes = upstream
    doc = json.loads(sbytes)
    doc["expires_at"] += 10**6
    v = run(sessions={sid: k.jcs(doc)}, collateral=collateral, upstream=upstream)
    assert v["session.id"].status is Status.FAIL and v.status == "failed"


def test_evidence_digest_mismatch_fails():
    doc = k.session_doc()
    doc["evidence"]["digest"] = "sha256:" + "00" * 32
    checks = {c.id: c for c in verify_session(k.jcs(doc), expected_id=k.session_id(doc), served_at=k.T0,
                                              policy=k.sim_policy())}
    assert checks["session.evidence_digest"].status is Status.FAIL
    assert checks["upstream.evidence"].status is Status.SKIPPED


def test_claims_not_hardware_proven_fail_the_policy():
    doc = k.session_doc()
    doc["claims"]["tee_attested"] = {"status": "asserted", "source": "provider_asserted", "reason": "trust me"}
    checks = {c.id: c for c in verify_session(k.jcs(doc), expected_id=None, served_at=None, policy=k.sim_policy())}
    assert checks["session.claims"].status is Status.FAIL
    assert checks["session.id"].status is Status.SKIPPED


def test_refuted_claim_fails():
    doc = k.session_doc()
    doc["claims"]["tee_attested"] = {"status": "refuted", "source": "hardware_proven", "reason": "debug TD"}
    checks = {c.id: c for c in verify_session(k.jcs(doc), expected_id=None, served_at=None, policy=k.sim_policy())}
    assert checks["session.claims"].status is Status.FAIL and "debug TD" in checks["session.claims"].reason


def test_receipt_served_outside_the_session_window_fails():
    doc = k.session_doc()
    checks = {c.id: c for c in verify_session(k.jcs(doc), expected_id=k.session_id(doc),
                                              served_at=doc["expires_at"] + 1, policy=k.sim_policy())}
    assert checks["session.window"].status is Status.FAIL


def test_empty_evidence_like_chutes_is_skipped_and_incomplete(collateral, upstream):
    doc = k.session_doc(evidence=None)
    sid = k.session_id(doc)
    v = run(receipt=k.sign_receipt(k.cite(k.receipt_doc(), sid)), sessions={sid: k.jcs(doc)},
            collateral=collateral, upstream=upstream)
    assert v["upstream.evidence"].status is Status.SKIPPED and v.status == "incomplete"


def test_unknown_evidence_is_skipped_never_passed():
    doc = k.session_doc()  # "example-evidence", text/plain: the spec's vector
    checks = {c.id: c for c in verify_session(k.jcs(doc), expected_id=k.A["session"]["session_id"], served_at=k.T0,
                                              policy=k.sim_policy())}
    assert checks["session.id"].status is Status.PASS
    assert checks["upstream.evidence"].status is Status.SKIPPED


def test_multipart_evidence_is_split_and_its_report_audited(collateral):
    up = k.upstream_report()
    body = (b"--XYZ\r\nContent-Type: text/plain\r\n\r\nnotes\r\n--XYZ\r\nContent-Type: application/json\r\n\r\n"
            + up + b"\r\n--XYZ--\r\n")
    doc = k.session_doc(body, "multipart/mixed;boundary=XYZ")
    checks = {c.id: c for c in verify_session(k.jcs(doc), expected_id=k.session_id(doc), served_at=k.T0,
                                              policy=k.sim_policy(), collateral=collateral, at=k.AT)}
    assert checks["session.evidence_digest"].status is Status.PASS
    assert checks["upstream.evidence"].status is Status.PASS
    assert checks["upstream.tdx.quote_signature"].status is Status.PASS


def test_session_identity_other_than_the_audited_node_fails(collateral):
    doc = k.session_doc(k.upstream_report(), "application/json", identity={"signing_address": "0x" + "12" * 20})
    checks = {c.id: c for c in verify_session(k.jcs(doc), expected_id=None, served_at=None, policy=k.sim_policy(),
                                              collateral=collateral, at=k.AT)}
    assert checks["upstream.identity"].status is Status.FAIL


def test_cited_session_not_given_is_skipped(collateral, upstream):
    v = run(sessions={}, collateral=collateral, upstream=upstream)
    assert v["session.id"].status is Status.SKIPPED and v.status == "incomplete"


def test_no_check_passes_on_missing_evidence():
    v = verify_aci(None, receipt=k.A["receipt"]["document_jcs"], report=None, nonce=None)
    passed = {c.id for c in v if c.status is Status.PASS}
    assert not passed, passed
    assert v.status == "incomplete"


def test_session_claims_prove_nothing_unless_the_document_is_the_cited_one():
    doc = k.session_doc()
    checks = {c.id: c for c in verify_session(k.jcs(doc), expected_id=None, served_at=k.T0, policy=k.sim_policy())}
    assert checks["session.claims"].status is Status.SKIPPED and checks["session.window"].status is Status.SKIPPED


def test_bytes_may_be_given_as_a_pair(collateral, upstream):
    sid, sbytes = upstream
    v = verify_aci((k.REQUEST, k.RESPONSE), receipt=k.sign_receipt(k.cite(k.receipt_doc(), sid)),
                   report=k.sim_report(), nonce=k.NONCE, sessions={sid: sbytes}, policy=k.sim_policy(),
                   collateral=collateral, at=k.AT)
    assert v.status == "verified"


def test_policy_aci_knobs_survive_to_dict_and_back():
    from phalanb.policy import Policy

    p = k.sim_policy(aci_required_claims=("tee_attested", "gpu_attested"), aci_claim_sources=("hardware_proven",
                     "verifier_derived"), aci_require_upstream=False)
    assert Policy.from_dict(p.to_dict()) == p
    assert Policy().aci_kms_roots == () and Policy().aci_require_upstream is True


def test_a_debug_td_establishes_no_keyset(collateral):
    report = k.sim_report()
    slot = bytes.fromhex(report["attestation"]["evidence"]["quote_report_data"])
    report["attestation"]["evidence"]["quote"] = k.sim_tdx().quote(slot, debug=True).hex()
    att = verify_aci_report(report, nonce=k.NONCE, policy=k.sim_policy(), collateral=collateral, at=k.AT)
    assert next(c for c in att.checks if c.id == "tdx.debug_disabled").status is Status.FAIL
    assert att.keyset is None


def test_a_second_receipt_key_without_custody_fails(collateral):
    ks = copy.deepcopy(k.A["keyset"]["object"])
    ks["receipt_signing_keys"].append({"key_id": "receipt-2", "algo": "ed25519", "public_key": "11" * 32})
    att = verify_aci_report(k.sim_report(keyset=ks), nonce=k.NONCE, policy=k.sim_policy(), collateral=collateral,
                            at=k.AT)
    c = next(c for c in att.checks if c.id == "aci.key_custody")
    assert c.status is Status.FAIL and "receipt-2" in c.reason and att.keyset is None


def test_a_duplicated_hash_event_is_ambiguous_and_fails(collateral, upstream):
    doc = k.cite(k.receipt_doc(), upstream[0])
    doc["event_log"].append({"type": "response.returned", "body_hash": "sha256:" + "00" * 32})
    v = run(receipt=k.sign_receipt(doc), collateral=collateral, upstream=upstream)
    assert v["receipt.response_hash"].status is Status.FAIL
