"""Round trips against the simulator: exact bytes in, hashes and signatures that verify out."""

import hashlib
import json

import pytest

from phalanb.vllm.signatures import fetch_signature
from phalanb.wire.exchange import Exchange
from phalanb.policy import Policy
from phalanb.vllm.signatures import SignatureRecord, check_hashes, parse_signed_text
from phalanb.vllm.verify import chat_checks, verify_exchange


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
@pytest.mark.parametrize("algo", ["ecdsa", "ed25519"])
def test_round_trip_hashes_and_signature_verify(sim, stream, algo, client_for):
    with client_for(sim, signing_algo=algo) as client:
        ex = client.chat("Tell me about enclaves", stream=stream, max_tokens=12)
        sig = fetch_signature(client, ex.chat_id)
        att = client.attestation(signing_algo=algo)
    assert ex.status == 200 and ex.complete and ex.chat_id.startswith("chatcmpl-")
    assert len(ex.chat_id) == len("chatcmpl-") + 32
    signed = parse_signed_text(sig.text)
    assert signed.request_hash == hashlib.sha256(ex.request_bytes).hexdigest()
    if stream:
        assert ex.response_bytes.endswith(b"data: [DONE]\n\n")
    verdict = verify_exchange(ex, sig, att.report, nonce=att.nonce, policy=Policy.for_simulator(sim))
    for cid in ("request.hash", "response.hash", "signature.valid", "signature.bound", "report.nonce_fresh",
                "report.report_data"):
        assert verdict[cid].status.value == "pass", verdict[cid]
    assert sig.signing_algo == algo
    assert att.report["signing_address"].lower() == sig.signing_address.lower()
    # No collateral was fetched: the TCB status is unchecked, so the honest answer is "incomplete".
    assert verdict["tdx.tcb_status"].status.value == "skipped"
    assert verdict.status == "incomplete" and not verdict.failed
    # The same evidence against the production roots fails exactly at the two chains, saying why.
    prod = verify_exchange(ex, sig, att.report, nonce=att.nonce)
    assert {c.id for c in prod.failed} == {"tdx.pck_chain", "gpu.cert_chain"}
    assert all("simulated" in c.reason for c in prod.failed)


def test_request_bytes_are_the_bytes_on_the_wire(sim, client_for):
    raw = b'{"model": "%s", "messages": [{"role": "user", "content": "x"}],   "stream": false}' % sim.model.encode()
    with client_for(sim) as client:
        ex = client.chat(raw_body=raw)
        sig = fetch_signature(client, ex.chat_id)
    assert ex.request_bytes == raw  # odd spacing kept: nothing re-serialised
    assert parse_signed_text(sig.text).request_hash == hashlib.sha256(raw).hexdigest()


def _flip(data: bytes, i: int) -> bytes:
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_every_single_byte_flip_fails_naming_the_hash(sim, stream, client_for):
    with client_for(sim) as client:
        ex = client.chat("flip me", stream=stream, max_tokens=4)
        sig = fetch_signature(client, ex.chat_id)
    signed = parse_signed_text(sig.text)
    assert all(c.status.value == "pass" for c in check_hashes(signed, request_bytes=ex.request_bytes,
                                                               response_bytes=ex.response_bytes, stream=ex.stream))
    for side in ("request", "response"):
        data = getattr(ex, f"{side}_bytes")
        for i in range(len(data)):
            kw = {"request_bytes": ex.request_bytes, "response_bytes": ex.response_bytes}
            kw[f"{side}_bytes"] = _flip(data, i)
            # Only the hashes depend on the bytes (the signature covers the signed text), so check those alone.
            checks = check_hashes(signed, stream=ex.stream, **kw)
            by_id = {c.id: c for c in checks}
            assert by_id[f"{side}.hash"].status.value == "fail", (side, i)
            assert f"the {side} differs" in by_id[f"{side}.hash"].reason
            other = "response" if side == "request" else "request"
            assert by_id[f"{other}.hash"].status.value == "pass"


def test_mismatch_names_first_differing_offset_when_reference_given(sim, client_for):
    with client_for(sim) as client:
        ex = client.chat("offset", stream=True, max_tokens=4)
        sig = fetch_signature(client, ex.chat_id)
    bad = _flip(ex.response_bytes, 100)
    checks, _ = chat_checks(Exchange(url="", request_bytes=ex.request_bytes, response_bytes=bad, status=200,
                                     stream=True), sig, reference_response=ex.response_bytes)
    assert "offset 100" in checks[1].reason


def test_nonstream_json_dumps_candidate_is_recognised(fresh_sim, client_for):
    sim = fresh_sim(nonstream_hash="json_dumps")
    with client_for(sim) as client:
        ex = client.chat("older server", stream=False)
        sig = fetch_signature(client, ex.chat_id)
    checks, _ = chat_checks(ex, sig)
    assert checks[1].status.value == "pass"
    assert checks[1].evidence["matched"] == "json-dumps"
    assert checks[1].evidence["candidates"]["body-bytes"] != checks[1].evidence["candidates"]["json-dumps"]


def test_three_part_text_reports_the_model(fresh_sim, client_for):
    sim = fresh_sim(text_format="3part")
    with client_for(sim) as client:
        ex = client.chat("three parts", stream=True)
        sig = fetch_signature(client, ex.chat_id)
    assert parse_signed_text(sig.text).model == sim.model
    checks, _ = chat_checks(ex, sig)
    assert all(c.status.value == "pass" for c in checks)
    assert checks[0].evidence["model"] == sim.model


def test_saved_exchange_round_trips_through_json(sim, client_for):
    with client_for(sim) as client:
        ex = client.chat("save me", stream=True)
        sig = fetch_signature(client, ex.chat_id)
    again = Exchange.from_dict(json.loads(json.dumps(ex.to_dict())))
    assert again.request_bytes == ex.request_bytes and again.response_bytes == ex.response_bytes
    assert again.chat_id == ex.chat_id and again.text == ex.text
    checks, _ = chat_checks(again, SignatureRecord.from_json(json.dumps(sig.to_dict())))
    assert all(c.status.value == "pass" for c in checks)


def test_timings_are_ordered_and_complete(sim, client_for):
    with client_for(sim) as client:
        ex = client.chat("time me", stream=True, max_tokens=6)
    t = ex.timings
    assert t.request_sent_ns <= t.headers_ns <= t.first_byte_ns <= t.first_token_ns <= t.done_ns
    assert len(t.token_ns) == 6 and len(t.chunks) >= 1
    assert sum(n for _, n in t.chunks) == len(ex.response_bytes)
    assert len(t.inter_token_s) == 5


def test_on_text_streams_the_reply(sim, client_for):
    pieces = []
    with client_for(sim) as client:
        ex = client.chat("stream to me", stream=True, max_tokens=5, on_text=pieces.append)
    assert "".join(pieces) == ex.text and len(pieces) == 5


def test_models_lists_the_simulated_model(sim, client_for):
    with client_for(sim) as client:
        assert client.models() == [sim.model]


def test_fresh_random_nonce_each_time_and_echoed(sim, client_for):
    with client_for(sim) as client:
        a = client.attestation()
        b = client.attestation()
        fixed = client.attestation(nonce="ab" * 32)
    assert a.nonce != b.nonce and len(a.nonce) == 32
    assert a.report["request_nonce"] == a.nonce_hex
    assert fixed.report["request_nonce"] == "ab" * 32
