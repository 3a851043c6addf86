"""Interoperability with an implementation written here from the spec alone (``cryptography`` plus a three-line
JCS), sharing no code with phalanb: what one side seals, the other opens — both suites, both directions."""

from __future__ import annotations

import json
import os

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec as curve
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from phalanb.aci.e2ee import AttestedE2EEKey, decrypt_response, decrypt_stream, prepare_request
from phalanb.aci.verify import EstablishedKeyset
from phalanb.sim.e2ee import E2EEService, ServiceE2EEKey

NOW = 1_760_000_000
X = "x25519-aes-256-gcm-hkdf-sha256"
K = "secp256k1-aes-256-gcm-hkdf-sha256"
INFO = {X: b"aci.e2ee.v2.x25519", K: b"aci.e2ee.v2.secp256k1"}
SEEDS = {X: bytes([0x31]) * 32, K: bytes([0x32]) * 32}


# ---- the independent implementation ---------------------------------------------------------------------------

def jcs(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def private_key(algo, secret):
    if algo == X:
        return X25519PrivateKey.from_private_bytes(secret)
    return curve.derive_private_key(int.from_bytes(secret, "big"), curve.SECP256K1())


def public_raw(algo, priv) -> bytes:
    if algo == X:
        return priv.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return priv.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def agree(algo, priv, peer: bytes) -> bytes:
    if algo == X:
        shared = priv.exchange(X25519PublicKey.from_public_bytes(peer))
    else:
        shared = priv.exchange(curve.ECDH(), curve.EllipticCurvePublicKey.from_encoded_point(curve.SECP256K1(), peer))
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO[algo]).derive(shared)


def seal(algo, recipient: bytes, text: str, aad: bytes) -> str:
    eph = private_key(algo, os.urandom(32))
    nonce = os.urandom(12)
    sealed = AESGCM(agree(algo, eph, recipient)).encrypt(nonce, text.encode(), aad)
    return (public_raw(algo, eph) + nonce + sealed).hex()


def unseal(algo, priv, value: str, aad: bytes) -> str:
    blob = bytes.fromhex(value)
    n = 32 if algo == X else 65
    return AESGCM(agree(algo, priv, blob[:n])).decrypt(blob[n:n + 12], blob[n + 12:], aad).decode()


def req_aad(algo, model, field, nonce, ts):
    return jcs({"purpose": "aci.e2ee.request.v2", "algo": algo, "model": model, "field": field, "nonce": nonce,
                "ts": ts})


def resp_aad(algo, model, rid, field, nonce, ts):
    return jcs({"purpose": "aci.e2ee.response.v2", "algo": algo, "model": model, "id": rid, "field": field,
                "nonce": nonce, "ts": ts})


# ---- phalanb's two ends ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def service():
    keys = [ServiceE2EEKey.from_seed(SEEDS[X], algo=X), ServiceE2EEKey.from_seed(SEEDS[K], algo=K)]
    return E2EEService(keys, clock=lambda: NOW)


@pytest.mark.parametrize("algo", [X, K])
def test_phalanb_service_opens_what_the_independent_client_sealed(service, algo):
    service_pub = public_raw(algo, private_key(algo, SEEDS[algo]))
    client = private_key(algo, os.urandom(32))
    nonce = os.urandom(32).hex().upper()  # either case is allowed; the AAD binds the text as sent
    model = "modèle/ü"
    parts = [{"type": "text", "text": "part one"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]
    body = {"model": model, "temperature": 1.0, "messages": [
        {"role": "user", "content": seal(algo, service_pub, "whole secret", req_aad(algo, model, "messages.0.content",
                                                                                     nonce, NOW))},
        {"role": "user", "content": seal(algo, service_pub, json.dumps(parts),
                                         req_aad(algo, model, "messages.1.content", nonce, NOW))}]}
    headers = {"X-E2EE-Version": "2", "X-Client-Pub-Key": "0x" + public_raw(algo, client).hex(),
               "X-Model-Pub-Key": service_pub.hex() if algo == X else service_pub[1:].hex(),
               "X-E2EE-Nonce": nonce, "X-E2EE-Timestamp": str(NOW)}
    opened = service.open_request(headers, json.dumps(body, ensure_ascii=False).encode(), "/v1/chat/completions")
    expected = {**body, "messages": [{"role": "user", "content": "whole secret"}, {"role": "user", "content": parts}]}
    assert opened.body == json.dumps(expected, separators=(",", ":"), ensure_ascii=False).encode()

    # and the reply phalanb seals, the independent client opens
    reply = b'{"id":"r-1","choices":[{"index":0,"message":{"role":"assistant","content":"sealed answer"}}]}'
    wire = json.loads(service.seal_response(reply, opened.context))
    value = wire["choices"][0]["message"]["content"]
    assert unseal(algo, client, value, resp_aad(algo, model, "r-1", "choices.0.message.content", nonce, NOW)) \
        == "sealed answer"


@pytest.mark.parametrize("algo", [X, K])
def test_the_independent_service_opens_what_phalanb_sealed(algo):
    service_priv = private_key(algo, SEEDS[algo])
    entry = {"key_id": "k", "algo": algo, "public_key": public_raw(algo, service_priv).hex()}
    key = AttestedE2EEKey.from_established_keyset(EstablishedKeyset(digest="sha256:" + "00" * 32,
                                                                    keyset={"e2ee_public_keys": [entry]}))
    req = prepare_request({"model": "demo", "messages": [{"role": "user", "content": "über secret"}]},
                          model_key=key, now=NOW)
    body = json.loads(req.body)
    nonce, ts = req.headers["X-E2EE-Nonce"], int(req.headers["X-E2EE-Timestamp"])
    plain = unseal(algo, service_priv, body["messages"][0]["content"],
                   req_aad(algo, "demo", "messages.0.content", nonce, ts))
    assert plain == "über secret"
    body["messages"][0]["content"] = plain
    assert req.restored_body == json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()

    # the independent service seals a buffered reply and a streamed one to the client key phalanb announced
    client_pub = bytes.fromhex(req.headers["X-Client-Pub-Key"])
    content = seal(algo, client_pub, "réponse", resp_aad(algo, "demo", "id-7", "choices.0.message.content", nonce, ts))
    reply = json.dumps({"id": "id-7", "choices": [{"index": 0, "message": {"content": content}}]}).encode()
    assert decrypt_response(reply, req).text == "réponse"

    chunks = b""
    for piece in ("ré", "ponse"):
        sealed = seal(algo, client_pub, piece, resp_aad(algo, "demo", "id-8", "choices.0.delta.content", nonce, ts))
        chunks += b"data: " + json.dumps({"id": "id-8", "choices": [{"index": 0, "delta": {"content": sealed}}]}
                                         ).encode() + b"\n\n"
    out = decrypt_stream(chunks + b"data: [DONE]\n\n", req)
    assert out.text == "réponse" and out.done
