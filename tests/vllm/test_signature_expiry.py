"""Signatures live in a TTL cache: fetched before expiry, explained 404 after."""

import time

import pytest

from phalanb.vllm.signatures import fetch_signature
from phalanb.errors import NotFoundError, SignatureExpiredError


def test_signature_fetched_before_expiry_and_explained_after(fresh_sim, client_for):
    sim = fresh_sim(signature_ttl=1.0)
    client = client_for(sim)
    ex = client.chat("short-lived", stream=True, max_tokens=3)
    assert fetch_signature(client, ex.chat_id).text
    time.sleep(1.2)
    with pytest.raises(SignatureExpiredError) as info:
        fetch_signature(client, ex.chat_id)
    err = info.value
    assert err.status == 404 and isinstance(err, NotFoundError)
    assert err.server_message == "Chat id not found or expired"
    assert "1200 s" in str(err) and "after a stream has ended" in str(err)


def test_cache_evicts_oldest_beyond_max_entries(fresh_sim, client_for):
    sim = fresh_sim(max_signatures=2)
    client = client_for(sim)
    ids = [client.chat(f"n{i}", stream=False, max_tokens=1).chat_id for i in range(3)]
    with pytest.raises(SignatureExpiredError):
        fetch_signature(client, ids[0])  # a busy node forgets sooner than the TTL
    assert fetch_signature(client, ids[2]).text


def test_unknown_chat_id_is_the_same_explained_404(sim, client_for):
    with pytest.raises(SignatureExpiredError, match="not found"):
        fetch_signature(client_for(sim), "chatcmpl-" + "0" * 32)
