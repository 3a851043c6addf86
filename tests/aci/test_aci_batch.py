"""Batch receipt audits decide exactly what the single verifier decides, receipt by receipt — the well-formed
ones on the fast path, every odd one (tampered, re-serialised, duplicated, float, other keyset…) by handing it to
verify_receipt — and consume their input lazily."""

import hashlib
import json

import pytest

from phalanb.aci import verify_aci_report, verify_receipt
from phalanb.aci.batch import ReceiptItem, _Fast, audit_receipts
from phalanb.wire.client import Client
from phalanb.policy import Policy
from phalanb.sim import SimConfig, Simulator
from phalanb.sim.aci_docs import sign_receipt
from phalanb.verdict import Status


@pytest.fixture(scope="module")
def gateway():
    with Simulator(SimConfig(seed=11, ttft_ms=0, tokens_per_second=0, protocol="aci", aci_shape="aug-2026")) as sim:
        with Client(base_url=sim.base_url, model=sim.model) as c:
            exchanges = [c.chat(f"audit me {i}", max_tokens=6, stream=i % 2 == 0) for i in range(4)]
            receipts = [c.receipt(e.receipt_id).raw for e in exchanges]
            att = c.aci_attestation()
        keys = sim.aci.keys
    keyset = verify_aci_report(att.raw, nonce=att.nonce, policy=Policy(trust="simulated")).keyset
    assert keyset is not None
    return keyset, keys, exchanges, receipts


def _single(item, keyset):
    checks = verify_receipt(item.receipt, keyset=keyset, request_bytes=item.request_bytes,
                            response_bytes=item.response_bytes)
    failing = tuple(c.id for c in checks if c.status is Status.FAIL)
    skipped = tuple(c.id for c in checks if c.status is Status.SKIPPED and c.required)
    warnings = tuple(c.id for c in checks if c.status is Status.WARNING)
    return ("fail" if failing else "skipped" if skipped else "pass"), failing, skipped, warnings


def _variants(keyset, keys, exchanges, receipts):
    ex, raw = exchanges[0], receipts[0]
    doc = json.loads(raw)
    out = [("as served", ReceiptItem(r, e.request_bytes, e.response_bytes)) for e, r in zip(exchanges, receipts)]

    def signed(d):
        return json.dumps(sign_receipt(d, keys), separators=(",", ":"), sort_keys=True).encode()

    flipped = bytearray(raw)
    flipped[raw.index(b'"served_at":') + 13] ^= 1
    out += [
        ("one byte flipped", ReceiptItem(bytes(flipped), ex.request_bytes, ex.response_bytes)),
        ("pretty-printed (still valid)", ReceiptItem(json.dumps(doc, indent=2).encode(), ex.request_bytes,
                                                     ex.response_bytes)),
        ("keys in another order", ReceiptItem(json.dumps(dict(reversed(list(doc.items()))),
                                                         separators=(",", ":")).encode(),
                                              ex.request_bytes, ex.response_bytes)),
        ("duplicate member", ReceiptItem(raw[:-1] + b',"api_version":"aci/1"}', ex.request_bytes,
                                         ex.response_bytes)),
        ("a float", ReceiptItem(raw.replace(b'"served_at":%d' % doc["served_at"],
                                            b'"served_at":%d.0' % doc["served_at"], 1),
                                ex.request_bytes, ex.response_bytes)),
        ("another request", ReceiptItem(raw, ex.request_bytes + b" ", ex.response_bytes)),
        ("another response", ReceiptItem(raw, ex.request_bytes, ex.response_bytes[:-1])),
        ("no bytes at hand", ReceiptItem(raw, None, None)),
        ("another keyset", ReceiptItem(signed({**doc, "workload_keyset_digest": "sha256:" + "0" * 64}),
                                       ex.request_bytes, ex.response_bytes)),
        ("unknown key id", ReceiptItem(signed({**doc, "key_id": "someone-else"}), ex.request_bytes,
                                       ex.response_bytes)),
        ("a rewrite", ReceiptItem(signed({**doc, "event_log": [
            {**e, "body_hash": "sha256:" + hashlib.sha256(b"other").hexdigest()}
            if e["type"] == "request.forwarded" else e for e in doc["event_log"]]}), ex.request_bytes,
            ex.response_bytes)),
        ("upstream failed", ReceiptItem(signed({**doc, "event_log": [
            {**e, "result": "failed"} if e["type"] == "upstream.verified" else e for e in doc["event_log"]]}),
            ex.request_bytes, ex.response_bytes)),
        ("not required", ReceiptItem(signed({**doc, "event_log": [
            {**e, "required": False} if e["type"] == "upstream.verified" else e for e in doc["event_log"]]}),
            ex.request_bytes, ex.response_bytes)),
        ("no upstream event", ReceiptItem(signed({**doc, "event_log": [
            e for e in doc["event_log"] if e["type"] != "upstream.verified"]}), ex.request_bytes, ex.response_bytes)),
        ("two request.received", ReceiptItem(signed({**doc, "event_log": doc["event_log"][:1] + doc["event_log"]}),
                                             ex.request_bytes, ex.response_bytes)),
        ("non-ASCII model", ReceiptItem(signed({**doc, "model": "modèle"}), ex.request_bytes, ex.response_bytes)),
        ("an escape", ReceiptItem(signed({**doc, "model": 'a"b'}), ex.request_bytes, ex.response_bytes)),
        ("wrong api_version", ReceiptItem(signed({**doc, "api_version": "aci/2"}), ex.request_bytes,
                                          ex.response_bytes)),
        ("not JSON", ReceiptItem(raw[:40], ex.request_bytes, ex.response_bytes)),
        ("NaN", ReceiptItem(raw.replace(b'"served_at":', b'"served_at":NaN,"x":', 1), ex.request_bytes,
                            ex.response_bytes)),
        ("huge integer", ReceiptItem(raw.replace(b'"served_at":', b'"served_at":' + b"9" * 30 + b',"x":', 1),
                                     ex.request_bytes, ex.response_bytes)),
    ]
    return out


def test_every_row_is_the_single_verifiers_decision(gateway):
    keyset, keys, exchanges, receipts = gateway
    cases = _variants(keyset, keys, exchanges, receipts)
    rows = list(audit_receipts([item for _, item in cases], keyset=keyset))
    assert len(rows) == len(cases)
    for (name, item), row in zip(cases, rows):
        assert (row.status, row.failing, row.skipped, row.warnings) == _single(item, keyset), name
    statuses = {name: row.status for (name, _), row in zip(cases, rows)}
    assert statuses["as served"] == "pass" and statuses["pretty-printed (still valid)"] == "pass"
    for name in ("one byte flipped", "duplicate member", "a float", "another request", "another keyset",
                 "upstream failed", "not JSON", "NaN"):
        assert statuses[name] == "fail", name


def test_the_fast_path_takes_only_receipts_it_can_decide_alone(gateway):
    keyset, keys, exchanges, receipts = gateway
    fast = _Fast(keyset, True)
    cases = dict(_variants(keyset, keys, exchanges, receipts))
    assert fast.row(cases["as served"]) is not None
    for name in ("pretty-printed (still valid)", "duplicate member", "a float", "one byte flipped", "an escape",
                 "non-ASCII model", "NaN", "huge integer", "a rewrite", "two request.received"):
        assert fast.row(cases[name]) is None, name


def test_input_is_consumed_lazily(gateway):
    keyset, _, exchanges, receipts = gateway
    seen = []

    def items():
        for i in range(3):
            seen.append(i)
            yield receipts[0], exchanges[0].request_bytes, exchanges[0].response_bytes

    rows = audit_receipts(items(), keyset=keyset)
    assert next(rows).status == "pass" and seen == [0]


def test_v3_envelopes_get_the_single_verifiers_decision_in_a_batch():
    # One decision per question: the batch hands v3 envelopes (signed payload bytes) to the single verifier.
    import base64

    with Simulator(SimConfig(seed=12, ttft_ms=0, tokens_per_second=0, protocol="aci")) as sim:
        with Client(base_url=sim.base_url, model=sim.model) as c:
            exchanges = [c.chat(f"audit me {i}", max_tokens=6, stream=i % 2 == 0) for i in range(2)]
            receipts = [c.receipt(e.receipt_id).raw for e in exchanges]
            att = c.aci_attestation()
    keyset = verify_aci_report(att.raw, nonce=att.nonce, policy=Policy(trust="simulated")).keyset
    assert keyset is not None and keyset.shape == "v3"
    env = json.loads(receipts[0])
    payload = json.loads(base64.b64decode(env["payload_b64"]))
    resorted = {**env, "payload_b64": base64.b64encode(json.dumps(payload, sort_keys=True).encode()).decode()}
    items = [ReceiptItem(r, e.request_bytes, e.response_bytes) for e, r in zip(exchanges, receipts)]
    items.append(ReceiptItem(json.dumps(resorted).encode(), exchanges[0].request_bytes, exchanges[0].response_bytes))
    rows = list(audit_receipts(items, keyset=keyset))
    for item, row in zip(items, rows):
        assert (row.status, row.failing, row.skipped, row.warnings) == _single(item, keyset)
    assert [r.status for r in rows] == ["pass", "pass", "fail"]
