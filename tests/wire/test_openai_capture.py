"""The OpenAI-SDK path: the SDK the user already has, with phalanb recording the exact bytes underneath."""

import openai
import pytest

from phalanb.vllm.signatures import fetch_signature
from phalanb.wire.capture import Recorder
from phalanb.errors import PhalanbError
from phalanb.vllm.verify import chat_checks


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_sdk_capture_records_exact_bytes_that_verify(sim, api_key, client_for, stream):
    rec = Recorder()
    oai = openai.OpenAI(base_url=sim.base_url, api_key=api_key, http_client=rec.http_client(), max_retries=0)
    messages = [{"role": "user", "content": "hello from the SDK"}]
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in
                       oai.chat.completions.create(model=sim.model, messages=messages, stream=True) if c.choices)
    else:
        text = oai.chat.completions.create(model=sim.model, messages=messages).choices[0].message.content
    ex = rec.last
    assert len(rec) == 1 and ex.stream is stream and ex.complete
    assert ex.text == text  # phalanb read the same bytes the SDK parsed
    assert ex.request_headers["authorization"] == "<redacted>"
    sig = fetch_signature(client_for(sim), ex.chat_id)
    checks, signer = chat_checks(ex, sig)
    assert [c.status.value for c in checks] == ["pass", "pass", "pass"]
    assert signer == sim.signing_address


def test_sdk_capture_bytes_equal_phalanb_client_bytes_for_same_body(sim, api_key, client_for):
    """The recorder and phalanb's own client agree on what 'the request bytes' are for the same body."""
    rec = Recorder()
    with rec.http_client() as http:
        body = b'{"model":"%s","messages":[{"role":"user","content":"same"}],"stream":true}' % sim.model.encode()
        with http.stream("POST", sim.base_url + "/chat/completions", content=body,
                         headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}) as r:
            wire = b"".join(r.iter_raw())
    via_client = client_for(sim).chat(raw_body=body)
    assert rec.last.request_bytes == via_client.request_bytes == body
    assert rec.last.response_bytes == wire


def test_recorder_is_empty_until_used():
    with pytest.raises(PhalanbError, match="nothing recorded"):
        _ = Recorder().last
