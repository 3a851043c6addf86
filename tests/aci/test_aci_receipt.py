"""Receipt-layer rules of the preview shape (ACI.md §3.2): signed bytes = JCS(receipt minus signature.value);
ecdsa-secp256k1 = 65-byte r‖s‖v over sha256(canonical) recovering the listed key, or ed25519 over canonical.

These unit tests construct an EstablishedKeyset directly; the public path establishes one only from a verified
report (test_aci_chain, test_aci_real)."""

from __future__ import annotations

import copy
import hashlib

import coincurve

import acikit as k
from phalanb.aci import EstablishedKeyset, parse_receipt, verify_receipt
from phalanb.verdict import Status

KEY = coincurve.PrivateKey(b"\x21" * 32)
P = k.VECTORS["preview_receipt_canonical"]["receipt"]
DIGEST = P["workload_keyset_digest"]


def _keyset(algo="ecdsa-secp256k1", public_key=None) -> EstablishedKeyset:
    pub = public_key or (KEY.public_key.format(compressed=False).hex() if algo == "ecdsa-secp256k1" else
                         k.A["keys"]["receipt-1"]["public_key"])
    return EstablishedKeyset(digest=DIGEST, shape="preview", keyset={
        "receipt_signing_keys": [{"key_id": "receipt-key-1", "algo": algo, "public_key": pub}]})


def _signed(v_offset=0, length=65, algo="ecdsa-secp256k1", mutate=None) -> dict:
    doc = copy.deepcopy(P)
    doc["signature"] = {"algo": algo, "key_id": "receipt-key-1", "value": ""}
    if mutate:
        mutate(doc)
    canonical = parse_receipt(doc).signing_input()
    if algo == "ed25519":
        doc["signature"]["value"] = k.RECEIPT_KEY.sign(canonical).hex()
        return doc
    sig = bytearray(KEY.sign_recoverable(hashlib.sha256(canonical).digest(), hasher=None))
    sig[64] += v_offset
    doc["signature"]["value"] = bytes(sig[:length]).hex()
    return doc


def _check(doc, keyset, cid="receipt.signature"):
    return next(c for c in verify_receipt(doc, keyset=keyset, request_bytes=None, response_bytes=None) if c.id == cid)


def test_preview_secp256k1_signature_recovers_the_listed_key():
    assert _check(_signed(), _keyset()).status is Status.PASS


def test_preview_recovery_byte_27_to_30_is_accepted():
    assert _check(_signed(v_offset=27), _keyset()).status is Status.PASS


def test_preview_64_byte_signature_is_refused():
    c = _check(_signed(length=64), _keyset())
    assert c.status is Status.FAIL and "65 bytes" in c.reason


def test_preview_signature_recovering_another_key_fails():
    other = coincurve.PrivateKey(b"\x22" * 32).public_key.format(compressed=False).hex()
    assert _check(_signed(), _keyset(public_key=other)).status is Status.FAIL


def test_preview_edit_outside_signature_value_fails():
    doc = _signed()
    doc["event_log"][0]["body_hash"] = "sha256:" + "ab" * 32
    assert _check(doc, _keyset()).status is Status.FAIL


def test_preview_signature_algo_is_signed_too():
    doc = _signed()
    doc["signature"]["algo"] = "ed25519"
    assert _check(doc, _keyset()).status is Status.FAIL


def test_preview_ed25519_receipt():
    assert _check(_signed(algo="ed25519"), _keyset(algo="ed25519")).status is Status.PASS


def test_preview_response_compared_by_wire_hash_with_cleartext_shown():
    doc = _signed(mutate=lambda d: d["event_log"][1].update(wire_hash="sha256:" + hashlib.sha256(b"wire").hexdigest()))
    c = next(c for c in verify_receipt(doc, keyset=_keyset(), request_bytes=None, response_bytes=b"wire")
             if c.id == "receipt.response_hash")
    assert c.status is Status.PASS and c.evidence["cleartext_hash"] == "sha256:" + "b" * 64


def test_receipt_keyset_mismatch_is_re_attest():
    c = _check(_signed(), EstablishedKeyset(digest="sha256:" + "99" * 32, shape="preview",
                                            keyset=_keyset().keyset), cid="receipt.keyset")
    assert c.status is Status.FAIL and "re-attest" in c.reason
