"""Intel TDX quotes (DCAP v4 and v5) as plain data: bytes in, dataclasses out. No crypto, no policy.

Every value keeps its absolute offset and size so a notebook can draw the byte map and a reader can find any
field in a hex dump. Names follow Intel's (``mr_td``, ``rt_mr0``…``rt_mr3``, ``report_data``, ``td_attributes``),
so the spec and this code can be read side by side (SPEC §7).

>>> q = parse_quote(open("tdx_quote", "rb").read())          # doctest: +SKIP
>>> q.header.version, q.body.mr_td.hex()[:16]                  # doctest: +SKIP
(4, '91eb2b44d141d4ec')
>>> for row in q.fields(): print(row.name, row.offset, row.size)   # doctest: +SKIP

The input may be raw bytes, hex, ``0x``-hex or base64 (services publish all four). SGX quotes are recognised and
refused with :class:`~phalanb.errors.UnsupportedError`; malformed input raises :class:`~phalanb.errors.ParseError`
naming the field and the offset, never ``IndexError`` or ``struct.error``.
"""

from __future__ import annotations

import base64
import binascii
import re
import string
from dataclasses import dataclass, field
from typing import Any, Iterator, NamedTuple

from ..errors import InputError, ParseError, UnsupportedError
from . import _der

__all__ = [
    "Field",
    "QuoteHeader",
    "TdReport",
    "TdAttributes",
    "EnclaveReport",
    "QuoteSignatureData",
    "Quote",
    "parse_quote",
    "decode_quote_input",
    "INTEL_QE_VENDOR_ID",
    "TEE_TYPE_TDX",
    "TEE_TYPE_SGX",
]

TEE_TYPE_SGX = 0x00000000
TEE_TYPE_TDX = 0x00000081
ATT_KEY_ECDSA_P256 = 2
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")

HEADER_SIZE = 48
TD10_SIZE = 584
TD15_SIZE = 648
ENCLAVE_REPORT_SIZE = 384

# v5 body types (Intel DCAP QuoteGenerator, sgx_quote_5.h).
BODY_SGX_ENCLAVE = 1
BODY_TD10 = 2
BODY_TD15 = 3

# Certification data types (Intel "ECDSA Quote Library API", table "Certification Data Type").
CERT_PCK_CHAIN = 5
CERT_QE_REPORT = 6

# A quote is a few kB; the largest real buffer we have seen is 8000 bytes. Anything far beyond is not a quote,
# and refusing it early keeps a hostile input from costing memory in hex/base64 decoding.
MAX_INPUT_BYTES = 1 << 20


class Field(NamedTuple):
    """One row of the byte map: where a value sits in the quote and what it means.

    A named tuple, so ``for name, offset, size, value, meaning in quote.fields()`` works as well as
    ``row.offset``."""

    name: str
    offset: int
    size: int
    value: Any
    meaning: str

    @property
    def end(self) -> int:
        return self.offset + self.size

    def value_text(self) -> str:
        if isinstance(self.value, (bytes, bytearray)):
            return bytes(self.value).hex()
        return str(self.value)


class _Reader:
    """Reads named fields from ``data`` and records where each one was, refusing to read past ``limit``."""

    def __init__(self, data: bytes, pos: int = 0, limit: int | None = None, prefix: str = ""):
        self.data = data
        self.pos = pos
        self.limit = len(data) if limit is None else limit
        self.prefix = prefix
        self.fields: list[Field] = []

    def left(self) -> int:
        return self.limit - self.pos

    def take(self, name: str, size: int, meaning: str, *, keep: bool = True) -> bytes:
        if size < 0 or size > self.left():
            raise ParseError(
                f"needs {size} bytes but only {max(self.left(), 0)} are left "
                f"(the quote is truncated or a length field is wrong)",
                field=self.prefix + name, offset=self.pos)
        value = self.data[self.pos:self.pos + size]
        if keep:
            self.fields.append(Field(self.prefix + name, self.pos, size, value, meaning))
        self.pos += size
        return value

    def uint(self, name: str, size: int, meaning: str) -> int:
        start = self.pos
        raw = self.take(name, size, meaning, keep=False)
        value = int.from_bytes(raw, "little")
        self.fields.append(Field(self.prefix + name, start, size, value, meaning))
        return value

    def length(self, name: str, size: int, meaning: str) -> int:
        """A length field: read it and check it against the bytes that are actually left."""
        start = self.pos
        value = self.uint(name, size, meaning)
        if value > self.left():
            raise ParseError(f"{name} {value} exceeds the {self.left()} bytes left", field=self.prefix + name,
                             offset=start)
        return value


# --------------------------------------------------------------------------------------------------------------
# Header

@dataclass(frozen=True)
class QuoteHeader:
    version: int
    att_key_type: int
    tee_type: int
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    user_data: bytes

    @property
    def is_intel_qe(self) -> bool:
        return self.qe_vendor_id == INTEL_QE_VENDOR_ID


def _read_header(r: _Reader) -> QuoteHeader:
    version = r.uint("version", 2, "quote format version (4 or 5 for TDX)")
    att_key_type = r.uint("att_key_type", 2, "attestation key type (2 = ECDSA-256 with P-256)")
    tee_type = r.uint("tee_type", 4, "TEE type (0x81 = TDX, 0 = SGX)")
    qe_svn = r.uint("qe_svn", 2, "security version of the Quoting Enclave")
    pce_svn = r.uint("pce_svn", 2, "security version of the Provisioning Certification Enclave")
    qe_vendor_id = r.take("qe_vendor_id", 16, "QE vendor (Intel = 939a7233f79c4ca9940a0db3957f0607)")
    user_data = r.take("user_data", 20, "custom QE data (the first 16 bytes are the platform identifier)")
    return QuoteHeader(version, att_key_type, tee_type, qe_svn, pce_svn, qe_vendor_id, user_data)


# --------------------------------------------------------------------------------------------------------------
# TD report (quote body)

# Bits of TDX ATTRIBUTES (TDX module ABI spec, "ATTRIBUTES" table). DEBUG and SEPT_VE_DISABLE are the two a
# verifier must look at: DEBUG lets the host read the TD's memory; without SEPT_VE_DISABLE a malicious host can
# inject #VE exceptions into the guest.
TD_ATTRIBUTE_BITS: dict[int, tuple[str, str]] = {
    0: ("DEBUG", "the TD runs in debug mode: the host can read and change its memory"),
    28: ("SEPT_VE_DISABLE", "EPT violations are not converted to #VE (required: closes a host attack path)"),
    29: ("MIGRATABLE", "the TD can be migrated (TDX 1.5)"),
    30: ("PKS", "supervisor protection keys enabled"),
    31: ("KL", "Key Locker enabled"),
    62: ("TPA", "TD partitioning allowed"),
    63: ("PERFMON", "the TD may use performance monitoring (can leak timing to the host)"),
}
# Bits 1..27 (apart from the named ones) are reserved and must be zero.


@dataclass(frozen=True)
class TdAttributes:
    """The decoded 64-bit ``td_attributes`` (little-endian)."""

    raw: bytes

    @property
    def value(self) -> int:
        return int.from_bytes(self.raw, "little")

    def bit(self, n: int) -> bool:
        return bool(self.value >> n & 1)

    @property
    def debug(self) -> bool:
        return self.bit(0)

    @property
    def sept_ve_disable(self) -> bool:
        return self.bit(28)

    @property
    def flags(self) -> list[str]:
        return [name for n, (name, _) in sorted(TD_ATTRIBUTE_BITS.items()) if self.bit(n)]

    @property
    def unknown_bits(self) -> list[int]:
        return [n for n in range(64) if self.bit(n) and n not in TD_ATTRIBUTE_BITS]

    def __str__(self) -> str:
        names = self.flags + [f"bit{n}" for n in self.unknown_bits]
        return "|".join(names) if names else "(none)"


_TD10_LAYOUT: tuple[tuple[str, int, str], ...] = (
    ("tee_tcb_svn", 16, "TCB security versions of the TDX module (compared with TCB info)"),
    ("mr_seam", 48, "measurement of the TDX module (SEAM)"),
    ("mr_signer_seam", 48, "signer of the TDX module (zero for Intel's module)"),
    ("seam_attributes", 8, "attributes of the TDX module (zero)"),
    ("td_attributes", 8, "TD attributes: DEBUG (bit 0), SEPT_VE_DISABLE (bit 28), …"),
    ("xfam", 8, "extended CPU features the TD may use (XSAVE mask)"),
    ("mr_td", 48, "MRTD: measurement of the TD's initial memory (the virtual firmware)"),
    ("mr_config_id", 48, "host-chosen config id (dstack: 01 ‖ compose_hash)"),
    ("mr_owner", 48, "host-chosen owner id"),
    ("mr_owner_config", 48, "host-chosen owner configuration"),
    ("rt_mr0", 48, "RTMR0: firmware configuration (TD HOB, ACPI tables)"),
    ("rt_mr1", 48, "RTMR1: OS loader and kernel"),
    ("rt_mr2", 48, "RTMR2: kernel command line and initrd"),
    ("rt_mr3", 48, "RTMR3: runtime events (dstack: app id, compose hash, key provider)"),
    ("report_data", 64, "data chosen by the TD: binds the signing key and nonce"),
)
_TD15_EXTRA: tuple[tuple[str, int, str], ...] = (
    ("tee_tcb_svn2", 16, "TCB security versions of the TDX module after a runtime update (TDX 1.5)"),
    ("mr_service_td", 48, "measurement of bound service TDs (TDX 1.5; zero when none)"),
)


@dataclass(frozen=True)
class TdReport:
    """The TD report carried in the quote body (TD1.0, or TD1.5 with two more fields)."""

    report_class: str  # "TD10" or "TD15"
    tee_tcb_svn: bytes
    mr_seam: bytes
    mr_signer_seam: bytes
    seam_attributes: bytes
    td_attributes: bytes
    xfam: bytes
    mr_td: bytes
    mr_config_id: bytes
    mr_owner: bytes
    mr_owner_config: bytes
    rt_mr0: bytes
    rt_mr1: bytes
    rt_mr2: bytes
    rt_mr3: bytes
    report_data: bytes
    tee_tcb_svn2: bytes | None = None
    mr_service_td: bytes | None = None

    @property
    def attributes(self) -> TdAttributes:
        return TdAttributes(self.td_attributes)

    @property
    def rtmrs(self) -> list[bytes]:
        return [self.rt_mr0, self.rt_mr1, self.rt_mr2, self.rt_mr3]


def _read_td_report(r: _Reader, td15: bool) -> TdReport:
    values: dict[str, bytes] = {}
    for name, size, meaning in _TD10_LAYOUT + (_TD15_EXTRA if td15 else ()):
        values[name] = r.take(name, size, meaning)
    return TdReport(report_class="TD15" if td15 else "TD10", **values)


# --------------------------------------------------------------------------------------------------------------
# QE report (an SGX enclave report, 384 bytes)

_ENCLAVE_LAYOUT: tuple[tuple[str, int, str, bool], ...] = (
    ("cpu_svn", 16, "CPU security version of the platform", False),
    ("misc_select", 4, "enclave MISCSELECT", True),
    ("reserved1", 28, "reserved", False),
    ("attributes", 16, "enclave attributes (bit 1 = DEBUG)", False),
    ("mr_enclave", 32, "measurement of the Quoting Enclave", False),
    ("reserved2", 32, "reserved", False),
    ("mr_signer", 32, "hash of the QE signer's key (Intel's QE: dc9e2a7c…)", False),
    ("reserved3", 96, "reserved", False),
    ("isv_prod_id", 2, "QE product id (TDX QE = 2)", True),
    ("isv_svn", 2, "QE security version", True),
    ("reserved4", 60, "reserved", False),
    ("report_data", 64, "sha256(attestation key ‖ QE auth data) ‖ 32 zero bytes", False),
)


@dataclass(frozen=True)
class EnclaveReport:
    cpu_svn: bytes
    misc_select: int
    attributes: bytes
    mr_enclave: bytes
    mr_signer: bytes
    isv_prod_id: int
    isv_svn: int
    report_data: bytes
    raw: bytes = field(repr=False, default=b"")


def _read_enclave_report(r: _Reader) -> EnclaveReport:
    start = r.pos
    values: dict[str, Any] = {}
    for name, size, meaning, is_int in _ENCLAVE_LAYOUT:
        values[name] = r.uint(name, size, meaning) if is_int else r.take(name, size, meaning)
    for name in ("reserved1", "reserved2", "reserved3", "reserved4"):
        values.pop(name)
    return EnclaveReport(raw=r.data[start:r.pos], **values)


# --------------------------------------------------------------------------------------------------------------
# Signature data

@dataclass(frozen=True)
class QuoteSignatureData:
    """Everything after the signed region: signature, attestation key and the QE certification data."""

    signature: bytes             # ECDSA P-256 r‖s over the signed region
    attestation_key: bytes       # P-256 public key x‖y
    certification_data_type: int  # 6 = QE report certification data
    qe_report: EnclaveReport
    qe_report_signature: bytes   # ECDSA P-256 r‖s by the PCK leaf key over the 384-byte QE report
    qe_auth_data: bytes
    pck_cert_type: int           # 5 = concatenated PEM chain
    pck_chain_data: bytes        # the raw certification data, as it appears in the quote
    pck_chain_pem: list[str]     # the PEM blocks found in it: leaf, intermediate CA, root

    @property
    def pck_chain_trailing_nul(self) -> bool:
        return self.pck_chain_data.endswith(b"\0")


# Line breaks only (no other whitespace) between the armour lines: see _canonical_pem.
_PEM_RE = re.compile(rb"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\r\n]*?-----END CERTIFICATE-----")


def _canonical_pem(block: bytes) -> bool:
    """True when the block's base64 is the one encoding of its DER. PEM decoders skip stray whitespace and ignore
    the unused low bits of the last base64 digit, so without this check a flipped byte there would leave the
    certificate "valid" while the quote's bytes differ from what the QE wrote."""
    body = block[len(b"-----BEGIN CERTIFICATE-----"):-len(b"-----END CERTIFICATE-----")]
    body = body.replace(b"\r", b"").replace(b"\n", b"")
    try:
        return base64.b64encode(base64.b64decode(body, validate=True)) == body
    except (binascii.Error, ValueError):
        return False


def _split_pem(data: bytes, offset: int) -> list[str]:
    """The certificates of the PCK certification data, as PEM text.

    Intel's quoting library writes PEM blocks and leaves a trailing NUL (tolerated). Intel's own synthetic sample
    concatenates DER certificates instead; those are re-wrapped as PEM (an encoding change, no parsing of X.509).
    """
    body = data.rstrip(b"\0 \r\n\t")
    blocks = _PEM_RE.findall(body)
    if not blocks:
        return _split_der(body, offset)
    leftover = _PEM_RE.sub(b"", body).strip()
    if leftover:
        at = offset + body.find(leftover[:8])
        raise ParseError(f"unexpected bytes between PEM certificates: {leftover[:24]!r}", field="pck_chain",
                         offset=at)
    for b in blocks:
        if not _canonical_pem(b):
            raise ParseError("a PEM certificate's base64 is not canonical (stray characters or padding bits)",
                             field="pck_chain", offset=offset + body.find(b))
    return [b.decode("ascii") + "\n" for b in blocks]


def _split_der(body: bytes, offset: int) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(body):
        at = offset + pos
        if body[pos] != 0x30 or pos + 2 > len(body):
            raise ParseError("the PCK certification data is neither PEM nor a DER certificate sequence",
                             field="pck_chain", offset=at)
        _, _, end = _der.read_tlv(body, pos, field="pck_chain", base=offset)
        der = body[pos:end]
        b64 = base64.b64encode(der).decode()
        out.append("-----BEGIN CERTIFICATE-----\n" + "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
                   + "\n-----END CERTIFICATE-----\n")
        pos = end
    if not out:
        raise ParseError("the PCK certification data holds no certificate", field="pck_chain", offset=offset)
    return out


def _read_signature_data(r: _Reader) -> QuoteSignatureData:
    signature = r.take("signature", 64, "ECDSA P-256 signature (r‖s) over the signed region by the attestation key")
    attestation_key = r.take("attestation_key", 64, "attestation public key (P-256 x‖y), made by the QE")
    cert_type_at = r.pos
    cert_type = r.uint("certification_data_type", 2, "certification data type (6 = QE report + PCK chain)")
    if cert_type != CERT_QE_REPORT:
        raise UnsupportedError(
            f"certification_data_type at offset {cert_type_at} is {cert_type}; phalanb reads type 6 (QE report "
            f"certification data), which every TDX quote from Intel's quoting library carries")
    cert_size = r.length("certification_data_size", 4, "size of the QE report certification data")
    inner = _Reader(r.data, r.pos, r.pos + cert_size)
    inner.prefix = "qe_report."
    qe_report = _read_enclave_report(inner)
    inner.prefix = ""
    qe_report_signature = inner.take("qe_report_signature", 64,
                                     "ECDSA P-256 signature (r‖s) over the QE report by the PCK leaf key")
    auth_size = inner.length("qe_auth_data_size", 2, "size of the QE authentication data")
    qe_auth_data = inner.take("qe_auth_data", auth_size, "QE authentication data (hashed into the QE report)")
    pck_type_at = inner.pos
    pck_type = inner.uint("pck_cert_type", 2, "inner certification data type (5 = PEM PCK chain)")
    if pck_type != CERT_PCK_CHAIN:
        raise UnsupportedError(
            f"pck_cert_type at offset {pck_type_at} is {pck_type}; phalanb reads type 5 (PEM PCK certificate "
            f"chain inside the quote). Types 1-4 need the PCK certificate fetched from Intel separately")
    pck_size = inner.length("pck_cert_data_size", 4, "size of the PEM PCK certificate chain")
    chain_at = inner.pos
    chain = inner.take("pck_chain", pck_size, "PCK certificate chain (PEM: leaf, Platform/Processor CA, root)")
    pems = _split_pem(chain, chain_at)
    r.fields.extend(inner.fields)
    r.pos = inner.pos
    return QuoteSignatureData(signature, attestation_key, cert_type, qe_report, qe_report_signature, qe_auth_data,
                              pck_type, chain, pems)


# --------------------------------------------------------------------------------------------------------------
# The quote

@dataclass(frozen=True)
class Quote:
    """A parsed TDX quote. ``raw`` is the whole input (trailing bytes included); ``fields()`` is the byte map."""

    raw: bytes
    header: QuoteHeader
    body_type: int            # 2 = TD1.0, 3 = TD1.5 (v4 quotes are always TD1.0)
    body_offset: int
    body_size: int
    body: TdReport
    signed_length: int        # the signature covers raw[:signed_length]
    signature_data_len: int
    signature_data: QuoteSignatureData
    end: int                  # offset just after the signature data
    _fields: tuple[Field, ...] = field(repr=False, default=())
    input_encoding: str = "binary"

    @property
    def version(self) -> int:
        return self.header.version

    @property
    def signed_region(self) -> bytes:
        return self.raw[:self.signed_length]

    @property
    def trailing(self) -> bytes:
        """Bytes after the signature data. Real quotes carry padding (zeros, a few stray bytes, a fixed buffer)."""
        return self.raw[self.end:]

    @property
    def report_class(self) -> str:
        return self.body.report_class

    @property
    def qe_report(self) -> EnclaveReport:
        return self.signature_data.qe_report

    @property
    def pck_chain_pem(self) -> list[str]:
        return self.signature_data.pck_chain_pem

    def fields(self) -> Iterator[Field]:
        """Every field in byte order: (name, offset, size, value, meaning). Trailing bytes come last."""
        yield from self._fields
        if self.trailing:
            zeros = self.trailing.count(0) == len(self.trailing)
            yield Field("trailing", self.end, len(self.trailing), self.trailing,
                        "bytes after the quote (" + ("zero padding" if zeros else "not zero; not covered by any "
                                                      "signature") + ")")

    def field(self, name: str) -> Field:
        for f in self.fields():
            if f.name == name:
                return f
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """Header and body with the names of ``fixtures/tdx/ground_truth.json``: bytes as lowercase hex, ints as ints."""
        h, b = self.header, self.body
        out: dict[str, Any] = {
            "quote_type": "TDX",
            "len": len(self.raw),
            "version": h.version,
            "att_key_type": h.att_key_type,
            "tee_type": h.tee_type,
            "qe_svn": h.qe_svn,
            "pce_svn": h.pce_svn,
            "qe_vendor_id": h.qe_vendor_id.hex(),
            "user_data": h.user_data.hex(),
            "report_class": b.report_class,
        }
        for name, _, _ in _TD10_LAYOUT + _TD15_EXTRA:
            value = getattr(b, name)
            if value is not None:
                out[name] = value.hex()
        out["td_attributes_flags"] = self.body.attributes.flags
        q = self.qe_report
        out["qe_report"] = {"mr_enclave": q.mr_enclave.hex(), "mr_signer": q.mr_signer.hex(),
                            "isv_prod_id": q.isv_prod_id, "isv_svn": q.isv_svn,
                            "report_data": q.report_data.hex()}
        out["signed_length"] = self.signed_length
        out["trailing_bytes"] = len(self.trailing)
        return out


def decode_quote_input(data: bytes | bytearray | memoryview | str) -> tuple[bytes, str]:
    """Turn what a service published into quote bytes. Returns ``(bytes, encoding)`` with encoding one of
    ``binary``, ``hex``, ``0x-hex``, ``base64``.

    Bytes that look like ASCII hex or base64 text (a ``.hex`` file read in binary mode) are decoded as text: a
    binary quote starts with ``04 00`` or ``05 00``, never with printable text.
    """
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if isinstance(data, bytes):
        if len(data) > 4 * MAX_INPUT_BYTES:
            raise InputError(f"{len(data)} bytes is far larger than any quote; refusing to read it")
        head = data[:4]
        if len(head) == 4 and all(chr(c) in string.hexdigits + "xX+/=" or chr(c).isalnum() for c in head):
            try:
                text = data.decode("ascii")
            except UnicodeDecodeError:
                return data, "binary"
            return decode_quote_input(text)
        return data, "binary"
    if not isinstance(data, str):
        raise InputError(f"a quote is bytes or text (hex, 0x-hex, base64), not {type(data).__name__}")
    text = "".join(data.split())
    if not text:
        raise ParseError("the quote text is empty", field="quote", offset=0)
    if len(text) > 4 * MAX_INPUT_BYTES:
        raise InputError(f"{len(text)} characters is far larger than any quote; refusing to read it")
    if text[:2] in ("0x", "0X"):
        return _from_hex(text[2:], prefix=2), "0x-hex"
    if all(c in string.hexdigits for c in text):
        return _from_hex(text, prefix=0), "hex"
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        if all(c in string.hexdigits for c in text[:8]):
            _from_hex(text, prefix=0)  # hex with a stray character: name the character and where it is
        bad = next((i for i, c in enumerate(text) if c not in string.ascii_letters + string.digits + "+/="), None)
        where = f"; character {text[bad]!r} at position {bad} is neither hex nor base64" if bad is not None else \
            f"; {len(text)} characters of base64 alphabet but the padding or length is wrong"
        raise ParseError("the quote text is neither hex, 0x-hex nor base64" + where, field="quote",
                         offset=bad) from None
    return raw, "base64"


def _from_hex(text: str, *, prefix: int) -> bytes:
    bad = next((i for i, c in enumerate(text) if c not in string.hexdigits), None)
    if bad is not None:
        raise ParseError(f"character {text[bad]!r} is not hex", field="quote", offset=prefix + bad)
    if len(text) % 2:
        raise ParseError(f"odd number of hex digits ({len(text)}): the text is cut", field="quote",
                         offset=prefix + len(text))
    return bytes.fromhex(text)


_SNP_REPORT_SIZE = 1184  # AMD SEV-SNP ABI: ATTESTATION_REPORT is 0x4A0 bytes


def _is_sev_snp_report(raw: bytes) -> bool:
    """An AMD SEV-SNP attestation report, which would otherwise read as "version 3 … tee_type 0" (an SGX quote).
    Its version is a u32 (2, 3 or 5: a zero attestation-key type where a quote has 2) and its signature algorithm
    (u32 at 0x34) is 1, ECDSA P-384 with SHA-384."""
    if len(raw) < _SNP_REPORT_SIZE:
        return False
    version = int.from_bytes(raw[0:4], "little")
    return version in (2, 3, 4, 5) and int.from_bytes(raw[0x34:0x38], "little") == 1


def parse_quote(data: bytes | bytearray | memoryview | str) -> Quote:
    """Parse a TDX quote (v4 or v5; TD1.0 or TD1.5) from bytes, hex, ``0x``-hex or base64.

    Raises :class:`ParseError` (field and offset named) for malformed input and :class:`UnsupportedError` for
    well-formed quotes phalanb does not read (SGX quotes, other attestation key or certification types).
    """
    raw, encoding = decode_quote_input(data)
    if len(raw) > MAX_INPUT_BYTES:
        raise InputError(f"{len(raw)} bytes is far larger than any quote; refusing to read it")
    if _is_sev_snp_report(raw):
        raise UnsupportedError("an AMD SEV-SNP attestation; phalanb verifies Intel TDX (these bytes are an SEV-SNP "
                               "attestation report: a u32 version, then guest SVN and policy, and signature "
                               "algorithm 1 = ECDSA P-384 at offset 0x34 — not a TDX quote)")
    r = _Reader(raw)
    header = _read_header(r)
    if header.version == 3 or header.tee_type == TEE_TYPE_SGX:
        raise UnsupportedError(
            f"not a TDX quote: this is an SGX enclave quote (version {header.version}, tee_type "
            f"{header.tee_type:#x} at offset 4). phalanb verifies Intel TDX quotes (tee_type 0x81) only")
    if header.version not in (4, 5):
        raise ParseError(f"version {header.version} is not a TDX quote version (4 or 5)", field="version",
                         offset=0)
    if header.tee_type != TEE_TYPE_TDX:
        raise ParseError(f"tee_type {header.tee_type:#x} is neither TDX (0x81) nor SGX (0)", field="tee_type",
                         offset=4)
    if header.att_key_type != ATT_KEY_ECDSA_P256:
        raise UnsupportedError(
            f"att_key_type {header.att_key_type} at offset 2: only ECDSA-256 with P-256 (2) is used by TDX quotes")

    if header.version == 4:
        body_type, body_size = BODY_TD10, TD10_SIZE
    else:
        body_type = r.uint("body_type", 2, "v5 body type (2 = TD1.0, 3 = TD1.5)")
        size_at = r.pos
        body_size = r.uint("body_size", 4, "v5 body size in bytes")
        if body_type == BODY_SGX_ENCLAVE:
            raise UnsupportedError("not a TDX quote: a v5 quote whose body is an SGX enclave report (body_type 1)")
        expected = {BODY_TD10: TD10_SIZE, BODY_TD15: TD15_SIZE}.get(body_type)
        if expected is None:
            raise UnsupportedError(f"body_type {body_type} at offset 48: phalanb reads TD1.0 (2) and TD1.5 (3)")
        if body_size > r.left():
            raise ParseError(f"body_size {body_size} exceeds the {r.left()} bytes left", field="body_size",
                             offset=size_at)
        if body_size != expected:
            raise ParseError(f"body_size {body_size} does not match body_type {body_type} ({expected} bytes)",
                             field="body_size", offset=size_at)
    body_offset = r.pos
    body = _read_td_report(r, td15=body_type == BODY_TD15)
    signed_length = r.pos
    sig_len = r.length("signature_data_len", 4, "size of the signature data that follows")
    sig_reader = _Reader(raw, r.pos, r.pos + sig_len)
    sig = _read_signature_data(sig_reader)
    r.fields.extend(sig_reader.fields)
    end = r.pos + sig_len
    if sig_reader.pos != end:
        # The certification data ended before the declared signature data: report it, do not guess.
        raise ParseError(f"signature_data_len says {sig_len} bytes but its content ends after "
                         f"{sig_reader.pos - r.pos}", field="signature_data_len", offset=signed_length)
    return Quote(raw=raw, header=header, body_type=body_type, body_offset=body_offset, body_size=body_size,
                 body=body, signed_length=signed_length, signature_data_len=sig_len, signature_data=sig, end=end,
                 _fields=tuple(r.fields), input_encoding=encoding)
