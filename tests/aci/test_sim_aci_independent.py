"""An independent client checks that phalanb's ACI simulator is faithful to ACI.md.

Only starting the simulator imports phalanb; every check below uses httpx, cryptography, coincurve, eth_hash and
its own small JCS, so a shared bug in phalanb's JCS or documents cannot make simulator and verifier agree.
"""

from __future__ import annotations

import hashlib
import json
import secrets

import coincurve
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eth_hash.auto import keccak

KEY = "sk-independent-" + "x" * 20
#: phalanb.sim.aci_docs.SIM_KMS_ROOT, written out: the simulated KMS root is the same for every seed and process.
SIM_KMS_ROOT = "02ce7f8404788b7a04fbfc54715cace5283d0dea5c533193ed17d774b988f0719d"


def jcs(value) -> bytes:
    """RFC 8785 as ACI uses it: integers only, ASCII names sorted, serde_json string escaping, UTF-8."""
    def check(v):
        if isinstance(v, float):
            raise ValueError("JCS here carries integers only")
        if isinstance(v, dict):
            for k, item in v.items():
                if not (isinstance(k, str) and k.isascii()):
                    raise ValueError(f"member name {k!r}")
                check(item)
        elif isinstance(v, list):
            for item in v:
                check(item)
    check(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def service():
    from phalanb.sim import SimConfig, Simulator  # the only phalanb import: starting the service

    with Simulator(SimConfig(seed=11, ttft_ms=0, tokens_per_second=0, protocol="aci", aci_shape="aug-2026", aci_keepalive=True)) as sim:
        with httpx.Client(base_url=sim.base_url.removesuffix("/v1"), timeout=30) as http:
            yield http


@pytest.fixture(scope="module")
def attested(service):
    nonce = secrets.token_bytes(32).hex()
    resp = service.get("/v1/aci/attestation", params={"nonce": nonce})
    assert resp.status_code == 200
    return nonce, resp


def chat(service, *, stream: bool):
    body = json.dumps({"model": "phalanb/sim-llama-3-8b", "stream": stream, "max_tokens": 6,
                       "messages": [{"role": "user", "content": "héllo, gateway"}]}, separators=(",", ":")).encode()
    resp = service.post("/v1/chat/completions", content=body,
                        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert resp.status_code == 200
    receipt = service.get(f"/v1/aci/receipts/{resp.headers['x-receipt-id']}",
                          headers={"Authorization": f"Bearer {KEY}"})
    assert receipt.status_code == 200
    return body, resp, receipt


def test_keyset_digest_is_sha256_of_the_keyset_jcs(attested):
    _, resp = attested
    report = resp.json()
    digest = "sha256:" + sha256_hex(jcs(report["attestation"]["workload_keyset"]))
    assert report["workload_keyset_digest"] == digest == resp.headers["x-aci-keyset-digest"]
    assert resp.headers["x-aci-version"] == "aci/1"


def test_statement_hashes_to_report_data_and_sits_at_offset_568_of_the_quote(attested):
    nonce, resp = attested
    report = resp.json()
    statement = ('{"keyset_digest":"' + report["workload_keyset_digest"] + '","nonce":"' + nonce
                 + '","purpose":"aci.report_data.v1"}').encode()
    report_data = hashlib.sha256(statement).digest()
    att = report["attestation"]
    assert att["report_data"] == report_data.hex()
    assert att["evidence"]["quote_report_data"] == (report_data + bytes(32)).hex()
    quote = bytes.fromhex(att["evidence"]["quote"])
    assert quote[:2] == b"\x04\x00"  # TDX quote v4
    assert quote[568:632] == report_data + bytes(32)


def test_compose_hash_event_is_sha256_of_app_compose(attested):
    evidence = attested[1].json()["attestation"]["evidence"]
    events = json.loads(evidence["event_log"])
    compose = [e for e in events if e.get("event") == "compose-hash"]
    assert compose and compose[0]["event_payload"] == sha256_hex(evidence["app_compose"].encode())


def test_receipt_key_custody_chain_recovers_the_kms_root(attested):
    evidence = attested[1].json()["attestation"]["evidence"]
    app_id = bytes.fromhex([e for e in json.loads(evidence["event_log"]) if e.get("event") == "app-id"][0]
                           ["event_payload"])
    entry = [k for k in evidence["key_custody"]["keys"] if k["role"] == "receipt"][0]
    sig0, sig1 = (bytes.fromhex(s) for s in entry["signature_chain"])
    msg0 = keccak(f"{entry['purpose']}:{entry['kms_public_key']}".encode())
    app_key = coincurve.PublicKey.from_signature_and_message(sig0, msg0, hasher=None).format(compressed=True)
    root = coincurve.PublicKey.from_signature_and_message(
        sig1, keccak(b"dstack-kms-issued:" + app_id + app_key), hasher=None)
    assert root.format(compressed=True).hex() == SIM_KMS_ROOT


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_receipt_signature_and_body_hashes(service, attested, stream):
    body, resp, receipt = chat(service, stream=stream)
    doc = receipt.json()
    assert receipt.content == jcs(doc)  # served bytes are the JCS form
    keyset = attested[1].json()["attestation"]["workload_keyset"]
    key = [k for k in keyset["receipt_signing_keys"] if k["key_id"] == doc["key_id"]][0]
    assert key["algo"] == "ed25519"
    unsigned = {k: v for k, v in doc.items() if k != "signature"}
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(key["public_key"])).verify(
        bytes.fromhex(doc["signature"]), jcs(unsigned))
    assert doc["workload_keyset_digest"] == attested[1].json()["workload_keyset_digest"]
    events = {e["type"]: e for e in doc["event_log"]}
    assert doc["event_log"][0]["type"] == "request.received"
    assert events["request.received"]["body_hash"] == "sha256:" + sha256_hex(body)
    assert events["response.returned"]["body_hash"] == "sha256:" + sha256_hex(resp.content)
    if stream:
        assert resp.content.startswith(b": PROCESSING\n\n")  # the keep-alive is part of what is hashed


def test_session_id_and_evidence_digest(service):
    _, _, receipt = chat(service, stream=False)
    cited = [e for e in receipt.json()["event_log"] if e["type"] == "upstream.verified"][0]
    assert cited["result"] == "verified"
    resp = service.get(f"/v1/aci/sessions/{cited['session_id']}")
    assert sha256_hex(resp.content) == cited["session_id"] and resp.content == jcs(resp.json())
    evidence = resp.json()["evidence"]
    import base64
    head, data = evidence["data"].split(",", 1)
    assert head == "data:application/json;base64"
    assert evidence["digest"] == "sha256:" + sha256_hex(base64.b64decode(data))


def test_legacy_signature_text_and_eip191_signer(service, attested):
    body, resp, receipt = chat(service, stream=True)
    sig = service.get(f"/v1/signature/{resp.headers['x-receipt-id']}", params={"signing_algo": "ecdsa"},
                      headers={"Authorization": f"Bearer {KEY}"}).json()
    assert sig["text"] == f"{sha256_hex(body)}:{sha256_hex(resp.content)}"
    text = sig["text"].encode()
    digest = keccak(b"\x19Ethereum Signed Message:\n" + str(len(text)).encode() + text)
    raw = bytes.fromhex(sig["signature"].removeprefix("0x"))
    signer = coincurve.PublicKey.from_signature_and_message(raw[:64] + bytes([raw[64] - 27]), digest, hasher=None)
    address = "0x" + keccak(signer.format(compressed=False)[1:])[12:].hex()
    keyset = attested[1].json()["attestation"]["workload_keyset"]
    e2ee = [k for k in keyset["e2ee_public_keys"] if k["key_id"] == "dstack-kms-e2ee-v1"][0]["public_key"]
    assert address == sig["signing_address"] == "0x" + keccak(bytes.fromhex(e2ee)[1:])[12:].hex()
    assert sig["receipt"] == receipt.json()
