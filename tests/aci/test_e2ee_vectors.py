"""E2EE v2 against the protocol's own vectors (fixtures/aci/test_vectors.json#e2ee_v2, from the gateway's
spec/e2ee-v2-test-vectors.md) and the derived field example (fixed ephemeral seed 0x04×32, GCM nonce 0x05×12)."""

from __future__ import annotations

import json

import pytest

from phalanb.aci import e2ee_crypto as ec
from phalanb.aci.e2ee import AttestedE2EEKey, prepare_request
from phalanb.errors import E2EEError
from phalanb.sim.e2ee import E2EEService, ServiceE2EEKey

from tests.conftest import FIXTURES  # noqa: E402  (found, or fetched and checked, once per run)
V = json.loads((FIXTURES / "aci" / "test_vectors.json").read_text())["e2ee_v2"]
D = V["derived_field_example"]


def _script(*chunks: bytes):
    """An rng that hands out exactly these bytes, in order, and fails loudly if asked for more or other sizes."""
    queue = list(chunks)

    def draw(n: int) -> bytes:
        assert queue, "the code drew more randomness than the vector fixes"
        head = queue.pop(0)
        assert len(head) == n, f"asked for {n} bytes where the vector fixes {len(head)}"
        return head

    draw.queue = queue  # type: ignore[attr-defined]
    return draw


def test_service_public_key_derives_from_the_seed():
    key = ServiceE2EEKey.from_seed(bytes.fromhex(V["service_seed_hex"]), key_id="e2ee-1")
    assert key.entry() == {"key_id": "e2ee-1", "algo": V["suite"], "public_key": V["service_public_key"]}


def test_request_aad_is_byte_exact():
    o = V["request_aad"]["object"]
    aad = ec.request_aad(o["algo"], o["model"], o["field"], o["nonce"], o["ts"])
    assert aad == V["request_aad"]["jcs"].encode()


def test_response_aad_is_byte_exact():
    o = V["response_aad"]["object"]
    aad = ec.response_aad(o["algo"], o["model"], o["id"], o["field"], o["nonce"], o["ts"])
    assert aad == V["response_aad"]["jcs"].encode()


def test_aad_ts_is_an_integer_even_when_given_as_text_digits():
    o = V["request_aad"]["object"]
    assert b'"ts":1750000000}' in ec.request_aad(o["algo"], o["model"], o["field"], o["nonce"], "1750000000")


def test_derived_field_example_is_byte_exact():
    suite = ec.SUITES[V["suite"]]
    assert suite.hkdf_info == D["hkdf_info"].encode()
    sealed = ec.seal_field(suite, bytes.fromhex(V["service_public_key"]), D["plaintext"].encode(),
                           V["request_aad"]["jcs"].encode(),
                           rng=_script(bytes.fromhex(D["ephemeral_seed_hex"]), bytes.fromhex(D["gcm_nonce_hex"])))
    assert sealed == D["field_value_hex"]


def test_derived_field_example_opens_with_the_service_key():
    suite = ec.SUITES[V["suite"]]
    service = suite.private_from_bytes(bytes.fromhex(V["service_seed_hex"]))
    out = ec.open_field(suite, service, D["field_value_hex"], V["request_aad"]["jcs"].encode(), field=D["field"])
    assert out == D["plaintext"].encode()


def test_key_derivation_is_hkdf_over_the_x25519_output():
    # The AES key from the ephemeral side equals the one from the service side, and it is what opens the vector.
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    suite = ec.SUITES[V["suite"]]
    eph = suite.private_from_bytes(bytes.fromhex(D["ephemeral_seed_hex"]))
    svc = suite.private_from_bytes(bytes.fromhex(V["service_seed_hex"]))
    k1 = suite.aes_key(suite.shared_secret(eph, bytes.fromhex(V["service_public_key"])))
    k2 = suite.aes_key(suite.shared_secret(svc, suite.public_bytes(eph)))
    assert k1 == k2 and len(k1) == 32
    blob = bytes.fromhex(D["field_value_hex"])
    assert blob[:32] == suite.public_bytes(eph) and blob[32:44] == bytes.fromhex(D["gcm_nonce_hex"])
    assert AESGCM(k1).decrypt(blob[32:44], blob[44:], V["request_aad"]["jcs"].encode()) == b"hi"


def test_prepare_request_reproduces_the_vector_field_and_headers():
    key = AttestedE2EEKey.UNVERIFIED_override(V["service_public_key"], V["suite"])
    rng = _script(bytes([0x02]) * 32, bytes.fromhex(V["request_nonce"]),
                  bytes.fromhex(D["ephemeral_seed_hex"]), bytes.fromhex(D["gcm_nonce_hex"]))
    req = prepare_request({"model": V["model"], "messages": [{"role": "user", "content": D["plaintext"]}]},
                          model_key=key, now=V["request_timestamp"], rng=rng)
    assert rng.queue == []
    assert req.body == (b'{"model":"demo-model","messages":[{"role":"user","content":"'
                        + D["field_value_hex"].encode() + b'"}]}')
    assert req.headers["X-E2EE-Nonce"] == V["request_nonce"]
    assert req.headers["X-E2EE-Timestamp"] == "1750000000"
    assert req.headers["X-Model-Pub-Key"] == V["service_public_key"]
    assert req.restored_body == b'{"model":"demo-model","messages":[{"role":"user","content":"hi"}]}'


def test_the_simulated_service_opens_the_vector_request():
    svc = E2EEService([ServiceE2EEKey.from_seed(bytes.fromhex(V["service_seed_hex"]), key_id="e2ee-1")],
                      clock=lambda: V["request_timestamp"])
    client = ec.SUITES[V["suite"]].public_bytes(ec.SUITES[V["suite"]].private_from_bytes(bytes([2]) * 32)).hex()
    body = b'{"model":"demo-model","messages":[{"role":"user","content":"' + D["field_value_hex"].encode() + b'"}]}'
    opened = svc.open_request({"X-E2EE-Version": "2", "X-Client-Pub-Key": client,
                               "X-Model-Pub-Key": V["service_public_key"], "X-E2EE-Nonce": V["request_nonce"],
                               "X-E2EE-Timestamp": "1750000000"}, body, "/v1/chat/completions")
    assert opened.body == b'{"model":"demo-model","messages":[{"role":"user","content":"hi"}]}'
    assert opened.fields == ("messages.0.content",)


@pytest.mark.parametrize("value, text", [
    (1.0, "1.0"), (0.7, "0.7"), (100.0, "100.0"), (1e15, "1000000000000000.0"), (1e16, "1e16"),
    (1.2345678901234568e17, "1.2345678901234568e17"), (0.0001, "0.0001"), (1e-5, "0.00001"), (1e-7, "1e-7"),
    (1.5e-7, "1.5e-7"), (-2.5, "-2.5"), (-0.0, "-0.0"), (5e-324, "5e-324"), (12.34, "12.34"),
])
def test_restored_body_floats_are_printed_as_serde_json_prints_them(value, text):
    assert ec.serde_dumps(value) == text.encode()


def test_restored_body_keeps_key_order_and_raw_non_ascii():
    raw = '{"z":1,"a":"é\\u00e9\\n\\u0001","m":[true,null,2.50]}'.encode()
    assert ec.serde_dumps(ec.serde_loads(raw)) == '{"z":1,"a":"éé\\n\\u0001","m":[true,null,2.5]}'.encode()


def test_restored_body_numbers_follow_serde_json_integer_rules():
    # -0 becomes the float -0.0; beyond u64 / below i64 an integer becomes a float.
    raw = b'{"a":-0,"b":18446744073709551615,"c":18446744073709551616,"d":-9223372036854775809}'
    assert ec.serde_dumps(ec.serde_loads(raw)) == \
        b'{"a":-0.0,"b":18446744073709551615,"c":1.8446744073709552e19,"d":-9.223372036854776e18}'
    assert ec.serde_dumps(ec.serde_loads(b"[-0]")) == b"[-0.0]"


@pytest.mark.parametrize("raw", [b'{"a":NaN}', b'{"a":1e400}', b'{"a":"\\ud800"}', b'{"a":', b"\xff",
                                 b'{"a":-0,"a":5}'])
def test_json_the_gateway_refuses_is_refused(raw):
    with pytest.raises(E2EEError):
        ec.serde_loads(raw)
