"""Every value of the v3 vectors (fixtures/aci/v3/test_vectors.json, ACI-v3.md §13) and the upstream's own report
fixture (fixtures/aci/v3/upstream/aci_report_fixture.json) reproduce through phalanb's public functions, and every
trap a vector names is refused."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from phalanb.aci import e2ee_v3 as E
from phalanb.aci import v3
from phalanb.aci.jcs import sha256_digest
from phalanb.aci.report import parse_aci_report, parse_v3_keyset
from phalanb.aci.receipt import parse_receipt
from phalanb.aci.session import parse_session
from phalanb.aci.verify import EstablishedKeyset, report_data_for, statement, verify_aci_report, verify_receipt, \
    verify_session
from phalanb.errors import E2EEError, ParseError
from phalanb.policy import Policy
from phalanb.verdict import Status
from tests.conftest import FIXTURES

V3 = FIXTURES / "aci" / "v3"
V = json.loads((V3 / "test_vectors.json").read_text())
KS = V["keyset"]
E3 = V["e2ee_v3"]
R = V["receipts"]
S = V["sessions"]


def _keyset() -> EstablishedKeyset:
    # Unit test of the receipt layer: asserted here; the public path establishes it only from a verified report.
    return EstablishedKeyset(digest=KS["workload_keyset_digest"], keyset=parse_v3_keyset(KS["bytes"].encode()),
                             shape="v3")


def _status(checks, cid):
    return {c.id: c.status for c in checks}[cid]


# -- keyset ----------------------------------------------------------------------------------------------------

def test_keyset_digest_is_sha256_of_the_served_bytes():
    raw = v3.strict_b64decode(KS["workload_keyset_b64"], field="workload_keyset_b64")
    assert raw.decode() == KS["bytes"]
    assert v3.served_sha256(raw) == KS["workload_keyset_digest"]


def test_recanonicalising_the_keyset_gives_the_trap_digest_never_the_v3_one():
    parsed = parse_v3_keyset(KS["bytes"].encode())
    assert sha256_digest(parsed) == KS["trap_digest_if_recanonicalised"] != KS["workload_keyset_digest"]


@pytest.mark.parametrize("name", ["pretty_printed", "non_ascii_subject_raw_utf8", "non_ascii_subject_escaped"])
def test_each_served_spelling_of_a_keyset_has_its_own_digest(name):
    var = V["keyset_variants"][name]
    raw = base64.b64decode(var["bytes_b64"]) if "bytes_b64" in var else var["bytes"].encode()
    assert v3.served_sha256(raw) == var["digest_as_served"]
    parse_v3_keyset(raw)  # legal: parses


def test_the_two_non_ascii_spellings_parse_equal_but_hash_apart():
    a = base64.b64decode(V["keyset_variants"]["non_ascii_subject_raw_utf8"]["bytes_b64"])
    b = V["keyset_variants"]["non_ascii_subject_escaped"]["bytes"].encode()
    assert parse_v3_keyset(a) == parse_v3_keyset(b) and v3.served_sha256(a) != v3.served_sha256(b)


def test_a_keyset_with_a_duplicate_member_is_refused():
    raw = v3.strict_b64decode(V["keyset_variants"]["duplicate_member"]["workload_keyset_b64"], field="b64")
    with pytest.raises(ParseError, match="appears twice"):
        parse_v3_keyset(raw)


def test_noncanonical_base64_is_refused():
    with pytest.raises(ParseError, match="canonical base64"):
        v3.strict_b64decode(V["keyset_variants"]["noncanonical_b64"]["workload_keyset_b64"], field="b64")


# -- statements and nonces -------------------------------------------------------------------------------------

@pytest.mark.parametrize("st", V["statements"], ids=lambda s: str(s["nonce"])[:20])
def test_statement_and_report_data(st):
    assert statement(KS["workload_keyset_digest"], st["nonce"], shape="v3").decode() == st["statement"]
    rd = report_data_for(KS["workload_keyset_digest"], st["nonce"], shape="v3")
    assert rd == st["report_data"] and rd + "00" * 32 == st["report_data_slot_64"]


def test_a_report_is_checked_by_its_own_shapes_rule_only():
    x = V["statement_cross_shape"]
    assert report_data_for(x["current_rule_keyset_digest"], x["nonce"]) == x["current_rule_report_data"]
    assert report_data_for(KS["workload_keyset_digest"], x["nonce"], shape="v3") != x["current_rule_report_data"]


@pytest.mark.parametrize("nonce", V["invalid_nonces"], ids=range(len(V["invalid_nonces"])))
def test_no_statement_is_built_from_an_illegal_nonce(nonce):
    with pytest.raises(ParseError, match="nonce"):
        statement(KS["workload_keyset_digest"], nonce, shape="v3")


# -- the upstream report fixture -------------------------------------------------------------------------------

def test_upstream_fixture_binds_but_its_stub_quote_fails_hardware_verification():
    fx = V["report_fixture"]
    served = (V3 / "upstream" / "aci_report_fixture.json").read_bytes()
    assert served.decode() == fx["bytes"]
    report = parse_aci_report(served)
    assert report.shape == "v3" and report.keyset_bytes.decode() == fx["keyset_bytes"]
    assert sha256_digest(report.keyset) == fx["trap_digest_if_recanonicalised"]
    att = verify_aci_report(served, nonce=bytes.fromhex(fx["nonce"]), policy=Policy(), at=1_760_000_000)
    got = {c.id: c for c in att.checks}
    assert got["aci.keyset_digest"].evidence["recomputed"] == fx["workload_keyset_digest"]
    assert got["aci.report_data"].evidence["statement"] == fx["statement"]
    for cid in ("aci.shape", "aci.keyset_b64", "aci.keyset_digest", "aci.report_data", "aci.nonce_fresh"):
        assert got[cid].status is Status.PASS, cid
    assert got["tdx.quote_signature"].status is Status.FAIL and got["aci.quote_slot"].status is Status.FAIL
    assert att.keyset is None and att.verdict.status == "failed"


# -- sessions --------------------------------------------------------------------------------------------------

def test_session_id_is_sha256_of_the_served_bytes_chosen_by_the_cited_form():
    pub = S["published"]
    s = parse_session(pub["bytes"].encode(), cited=pub["session_id"])
    assert s.shape == "v3" and s.id == pub["session_id"]
    assert s.evidence_sha256 == s.evidence_digest == pub["evidence_digest"]
    assert s.evidence_data_uri == pub["evidence_data_uri"] and s.evidence_bytes == pub["evidence_bytes_ascii"].encode()
    assert v3.session_fetch_id(pub["session_id"]) == pub["fetch_path"].rsplit("/", 1)[1]
    # The same bytes read without the citing id follow the current rule (JCS), which gives the trap id.
    assert parse_session(pub["bytes"].encode()).id == pub["trap_current_rule_id"]


def test_a_tls_certificate_binding_is_read_and_the_record_has_its_own_id():
    rec = S["tls_certificate_binding"]
    s = parse_session(rec["bytes"].encode(), cited=rec["session_id"])
    assert s.id == rec["session_id"]
    assert [b["type"] for b in s.channel_binding if b["type"] == "tls_certificate_sha256"]


def test_a_tls_certificate_binding_names_the_der_leaf_and_is_shown_not_trusted():
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from phalanb.sim.tls import make_self_signed  # any real certificate will do

    der = x509.load_pem_x509_certificate(make_self_signed(1).cert_pem).public_bytes(serialization.Encoding.DER)
    binding = {"type": "tls_certificate_sha256", "origin": "https://u",
               "certificate_sha256": v3.certificate_sha256(der)}
    assert v3.binding_holds(binding, certificate_der=der) is True
    assert v3.binding_holds(binding, certificate_der=der + b"\0") is False
    assert v3.binding_holds(binding, spki_sha256="00" * 32) is None  # another kind of observation
    rec = S["tls_certificate_binding"]
    check = [c for c in verify_session(rec["bytes"].encode(), expected_id=rec["session_id"], served_at=1750000000,
                                       policy=Policy(), deep=False) if c.id == "session.channel_binding"][0]
    assert check.status is Status.PASS and not check.required and "gateway's signed word" in check.reason


def test_published_session_passes_for_the_published_receipt():
    checks = verify_session(S["published"]["bytes"].encode(), expected_id=S["published"]["session_id"],
                            served_at=1750000000, policy=Policy(), deep=False)
    for cid in ("session.id", "session.evidence_digest", "session.window"):
        assert _status(checks, cid) is Status.PASS


@pytest.mark.parametrize("name", ["tampered_trailing_space", "list_entry"])
def test_bytes_that_are_not_the_cited_session_fail(name):
    checks = verify_session(S[name]["bytes"].encode(), expected_id=S["published"]["session_id"],
                            served_at=1750000000, policy=Policy(), deep=False)
    assert _status(checks, "session.id") is Status.FAIL


def test_tampered_session_bytes_hash_to_what_the_vector_says():
    t = S["tampered_trailing_space"]
    assert parse_session(t["bytes"].encode(), cited=t["session_id_of_bytes"]).id == t["session_id_of_bytes"]


# -- receipts --------------------------------------------------------------------------------------------------

def _receipt_checks(name, req=None, resp=None):
    pub = R["published"]
    return verify_receipt(R[name]["envelope_bytes"].encode(), keyset=_keyset(),
                          request_bytes=(req or pub["request_body"]).encode(),
                          response_bytes=(resp or pub["response_body"]).encode(), at=1750000100)


def test_published_receipt_payload_signature_and_hashes():
    pub = R["published"]
    r = parse_receipt(pub["envelope_bytes"].encode())
    assert r.shape == "v3" and r.signing_input().decode() == pub["payload_bytes"]
    assert hashlib.sha256(r.signing_input()).hexdigest() == pub["payload_sha256"] and r.signature == pub["signature"]
    assert r.body_hash("request.received") == pub["request_body_hash"]
    assert r.body_hash("response.returned") == pub["response_body_hash"]
    checks = _receipt_checks("published")
    assert all(c.status is Status.PASS for c in checks), [(c.id, c.status) for c in checks]
    # U.1 + U.2: the cited session is the published one, and served_at falls in its window.
    assert r.cited_session_ids == [S["published"]["session_id"]]


@pytest.mark.parametrize("name", ["tampered_payload", "algo_mismatch", "unknown_key_id"])
def test_receipt_signature_fails(name):
    assert _status(_receipt_checks(name), "receipt.signature") is Status.FAIL


def test_algo_mismatch_fails_before_any_signature_math():
    check = [c for c in _receipt_checks("algo_mismatch") if c.id == "receipt.signature"][0]
    assert "algo" in check.reason and "signing_input_sha256" not in check.evidence


def test_a_rewritten_request_is_reported_and_the_unknown_event_stays_signed():
    checks = _receipt_checks("rewritten_request")
    st = {c.id: c.status for c in checks}
    assert st["receipt.rewrite"] is Status.WARNING
    assert all(st[i] is Status.PASS for i in ("receipt.signature", "receipt.keyset", "receipt.request_hash",
                                              "receipt.response_hash"))
    r = parse_receipt(R["rewritten_request"]["envelope_bytes"].encode())
    assert r.body_hash("request.forwarded") == R["rewritten_request"]["forwarded_body_hash"]
    assert r.event("route.selected") is not None


def test_e2ee_receipt_hashes_the_plaintext_sealed_and_the_envelope_received():
    rec = E3["receipt"]
    r = parse_receipt(rec["envelope_bytes"].encode())
    assert r.signing_input().decode() == rec["payload_bytes"]
    checks = verify_receipt(rec["envelope_bytes"].encode(), keyset=_keyset(),
                            request_bytes=E3["request"]["plaintext"].encode(),
                            response_bytes=E3["response"]["body"].encode(), at=1750000300, upstream_expected=False)
    st = {c.id: c.status for c in checks}
    assert st.pop("receipt.upstream") is Status.SKIPPED  # a direct service, as the auditor said
    assert all(s is Status.PASS for s in st.values()), st


def test_without_a_verified_upstream_event_an_aggregator_receipt_fails():
    # ACI-v3.md trap 6: serving is gone, so only the auditor's policy says an upstream is expected.
    checks = verify_receipt(E3["receipt"]["envelope_bytes"].encode(), keyset=_keyset(),
                            request_bytes=E3["request"]["plaintext"].encode(),
                            response_bytes=E3["response"]["body"].encode(), at=1750000300)
    assert _status(checks, "receipt.upstream") is Status.FAIL


# -- E2EE v3 ---------------------------------------------------------------------------------------------------

def _priv(name):
    return X25519PrivateKey.from_private_bytes(bytes.fromhex(V["keys"][name]["seed_hex"]))


_PARTS = {"request": (E.CONTEXT_REQUEST, "e2ee-1"), "response": (E.CONTEXT_RESPONSE, "client"),
          "sse": (E.CONTEXT_RESPONSE, "client")}


def _aad(part):
    return E.request_aad(E3["model"], E3["headers"]["X-Client-Pub-Key"]) if part == "request" else \
        E.response_aad(E3["model"])


@pytest.mark.parametrize("part", list(_PARTS))
def test_e2ee_v3_units_reproduce_byte_for_byte(part):
    v = E3[part]
    ctx, recipient = _PARTS[part]
    assert _aad(part).hex() == v["aad_hex"]
    plain = (v.get("plaintext") or v["event_plaintext"]).encode()
    unit = E.seal_unit(bytes.fromhex(V["keys"][recipient]["public_key"]), plain, _aad(part), ctx,
                       ephemeral=_priv(v["ephemeral"]), gcm_nonce=bytes.fromhex(v["gcm_nonce_hex"]))
    assert unit.hex() == v["sealed_hex"] and hashlib.sha256(unit).hexdigest() == v["sealed_sha256"]
    assert E.unit_key(_priv(recipient), unit, ctx).hex() == v["aes_key"]
    assert E.open_unit(_priv(recipient), unit, _aad(part), ctx) == plain


def test_e2ee_v3_envelopes_and_wire_bytes():
    assert E.reply_units(E3["response"]["body"].encode(), stream=False)[0].hex() == E3["response"]["sealed_hex"]
    assert v3.served_sha256(E3["response"]["body"].encode()) == E3["response"]["body_hash"]
    assert E.reply_units(E3["sse"]["wire"].encode(), stream=True)[0].hex() == E3["sse"]["sealed_hex"]
    assert v3.served_sha256(E3["sse"]["wire"].encode()) == E3["sse"]["wire_hash"]
    body = json.loads(E3["request"]["body"])
    assert list(body) == ["model", "sealed_b64"] and base64.b64decode(body["sealed_b64"]).hex() == \
        E3["request"]["sealed_hex"]


def test_e2ee_v3_the_client_reproduces_the_request_body():
    from phalanb.aci import AttestedE2EEKey

    key = AttestedE2EEKey.UNVERIFIED_override(V["keys"]["e2ee-1"]["public_key"], E.SUITE, version=3)
    sealed = E.seal_request(E3["request"]["plaintext"].encode(), model_key=key, client_private=_priv("client"))
    assert sealed.headers == E3["headers"]
    unit = base64.b64decode(json.loads(sealed.body)["sealed_b64"])
    assert E.open_unit(_priv("e2ee-1"), unit, _aad("request"), E.CONTEXT_REQUEST).decode() == \
        E3["request"]["plaintext"]


@pytest.mark.parametrize("aad", [
    pytest.param(lambda: E.request_aad(E3["model"], E3["headers"]["X-Client-Pub-Key"]), id="other-context"),
    pytest.param(lambda: E.response_aad("other-model"), id="other-model"),
])
def test_a_unit_does_not_open_under_another_context_or_model(aad):
    with pytest.raises(E2EEError):
        E.open_unit(_priv("client"), bytes.fromhex(E3["sse"]["sealed_hex"]), aad(), E.CONTEXT_RESPONSE)


def test_a_seal_over_the_upper_case_client_key_does_not_open():
    trap = E3["trap_uppercase_client_key"]
    assert bytes.fromhex(trap["aad_hex"]).endswith(E3["headers"]["X-Client-Pub-Key"].upper().encode())
    with pytest.raises(E2EEError):
        E.open_unit(_priv("e2ee-1"), bytes.fromhex(trap["sealed_hex"]), _aad("request"), E.CONTEXT_REQUEST)


# -- shape detection -------------------------------------------------------------------------------------------

SD = V["shape_detection"]


@pytest.mark.parametrize("case", SD["reports"], ids=lambda c: c["name"])
def test_report_shape_from_explicit_markers(case):
    if case["shape"] == "reject":
        with pytest.raises(ParseError):
            parse_aci_report(json.dumps(case["doc"]))
    else:
        assert v3.report_shape(case["doc"]) == case["shape"]
        if case["shape"] != "preview":  # the minimal preview document lacks members a preview report needs
            assert parse_aci_report(json.dumps(case["doc"])).shape == case["shape"]


@pytest.mark.parametrize("case", SD["report_files"], ids=lambda c: c["path"])
def test_report_files_shape(case):
    doc = json.loads((V3 / case["path"]).read_text())
    assert v3.report_shape(doc) == case["shape"] == parse_aci_report(doc).shape


@pytest.mark.parametrize("case", SD["receipts"], ids=lambda c: c["name"])
def test_receipt_shape_from_explicit_markers(case):
    if case["shape"] == "reject":
        with pytest.raises(ParseError):
            parse_receipt(json.dumps(case["doc"]))
    else:
        assert v3.receipt_shape(case["doc"]) == case["shape"]


@pytest.mark.parametrize("case", SD["session_ids"], ids=lambda c: c["id"][:12] + c["shape"])
def test_session_id_form_names_its_shape(case):
    if case["shape"] == "reject":
        with pytest.raises(ParseError):
            v3.session_id_shape(case["id"])
    else:
        assert v3.session_id_shape(case["id"]) == case["shape"]
