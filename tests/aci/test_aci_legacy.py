"""The gateway's legacy answers (/v1/attestation/report, /v1/signature/{id}), ACI.md §4 and §8.13: the legacy
signer is tied only to the secp256k1 E2EE key of a keyset a *verified ACI report* established."""

from __future__ import annotations

import copy

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

import acikit as k
from phalanb.aci import verify_aci_report, verify_legacy_gateway
from phalanb.verdict import Status

E2EE = Account.from_key(b"\x0e" * 32)
PUB = "04" + E2EE._key_obj.public_key.to_bytes().hex()


@pytest.fixture(scope="module")
def established():
    ks = copy.deepcopy(k.A["keyset"]["object"])
    ks["e2ee_public_keys"].append({"key_id": "dstack-kms-e2ee-v1", "algo": "secp256k1-aes-256-gcm-hkdf-sha256",
                                   "public_key": PUB})
    att = verify_aci_report(k.sim_report(keyset=ks), nonce=k.NONCE, policy=k.sim_policy(),
                            collateral=k.sim_collateral(), at=k.AT)
    assert att.keyset is not None
    return att


def _wrapper(att, signer=E2EE, text=None):
    doc = k.receipt_doc(workload_keyset_digest=att.keyset.digest)
    import json

    receipt = json.loads(k.sign_receipt(doc))
    text = text or f"{k.A['receipt']['request_body_hash'][7:]}:{k.A['receipt']['response_body_hash'][7:]}"
    sig = signer.sign_message(encode_defunct(text=text)).signature.hex()
    return {"api_version": "aci/1", "text": text, "signature": "0x" + sig.removeprefix("0x"),
            "signing_address": signer.address.lower(), "signing_algo": "ecdsa", "receipt": receipt}


def test_legacy_signer_is_the_e2ee_key_of_the_verified_keyset(established):
    v = verify_legacy_gateway(None, _wrapper(established), aci=established, request_bytes=k.REQUEST,
                              response_bytes=k.RESPONSE, policy=k.sim_policy())
    assert v["legacy.text"].status is Status.PASS
    assert v["legacy.signature"].status is Status.PASS
    assert v["legacy.signer_bound"].status is Status.PASS
    assert v["receipt.signature"].status is Status.PASS


def test_legacy_answer_says_it_attests_the_gateway_not_the_model(established):
    v = verify_legacy_gateway(None, _wrapper(established), aci=established)
    c = v["legacy.gateway"]
    assert c.status is Status.WARNING and "GATEWAY" in c.reason and "session" in c.reason


def test_legacy_signer_without_a_verified_aci_report_is_not_bound(established):
    v = verify_legacy_gateway(None, _wrapper(established), aci=None)
    assert v["legacy.signer_bound"].status is Status.SKIPPED
    assert v["receipt.signature"].status is Status.SKIPPED and v.status != "verified"


def test_legacy_signer_of_another_key_fails(established):
    v = verify_legacy_gateway(None, _wrapper(established, signer=Account.from_key(b"\x0f" * 32)), aci=established)
    assert v["legacy.signer_bound"].status is Status.FAIL


def test_legacy_text_not_the_receipt_hashes_fails(established):
    v = verify_legacy_gateway(None, _wrapper(established, text="aa:bb"), aci=established)
    assert v["legacy.text"].status is Status.FAIL
