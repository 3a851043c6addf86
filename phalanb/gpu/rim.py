"""NVIDIA Reference Integrity Manifests (RIMs), read: SWID XML in, reference values and signature parts out.

A RIM is an ISO/IEC 19770-2 SWID tag NVIDIA signs (enveloped XML-DSig) for one driver, VBIOS or NVSwitch BIOS
release. What a verifier uses from it::

    <SoftwareIdentity name="GH100" tagId="…">
      <Meta product="GH100" colloquialVersion="550.90.07" edition="GPU" …/>
      <Payload>
        <Resource type="Measurement" index="7" active="True" alternatives="1" size="48" ns2:Hash0="80161aac…"/>
        …
      </Payload>
      <ds:Signature> SignedInfo (C14N 1.1, ECDSA-SHA384, one enveloped reference) · SignatureValue · X509Data
    </SoftwareIdentity>

Only ``active="True"`` resources are reference values; each lists ``alternatives`` SHA-384 values
(``Hash0…Hash{N-1}``), any of which is a match. Nothing here verifies or judges (see :mod:`.rim_verify` and
:mod:`.appraise`); the RIM id (``NV_GPU_DRIVER_GH100_550.90.07``) is *not* in the document: it is how NVIDIA's
service files it, and :func:`rim_ids` derives it from a GPU's signed opaque data as NVIDIA's verifiers do.

XML is input from outside: a DOCTYPE (entities, external references), more than :data:`MAX_RIM_BYTES` or nesting
deeper than :data:`MAX_DEPTH` is refused before lxml builds anything, and the parser never resolves entities or
touches the network.

>>> rim = parse_rim(open("NV_GPU_DRIVER_GH100_550.90.07.xml", "rb").read())   # doctest: +SKIP
>>> rim.version, len(rim.active)                                              # doctest: +SKIP
('550.90.07', 21)
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from ..errors import ParseError, UnsupportedError
from .spdm import SpdmEvidence

__all__ = ["MAX_RIM_BYTES", "MAX_DEPTH", "SWID_NS", "DSIG_NS", "RimReference", "RimSignature", "Rim", "parse_rim",
           "rim_ids", "nvdec0_enabled", "LS10_PROJECT"]

#: A genuine RIM is ~20-27 kB; anything above this is not a RIM.
MAX_RIM_BYTES = 512 * 1024
#: SoftwareIdentity → Signature → KeyInfo → X509Data → X509Certificate is depth 5.
MAX_DEPTH = 12
SWID_NS = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd"
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
_HASH_ATTR = re.compile(r"^Hash(\d+)$")
#: NVSwitch evidence carries no project / SKU fields; NVIDIA's verifiers use these fixed values for LS10.
LS10_PROJECT = ("5612", "0002", "890")

def _parser() -> Any:
    """A hardened parser, one per use (lxml parsers must not be shared between threads). resolve_entities=False
    and load_dtd=False keep entities unexpanded and nothing is fetched; huge_tree=False keeps libxml2's own
    limits. A DOCTYPE is refused before parsing anyway, so no entity reaches it."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                           huge_tree=False, remove_comments=False, remove_pis=False, collect_ids=False)


@dataclass(frozen=True)
class RimReference:
    """One ``Resource``: a measurement index, whether it is judged (``active``) and its accepted values."""

    index: int
    active: bool
    alternatives: tuple[bytes, ...]
    size: int
    name: str

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "active": self.active, "size": self.size, "name": self.name,
                "alternatives": [a.hex() for a in self.alternatives]}


@dataclass(frozen=True)
class RimSignature:
    """The parts of ``ds:Signature`` a verifier needs, as the document states them (claims until verified)."""

    canonicalization: str
    signature_method: str
    reference_uri: str
    transforms: tuple[str, ...]
    digest_method: str
    digest_value: bytes
    signature_value: bytes
    certificates: tuple[bytes, ...]  # DER, in document order (leaf first in every NVIDIA RIM)


@dataclass(frozen=True)
class Rim:
    """A parsed RIM. ``references`` by index; ``source`` says where the bytes came from (file, URL, bundle)."""

    raw: bytes = field(repr=False)
    source: str
    tag_id: str
    name: str
    product: str
    edition: str
    version: str  # Meta/@colloquialVersion
    references: dict[int, RimReference] = field(repr=False)
    signature: RimSignature = field(repr=False)
    root: Any = field(repr=False, compare=False)  # the lxml element (canonicalised by rim_verify)

    @property
    def active(self) -> dict[int, RimReference]:
        return {i: r for i, r in self.references.items() if r.active}

    def summary(self) -> dict[str, Any]:
        return {"source": self.source, "tag_id": self.tag_id, "product": self.product, "edition": self.edition,
                "version": self.version, "active_indices": sorted(self.active)}


def _refuse_hostile(data: bytes, source: str) -> None:
    if len(data) > MAX_RIM_BYTES:
        raise ParseError(f"{len(data)} bytes is not a RIM (NVIDIA's are ~20-30 kB; the limit is {MAX_RIM_BYTES})",
                         field=f"RIM {source}")
    for marker in (b"<!DOCTYPE", b"<!ENTITY"):
        at = data.find(marker)
        if at >= 0:
            raise ParseError("a RIM never has a DOCTYPE or entity declarations; this document declares one "
                             "(entity expansion and external references are refused)", field=f"RIM {source}",
                             offset=at)
    # Nesting is bounded before lxml builds a tree: count open tags minus closes as a cheap, conservative scan.
    depth = deepest = 0
    for m in re.finditer(rb"<(/?)([A-Za-z_][^\s/>]*)[^>]*?(/?)>", data):
        if m.group(1):
            depth -= 1
        elif not m.group(3):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_DEPTH:
                    raise ParseError(f"elements nest deeper than {MAX_DEPTH} levels; a RIM nests 5",
                                     field=f"RIM {source}", offset=m.start())


def _text(el: Any, path: str, what: str, source: str) -> str:
    found = el.find(path)
    if found is None or not (found.text or "").strip():
        raise ParseError(f"the signature has no {what}", field=f"RIM {source} ds:Signature")
    return found.text


def _b64(text: str, what: str, source: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ParseError(f"{what} is not base64", field=f"RIM {source} {what}") from None


def _algorithm(el: Any, path: str, what: str, source: str) -> str:
    found = el.find(path)
    if found is None or not found.get("Algorithm"):
        raise ParseError(f"the signature names no {what}", field=f"RIM {source} ds:Signature")
    return found.get("Algorithm")


def _signature(sig: Any, source: str) -> RimSignature:
    d = f"{{{DSIG_NS}}}"
    signed_info = sig.find(d + "SignedInfo")
    if signed_info is None:
        raise ParseError("ds:Signature has no SignedInfo", field=f"RIM {source}")
    refs = signed_info.findall(d + "Reference")
    if len(refs) != 1:
        # One enveloped reference covers the whole document; a second could point the digest at something else.
        raise ParseError(f"SignedInfo holds {len(refs)} references; a RIM's signature has exactly one",
                         field=f"RIM {source} ds:SignedInfo")
    ref = refs[0]
    transforms = tuple(t.get("Algorithm", "") for t in ref.iterfind(f"{d}Transforms/{d}Transform"))
    certs = tuple(_b64(c.text or "", "X509Certificate", source)
                  for c in sig.iterfind(f"{d}KeyInfo/{d}X509Data/{d}X509Certificate"))
    if not certs:
        raise ParseError("the signature carries no X509Certificate: no signer to check", field=f"RIM {source}")
    return RimSignature(
        canonicalization=_algorithm(signed_info, d + "CanonicalizationMethod", "CanonicalizationMethod", source),
        signature_method=_algorithm(signed_info, d + "SignatureMethod", "SignatureMethod", source),
        reference_uri=ref.get("URI", "\0"), transforms=transforms,
        digest_method=_algorithm(ref, d + "DigestMethod", "DigestMethod", source),
        digest_value=_b64(_text(ref, d + "DigestValue", "DigestValue", source), "DigestValue", source),
        signature_value=_b64(_text(sig, d + "SignatureValue", "SignatureValue", source), "SignatureValue", source),
        certificates=certs)


def _reference(res: Any, source: str) -> RimReference:
    where = f"RIM {source} Resource"
    try:
        index = int(res.get("index", ""))
        count = int(res.get("alternatives", ""))
        size = int(res.get("size", ""))
    except ValueError:
        raise ParseError(f"index, alternatives and size must be integers, got {dict(res.attrib)!r:.120}",
                         field=where) from None
    if not 0 <= index < 256 or not 1 <= count <= 64 or size not in (32, 48, 64):
        raise ParseError(f"index {index}, alternatives {count} or size {size} out of range", field=where)
    active = res.get("active")
    if active not in ("True", "False"):
        raise ParseError(f"index {index}: active is {active!r}, not True/False", field=where)
    hashes: dict[int, bytes] = {}
    for key, value in res.attrib.items():
        m = _HASH_ATTR.match(etree.QName(key).localname)
        if not m:
            continue
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise ParseError(f"index {index}: {etree.QName(key).localname} is not hex", field=where) from None
        if len(raw) != size:
            raise ParseError(f"index {index}: {etree.QName(key).localname} is {len(raw)} bytes but size says "
                             f"{size}", field=where)
        hashes[int(m.group(1))] = raw
    if sorted(hashes) != list(range(count)):
        raise ParseError(f"index {index}: alternatives={count} but the values present are Hash{sorted(hashes)}",
                         field=where)
    return RimReference(index, active == "True", tuple(hashes[i] for i in range(count)), size,
                        res.get("name", f"Measurement_{index}"))


def parse_rim(data: bytes | str, *, source: str = "RIM") -> Rim:
    """Read a SWID RIM. Raises :class:`~phalanb.errors.ParseError` naming what is wrong; verifies nothing."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not isinstance(data, (bytes, bytearray)):
        raise ParseError(f"a RIM is XML bytes, got {type(data).__name__}", field="RIM")
    data = bytes(data)
    _refuse_hostile(data, source)
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise ParseError(f"not well-formed XML: {exc}", field=f"RIM {source}",
                         offset=getattr(exc, "position", (None,))[0]) from None
    info = root.getroottree().docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        # The byte scan above reads UTF-8; a document in another encoding is checked again once decoded.
        raise ParseError("a RIM never has a DOCTYPE or entity declarations; this document declares one "
                         f"(encoding {info.encoding})", field=f"RIM {source}")
    deepest = max(len(list(el.iterancestors())) for el in root.iter()) + 1
    if deepest > MAX_DEPTH:  # the scan above is a fast bound; this is the exact one
        raise ParseError(f"elements nest {deepest} levels deep; a RIM nests 5", field=f"RIM {source}")
    if root.tag != f"{{{SWID_NS}}}SoftwareIdentity":
        raise ParseError(f"the root element is {root.tag!r}, not a SWID SoftwareIdentity", field=f"RIM {source}")
    meta = root.find(f"{{{SWID_NS}}}Meta")
    if meta is None or not meta.get("colloquialVersion"):
        raise ParseError("no Meta element with a colloquialVersion: cannot tell which release this RIM is for",
                         field=f"RIM {source}")
    sigs = root.findall(f"{{{DSIG_NS}}}Signature")
    if len(sigs) != 1:
        raise ParseError(f"{len(sigs)} ds:Signature elements under SoftwareIdentity; a signed RIM has one",
                         field=f"RIM {source}")
    refs: dict[int, RimReference] = {}
    for res in root.iterfind(f"{{{SWID_NS}}}Payload/{{{SWID_NS}}}Resource"):
        if res.get("type") != "Measurement":
            continue
        r = _reference(res, source)
        if r.index in refs:
            # Two entries for one index would let a reader pick the convenient one.
            raise ParseError(f"index {r.index} appears twice", field=f"RIM {source} Resource")
        refs[r.index] = r
    if not refs:
        raise ParseError("the Payload holds no Measurement resources", field=f"RIM {source}")
    return Rim(raw=data, source=source, tag_id=root.get("tagId", ""), name=root.get("name", ""),
               product=meta.get("product", ""), edition=meta.get("edition", ""),
               version=meta.get("colloquialVersion"), references=refs, signature=_signature(sigs[0], source),
               root=root)


# --- which RIMs a GPU needs --------------------------------------------------------------------------------------

def _id_part(value: str | None, what: str) -> str:
    if not value:
        raise UnsupportedError(f"the evidence's opaque data has no {what}: the RIM id cannot be derived")
    return value.strip("\0 ").upper()


def rim_ids(spdm: SpdmEvidence, arch: str | None) -> dict[str, str]:
    """The RIM ids NVIDIA's verifiers derive from this evidence's *signed* opaque data: role → id.

    Hopper: ``NV_GPU_DRIVER_GH100_<driver>``; Blackwell: ``NV_GPU_CC_DRIVER_<CHIP_INFO or GB100>_<driver>``;
    VBIOS: ``NV_GPU_VBIOS_<project>_<project SKU>_<chip SKU>_<vbios without dots>``; NVSwitch LS10:
    ``NV_SWITCH_BIOS_5612_0002_890_<bios without dots>``.
    """
    op = spdm.opaque
    vbios = _id_part(op.vbios_version, "VBIOS version").replace(".", "")
    arch = (arch or "").upper()
    if arch == "LS10":
        return {"switch": "NV_SWITCH_BIOS_" + "_".join(LS10_PROJECT) + "_" + vbios}
    driver = _id_part(op.driver_version, "driver version")
    if arch == "BLACKWELL":
        info = op.get("CHIP_INFO")
        chip = info.value.split(b"\0", 1)[0].decode("ascii", "replace").upper() if info is not None else ""
        driver_id = f"NV_GPU_CC_DRIVER_{chip or 'GB100'}_{driver}"
    else:
        driver_id = f"NV_GPU_DRIVER_GH100_{driver}"
    vbios_id = "NV_GPU_VBIOS_" + "_".join((_id_part(op.project, "project"), _id_part(op.project_sku, "project SKU"),
                                           _id_part(op.chip_sku, "chip SKU"), vbios))
    return {"driver": driver_id, "vbios": vbios_id}


def nvdec0_enabled(spdm: SpdmEvidence) -> bool | None:
    """OPAQUE_FIELD_ID_NVDEC0_STATUS: 0xAA enabled (index 35 judged), 0x55 disabled (skipped); None otherwise."""
    f = spdm.opaque.get("NVDEC0_STATUS")
    if f is None or len(f.value) != 1:
        return None
    return {0xAA: True, 0x55: False}.get(f.value[0])
