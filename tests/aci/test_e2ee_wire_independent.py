"""An independent E2EE v2 client — httpx, ``cryptography`` and a three-line JCS, written from ACI.md §6 alone and
sharing no code with phalanb — talks to the simulated ACI gateway: it encrypts a prompt to a keyset key, the
gateway answers, and it decrypts the reply, both suites, streamed and not."""

from __future__ import annotations

import json
import os
import time

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec as curve
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from phalanb.sim import SimConfig, Simulator

X = "x25519-aes-256-gcm-hkdf-sha256"
K = "secp256k1-aes-256-gcm-hkdf-sha256"
INFO = {X: b"aci.e2ee.v2.x25519", K: b"aci.e2ee.v2.secp256k1"}
PROMPT = "independent: the password is swordfish"


# ---- the independent client ----------------------------------------------------------------------------------

def jcs(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def new_key(algo):
    return X25519PrivateKey.generate() if algo == X else curve.generate_private_key(curve.SECP256K1())


def public_raw(algo, priv) -> bytes:
    if algo == X:
        return priv.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return priv.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def aes_key(algo, priv, peer: bytes) -> bytes:
    if algo == X:
        shared = priv.exchange(X25519PublicKey.from_public_bytes(peer))
    else:
        shared = priv.exchange(curve.ECDH(), curve.EllipticCurvePublicKey.from_encoded_point(curve.SECP256K1(), peer))
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO[algo]).derive(shared)


def seal(algo, recipient: bytes, text: str, aad: bytes) -> str:
    eph, nonce = new_key(algo), os.urandom(12)
    return (public_raw(algo, eph) + nonce + AESGCM(aes_key(algo, eph, recipient)).encrypt(nonce, text.encode(), aad)
            ).hex()


def unseal(algo, priv, value: str, aad: bytes) -> str:
    raw = bytes.fromhex(value)
    n = 32 if algo == X else 65
    return AESGCM(aes_key(algo, priv, raw[:n])).decrypt(raw[n:n + 12], raw[n + 12:], aad).decode()


def response_aad(algo, model, rid, path, nonce, ts) -> bytes:
    return jcs({"purpose": "aci.e2ee.response.v2", "algo": algo, "model": model, "id": rid, "field": path,
                "nonce": nonce, "ts": ts})


def chat(http, algo, *, stream: bool) -> tuple[bytes, str]:
    """Encrypt PROMPT to the keyset's ``algo`` key, send it, return (the request bytes sent, the reply text)."""
    keyset = http.get("/v1/aci/attestation", params={"nonce": os.urandom(32).hex()}).json()[
        "attestation"]["workload_keyset"]
    model_key = next(e["public_key"] for e in keyset["e2ee_public_keys"] if e["algo"] == algo)
    model = http.get("/v1/models").json()["data"][0]["id"]
    me, nonce, ts = new_key(algo), os.urandom(32).hex(), int(time.time())
    aad = jcs({"purpose": "aci.e2ee.request.v2", "algo": algo, "model": model, "field": "messages.0.content",
               "nonce": nonce, "ts": ts})
    body = json.dumps({"model": model, "stream": stream, "max_tokens": 5, "messages": [
        {"role": "user", "content": seal(algo, bytes.fromhex(model_key), PROMPT, aad)}]}).encode()
    headers = {"X-E2EE-Version": "2", "X-Client-Pub-Key": public_raw(algo, me).hex(), "X-Model-Pub-Key": model_key,
               "X-E2EE-Nonce": nonce, "X-E2EE-Timestamp": str(ts), "Content-Type": "application/json"}
    resp = http.post("/v1/chat/completions", content=body, headers=headers)
    assert resp.status_code == 200, resp.text
    if not stream:
        doc = resp.json()
        value = doc["choices"][0]["message"]["content"]
        return body, unseal(algo, me, value, response_aad(algo, model, doc["id"], "choices.0.message.content",
                                                          nonce, ts))
    text = []
    for line in resp.text.split("\n"):
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        for choice in chunk.get("choices", []):
            value = choice.get("delta", {}).get("content")
            if value is not None:
                path = f"choices.{choice['index']}.delta.content"
                text.append(unseal(algo, me, value, response_aad(algo, model, chunk["id"], path, nonce, ts)))
    return body, "".join(text)


# ---- against the simulator -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def http():
    with Simulator(SimConfig(seed=81, ttft_ms=0, tokens_per_second=0, protocol="aci", aci_shape="aug-2026", reply="a sealed answer")) as sim:
        with httpx.Client(base_url=sim.base_url.removesuffix("/v1"), timeout=30) as client:
            yield client


@pytest.mark.parametrize("algo", [X, K], ids=["x25519", "secp256k1"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_an_independent_client_interoperates_with_the_simulated_gateway(http, algo, stream):
    sent, text = chat(http, algo, stream=stream)
    assert b"swordfish" not in sent
    assert text == "a sealed answer"
