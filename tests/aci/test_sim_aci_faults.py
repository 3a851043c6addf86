"""Every ACI fault of the simulator breaks exactly the link it names, and the other links still hold.

The links are checked here with small local helpers (not phalanb's ACI verifier, written elsewhere): keyset digest,
statement → report_data, quote report_data, receipt signature and keyset, body hashes, upstream session.
"""

from __future__ import annotations

import hashlib
import json
import secrets

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from phalanb.aci.jcs import canonicalize, sha256_digest
from phalanb.sim import FAULTS, SimConfig, Simulator
from phalanb.sim.aci_docs import statement

MODEL = "phalanb/sim-llama-3-8b"
AUTH = {"Authorization": "Bearer sk-faults-000000000000000000"}
ACI_FAULTS = sorted(f for f in FAULTS if f.startswith("aci_"))


@pytest.fixture(scope="module")
def gw():
    with Simulator(SimConfig(seed=31, ttft_ms=0, tokens_per_second=0, protocol="aci", aci_shape="aug-2026", https=True)) as sim:
        with httpx.Client(base_url=sim.base_url.removesuffix("/v1"), timeout=30,
                          verify=_ctx(sim.ca_pem)) as http:
            yield sim, http
            sim.set_faults([])


def _ctx(pem):
    import ssl

    return ssl.create_default_context(cadata=pem)


@pytest.fixture
def faulty(gw):
    """``faulty(name)`` injects one fault for the rest of the test; the module's simulator is cleaned after."""
    sim, http = gw

    def inject(name):
        sim.set_faults([name])
        return http

    yield inject
    sim.set_faults([])


def _links(http, *, nonce=None, stream=False):
    """Attest, chat, fetch receipt and session; return which links hold (True) and which break (False)."""
    nonce = nonce or secrets.token_hex(32)
    att = http.get("/v1/aci/attestation", params={"nonce": nonce})
    report = att.json()
    ks = report["attestation"]["workload_keyset"]
    digest = sha256_digest(ks)
    report_data = hashlib.sha256(statement(digest, nonce)).digest()
    quote = bytes.fromhex(report["attestation"]["evidence"]["quote"])
    body = json.dumps({"model": MODEL, "stream": stream, "max_tokens": 4,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    resp = http.post("/v1/chat/completions", content=body, headers={**AUTH, "Content-Type": "application/json"})
    receipt = http.get(f"/v1/aci/receipts/{resp.headers['x-receipt-id']}", headers=AUTH).json()
    events = {e["type"]: e for e in receipt["event_log"]}
    key = [k for k in ks["receipt_signing_keys"] if k["key_id"] == receipt["key_id"]][0]
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(key["public_key"])).verify(
            bytes.fromhex(receipt["signature"]), canonicalize({k: v for k, v in receipt.items() if k != "signature"}))
        signature_ok = True
    except InvalidSignature:
        signature_ok = False
    upstream = events.get("upstream.verified", {})
    session_ok = window_ok = False
    if upstream.get("result") == "verified":
        served = http.get(f"/v1/aci/sessions/{upstream['session_id']}")
        session_ok = hashlib.sha256(served.content).hexdigest() == upstream["session_id"]
        doc = served.json()
        window_ok = doc["established_at"] <= receipt["served_at"] <= doc["expires_at"]
    with http.stream("GET", "/health") as probe:  # the certificate this connection presents
        spki = _spki(probe.extensions["network_stream"].get_extra_info("ssl_object").getpeercert(True))
    return {
        "keyset_digest": report["workload_keyset_digest"] == digest,
        "statement": report["attestation"]["report_data"] == report_data.hex(),
        "quote": quote[568:632] == bytes.fromhex(report["attestation"]["evidence"]["quote_report_data"]),
        "not_expired": ks["not_after"] > receipt["served_at"],
        "tls_in_keyset": spki in [t["spki_sha256"] for t in ks["tls_public_keys"]],
        "receipt_signature": signature_ok,
        "receipt_keyset": receipt["workload_keyset_digest"] == digest,
        "request_hash": events["request.received"]["body_hash"] == "sha256:" + hashlib.sha256(body).hexdigest(),
        "not_rewritten": (events.get("request.forwarded", {}).get("body_hash")
                          == events["request.received"]["body_hash"]),
        "response_hash": (events["response.returned"]["body_hash"]
                          == "sha256:" + hashlib.sha256(resp.content).hexdigest()),
        "upstream_verified": upstream.get("result") == "verified",
        "session_id": session_ok,
        "session_window": window_ok,
    }


def _spki(der):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    return hashlib.sha256(x509.load_der_x509_certificate(der).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def test_without_faults_every_link_holds(gw):
    links = _links(gw[1])
    assert all(links.values()), links


BROKEN = {
    "aci_tamper_receipt": {"receipt_signature"},
    "aci_rewrite_request": {"not_rewritten"},
    "aci_session_expired": {"session_window"},
    "aci_edit_session": {"session_id"},
    "aci_expired_keyset": {"not_expired"},
    "aci_ignore_nonce": {"statement"},
    "aci_tls_key_not_in_keyset": {"tls_in_keyset"},
}


@pytest.mark.parametrize("fault", sorted(BROKEN))
def test_fault_breaks_exactly_its_link(faulty, fault):
    links = _links(faulty(fault))
    assert {name for name, ok in links.items() if not ok} == BROKEN[fault]


def test_every_aci_fault_is_tested_here():
    # aci_tamper_response changes bytes after the gateway hashed them: tests/aci/test_aci_session_flow.py
    assert set(ACI_FAULTS) == set(BROKEN) | {"aci_receipt_other_keyset", "aci_upstream_failed", "aci_tamper_response"}


def test_other_keyset_receipt_is_valid_only_under_the_other_replicas_keyset(faulty, gw):
    sim = gw[0]
    links = _links(faulty("aci_receipt_other_keyset"))
    # Signed by a key the attested keyset does not hold (the key id is the same), naming the other digest.
    assert {name for name, ok in links.items() if not ok} == {"receipt_keyset", "receipt_signature"}
    http = gw[1]
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}).encode()
    resp = http.post("/v1/chat/completions", content=body, headers=AUTH)
    receipt = http.get(f"/v1/aci/receipts/{resp.headers['x-receipt-id']}", headers=AUTH).json()
    other = sim.aci.keyset(sim.aci.other_keys)
    assert receipt["workload_keyset_digest"] == sha256_digest(other)
    key = other["receipt_signing_keys"][0]["public_key"]
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(key)).verify(
        bytes.fromhex(receipt["signature"]), canonicalize({k: v for k, v in receipt.items() if k != "signature"}))


def test_upstream_failed_refuses_with_503_and_a_receipt_saying_failed(faulty):
    http = faulty("aci_upstream_failed")
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}).encode()
    resp = http.post("/v1/chat/completions", content=body, headers=AUTH)
    assert resp.status_code == 503 and resp.json()["error"]["type"] == "upstream_verification_failed"
    receipt = http.get(f"/v1/aci/receipts/{resp.headers['x-receipt-id']}", headers=AUTH).json()
    types = [e["type"] for e in receipt["event_log"]]
    assert types == ["request.received", "upstream.verified", "response.returned"]  # prompt not forwarded
    failed = receipt["event_log"][1]
    assert failed["result"] == "failed" and failed["required"] is True and failed["reason"]
    assert receipt["event_log"][2]["body_hash"] == "sha256:" + hashlib.sha256(resp.content).hexdigest()
