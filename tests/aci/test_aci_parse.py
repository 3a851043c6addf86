"""Hostile input for the ACI parsers: every malformed document is a ParseError naming where, never a crash; the
verifiers turn it into failed/skipped checks, never an exception."""

from __future__ import annotations

import json

import pytest

import acikit as k
from phalanb.aci import (
    is_aci_report,
    is_legacy_gateway_report,
    parse_aci_report,
    parse_receipt,
    parse_session,
    parse_session_list,
    parse_signature_wrapper,
    verify_aci_report,
    verify_receipt,
    verify_session,
)
from phalanb.aci.report import MAX_REPORT_BYTES
from phalanb.errors import ParseError
from phalanb.policy import Policy
from phalanb.verdict import Status

RECEIPT = k.A["receipt"]["document_jcs"]
SESSION = k.A["session"]["document_jcs"]


@pytest.fixture(scope="module")
def real() -> str:
    return k.REAL.read_text()


PARSERS = [(parse_aci_report, "real"), (parse_receipt, RECEIPT), (parse_session, SESSION)]


def _doc(which, real):
    return real if which == "real" else which


@pytest.mark.parametrize("parse,which", PARSERS, ids=["report", "receipt", "session"])
def test_a_float_is_refused(parse, which, real):
    text = _doc(which, real)
    bad = text.replace('"api_version"', '"x_float":2.0,"api_version"', 1)
    with pytest.raises(ParseError, match="integer"):
        parse(bad)


@pytest.mark.parametrize("parse,which", PARSERS, ids=["report", "receipt", "session"])
def test_a_duplicate_member_is_refused(parse, which, real):
    text = _doc(which, real)
    bad = text.replace('"api_version"', '"api_version":"aci/1","api_version"', 1)
    with pytest.raises(ParseError, match="twice"):
        parse(bad)


@pytest.mark.parametrize("parse,which", PARSERS, ids=["report", "receipt", "session"])
def test_a_non_ascii_member_name_is_refused(parse, which, real):
    text = _doc(which, real)
    bad = text.replace('"api_version"', '"nonce_é":1,"api_version"', 1)
    with pytest.raises(ParseError, match="ASCII"):
        parse(bad)


@pytest.mark.parametrize("parse,which", PARSERS, ids=["report", "receipt", "session"])
def test_truncation_is_refused_at_every_cut(parse, which, real):
    text = _doc(which, real).encode().rstrip()
    for cut in (1, len(text) // 3, len(text) // 2, len(text) - 1):
        with pytest.raises(ParseError):
            parse(text[:cut])


@pytest.mark.parametrize("parse,which", PARSERS, ids=["report", "receipt", "session"])
def test_an_absurd_size_is_refused_before_parsing(parse, which, real):
    with pytest.raises(ParseError, match="more than"):
        parse(b"{" + b" " * (17 * 1024 * 1024) + b"}")


@pytest.mark.parametrize("parse", [parse_aci_report, parse_receipt, parse_session])
def test_not_an_object_is_refused(parse):
    for bad in (b"[]", b"null", b'"aci/1"', b"\xff\xfe", b"NaN"):
        with pytest.raises(ParseError):
            parse(bad)


def test_a_float_in_an_already_parsed_mapping_is_refused():
    doc = json.loads(RECEIPT)
    doc["served_at"] = 1750000000.0
    with pytest.raises(ParseError, match="float"):
        parse_receipt(doc)


def test_report_size_limit_is_a_few_megabytes():
    assert MAX_REPORT_BYTES <= 16 * 1024 * 1024


def test_report_of_another_api_version_is_refused(real):
    with pytest.raises(ParseError, match="api_version"):
        parse_aci_report(real.replace('"aci/1"', '"aci/2"', 1))


def test_report_mixing_both_shapes_is_refused(real):
    doc = json.loads(real)
    doc["attestation"]["workload_keyset"]["not_after"] = 1800000000
    with pytest.raises(ParseError, match="mixes"):
        parse_aci_report(doc)
    current = k.sim_report()
    current["workload_id"] = "sha256:" + "00" * 32
    with pytest.raises(ParseError, match="mixes"):
        parse_aci_report(current)


def test_preview_report_missing_its_identity_is_refused(real):
    doc = json.loads(real)
    del doc["attestation"]["workload_keyset"]["workload_identity"]
    with pytest.raises(ParseError, match="workload_identity"):
        parse_aci_report(doc)


def test_report_with_a_mistyped_field_names_it():
    doc = k.sim_report()
    doc["attestation"]["workload_keyset"]["not_after"] = "soon"
    with pytest.raises(ParseError, match="not_after"):
        parse_aci_report(doc)


def test_legacy_gateway_answer_is_recognised_and_never_parsed_as_aci(real):
    doc = json.loads(real)
    doc.update(signing_address="0x79a5061efe5a46b0d1f33b11cf1c5adbedae6b79", intel_quote="00", nvidia_payload="{}")
    assert is_legacy_gateway_report(doc) and not is_aci_report(doc)
    assert is_aci_report(json.loads(real)) and not is_legacy_gateway_report(json.loads(real))
    with pytest.raises(ParseError, match="legacy"):
        parse_aci_report(doc)


def test_receipt_mixing_shapes_is_refused():
    doc = json.loads(RECEIPT)
    doc["workload_id"] = "sha256:" + "11" * 32
    with pytest.raises(ParseError, match="mixed"):
        parse_receipt(doc)
    preview = dict(k.VECTORS["preview_receipt_canonical"]["receipt"], key_id="x")
    with pytest.raises(ParseError, match="mixed"):
        parse_receipt(preview)


def test_receipt_without_signature_is_refused():
    doc = json.loads(RECEIPT)
    del doc["signature"]
    with pytest.raises(ParseError, match="signature"):
        parse_receipt(doc)


def test_signature_wrapper_parses_its_receipt():
    w = parse_signature_wrapper({"api_version": "aci/1", "text": "a:b", "signature": "0x00", "signing_algo": "ecdsa",
                                 "signing_address": "0x00", "receipt": json.loads(RECEIPT)})
    assert w.receipt.receipt_id == "rcpt-0001"


def test_session_claim_in_the_docs_spelling_is_refused():
    doc = json.loads(SESSION)
    doc["claims"]["tee_attested"]["status"] = "Asserted"
    with pytest.raises(ParseError, match="claims.tee_attested.status"):
        parse_session(doc)


def test_session_evidence_that_is_not_base64_is_refused():
    doc = json.loads(SESSION)
    doc["evidence"]["data"] = "data:text/plain;base64,@@@"
    with pytest.raises(ParseError, match="base64"):
        parse_session(doc)


def test_a_document_that_is_not_an_aci_session_is_refused():
    with pytest.raises(ParseError, match="api_version"):
        parse_session(k.VECTORS)


def test_session_list_entries_do_not_hash_to_their_id():
    entry = dict(json.loads(SESSION), session_id=k.SESSION_ID)
    del entry["evidence"]["data"]
    entries = parse_session_list({"api_version": "aci/1", "sessions": [entry]})
    assert entries[0].session_id == k.SESSION_ID and "does not hash" in entries[0].note
    listed = {kk: v for kk, v in entry.items() if kk != "session_id"}
    assert parse_session(listed).id != k.SESSION_ID


def test_preview_session_id_rule():
    doc = {"api_version": "aci/1", "provider": "p", "endpoint": None, "verifier_id": "v/1", "identity": None, "channel_binding": [],
           "claims": {"tee_attested": {"status": "unknown"}}, "evidence": {}, "established_at": 1, "expires_at": 2}
    s = parse_session(doc)
    later = parse_session(dict(doc, established_at=5, expires_at=9))
    assert s.shape == "preview" and s.id.startswith("as_") and s.id == later.id  # timestamps excluded


def test_verifiers_turn_garbage_into_checks_not_exceptions():
    att = verify_aci_report(b"{garbage", nonce=None, policy=Policy())
    assert att.keyset is None and att.verdict.status == "failed"
    r = {c.id: c for c in verify_receipt(b"\x00\x01", keyset=None, request_bytes=None, response_bytes=None)}
    assert r["receipt.signature"].status is Status.FAIL
    s = {c.id: c for c in verify_session(b"[1,2", expected_id="00", served_at=None, policy=Policy())}
    assert s["session.id"].status is Status.FAIL


def _paths(o, p=()):
    yield p
    if isinstance(o, dict):
        for key, v in o.items():
            yield from _paths(v, p + (key,))
    elif isinstance(o, list):
        for i, v in enumerate(o):
            yield from _paths(v, p + (i,))


def test_structural_mutations_never_crash_a_verifier():
    """Any member replaced by a value of another type (or removed): checks or a PhalanbError, never a crash."""
    import copy
    import random

    from phalanb.aci import EstablishedKeyset
    from phalanb.errors import PhalanbError

    rnd = random.Random(7)
    values = [None, 1, -1, 2**70, "", "zz", "00" * 32, [], {}, [1], {"a": 1}, True]
    sid, sbytes = k.upstream_session()
    docs = {"report": k.sim_report(), "receipt": json.loads(k.sign_receipt(k.cite(k.receipt_doc(), sid))),
            "preview_receipt": k.VECTORS["preview_receipt_canonical"]["receipt"], "session": json.loads(sbytes)}
    keyset = EstablishedKeyset(digest=k.A["keyset"]["workload_keyset_digest"], keyset=k.A["keyset"]["object"])
    for _ in range(150):
        name = rnd.choice(sorted(docs))
        doc = copy.deepcopy(docs[name])
        path = rnd.choice([p for p in _paths(doc) if p])
        holder = doc
        for step in path[:-1]:
            holder = holder[step]
        if isinstance(holder, dict) and rnd.random() < 0.2:
            del holder[path[-1]]
        else:
            holder[path[-1]] = rnd.choice(values)
        try:
            if name == "report":
                verify_aci_report(doc, nonce=k.NONCE, policy=k.sim_policy(), at=k.AT)
            elif name.endswith("receipt"):
                verify_receipt(doc, keyset=keyset, request_bytes=b"x", response_bytes=b"y")
            else:
                verify_session(doc, expected_id=sid, served_at=1, policy=k.sim_policy(), at=k.AT)
        except PhalanbError:
            pass
