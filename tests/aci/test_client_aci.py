"""phalanb's client fetches ACI artifacts byte-exact and keeps what binds a chat to them: X-Receipt-Id, the
keyset digest it was served under and the TLS key of the connection that carried it."""

from __future__ import annotations

import hashlib
import json
import warnings

import httpx
import pytest

from phalanb.wire.capture import Recorder
from phalanb.wire.client import AciAttestationFetch, AciFetch, Client
from phalanb.errors import InputError, NotFoundError, ServiceError, TransportError
from phalanb.wire.exchange import Exchange
from phalanb.sim import SimConfig, Simulator


@pytest.fixture(scope="module")
def http_sim():
    with Simulator(SimConfig(seed=41, ttft_ms=0, tokens_per_second=0, protocol="aci", aci_shape="aug-2026")) as sim:
        yield sim


@pytest.fixture(scope="module")
def https_sim():
    with Simulator(SimConfig(seed=42, ttft_ms=0, tokens_per_second=0, protocol="aci", aci_shape="aug-2026", https=True)) as sim:
        yield sim


def _client(sim, api_key, **kw):
    return Client(base_url=sim.base_url, model=sim.model, api_key=api_key, api_key_env=False, **kw)


def test_aci_attestation_sends_64_lowercase_hex_and_keeps_the_exact_bytes(http_sim, api_key):
    with _client(http_sim, api_key) as c:
        att = c.aci_attestation(bytes(range(32)))
    assert isinstance(att, AciAttestationFetch)
    assert att.nonce == bytes(range(32)) and att.nonce_hex == bytes(range(32)).hex()
    assert httpx.URL(att.url).params["nonce"] == bytes(range(32)).hex()
    assert json.loads(att.raw) == att.document == att.report
    assert att.headers["x-aci-version"] == "aci/1"
    assert att.keyset_digest_header == att.document["workload_keyset_digest"]
    assert att.tls_spki_sha256 is None  # plain http


def test_aci_attestation_picks_a_fresh_random_nonce(http_sim, api_key):
    with _client(http_sim, api_key) as c:
        a, b = c.aci_attestation(), c.aci_attestation()
    assert len(a.nonce) == 32 and a.nonce != b.nonce


def test_aci_attestation_refuses_a_nonce_that_is_not_32_bytes(http_sim, api_key):
    with _client(http_sim, api_key) as c, pytest.raises(InputError):
        c.aci_attestation(b"short")


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_chat_exchange_keeps_receipt_id_and_keyset_digest(http_sim, api_key, stream):
    with _client(http_sim, api_key) as c:
        ex = c.chat("hi", stream=stream, max_tokens=3)
        receipt = c.receipt(ex.receipt_id)
    assert ex.receipt_id.startswith("rcpt-")
    assert ex.aci_keyset_digest == receipt.document["workload_keyset_digest"]
    assert ex.tls_spki_sha256 is None
    assert isinstance(receipt, AciFetch) and receipt.raw == json.dumps(
        receipt.document, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
    events = {e["type"]: e for e in receipt.document["event_log"]}
    assert events["request.received"]["body_hash"] == "sha256:" + ex.request_sha256
    assert events["response.returned"]["body_hash"] == "sha256:" + ex.response_sha256


def test_receipt_is_fetched_with_the_same_credential(http_sim, api_key):
    with _client(http_sim, api_key) as c:
        ex = c.chat("hi", max_tokens=2)
    with _client(http_sim, "sk-someone-else-0000000000000") as other, pytest.raises(NotFoundError):
        other.receipt(ex.receipt_id)


def test_session_and_sessions_return_exact_bytes(http_sim, api_key):
    with _client(http_sim, api_key) as c:
        ex = c.chat("hi", max_tokens=2)
        receipt = c.receipt(ex.chat_id)
        sid = [e for e in receipt.document["event_log"] if e["type"] == "upstream.verified"][0]["session_id"]
        session = c.session(sid)
        listed = c.sessions(model=http_sim.model)
        by_name = c.sessions(upstream_name="phalanb-sim-vllm-proxy")
    assert hashlib.sha256(session.raw).hexdigest() == sid
    assert [s["session_id"] for s in listed.document["sessions"]] == [sid]
    assert by_name.document["sessions"] and "data" not in by_name.document["sessions"][0]["evidence"]


@pytest.mark.parametrize("bad", ["", "a/b", "x?y=1"])
def test_aci_ids_with_path_characters_are_refused(http_sim, api_key, bad):
    with _client(http_sim, api_key) as c:
        with pytest.raises(InputError):
            c.receipt(bad)
        with pytest.raises(InputError):
            c.session(bad)


def test_a_keyset_change_between_attestation_and_chat_is_visible(api_key):
    with Simulator(SimConfig(seed=43, ttft_ms=0, tokens_per_second=0, protocol="aci", aci_shape="aug-2026")) as sim, \
            _client(sim, api_key) as c:
        att = c.aci_attestation()
        c.chat("hi", max_tokens=2)
        assert not c.aci_keyset_changed
        sim.set_faults(["aci_expired_keyset"])  # the keyset the service announces changes
        ex = c.chat("hi again", max_tokens=2)
    assert ex.aci_keyset_digest != att.document["workload_keyset_digest"]
    assert c.aci_keyset_changed
    assert [where for where, _ in c.aci_keyset_digests] == ["attestation", "chat", "chat"]


def test_exchange_aci_fields_survive_to_dict_and_from_dict(http_sim, api_key):
    with _client(http_sim, api_key) as c:
        ex = c.chat("hi", max_tokens=2)
    ex.tls_spki_sha256 = "ab" * 32
    back = Exchange.from_dict(json.loads(json.dumps(ex.to_dict())))
    assert (back.receipt_id, back.aci_keyset_digest, back.tls_spki_sha256) == \
        (ex.receipt_id, ex.aci_keyset_digest, ex.tls_spki_sha256)


def test_exchanges_saved_before_aci_still_load_and_legacy_ones_keep_their_form(http_sim, api_key):
    with _client(http_sim, api_key) as c:
        d = c.chat("hi", max_tokens=2).to_dict()
    for key in ("receipt_id", "aci_keyset_digest", "tls_spki_sha256"):
        d.pop(key, None)
    d["response_headers"] = {}
    old = Exchange.from_dict(d)
    assert old.receipt_id is None and old.aci_keyset_digest is None and old.tls_spki_sha256 is None
    assert "receipt_id" not in old.to_dict()


def test_exchange_from_dict_refuses_a_non_string_receipt_id(http_sim, api_key):
    from phalanb.errors import ParseError

    with _client(http_sim, api_key) as c:
        d = c.chat("hi", max_tokens=2).to_dict()
    d["receipt_id"] = 7
    with pytest.raises(ParseError):
        Exchange.from_dict(d)


def test_refused_chat_keeps_the_receipt_id_of_the_refusal(api_key):
    with Simulator(SimConfig(seed=44, ttft_ms=0, tokens_per_second=0, protocol="aci", aci_shape="aug-2026",
                             faults={"aci_upstream_failed"})) as sim, _client(sim, api_key) as c:
        with pytest.raises(ServiceError) as info:
            c.chat("hi", max_tokens=2)
        partial = info.value.partial
        assert info.value.status == 503 and partial.receipt_id.startswith("rcpt-")
        receipt = c.receipt(partial.receipt_id)
    failed = [e for e in receipt.document["event_log"] if e["type"] == "upstream.verified"][0]
    assert failed["result"] == "failed"


def test_openai_sdk_capture_keeps_the_aci_fields(https_sim, api_key):
    import openai

    rec = Recorder()
    oai = openai.OpenAI(base_url=https_sim.base_url, api_key=api_key,
                        http_client=rec.http_client(ca_pem=https_sim.ca_pem))
    list(oai.chat.completions.create(model=https_sim.model, messages=[{"role": "user", "content": "hi"}],
                                     stream=True, max_tokens=2))
    ex = rec.last
    assert ex.receipt_id.startswith("rcpt-") and ex.aci_keyset_digest.startswith("sha256:")
    assert ex.tls_spki_sha256 == https_sim.tls.spki_sha256


# -- HTTPS ------------------------------------------------------------------------------------------------------
def _listener_spki(sim) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(sim.cert_pem.encode())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def test_https_spki_captured_by_the_client_is_the_listener_certificates(https_sim, api_key):
    assert https_sim.base_url.startswith("https://127.0.0.1:")
    with _client(https_sim, api_key, ca_pem=https_sim.ca_pem) as c:
        att = c.aci_attestation()
        ex = c.chat("hi", max_tokens=2)
        receipt = c.receipt(ex.receipt_id)
    expected = _listener_spki(https_sim)
    assert att.tls_spki_sha256 == ex.tls_spki_sha256 == receipt.tls_spki_sha256 == expected
    assert {"spki_sha256": expected} in att.document["attestation"]["workload_keyset"]["tls_public_keys"]


def test_https_is_not_trusted_without_the_ca(https_sim, api_key):
    with _client(https_sim, api_key, retries=0) as c, pytest.raises(TransportError):
        c.aci_attestation()


def test_turning_verification_off_warns(https_sim, api_key):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with _client(https_sim, api_key, verify=False) as c:
            assert c.aci_attestation().tls_spki_sha256 == _listener_spki(https_sim)
    assert any("verification is OFF" in str(w.message) for w in caught)


def test_ca_pem_and_verify_false_together_are_refused(https_sim, api_key):
    with pytest.raises(InputError):
        _client(https_sim, api_key, verify=False, ca_pem=https_sim.ca_pem)
