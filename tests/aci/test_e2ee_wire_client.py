"""phalanb's client speaks E2EE v2 to the simulated ACI gateway (ACI.md §6): it encrypts only to a key of a keyset
it verified, keeps the exact wire bytes, opens the reply, and verify_aci proves the round trip — live and offline
from a saved exchange, with no private key. Every "what would a liar send" case breaks exactly one check."""

from __future__ import annotations

import copy
import json
import time

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import phalanb.aci.e2ee as e2ee_module  # seals the request the client sends (AttestedE2EEKey.seal)
from phalanb.aci import e2ee_crypto as ec
from phalanb.aci.e2ee import AttestedE2EEKey
from phalanb.aci.e2ee_wire import E2EE_CHECK_IDS, E2EERecord
from phalanb.aci.verify import verify_aci_report
from phalanb.gateway import verify_aci
from phalanb.wire.client import Client
from phalanb.errors import E2EEError, InputError, ParseError, ServiceError
from phalanb.wire.exchange import Exchange
from phalanb.policy import Policy
from phalanb.sim import SimConfig, Simulator
from phalanb.verdict import Status

PROMPT = "my bank PIN is 4417, keep it secret"
SUITES = [ec.X25519, ec.SECP256K1]


@pytest.fixture(scope="module")
def sim():
    with Simulator(SimConfig(seed=71, ttft_ms=0, tokens_per_second=0, protocol="aci", aci_shape="aug-2026")) as s:
        yield s


@pytest.fixture(scope="module")
def client(sim, api_key):
    with Client(base_url=sim.base_url, model=sim.model, api_key=api_key, api_key_env=False) as c:
        yield c


def _attest(sim, client):
    fetch = client.aci_attestation()
    att = verify_aci_report(fetch.raw, nonce=fetch.nonce, policy=Policy.for_simulator(sim),
                            collateral=sim.aci.tdx.collateral())
    assert att.keyset is not None, att.reason
    return fetch, att


@pytest.fixture(scope="module")
def attested(sim, client):
    """The report fetched with a fresh nonce and verified: the only source of keys to encrypt to."""
    return _attest(sim, client)


def _verify(sim, client, attested, exchange, **kw):
    fetch, _ = attested
    receipt = client.receipt(exchange.receipt_id).raw
    cited = [e["session_id"] for e in json.loads(receipt)["event_log"] if e.get("type") == "upstream.verified"]
    sessions = {sid: client.session(sid).raw for sid in cited}
    return verify_aci(exchange, receipt=receipt, report=fetch.raw, nonce=fetch.nonce, sessions=sessions,
                      policy=Policy.for_simulator(sim), collateral=sim.aci.tdx.collateral(), **kw), receipt


def _offline(sim, attested, exchange, receipt, sessions=None, **kw):
    fetch, _ = attested
    return verify_aci(exchange, receipt=receipt, report=fetch.raw, nonce=fetch.nonce, sessions=sessions,
                      policy=Policy.for_simulator(sim), collateral=sim.aci.tdx.collateral(), **kw)


def _chat(client, attested, algo=ec.X25519, stream=True, **kw):
    key = AttestedE2EEKey.from_established_keyset(attested[1].keyset, algo=algo)
    return client.chat(PROMPT, stream=stream, max_tokens=6, e2ee=key, **kw)


@pytest.fixture(scope="module")
def saved(sim, client, attested):
    """One streamed and one buffered E2EE exchange, verified live, as a bundle would save them."""
    out = {}
    for stream in (True, False):
        ex = _chat(client, attested, stream=stream)
        receipt = client.receipt(ex.receipt_id).raw
        sid = [e["session_id"] for e in json.loads(receipt)["event_log"] if e["type"] == "upstream.verified"][0]
        out[stream] = (json.loads(json.dumps(ex.to_dict())), receipt, {sid: client.session(sid).raw})
    return out


# -- the round trip ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", SUITES, ids=["x25519", "secp256k1"])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_the_prompt_never_travels_in_the_clear_and_the_reply_decrypts(sim, client, attested, algo, stream):
    pieces = []
    ex = _chat(client, attested, algo, stream, on_text=pieces.append)
    escaped = json.dumps(PROMPT)[1:-1].encode()
    assert PROMPT.encode() not in ex.request_bytes and escaped not in ex.request_bytes
    # Not "4417" alone: the headers carry random hex (keys, nonce) where any four digits turn up now and then.
    assert not any("PIN is 4417" in v or "bank" in v for v in ex.request_headers.values())
    assert ex.text and "".join(pieces) == ex.text
    assert ex.text.encode() not in ex.response_bytes  # the reply travelled sealed, too
    assert ex.response_headers["x-e2ee-applied"] == "true" and ex.response_headers["x-e2ee-algo"] == algo
    rec = ex.e2ee
    assert rec.algo == algo and rec.encrypted_fields == ("messages.0.content",)
    assert PROMPT in json.loads(rec.restored_request)["messages"][0]["content"]
    assert rec.reply_fields and len(rec.reply_keys) == len(rec.reply_fields) and rec.reply_error is None


@pytest.mark.parametrize("algo", SUITES, ids=["x25519", "secp256k1"])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_verify_aci_proves_the_round_trip(sim, client, attested, algo, stream):
    ex = _chat(client, attested, algo, stream)
    verdict, _ = _verify(sim, client, attested, ex)
    assert verdict.status == "verified", verdict.summary()
    for cid in (*E2EE_CHECK_IDS, "receipt.request_hash", "receipt.response_hash"):
        assert verdict[cid].status is Status.PASS, (cid, verdict[cid].reason)
    assert "restored" in verdict["receipt.request_hash"].reason


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_a_saved_exchange_reverifies_offline_without_any_private_key(sim, attested, saved, stream):
    data, receipt, sessions = saved[stream]
    assert "client_private_key" not in json.dumps(data)
    back = Exchange.from_dict(data)
    assert back.e2ee is not None and back.text == data["text"] and back.text
    verdict = _offline(sim, attested, back, receipt, sessions)
    assert verdict.status == "verified", verdict.summary()
    assert all(verdict[c].status is Status.PASS for c in E2EE_CHECK_IDS)


def test_the_client_private_key_is_never_stored(client, attested, monkeypatch):
    made = []
    real = e2ee_module.prepare_request

    def spy(*a, **kw):
        made.append(real(*a, **kw))
        return made[-1]

    monkeypatch.setattr(e2ee_module, "prepare_request", spy)
    ex = _chat(client, attested, stream=False)
    secret = made[0].to_dict(include_client_key=True)["client_private_key"]
    assert secret not in json.dumps(ex.to_dict()) and secret not in repr(ex) and secret not in repr(ex.e2ee)


def test_exchanges_without_e2ee_keep_their_form(client):
    d = client.chat("hi", max_tokens=2).to_dict()
    assert "e2ee" not in d and Exchange.from_dict(d).e2ee is None


# -- verify before you send -------------------------------------------------------------------------------------
def test_only_an_attested_key_object_is_accepted(client, attested):
    entry = attested[1].keyset.e2ee_keys[0]
    with pytest.raises(InputError, match="AttestedE2EEKey"):
        client.chat(PROMPT, e2ee=entry["public_key"])  # type: ignore[arg-type]
    with pytest.raises(E2EEError, match="keyset"):
        AttestedE2EEKey.from_established_keyset(attested[1])  # the attestation, not its .keyset


def test_raw_body_cannot_be_encrypted(client, attested):
    key = AttestedE2EEKey.from_established_keyset(attested[1].keyset)
    with pytest.raises(InputError, match="raw_body"):
        client.chat(raw_body=b'{"model":"m","messages":[]}', e2ee=key)


def test_an_override_key_is_never_verified(sim, client, attested):
    listed = attested[1].keyset.e2ee_keys
    x = next(e for e in listed if e["algo"] == ec.X25519)
    key = AttestedE2EEKey.UNVERIFIED_override(x["public_key"], ec.X25519)
    ex = client.chat(PROMPT, stream=False, max_tokens=3, e2ee=key)
    verdict, _ = _verify(sim, client, attested, ex)
    assert verdict["e2ee.key_attested"].status is Status.SKIPPED and verdict.status != "verified"


# -- refusals, client side ----------------------------------------------------------------------------------------
def test_a_key_outside_the_keyset_is_refused_with_the_servers_code(client):
    stranger = X25519PrivateKey.generate().public_key().public_bytes_raw().hex()
    with pytest.raises(ServiceError, match="e2ee_model_key_mismatch") as info:
        client.chat(PROMPT, e2ee=AttestedE2EEKey.UNVERIFIED_override(stranger, ec.X25519))
    assert info.value.status == 400


def test_a_stale_timestamp_is_refused_with_the_servers_code(sim, client, attested):
    sim.aci.clock = lambda: time.time() + 3600  # the gateway's clock runs an hour ahead of ours
    try:
        with pytest.raises(ServiceError, match="e2ee_invalid_timestamp"):
            _chat(client, attested)
    finally:
        sim.aci.clock = time.time


def test_a_replayed_nonce_is_refused_with_the_servers_code(client, attested, monkeypatch):
    sent = []
    real = e2ee_module.prepare_request

    def replaying(*a, **kw):  # a relay that re-sends the first sealed request
        if not sent:
            sent.append(real(*a, **kw))
        return sent[0]

    monkeypatch.setattr(e2ee_module, "prepare_request", replaying)
    _chat(client, attested, stream=False)
    with pytest.raises(ServiceError, match="e2ee_replay_detected"):
        _chat(client, attested, stream=False)


def _relay(sim, edit):
    """A transport that forwards to the simulator and edits the reply bytes on the way back."""
    def handler(request: httpx.Request) -> httpx.Response:
        with httpx.Client(timeout=30) as http:
            up = http.send(httpx.Request(request.method, str(request.url).replace("http://relay", sim.base_url),
                                         headers={k: v for k, v in request.headers.items() if k != "host"},
                                         content=request.content))
        headers = {k: v for k, v in up.headers.items() if k not in ("content-length", "transfer-encoding")}
        return httpx.Response(up.status_code, headers=headers, stream=httpx.ByteStream(edit(up.content)))
    return httpx.MockTransport(handler)


def _relayed_client(sim, api_key, edit):
    return Client(base_url="http://relay", model=sim.model, api_key=api_key, api_key_env=False,
                  transport=_relay(sim, edit), allow_insecure_http=True)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_a_reply_field_that_arrives_unencrypted_is_an_error(sim, api_key, attested, stream):
    def unseal(body: bytes) -> bytes:
        out = json.loads(body) if not stream else None
        if out is not None:
            out["choices"][0]["message"]["content"] = "relay says hi"
            return json.dumps(out).encode()
        return (b'data: {"id":"x","choices":[{"index":0,"delta":{"content":"relay says hi"}}]}\n\n'
                b"data: [DONE]\n\n")

    with _relayed_client(sim, api_key, unseal) as c, pytest.raises(E2EEError, match="unencrypted") as info:
        _chat(c, attested, stream=stream)
    assert info.value.partial.e2ee.reply_error and info.value.partial.response_bytes


def test_a_reply_that_fails_authentication_is_an_error(sim, api_key, attested):
    def flip(body: bytes) -> bytes:
        doc = json.loads(body)
        value = doc["choices"][0]["message"]["content"]
        doc["choices"][0]["message"]["content"] = value[:-1] + ("0" if value[-1] != "0" else "1")
        return json.dumps(doc).encode()

    with _relayed_client(sim, api_key, flip) as c, pytest.raises(E2EEError, match="authentication"):
        _chat(c, attested, stream=False)


# -- offline: what a liar could put in a saved exchange --------------------------------------------------------------
def _tampered(saved, stream, edit):
    data, receipt, sessions = saved[stream]
    data = copy.deepcopy(data)
    edit(data)
    return Exchange.from_dict(data), receipt, sessions


def _reverify(sim, attested, saved, stream, edit):
    ex, receipt, sessions = _tampered(saved, stream, edit)
    return _offline(sim, attested, ex, receipt, sessions)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_an_edited_decrypted_reply_fails_authentication(sim, attested, saved, stream):
    def edit(d):
        reply = d["e2ee"]["reply"]
        target = reply[0]["choices"][0]["delta"] if stream else reply["choices"][0]["message"]
        target["content"] = "Something the model never said"

    v = _reverify(sim, attested, saved, stream, edit)
    assert v["e2ee.response_authenticated"].status is Status.FAIL and v.status == "failed"


def test_an_edited_field_key_fails_authentication(sim, attested, saved):
    def edit(d):
        d["e2ee"]["reply_keys"][0] = "00" * 32

    v = _reverify(sim, attested, saved, False, edit)
    assert v["e2ee.response_authenticated"].status is Status.FAIL


def test_an_edited_restored_request_fails_the_receipt(sim, attested, saved):
    def edit(d):
        d["e2ee"]["restored_request"] = d["e2ee"]["restored_request"].replace("PIN", "pin")

    v = _reverify(sim, attested, saved, False, edit)
    assert v["receipt.request_hash"].status is Status.FAIL


def test_a_reply_resealed_with_the_recorded_keys_is_not_authenticated(sim, attested, saved):
    """Whoever holds the saved exchange holds the field keys and can seal other text under them; only the signed
    receipt's response.returned shows which ciphertext the gateway sent."""
    def edit(d):
        import base64

        rec = E2EERecord.from_dict(d["e2ee"])
        body = json.loads(base64.b64decode(d["response_b64"]))
        path, field = "choices.0.message.content", body["choices"][0]["message"]
        raw = bytes.fromhex(field["content"])
        eph = raw[:32 if rec.algo == ec.X25519 else 65]
        aad = ec.response_aad(rec.algo, rec.model, body["id"], path, rec.nonce, rec.timestamp)
        nonce = b"\x01" * 12
        lie = AESGCM(bytes.fromhex(rec.reply_keys[0])).encrypt(nonce, b"Buy the sponsor's coin", aad)
        field["content"] = (eph + nonce + lie).hex()
        d["response_b64"] = base64.b64encode(json.dumps(body).encode()).decode()
        d["e2ee"]["reply"]["choices"][0]["message"]["content"] = "Buy the sponsor's coin"

    v = _reverify(sim, attested, saved, False, edit)
    assert v["receipt.response_hash"].status is Status.FAIL
    assert v["e2ee.response_authenticated"].status is not Status.PASS


def test_a_model_key_outside_the_verified_keyset_fails_key_attested(sim, attested, saved):
    def edit(d):
        d["e2ee"]["headers"]["X-Model-Pub-Key"] = X25519PrivateKey.generate().public_key().public_bytes_raw().hex()

    v = _reverify(sim, attested, saved, False, edit)
    assert v["e2ee.key_attested"].status is Status.FAIL


def test_a_prompt_sent_in_the_clear_fails_request_encrypted(sim, attested, saved):
    def edit(d):
        import base64

        body = json.loads(base64.b64decode(d["request_b64"]))
        body["messages"][0]["content"] = PROMPT
        d["request_b64"] = base64.b64encode(json.dumps(body).encode()).decode()

    v = _reverify(sim, attested, saved, False, edit)
    assert v["e2ee.request_encrypted"].status is Status.FAIL


def test_a_restored_request_that_is_not_the_sent_one_fails_request_encrypted(sim, attested, saved):
    def edit(d):
        restored = json.loads(d["e2ee"]["restored_request"])
        restored["max_tokens"] = 999
        d["e2ee"]["restored_request"] = json.dumps(restored, separators=(",", ":"), ensure_ascii=False)

    v = _reverify(sim, attested, saved, False, edit)
    assert v["e2ee.request_encrypted"].status is Status.FAIL


def test_a_record_carrying_a_client_private_key_is_refused(saved):
    def edit(d):
        d["e2ee"]["client_private_key"] = "11" * 32

    with pytest.raises(ParseError, match="private key"):
        _tampered(saved, False, edit)


def test_without_the_e2ee_record_the_wire_bytes_do_not_match_request_received(sim, attested, saved):
    data, receipt, sessions = saved[False]
    v = _offline(sim, attested, Exchange.from_dict(data), receipt, sessions, e2ee=False)
    assert v["receipt.request_hash"].status is Status.FAIL and "E2EE" in v["receipt.request_hash"].reason
    assert v.get("e2ee.key_attested") is None


def test_keepalive_comments_and_direct_serving_do_not_disturb_the_sealed_stream(api_key):
    with Simulator(SimConfig(seed=72, ttft_ms=0, tokens_per_second=0, protocol="aci", aci_shape="aug-2026", aci_keepalive=True,
                             aci_mode="direct")) as s, \
            Client(base_url=s.base_url, model=s.model, api_key=api_key, api_key_env=False) as c:
        fetch, att = _attest(s, c)
        ex = _chat(c, (fetch, att))
        receipt = c.receipt(ex.receipt_id).raw
    assert ex.response_bytes.startswith(b": PROCESSING\n\n") and ex.text
    verdict = verify_aci(Exchange.from_dict(json.loads(json.dumps(ex.to_dict()))), receipt=receipt,
                         report=fetch.raw, nonce=fetch.nonce, policy=Policy.for_simulator(s),
                         collateral=s.aci.tdx.collateral())
    assert verdict.status == "verified", verdict.summary()


@pytest.mark.parametrize("edit, field", [
    (lambda e: e.update(algo="ecdsa"), "algo"),
    (lambda e: e["headers"].pop("X-E2EE-Nonce"), "headers"),
    (lambda e: e.update(reply_keys="00"), "reply_keys"),
    (lambda e: e.update(restored_request=7), "restored_request"),
    (lambda e: e.update(endpoint="/v1/responses"), "endpoint"),
    (lambda e: e.update(stream="yes"), "stream"),
])
def test_a_malformed_e2ee_record_is_a_parse_error_naming_the_field(saved, edit, field):
    with pytest.raises(ParseError) as info:
        _tampered(saved, False, lambda d: edit(d["e2ee"]))
    assert field in str(info.value)


@pytest.mark.parametrize("restored", ["not json", "[1]", '{"model":"m","messages":[]}'])
def test_a_restored_request_of_the_wrong_shape_fails_without_crashing(sim, attested, saved, restored):
    v = _reverify(sim, attested, saved, False, lambda d: d["e2ee"].update(restored_request=restored))
    assert v["e2ee.request_encrypted"].status is Status.FAIL and v.status == "failed"
