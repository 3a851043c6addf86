"""``nvidia_payload`` in every shape a user can meet, read into one :class:`GpuPayload` (SPEC §9).

Shapes seen in the wild (the payload says which one it was in :attr:`GpuPayload.variant`):

- ``dstack``: ``{"nonce", "evidence_list": [{"certificate", "evidence", "arch"}…], "arch"}``, as a JSON **string**
  (vllm-proxy's ``nvidia_payload``) or an object; keys may be sorted (NEAR); items may carry their own ``nonce``.
- ``nvidia-sdk``: a bare list of items each with its own ``nonce`` (NVIDIA's C++ SDK serialization).
- ``chutes``: a Chutes ``gpu_evidence`` list (no nonces anywhere), or a Chutes attestation entry holding one.
- ``files``: one evidence file (hex text, base64 or binary) plus one PEM chain file, as NVIDIA's samples ship.

NVSwitch (LS10) evidence is SPDM like a GPU's but is a switch's: the GPU readers (:func:`parse_payload`,
:func:`parse_files`) refuse it wherever a GPU's is expected, and only the switch readers (:func:`parse_switch_files`,
:func:`parse_switch_payload`) read it, into a payload whose ``device`` is ``"NVSwitch"`` (and they refuse a GPU's).

Evidence is base64 of the SPDM bytes, or (2024-25 services) base64 of the ASCII *hex* of them: decoded bytes that
read ``11e001ff`` are hex text and are decoded once more. Certificates are base64 of a PEM chain, leaf first.

This module only reads; nothing here verifies (see :mod:`phalanb.gpu.verify`).

>>> p = parse_payload(report["nvidia_payload"])          # doctest: +SKIP
>>> p.variant, len(p.gpus), p.gpus[0].spdm.opaque.driver_version   # doctest: +SKIP
('dstack', 8, '570.172.08')
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding

from .. import _json
from ..errors import InputError, ParseError, UnsupportedError
from .spdm import SpdmEvidence, parse_evidence

__all__ = ["GpuEvidence", "GpuPayload", "parse_payload", "parse_files", "parse_cert_chain", "decode_evidence",
           "arch_of_chain", "SwitchEvidenceRefused", "parse_switch_files", "parse_switch_payload", "is_switch_chain", "SWITCH_ARCHES"]

ARCHES = ("HOPPER", "BLACKWELL")
_HEX_MAGIC = b"11e001ff"  # ASCII hex of the GET_MEASUREMENTS header: evidence that was hex text before base64
_PEM_BEGIN, _PEM_END = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"


@dataclass(frozen=True)
class GpuEvidence:
    """One GPU's evidence: decoded SPDM, its certificate chain (leaf first) and how both were encoded."""

    index: int
    arch: str | None
    spdm: SpdmEvidence
    certificates: tuple[x509.Certificate, ...]
    evidence_encoding: str  # "base64", "base64-hex", "hex", "binary"
    item_nonce: str | None = None  # the item's own "nonce" key, when the serialization carries one
    evidence_text: str | None = None  # the item's "evidence" string as received (kept for NRAS)
    certificate_text: str | None = None  # the item's "certificate" string as received

    @property
    def evidence_bytes(self) -> bytes:
        return self.spdm.raw

    @property
    def requester_nonce(self) -> bytes:
        return self.spdm.requester_nonce


@dataclass(frozen=True)
class GpuPayload:
    """Every GPU of one payload, the payload's own nonce and arch, and which serialization carried them."""

    variant: str
    gpus: tuple[GpuEvidence, ...]
    nonce: str | None = None
    arch: str | None = None
    encoded_as: str = "object"  # "json-string", "object", "files"
    keys_sorted: bool = False
    raw: Any = field(default=None, repr=False, compare=False)
    #: "GPU", or "NVSwitch" for a payload read by the switch readers (its ``gpus`` are then switches).
    device: str = "GPU"

    @property
    def description(self) -> str:
        """One line saying what was seen, e.g. ``dstack (JSON string, keys sorted, per-item nonce, base64)``."""
        parts = [] if self.encoded_as == "files" else [self.encoded_as.replace("-", " ")]
        if self.keys_sorted:
            parts.append("keys sorted")
        if any(g.item_nonce is not None for g in self.gpus):
            parts.append("per-item nonce")
        encodings = sorted({g.evidence_encoding for g in self.gpus})
        parts.append("evidence " + "/".join(encodings))
        arches = sorted({g.arch or "?" for g in self.gpus})
        parts.append("/".join(arches))
        return f"{self.variant} ({', '.join(parts)}; {len(self.gpus)} {self.device}{'s' if len(self.gpus) != 1 else ''})"


def _b64(text: Any, name: str) -> bytes:
    if not isinstance(text, str):
        raise ParseError(f"expected a base64 string, got {type(text).__name__}", field=name)
    compact = "".join(text.split())
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ParseError(f"not valid base64 ({exc}); expected base64 of the SPDM bytes or of their hex",
                         field=name) from None


def decode_evidence(value: str | bytes, name: str = "evidence") -> tuple[bytes, str]:
    """Evidence bytes and the encoding they arrived in, from base64, base64-of-hex, hex text or raw bytes."""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value)
        if value[:4] == b"\x11\xe0\x01\xff" or value[:2] == b"\x11\xe0":
            return value, "binary"
        stripped = value.strip()
        if stripped[:8].lower() == _HEX_MAGIC:
            return _unhex(stripped, name), "hex"
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise ParseError("binary evidence must start with the GET_MEASUREMENTS header 11 e0",
                             field=name, offset=0) from None
    if not isinstance(value, str):
        raise ParseError(f"expected a base64 or hex string, got {type(value).__name__}", field=name)
    text = value.strip()
    if text[:8].lower() == _HEX_MAGIC.decode():
        return _unhex(text.encode("utf-8", "surrogatepass"), name), "hex"
    raw = _b64(text, name)
    if raw[:8].lower() == _HEX_MAGIC:
        return _unhex(raw, name), "base64-hex"
    return raw, "base64"


def _unhex(text: bytes, name: str) -> bytes:
    try:
        return bytes.fromhex(text.decode("ascii").strip())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParseError(f"looks like hex text (starts 11e001ff) but does not decode: {exc}", field=name) from None


def parse_cert_chain(pem: bytes | str, name: str = "certificate",
                     cache: dict[bytes, x509.Certificate] | None = None) -> tuple[x509.Certificate, ...]:
    """Every certificate of a PEM chain, in order. Zero certificates or a block that does not parse → ParseError.

    ``cache`` (PEM block → certificate) lets the GPUs of one payload share the intermediates they all carry.
    """
    if isinstance(pem, str):
        pem = pem.encode("utf-8", "surrogatepass")
    blocks = _pem_blocks(pem)
    if not blocks:
        raise ParseError("no PEM certificate found (expected -----BEGIN CERTIFICATE----- blocks, leaf first)",
                         field=name)
    certs = []
    for i, block in enumerate(blocks):
        if cache is not None and block in cache:
            certs.append(cache[block])
            continue
        if not _canonical_pem(block):
            raise ParseError("the certificate's base64 is not canonical (a character other than base64 and line "
                             "breaks, or nonzero padding bits)", field=f"{name}[{i}]")
        try:
            cert = x509.load_pem_x509_certificate(block)
            # cryptography decodes names, extensions and keys lazily: touch them all now so a damaged certificate
            # is a parse error here, not an exception in the middle of verification. Every error class it can
            # raise for bad input is caught (it has no common base class).
            _ = cert.extensions, cert.public_key(), cert.subject.rfc4514_string(), cert.issuer.rfc4514_string()
            _ = cert.signature_hash_algorithm
        except (ValueError, KeyError, TypeError, UnsupportedAlgorithm, x509.DuplicateExtension,
                x509.InvalidVersion, x509.UnsupportedGeneralNameType) as exc:
            raise ParseError(f"certificate {i} of the chain does not parse: {type(exc).__name__}: {exc}",
                             field=f"{name}[{i}]") from None
        _strict_der(cert.public_bytes(Encoding.DER), f"{name}[{i}]")
        if cache is not None:
            cache[block] = cert
        certs.append(cert)
    return tuple(certs)


def _pem_blocks(pem: bytes) -> list[bytes]:
    """Every ``BEGIN … END CERTIFICATE`` block, in order. A linear scan: the regex it replaces (``BEGIN.+?END``)
    restarted at every BEGIN line and took quadratic time on BEGIN lines without an END (24 s for 430 kB)."""
    out, pos = [], 0
    while (start := pem.find(_PEM_BEGIN, pos)) >= 0:
        end = pem.find(_PEM_END, start + len(_PEM_BEGIN) + 1)
        if end < 0:
            break
        out.append(pem[start:end + len(_PEM_END)])
        pos = end + len(_PEM_END)
    return out


def _canonical_pem(block: bytes) -> bool:
    """True when the block's base64 is the one encoding of its DER. PEM decoders skip stray whitespace and ignore
    the unused low bits of the last base64 digit: without this check a flipped byte there would leave the chain
    "valid" while the bytes differ from what the GPU's evidence carried."""
    body = block[len(_PEM_BEGIN):-len(_PEM_END)].replace(b"\r", b"").replace(b"\n", b"")
    try:
        return base64.b64encode(base64.b64decode(body, validate=True)) == body
    except (binascii.Error, ValueError):
        return False


def der_items(data: bytes, depth: int = 0, *, recurse: bool = True) -> Iterator[tuple[int, bytes]]:
    """Yield (tag, value) for every DER element (descending into constructed ones unless ``recurse`` is False).

    Definite lengths only; a malformed element ends the walk (callers decide whether that matters).
    """
    i = 0
    while i + 2 <= len(data) and depth < 16:
        tag = data[i]
        length = data[i + 1]
        j = i + 2
        if length & 0x80:
            n = length & 0x7F
            if n == 0 or n > 4 or j + n > len(data):
                return
            length = int.from_bytes(data[j:j + n], "big")
            j += n
        if j + length > len(data):
            return
        value = data[j:j + length]
        yield tag, value
        if recurse and tag & 0x20:
            yield from der_items(value, depth + 1)
        i = j + length


def _strict_der(der: bytes, name: str) -> None:
    # The signatureValue BIT STRING must say "0 unused bits". cryptography ignores that byte, so without this
    # check one flipped bit in a certificate would leave it "valid": not a forgery, but a certificate that is
    # not byte-for-byte the one the CA signed.
    top = list(der_items(der, recurse=False))
    parts = list(der_items(top[0][1], recurse=False)) if len(top) == 1 and top[0][0] == 0x30 else []
    if len(parts) != 3 or parts[2][0] != 0x03 or not parts[2][1] or parts[2][1][0] != 0:
        raise ParseError("not strict DER: the certificate's signatureValue BIT STRING must have 0 unused bits",
                         field=name)


def _norm_arch(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ParseError(f"arch must be a string, got {type(value).__name__}", field=name)
    return value.upper()


def _nonce_text(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ParseError(f"nonce must be a hex string, got {type(value).__name__}", field=name)
    text = value.lower().removeprefix("0x")
    try:
        bytes.fromhex(text)
    except ValueError:
        raise ParseError(f"nonce {value[:80]!r} is not hex", field=name) from None
    return text


def _item(item: Any, index: int, where: str, cache: dict[bytes, x509.Certificate], *,
          switch: bool = False) -> GpuEvidence:
    if switch:
        return _switch_item(item, index, where, cache)
    name = f"{where}[{index}]"
    if not isinstance(item, dict):
        raise ParseError(f"each GPU entry must be an object with evidence and certificate, got "
                         f"{type(item).__name__}", field=name)
    for key in ("evidence", "certificate"):
        if key not in item:
            raise ParseError(f"missing '{key}' (has {sorted(item)})", field=name)
    _refuse_switch(item.get("arch"), f"{name}.arch")
    raw, encoding = decode_evidence(item["evidence"], f"{name}.evidence")
    try:
        spdm = parse_evidence(raw)
    except ParseError as exc:
        _refuse_switch_chain(item.get("certificate"), name)
        raise ParseError(f"GPU {index}: {exc.reason}", field=f"{name}.evidence.{exc.field}" if exc.field else
                         f"{name}.evidence", offset=exc.offset) from None
    pem = _b64(item["certificate"], f"{name}.certificate")
    certs = parse_cert_chain(pem, f"{name}.certificate", cache)
    # Switch evidence now decodes (its BIOS version is ASCII text): its chain still names it for what it is.
    _refuse_switch(arch_of_chain(certs), f"the leaf certificate of {name} names")
    return GpuEvidence(index=index, arch=_norm_arch(item.get("arch"), f"{name}.arch"), spdm=spdm,
                       certificates=certs, evidence_encoding=encoding,
                       item_nonce=_nonce_text(item.get("nonce"), f"{name}.nonce"),
                       evidence_text=item["evidence"] if isinstance(item["evidence"], str) else None,
                       certificate_text=item["certificate"])


def _switch_item(item: Any, index: int, where: str, cache: dict[bytes, x509.Certificate]) -> GpuEvidence:
    name = f"{where}[{index}]"
    if not isinstance(item, dict):
        raise ParseError(f"each NVSwitch entry must be an object with evidence and certificate, got "
                         f"{type(item).__name__}", field=name)
    for key in ("evidence", "certificate"):
        if key not in item:
            raise ParseError(f"missing '{key}' (has {sorted(item)})", field=name)
    arch = _norm_arch(item.get("arch"), f"{name}.arch")
    raw, encoding = decode_evidence(item["evidence"], f"{name}.evidence")
    certs = parse_cert_chain(_b64(item["certificate"], f"{name}.certificate"), f"{name}.certificate", cache)
    arch = _switch_arch(arch, certs, name)
    try:
        spdm = parse_evidence(raw)
    except ParseError as exc:
        raise ParseError(f"NVSwitch {index}: {exc.reason}", field=f"{name}.evidence.{exc.field}" if exc.field else
                         f"{name}.evidence", offset=exc.offset) from None
    return GpuEvidence(index=index, arch=arch, spdm=spdm, certificates=certs, evidence_encoding=encoding,
                       item_nonce=_nonce_text(item.get("nonce"), f"{name}.nonce"),
                       evidence_text=item["evidence"] if isinstance(item["evidence"], str) else None,
                       certificate_text=item["certificate"])


def _switch_arch(declared: str | None, certs: Sequence[x509.Certificate], where: str) -> str:
    """The switch arch, which the chain's leaf must name (so GPU evidence is never read as a switch's); a declared
    arch must agree with it."""
    named = arch_of_chain(certs)
    if named not in SWITCH_ARCHES:
        raise UnsupportedError(f"{where}: this is not NVSwitch evidence: its chain's leaf names "
                               f"{named or 'no known chip'}, not an NVSwitch (LS10); read GPU evidence as a GPU's "
                               "(parse_payload / parse_files)")
    if declared is not None and declared.replace("_", "") != named:
        raise ParseError(f"declared arch {declared!r} but the chain's leaf names an {named} NVSwitch",
                         field=f"{where}.arch" if where else "arch")
    return named


def _keys_sorted(obj: Any) -> bool:
    """True when every object in the payload lists its keys in sorted order (NEAR's serializer does)."""
    dicts: list[dict] = []
    if isinstance(obj, dict):
        dicts.append(obj)
        dicts.extend(i for i in obj.get("evidence_list") or [] if isinstance(i, dict))
    elif isinstance(obj, list):
        dicts.extend(i for i in obj if isinstance(i, dict))
    multi = [d for d in dicts if len(d) > 1]
    return bool(multi) and all(list(d) == sorted(d) for d in multi)


def parse_payload(value: str | bytes | dict | list) -> GpuPayload:
    """Read any ``nvidia_payload`` variant (JSON text or already-decoded object). Raises :class:`ParseError`.

    >>> parse_payload('{"nonce": "00", "evidence_list": []}')
    Traceback (most recent call last):
    phalanb.errors.ParseError: evidence_list: the payload lists no GPU evidence
    """
    encoded_as = "object"
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("the payload is neither JSON text nor an object", field="nvidia_payload") from None
    if isinstance(value, str):
        encoded_as = "json-string"
        try:
            value = _json.loads(value)
        except json.JSONDecodeError as exc:
            raise ParseError(f"not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})",
                             field="nvidia_payload", offset=exc.pos) from None
        if isinstance(value, str):  # double-encoded: a JSON string holding the JSON text
            return parse_payload(value)
    obj = value
    if isinstance(obj, dict) and "nvidia_payload" in obj:
        raise InputError("this is a whole attestation report: pass report['nvidia_payload'] instead")
    if isinstance(obj, dict) and "evidence_list" in obj:
        items = obj["evidence_list"]
        where, variant = "evidence_list", "dstack"
        nonce = _nonce_text(obj.get("nonce"), "nonce")
        arch = _norm_arch(obj.get("arch"), "arch")
        _refuse_switch(arch, "arch")
    elif isinstance(obj, dict) and "gpu_evidence" in obj:
        items = obj["gpu_evidence"]
        where, variant = "gpu_evidence", "chutes"
        nonce, arch = None, None
    elif isinstance(obj, list):
        items = obj
        where = "evidence_list"
        has_nonce = [isinstance(i, dict) and "nonce" in i for i in items]
        variant = "nvidia-sdk" if items and all(has_nonce) else "chutes"
        nonce, arch = None, None
    else:
        kind = type(obj).__name__
        keys = f" with keys {sorted(obj)[:8]}" if isinstance(obj, dict) else ""
        raise ParseError(f"expected an object with evidence_list (dstack), a list of GPU entries (NVIDIA SDK, "
                         f"Chutes gpu_evidence) or an object with gpu_evidence; got a {kind}{keys}",
                         field="nvidia_payload")
    if not isinstance(items, list):
        raise ParseError(f"must be a list, got {type(items).__name__}", field=where)
    if not items:
        raise ParseError("the payload lists no GPU evidence", field=where)
    cache: dict[bytes, x509.Certificate] = {}
    gpus = tuple(_item(it, i, where, cache) for i, it in enumerate(items))
    # An item without its own arch inherits the payload's (2024-25 dstack), else what its leaf certificate says.
    gpus = tuple(g if g.arch else replace(g, arch=arch or arch_of_chain(g.certificates)) for g in gpus)
    if nonce is None:
        item_nonces = {g.item_nonce for g in gpus if g.item_nonce}
        nonce = item_nonces.pop() if len(item_nonces) == 1 else None
    if arch is None:
        arches = {g.arch for g in gpus if g.arch}
        arch = arches.pop() if len(arches) == 1 else None
    return GpuPayload(variant=variant, gpus=gpus, nonce=nonce, arch=arch, encoded_as=encoded_as,
                      keys_sorted=_keys_sorted(obj), raw=obj)


def _read(source: str | bytes | Path, name: str) -> bytes:
    if isinstance(source, bytes):
        return source
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the {name} file {source}: {exc.strerror}") from None


def parse_files(evidence: str | bytes | Path, chain: str | bytes | Path, *, arch: str | None = None) -> GpuPayload:
    """One GPU from an evidence file (hex text, base64 or binary) and a PEM chain file, as NVIDIA's samples ship.

    ``arch`` defaults to what the leaf certificate says (GH100 → HOPPER, GB100 → BLACKWELL).
    """
    _refuse_switch(arch, "arch")
    raw, encoding = decode_evidence(_read(evidence, "evidence"), "evidence")
    certs = parse_cert_chain(_read(chain, "certificate chain"), "certificate")
    _refuse_switch(arch_of_chain(certs), "the chain's leaf certificate names")
    spdm = parse_evidence(raw)
    if arch is None:
        arch = arch_of_chain(certs)
    gpu = GpuEvidence(index=0, arch=_norm_arch(arch, "arch"), spdm=spdm, certificates=certs,
                      evidence_encoding=encoding)
    return GpuPayload(variant="files", gpus=(gpu,), nonce=None, arch=gpu.arch, encoded_as="files")


def is_switch_chain(chain: str | bytes | Path) -> bool:
    """True when a PEM chain's leaf names an NVSwitch (``LS_10 A01 FSP FMC LF``): which reader a bare evidence
    file needs. Only a choice of reader: the switch's checks are its own (``nvswitch.*``), never a GPU's."""
    try:
        return arch_of_chain(parse_cert_chain(_read(chain, "certificate chain"), "certificate")) in SWITCH_ARCHES
    except ParseError:
        return False


def parse_switch_files(evidence: str | bytes | Path, chain: str | bytes | Path) -> GpuPayload:
    """One NVSwitch from an evidence file and its PEM chain (NVIDIA's ``switchAttestationReport.txt`` +
    ``switchCertChain.txt``). Refuses a GPU's chain: GPU evidence is read by :func:`parse_files`."""
    raw, encoding = decode_evidence(_read(evidence, "evidence"), "evidence")
    certs = parse_cert_chain(_read(chain, "certificate chain"), "certificate")
    arch = _switch_arch(None, certs, "certificate")
    switch = GpuEvidence(index=0, arch=arch, spdm=parse_evidence(raw), certificates=certs,
                         evidence_encoding=encoding)
    return GpuPayload(variant="files", gpus=(switch,), nonce=None, arch=arch, encoded_as="files",
                      device="NVSwitch")


def parse_switch_payload(value: str | bytes | dict | list) -> GpuPayload:
    """NVSwitch evidence as NVIDIA's SDK serializes it (a list of ``{arch, certificate, evidence, nonce}``, e.g.
    ``switch_evidence_ls10.json``) or as ``{"nonce", "evidence_list", "arch"}``. Every entry must be a switch's."""
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("the NVSwitch evidence is neither JSON text nor an object", field="evidence") from None
    encoded_as = "object"
    if isinstance(value, str):
        encoded_as = "json-string"
        try:
            value = _json.loads(value)
        except json.JSONDecodeError as exc:
            raise ParseError(f"not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})",
                             field="evidence", offset=exc.pos) from None
    nonce, arch = None, None
    if isinstance(value, dict) and "evidence_list" in value:
        items, variant = value["evidence_list"], "dstack"
        nonce = _nonce_text(value.get("nonce"), "nonce")
        arch = _norm_arch(value.get("arch"), "arch")
        if arch is not None and arch.replace("_", "") not in SWITCH_ARCHES:
            raise UnsupportedError(f"arch {arch!r} is not an NVSwitch's: read GPU evidence with parse_payload")
    elif isinstance(value, list):
        items, variant = value, "nvidia-sdk"
    else:
        raise ParseError(f"expected a list of NVSwitch entries or an object with evidence_list; got a "
                         f"{type(value).__name__}", field="evidence")
    if not isinstance(items, list):
        raise ParseError(f"must be a list, got {type(items).__name__}", field="evidence_list")
    if not items:
        raise ParseError("the payload lists no NVSwitch evidence", field="evidence_list")
    cache: dict[bytes, x509.Certificate] = {}
    switches = tuple(_item(it, i, "evidence_list", cache, switch=True) for i, it in enumerate(items))
    if nonce is None:
        item_nonces = {g.item_nonce for g in switches if g.item_nonce}
        nonce = item_nonces.pop() if len(item_nonces) == 1 else None
    arches = {g.arch for g in switches}
    return GpuPayload(variant=variant, gpus=switches, nonce=nonce, arch=arches.pop() if len(arches) == 1 else None,
                      encoded_as=encoded_as, keys_sorted=_keys_sorted(value), raw=value, device="NVSwitch")


_CHIP_ARCH = {"GH1": "HOPPER", "GB1": "BLACKWELL", "GB2": "BLACKWELL", "LS_": "LS10", "LS1": "LS10"}

#: NVSwitch architectures: their SPDM evidence looks like a GPU's but is a switch's (31 blocks, other opaque fields).
SWITCH_ARCHES = ("LS10",)


class SwitchEvidenceRefused(UnsupportedError):
    """NVSwitch evidence met where a GPU's is expected: never read (nor verified) as a GPU's."""


def _refuse_switch(arch: Any, where: str) -> None:
    if isinstance(arch, str) and arch.upper().replace("_", "") in SWITCH_ARCHES:
        raise SwitchEvidenceRefused(f"this is NVSwitch evidence ({where} {arch!r}), not a GPU's: where GPU evidence "
                                    "is expected phalanb never reads nor vouches for a switch's; verify it as "
                                    "NVSwitch evidence on its own (`phalanb gpu FILE --chain PEM` on the switch's "
                                    "files, or phalanb.gpu.switch.verify_switch_payload)")


def _refuse_switch_chain(certificate: Any, name: str) -> None:
    """Evidence that does not parse as a GPU's, from an item that names no arch: say so if its chain is a switch's."""
    try:
        certs = parse_cert_chain(_b64(certificate, f"{name}.certificate"), f"{name}.certificate")
    except ParseError:
        return
    _refuse_switch(arch_of_chain(certs), f"the leaf certificate of {name} names")


def arch_of_chain(certs: Sequence[x509.Certificate]) -> str | None:
    """HOPPER or BLACKWELL from the chip name in the leaf's common name (``GH100 A01 GSP FMC LF``), else None."""
    for cert in certs[:2]:
        cn = _cn(cert)
        if cn:
            arch = _CHIP_ARCH.get(cn[:3].upper())
            if arch:
                return arch
    return None


def _cn(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""
