"""The one real ACI capture (inference.phala.com, preview shape, 2026-06-28) and the gateway's own stub report."""

from __future__ import annotations

import pytest

import acikit as k
from phalanb.aci import KNOWN_KMS_ROOTS, parse_aci_report, verify_aci_report
from phalanb.policy import Policy
from phalanb.tdx import parse_quote
from phalanb.verdict import Status

RV = k.VECTORS["real_capture_phala_2026_06_28"]


@pytest.fixture(scope="module")
def real():
    return k.REAL.read_bytes()


@pytest.fixture(scope="module")
def attested(real):
    return verify_aci_report(real, nonce=k.REAL_NONCE, policy=Policy(), at=k.REAL_AT)


def _c(att, cid):
    return next(c for c in att.checks if c.id == cid)


def test_real_report_is_the_preview_shape(real):
    r = parse_aci_report(real)
    assert r.shape == "preview" and r.not_after == 2**64 - 1 and r.serving == "aggregator"


def test_real_keyset_digest_and_workload_id(attested):
    assert _c(attested, "aci.keyset_digest").status is Status.PASS
    assert _c(attested, "aci.keyset_digest").evidence["recomputed"] == RV["workload_keyset_digest"]
    assert _c(attested, "aci.workload_id").status is Status.PASS
    assert _c(attested, "aci.workload_id").evidence["recomputed"] == RV["workload_id"]


def test_real_statement_and_report_data(attested):
    rd = _c(attested, "aci.report_data")
    assert rd.status is Status.PASS
    assert rd.evidence["statement"] == RV["statement_jcs"] and rd.evidence["expected"] == RV["report_data"]
    assert _c(attested, "aci.nonce_fresh").status is Status.PASS


def test_real_report_data_sits_at_offset_568_of_the_quote(real, attested):
    q = bytes.fromhex(parse_aci_report(real).evidence.quote)
    assert q[568:600].hex() == RV["report_data"] and q[600:632] == bytes(32)
    assert parse_quote(q).body.report_data.hex() == RV["report_data"] + "00" * 32
    assert _c(attested, "aci.quote_slot").status is Status.PASS


def test_real_endorsement_passes(attested):
    assert _c(attested, "aci.keyset_endorsement").status is Status.PASS


def test_real_quote_chains_to_the_pinned_intel_root(attested):
    assert _c(attested, "tdx.quote_signature").status is Status.PASS
    assert _c(attested, "tdx.pck_chain").status is Status.PASS
    assert "intel" in _c(attested, "tdx.pck_chain").reason


def test_real_keyset_is_established(attested):
    assert attested.keyset is not None and attested.keyset.digest == RV["workload_keyset_digest"]
    assert attested.keyset.shape == "preview"


def test_real_u64_max_expiry_is_a_warning_in_the_preview_shape(attested):
    c = _c(attested, "aci.keyset_expiry")
    assert c.status is Status.WARNING and c.evidence["not_after"] == 2**64 - 1


def test_real_without_collateral_is_incomplete_never_verified(attested):
    assert _c(attested, "tdx.tcb_status").status is Status.SKIPPED
    assert attested.verdict.status == "incomplete"


def test_real_wrong_nonce_fails_report_data_and_freshness(real):
    att = verify_aci_report(real, nonce=b"\x02" * 32, policy=Policy(), at=k.REAL_AT)
    assert _c(att, "aci.report_data").status is Status.FAIL
    assert _c(att, "aci.nonce_fresh").status is Status.FAIL
    assert att.keyset is None and att.verdict.status == "failed"


def test_real_without_nonce_cannot_rebuild_the_statement(real):
    att = verify_aci_report(real, nonce=None, policy=Policy(), at=k.REAL_AT)
    assert _c(att, "aci.report_data").status is Status.SKIPPED
    assert _c(att, "aci.nonce_fresh").status is Status.SKIPPED
    assert att.keyset is None


def test_real_custody_chains_recover_the_known_kms_root(real):
    from phalanb.aci.custody import custody_chain
    from phalanb.tdx import parse_event_log

    r = parse_aci_report(real)
    app = parse_event_log(r.evidence.event_log).runtime("app-id").event_payload
    roots = {custody_chain(e, shape="preview", app_id=app).root for e in r.evidence.key_custody["keys"]
             if e["algo"] != "ed25519"}
    assert roots == {k.REAL_KMS_ROOT} and k.REAL_KMS_ROOT in KNOWN_KMS_ROOTS


def test_real_custody_is_skipped_without_an_allow_list(attested):
    c = _c(attested, "aci.key_custody")
    assert c.status is Status.SKIPPED and "allow-list" in c.reason


def test_real_custody_passes_with_the_root_allowed_and_fails_with_another(real):
    ok = verify_aci_report(real, nonce=k.REAL_NONCE, policy=Policy(aci_kms_roots=(k.REAL_KMS_ROOT,)), at=k.REAL_AT)
    assert _c(ok, "aci.key_custody").status is Status.PASS
    other = verify_aci_report(real, nonce=k.REAL_NONCE, policy=Policy(aci_kms_roots=("02" + "11" * 32,)),
                              at=k.REAL_AT)
    assert _c(other, "aci.key_custody").status is Status.FAIL


def test_real_tls_key_for_the_host_it_was_fetched_from(real):
    spki = "698c87b1ed32d3d67f23d14295fc443e91b82ad4e40482041ac1a9158c8212e2"
    ok = verify_aci_report(real, nonce=k.REAL_NONCE, policy=Policy(), at=k.REAL_AT, tls_spki_sha256=spki,
                           host="inference.phala.com")
    assert _c(ok, "channel.tls_spki").status is Status.PASS
    wrong_host = verify_aci_report(real, nonce=k.REAL_NONCE, policy=Policy(), at=k.REAL_AT, tls_spki_sha256=spki,
                                   host="tee.redpill.ai")
    assert _c(wrong_host, "channel.tls_spki").status is Status.FAIL


def test_real_keyset_header_of_another_replica_fails(real):
    att = verify_aci_report(real, nonce=k.REAL_NONCE, policy=Policy(), at=k.REAL_AT,
                            keyset_digest_header="sha256:" + "ab" * 32)
    c = _c(att, "aci.keyset_header")
    assert c.status is Status.FAIL and "different replica" in c.reason


def test_stub_report_binding_passes_for_its_nonce_but_its_quote_fails():
    att = verify_aci_report(k.STUB.read_bytes(), nonce=k.STUB_NONCE, policy=Policy(), at=1783805115)
    assert _c(att, "aci.keyset_digest").status is Status.PASS
    assert _c(att, "aci.report_data").status is Status.PASS
    assert _c(att, "tdx.quote_signature").status is Status.FAIL
    assert _c(att, "aci.quote_slot").status is Status.FAIL
    assert att.keyset is None and att.verdict.status == "failed"


def test_stub_unknown_serving_is_treated_as_aggregator():
    r = parse_aci_report(k.STUB.read_bytes())
    assert r.serving_raw == "upstream" and r.serving == "aggregator"
