"""Weak ed25519 public keys: refused before any signature is checked against them.

RFC 8032 verification accepts some keys under which a signature proves nothing. A *small-order* point A (order 1,
2, 4 or 8) makes ``[8][k]A`` vanish from the check ``[8][S]B = [8]R + [8][k]A``, so one signature (R = S·B for any
S) verifies for *every* message: a service that names such a key in its report can "sign" anything. Non-canonical
encodings (y ≥ p) name the same point as a canonical one under a second spelling, so two different "keys" compare
unequal yet verify the same signatures. Both are refused here; libsodium and ed25519-dalek's ``verify_strict`` do
the same.

>>> check_public_key(bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"))
>>> check_public_key(bytes(32))                                    # doctest: +ELLIPSIS
Traceback (most recent call last):
...
phalanb.errors.ParseError: ...
"""

from __future__ import annotations

from .errors import ParseError

__all__ = ["SMALL_ORDER_POINTS", "check_public_key", "is_small_order"]

_P = 2**255 - 19

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
