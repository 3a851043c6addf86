"""SPDM GET_MEASUREMENTS evidence, decoded (the abi layer: bytes in, named fields out, no cryptography).

An NVIDIA GPU's attestation report is the SPDM 1.1 GET_MEASUREMENTS *request* the driver sent (37 bytes) followed
by the MEASUREMENTS *response* the GPU returned, signed with the GPU's device key (SPEC §9)::

    request   @0   SPDMVersion 0x11, RequestResponseCode 0xE0, Param1, Param2, Nonce (requester, 32), SlotIDParam
    response  @37  SPDMVersion, RequestResponseCode 0x60, Param1, Param2, NumberOfBlocks @41,
                   MeasurementRecordLength L1 (u24 LE) @42, MeasurementRecord @45 (L1 bytes),
                   Nonce (responder, 32) @45+L1, OpaqueLength L2 (u16 LE) @77+L1, OpaqueData @79+L1 (L2 bytes),
                   Signature (ECDSA P-384 r‖s, 96) @79+L1+L2, then anything else is trailing bytes

Every decoded field keeps its absolute offset and size (:meth:`SpdmEvidence.byte_map`) so a notebook can paint the
bytes. Field names follow NVIDIA's own decoder (``spdm_parsed_output.json``, ``OPAQUE_FIELD_ID_*``).

Every length read from the input is checked against the bytes actually left before it is used; anything that does
not fit raises :class:`~phalanb.errors.ParseError` naming the field and its offset.

>>> ev = parse_evidence(bytes.fromhex(open("hopperAttestationReport.txt").read()))   # doctest: +SKIP
>>> ev.request.nonce.hex()[:12], ev.opaque.driver_version, ev.opaque.vbios_version   # doctest: +SKIP
('931d8dd0add2', '550.90.07', '96.00.9F.00.01')
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..errors import ParseError, UnsupportedError

__all__ = [
    "REQUEST_SIZE",
    "SIGNATURE_SIZE",
    "OPAQUE_FIELD_NAMES",
    "FEATURE_FLAGS",
    "ByteField",
    "SpdmRequest",
    "MeasurementBlock",
    "OpaqueField",
    "OpaqueData",
    "SpdmResponse",
    "SpdmEvidence",
    "parse_evidence",
    "parse_opaque_data",
    "render_vbios_version",
]

REQUEST_SIZE = 37
#: ECDSA P-384 signature, raw r‖s (48 + 48 bytes).
SIGNATURE_SIZE = 96
GET_MEASUREMENTS = 0xE0
MEASUREMENTS = 0x60
# SPDM 1.0-1.2 share this layout; 1.3 inserts an 8-byte RequesterContext in both messages.
SUPPORTED_VERSIONS = (0x10, 0x11, 0x12)

#: NVIDIA's names of the opaque-data TLV types (the GPU's ``OPAQUE_FIELD_ID_*`` enumeration).
OPAQUE_FIELD_NAMES: dict[int, str] = {
    1: "OPAQUE_FIELD_ID_CERT_ISSUER_NAME",
    2: "OPAQUE_FIELD_ID_CERT_AUTHORITY_KEY_IDENTIFIER",
    3: "OPAQUE_FIELD_ID_DRIVER_VERSION",
    4: "OPAQUE_FIELD_ID_GPU_INFO",
    5: "OPAQUE_FIELD_ID_SKU",
    6: "OPAQUE_FIELD_ID_VBIOS_VERSION",
    7: "OPAQUE_FIELD_ID_MANUFACTURER_ID",
    8: "OPAQUE_FIELD_ID_TAMPER_DETECTION",
    9: "OPAQUE_FIELD_ID_SMC",
    10: "OPAQUE_FIELD_ID_VPR",
    11: "OPAQUE_FIELD_ID_NVDEC0_STATUS",
    12: "OPAQUE_FIELD_ID_MSRSCNT",
    13: "OPAQUE_FIELD_ID_CPRINFO",
    14: "OPAQUE_FIELD_ID_BOARD_ID",
    15: "OPAQUE_FIELD_ID_CHIP_SKU",
    16: "OPAQUE_FIELD_ID_CHIP_SKU_MOD",
    17: "OPAQUE_FIELD_ID_PROJECT",
    18: "OPAQUE_FIELD_ID_PROJECT_SKU",
    19: "OPAQUE_FIELD_ID_PROJECT_SKU_MOD",
    20: "OPAQUE_FIELD_ID_FWID",
    21: "OPAQUE_FIELD_ID_PROTECTED_PCIE_STATUS",
    22: "OPAQUE_FIELD_ID_SWITCH_PDI",
    23: "OPAQUE_FIELD_ID_FLOORSWEPT_PORTS",
    24: "OPAQUE_FIELD_ID_POSITION_ID",
    25: "OPAQUE_FIELD_ID_LOCK_SWITCH_STATUS",
    32: "OPAQUE_FIELD_ID_GPU_LINK_CONN",
    33: "OPAQUE_FIELD_ID_SYS_ENABLE_STATUS",
    34: "OPAQUE_FIELD_ID_OPAQUE_DATA_VERSION",
    35: "OPAQUE_FIELD_ID_CHIP_INFO",
    36: "OPAQUE_FIELD_ID_FEATURE_FLAG",
    255: "OPAQUE_FIELD_ID_INVALID",
}
_ID = {name.removeprefix("OPAQUE_FIELD_ID_"): num for num, name in OPAQUE_FIELD_NAMES.items()}

#: OPAQUE_FIELD_ID_FEATURE_FLAG values: single GPU passthrough, multi-GPU (NVLink) passthrough, protected PCIe.
FEATURE_FLAGS = {0: "SPT", 1: "MPT", 2: "PPCIE"}

# Fields NVIDIA's tools show as text (NUL-padded ASCII).
_ASCII_FIELDS = {3, 15, 16, 17, 18, 19}


class ByteField(NamedTuple):
    """One entry of the byte map: ``name`` covers ``evidence[offset:offset + size]`` (unpacks as a tuple)."""

    name: str
    offset: int
    size: int

    @property
    def end(self) -> int:
        return self.offset + self.size


class _Reader:
    """Reads little-endian integers and slices, refusing to run past the end it was given."""

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None):
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    @property
    def left(self) -> int:
        return self.end - self.pos

    def take(self, n: int, name: str, what: str = "") -> tuple[bytes, ByteField]:
        if n < 0 or n > self.left:
            detail = f" ({what})" if what else ""
            raise ParseError(f"needs {n} bytes{detail} but only {max(self.left, 0)} are left", field=name,
                             offset=self.pos)
        start = self.pos
        self.pos += n
        return self.data[start:self.pos], ByteField(name, start, n)

    def uint(self, n: int, name: str) -> tuple[int, ByteField]:
        raw, f = self.take(n, name)
        return int.from_bytes(raw, "little"), f


@dataclass(frozen=True)
class SpdmRequest:
    """The GET_MEASUREMENTS request (37 bytes). ``nonce`` is the *requester* nonce: the verifier's challenge."""

    spdm_version: int
    request_response_code: int
    param1: int
    param2: int
    nonce: bytes
    slot_id_param: int
    fields: tuple[ByteField, ...]

    @property
    def signature_requested(self) -> bool:
        return bool(self.param1 & 0x01)

    @property
    def version_text(self) -> str:
        return f"{self.spdm_version >> 4}.{self.spdm_version & 0xF}"

    def to_dict(self) -> dict[str, Any]:
        # NVIDIA's spdm_req_parsed_output.json spelling.
        return {"SPDMVersion": f"0x{self.spdm_version:02x}", "RequestResponseCode": f"0x{self.request_response_code:02x}",
                "Param1": f"0x{self.param1:02x}", "Param2": f"0x{self.param2:02x}", "Nonce": "0x" + self.nonce.hex(),
                "SlotIDParam": f"0x{self.slot_id_param:02x}"}


@dataclass(frozen=True)
class MeasurementBlock:
    """One measurement block: SPDM header (index, spec, size) and the DMTF measurement inside it."""

    index: int
    measurement_specification: int
    measurement_size: int
    dmtf_spec_measurement_value_type: int
    dmtf_spec_measurement_value_size: int
    value: bytes
    offset: int  # absolute offset of the block's first byte (its index)

    @property
    def value_offset(self) -> int:
        return self.offset + 7

    def to_dict(self) -> dict[str, Any]:
        return {"DMTFSpecMeasurementValueType": self.dmtf_spec_measurement_value_type,
                "DMTFSpecMeasurementValueSize": self.dmtf_spec_measurement_value_size,
                "DMTFSpecMeasurementValue": "0x" + self.value.hex()}


@dataclass(frozen=True)
class OpaqueField:
    """One opaque-data TLV. ``value`` is the raw bytes; ``decoded`` is the human form where NVIDIA has one."""

    type: int
    name: str
    size: int
    value: bytes
    offset: int  # absolute offset of the TLV's type field
    decoded: Any = None

    @property
    def value_offset(self) -> int:
        return self.offset + 4


def render_vbios_version(raw: bytes) -> str:
    """VBIOS version as NVIDIA prints it: ``96.00.CF.00.02``.

    The 8 bytes are two little-endian u32 halves; NVIDIA prints the low half as four dotted hex pairs, then the
    last byte of the high half.

    >>> render_vbios_version(bytes.fromhex("0074009620000000"))
    '96.00.74.00.20'
    """
    if len(raw) != 8:
        raise ParseError(f"VBIOS version is {len(raw)} bytes, expected 8", field="OPAQUE_FIELD_ID_VBIOS_VERSION")
    low = int.from_bytes(raw[:4], "little")
    high = int.from_bytes(raw[4:], "little")
    text = f"{low:08X}"
    return ".".join(text[i:i + 2] for i in range(0, 8, 2)) + f".{high & 0xFF:02X}"


def _ascii(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", errors="replace")


def _decode_opaque(ftype: int, raw: bytes, offset: int) -> Any:
    name = OPAQUE_FIELD_NAMES.get(ftype, f"OPAQUE_FIELD_ID_UNKNOWN_{ftype}")
    if ftype in _ASCII_FIELDS:
        return _ascii(raw)
    if ftype == _ID["VBIOS_VERSION"]:
        if len(raw) != 8 and re.fullmatch(rb"[0-9A-Fa-f]{2}(\.[0-9A-Fa-f]{2}){4}\0*", raw):
            return raw.rstrip(b"\0").decode("ascii").upper()  # NVSwitch: the version as ASCII text
        return render_vbios_version(raw)
    if ftype == _ID["MSRSCNT"]:
        if len(raw) % 4:
            raise ParseError(f"{len(raw)} bytes is not a whole number of u32 counts", field=name, offset=offset)
        return [int.from_bytes(raw[i:i + 4], "little") for i in range(0, len(raw), 4)]
    if ftype in (_ID["OPAQUE_DATA_VERSION"], _ID["FEATURE_FLAG"]) and 0 < len(raw) <= 8:
        number = int.from_bytes(raw, "little")
        if ftype == _ID["FEATURE_FLAG"]:
            return FEATURE_FLAGS.get(number, f"unknown ({number})")
        return number
    if ftype in (_ID["NVDEC0_STATUS"], _ID["PROTECTED_PCIE_STATUS"]) and len(raw) == 1:
        # NVIDIA's claims show 0x55 as "U" (the byte as a character); keep the number beside it.
        return chr(raw[0]) if 0x20 <= raw[0] < 0x7F else raw[0]
    return raw.hex()


@dataclass(frozen=True)
class OpaqueData:
    """The opaque-data TLVs in order, with named accessors for the fields a verifier reports."""

    fields: tuple[OpaqueField, ...]
    offset: int
    size: int

    def get(self, name: str) -> OpaqueField | None:
        """The field named ``name`` (``"FWID"`` or ``"OPAQUE_FIELD_ID_FWID"``), or None when absent."""
        full = name if name.startswith("OPAQUE_FIELD_ID_") else "OPAQUE_FIELD_ID_" + name
        for f in self.fields:
            if f.name == full:
                return f
        return None

    def _decoded(self, name: str) -> Any:
        f = self.get(name)
        return None if f is None else f.decoded

    @property
    def driver_version(self) -> str | None:
        return self._decoded("DRIVER_VERSION")

    @property
    def vbios_version(self) -> str | None:
        return self._decoded("VBIOS_VERSION")

    @property
    def chip_sku(self) -> str | None:
        return self._decoded("CHIP_SKU")

    @property
    def chip_sku_mod(self) -> str | None:
        return self._decoded("CHIP_SKU_MOD")

    @property
    def project(self) -> str | None:
        return self._decoded("PROJECT")

    @property
    def project_sku(self) -> str | None:
        return self._decoded("PROJECT_SKU")

    @property
    def project_sku_mod(self) -> str | None:
        return self._decoded("PROJECT_SKU_MOD")

    @property
    def fwid(self) -> bytes | None:
        f = self.get("FWID")
        return None if f is None else f.value

    @property
    def opaque_data_version(self) -> int | None:
        return self._decoded("OPAQUE_DATA_VERSION")

    @property
    def feature_flag(self) -> str | None:
        return self._decoded("FEATURE_FLAG")

    @property
    def msrscnt(self) -> list[int] | None:
        return self._decoded("MSRSCNT")

    def to_dict(self) -> dict[str, Any]:
        """NVIDIA's ``OpaqueDataField`` spelling: raw values as ``0x…`` hex, the counts as a list."""
        out: dict[str, Any] = {}
        for f in self.fields:
            out[f.name] = f.decoded if f.type == _ID["MSRSCNT"] else "0x" + f.value.hex()
        return out

    def summary(self) -> dict[str, Any]:
        """The decoded values by short name (``driver_version``, ``vbios_version``, …)."""
        return {f.name.removeprefix("OPAQUE_FIELD_ID_").lower(): f.decoded for f in self.fields}


def parse_opaque_data(data: bytes, base_offset: int = 0) -> OpaqueData:
    """Decode a run of opaque-data TLVs (type u16, size u16, value). ``base_offset`` makes offsets absolute."""
    r = _Reader(data)
    out = []
    while r.left:
        start = r.pos
        ftype, _ = _field_uint(r, 2, "OpaqueData.DataType", base_offset)
        size, _ = _field_uint(r, 2, "OpaqueData.DataSize", base_offset)
        name = OPAQUE_FIELD_NAMES.get(ftype, f"OPAQUE_FIELD_ID_UNKNOWN_{ftype}")
        if size > r.left:
            raise ParseError(f"DataSize {size} of {name} exceeds the {r.left} bytes left in the opaque data",
                             field=name, offset=base_offset + start + 2)
        value = data[r.pos:r.pos + size]
        r.pos += size
        out.append(OpaqueField(ftype, name, size, value, base_offset + start,
                               _decode_opaque(ftype, value, base_offset + start + 4)))
    return OpaqueData(tuple(out), base_offset, len(data))


def _field_uint(r: _Reader, n: int, name: str, base: int) -> tuple[int, int]:
    if r.left < n:
        raise ParseError(f"needs {n} bytes but only {r.left} are left", field=name, offset=base + r.pos)
    v = int.from_bytes(r.data[r.pos:r.pos + n], "little")
    r.pos += n
    return v, base + r.pos - n


@dataclass(frozen=True)
class SpdmResponse:
    """The MEASUREMENTS response. ``nonce`` is the *responder* nonce (the GPU's own randomness: never compared)."""

    spdm_version: int
    request_response_code: int
    param1: int
    param2: int
    number_of_blocks: int
    measurement_record_length: int
    measurement_blocks: tuple[MeasurementBlock, ...]
    nonce: bytes
    opaque_length: int
    opaque_data: OpaqueData
    signature: bytes
    signature_offset: int
    fields: tuple[ByteField, ...]

    def to_dict(self) -> dict[str, Any]:
        """The shape of NVIDIA's ``spdm_parsed_output.json``."""
        return {
            "SPDMVersion": f"0x{self.spdm_version:02x}",
            "RequestResponseCode": f"0x{self.request_response_code:02x}",
            "Param1": f"0x{self.param1:02x}",
            "Param2": f"0x{self.param2:02x}",
            "NumberOfBlocks": self.number_of_blocks,
            "MeasurementRecordLength": self.measurement_record_length,
            "Nonce": "0x" + self.nonce.hex(),
            "OpaqueLength": self.opaque_length,
            "Signature": "0x" + self.signature.hex(),
            "MeasurementRecord": {
                "NumberOfBlocks": self.number_of_blocks,
                "MeasurementBlocks": {str(b.index): b.to_dict() for b in self.measurement_blocks},
            },
            "OpaqueData": {"OpaqueDataField": self.opaque_data.to_dict()},
        }


@dataclass(frozen=True)
class SpdmEvidence:
    """A whole GPU attestation report: request, response, what is signed and what trails."""

    raw: bytes
    request: SpdmRequest
    response: SpdmResponse
    trailing: bytes = field(default=b"")

    @property
    def requester_nonce(self) -> bytes:
        return self.request.nonce

    @property
    def opaque(self) -> OpaqueData:
        return self.response.opaque_data

    @property
    def signed_bytes(self) -> bytes:
        """Everything before the signature: request ‖ response up to the signature (what the GPU signed)."""
        return self.raw[:self.response.signature_offset]

    @property
    def signature(self) -> bytes:
        return self.response.signature

    @property
    def signature_offset(self) -> int:
        return self.response.signature_offset

    @property
    def measurements(self) -> dict[int, bytes]:
        return {b.index: b.value for b in self.response.measurement_blocks}

    def byte_map(self) -> list[ByteField]:
        """Every decoded field with its absolute offset and size, in byte order (for a notebook's byte map)."""
        out = list(self.request.fields) + list(self.response.fields)
        for b in self.response.measurement_blocks:
            out.append(ByteField(f"MeasurementBlock[{b.index}]", b.offset, 4 + b.measurement_size))
        for f in self.opaque.fields:
            out.append(ByteField(f.name, f.offset, 4 + f.size))
        if self.trailing:
            out.append(ByteField("trailing", len(self.raw) - len(self.trailing), len(self.trailing)))
        return sorted(out, key=lambda f: (f.offset, -f.size))


def parse_evidence(data: bytes) -> SpdmEvidence:
    """Decode request ‖ response. Raises :class:`ParseError` naming the field and offset of the first problem.

    The signature is located *by offset* (79 + L1 + L2 from the response start), never as "the last 96 bytes":
    one real report carries a trailing byte after it, which is kept in ``trailing``.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ParseError(f"evidence must be bytes, got {type(data).__name__}", field="evidence")
    data = bytes(data)
    r = _Reader(data)
    # --- request -------------------------------------------------------------------------------------------
    if len(data) < REQUEST_SIZE:
        raise ParseError(f"evidence is {len(data)} bytes; the GET_MEASUREMENTS request alone is {REQUEST_SIZE}",
                         field="request", offset=0)
    req_fields = []
    version, f = r.uint(1, "request.SPDMVersion"); req_fields.append(f)
    code, f = r.uint(1, "request.RequestResponseCode"); req_fields.append(f)
    if code != GET_MEASUREMENTS:
        raise ParseError(f"0x{code:02x} is not GET_MEASUREMENTS (0xe0): this is not an SPDM measurement request",
                         field="request.RequestResponseCode", offset=1)
    if version not in SUPPORTED_VERSIONS:
        raise UnsupportedError(f"SPDM version 0x{version:02x} at offset 0: phalanb reads SPDM 1.0-1.2 "
                               "GET_MEASUREMENTS (1.3 adds a RequesterContext and is not handled)")
    p1, f = r.uint(1, "request.Param1"); req_fields.append(f)
    p2, f = r.uint(1, "request.Param2"); req_fields.append(f)
    nonce, f = r.take(32, "request.Nonce"); req_fields.append(f)
    slot, f = r.uint(1, "request.SlotIDParam"); req_fields.append(f)
    request = SpdmRequest(version, code, p1, p2, nonce, slot, tuple(req_fields))
    if not request.signature_requested:
        raise UnsupportedError("the GET_MEASUREMENTS request did not ask for a signature (Param1 bit 0 is clear "
                               "at offset 2): unsigned measurements prove nothing and are not attestation evidence")
    # --- response header -----------------------------------------------------------------------------------
    rf = []
    rversion, f = r.uint(1, "response.SPDMVersion"); rf.append(f)
    rcode, f = r.uint(1, "response.RequestResponseCode"); rf.append(f)
    if rcode != MEASUREMENTS:
        hint = " (0x7f is an SPDM ERROR response)" if rcode == 0x7F else ""
        raise ParseError(f"0x{rcode:02x} is not MEASUREMENTS (0x60){hint}", field="response.RequestResponseCode",
                         offset=f.offset)
    if rversion != version:
        raise ParseError(f"response SPDMVersion 0x{rversion:02x} differs from the request's 0x{version:02x}",
                         field="response.SPDMVersion", offset=REQUEST_SIZE)
    rp1, f = r.uint(1, "response.Param1"); rf.append(f)
    rp2, f = r.uint(1, "response.Param2"); rf.append(f)
    nblocks, f = r.uint(1, "response.NumberOfBlocks"); rf.append(f)
    l1, f = r.uint(3, "response.MeasurementRecordLength"); rf.append(f)
    if l1 > r.left:
        raise ParseError(f"MeasurementRecordLength (L1) {l1} exceeds the {r.left} bytes left",
                         field="response.MeasurementRecordLength", offset=f.offset)
    record, f = r.take(l1, "response.MeasurementRecord"); rf.append(f)
    blocks = _parse_record(record, f.offset, nblocks)
    rnonce, f = r.take(32, "response.Nonce"); rf.append(f)
    l2, f = r.uint(2, "response.OpaqueLength"); rf.append(f)
    if l2 > r.left:
        raise ParseError(f"OpaqueLength (L2) {l2} exceeds the {r.left} bytes left",
                         field="response.OpaqueLength", offset=f.offset)
    opaque_raw, f = r.take(l2, "response.OpaqueData"); rf.append(f)
    opaque = parse_opaque_data(opaque_raw, f.offset)
    sig, f = r.take(SIGNATURE_SIZE, "response.Signature", "ECDSA P-384 r‖s"); rf.append(f)
    trailing = data[r.pos:]
    response = SpdmResponse(rversion, rcode, rp1, rp2, nblocks, l1, blocks, rnonce, l2, opaque, sig, f.offset,
                            tuple(rf))
    return SpdmEvidence(data, request, response, trailing)


def _parse_record(record: bytes, base: int, expected_blocks: int) -> tuple[MeasurementBlock, ...]:
    # Written with struct and explicit bounds rather than the generic reader: 64 blocks per GPU, 8 GPUs per
    # payload, and this loop was most of the decoding time.
    blocks = []
    pos, end = 0, len(record)
    while pos < end:
        index = record[pos]
        if end - pos < 4:
            raise ParseError(f"a block header needs 4 bytes but only {end - pos} are left in the record",
                             field=f"MeasurementBlock[{index}]", offset=base + pos)
        _, spec, size = _BLOCK_HEADER.unpack_from(record, pos)
        if size > end - pos - 4:
            raise ParseError(f"MeasurementSize {size} exceeds the {end - pos - 4} bytes left in the measurement "
                             "record", field=f"MeasurementBlock[{index}].MeasurementSize", offset=base + pos + 2)
        if size < 3:
            raise ParseError(f"MeasurementSize {size} is too small for the 3-byte DMTF measurement header",
                             field=f"MeasurementBlock[{index}].MeasurementSize", offset=base + pos + 2)
        vtype, vsize = _DMTF_HEADER.unpack_from(record, pos + 4)
        if vsize != size - 3:
            raise ParseError(f"DMTFSpecMeasurementValueSize {vsize} does not fill the {size - 3} bytes the "
                             f"block's MeasurementSize {size} leaves",
                             field=f"MeasurementBlock[{index}].DMTFSpecMeasurementValueSize", offset=base + pos + 5)
        blocks.append(MeasurementBlock(index, spec, size, vtype, vsize, record[pos + 7:pos + 4 + size], base + pos))
        pos += 4 + size
    if len(blocks) != expected_blocks:
        raise ParseError(f"the record holds {len(blocks)} measurement blocks but NumberOfBlocks says "
                         f"{expected_blocks}", field="response.NumberOfBlocks", offset=base - 4)
    return tuple(blocks)


_BLOCK_HEADER = struct.Struct("<BBH")  # Index, MeasurementSpecification, MeasurementSize
_DMTF_HEADER = struct.Struct("<BH")  # DMTFSpecMeasurementValueType, DMTFSpecMeasurementValueSize
