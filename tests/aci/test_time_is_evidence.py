"""Rule: time is part of the evidence (issue 19, item 6).

A receipt's ``served_at`` (under its signature) must lie before the keyset's ``not_after`` (under the keyset
digest) and inside the cited session's window. Comparing only the verification time with ``not_after`` lets a
receipt claim a moment its key was no longer valid. In the preview shape the session id leaves the timestamps out,
so the window is the document's own word: a warning, never a pass."""

from __future__ import annotations

import json

import pytest

import acikit as k
from phalanb.gateway import verify_aci, verify_session
from phalanb.aci.session import parse_session
from phalanb.verdict import Status


@pytest.fixture(scope="module")
def collateral():
    return k.sim_collateral()


def _short_lived(collateral, served_at):
    """A keyset valid until AT + 50 (so still valid when we verify, at AT) and a receipt served at ``served_at``,
    inside the cited session's window."""
    keyset = dict(k.A["keyset"]["object"], not_after=k.AT + 50)
    report = k.sim_report(keyset=keyset)
    sid, sbytes = k.upstream_session()
    doc = k.cite(k.receipt_doc(workload_keyset_digest=report["workload_keyset_digest"], served_at=served_at), sid)
    return verify_aci(None, receipt=k.sign_receipt(doc), report=report, nonce=k.NONCE, sessions={sid: sbytes},
                      policy=k.sim_policy(), collateral=collateral, at=k.AT, request_bytes=k.REQUEST,
                      response_bytes=k.RESPONSE)


def test_a_receipt_served_after_its_keyset_expired_fails(collateral):
    v = _short_lived(collateral, served_at=k.AT + 60)
    assert v["aci.keyset_expiry"].status is Status.PASS       # the keyset is valid *now* …
    assert v["session.window"].status is Status.PASS          # … the session window holds …
    c = v["receipt.served_at"]
    assert c.status is Status.FAIL and "not_after" in c.reason and v.status == "failed"   # … but not when served


def test_a_receipt_served_while_its_keyset_was_valid_passes(collateral):
    v = _short_lived(collateral, served_at=k.AT - 10)
    assert v["receipt.served_at"].status is Status.PASS and v.status == "verified", v.table()


def test_a_receipt_without_served_at_cannot_be_placed_in_time(collateral):
    doc = k.receipt_doc()
    doc.pop("served_at")
    sid, sbytes = k.upstream_session()
    v = verify_aci(None, receipt=k.sign_receipt(k.cite(doc, sid)), report=k.sim_report(), nonce=k.NONCE,
                   sessions={sid: sbytes}, policy=k.sim_policy(), collateral=collateral, at=k.AT,
                   request_bytes=k.REQUEST, response_bytes=k.RESPONSE)
    assert v["receipt.served_at"].status is Status.SKIPPED and v.status == "incomplete"


def _preview_session(**changes) -> dict:
    doc = k.session_doc(provider="demo-upstream", **changes)
    doc.pop("upstream_name", None)
    return doc


def test_the_preview_session_window_is_a_warning_never_a_pass():
    doc = _preview_session()
    sid = parse_session(k.jcs(doc)).id
    checks = {c.id: c for c in verify_session(k.jcs(doc), expected_id=sid, served_at=k.T0 + 10,
                                              policy=k.sim_policy(), deep=False)}
    assert checks["session.id"].status is Status.PASS
    assert checks["session.window"].status is Status.WARNING and not checks["session.window"].required
    # Why: rewriting the window leaves the preview id unchanged, so the window proves nothing.
    widened = _preview_session(established_at=0, expires_at=2**40)
    assert parse_session(json.dumps(widened)).id == sid


def test_a_preview_session_stating_a_window_that_excludes_the_receipt_still_fails():
    doc = _preview_session()
    sid = parse_session(k.jcs(doc)).id
    checks = {c.id: c for c in verify_session(k.jcs(doc), expected_id=sid, served_at=k.T0 + 10**6,
                                              policy=k.sim_policy(), deep=False)}
    assert checks["session.window"].status is Status.FAIL


def test_a_receipt_served_after_the_time_it_is_judged_at_fails(collateral):
    sid, sbytes = k.upstream_session()
    doc = k.cite(k.receipt_doc(served_at=k.AT + 1000), sid)        # inside the session window, but in our future
    v = verify_aci(None, receipt=k.sign_receipt(doc), report=k.sim_report(), nonce=k.NONCE, sessions={sid: sbytes},
                   policy=k.sim_policy(), collateral=collateral, at=k.AT, request_bytes=k.REQUEST,
                   response_bytes=k.RESPONSE)
    assert v["session.window"].status is Status.PASS
    assert v["receipt.served_at"].status is Status.FAIL and "future" in v["receipt.served_at"].reason
