"""The API key never appears in a repr, a log, an error message or a saved file."""

import json
import logging

import pytest

from phalanb.vllm.signatures import fetch_signature
from phalanb.wire.apikey import ApiKey, resolve_api_key
from phalanb.wire.client import Client
from phalanb.errors import SecretLeakError, ServiceError


def test_key_is_redacted_in_every_repr(sim, api_key, client_for):
    client = client_for(sim)
    ex = client.chat("repr me", max_tokens=2)
    for obj in (client, ex, ex.request_headers, ex.to_dict(), ApiKey(api_key), fetch_signature(client, ex.chat_id)):
        assert api_key not in repr(obj) and api_key not in str(obj)
    assert ex.request_headers["authorization"] == "<redacted>"


def test_key_never_in_logs_even_at_debug(sim, api_key, client_for, tmp_path):
    log = tmp_path / "debug.log"
    handler = logging.FileHandler(log)
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        client = client_for(sim)
        ex = client.chat("log me", max_tokens=2)
        fetch_signature(client, ex.chat_id)
        client.attestation()
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
        handler.close()
    text = log.read_text()
    assert "chat/completions" in text  # the log did capture the traffic…
    assert api_key not in text  # …but not the key


def test_key_not_in_error_messages(fresh_sim, tmp_path):
    sim = fresh_sim()
    wrong = "sk-this-is-the-wrong-key-000000000000"
    with pytest.raises(ServiceError) as info:
        Client(base_url=sim.base_url, model=sim.model, api_key=wrong).chat("x")
    assert info.value.status == 401 and wrong not in str(info.value) and wrong not in repr(info.value.__dict__)
    (tmp_path / "error.txt").write_text(str(info.value))


def test_key_refused_over_plain_http_to_a_remote_host(api_key):
    with pytest.raises(SecretLeakError, match="plain http") as info:
        Client(base_url="http://example.com/v1", api_key=api_key)
    assert api_key not in str(info.value)
    Client(base_url="http://example.com/v1", api_key=api_key, allow_insecure_http=True).close()
    Client(base_url="http://localhost:8000/v1", api_key=api_key).close()  # loopback is fine
    Client(base_url="http://example.com/v1").close()  # no key, nothing to leak


def test_key_from_environment(monkeypatch):
    monkeypatch.delenv("PHALANB_API_KEY", raising=False)
    monkeypatch.setenv("REDPILL_API_KEY", "sk-from-redpill-env")
    key = resolve_api_key(None)
    assert key.reveal() == "sk-from-redpill-env" and key.source == "$REDPILL_API_KEY"
    monkeypatch.setenv("PHALANB_API_KEY", "sk-from-phalanb-env")
    assert resolve_api_key(None).reveal() == "sk-from-phalanb-env"
    assert resolve_api_key(None, environ={}) is None


def test_key_cannot_be_pickled(api_key):
    import pickle
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(ApiKey(api_key))


def test_saved_exchange_has_no_key(sim, api_key, client_for, tmp_path):
    ex = client_for(sim).chat("save", max_tokens=2)
    path = tmp_path / "exchange.json"
    path.write_text(json.dumps(ex.to_dict()))
    assert api_key not in path.read_text()
