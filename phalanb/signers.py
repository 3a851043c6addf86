"""Who signed a text: the address EIP-191 recovery gives (ecdsa, secp256k1) or the ed25519 key that verifies.

The model servers sign ``"<sha256(request)>:<sha256(response)>"`` this way, and an ACI gateway's legacy answers do
too; both protocols ask here, so the rule (27/28 recovery byte, weak ed25519 keys refused) is written once.

>>> recover_signer("text", "11" * 64, "ed25519")
Traceback (most recent call last):
phalanb.errors.SignatureFormatError: signing_address: ed25519 signatures cannot be recovered: give the public key (the report's signing_address)
"""

from __future__ import annotations

from eth_account import Account
from eth_account.messages import encode_defunct

from . import ed25519
from .errors import ParseError, SignatureFormatError

__all__ = ["ALGOS", "recover_signer"]

#: The signing algorithms a signature names (the service's ``signing_algo``).
ALGOS = ("ecdsa", "ed25519")


def _hex_bytes(value: str, *, field_name: str, expected_len: int) -> bytes:
    if not isinstance(value, str):
        raise SignatureFormatError("must be a hex string", field=field_name)
    body = value[2:] if value[:2] in ("0x", "0X") else value
    if len(body) % 2:
        raise SignatureFormatError(f"odd number of hex digits ({len(body)})", field=field_name)
    try:
        raw = bytes.fromhex(body)
    except ValueError:
        bad = next(i for i, c in enumerate(body) if c not in "0123456789abcdefABCDEF")
        raise SignatureFormatError(f"not hex: character {body[bad]!r} at position {bad}", field=field_name,
                                   offset=bad) from None
    if len(raw) != expected_len:
        raise SignatureFormatError(f"{len(raw)} bytes; expected {expected_len}", field=field_name)
    return raw


def recover_signer(text: str, signature: str, algo: str = "ecdsa", *, public_key: str | None = None) -> str:
    """The signer of ``text``.

    ecdsa: the checksummed address recovered by EIP-191 (``0x`` optional, v must be 27 or 28).
    ed25519: there is no recovery, so the public key (32-byte hex, the report's ``signing_address``) must be given;
    returns it (lowercase hex) when the signature verifies and raises :class:`SignatureFormatError` otherwise.
    """
    if algo == "ecdsa":
        sig = _hex_bytes(signature, field_name="signature", expected_len=65)
        if sig[64] not in (27, 28):
            raise SignatureFormatError(f"recovery byte v is {sig[64]}; EIP-191 signatures use 27 or 28",
                                       field="signature", offset=64)
        try:
            return Account.recover_message(encode_defunct(text=text), signature=sig)
        except Exception as exc:  # eth-keys raises its own types for r/s out of range
            raise SignatureFormatError(f"no public key recovers from this signature ({exc})",
                                       field="signature") from None
    if algo == "ed25519":
        sig = _hex_bytes(signature, field_name="signature", expected_len=64)
        if public_key is None:
            raise SignatureFormatError("ed25519 signatures cannot be recovered: give the public key "
                                       "(the report's signing_address)", field="signing_address")
        pub = _hex_bytes(public_key, field_name="signing_address", expected_len=32)
        try:
            key = ed25519.public_key(pub, field="signing_address")
        except ParseError as exc:
            raise SignatureFormatError(exc.reason, field="signing_address") from None
        ed25519.verify(key, sig, text.encode("utf-8", "surrogatepass"))
        return pub.hex()
    raise SignatureFormatError(f"unknown signing algorithm {algo!r}; expected one of {', '.join(ALGOS)}",
                               field="signing_algo")
