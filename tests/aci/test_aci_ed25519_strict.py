"""Issue 19 item 5: ACI's Ed25519 is as strict as the legacy path's — one helper (phalanb.ed25519.verify) for
receipts, keyset endorsements, the batch receipt verifier and legacy signatures. Each test sends what a liar would:
a small-order key that "signs" everything, a signature with S + L, a non-canonical or small-order R."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import acikit as k
from phalanb import ed25519
from phalanb.aci import EstablishedKeyset, verify_receipt
from phalanb.aci import jcs
from phalanb.aci.batch import ReceiptItem, audit_receipts
from phalanb.aci.verify import _ENDORSEMENT_PURPOSE, keyset_endorsement_check
from phalanb.errors import ParseError, SignatureFormatError
from phalanb.vllm.signatures import recover_signer
from phalanb.verdict import Status

_P = 2**255 - 19
IDENTITY = (1).to_bytes(32, "little")
FORGED = IDENTITY + bytes(32)  # R = identity, S = 0: verifies for ANY message under the identity key (loosely)
DIGEST = "sha256:" + "ab" * 32


def _keyset(public_key: bytes) -> EstablishedKeyset:
    return EstablishedKeyset(digest=DIGEST, shape="current", serving="direct", keyset={
        "receipt_signing_keys": [{"key_id": "rk", "algo": "ed25519", "public_key": public_key.hex()}]})


def _receipt(signature: bytes | None = None, key=None) -> bytes:
    doc = k.receipt_doc(key_id="rk", workload_keyset_digest=DIGEST)
    doc.pop("signature", None)
    value = signature if signature is not None else key.sign(k.jcs(doc))
    return k.jcs({**doc, "signature": value.hex()})


def _signature_check(receipt: bytes, keyset: EstablishedKeyset):
    checks = verify_receipt(receipt, keyset=keyset, request_bytes=k.REQUEST, response_bytes=k.RESPONSE)
    return next(c for c in checks if c.id == "receipt.signature")


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def test_aci_receipt_signed_by_the_identity_key_with_identity_and_zero_fails():
    # The attack: a keyset naming the identity point as its receipt key; the "signature" identity ‖ 0 verified any
    # receipt under OpenSSL's loose check. The strict helper refuses the key first.
    keyset = _keyset(IDENTITY)
    check = _signature_check(_receipt(FORGED), keyset)
    assert check.status is Status.FAIL
    rows = list(audit_receipts([ReceiptItem(_receipt(FORGED), k.REQUEST, k.RESPONSE)], keyset=keyset))
    assert rows[0].status == "fail" and "receipt.signature" in rows[0].failing


def test_aci_receipt_signature_with_s_plus_l_fails():
    key = Ed25519PrivateKey.generate()
    good = _receipt(key=key)
    doc = json.loads(good)
    sig = bytes.fromhex(doc["signature"])
    malleable = sig[:32] + (int.from_bytes(sig[32:], "little") + ed25519.L).to_bytes(32, "little")
    assert _signature_check(good, _keyset(_raw(key))).status is Status.PASS
    bad = k.jcs({**doc, "signature": malleable.hex()})
    assert _signature_check(bad, _keyset(_raw(key))).status is Status.FAIL
    assert [r.status for r in audit_receipts([ReceiptItem(bad, k.REQUEST, k.RESPONSE)],
                                             keyset=_keyset(_raw(key)))] == ["fail"]


@pytest.mark.parametrize("r", [(_P + 1).to_bytes(32, "little"), IDENTITY, bytes(32)],
                         ids=["R non-canonical (identity + p)", "R identity", "R all-zero (order 4)"])
def test_ed25519_signature_with_non_canonical_or_small_order_r_is_refused(r):
    with pytest.raises(SignatureFormatError) as err:
        ed25519.check_signature(r + bytes(32))
    assert err.value.field == "signature" and err.value.offset == 0


def test_ed25519_signature_with_s_not_below_l_is_refused():
    with pytest.raises(SignatureFormatError, match="group order L") as err:
        ed25519.check_signature(bytes.fromhex("58" + "66" * 31) + ed25519.L.to_bytes(32, "little"))
    assert err.value.offset == 32


def test_aci_keyset_endorsement_by_a_small_order_identity_key_fails():
    for key in (IDENTITY, bytes(32), (_P + 1).to_bytes(32, "little")):
        report = SimpleNamespace(keyset_endorsement={"algo": "ed25519", "value": FORGED.hex()},
                                 identity_public_key={"algo": "ed25519", "public_key": key.hex()})
        assert keyset_endorsement_check(report, DIGEST).status is Status.FAIL


def test_aci_keyset_endorsement_by_an_ordinary_key_still_passes():
    key = Ed25519PrivateKey.generate()
    payload = jcs.canonicalize({"purpose": _ENDORSEMENT_PURPOSE, "workload_keyset_digest": DIGEST})
    report = SimpleNamespace(keyset_endorsement={"algo": "ed25519", "value": key.sign(payload).hex()},
                             identity_public_key={"algo": "ed25519", "public_key": _raw(key).hex()})
    assert keyset_endorsement_check(report, DIGEST).status is Status.PASS


def test_every_path_uses_the_one_strict_helper():
    # The legacy signature path and ACI's primitive give the same answer as phalanb.ed25519 for the forged pair.
    from phalanb.aci.crypto import ed25519_ok

    assert not ed25519.verifies(IDENTITY, FORGED, b"any message")
    assert not ed25519_ok(IDENTITY, FORGED, b"any message")
    with pytest.raises(ParseError):
        recover_signer("any message", FORGED.hex(), "ed25519", public_key=IDENTITY.hex())
    key = Ed25519PrivateKey.generate()
    assert ed25519.verifies(_raw(key), key.sign(b"m"), b"m") and ed25519_ok(_raw(key), key.sign(b"m"), b"m")
