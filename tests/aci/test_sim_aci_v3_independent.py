"""An independent client checks that phalanb's default simulator is faithful to ACI-v3.md, E2EE v3 included.

Only starting the simulator imports phalanb; every check below uses httpx and cryptography alone (strict base64,
sha256 over served bytes, Ed25519, X25519 + HKDF + AES-GCM written out here), so a bug shared by phalanb's verifier
and its simulator cannot make them agree.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY = "sk-independent-v3-" + "x" * 20
MODEL = "phalanb/sim-llama-3-8b"
SUITE = "x25519-aes-256-gcm-hkdf-sha256"


def b64(text: str) -> bytes:
    raw = base64.b64decode(text, validate=True)
    assert base64.b64encode(raw).decode() == text, "not canonical base64"
    return raw


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def strict(data: bytes):
    def no_dupes(pairs):
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), f"duplicate member in {keys}"
        return dict(pairs)
    return json.loads(data, object_pairs_hook=no_dupes)


def hkdf(shared: bytes, context: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=context).derive(shared)


def raw_pub(private) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def seal(recipient: bytes, plaintext: bytes, aad: bytes, context: bytes) -> bytes:
    eph, nonce = X25519PrivateKey.generate(), os.urandom(12)
    key = hkdf(eph.exchange(X25519PublicKey.from_public_bytes(recipient)), context)
    return raw_pub(eph) + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def unseal(private, unit: bytes, aad: bytes, context: bytes) -> bytes:
    key = hkdf(private.exchange(X25519PublicKey.from_public_bytes(unit[:32])), context)
    return AESGCM(key).decrypt(unit[32:44], unit[44:], aad)


@pytest.fixture(scope="module")
def service():
    from phalanb.sim import SimConfig, Simulator  # the only phalanb import: starting the (default) service

    with Simulator(SimConfig(seed=13, ttft_ms=0, tokens_per_second=0, protocol="aci")) as sim:
        with httpx.Client(base_url=sim.base_url.removesuffix("/v1"), timeout=30) as http:
            yield http


@pytest.fixture(scope="module")
def attested(service):
    nonce = "v3_independent-" + secrets.token_hex(8)  # a v3 nonce need not be hex
    resp = service.get("/v1/aci/attestation", params={"nonce": nonce})
    assert resp.status_code == 200
    report = strict(resp.content)
    keyset_bytes = b64(report["attestation"]["workload_keyset_b64"])
    return nonce, resp, report, keyset_bytes, strict(keyset_bytes)


def test_report_is_the_v3_shape_without_serving(attested):
    _, resp, report, _, _ = attested
    assert report["api_version"] == "aci/1" and "workload_keyset" not in report["attestation"]
    assert "serving" not in report["service_capabilities"]
    assert report["service_capabilities"]["supported_e2ee_versions"] == ["3"]
    assert resp.headers["x-aci-version"] == "aci/1"


def test_keyset_digest_is_sha256_of_the_exact_keyset_bytes(attested):
    _, resp, report, keyset_bytes, keyset = attested
    assert report["workload_keyset_digest"] == digest(keyset_bytes) == resp.headers["x-aci-keyset-digest"]
    # Served in the reference's wire order, not sorted: re-canonicalising would give another digest.
    assert list(keyset) == ["subject", "not_after", "receipt_signing_keys", "e2ee_public_keys", "tls_public_keys"]
    assert json.dumps(keyset, separators=(",", ":"), sort_keys=True).encode() != keyset_bytes


def test_statement_from_our_nonce_hashes_to_report_data_in_the_quote(attested):
    nonce, _, report, _, _ = attested
    statement = ('{"keyset_digest":"' + report["workload_keyset_digest"] + '","nonce":"' + nonce
                 + '","purpose":"aci.report_data.v1"}').encode()
    report_data = hashlib.sha256(statement).digest()
    assert report["attestation"]["report_data"] == report_data.hex()
    quote = bytes.fromhex(report["attestation"]["evidence"]["quote"])
    assert quote[568:632] == report_data + bytes(32)


@pytest.mark.parametrize("nonce", ["", "a" * 129, "with space", "plus+", "abc=", "dot.ted"])
def test_an_illegal_nonce_is_answered_400(service, nonce):
    resp = service.get("/v1/aci/attestation", params={"nonce": nonce})
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"


def test_the_longest_legal_nonce_is_accepted(service):
    nonce = ("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-" * 2)[:128]
    assert service.get("/v1/aci/attestation", params={"nonce": nonce}).status_code == 200


def _chat(service, body: bytes, headers=None):
    resp = service.post("/v1/chat/completions", content=body, headers={
        "Authorization": f"Bearer {KEY}", "Content-Type": "application/json", **(headers or {})})
    assert resp.status_code == 200, resp.text
    receipt = service.get(f"/v1/aci/receipts/{resp.headers['x-receipt-id']}",
                          headers={"Authorization": f"Bearer {KEY}"})
    assert receipt.status_code == 200
    return resp, receipt


def _payload(attested, receipt) -> dict:
    envelope = strict(receipt.content)
    assert list(envelope) == ["payload_b64", "key_id", "algo", "signature"]
    _, _, report, _, keyset = attested
    entry = [k for k in keyset["receipt_signing_keys"] if k["key_id"] == envelope["key_id"]][0]
    assert envelope["algo"] == entry["algo"] == "ed25519"
    payload = b64(envelope["payload_b64"])
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(entry["public_key"])).verify(
        bytes.fromhex(envelope["signature"]), payload)
    doc = strict(payload)
    assert not {"key_id", "signature", "seq"} & set(doc)
    assert doc["workload_keyset_digest"] == report["workload_keyset_digest"]
    assert doc["event_log"][0]["type"] == "request.received"
    return doc


def _event(doc, type_):
    return [e for e in doc["event_log"] if e["type"] == type_][0]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_receipt_envelope_signs_the_payload_bytes_over_our_exact_bytes(service, attested, stream):
    body = json.dumps({"model": MODEL, "stream": stream, "max_tokens": 5,
                       "messages": [{"role": "user", "content": "héllo, v3"}]}, separators=(",", ":")).encode()
    resp, receipt = _chat(service, body)
    doc = _payload(attested, receipt)
    assert _event(doc, "request.received")["body_hash"] == digest(body)
    assert _event(doc, "response.returned")["body_hash"] == digest(resp.content)


def test_the_cited_session_hashes_as_served_to_its_sha256_id(service, attested):
    body = json.dumps({"model": MODEL, "max_tokens": 3, "messages": [{"role": "user", "content": "s"}]}).encode()
    _, receipt = _chat(service, body)
    doc = _payload(attested, receipt)
    up = _event(doc, "upstream.verified")
    assert up["result"] == "verified" and up["required"] is True
    sid = up["session_id"]
    assert sid.startswith("sha256:") and len(sid) == 71
    served = service.get(f"/v1/aci/sessions/{sid[7:]}")  # fetched by the bare hex
    assert served.status_code == 200 and digest(served.content) == sid
    session = strict(served.content)
    data = session["evidence"]["data"]
    assert session["evidence"]["digest"] == digest(base64.b64decode(data.split(",", 1)[1]))
    assert session["established_at"] <= doc["served_at"] <= session["expires_at"]
    listed = service.get("/v1/aci/sessions").json()["sessions"]
    assert any(e["session_id"] == sid and "data" not in e["evidence"] for e in listed)


def test_a_receipt_of_another_key_is_403_redaction_required(service):
    body = json.dumps({"model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": "o"}]}).encode()
    resp = service.post("/v1/chat/completions", content=body, headers={"Authorization": f"Bearer {KEY}"})
    rid = resp.headers["x-receipt-id"]
    other = service.get(f"/v1/aci/receipts/{rid}", headers={"Authorization": "Bearer sk-someone-else-xxxxxxxx"})
    assert other.status_code == 403 and other.json()["error"]["type"] == "redaction_required"
    assert service.get(f"/v1/aci/receipts/{rid}").status_code == 401


def test_a_failed_upstream_is_502_with_a_refusal_receipt():
    from phalanb.sim import SimConfig, Simulator

    with Simulator(SimConfig(seed=14, ttft_ms=0, tokens_per_second=0, protocol="aci",
                             faults={"aci_upstream_failed"})) as sim, \
            httpx.Client(base_url=sim.base_url.removesuffix("/v1"), timeout=30) as http:
        body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "x"}]}).encode()
        resp = http.post("/v1/chat/completions", content=body)
        assert resp.status_code == 502 and resp.json()["error"]["type"] == "upstream_verification_failed"
        envelope = http.get(f"/v1/aci/receipts/{resp.headers['x-receipt-id']}").json()
        doc = json.loads(base64.b64decode(envelope["payload_b64"]))
        assert _event(doc, "response.returned")["body_hash"] == digest(resp.content)
        assert not [e for e in doc["event_log"] if e["type"] == "request.forwarded"]


# -- E2EE v3 --------------------------------------------------------------------------------------------------

def _e2ee_key(attested) -> str:
    keys = [k for k in attested[4]["e2ee_public_keys"] if k["algo"] == SUITE]
    assert keys, "a v3 keyset lists an X25519 key"
    return keys[0]["public_key"]


def _sealed_request(attested, plaintext: bytes, *, client=None, upper=False):
    client = client or X25519PrivateKey.generate()
    client_hex = raw_pub(client).hex()
    aad_key = client_hex.upper() if upper else client_hex
    model_key = _e2ee_key(attested)
    unit = seal(bytes.fromhex(model_key), plaintext,
                b"aci.e2ee.v3.request\0" + MODEL.encode() + b"\0" + aad_key.encode(), b"aci.e2ee.v3.request")
    body = json.dumps({"model": MODEL, "sealed_b64": base64.b64encode(unit).decode()}).encode()
    headers = {"X-E2EE-Version": "3", "X-Client-Pub-Key": client_hex, "X-Model-Pub-Key": model_key}
    return client, body, headers


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_e2ee_v3_whole_body_sealed_both_ways_and_the_receipt_binds_plaintext_and_envelope(service, attested, stream):
    plaintext = json.dumps({"model": MODEL, "stream": stream, "max_tokens": 4,
                            "messages": [{"role": "user", "content": "a secret"}]}).encode()
    client, body, headers = _sealed_request(attested, plaintext)
    resp, receipt = _chat(service, body, headers)
    assert resp.headers["x-e2ee-applied"] == "true"
    aad = b"aci.e2ee.v3.response\0" + MODEL.encode()
    if stream:
        events = [e for e in resp.content.split(b"\n\n") if e]
        assert events[-1] == b"data: [DONE]"
        opened = [unseal(client, b64(json.loads(e[6:])["sealed_b64"]), aad, b"aci.e2ee.v3.response")
                  for e in events[:-1]]
        assert all(json.loads(o)["object"] == "chat.completion.chunk" for o in opened)
    else:
        envelope = json.loads(resp.content)
        assert list(envelope) == ["sealed_b64"]
        assert json.loads(unseal(client, b64(envelope["sealed_b64"]), aad, b"aci.e2ee.v3.response"))["choices"]
    doc = _payload(attested, receipt)
    assert _event(doc, "request.received")["body_hash"] == digest(plaintext)
    assert _event(doc, "response.returned")["body_hash"] == digest(resp.content)


@pytest.mark.parametrize("change, error", [
    (lambda h: h.pop("X-E2EE-Version"), "e2ee_header_missing"),
    (lambda h: h.update({"X-E2EE-Version": "2"}), "e2ee_invalid_version"),
    (lambda h: h.pop("X-Client-Pub-Key"), "e2ee_header_missing"),
    (lambda h: h.update({"X-Client-Pub-Key": "zz" * 32}), "e2ee_invalid_public_key"),
    (lambda h: h.update({"X-Model-Pub-Key": "ab" * 32}), "e2ee_model_key_mismatch"),
], ids=["no-version", "version-2", "no-client-key", "bad-client-key", "other-model-key"])
def test_e2ee_v3_refusals(service, attested, change, error):
    _, body, headers = _sealed_request(attested, b'{"model":"%s","messages":[]}' % MODEL.encode())
    change(headers)
    resp = service.post("/v1/chat/completions", content=body, headers=headers)
    assert resp.status_code == 400 and resp.json()["error"]["type"] == error


def test_e2ee_v3_a_seal_over_the_upper_case_client_key_does_not_open(service, attested):
    _, body, headers = _sealed_request(attested, b'{"model":"%s","messages":[]}' % MODEL.encode(), upper=True)
    resp = service.post("/v1/chat/completions", content=body, headers=headers)
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "e2ee_decryption_failed"


def test_phalanbs_client_says_what_403_and_502_mean():
    # Not independent (phalanb's client): the v3 answers reach the user as sentences, never as "not found".
    from phalanb.errors import NotFoundError, ServiceError
    from phalanb.sim import SimConfig, Simulator
    from phalanb.wire.client import Client

    with Simulator(SimConfig(seed=15, ttft_ms=0, tokens_per_second=0, protocol="aci",
                             faults={"aci_upstream_failed"})) as sim:
        with Client(base_url=sim.base_url, model=sim.model, api_key="sk-owner-000000000000000000",
                    api_key_env=False) as owner, \
                Client(base_url=sim.base_url, model=sim.model, api_key="sk-other-000000000000000000",
                       api_key_env=False) as other:
            with pytest.raises(ServiceError) as refused:
                owner.chat("hi", max_tokens=2)
            assert refused.value.status == 502 and "did not forward the prompt" in str(refused.value)
            rid = refused.value.partial.receipt_id
            with pytest.raises(ServiceError) as redacted:
                other.receipt(rid)
            assert not isinstance(redacted.value, NotFoundError)
            assert redacted.value.status == 403 and "not absence" in str(redacted.value)
