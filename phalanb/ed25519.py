"""Ed25519, strictly: the one verification every path uses (legacy signatures, ACI receipts, sessions, keyset
endorsements, the batch receipt verifier), refusing weak keys and malleable signatures before the curve check.

RFC 8032 verification accepts some keys under which a signature proves nothing. A *small-order* point A (order 1,
2, 4 or 8) makes ``[8][k]A`` vanish from the check ``[8][S]B = [8]R + [8][k]A``, so one signature (R = S·B for any
S) verifies for *every* message: a service that names such a key in its report can "sign" anything. Non-canonical
encodings (y ≥ p) name the same point as a canonical one under a second spelling, so two different "keys" compare
unequal yet verify the same signatures. Both are refused here; libsodium and ed25519-dalek's ``verify_strict`` do
the same. A signature is refused unless its S is below the group order L (S + L verifies alike: a second spelling
of one signature) and its R is canonically encoded and not of small order.

>>> check_public_key(bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"))
>>> check_public_key(bytes(32))                                    # doctest: +ELLIPSIS
Traceback (most recent call last):
...
phalanb.errors.ParseError: ...
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .errors import ParseError, SignatureFormatError

__all__ = ["L", "SMALL_ORDER_POINTS", "check_public_key", "check_signature", "is_small_order", "public_key",
           "verifies", "verify"]

_P = 2**255 - 19
#: The order of the prime subgroup of edwards25519.
L = 2**252 + 27742317777372353535851937790883648493

#: The 8 points of small order on edwards25519 (the torsion subgroup), in canonical encoding: identity (order 1),
#: (0, -1) (order 2), (±sqrt(-1), 0) (order 4) and the four points of order 8.
SMALL_ORDER_POINTS: tuple[bytes, ...] = tuple(bytes.fromhex(h) for h in (
    "0100000000000000000000000000000000000000000000000000000000000000",  # identity (0, 1), order 1
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # (0, -1), order 2
    "0000000000000000000000000000000000000000000000000000000000000080",  # (-sqrt(-1), 0), order 4
    "0000000000000000000000000000000000000000000000000000000000000000",  # (sqrt(-1), 0), order 4 (all zero)
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",  # order 8
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",  # order 8
))
_SMALL_Y = {int.from_bytes(p, "little") & ((1 << 255) - 1) for p in SMALL_ORDER_POINTS}


def is_small_order(raw: bytes) -> bool:
    """True when ``raw`` encodes one of the 8 small-order points, in any encoding (also non-canonical y + p)."""
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    return y % _P in _SMALL_Y


def check_public_key(raw: bytes, *, field: str = "public_key") -> None:
    """Raise :class:`ParseError` unless ``raw`` is 32 bytes, canonically encoded and not of small order.

    Not checked: that the point is on the curve at all (the signature library refuses those when verifying)."""
    if not isinstance(raw, (bytes, bytearray)) or len(raw) != 32:
        size = len(raw) if isinstance(raw, (bytes, bytearray)) else type(raw).__name__
        raise ParseError(f"an ed25519 public key is 32 bytes, got {size}", field=field)
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    if y >= _P:
        raise ParseError("the ed25519 public key is not canonically encoded (its y coordinate is not below "
                         "2^255 - 19): the same point has a shorter spelling, so refuse it", field=field)
    if is_small_order(raw):
        raise ParseError(f"the ed25519 public key {bytes(raw).hex()[:16]}… is a small-order point (all-zero, "
                         "identity or torsion): a signature under it verifies for any message, so it proves "
                         "nothing", field=field)


def check_signature(raw: bytes, *, field: str = "signature") -> None:
    """Raise :class:`SignatureFormatError` unless ``raw`` is 64 bytes R ‖ S with S < L and R canonical and not of
    small order (what RFC 8032 §5.1.7 and ``verify_strict`` require; a loose verifier would take S + L, or an R of
    small order under a weak key, and a service could then "sign" without the key)."""
    if not isinstance(raw, (bytes, bytearray)) or len(raw) != 64:
        size = len(raw) if isinstance(raw, (bytes, bytearray)) else type(raw).__name__
        raise SignatureFormatError(f"an ed25519 signature is 64 bytes R ‖ S, got {size}", field=field)
    if int.from_bytes(raw[32:], "little") >= L:
        raise SignatureFormatError("the ed25519 signature's S is not below the group order L: S + L is a second "
                                   "spelling of another signature (malleable), so refuse it", field=field, offset=32)
    if int.from_bytes(raw[:32], "little") & ((1 << 255) - 1) >= _P:
        raise SignatureFormatError("the ed25519 signature's R is not canonically encoded (its y coordinate is not "
                                   "below 2^255 - 19)", field=field, offset=0)
    if is_small_order(raw[:32]):
        raise SignatureFormatError("the ed25519 signature's R is a small-order point: with a weak key such a "
                                   "signature verifies for any message, so refuse it", field=field, offset=0)


def public_key(raw: bytes, *, field: str = "public_key") -> Ed25519PublicKey:
    """The key ``raw`` names, after :func:`check_public_key` (a :class:`ParseError` otherwise). Lets a caller that
    verifies many signatures under one key check it once."""
    check_public_key(raw, field=field)
    try:
        return Ed25519PublicKey.from_public_bytes(bytes(raw))
    except ValueError:
        raise ParseError("the ed25519 public key is not a point of the curve", field=field) from None


def verify(key: bytes | Ed25519PublicKey, signature: bytes, message: bytes, *, key_field: str = "public_key",
           signature_field: str = "signature") -> None:
    """Verify strictly: the key (raw bytes, checked here, or one :func:`public_key` returned), the signature's
    encoding (:func:`check_signature`) and then RFC 8032. Raises :class:`ParseError` for a weak or malformed key,
    :class:`SignatureFormatError` for a malformed signature or one that does not verify."""
    if not isinstance(key, Ed25519PublicKey):
        key = public_key(key, field=key_field)
    check_signature(signature, field=signature_field)
    try:
        key.verify(bytes(signature), bytes(message))
    except InvalidSignature:
        raise SignatureFormatError("the ed25519 signature does not verify under this public key",
                                   field=signature_field) from None


def verifies(key: bytes | Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    """:func:`verify` as a yes/no: True only when the key, the signature's encoding and the signature all hold."""
    try:
        verify(key, signature, message)
        return True
    except ParseError:
        return False
