"""Just enough DER to read and write Intel's SGX certificate extension (OID 1.2.840.113741.1.13.1).

``cryptography`` hands the extension over as opaque bytes; its content is a SEQUENCE of (OID, value) pairs,
nested once for the TCB components and the configuration. A full ASN.1 library would be a dependency for ~60
lines of code.
"""

from __future__ import annotations

from ..errors import ParseError

__all__ = ["read_tlv", "read_children", "decode_oid", "encode_oid", "tlv", "seq", "der_int", "octets", "oid_pair"]


def read_tlv(data: bytes, pos: int = 0, *, field: str = "sgx_extension", base: int = 0) -> tuple[int, bytes, int]:
    """(tag, value, next position) of the DER element at ``pos``. Errors name ``field`` and the absolute offset
    ``base + pos`` (``base``: where ``data`` starts in the quote)."""
    if pos + 2 > len(data):
        raise ParseError("DER element truncated", field=field, offset=base + pos)
    tag = data[pos]
    first = data[pos + 1]
    if first < 0x80:
        hdr, size = 2, first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or pos + 2 + n > len(data):
            raise ParseError("bad DER length", field=field, offset=base + pos + 1)
        hdr, size = 2 + n, int.from_bytes(data[pos + 2:pos + 2 + n], "big")
    end = pos + hdr + size
    if end > len(data):
        raise ParseError(f"DER value of {size} bytes exceeds the {len(data) - pos - hdr} left",
                         field=field, offset=base + pos)
    return tag, data[pos + hdr:end], end


def read_children(value: bytes) -> list[tuple[int, bytes]]:
    out = []
    pos = 0
    while pos < len(value):
        tag, v, pos = read_tlv(value, pos)
        out.append((tag, v))
    return out


def decode_oid(value: bytes) -> str:
    if not value:
        raise ParseError("empty OID", field="sgx_extension")
    parts = [value[0] // 40, value[0] % 40]
    n = 0
    for b in value[1:]:
        n = (n << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(n)
            n = 0
    return ".".join(map(str, parts))


def encode_oid(dotted: str) -> bytes:
    nums = [int(x) for x in dotted.split(".")]
    out = bytearray([nums[0] * 40 + nums[1]])
    for n in nums[2:]:
        chunk = [n & 0x7F]
        n >>= 7
        while n:
            chunk.append(0x80 | (n & 0x7F))
            n >>= 7
        out.extend(reversed(chunk))
    return bytes(out)


def tlv(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        head = bytes([tag, n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        head = bytes([tag, 0x80 | len(raw)]) + raw
    return head + value


def seq(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


def der_int(n: int) -> bytes:
    raw = n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big")  # one spare bit keeps it positive
    return tlv(0x02, raw)


def octets(b: bytes) -> bytes:
    return tlv(0x04, b)


def oid_pair(dotted: str, value: bytes) -> bytes:
    return seq(tlv(0x06, encode_oid(dotted)), value)
