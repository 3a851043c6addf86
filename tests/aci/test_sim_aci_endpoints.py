"""The simulated ACI gateway's endpoint rules (ACI.md §1–5): nonce, headers, errors, receipt access and retention,
streaming receipts, sessions, the legacy endpoints, custody chains, direct mode and the preview shape."""

from __future__ import annotations

import base64
import hashlib
import json

import coincurve
import httpx
import pytest
from eth_hash.auto import keccak

from phalanb.aci.jcs import canonicalize, sha256_digest
from phalanb.sim import SimConfig, Simulator
from phalanb.sim.aci_docs import SIM_KMS_ROOT, statement

MODEL = "phalanb/sim-llama-3-8b"
ALICE = {"Authorization": "Bearer sk-alice-0000000000000000"}
BOB = {"Authorization": "Bearer sk-bob-11111111111111111111"}


def _start(**kw):
    kw.setdefault("aci_shape", "aug-2026")  # the August shape's own endpoints (v3: test_sim_aci_v3_independent)
    return Simulator(SimConfig(seed=21, ttft_ms=0, tokens_per_second=0, protocol="aci", **kw))


@pytest.fixture(scope="module")
def gw():
    with _start() as sim:
        with httpx.Client(base_url=sim.base_url.removesuffix("/v1"), timeout=30) as http:
            yield sim, http


def _chat(http, *, stream=False, headers=ALICE, extra=None, max_tokens=4):
    body = json.dumps({"model": MODEL, "stream": stream, "max_tokens": max_tokens,
                       "messages": [{"role": "user", "content": "hi"}], **(extra or {})}).encode()
    return body, http.post("/v1/chat/completions", content=body,
                           headers={**headers, "Content-Type": "application/json"})


def _events(doc):
    return {e["type"]: e for e in doc["event_log"]}


# -- nonce -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("nonce", ["AB" * 32, "ab" * 16, "", "zz" * 32, "ab" * 33])
def test_current_gateway_refuses_a_nonce_that_is_not_64_lowercase_hex(gw, nonce):
    resp = gw[1].get("/v1/aci/attestation", params={"nonce": nonce})
    assert resp.status_code == 400
    assert resp.json() == {"error": {"message": resp.json()["error"]["message"], "type": "invalid_request_error",
                                     "code": None, "param": None}}


def test_absent_nonce_gives_a_statement_with_null(gw):
    report = gw[1].get("/v1/aci/attestation").json()
    expected = hashlib.sha256(statement(report["workload_keyset_digest"], None)).hexdigest()
    assert report["attestation"]["report_data"] == expected


# -- headers ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/v1/aci/attestation?nonce=XYZ", "/v1/aci/receipts/rcpt-000000000000000000000000",
                                  "/v1/aci/sessions/" + "0" * 64, "/v1/signature/x?signing_algo=rsa", "/health"])
def test_every_response_carries_the_aci_headers_errors_included(gw, path):
    sim, http = gw
    resp = http.get(path)
    assert resp.headers["x-aci-version"] == "aci/1"
    assert resp.headers["x-aci-keyset-digest"] == sha256_digest(sim.aci.keyset())


def test_inference_answers_carry_a_receipt_id(gw):
    _, resp = _chat(gw[1])
    assert resp.status_code == 200
    assert resp.headers["x-receipt-id"].startswith("rcpt-") and len(resp.headers["x-receipt-id"]) == 29


def test_bad_json_is_an_invalid_request_error(gw):
    resp = gw[1].post("/v1/chat/completions", content=b"{not json", headers=ALICE)
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"
    assert "x-aci-keyset-digest" in resp.headers


def test_unknown_aci_provider_option_is_refused(gw):
    _, resp = _chat(gw[1], extra={"provider": {"aci_whatever": True}})
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"


def test_a_pinned_session_that_cannot_serve_is_412(gw):
    _, resp = _chat(gw[1], extra={"provider": {"aci_verified": True, "aci_session_ids": ["0" * 64]}})
    assert resp.status_code == 412 and resp.json()["error"]["type"] == "session_not_accepted"


def test_aci_provider_options_are_consumed_not_forwarded(gw):
    sim, http = gw
    _, first = _chat(http)
    sid = _events(http.get(f"/v1/aci/receipts/{first.headers['x-receipt-id']}", headers=ALICE).json())[
        "upstream.verified"]["session_id"]
    body, resp = _chat(http, extra={"provider": {"aci_verified": True, "aci_session_ids": [sid]}})
    ev = _events(http.get(f"/v1/aci/receipts/{resp.headers['x-receipt-id']}", headers=ALICE).json())
    assert ev["request.received"]["body_hash"] == "sha256:" + hashlib.sha256(body).hexdigest()
    stripped = json.dumps({k: v for k, v in json.loads(body).items() if k != "provider"},
                          separators=(",", ":")).encode()
    assert ev["request.forwarded"]["body_hash"] == "sha256:" + hashlib.sha256(stripped).hexdigest()


# -- receipts --------------------------------------------------------------------------------------------------
def test_owned_receipt_without_bearer_is_401_unauthorized(gw):
    _, resp = _chat(gw[1])
    got = gw[1].get(f"/v1/aci/receipts/{resp.headers['x-receipt-id']}")
    assert got.status_code == 401 and got.json()["error"]["type"] == "unauthorized"


def test_owned_receipt_with_another_key_is_404_not_found(gw):
    _, resp = _chat(gw[1])
    got = gw[1].get(f"/v1/aci/receipts/{resp.headers['x-receipt-id']}", headers=BOB)
    assert got.status_code == 404 and got.json()["error"]["type"] == "not_found"


def test_receipt_is_found_by_chat_id_too_and_served_as_jcs(gw):
    _, resp = _chat(gw[1])
    by_chat = gw[1].get(f"/v1/aci/receipts/{resp.json()['id']}", headers=ALICE)
    assert by_chat.status_code == 200
    assert by_chat.content == canonicalize(by_chat.json())
    assert by_chat.json()["receipt_id"] == resp.headers["x-receipt-id"]


def test_anonymous_requests_have_public_receipts(gw):
    _, resp = _chat(gw[1], headers={})
    assert gw[1].get(f"/v1/aci/receipts/{resp.headers['x-receipt-id']}").status_code == 200


def test_receipt_expires_after_receipt_ttl():
    with _start(receipt_ttl=5) as sim, httpx.Client(base_url=sim.base_url.removesuffix("/v1")) as http:
        _, resp = _chat(http)
        rid = resp.headers["x-receipt-id"]
        assert http.get(f"/v1/aci/receipts/{rid}", headers=ALICE).status_code == 200
        now = sim.aci.clock()
        sim.aci.clock = lambda: now + 5  # the gateway's clock moves; nobody sleeps
        gone = http.get(f"/v1/aci/receipts/{rid}", headers=ALICE)
        assert gone.status_code == 404 and gone.json()["error"]["type"] == "not_found"


def test_streaming_receipt_exists_only_after_the_stream_ended():
    # A slow stream (4 tokens/s): the receipt is asked for while the stream is still being produced.
    with Simulator(SimConfig(seed=21, ttft_ms=0, tokens_per_second=4, protocol="aci", aci_shape="aug-2026")) as sim, \
            httpx.Client(base_url=sim.base_url.removesuffix("/v1"), timeout=30) as http:
        body = json.dumps({"model": MODEL, "stream": True, "max_tokens": 4,
                           "messages": [{"role": "user", "content": "hi"}]}).encode()
        with http.stream("POST", "/v1/chat/completions", content=body, headers=ALICE) as resp:
            rid = resp.headers["x-receipt-id"]
            during = http.get(f"/v1/aci/receipts/{rid}", headers=ALICE)
            received = resp.read()
        after = http.get(f"/v1/aci/receipts/{rid}", headers=ALICE)
    assert during.status_code == 404
    assert after.status_code == 200
    assert _events(after.json())["response.returned"]["body_hash"] == \
        "sha256:" + hashlib.sha256(received).hexdigest()


def test_keepalive_comment_is_sent_first_and_hashed():
    with _start(aci_keepalive=True) as sim, httpx.Client(base_url=sim.base_url.removesuffix("/v1")) as http:
        _, resp = _chat(http, stream=True)
        ev = _events(http.get(f"/v1/aci/receipts/{resp.headers['x-receipt-id']}", headers=ALICE).json())
    assert resp.content.startswith(b": PROCESSING\n\ndata: ")
    assert ev["response.returned"]["body_hash"] == "sha256:" + hashlib.sha256(resp.content).hexdigest()
    # The upstream's own bytes did not carry the comment.
    assert ev["response.received"]["body_hash"] == \
        "sha256:" + hashlib.sha256(resp.content.removeprefix(b": PROCESSING\n\n")).hexdigest()


def test_receipt_events_follow_the_gateway_order(gw):
    _, resp = _chat(gw[1])
    doc = gw[1].get(f"/v1/aci/receipts/{resp.headers['x-receipt-id']}", headers=ALICE).json()
    assert [e["type"] for e in doc["event_log"]] == [
        "request.received", "middleware.forwarded", "route.selected", "request.forwarded", "upstream.verified",
        "response.received", "response.returned"]
    assert doc["key_id"] == "dstack-kms-receipt-ed25519-v1" and doc["method"] == "POST"


# -- sessions --------------------------------------------------------------------------------------------------
def test_session_id_is_sha256_of_the_served_bytes_and_evidence_is_the_upstream_report(gw):
    sim, http = gw
    _, resp = _chat(http)
    ev = _events(http.get(f"/v1/aci/receipts/{resp.headers['x-receipt-id']}", headers=ALICE).json())
    sid = ev["upstream.verified"]["session_id"]
    served = http.get(f"/v1/aci/sessions/{sid}")
    assert hashlib.sha256(served.content).hexdigest() == sid
    doc = served.json()
    assert doc["established_at"] <= json.loads(http.get(
        f"/v1/aci/receipts/{resp.headers['x-receipt-id']}", headers=ALICE).content)["served_at"] <= doc["expires_at"]
    assert doc["claims"]["tee_attested"] == {"status": "asserted", "source": "hardware_proven",
                                             "reason": doc["claims"]["tee_attested"]["reason"]}
    report = json.loads(base64.b64decode(doc["evidence"]["data"].split(",", 1)[1]))
    assert report["signing_address"] == sim.signing_address  # the model server's vllm-proxy report


def test_session_list_entries_name_their_id_and_lack_evidence_data(gw):
    _chat(gw[1])
    listed = gw[1].get("/v1/aci/sessions", params={"model": MODEL, "upstream_name": "phalanb-sim-vllm-proxy"}).json()
    assert listed["api_version"] == "aci/1" and listed["sessions"]
    for entry in listed["sessions"]:
        assert set(entry["evidence"]) == {"digest"}
        assert hashlib.sha256(canonicalize({k: v for k, v in entry.items() if k != "session_id"})).hexdigest() \
            != entry["session_id"]
    assert gw[1].get("/v1/aci/sessions", params={"model": "no/such-model"}).json()["sessions"] == []


# -- custody ---------------------------------------------------------------------------------------------------
def test_every_custody_chain_recovers_the_simulated_kms_root(gw):
    evidence = gw[1].get("/v1/aci/attestation").json()["attestation"]["evidence"]
    app_id = bytes.fromhex(gw[0].aci.tdx.app_id)
    assert {k["role"] for k in evidence["key_custody"]["keys"]} == {"receipt", "e2ee-secp256k1", "e2ee-x25519"}
    for entry in evidence["key_custody"]["keys"]:
        sig0, sig1 = (bytes.fromhex(s) for s in entry["signature_chain"])
        app = coincurve.PublicKey.from_signature_and_message(
            sig0, keccak(f"{entry['purpose']}:{entry['kms_public_key']}".encode()), hasher=None)
        root = coincurve.PublicKey.from_signature_and_message(
            sig1, keccak(b"dstack-kms-issued:" + app_id + app.format(compressed=True)), hasher=None)
        assert root.format(compressed=True).hex() == SIM_KMS_ROOT


def test_secp256k1_e2ee_key_is_its_kms_key(gw):
    report = gw[1].get("/v1/aci/attestation").json()
    entry = [k for k in report["attestation"]["evidence"]["key_custody"]["keys"] if k["role"] == "e2ee-secp256k1"][0]
    assert coincurve.PublicKey(bytes.fromhex(entry["public_key"])).format(compressed=True).hex() == \
        entry["kms_public_key"]


# -- legacy endpoints ------------------------------------------------------------------------------------------
def test_legacy_report_is_the_gateway_report_requoted_with_address_and_nonce(gw):
    nonce = "cd" * 32
    report = gw[1].get("/v1/attestation/report", params={"nonce": nonce}).json()
    e2ee = [k for k in report["attestation"]["workload_keyset"]["e2ee_public_keys"]
            if k["key_id"] == "dstack-kms-e2ee-v1"][0]["public_key"]
    address = "0x" + keccak(bytes.fromhex(e2ee)[1:])[12:].hex()
    assert report["signing_address"] == address and report["signing_public_key"] == e2ee
    slot = bytes.fromhex(address[2:]) + bytes(12) + bytes.fromhex(nonce)
    assert report["attestation"]["report_data"] == slot.hex() == report["attestation"]["evidence"]["quote_report_data"]
    assert bytes.fromhex(report["intel_quote"])[568:632] == slot
    assert json.loads(report["nvidia_payload"])["nonce"] == nonce
    assert report["all_attestations"][0]["signing_address"] == address


def test_legacy_report_hashes_a_nonce_that_is_not_32_bytes_of_hex(gw):
    report = gw[1].get("/v1/attestation/report", params={"nonce": "hello"}).json()
    assert report["attestation"]["report_data"][64:] == hashlib.sha256(b"hello").hexdigest()


@pytest.mark.parametrize("path", ["/v1/attestation/report", "/v1/signature/anything"])
def test_legacy_endpoints_refuse_unknown_signing_algo(gw, path):
    resp = gw[1].get(path, params={"signing_algo": "rsa"})
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_signing_algo"


def test_legacy_ed25519_signature_uses_the_legacy_key(gw):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    _, resp = _chat(gw[1])
    sig = gw[1].get(f"/v1/signature/{resp.json()['id']}", params={"signing_algo": "ed25519"}, headers=ALICE).json()
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(sig["signing_address"])).verify(
        bytes.fromhex(sig["signature"]), sig["text"].encode())
    keyset = gw[1].get("/v1/aci/attestation").json()["attestation"]["workload_keyset"]
    assert sig["signing_address"] not in json.dumps(keyset)  # not listed in the current keyset
    assert sig["api_version"] == "aci/1" and sig["receipt"]["chat_id"] == resp.json()["id"]


# -- direct mode and the preview shape ------------------------------------------------------------------------
def test_direct_mode_has_no_upstream_events():
    with _start(aci_mode="direct") as sim, httpx.Client(base_url=sim.base_url.removesuffix("/v1")) as http:
        assert http.get("/v1/aci/attestation").json()["service_capabilities"]["serving"] == "direct"
        _, resp = _chat(http)
        doc = http.get(f"/v1/aci/receipts/{resp.headers['x-receipt-id']}", headers=ALICE).json()
    assert "upstream.verified" not in _events(doc)


@pytest.fixture(scope="module")
def preview():
    with _start(aci_shape="preview") as sim:
        with httpx.Client(base_url=sim.base_url.removesuffix("/v1"), timeout=30) as http:
            yield sim, http


def test_preview_report_has_the_live_preview_shape(preview):
    resp = preview[1].get("/v1/aci/attestation", params={"nonce": "any string, even uppercase ABC"})
    assert resp.status_code == 200
    report = resp.json()
    ks = report["attestation"]["workload_keyset"]
    assert ks["keyset_epoch"]["not_after"] == 2**64 - 1
    assert report["workload_id"] == sha256_digest(ks["workload_identity"]["public_key"])
    assert resp.headers["x-aci-identity"] == report["workload_id"]
    assert report["workload_keyset_digest"] == sha256_digest(ks)
    st = canonicalize({"nonce": "any string, even uppercase ABC", "purpose": "aci.report_data.v1",
                       "workload_id": report["workload_id"],
                       "workload_keyset_digest": report["workload_keyset_digest"]})
    assert report["attestation"]["report_data"] == hashlib.sha256(st).hexdigest()
    endorsement = report["attestation"]["keyset_endorsement"]
    payload = canonicalize({"purpose": "aci.keyset.endorsement.v1",
                            "workload_keyset_digest": report["workload_keyset_digest"]})
    identity = bytes.fromhex(ks["workload_identity"]["public_key"]["public_key"])
    sig = coincurve.PublicKey(identity)
    der = _der_from_rs(bytes.fromhex(endorsement["value"]))
    assert sig.verify(der, hashlib.sha256(payload).digest(), hasher=None)
    assert {k["role"] for k in report["attestation"]["evidence"]["key_custody"]["keys"]} == \
        {"identity", "receipt", "e2ee", "legacy-ed25519"}


def _der_from_rs(rs: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    return encode_dss_signature(int.from_bytes(rs[:32], "big"), int.from_bytes(rs[32:], "big"))


def test_preview_receipt_is_secp256k1_signed_with_seq_and_wire_hashes(preview):
    sim, http = preview
    body, resp = _chat(http, stream=True)
    doc = http.get(f"/v1/aci/receipts/{resp.headers['x-receipt-id']}", headers=ALICE).json()
    assert [e["seq"] for e in doc["event_log"]] == list(range(len(doc["event_log"])))
    ev = _events(doc)
    assert ev["response.returned"]["wire_hash"] == "sha256:" + hashlib.sha256(resp.content).hexdigest()
    assert ev["upstream.verified"]["session_id"].startswith("as_")
    signed = {**doc, "signature": {k: v for k, v in doc["signature"].items() if k != "value"}}
    value = bytes.fromhex(doc["signature"]["value"])
    assert len(value) == 65
    recovered = coincurve.PublicKey.from_signature_and_message(
        value, hashlib.sha256(canonicalize(signed)).digest(), hasher=None)
    keyset = http.get("/v1/aci/attestation").json()["attestation"]["workload_keyset"]
    assert recovered.format(compressed=False).hex() == keyset["receipt_signing_keys"][0]["public_key"]
    assert "model" not in doc and doc["workload_id"].startswith("sha256:")


def test_preview_wrong_credential_is_403_redaction_required(preview):
    _, resp = _chat(preview[1])
    got = preview[1].get(f"/v1/aci/receipts/{resp.headers['x-receipt-id']}", headers=BOB)
    assert got.status_code == 403 and got.json()["error"]["type"] == "redaction_required"


def test_preview_session_id_is_inside_and_excludes_timestamps(preview):
    _, resp = _chat(preview[1])
    sid = _events(preview[1].get(f"/v1/aci/receipts/{resp.headers['x-receipt-id']}", headers=ALICE).json())[
        "upstream.verified"]["session_id"]
    doc = preview[1].get(f"/v1/aci/sessions/{sid}").json()
    assert doc["session_id"] == sid
    expected = "as_" + hashlib.sha256(canonicalize({
        "provider": doc["provider"], "endpoint": doc["endpoint"], "verifier_id": doc["verifier_id"],
        "identity": doc["identity"], "channel_binding": doc["channel_binding"], "claims": doc["claims"],
        "evidence_digest": doc["evidence"]["digest"]})).hexdigest()
    assert sid == expected
    assert preview[1].get("/v1/aci/sessions", params={"provider": "phalanb-sim-vllm-proxy"}).json()["sessions"]


def test_legacy_protocol_has_no_aci_endpoints():
    with Simulator(SimConfig(seed=21, ttft_ms=0, tokens_per_second=0)) as sim:
        resp = httpx.get(sim.base_url + "/aci/attestation")
    assert resp.status_code == 404 and "x-aci-version" not in resp.headers


# -- the E2EE plug -----------------------------------------------------------------------------------------------
class _Sealed:
    """A stand-in for phalanb.sim.e2ee: the request body arrives base64-wrapped, the response leaves wrapped."""

    response_headers = {"X-E2EE-Applied": "true"}

    def __init__(self, restored: bytes):
        self.restored = restored

    def seal_body(self, data: bytes) -> bytes:
        return base64.b64encode(data)

    def seal_event(self, event: bytes) -> bytes:
        return b"data: " + base64.b64encode(event) + b"\n\n"


class _FakeE2ee:
    def open_request(self, headers, wire):
        return _Sealed(base64.b64decode(wire)) if headers.get("x-e2ee-version") == "2" else None


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_e2ee_plug_hashes_the_restored_request_and_the_sealed_wire_bytes(stream):
    with _start() as sim, httpx.Client(base_url=sim.base_url.removesuffix("/v1"), timeout=30) as http:
        sim.aci.e2ee = _FakeE2ee()
        plain = json.dumps({"model": MODEL, "stream": stream, "max_tokens": 3,
                            "messages": [{"role": "user", "content": "hi"}]}).encode()
        resp = http.post("/v1/chat/completions", content=base64.b64encode(plain),
                         headers={**ALICE, "X-E2EE-Version": "2"})
        ev = _events(http.get(f"/v1/aci/receipts/{resp.headers['x-receipt-id']}", headers=ALICE).json())
    assert resp.status_code == 200 and resp.headers["x-e2ee-applied"] == "true"
    assert ev["request.received"]["body_hash"] == "sha256:" + hashlib.sha256(plain).hexdigest()
    assert ev["response.returned"]["body_hash"] == "sha256:" + hashlib.sha256(resp.content).hexdigest()
    assert ev["response.received"]["body_hash"] != ev["response.returned"]["body_hash"]
