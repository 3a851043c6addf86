"""What a liar (or a broken proxy) sends in the v3 shape gets a clear phalanb error or a failed check, never a crash
and never a pass: truncated documents, a keyset whose bytes are not its digest, an envelope whose payload is not
the signed bytes, ill-formed nonces, mixed shapes, and a TEE type phalanb cannot verify yet."""

from __future__ import annotations

import base64
import json

import pytest

from phalanb.aci import v3
from phalanb.aci.receipt import parse_receipt
from phalanb.aci.report import parse_aci_report, parse_v3_keyset
from phalanb.aci.session import parse_session
from phalanb.aci.verify import EstablishedKeyset, statement, verify_aci, verify_aci_report, verify_receipt
from phalanb.errors import ParseError
from phalanb.policy import Policy
from phalanb.verdict import Status
from tests.conftest import FIXTURES

V3 = FIXTURES / "aci" / "v3"
V = json.loads((V3 / "test_vectors.json").read_text())
FIXTURE = (V3 / "upstream" / "aci_report_fixture.json").read_bytes()
NONCE = bytes.fromhex(V["report_fixture"]["nonce"])
ENVELOPE = V["receipts"]["published"]["envelope_bytes"].encode()
SESSION = V["sessions"]["published"]


def _keyset() -> EstablishedKeyset:
    return EstablishedKeyset(digest=V["keyset"]["workload_keyset_digest"],
                             keyset=parse_v3_keyset(V["keyset"]["bytes"].encode()), shape="v3")


def _by_id(checks):
    return {c.id: c for c in checks}


@pytest.mark.parametrize("cut", [1, 40, 200, 700, len(FIXTURE) - 1])
def test_a_truncated_v3_report_is_a_parse_error_and_a_failed_shape_check(cut):
    with pytest.raises(ParseError) as err:
        parse_aci_report(FIXTURE[:cut])
    assert err.value.field  # names where
    att = verify_aci_report(FIXTURE[:cut], nonce=NONCE, policy=Policy())
    assert _by_id(att.checks)["aci.shape"].status is Status.FAIL and att.keyset is None


@pytest.mark.parametrize("cut", [1, 30, len(ENVELOPE) // 2, len(ENVELOPE) - 1])
def test_a_truncated_envelope_is_a_parse_error_and_a_failed_signature(cut):
    with pytest.raises(ParseError):
        parse_receipt(ENVELOPE[:cut])
    checks = verify_receipt(ENVELOPE[:cut], keyset=_keyset(), request_bytes=None, response_bytes=None)
    assert _by_id(checks)["receipt.signature"].status is Status.FAIL


@pytest.mark.parametrize("cut", [1, 50, len(SESSION["bytes"]) - 1])
def test_a_truncated_session_is_a_parse_error(cut):
    with pytest.raises(ParseError):
        parse_session(SESSION["bytes"].encode()[:cut], cited=SESSION["session_id"])


def _report_with(**att_changes) -> bytes:
    doc = json.loads(FIXTURE)
    doc["attestation"].update(att_changes)
    return json.dumps(doc, separators=(",", ":")).encode()


def test_a_keyset_whose_bytes_differ_from_its_digest_fails_the_digest_and_establishes_nothing():
    raw = base64.b64decode(json.loads(FIXTURE)["attestation"]["workload_keyset_b64"])
    edited = raw.replace(b'"not_after":2000000000', b'"not_after":2000000001')
    assert edited != raw
    att = verify_aci_report(_report_with(workload_keyset_b64=base64.b64encode(edited).decode()), nonce=NONCE,
                            policy=Policy())
    digest = _by_id(att.checks)["aci.keyset_digest"]
    assert digest.status is Status.FAIL and "as served" in digest.reason
    assert att.keyset is None


def test_a_reserialised_keyset_with_the_same_content_is_another_keyset():
    raw = base64.b64decode(json.loads(FIXTURE)["attestation"]["workload_keyset_b64"])
    pretty = json.dumps(json.loads(raw), indent=2).encode()  # same content, other bytes
    att = verify_aci_report(_report_with(workload_keyset_b64=base64.b64encode(pretty).decode()), nonce=NONCE,
                            policy=Policy())
    assert _by_id(att.checks)["aci.keyset_digest"].status is Status.FAIL


@pytest.mark.parametrize("b64", ["not base64!", "e30", " e30=", "e31="], ids=["chars", "no-pad", "space", "pad-bits"])
def test_a_keyset_b64_that_is_not_strict_base64_is_refused_naming_the_field(b64):
    with pytest.raises(ParseError) as err:
        parse_aci_report(_report_with(workload_keyset_b64=b64))
    assert err.value.field == "attestation.workload_keyset_b64"


def test_an_envelope_whose_payload_is_not_the_signed_bytes_fails_the_signature():
    env = json.loads(ENVELOPE)
    payload = json.loads(base64.b64decode(env["payload_b64"]))
    # The same content re-encoded (sorted, as a JCS verifier might): other bytes, so the signature cannot hold.
    env["payload_b64"] = base64.b64encode(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).decode()
    pub = V["receipts"]["published"]
    checks = _by_id(verify_receipt(json.dumps(env).encode(), keyset=_keyset(),
                                   request_bytes=pub["request_body"].encode(),
                                   response_bytes=pub["response_body"].encode()))
    assert checks["receipt.signature"].status is Status.FAIL
    # Everything else the payload says is then only its own claim.
    assert checks["receipt.request_hash"].status is Status.SKIPPED


def test_an_envelope_with_extra_members_is_a_mixture():
    env = json.loads(ENVELOPE)
    env["api_version"] = "aci/1"
    with pytest.raises(ParseError, match="mixed"):
        parse_receipt(json.dumps(env))


@pytest.mark.parametrize("nonce", ["a" * 129, "nonce with space", "", "nönce", "slash/ed"],
                         ids=["129-chars", "space", "empty", "non-ascii", "slash"])
def test_an_overlong_or_illformed_nonce_fails_the_binding_with_a_reason(nonce):
    with pytest.raises(ParseError) as err:
        statement(V["keyset"]["workload_keyset_digest"], nonce, shape="v3")
    assert "nonce" in str(err.value)
    att = verify_aci_report(FIXTURE, nonce=nonce, policy=Policy())
    rd = _by_id(att.checks)["aci.report_data"]
    assert rd.status is Status.FAIL and "[0-9A-Za-z_-]" in rd.reason


def test_sev_snp_is_named_as_not_yet_verifiable_and_never_passes():
    att = verify_aci_report(_report_with(tee_type="sev_snp"), nonce=NONCE, policy=Policy())
    checks = _by_id(att.checks)
    assert checks["aci.tee_type"].status is Status.SKIPPED and "SEV-SNP" in checks["aci.tee_type"].reason
    assert "not verify SEV-SNP" in checks["aci.tee_type"].reason
    assert checks["tdx.quote_signature"].status is Status.SKIPPED
    assert att.keyset is None and att.verdict.status != "verified"


def test_an_unknown_tee_type_fails():
    att = verify_aci_report(_report_with(tee_type="sgx"), nonce=NONCE, policy=Policy())
    assert _by_id(att.checks)["aci.tee_type"].status is Status.FAIL


def test_a_v3_receipt_citing_a_bare_hex_session_id_fails_the_session_id():
    # Shapes are never mixed: a v3 receipt's session ids carry sha256:.
    verdict = verify_aci(None, receipt=ENVELOPE, report=None, nonce=None, sessions={})
    assert verdict["session.id"].status is Status.SKIPPED  # the published receipt cites a sha256: id, not given
    payload = json.loads(base64.b64decode(json.loads(ENVELOPE)["payload_b64"]))
    bare = SESSION["session_id"][7:]
    for ev in payload["event_log"]:
        if ev["type"] == "upstream.verified":
            ev["session_id"] = bare
    env = {**json.loads(ENVELOPE), "payload_b64": base64.b64encode(json.dumps(payload).encode()).decode()}
    verdict = verify_aci(None, receipt=json.dumps(env).encode(), report=None, nonce=None,
                         sessions={bare: SESSION["bytes"].encode()})
    assert verdict["session.id"].status is Status.FAIL and "one shape" in verdict["session.id"].reason


def test_a_v3_receipt_against_an_august_keyset_fails():
    current = EstablishedKeyset(digest=V["keyset"]["trap_digest_if_recanonicalised"],
                                keyset=parse_v3_keyset(V["keyset"]["bytes"].encode()), shape="current")
    checks = _by_id(verify_receipt(ENVELOPE, keyset=current, request_bytes=None, response_bytes=None))
    assert checks["receipt.signature"].status is Status.FAIL and "never mixed" in checks["receipt.signature"].reason


def test_a_v3_session_given_as_a_parsed_document_is_refused():
    with pytest.raises(ParseError, match="exact bytes"):
        parse_session(json.loads(SESSION["bytes"]), cited=SESSION["session_id"])


def test_markers_of_two_report_shapes_are_refused_naming_them():
    doc = json.loads(FIXTURE)
    doc["workload_id"] = "sha256:" + "0" * 64
    with pytest.raises(ParseError, match="workload_id"):
        parse_aci_report(json.dumps(doc))
    with pytest.raises(ParseError, match="found"):
        v3.report_shape({"api_version": "aci/1", "attestation": {"tee_type": "tdx"}})
