"""A verified PCK chain is remembered — and reused only for the same bytes, the same root and the same time."""

from __future__ import annotations

import base64

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from phalanb.tdx import TrustRoot, parse_quote, verify_quote_offline
from phalanb.tdx.sim import simulated_root
from phalanb.tdx.verify import clear_chain_cache

QUOTE = "dcap-qvl/tdx_quote"
AT = 1752919234  # the ground truth's verify_now for this quote


def _with_cert(raw: bytes, index: int, der: bytes) -> bytes:
    """The quote with PCK certificate ``index`` replaced by ``der`` (same length, so every offset stays)."""
    old = parse_quote(raw).pck_chain_pem[index].encode().rstrip(b"\n")
    body = base64.b64encode(der).decode()
    new = ("-----BEGIN CERTIFICATE-----\n" + "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
           + "\n-----END CERTIFICATE-----").encode()
    assert len(new) == len(old)
    start = raw.index(old)
    return raw[:start] + new + raw[start + len(old):]


def _steps(result) -> list[tuple]:
    return [(s.name, s.ok, s.reason, s.inputs) for s in result.steps]


def test_a_remembered_chain_gives_the_same_steps_as_a_cold_verification(load):
    raw = load(QUOTE)
    clear_chain_cache()
    cold = verify_quote_offline(raw, at=AT)
    warm = verify_quote_offline(raw, at=AT)
    assert cold.ok and _steps(warm) == _steps(cold) and warm.pck == cold.pck and warm.ca == cold.ca


@pytest.mark.parametrize("index", [0, 1, 2], ids=["pck-leaf", "platform-ca", "root-ca"])
def test_a_flipped_byte_in_a_chain_certificate_is_never_covered_by_the_remembered_chain(load, index):
    raw = load(QUOTE)
    assert verify_quote_offline(raw, at=AT).ok  # the good chain is remembered now
    der = bytearray(x509.load_pem_x509_certificate(parse_quote(raw).pck_chain_pem[index].encode())
                    .public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the certificate's signature: it still parses, only the cryptography can tell
    bad = _with_cert(raw, index, bytes(der))
    x509.load_pem_x509_certificate(parse_quote(bad).pck_chain_pem[index].encode())
    result = verify_quote_offline(bad, at=AT)
    assert not result.step("pck_chain").ok, result.step("pck_chain").reason
    assert verify_quote_offline(raw, at=AT).ok  # and the good chain is still good


def test_a_chain_remembered_at_one_time_is_checked_again_at_another(load):
    raw = load(QUOTE)
    assert verify_quote_offline(raw, at=AT).ok
    leaf = x509.load_pem_x509_certificate(parse_quote(raw).pck_chain_pem[0].encode())
    later = leaf.not_valid_after_utc.timestamp() + 86400
    step = verify_quote_offline(raw, at=later).step("pck_chain")
    assert not step.ok and "valid" in step.reason


def test_a_chain_remembered_under_one_root_is_checked_again_under_another(load):
    raw = load(QUOTE)
    assert verify_quote_offline(raw, at=AT).ok
    other = simulated_root()
    assert other.der != TrustRoot.intel().der
    assert not verify_quote_offline(raw, at=AT, root=other).step("pck_chain").ok
