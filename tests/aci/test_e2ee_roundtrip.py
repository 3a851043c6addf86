"""E2EE v2 end to end in memory: phalanb's client seals, phalanb's simulated service opens, seals the reply, the
client opens it — both suites, buffered and streamed, chat, completions and embeddings; and every way a relay could
change the context (model, nonce, ts, field, id) or drop the encryption makes the other side refuse."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import pytest

from phalanb.aci import e2ee_crypto as ec
from phalanb.aci.e2ee import (
    AttestedE2EEKey, EncryptedRequest, check_key_attested, check_request_encrypted, check_response_authenticated,
    decrypt_chunk, decrypt_response, decrypt_stream, prepare_request,
)
from phalanb.aci.verify import AciAttestation, EstablishedKeyset
from phalanb.errors import E2EEError, InputError, UnsupportedError
from phalanb.sim.e2ee import E2EEService, SimE2EEError
from phalanb.verdict import Status, Verdict

NOW = 1_800_000_000
SUITES = [ec.X25519, ec.SECP256K1]
PROMPT = "the secret prompt: launch codes 0000"


@pytest.fixture(scope="module")
def service():
    return E2EEService.from_seed("roundtrip", clock=lambda: NOW, rng=ec.deterministic_rng(b"service"))


@pytest.fixture(scope="module")
def keyset(service):
    # Built by hand for these unit tests; in use it is verify_aci_report(...).keyset.
    return EstablishedKeyset(digest="sha256:" + "ab" * 32, keyset={"e2ee_public_keys": service.keyset_entries()})


def _chat(content=PROMPT, **extra):
    return {"model": "demo-model", "messages": [{"role": "system", "content": "be brief"},
                                                {"role": "user", "content": content}], **extra}


def _reply(content="the secret answer", rid="chatcmpl-9"):
    return json.dumps({"id": rid, "object": "chat.completion", "model": "upstream-name",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": content,
                                                            "reasoning_content": "thinking hard"},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 3, "completion_tokens": 2}}).encode()


def _prepare(keyset, algo, body=None, **kw):
    key = AttestedE2EEKey.from_established_keyset(keyset, algo=algo)
    return prepare_request(body or _chat(), model_key=key, now=NOW, **kw)


def _stream(*deltas, rid="chatcmpl-s"):
    out = b""
    for d in deltas:
        out += b"data: " + json.dumps({"id": rid, "object": "chat.completion.chunk",
                                        "choices": [{"index": 0, "delta": {"content": d}}]}).encode() + b"\n\n"
    return out + b": PROCESSING\n\ndata: [DONE]\n\n"


@pytest.mark.parametrize("algo", SUITES)
def test_buffered_chat_round_trip(service, keyset, algo):
    req = _prepare(keyset, algo)
    opened = service.open_request(req.headers, req.body, "/v1/chat/completions")
    assert opened.body == req.restored_body  # what the receipt's request.received hashes, on both sides
    assert opened.payload["messages"][1]["content"] == PROMPT
    wire = service.seal_response(_reply(), opened.context)
    out = decrypt_response(wire, req)
    assert out.text == "the secret answer"
    assert out.body["choices"][0]["message"]["reasoning_content"] == "thinking hard"
    assert out.fields == ("choices.0.message.content", "choices.0.message.reasoning_content")
    assert b"secret answer" not in wire and b"thinking" not in wire


@pytest.mark.parametrize("algo", SUITES)
def test_streamed_chat_round_trip_in_small_pieces(service, keyset, algo):
    req = _prepare(keyset, algo)
    opened = service.open_request(req.headers, req.body, "/v1/chat/completions")
    sealer = service.stream_sealer(opened.context)
    upstream = _stream("Hel", "lo ", "world")
    wire = b"".join(sealer.push(upstream[i:i + 5]) for i in range(0, len(upstream), 5)) + sealer.finish()
    assert b"Hel" not in wire and wire.endswith(b": PROCESSING\n\ndata: [DONE]\n\n")
    out = decrypt_stream(wire, req)
    assert out.text == "Hello world" and out.done and len(out.fields) == 3
    assert check_response_authenticated(out).status is Status.PASS


@pytest.mark.parametrize("algo", SUITES)
def test_structured_content_round_trips_whole_and_per_part(service, keyset, algo):
    parts = [{"type": "text", "text": PROMPT}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
             {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}]
    for split, fields in ((False, ("messages.0.content", "messages.1.content")),
                          (True, ("messages.0.content", "messages.1.content.0.text",
                                  "messages.1.content.1.image_url.url", "messages.1.content.2.input_audio.data"))):
        req = _prepare(keyset, algo, _chat(parts), split_parts=split)
        assert req.encrypted_fields == fields
        opened = service.open_request(req.headers, req.body, "/v1/chat/completions")
        assert opened.payload["messages"][1]["content"] == parts
        assert opened.body == req.restored_body


def test_completions_and_embeddings_round_trip(service, keyset):
    req = _prepare(keyset, ec.X25519, {"model": "m", "prompt": ["first secret", [1, 2], "second secret"]})
    assert req.encrypted_fields == ("prompt.0", "prompt.2") and req.endpoint == ec.COMPLETIONS
    opened = service.open_request(req.headers, req.body, "/v1/completions")
    assert opened.payload["prompt"] == ["first secret", [1, 2], "second secret"]
    wire = service.seal_response(b'{"id":"cmpl-1","choices":[{"index":0,"text":"done deal"}]}', opened.context)
    assert decrypt_response(wire, req).text == "done deal"

    req = _prepare(keyset, ec.SECP256K1, {"model": "m", "input": "embed this secret"})
    opened = service.open_request(req.headers, req.body, "/v1/embeddings")
    reply = b'{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,-2.5e-7,1.0]}]}'
    wire = service.seal_response(reply, opened.context)
    out = decrypt_response(wire, req)
    assert out.body["data"][0]["embedding"] == [0.1, -2.5e-7, 1.0] and out.fields == ("data.0.embedding",)


def test_reply_field_paths_use_the_entry_index_member(service, keyset):
    req = _prepare(keyset, ec.X25519)
    ctx = service.open_request(req.headers, req.body, "/v1/chat/completions").context
    reply = b'{"id":"x","choices":[{"index":3,"message":{"content":"three"}},{"message":{"content":"pos1"}}]}'
    out = decrypt_response(service.seal_response(reply, ctx), req)
    assert out.fields == ("choices.3.message.content", "choices.1.message.content")


def test_the_prompt_never_appears_in_the_wire_bytes(keyset):
    for algo in SUITES:
        req = _prepare(keyset, algo, _chat("ümlaut prompt ü"))
        assert PROMPT.encode() not in req.body and "ümlaut".encode() not in req.body
        assert b"\\u00fc" not in req.body and b"be brief" not in req.body
        assert check_request_encrypted(req).status is Status.PASS


def test_request_encrypted_check_fails_when_a_field_went_out_clear(keyset):
    req = _prepare(keyset, ec.X25519)
    clear = req.body.replace(json.loads(req.body)["messages"][1]["content"].encode(), PROMPT.encode())
    check = check_request_encrypted(dataclasses.replace(req, body=clear))
    assert check.status is Status.FAIL and "messages.1.content" in check.reason


# ---- every AAD member is bound: change one, decryption fails --------------------------------------------------

def _tamper_header(req: EncryptedRequest, name: str, value: str) -> dict[str, str]:
    return {**req.headers, name: value}


@pytest.mark.parametrize("algo", SUITES)
def test_request_model_change_breaks_decryption(service, keyset, algo):
    req = _prepare(keyset, algo)
    body = req.body.replace(b'"model":"demo-model"', b'"model":"other-model"')
    with pytest.raises(SimE2EEError) as err:
        service.open_request(req.headers, body, "/v1/chat/completions")
    assert err.value.code == "e2ee_decryption_failed" and "messages.0.content" in err.value.message


@pytest.mark.parametrize("what", ["nonce", "ts"])
def test_request_nonce_or_ts_change_breaks_decryption(service, keyset, what):
    req = _prepare(keyset, ec.X25519)
    headers = (_tamper_header(req, "X-E2EE-Nonce", "ff" * 32) if what == "nonce"
               else _tamper_header(req, "X-E2EE-Timestamp", str(NOW - 1)))
    with pytest.raises(SimE2EEError) as err:
        service.open_request(headers, req.body, "/v1/chat/completions")
    assert err.value.code == "e2ee_decryption_failed"


def test_request_field_moved_to_another_path_breaks_decryption(service, keyset):
    req = _prepare(keyset, ec.X25519)
    body = json.loads(req.body)
    msgs = body["messages"]
    msgs[0]["content"], msgs[1]["content"] = msgs[1]["content"], msgs[0]["content"]
    with pytest.raises(SimE2EEError) as err:
        service.open_request(req.headers, json.dumps(body).encode(), "/v1/chat/completions")
    assert err.value.code == "e2ee_decryption_failed" and "failed authentication" in err.value.message


@pytest.mark.parametrize("change", ["model", "nonce", "ts"])
def test_reply_bound_to_the_request_context(service, keyset, change):
    req = _prepare(keyset, ec.SECP256K1)
    ctx = service.open_request(req.headers, req.body, "/v1/chat/completions").context
    wire = service.seal_response(_reply(), ctx)
    changed = {"model": {"model": "other-model"}, "nonce": {"nonce": "00" * 32}, "ts": {"timestamp": NOW + 1}}
    other = dataclasses.replace(req, **changed[change])
    with pytest.raises(E2EEError) as err:
        decrypt_response(wire, other)
    assert err.value.field == "choices.0.message.content" and "failed authentication" in str(err.value)


def test_reply_id_change_breaks_decryption(service, keyset):
    req = _prepare(keyset, ec.X25519)
    ctx = service.open_request(req.headers, req.body, "/v1/chat/completions").context
    wire = service.seal_response(_reply(rid="chatcmpl-9"), ctx).replace(b'"chatcmpl-9"', b'"chatcmpl-8"')
    with pytest.raises(E2EEError, match="failed authentication"):
        decrypt_response(wire, req)


def test_reply_field_moved_between_choices_breaks_decryption(service, keyset):
    req = _prepare(keyset, ec.X25519)
    ctx = service.open_request(req.headers, req.body, "/v1/chat/completions").context
    reply = b'{"id":"x","choices":[{"index":0,"message":{"content":"a"}},{"index":1,"message":{"content":"b"}}]}'
    body = json.loads(service.seal_response(reply, ctx))
    c = body["choices"]
    c[0]["message"]["content"], c[1]["message"]["content"] = c[1]["message"]["content"], c[0]["message"]["content"]
    with pytest.raises(E2EEError) as err:
        decrypt_response(json.dumps(body).encode(), req)
    assert err.value.field == "choices.0.message.content"


def test_streamed_chunk_id_is_bound(service, keyset):
    req = _prepare(keyset, ec.X25519)
    ctx = service.open_request(req.headers, req.body, "/v1/chat/completions").context
    sealer = service.stream_sealer(ctx)
    wire = sealer.push(_stream("secret", rid="c-1")) + sealer.finish()
    with pytest.raises(E2EEError, match="failed authentication"):
        decrypt_stream(wire.replace(b'"c-1"', b'"c-2"'), req)


# ---- unencrypted replies when encryption was asked for -------------------------------------------------------

def test_unencrypted_reply_field_is_an_error(keyset):
    req = _prepare(keyset, ec.X25519)
    with pytest.raises(E2EEError, match="arrived unencrypted") as err:
        decrypt_response(_reply(), req)
    assert err.value.field == "choices.0.message.content"
    check = check_response_authenticated(err.value)
    assert check.id == "e2ee.response_authenticated" and check.status is Status.FAIL


def test_unencrypted_stream_chunk_is_an_error(keyset):
    req = _prepare(keyset, ec.X25519)
    with pytest.raises(E2EEError, match="choices.0.delta.content arrived unencrypted"):
        decrypt_stream(_stream("plain"), req)


def test_unencrypted_embedding_is_an_error(keyset):
    req = _prepare(keyset, ec.X25519, {"model": "m", "input": ["a secret"]})
    with pytest.raises(E2EEError, match="data.0.embedding arrived unencrypted"):
        decrypt_response(b'{"data":[{"index":0,"embedding":[0.5]}]}', req)


def test_null_content_needs_no_encryption(keyset):
    req = _prepare(keyset, ec.X25519)
    out = decrypt_chunk({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}, req)
    assert out.fields == ()
    out = decrypt_response(b'{"id":"c","choices":[{"index":0,"message":{"content":null,"tool_calls":[]}}]}', req)
    assert check_response_authenticated(out).status is Status.SKIPPED


# ---- verify before you send -----------------------------------------------------------------------------------

def test_an_attested_key_cannot_be_constructed_directly():
    with pytest.raises(TypeError, match="from_established_keyset"):
        AttestedE2EEKey("5d" * 32, ec.X25519)


def test_a_keyset_that_was_not_established_gives_no_key(keyset):
    # A look-alike object (even one claiming established=True) is not a keyset phalanb verified.
    for unverified in (SimpleNamespace(established=True, keyset=keyset.keyset), dict(keyset.keyset), None):
        with pytest.raises(E2EEError, match="no established keyset"):
            AttestedE2EEKey.from_established_keyset(unverified)


def test_an_attestation_that_established_nothing_gives_no_key():
    att = AciAttestation([], None, None, "aci.quote_slot did not pass")
    with pytest.raises(E2EEError, match="aci.quote_slot"):
        AttestedE2EEKey.from_established_keyset(att)


def test_a_bare_key_string_is_refused():
    with pytest.raises(E2EEError, match="AttestedE2EEKey"):
        prepare_request(_chat(), model_key="5d" * 32)  # type: ignore[arg-type]


def test_only_v2_suites_are_selected(keyset):
    ks = EstablishedKeyset(digest=keyset.digest, keyset={"e2ee_public_keys": [
        {"key_id": "legacy", "algo": "ecdsa", "public_key": "11" * 64}, *keyset.keyset["e2ee_public_keys"]]})
    assert AttestedE2EEKey.from_established_keyset(ks).algo == ec.X25519  # preferred
    with pytest.raises(UnsupportedError, match="not an E2EE v2 suite"):
        AttestedE2EEKey.from_established_keyset(ks, "legacy")


def test_the_override_is_recorded_and_keeps_the_verdict_from_verified(service, keyset):
    attested = _prepare(keyset, ec.X25519)
    assert check_key_attested(attested).status is Status.PASS
    assert check_key_attested(attested).evidence["keyset_digest"] == keyset.digest
    key = AttestedE2EEKey.UNVERIFIED_override("0x" + service.keyset_entries()[1]["public_key"][2:], ec.SECP256K1)
    req = prepare_request(_chat(), model_key=key, now=NOW)
    assert not req.key_attested and "UNVERIFIED" in repr(req)
    ctx = service.open_request(req.headers, req.body, "/v1/chat/completions").context
    out = decrypt_response(service.seal_response(_reply(), ctx), req)
    verdict = Verdict([check_key_attested(req), check_request_encrypted(req), check_response_authenticated(out)])
    assert verdict["e2ee.key_attested"].status is Status.SKIPPED and verdict.status == "incomplete"


def test_the_client_private_key_never_shows_in_repr(keyset):
    req = _prepare(keyset, ec.X25519)
    secret = req._client_private.private_bytes_raw().hex()
    assert secret not in repr(req) and secret not in str(req.headers) and secret.encode() not in req.body


def test_a_body_with_nothing_to_encrypt_is_refused(keyset):
    with pytest.raises(InputError, match="no string prompt field"):
        _prepare(keyset, ec.X25519, {"model": "m", "input": [[1, 2, 3]]})
    with pytest.raises(InputError, match="string 'model'"):
        _prepare(keyset, ec.X25519, {"messages": [{"role": "user", "content": "x"}]})


def test_a_string_that_reads_as_a_json_array_is_restored_as_structured_content(service, keyset):
    req = _prepare(keyset, ec.X25519, _chat('[1, 2.0, "x"]'))
    assert req.warnings and "messages.1.content" in req.warnings[0]
    opened = service.open_request(req.headers, req.body, "/v1/chat/completions")
    assert opened.payload["messages"][1]["content"] == [1, 2.0, "x"]
    assert opened.body == req.restored_body and b'"content":[1,2.0,"x"]' in req.restored_body


# ---- bad input gets a clear error, never a crash ----------------------------------------------------------------

def test_damaged_replies_raise_e2ee_errors_naming_the_field(service, keyset):
    req = _prepare(keyset, ec.SECP256K1)
    ctx = service.open_request(req.headers, req.body, "/v1/chat/completions").context
    wire = service.seal_response(_reply(), ctx)
    value = json.loads(wire)["choices"][0]["message"]["content"]
    flipped = value[:100] + ("0" if value[100] != "0" else "1") + value[101:]
    for damaged in (value[:-2], value[:40], value + "0", flipped, "02" + value[2:]):
        with pytest.raises(E2EEError) as err:
            decrypt_response(wire.replace(value.encode(), damaged.encode()), req)
        assert err.value.field == "choices.0.message.content"
    for broken in (wire[:-1], b"", b"\xff", b"[]", b'{"choices":' * 600):
        with pytest.raises(E2EEError):
            decrypt_response(broken, req)


def test_a_request_body_with_no_json_form_is_an_input_error(keyset):
    with pytest.raises(InputError, match="cannot be sent as JSON"):
        _prepare(keyset, ec.X25519, _chat(temperature=float("nan")))


def test_a_stream_cut_inside_an_event_is_an_error(service, keyset):
    req = _prepare(keyset, ec.X25519)
    ctx = service.open_request(req.headers, req.body, "/v1/chat/completions").context
    sealer = service.stream_sealer(ctx)
    wire = sealer.push(_stream("abc")) + sealer.finish()
    with pytest.raises(E2EEError, match="ended inside an event"):
        decrypt_stream(wire[:40], req)


# ---- records for audit bundles --------------------------------------------------------------------------------

def test_a_recorded_request_reopens_its_reply_only_with_the_key_included(service, keyset):
    req = _prepare(keyset, ec.SECP256K1)
    wire = service.seal_response(_reply(), service.open_request(req.headers, req.body, "/v1/chat/completions").context)
    key = AttestedE2EEKey.from_established_keyset(keyset, algo=ec.SECP256K1)
    record = json.loads(json.dumps(req.to_dict(include_client_key=True)))
    again = EncryptedRequest.from_dict(record, model_key=key)
    assert again.body == req.body and again.restored_body == req.restored_body
    assert decrypt_response(wire, again).text == "the secret answer"
    bare = EncryptedRequest.from_dict(req.to_dict(), model_key=key)
    with pytest.raises(E2EEError, match="no client private key"):
        decrypt_response(wire, bare)


def test_a_recorded_claim_of_attestation_is_not_trusted(service, keyset):
    req = prepare_request(_chat(), model_key=AttestedE2EEKey.UNVERIFIED_override(
        service.keyset_entries()[0]["public_key"], ec.X25519), now=NOW)
    record = {**req.to_dict(), "key_attested": True}
    override = AttestedE2EEKey.UNVERIFIED_override(service.keyset_entries()[0]["public_key"], ec.X25519)
    assert check_key_attested(EncryptedRequest.from_dict(record, model_key=override)).status is Status.SKIPPED
    other = AttestedE2EEKey.from_established_keyset(keyset, algo=ec.SECP256K1)
    with pytest.raises(E2EEError, match="another key"):
        EncryptedRequest.from_dict(record, model_key=other)


def test_the_suite_is_the_keys_algo(keyset):
    with pytest.raises(E2EEError, match="the suite is the key's"):
        _prepare(keyset, ec.X25519, suite=ec.SECP256K1)


def test_key_id_and_algo_must_agree(keyset):
    x_id = next(e["key_id"] for e in keyset.keyset["e2ee_public_keys"] if e["algo"] == ec.X25519)
    assert AttestedE2EEKey.from_established_keyset(keyset, x_id).algo == ec.X25519
    with pytest.raises(E2EEError, match="not the"):
        AttestedE2EEKey.from_established_keyset(keyset, x_id, algo=ec.SECP256K1)
    with pytest.raises(E2EEError, match="lists no E2EE key"):
        AttestedE2EEKey.from_established_keyset(keyset, "nope")
