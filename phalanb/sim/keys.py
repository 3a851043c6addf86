"""The simulated TEE's signing keys: one secp256k1 (ecdsa) and one ed25519 key per simulator process.

Real services make these keys at process start inside the TEE; the simulator does the same, or derives them
from a seed so tests are reproducible.
"""

from __future__ import annotations

import hashlib
import secrets

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_account import Account
from eth_account.messages import encode_defunct

__all__ = ["SimKeys"]


def _derive(seed: int | None, label: bytes) -> bytes:
    if seed is None:
        return secrets.token_bytes(32)
    return hashlib.sha256(b"phalanb-sim/" + label + b"/" + str(seed).encode()).digest()


class SimKeys:
    """Both signing keys, with the addresses the attestation report publishes."""

    def __init__(self, seed: int | None = None, *, label: bytes = b"signing"):
        self._ecdsa = Account.from_key(_derive(seed, label + b"/secp256k1"))
        self._ed25519 = Ed25519PrivateKey.from_private_bytes(_derive(seed, label + b"/ed25519"))

    @classmethod
    def from_secrets(cls, secp256k1: bytes, ed25519: bytes) -> "SimKeys":
        """Keys made elsewhere (the ACI gateway's KMS-derived E2EE key signs its legacy ``/signature`` texts)."""
        keys = cls.__new__(cls)
        keys._ecdsa = Account.from_key(secp256k1)
        keys._ed25519 = Ed25519PrivateKey.from_private_bytes(ed25519)
        return keys

    def __repr__(self) -> str:
        return f"<SimKeys ecdsa={self.ecdsa_address} ed25519={self.ed25519_public_hex[:16]}…>"

    @property
    def ecdsa_address(self) -> str:
        return self._ecdsa.address

    @property
    def ecdsa_public_key_hex(self) -> str:
        """64-byte x‖y, as dstack v1.1 publishes it in ``signing_public_key``."""
        return self._ecdsa._key_obj.public_key.to_bytes().hex()

    @property
    def ed25519_public_hex(self) -> str:
        raw = self._ed25519.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return raw.hex()

    def address(self, algo: str) -> str:
        return self.ecdsa_address if algo == "ecdsa" else self.ed25519_public_hex

    def address_bytes(self, algo: str) -> bytes:
        return bytes.fromhex(self.address(algo).removeprefix("0x"))

    def sign(self, text: str, algo: str) -> str:
        """The signature as the real proxy returns it: ecdsa ``0x``-hex r‖s‖v (v 27/28), ed25519 plain hex."""
        if algo == "ecdsa":
            signed = self._ecdsa.sign_message(encode_defunct(text=text))
            return "0x" + bytes(signed.signature).hex()
        if algo == "ed25519":
            return self._ed25519.sign(text.encode()).hex()
        raise ValueError(f"unknown signing algorithm {algo!r}")
