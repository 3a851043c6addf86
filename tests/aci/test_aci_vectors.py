"""Every byte-exact vector of the ACI spec (fixtures/aci/test_vectors.json: ``aci``, ``e2ee_v2`` AADs and
``preview_receipt_canonical``) reproduces through phalanb's own functions."""

from __future__ import annotations

import hashlib
import json

import acikit as k
from phalanb.aci import jcs
from phalanb.aci.receipt import parse_receipt
from phalanb.aci.session import decode_data_uri, parse_session
from phalanb.aci.verify import EstablishedKeyset, report_data_for, statement, verify_aci_report, verify_receipt
from phalanb.verdict import Status

A = k.A
KS = A["keyset"]


def _keyset() -> EstablishedKeyset:
    # Unit test of the receipt layer: the keyset is asserted here; the public path establishes it only from a
    # verified report (see test_aci_chain).
    return EstablishedKeyset(digest=KS["workload_keyset_digest"], keyset=KS["object"], shape="current")


def test_keyset_jcs_bytes_and_digest():
    assert jcs.canonicalize(KS["object"]).decode() == KS["jcs"]
    assert jcs.sha256_digest(KS["object"]) == KS["workload_keyset_digest"]


def test_both_statements_and_their_report_data():
    for st in A["statements"]:
        assert statement(KS["workload_keyset_digest"], st["nonce"]).decode() == st["statement"]
        assert report_data_for(KS["workload_keyset_digest"], st["nonce"]) == st["report_data"]


def test_report_data_slot_is_what_the_quote_carries():
    st = A["statements"][0]
    report = k.sim_report()
    assert report["attestation"]["report_data"] == st["report_data"]
    assert report["attestation"]["evidence"]["quote_report_data"] == st["report_data_slot_64"]
    att = verify_aci_report(report, nonce=k.NONCE, policy=k.sim_policy(), at=k.AT)
    slot = next(c for c in att.checks if c.id == "aci.quote_slot")
    assert slot.status is Status.PASS and slot.evidence["quote_body_report_data"] == st["report_data_slot_64"]


def test_session_jcs_id_evidence_digest_and_uri():
    se = A["session"]
    s = parse_session(se["document_jcs"].encode())
    assert jcs.canonicalize(s.raw).decode() == se["document_jcs"]
    assert s.id == se["session_id"]
    assert s.evidence_digest == se["evidence_digest"] == s.evidence_sha256
    media, body, parts = decode_data_uri(se["evidence_data_uri"])
    assert body == se["evidence_bytes_ascii"].encode() and media == "text/plain" and len(parts) == 1


def test_receipt_body_hashes_match_the_exact_bytes():
    checks = {c.id: c for c in verify_receipt(A["receipt"]["document_jcs"], keyset=_keyset(), request_bytes=k.REQUEST,
                                              response_bytes=k.RESPONSE)}
    assert checks["receipt.request_hash"].status is Status.PASS
    assert checks["receipt.request_hash"].evidence["computed"] == A["receipt"]["request_body_hash"]
    assert checks["receipt.response_hash"].status is Status.PASS
    assert checks["receipt.response_hash"].evidence["computed"] == A["receipt"]["response_body_hash"]


def test_receipt_signing_input_and_its_sha256():
    r = parse_receipt(A["receipt"]["document_jcs"])
    assert r.signing_input().decode() == A["receipt"]["signing_input_jcs"]
    assert hashlib.sha256(r.signing_input()).hexdigest() == A["receipt"]["signing_input_sha256"]
    assert r.signature == A["receipt"]["signature"] and r.key_id == A["receipt"]["signing_key_id"]


def test_receipt_signature_verifies_over_the_served_document():
    checks = {c.id: c for c in verify_receipt(A["receipt"]["document_jcs"].encode(), keyset=_keyset(),
                                              request_bytes=None, response_bytes=None)}
    assert checks["receipt.signature"].status is Status.PASS
    assert checks["receipt.keyset"].status is Status.PASS


def test_served_receipt_document_is_its_jcs_form_and_pretty_printing_changes_nothing():
    doc = A["receipt"]["document_jcs"]
    assert jcs.canonicalize(parse_receipt(doc).raw).decode() == doc
    pretty = json.dumps(json.loads(doc), indent=2)
    assert parse_receipt(pretty).signing_input() == parse_receipt(doc).signing_input()


def test_receipt_cites_the_vector_session():
    assert parse_receipt(A["receipt"]["document_jcs"]).cited_session_ids == [A["session"]["session_id"]]


def test_receipt_key_from_its_seed():
    from cryptography.hazmat.primitives import serialization

    raw = k.RECEIPT_KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert raw.hex() == A["keys"]["receipt-1"]["public_key"]


def test_e2ee_aad_jcs_forms():
    for name in ("request_aad", "response_aad"):
        assert jcs.canonicalize(k.VECTORS["e2ee_v2"][name]["object"]).decode() == k.VECTORS["e2ee_v2"][name]["jcs"]


def test_preview_receipt_canonical_form():
    P = k.VECTORS["preview_receipt_canonical"]
    r = parse_receipt(P["receipt"])
    assert r.shape == "preview"
    assert r.signing_input().decode() == P["canonical_jcs"]
    assert "sha256:" + hashlib.sha256(r.signing_input()).hexdigest() == P["canonical_sha256"]
    # preview: response.returned is compared by wire_hash, cleartext shown beside it
    assert r.body_hash("response.returned") == "sha256:" + "c" * 64
