"""Issue 19 item 3, E2EE replies: a relay that sends the answer in clear beside its sealed copy —
``"content":"<the answer>","content":"<sealed>"`` — is refused (the reply reader keeps no duplicate member), buffered
and streamed; and a reply whose bytes carry the decrypted text anywhere fails, as the request check already did."""

from __future__ import annotations

import json

import pytest

from phalanb.aci import e2ee_crypto as ec
from phalanb.aci.e2ee import (
    AttestedE2EEKey, check_response_authenticated, decrypt_response, decrypt_stream, prepare_request,
)
from phalanb.aci.verify import EstablishedKeyset
from phalanb.errors import E2EEError
from phalanb.sim.e2ee import E2EEService
from phalanb.verdict import Status

NOW = 1_800_000_000
ANSWER = "the secret answer, forty-two"


@pytest.fixture(scope="module")
def setup():
    service = E2EEService.from_seed("in-clear", clock=lambda: NOW, rng=ec.deterministic_rng(b"service"))
    keyset = EstablishedKeyset(digest="sha256:" + "ab" * 32, keyset={"e2ee_public_keys": service.keyset_entries()})
    key = AttestedE2EEKey.from_established_keyset(keyset, algo=ec.X25519)
    req = prepare_request({"model": "demo-model", "messages": [{"role": "user", "content": "tell me"}]},
                          model_key=key, now=NOW)
    opened = service.open_request(req.headers, req.body, "/v1/chat/completions")
    return service, req, opened


def _buffered(service, opened) -> bytes:
    body = json.dumps({"id": "chatcmpl-1", "object": "chat.completion",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}}]}).encode()
    return service.seal_response(body, opened.context)


def _streamed(service, opened) -> bytes:
    chunk = json.dumps({"id": "chatcmpl-s", "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": {"content": ANSWER}}]}).encode()
    sealer = service.stream_sealer(opened.context)
    return sealer.push(b"data: " + chunk + b"\n\ndata: [DONE]\n\n") + sealer.finish()


def _clear_beside_sealed(wire: bytes) -> bytes:
    """Put the answer in clear as a first "content" member, before the sealed one a last-wins reader keeps."""
    assert b'"content":"' in wire
    return wire.replace(b'"content":"', b'"content":"' + ANSWER.encode() + b'","content":"', 1)


def test_buffered_reply_with_the_answer_in_clear_beside_the_sealed_copy_is_refused(setup):
    service, req, opened = setup
    wire = _buffered(service, opened)
    assert decrypt_response(wire, req).text == ANSWER  # the genuine reply opens
    forged = _clear_beside_sealed(wire)
    assert forged != wire and ANSWER.encode() in forged
    with pytest.raises(E2EEError, match="appears twice") as err:
        decrypt_response(forged, req)
    assert check_response_authenticated(err.value).status is Status.FAIL


def test_streamed_reply_with_the_answer_in_clear_beside_the_sealed_copy_is_refused(setup):
    service, req, opened = setup
    wire = _streamed(service, opened)
    assert decrypt_stream(wire, req).text == ANSWER  # the genuine stream opens
    with pytest.raises(E2EEError, match="appears twice"):
        decrypt_stream(_clear_beside_sealed(wire), req)


def test_reply_bytes_carrying_the_decrypted_text_fail(setup):
    # No duplicate this time: the answer rides in another member beside the sealed content.
    service, req, opened = setup
    wire = _buffered(service, opened)
    leaky = wire.replace(b'"id":"chatcmpl-1"', b'"id":"chatcmpl-1","note":"' + ANSWER.encode() + b'"', 1)
    assert leaky != wire
    check = check_response_authenticated(decrypt_response(leaky, req))
    assert check.status is Status.FAIL and "in clear" in check.reason
    assert check_response_authenticated(decrypt_response(wire, req)).status is Status.PASS


def test_streamed_reply_carrying_the_decrypted_text_fails(setup):
    service, req, opened = setup
    wire = _streamed(service, opened)
    leaky = b": " + ANSWER.encode() + b"\n\n" + wire  # an SSE comment: no event, but the text is on the wire
    check = check_response_authenticated(decrypt_stream(leaky, req))
    assert check.status is Status.FAIL and "in clear" in check.reason
