"""The signature primitives ACI uses, each returning a plain answer (no judgement): Ed25519, ECDSA-secp256k1 over
sha256 (64-byte r‖s or 65-byte recoverable r‖s‖v), recoverable secp256k1 over a keccak digest, Ethereum
addresses."""

from __future__ import annotations

import hashlib

import coincurve
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from eth_utils import keccak

from .. import ed25519

__all__ = ["ed25519_ok", "secp256k1_rs_ok", "recover_secp256k1", "compressed", "eth_address", "keccak"]


def ed25519_ok(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Strict Ed25519 (:func:`phalanb.ed25519.verifies`): weak keys and malleable signatures never verify."""
    return ed25519.verifies(public_key, signature, message)


def secp256k1_rs_ok(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """ECDSA-secp256k1, 64-byte r‖s, over sha256(message)."""
    if len(signature) != 64:
        return False
    try:
        pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), public_key)
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
        pub.verify(der, message, ec.ECDSA(hashes.SHA256()))
        return True
    except (InvalidSignature, ValueError):
        return False


def recover_secp256k1(signature: bytes, digest32: bytes) -> bytes | None:
    """The SEC1-compressed public key a 65-byte r‖s‖v signature over ``digest32`` recovers to (v 0–3 or 27–30),
    or None when nothing recovers."""
    if len(signature) != 65 or len(digest32) != 32:
        return None
    v = signature[64]
    if 27 <= v <= 30:
        v -= 27
    if v > 3:
        return None
    try:
        return coincurve.PublicKey.from_signature_and_message(signature[:64] + bytes([v]), digest32,
                                                              hasher=None).format(compressed=True)
    except Exception:  # coincurve raises plain Exception/ValueError for r or s out of range
        return None


def compressed(public_key: bytes) -> bytes | None:
    """SEC1-compressed form of a secp256k1 key given as 33, 64 (x‖y) or 65 bytes; None if not a curve point."""
    if len(public_key) == 64:
        public_key = b"\x04" + public_key
    try:
        return coincurve.PublicKey(public_key).format(compressed=True)
    except Exception:
        return None


def eth_address(public_key: bytes) -> str | None:
    """``0x`` + keccak256(x‖y)[12:] for a secp256k1 key, lower case."""
    if len(public_key) in (33, 65, 64):
        c = compressed(public_key)
        if c is None:
            return None
        xy = coincurve.PublicKey(c).format(compressed=False)[1:]
        return "0x" + keccak(xy)[12:].hex()
    return None


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
