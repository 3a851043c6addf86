"""Network faults: the client retries only idempotent fetches, never a chat, keeps partial bytes, and never hangs."""

import time

import pytest

from phalanb.vllm.signatures import fetch_signature
from phalanb.errors import ParseError, ServiceError, TransportError
from phalanb.vllm.verify import chat_checks


def test_429_on_idempotent_fetches_is_retried_after_the_server_s_delay(fresh_sim, client_for):
    sim = fresh_sim(faults={"rate_limit"})
    client = client_for(sim)
    waits = []
    client._sleep = waits.append  # record the waits instead of sleeping
    assert client.models() == [sim.model]
    assert waits == [1.0]
    att = client.attestation()
    assert att.report["request_nonce"] == att.nonce_hex
    assert sim.state.requests["/v1/attestation/report"] == 2


def test_a_chat_is_never_retried(fresh_sim, client_for):
    sim = fresh_sim(faults={"rate_limit"})
    client = client_for(sim)
    client._sleep = lambda s: None
    with pytest.raises(ServiceError) as info:
        client.chat("once only")
    assert info.value.status == 429
    assert sim.state.requests["/v1/chat/completions"] == 1  # the client did not send it again
    ex = client.chat("second, explicit attempt")  # the user may decide to try again
    assert ex.complete


def test_503_is_retried_with_backoff(fresh_sim, client_for):
    sim = fresh_sim(faults={"flaky_503"})
    client = client_for(sim, backoff=0.25)
    waits = []
    client._sleep = waits.append
    with pytest.raises(ServiceError, match="HTTP 503"):
        client.chat("x", max_tokens=2)  # a chat is not retried, even on 503
    ex = client.chat("x", max_tokens=2)
    assert fetch_signature(client, ex.chat_id).text
    assert waits == [0.25]
    assert sim.state.requests[f"/v1/signature/{ex.chat_id}"] == 2


def test_retries_give_up_after_the_limit(fresh_sim, client_for):
    sim = fresh_sim(faults={"attestation_500"})
    client = client_for(sim, retries=3)
    client._sleep = lambda s: None
    with pytest.raises(ServiceError, match="HTTP 500"):
        client.attestation()  # 500 is not a transient status: no retry
    assert sim.state.requests.get("/v1/attestation/report", 0) == 0  # refused before the fault counter


def test_too_long_retry_after_is_an_explained_error(fresh_sim, client_for):
    sim = fresh_sim(faults={"rate_limit"})
    client = client_for(sim, max_retry_after=0.5)
    with pytest.raises(ServiceError, match="asks to wait 1 s"):
        client.models()


def test_a_hanging_server_times_out_and_is_retried_then_gives_up(fresh_sim, client_for):
    sim = fresh_sim(faults={"hang"})
    client = client_for(sim, timeout=0.3, retries=1)
    client._sleep = lambda s: None
    t = time.perf_counter()
    with pytest.raises(TransportError, match="timed out"):
        client.attestation()
    assert time.perf_counter() - t < 5
    assert sim.state.requests["/v1/attestation/report"] == 2


def test_truncated_json_is_a_parse_error_with_the_offset(fresh_sim, client_for):
    sim = fresh_sim(faults={"truncated_json"})
    client = client_for(sim)
    ex = client.chat("x", max_tokens=2)
    with pytest.raises(ParseError, match="not JSON") as info:
        fetch_signature(client, ex.chat_id)
    assert info.value.offset is not None
    with pytest.raises(ParseError):
        client.attestation()


def test_a_slow_drip_stream_keeps_exact_bytes_and_verifies(fresh_sim, client_for):
    sim = fresh_sim(faults={"slow_drip"})
    client = client_for(sim)
    ex = client.chat("drip", max_tokens=3)
    assert len(ex.timings.chunks) > 5  # arrived in many small pieces
    checks, _ = chat_checks(ex, fetch_signature(client, ex.chat_id))
    assert [c.status.value for c in checks] == ["pass", "pass", "pass"]


def test_a_reset_mid_stream_keeps_the_bytes_received_marked_incomplete(fresh_sim, client_for):
    sim = fresh_sim(faults={"cut_stream"})
    client = client_for(sim)
    with pytest.raises(TransportError) as info:
        client.chat("cut", max_tokens=8)
    partial = info.value.partial
    assert partial.complete is False and partial.response_bytes.count(b"data: ") >= 2
    assert sim.state.requests["/v1/chat/completions"] == 1
