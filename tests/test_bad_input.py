"""Bad input and broken services give phalanb's own clear errors; nothing hangs."""

import socket

import httpx
import pytest

from phalanb.vllm.signatures import fetch_signature
from phalanb.wire.client import Client
from phalanb.errors import (InputError, ParseError, PhalanbError, ServiceError, SignatureFormatError,
                            TransportError)
from phalanb.vllm.signatures import SignatureRecord, check_signature, parse_signed_text, recover_signer
from phalanb.wire.sse import parse_sse

TEXT = "a" * 64 + ":" + "b" * 64
GOOD_SIG = "0x" + "11" * 64 + "1b"


@pytest.mark.parametrize("sig, match", [
    ("0xzz" + "11" * 63 + "1b", "not hex"),
    ("0x" + "11" * 64 + "1", "odd number of hex digits"),
    ("0x" + "11" * 64, "64 bytes; expected 65"),
    ("0x" + "11" * 66, "66 bytes; expected 65"),
    ("0x" + "11" * 64 + "05", "v is 5"),
    ("", "0 bytes; expected 65"),
])
def test_malformed_ecdsa_signatures(sig, match):
    with pytest.raises(SignatureFormatError, match=match):
        recover_signer(TEXT, sig, "ecdsa")


def test_malformed_ed25519_signature_and_key():
    with pytest.raises(SignatureFormatError, match="expected 64"):
        recover_signer(TEXT, "11" * 65, "ed25519", public_key="22" * 32)
    with pytest.raises(SignatureFormatError, match="expected 32"):
        recover_signer(TEXT, "11" * 64, "ed25519", public_key="22" * 31)
    key = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"
    with pytest.raises(SignatureFormatError, match="does not verify"):
        recover_signer(TEXT, "11" * 32 + "01" + "00" * 31, "ed25519", public_key=key)
    with pytest.raises(SignatureFormatError, match="not below the group order"):  # S ≥ L: malleable, refused
        recover_signer(TEXT, "11" * 64, "ed25519", public_key=key)


def test_unknown_algo():
    with pytest.raises(SignatureFormatError, match="unknown signing algorithm 'rsa'"):
        recover_signer(TEXT, GOOD_SIG, "rsa")
    with pytest.raises(SignatureFormatError, match="unknown signing_algo"):
        SignatureRecord.from_dict({"text": TEXT, "signature": GOOD_SIG, "signing_algo": "rsa"})


@pytest.mark.parametrize("text, parts", [("a" * 64, 1), ("m:x:" + "a" * 64 + ":" + "b" * 64, 4), ("", 1)])
def test_signed_text_with_wrong_number_of_parts(text, parts):
    with pytest.raises(SignatureFormatError, match=f"has {parts} ':'-separated part"):
        parse_signed_text(text)


@pytest.mark.parametrize("text, what", [
    ("g" * 64 + ":" + "b" * 64, "request hash"),
    ("a" * 64 + ":" + "b" * 63, "response hash"),
    ("A" * 64 + ":" + "b" * 64, "uppercase"),
])
def test_non_hex_hashes(text, what):
    with pytest.raises(SignatureFormatError, match=what):
        parse_signed_text(text)


def test_bad_signature_is_a_failed_check_not_a_crash():
    check, signer = check_signature(SignatureRecord(text=TEXT, signature="0x1234"))
    assert check.status.value == "fail" and signer is None and "expected 65" in check.reason


def test_signature_record_bad_json():
    with pytest.raises(SignatureFormatError, match="not JSON"):
        SignatureRecord.from_json("{not json")
    with pytest.raises(SignatureFormatError, match="'text'"):
        SignatureRecord.from_json('{"signature": "00"}')


def test_server_500_is_a_service_error_with_the_server_message(fresh_sim, client_for):
    sim = fresh_sim(faults={"chat_500", "signature_500", "attestation_500"})
    client = client_for(sim)
    with pytest.raises(ServiceError) as info:
        client.chat("x")
    assert info.value.status == 500 and "simulated fault chat_500" in info.value.server_message
    with pytest.raises(ServiceError, match="HTTP 500"):
        fetch_signature(client, "chatcmpl-" + "0" * 32)
    with pytest.raises(ServiceError, match="attestation fetch failed: HTTP 500"):
        client.attestation()


def test_bad_nonces_are_refused_by_the_server_exactly_as_spec(sim, client_for):
    http = httpx.Client()
    r = http.get(sim.base_url + "/attestation/report", params={"nonce": "xyz"})
    assert r.status_code == 400 and r.json()["error"]["message"] == "Nonce must be hex-encoded"
    r = http.get(sim.base_url + "/attestation/report", params={"nonce": "ab" * 31})
    assert r.status_code == 400 and r.json()["error"]["message"] == "Nonce must be 32 bytes"
    r = http.get(sim.base_url + "/attestation/report", params={"signing_address": "0x" + "00" * 20})
    assert r.status_code == 404
    r = http.get(sim.base_url + "/signature/chatcmpl-x", params={"signing_algo": "rsa"})
    assert r.status_code == 400
    # The client refuses bad nonces before sending anything.
    with pytest.raises(InputError, match="32 bytes"):
        client_for(sim).attestation(nonce=b"\0" * 31)
    with pytest.raises(InputError, match="hex"):
        client_for(sim).attestation(nonce="nothex")


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_connection_refused_is_a_transport_error():
    client = Client(base_url=f"http://127.0.0.1:{_free_port()}/v1", model="m", api_key="sk-none", timeout=5)
    with pytest.raises(TransportError, match="could not connect"):
        client.chat("x")
    with pytest.raises(TransportError):
        fetch_signature(client, "chatcmpl-1")


def test_a_stream_cut_midway_is_a_transport_error_with_the_partial_bytes(fresh_sim, client_for):
    sim = fresh_sim(faults={"cut_stream"})
    with pytest.raises(TransportError, match="cut|without 'data: \\[DONE\\]'") as info:
        client_for(sim).chat("cut me", stream=True, max_tokens=8)
    partial = info.value.partial
    assert partial.complete is False and partial.response_bytes.startswith(b"data: ")
    assert b"[DONE]" not in partial.response_bytes


def test_a_silent_server_times_out_instead_of_hanging():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the TCP connection, never answers
    try:
        port = listener.getsockname()[1]
        client = Client(base_url=f"http://127.0.0.1:{port}/v1", model="m", api_key="sk-none", timeout=0.5)
        with pytest.raises(TransportError, match="timed out"):
            client.chat("x")
    finally:
        listener.close()


def test_unknown_model_and_missing_model():
    with pytest.raises(InputError, match="no model given"):
        Client(base_url="http://127.0.0.1:1/v1").chat("x")


def test_server_errors_for_unknown_model(sim, client_for):
    with pytest.raises(ServiceError, match="does not exist") as info:
        client_for(sim).chat("x", model="no/such-model")
    assert info.value.status == 404


@pytest.mark.parametrize("data, field", [
    (b'data: {"id": 1\n\n', "sse.data"),
    (b"data: \xff\xfe\n\n", "sse.event"),
    (b'data: {"id":"x"}\n\ndata: {"a"', "sse.event"),
])
def test_broken_sse_is_a_parse_error_with_offset(data, field):
    with pytest.raises(ParseError) as info:
        events = parse_sse(data)
        for e in events:
            e.json()
    assert info.value.field == field and info.value.offset is not None
    # An exchange keeps such bytes as received (they can still be hashed) and says why they are unreadable.
    from phalanb.wire.exchange import Exchange
    ex = Exchange.from_bytes(request_bytes=b"{}", response_bytes=data, stream=True)
    assert ex.response_bytes == data and ex.complete is False


def test_every_error_is_a_phalanb_error():
    for cls in (InputError, ParseError, ServiceError, SignatureFormatError, TransportError):
        assert issubclass(cls, PhalanbError)


def test_a_hostile_server_s_deeply_nested_json_is_a_parse_error_not_a_crash():
    deep = b"[" * 200_000 + b"]" * 200_000
    transport = httpx.MockTransport(lambda request: httpx.Response(200, stream=httpx.ByteStream(deep)))
    client = Client(base_url="http://127.0.0.1:1/v1", model="m", transport=transport)
    for call in (client.models, client.attestation, lambda: fetch_signature(client, "chatcmpl-1")):
        with pytest.raises(ParseError, match="not JSON"):
            call()
    error = httpx.MockTransport(lambda request: httpx.Response(500, stream=httpx.ByteStream(deep)))
    with pytest.raises(ServiceError, match="HTTP 500"):
        Client(base_url="http://127.0.0.1:1/v1", model="m", transport=error).models()
