"""Rule: a field no digest or signature covers never selects or relaxes a check (issue 19, item 1).

``service_capabilities.serving`` sits outside the keyset digest and the report_data statement: a liar may write
"direct" into a genuine report. Each test is the attack that verified on the old code (where "direct" skipped the
upstream check and every cited session), now failing closed."""

from __future__ import annotations

import copy
import json

import pytest

import acikit as k
from phalanb.aci import verify_aci_report
from phalanb.gateway import verify_aci
from phalanb.aci.batch import ReceiptItem, audit_receipts
from phalanb.verdict import Status


@pytest.fixture(scope="module")
def collateral():
    return k.sim_collateral()


@pytest.fixture(scope="module")
def upstream():
    return k.upstream_session()


def _run(receipt_doc, *, upstream, collateral, sessions=None, policy=None, serving="direct"):
    sid, sbytes = upstream
    return verify_aci(None, receipt=k.sign_receipt(receipt_doc), report=k.sim_report(serving=serving),
                      nonce=k.NONCE, sessions={sid: sbytes} if sessions is None else sessions,
                      policy=policy or k.sim_policy(), collateral=collateral, at=k.AT, request_bytes=k.REQUEST,
                      response_bytes=k.RESPONSE)


def test_serving_direct_in_the_report_never_skips_a_failed_upstream(collateral, upstream):
    doc = k.receipt_doc()
    for e in doc["event_log"]:
        if e["type"] == "upstream.verified":
            e.update(result="failed", reason="quote TCB OutOfDate")
            e.pop("session_id", None)
    v = _run(doc, upstream=upstream, collateral=collateral)
    assert v["receipt.upstream"].status is Status.FAIL and v.status == "failed", v.table()


def test_serving_direct_in_the_report_never_skips_a_missing_upstream(collateral, upstream):
    doc = k.receipt_doc()
    doc["event_log"] = [e for e in doc["event_log"] if e["type"] != "upstream.verified"]
    v = _run(doc, upstream=upstream, collateral=collateral)
    c = v["receipt.upstream"]
    assert c.status is Status.FAIL and c.required and v.status == "failed"
    assert c.evidence["serving_claimed_by_report"] == "direct" and "not bound" in c.reason


def test_serving_direct_in_the_report_never_skips_the_cited_session(collateral, upstream):
    sid, sbytes = upstream
    edited = k.jcs(dict(json.loads(sbytes), upstream_name="someone-else"))   # no longer hashes to sid
    v = _run(k.cite(k.receipt_doc(), sid), upstream=upstream, collateral=collateral, sessions={sid: edited})
    assert v["session.id"].status is Status.FAIL and v.status == "failed", v.table()


def test_direct_serving_accepted_by_the_auditor_still_judges_an_upstream_the_receipt_shows(collateral, upstream):
    doc = k.receipt_doc()
    for e in doc["event_log"]:
        if e["type"] == "upstream.verified":
            e.update(result="failed", reason="refused")
            e.pop("session_id", None)
    v = _run(doc, upstream=upstream, collateral=collateral, policy=k.sim_policy(aci_serving="direct"))
    assert v["receipt.upstream"].status is Status.FAIL


def test_the_serving_claim_is_shown_as_evidence_only(collateral):
    att = verify_aci_report(k.sim_report(serving="direct"), nonce=k.NONCE, policy=k.sim_policy(),
                            collateral=collateral, at=k.AT)
    assert att.keyset is not None and att.keyset.serving == "direct"   # read, kept for display …
    agg = verify_aci_report(k.sim_report(serving="aggregator"), nonce=k.NONCE, policy=k.sim_policy(),
                            collateral=collateral, at=k.AT)
    # … and the keyset digest and report_data are the same whatever it says: nothing binds it.
    assert agg.keyset.digest == att.keyset.digest
    assert [c.status for c in agg.checks if c.id != "aci.shape"] == [c.status for c in att.checks
                                                                       if c.id != "aci.shape"]


def test_the_batch_fast_path_never_reads_the_serving_claim(collateral):
    att = verify_aci_report(k.sim_report(serving="direct"), nonce=k.NONCE, policy=k.sim_policy(),
                            collateral=collateral, at=k.AT)
    doc = k.receipt_doc()
    doc["event_log"] = [e for e in doc["event_log"] if e["type"] != "upstream.verified"]
    item = ReceiptItem(k.sign_receipt(doc), k.REQUEST, k.RESPONSE, source="no-upstream")
    [row] = audit_receipts([copy.copy(item)], keyset=att.keyset)
    assert row.status == "fail" and "receipt.upstream" in row.failing
    [ok] = audit_receipts([item], keyset=att.keyset, upstream_expected=False)   # the auditor accepts direct
    assert ok.status == "pass"
