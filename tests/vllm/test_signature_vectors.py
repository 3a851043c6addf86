"""Phala's own documented signature vectors (fixtures/signatures): the first thing phalanb must reproduce."""

import json

import pytest

from phalanb.wire.exchange import Exchange
from phalanb.vllm.signatures import SignatureRecord, parse_signed_text, recover_signer, request_hash
from phalanb.vllm.verify import chat_checks


@pytest.fixture
def docs2024(fixtures):
    d = fixtures / "signatures" / "phala-docs-2024"
    vec = json.loads((d / "signature_vector.json").read_text())
    return vec, (d / "request_body.json").read_bytes(), (d / "response_body.sse").read_bytes()


def test_2024_both_hashes_reproduce_from_the_exact_files(docs2024):
    vec, req, resp = docs2024
    signed = parse_signed_text(vec["text"])
    ex = Exchange.from_bytes(request_bytes=req, response_bytes=resp)
    assert ex.stream is True
    assert ex.request_sha256 == signed.request_hash == vec["request_sha256_docs"]
    assert ex.response_sha256 == signed.response_hash == vec["response_sha256_docs"]
    # The SSE parser understood the same bytes: the chat id is the id of the first event.
    assert ex.chat_id == vec["chat_id"]
    assert ex.text


def test_2024_signature_recovers_to_documented_address(docs2024):
    vec, req, resp = docs2024
    # 2024 signatures carry no 0x prefix and the record had no signing_algo: ecdsa is implied.
    assert not vec["signature"].startswith("0x")
    assert recover_signer(vec["text"], vec["signature"]) == "0x50F9b35e94DFa4805A8c69C50Ba13841a06c1216"
    assert recover_signer(vec["text"], "0x" + vec["signature"]) == "0x50F9b35e94DFa4805A8c69C50Ba13841a06c1216"


def test_2024_chat_checks_all_pass(docs2024):
    vec, req, resp = docs2024
    record = SignatureRecord.from_dict({"text": vec["text"], "signature": vec["signature"]})
    checks, signer = chat_checks(Exchange.from_bytes(request_bytes=req, response_bytes=resp), record)
    assert [c.status.value for c in checks] == ["pass", "pass", "pass"]
    assert checks[1].evidence["matched"] == "sse-bytes"
    assert signer == "0x50F9b35e94DFa4805A8c69C50Ba13841a06c1216"


def test_2025_signature_recovers_to_documented_address(fixtures):
    vec = json.loads((fixtures / "signatures" / "phala-docs-2025" / "signature_vector.json").read_text())
    assert vec["signature"].startswith("0x") is False or True  # either spelling is accepted
    assert recover_signer(vec["text"], vec["signature"]) == "0xD8414F83c1335627b31d08Eba6d2dA5Fa53A0A83"


def test_2025_documented_request_body_is_reported_as_not_matching(fixtures):
    d = fixtures / "signatures" / "phala-docs-2025"
    vec = json.loads((d / "signature_vector.json").read_text())
    body = (d / "request_body_as_documented.json").read_bytes()
    assert request_hash(body) == vec["request_sha256_of_documented_body"]
    record = SignatureRecord.from_dict(vec)
    # Only the request is known (the docs elide the response): the response link is skipped, not passed.
    ex = Exchange(url="", request_bytes=body, response_bytes=b"", status=200, stream=True)
    checks, signer = chat_checks(None, record)
    assert {c.id: c.status.value for c in checks} == {"request.hash": "skipped", "response.hash": "skipped",
                                                       "signature.valid": "pass"}
    checks, _ = chat_checks(ex, record)
    req = checks[0]
    assert req.id == "request.hash" and req.status.value == "fail"
    assert "request differs" in req.reason
    assert req.evidence["computed"] == vec["request_sha256_of_documented_body"]
    assert req.evidence["signed"] == parse_signed_text(vec["text"]).request_hash
