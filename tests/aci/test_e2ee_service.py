"""The simulated gateway's E2EE v2 request checks (ACI.md §6, spec/e2ee-v2.md §7/§9): each refusal carries its own
``e2ee_*`` type and the OpenAI error shape, so a client can tell what it did wrong."""

from __future__ import annotations

import json

import pytest

from phalanb.aci import e2ee_crypto as ec
from phalanb.aci.e2ee import AttestedE2EEKey, prepare_request
from phalanb.aci.verify import EstablishedKeyset
from phalanb.sim.e2ee import E2EE_ERROR_CODES, E2EEService, ReplayCache, ServiceE2EEKey, SimE2EEError

NOW = 1_800_000_000
CHAT = "/v1/chat/completions"


@pytest.fixture
def service():
    """A fresh service per test: each has its own replay cache."""
    return E2EEService.from_seed("service-tests", clock=lambda: NOW)


def _request(service, algo=ec.X25519, *, now=NOW, body=None, **kw):
    ks = EstablishedKeyset(digest="sha256:" + "00" * 32, keyset={"e2ee_public_keys": service.keyset_entries()})
    key = AttestedE2EEKey.from_established_keyset(ks, algo=algo)
    return prepare_request(body or {"model": "demo-model", "messages": [{"role": "user", "content": "hello"}]},
                           model_key=key, now=now, **kw)


def _code(service, headers, body, endpoint=CHAT) -> str:
    with pytest.raises(SimE2EEError) as err:
        service.open_request(headers, body, endpoint)
    assert err.value.status == 400 and err.value.code in E2EE_ERROR_CODES
    return err.value.code


def test_a_replayed_nonce_is_refused(service):
    req = _request(service)
    service.open_request(req.headers, req.body, CHAT)
    assert _code(service, req.headers, req.body) == "e2ee_replay_detected"


def test_replay_compares_nonce_bytes_not_their_hex_case(service):
    req = _request(service)
    service.open_request(req.headers, req.body, CHAT)
    upper = {**req.headers, "X-E2EE-Nonce": req.nonce.upper()}
    assert _code(service, upper, req.body) == "e2ee_replay_detected"


def test_replay_compares_normalised_keys(service):
    # the same secp256k1 client key without its 04 prefix and with 0x is the same tuple
    req = _request(service, ec.SECP256K1)
    service.open_request(req.headers, req.body, CHAT)
    other = {**req.headers, "X-Client-Pub-Key": "0x" + req.client_public_key[2:],
             "X-Model-Pub-Key": req.headers["X-Model-Pub-Key"][2:]}
    assert _code(service, other, req.body) == "e2ee_replay_detected"


def test_an_uppercase_nonce_passes_validation_and_is_bound_as_sent(service):
    # the fields were sealed under the lowercase text: the header check accepts the case, the AAD then differs
    req = _request(service)
    assert _code(service, {**req.headers, "X-E2EE-Nonce": req.nonce.upper()}, req.body) == "e2ee_decryption_failed"


@pytest.mark.parametrize("skew", [301, -301])
def test_a_timestamp_more_than_300_s_away_is_refused(service, skew):
    req = _request(service, now=NOW + skew)
    assert _code(service, req.headers, req.body) == "e2ee_invalid_timestamp"


@pytest.mark.parametrize("skew", [300, -300])
def test_a_timestamp_300_s_away_is_accepted(service, skew):
    req = _request(service, now=NOW + skew)
    assert service.open_request(req.headers, req.body, CHAT).fields == ("messages.0.content",)


@pytest.mark.parametrize("value", ["", "-5", "1.5", "abc", "99999999999999999999999"])
def test_a_malformed_timestamp_is_refused(service, value):
    req = _request(service)
    assert _code(service, {**req.headers, "X-E2EE-Timestamp": value}, req.body) == "e2ee_invalid_timestamp"


def test_a_model_key_not_in_the_keyset_is_refused(service):
    stranger = E2EEService.from_seed("someone else")
    req = _request(stranger)
    assert _code(service, req.headers, req.body) == "e2ee_model_key_mismatch"


def test_a_non_v2_keyset_entry_does_not_count_as_a_model_key():
    svc = E2EEService([ServiceE2EEKey.from_seed(bytes([3]) * 32)], clock=lambda: NOW)
    # the key is the secp256k1 generator point, a valid key, but the service only has an X25519 one
    g = "0479be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798" \
        "483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8"
    req = _request(svc)
    assert _code(svc, {**req.headers, "X-Model-Pub-Key": g}, req.body) == "e2ee_model_key_mismatch"


@pytest.mark.parametrize("header", ["X-E2EE-Version", "X-Client-Pub-Key", "X-Model-Pub-Key", "X-E2EE-Nonce",
                                    "X-E2EE-Timestamp"])
def test_each_missing_header_is_reported(service, header):
    req = _request(service)
    headers = {k: v for k, v in req.headers.items() if k != header}
    assert E2EEService.requested(headers)
    assert _code(service, headers, req.body) == "e2ee_header_missing"


def test_header_names_are_case_insensitive(service):
    req = _request(service)
    assert service.open_request({k.lower(): v for k, v in req.headers.items()}, req.body, CHAT).fields


@pytest.mark.parametrize("version", ["1", "3", " 2", "v2"])
def test_a_version_other_than_2_is_refused(service, version):
    req = _request(service)
    assert _code(service, {**req.headers, "X-E2EE-Version": version}, req.body) == "e2ee_invalid_version"


def test_the_legacy_signing_algo_header_is_refused(service):
    req = _request(service)
    assert _code(service, {**req.headers, "X-Signing-Algo": "ecdsa"}, req.body) == "e2ee_invalid_version"


@pytest.mark.parametrize("nonce", ["ab" * 31, "ab" * 33, "0x" + "ab" * 31, "zz" * 32, ""])
def test_a_nonce_that_is_not_64_hex_is_refused(service, nonce):
    req = _request(service)
    assert _code(service, {**req.headers, "X-E2EE-Nonce": nonce}, req.body) == "e2ee_invalid_nonce"


@pytest.mark.parametrize("algo, key", [(ec.X25519, "ab" * 31), (ec.X25519, "zz" * 32), (ec.X25519, "00" * 32),
                                       (ec.SECP256K1, "04" + "11" * 64), (ec.SECP256K1, "02" + "11" * 32)])
def test_a_malformed_client_key_is_refused(service, algo, key):
    req = _request(service, algo)
    assert _code(service, {**req.headers, "X-Client-Pub-Key": key}, req.body) == "e2ee_invalid_public_key"


@pytest.mark.parametrize("body", [b'{"messages":[]}', b'{"model":5,"messages":[]}', b"[1]"])
def test_a_missing_or_non_string_model_is_refused(service, body):
    req = _request(service)
    assert _code(service, req.headers, body) == "e2ee_invalid_payload_model"


def test_a_plaintext_prompt_under_e2ee_headers_is_refused(service):
    req = _request(service)
    body = b'{"model":"demo-model","messages":[{"role":"user","content":"hello in the clear"}]}'
    assert _code(service, req.headers, body) == "e2ee_decryption_failed"


def test_a_request_without_any_encrypted_field_is_refused(service):
    req = _request(service)
    body = b'{"model":"demo-model","messages":[{"role":"assistant","content":null}]}'
    assert _code(service, req.headers, body) == "e2ee_decryption_failed"


def test_a_body_that_is_not_json_is_refused(service):
    req = _request(service)
    assert _code(service, req.headers, b'{"model":') == "e2ee_decryption_failed"


@pytest.mark.parametrize("endpoint", ["/v1/responses", "/v1/messages"])
def test_undefined_endpoints_are_refused(service, endpoint):
    req = _request(service)
    assert _code(service, req.headers, req.body, endpoint) == "e2ee_unsupported_endpoint"


def test_the_error_body_has_the_openai_shape():
    err = SimE2EEError("e2ee_replay_detected", "already used")
    assert json.loads(err.body()) == {"error": {"message": "already used", "type": "e2ee_replay_detected",
                                                "code": None, "param": None}}


def test_plain_requests_are_not_e2ee():
    assert not E2EEService.requested({"Authorization": "Bearer x", "Content-Type": "application/json"})


def test_the_replay_cache_is_bounded_and_forgets_expired_tuples():
    cache = ReplayCache(max_entries=3)
    for i in range(5):
        assert cache.claim(b"c", b"s", bytes([i]), ts=NOW, now=NOW)
    assert len(cache) == 3
    assert not cache.claim(b"c", b"s", bytes([4]), ts=NOW, now=NOW)
    # after the window, old tuples are dropped on the next claim (their timestamps are refused anyway)
    assert cache.claim(b"c", b"s", b"new", ts=NOW + 700, now=NOW + 700) and len(cache) == 1


def test_a_response_field_that_is_not_text_cannot_be_sealed(service):
    req = _request(service)
    ctx = service.open_request(req.headers, req.body, CHAT).context
    with pytest.raises(SimE2EEError) as err:
        service.seal_response(b'{"choices":[{"index":0,"message":{"content":{"x":1}}}]}', ctx)
    assert err.value.status == 500


def test_sealing_is_deterministic_with_an_rng_and_fresh_without():
    req_service = E2EEService.from_seed("d", clock=lambda: NOW)
    req = _request(req_service)
    ctx = req_service.open_request(req.headers, req.body, CHAT).context
    reply = b'{"id":"x","choices":[{"index":0,"message":{"content":"same"}}]}'
    a = E2EEService.from_seed("d", rng=ec.deterministic_rng(b"r")).seal_response(reply, ctx)
    b = E2EEService.from_seed("d", rng=ec.deterministic_rng(b"r")).seal_response(reply, ctx)
    assert a == b
    assert req_service.seal_response(reply, ctx) != req_service.seal_response(reply, ctx)


def test_response_headers_announce_the_suite(service):
    req = _request(service, ec.SECP256K1)
    ctx = service.open_request(req.headers, req.body, CHAT).context
    assert ctx.response_headers() == {"X-E2EE-Applied": "true", "X-E2EE-Version": "2", "X-E2EE-Algo": ec.SECP256K1}


def test_keep_alives_and_done_pass_through_the_stream_sealer_unchanged(service):
    req = _request(service)
    ctx = service.open_request(req.headers, req.body, CHAT).context
    sealer = service.stream_sealer(ctx)
    out = sealer.push(b": PROCESSING\r\n\r\ndata: [DONE]\n\n") + sealer.finish()
    assert out == b": PROCESSING\n\ndata: [DONE]\n\n"


def test_the_service_key_repr_hides_the_private_key():
    key = ServiceE2EEKey.from_seed(bytes([3]) * 32)
    assert "0303" not in repr(key) and key.public_key.hex()[:16] in repr(key)
