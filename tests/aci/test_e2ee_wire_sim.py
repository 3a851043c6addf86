"""The simulated ACI gateway terminates E2EE v2 exactly as ACI.md §6 says: with the keyset's own keys, every
``e2ee_*`` refusal a 400 in the ACI error shape (X-ACI headers included), the X-E2EE-* response headers, the
receipt hashing the restored request and the sealed wire reply, and plaintext requests left alone."""

from __future__ import annotations

import hashlib
import json
import time

import httpx
import pytest

from phalanb.aci import e2ee_crypto as ec
from phalanb.aci.e2ee import AttestedE2EEKey, decrypt_response, decrypt_stream, prepare_request
from phalanb.aci.verify import EstablishedKeyset
from phalanb.sim import SimConfig, Simulator
from phalanb.sim.e2ee import E2EE_ERROR_CODES

MODEL = "phalanb/sim-llama-3-8b"
ALICE = {"Authorization": "Bearer sk-alice-0000000000000000"}
PROMPT = "the launch code is 0000 and nobody may know"


@pytest.fixture(scope="module")
def gw():
    with Simulator(SimConfig(seed=61, ttft_ms=0, tokens_per_second=0, protocol="aci", aci_shape="aug-2026")) as sim:
        with httpx.Client(base_url=sim.base_url.removesuffix("/v1"), timeout=30) as http:
            yield sim, http


def _keyset(http) -> dict:
    return http.get("/v1/aci/attestation", params={"nonce": "ab" * 32}).json()["attestation"]["workload_keyset"]


def _key(http, algo) -> AttestedE2EEKey:
    # The keyset is taken from the served report unverified here: these tests are about the gateway, not trust
    # (test_e2ee_wire_client.py verifies the report first).
    return AttestedE2EEKey.from_established_keyset(EstablishedKeyset(digest="sha256:-", keyset=_keyset(http)),
                                                   algo=algo)


def _sealed(http, algo=ec.X25519, *, stream=False, now=None, body=None):
    body = body or {"model": MODEL, "stream": stream, "max_tokens": 4,
                    "messages": [{"role": "user", "content": PROMPT}]}
    return prepare_request(body, model_key=_key(http, algo), now=now)


def _post(http, req, *, headers=None, body=None, path="/v1/chat/completions"):
    return http.post(path, content=req.body if body is None else body,
                     headers={**ALICE, "Content-Type": "application/json",
                              **(req.headers if headers is None else headers)})


def _receipt_events(http, resp):
    doc = http.get(f"/v1/aci/receipts/{resp.headers['x-receipt-id']}", headers=ALICE).json()
    return {e["type"]: e for e in doc["event_log"]}


# -- the keys ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", ["current", "preview"])
def test_the_keyset_e2ee_keys_are_the_keys_the_e2ee_service_holds(shape):
    with Simulator(SimConfig(seed=62, ttft_ms=0, tokens_per_second=0, protocol="aci", aci_shape=shape)) as sim:
        service = sim.aci.e2ee.service
        with httpx.Client(base_url=sim.base_url.removesuffix("/v1"), timeout=30) as http:
            keyset = http.get("/v1/aci/attestation", params={"nonce": "cd" * 32}).json()[
                "attestation"]["workload_keyset"]
    listed = [e for e in keyset["e2ee_public_keys"] if e["algo"] in ec.SUITES]
    assert sorted(listed, key=lambda e: e["key_id"]) == sorted(service.keyset_entries(), key=lambda e: e["key_id"])
    want = {"current": {ec.X25519, ec.SECP256K1}, "preview": {ec.SECP256K1}}[shape]
    assert {e["algo"] for e in listed} == want


def test_the_secp256k1_e2ee_key_is_the_custody_covered_kms_key(gw):
    sim, http = gw
    report = http.get("/v1/aci/attestation", params={"nonce": "ef" * 32}).json()["attestation"]
    custody = {k["role"]: k for k in report["evidence"]["key_custody"]["keys"]}
    service_key = {k.algo: k for k in sim.aci.e2ee.service.keys}[ec.SECP256K1]
    assert custody["e2ee-secp256k1"]["public_key"] == service_key.public_key.hex()
    assert custody["e2ee-x25519"]["public_key"] == {k.algo: k for k in sim.aci.e2ee.service.keys}[
        ec.X25519].public_key.hex()


# -- a sealed round trip --------------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", [ec.X25519, ec.SECP256K1], ids=["x25519", "secp256k1"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_the_gateway_opens_the_prompt_and_seals_the_reply(gw, algo, stream):
    sim, http = gw
    req = _sealed(http, algo, stream=stream)
    resp = _post(http, req)
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-e2ee-applied"] == "true" and resp.headers["x-e2ee-version"] == "2"
    assert resp.headers["x-e2ee-algo"] == algo
    assert resp.headers["x-aci-version"] == "aci/1"
    reply = decrypt_stream(resp.content, req) if stream else decrypt_response(resp.content, req)
    assert reply.fields and reply.text
    assert reply.text.encode() not in resp.content
    ev = _receipt_events(http, resp)
    # request.received: the restored body (serde order), not the ciphertext; response.returned: the wire bytes.
    assert ev["request.received"]["body_hash"] == "sha256:" + hashlib.sha256(req.restored_body).hexdigest()
    assert ev["request.received"]["body_hash"] != "sha256:" + hashlib.sha256(req.body).hexdigest()
    assert ev["response.returned"]["body_hash"] == "sha256:" + hashlib.sha256(resp.content).hexdigest()
    assert ev["response.received"]["body_hash"] != ev["response.returned"]["body_hash"]


def test_the_upstream_receives_the_restored_prompt(gw):
    sim, http = gw
    req = _sealed(http)
    resp = _post(http, req)
    ev = _receipt_events(http, resp)
    # No provider options and no rewrite: what went upstream is exactly the restored body.
    assert ev["request.forwarded"]["body_hash"] == ev["request.received"]["body_hash"]


def test_a_request_without_e2ee_headers_stays_plaintext(gw):
    sim, http = gw
    body = json.dumps({"model": MODEL, "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}).encode()
    resp = http.post("/v1/chat/completions", content=body, headers={**ALICE, "Content-Type": "application/json"})
    assert resp.status_code == 200 and "x-e2ee-applied" not in resp.headers
    assert isinstance(resp.json()["choices"][0]["message"]["content"], str)
    assert _receipt_events(http, resp)["request.received"]["body_hash"] == \
        "sha256:" + hashlib.sha256(body).hexdigest()


# -- every refusal ------------------------------------------------------------------------------------------------
def _without(headers, name):
    return {k: v for k, v in headers.items() if k != name}


REFUSALS = {
    "e2ee_header_missing": lambda r: dict(headers=_without(r.headers, "X-E2EE-Nonce")),
    "e2ee_invalid_version": lambda r: dict(headers={**r.headers, "X-E2EE-Version": "1"}),
    "e2ee_invalid_public_key": lambda r: dict(headers={**r.headers, "X-Client-Pub-Key": "00" * 31}),
    "e2ee_model_key_mismatch": lambda r: dict(headers={**r.headers, "X-Model-Pub-Key": "11" * 32}),
    "e2ee_invalid_nonce": lambda r: dict(headers={**r.headers, "X-E2EE-Nonce": "ab" * 16}),
    "e2ee_invalid_timestamp": lambda r: dict(headers={**r.headers, "X-E2EE-Timestamp": "yesterday"}),
    "e2ee_invalid_payload_model": lambda r: dict(body=r.body.replace(b'"model":"' + MODEL.encode() + b'"',
                                                                     b'"model":7')),
    # Two hex digits more in front: still hex, but the ephemeral key and everything after it shift.
    "e2ee_decryption_failed": lambda r: dict(body=r.body.replace(b'"content":"', b'"content":"00')),
    "e2ee_unsupported_endpoint": lambda r: dict(path="/v1/responses"),
}


def test_every_e2ee_error_code_is_exercised():
    assert set(REFUSALS) | {"e2ee_replay_detected"} == set(E2EE_ERROR_CODES)


@pytest.mark.parametrize("code", sorted(REFUSALS))
def test_each_e2ee_refusal_is_a_400_in_the_aci_error_shape_with_the_aci_headers(gw, code):
    sim, http = gw
    resp = _post(http, _sealed(http), **REFUSALS[code](_sealed(http)))
    assert resp.status_code == 400
    assert resp.json() == {"error": {"message": resp.json()["error"]["message"], "type": code, "code": None,
                                     "param": None}}
    assert resp.headers["x-aci-version"] == "aci/1"
    assert resp.headers["x-aci-keyset-digest"].startswith("sha256:")
    assert "x-e2ee-applied" not in resp.headers


def test_a_replayed_nonce_is_refused(gw):
    sim, http = gw
    req = _sealed(http)
    assert _post(http, req).status_code == 200
    again = _post(http, req)
    assert again.status_code == 400 and again.json()["error"]["type"] == "e2ee_replay_detected"


@pytest.mark.parametrize("skew", [-301, 301])
def test_a_timestamp_more_than_300_s_away_is_refused(gw, skew):
    sim, http = gw
    resp = _post(http, _sealed(http, now=time.time() + skew))
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "e2ee_invalid_timestamp"


def test_the_timestamp_window_follows_the_gateway_clock(gw):
    sim, http = gw
    req = _sealed(http, now=time.time())
    sim.aci.clock = lambda: time.time() + 1000
    try:
        resp = _post(http, req)
    finally:
        sim.aci.clock = time.time
    assert resp.json()["error"]["type"] == "e2ee_invalid_timestamp"


def test_e2ee_can_be_switched_off():
    with Simulator(SimConfig(seed=63, ttft_ms=0, tokens_per_second=0, protocol="aci", aci_shape="aug-2026", aci_e2ee=False)) as sim:
        assert sim.aci.e2ee is None


# -- the protocol's vector, through the gateway's HTTP path -------------------------------------------------------
def test_the_gateway_opens_the_vector_request_and_its_receipt_hashes_the_vector_restored_body():
    from phalanb.sim.aci_e2ee import GatewayE2EE
    from phalanb.sim.e2ee import E2EEService, ServiceE2EEKey
    from tests.conftest import FIXTURES as fixtures
    v = json.loads((fixtures / "aci" / "test_vectors.json").read_text())["e2ee_v2"]
    d = v["derived_field_example"]
    suite = ec.SUITES[v["suite"]]
    client = suite.public_bytes(suite.private_from_bytes(bytes([2]) * 32)).hex()
    body = b'{"model":"demo-model","messages":[{"role":"user","content":"' + d["field_value_hex"].encode() + b'"}]}'
    headers = {"X-E2EE-Version": "2", "X-Client-Pub-Key": client, "X-Model-Pub-Key": v["service_public_key"],
               "X-E2EE-Nonce": v["request_nonce"], "X-E2EE-Timestamp": str(v["request_timestamp"])}
    with Simulator(SimConfig(seed=64, ttft_ms=0, tokens_per_second=0, protocol="aci", aci_shape="aug-2026", models=("demo-model",))) as sim:
        # The vector's service key (seed 0x03×32) behind the gateway, its clock at the vector's timestamp.
        sim.aci.e2ee = GatewayE2EE(E2EEService([ServiceE2EEKey.from_seed(bytes.fromhex(v["service_seed_hex"]),
                                                                         key_id="e2ee-1")],
                                               clock=lambda: v["request_timestamp"]))
        with httpx.Client(base_url=sim.base_url.removesuffix("/v1"), timeout=30) as http:
            resp = http.post("/v1/chat/completions", content=body,
                             headers={**ALICE, "Content-Type": "application/json", **headers})
            assert resp.status_code == 200, resp.text
            ev = _receipt_events(http, resp)
    restored = b'{"model":"demo-model","messages":[{"role":"user","content":"hi"}]}'
    assert ev["request.received"]["body_hash"] == "sha256:" + hashlib.sha256(restored).hexdigest()
    assert resp.headers["x-e2ee-algo"] == v["suite"]
