"""Is this RIM NVIDIA's, for this release, at this time? (Offline; revocation lives in :mod:`.ocsp`.)

Three steps, each a :class:`~phalanb.gpu.verify.StepResult`:

1. **signature** — the enveloped XML-DSig: the document without its ``ds:Signature``, canonicalised as the
   reference's transform names (C14N 1.1 in every NVIDIA RIM), hashes to ``DigestValue``; the canonical
   ``SignedInfo`` verifies (ECDSA P-384 / SHA-384, raw r‖s) with the key of the first embedded certificate;
2. **chain** — the embedded certificates link, each directly issued by the next, to the *pinned* NVIDIA CoRIM
   signing Root CA shipped in ``phalanb/roots`` (the RIM's own copy of a root is set aside: only the pinned one
   counts), CA flags and key usages as a signing chain needs them, and every certificate valid at the evidence's
   time ``at``. NVIDIA re-signs RIMs every two years, so an old RIM is often expired *now* yet valid when the
   evidence was taken: the time used is always stated;
3. **binding** — ``Meta/@colloquialVersion`` and ``@product`` are the release and chip the evidence reports.

Why not signxml: in its CA mode it rejects every NVIDIA RIM (the root's key usage) and with a given certificate it
enforces today's clock. NVIDIA's own C++ verifier does what is done here: chain first, then the leaf key.
C14N 1.1 differs from 1.0 only in how ``xml:base`` / ``xml:id`` of *ancestors* of a canonicalised subset are
inherited; a RIM whose SignedInfo has such ancestors is refused rather than canonicalised approximately.

>>> result = verify_rim(rim, root=nvidia_rim_root(), rim_id="NV_GPU_DRIVER_GH100_550.90.07", role="driver",
...                     version="550.90.07", product="GH100", at=capture_time)       # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from ..errors import InputError
from .rim import DSIG_NS, Rim, _parser
from .verify import StepResult, TrustRoot, _at, _cn

__all__ = ["NVIDIA_RIM_ROOT_SHA256", "nvidia_rim_root", "rim_certificates", "verify_rim_signature",
           "verify_rim_chain", "verify_rim_binding", "RimVerification", "verify_rim", "C14N_METHODS"]

#: SHA-256 of the DER of "NVIDIA CoRIM signing Root CA" (NVIDIA ships it as ``verifier_RIM_root.pem`` in nvtrust
#: and ``rim_root.crt`` in its attestation SDK; valid 2023-03-16 … 2053-03-08).
NVIDIA_RIM_ROOT_SHA256 = "12977B5115ACB0381179279FFFEB5A8C4D264971EBB32298023A465FA41DF5D1"

_C14N11 = "http://www.w3.org/2006/12/xml-c14n11"
_C14N10 = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
_EXC = "http://www.w3.org/2001/10/xml-exc-c14n#"
#: Canonicalisation URI → (exclusive, with comments). 1.0 and 1.1 are computed alike (see the module note).
C14N_METHODS = {_C14N11: (False, False), _C14N11 + "#WithComments": (False, True),
                _C14N10: (False, False), _C14N10 + "#WithComments": (False, True),
                _EXC: (True, False), _EXC + "WithComments": (True, True)}
_ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
_DIGESTS = {"http://www.w3.org/2001/04/xmldsig-more#sha384": hashlib.sha384,
            "http://www.w3.org/2001/04/xmlenc#sha256": hashlib.sha256,
            "http://www.w3.org/2001/04/xmlenc#sha512": hashlib.sha512}
_ECDSA_SHA384 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384"
_XML_NS = "http://www.w3.org/XML/1998/namespace"


def nvidia_rim_root() -> TrustRoot:
    """NVIDIA's CoRIM signing Root CA as shipped in ``phalanb/roots``, checked against its published SHA-256."""
    pem = resources.files("phalanb.roots").joinpath("nvidia_corim_signing_root_ca.pem").read_bytes()
    root = TrustRoot.from_pem(pem, name="NVIDIA CoRIM signing Root CA", simulated=False)
    if root.sha256 != NVIDIA_RIM_ROOT_SHA256:
        raise InputError(f"phalanb/roots/nvidia_corim_signing_root_ca.pem has SHA-256 {root.sha256}, not NVIDIA's "
                         f"{NVIDIA_RIM_ROOT_SHA256}: the installed package was altered")
    return root


def rim_certificates(rim: Rim) -> list[x509.Certificate] | StepResult:
    """The embedded certificates, leaf first, or a failed step saying which one cannot be read."""
    out = []
    for i, der in enumerate(rim.signature.certificates):
        try:
            out.append(x509.load_der_x509_certificate(der))
        except ValueError as exc:
            return StepResult(False, f"embedded certificate {i} cannot be read: {exc}")
    return out


# --- 1. signature --------------------------------------------------------------------------------------------

def _canonical(node: Any, method: str) -> bytes:
    exclusive, comments = C14N_METHODS[method]
    return etree.tostring(node, method="c14n", exclusive=exclusive, with_comments=comments)


def _xml_attrs_above_signed_info(rim: Rim) -> list[str]:
    found = []
    for el in (rim.root, rim.root.find(f"{{{DSIG_NS}}}Signature")):
        for name in ("base", "id"):
            if el is not None and el.get(f"{{{_XML_NS}}}{name}") is not None:
                found.append(f"xml:{name} on {etree.QName(el).localname}")
    return found


def verify_rim_signature(rim: Rim) -> StepResult:
    """Digest of the enveloped document and the SignedInfo signature, with the first embedded certificate's key.
    This proves the document is unchanged since *that key* signed it; :func:`verify_rim_chain` says whose key."""
    s = rim.signature
    detail: dict[str, Any] = {"canonicalization": s.canonicalization, "signature_method": s.signature_method,
                              "digest_method": s.digest_method, "transforms": list(s.transforms)}
    if s.signature_method != _ECDSA_SHA384:
        return StepResult(False, f"SignatureMethod {s.signature_method} is not ECDSA-SHA384, which NVIDIA RIMs use",
                          detail)
    if s.reference_uri != "":
        return StepResult(False, f"the reference points at {s.reference_uri!r}, not at the whole document (URI=\"\")"
                          ": the signature would not cover the reference values", detail)
    if not s.transforms or s.transforms[0] != _ENVELOPED or len(s.transforms) > 2 or (
            len(s.transforms) == 2 and s.transforms[1] not in C14N_METHODS):
        return StepResult(False, f"transforms {list(s.transforms)} are not enveloped-signature + one "
                          "canonicalisation", detail)
    if s.canonicalization not in C14N_METHODS:
        return StepResult(False, f"CanonicalizationMethod {s.canonicalization} is not one phalanb computes", detail)
    digest = _DIGESTS.get(s.digest_method)
    if digest is None:
        return StepResult(False, f"DigestMethod {s.digest_method} is not SHA-256/384/512", detail)
    inherited = _xml_attrs_above_signed_info(rim)
    if inherited:
        return StepResult(False, f"{', '.join(inherited)}: C14N 1.1 treats these differently from 1.0 and phalanb "
                          "does not canonicalise them; NVIDIA RIMs carry none", detail)
    certs = rim_certificates(rim)
    if isinstance(certs, StepResult):
        return certs
    key = certs[0].public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        return StepResult(False, f"the signing certificate '{_cn(certs[0])}' does not hold a P-384 key", detail)
    # The enveloped transform: the document as parsed, less the Signature element (its tail text stays).
    doc = etree.fromstring(rim.raw, _parser()).getroottree()
    sig = doc.getroot().find(f"{{{DSIG_NS}}}Signature")
    prev, parent = sig.getprevious(), sig.getparent()
    if sig.tail:
        if prev is not None:
            prev.tail = (prev.tail or "") + sig.tail
        else:
            parent.text = (parent.text or "") + sig.tail
    parent.remove(sig)
    method = s.transforms[1] if len(s.transforms) == 2 else _C14N10
    try:
        canonical = _canonical(doc, method)
        signed_bytes = _canonical(rim.root.find(f"{{{DSIG_NS}}}Signature/{{{DSIG_NS}}}SignedInfo"),
                                  s.canonicalization)
    except etree.C14NError as exc:
        # e.g. a namespace name that is no URI: libxml2 refuses to canonicalise it, so nothing signed can match
        return StepResult(False, f"the RIM cannot be canonicalised ({exc}): no signature can cover it", detail)
    got = digest(canonical).digest()
    detail["digest"] = got.hex()
    detail["digest_value"] = s.digest_value.hex()
    if got != s.digest_value:
        return StepResult(False, f"digest mismatch: the document hashes to {got.hex()[:16]}… but the signature "
                          f"covers {s.digest_value.hex()[:16]}… — the RIM was altered after it was signed", detail)
    sv = s.signature_value
    if len(sv) != 96:
        return StepResult(False, f"SignatureValue is {len(sv)} bytes; ECDSA P-384 r‖s is 96", detail)
    try:
        key.verify(encode_dss_signature(int.from_bytes(sv[:48], "big"), int.from_bytes(sv[48:], "big")),
                   signed_bytes, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        return StepResult(False, f"the SignedInfo signature does not verify with the key of '{_cn(certs[0])}'",
                          detail)
    return StepResult(True, f"digest (C14N, {s.digest_method.rsplit('#', 1)[-1].upper()}) and ECDSA P-384 "
                      f"signature verify with the key of '{_cn(certs[0])}'", detail)


# --- 2. chain ------------------------------------------------------------------------------------------------

def _basic(cert: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None


def _usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def _day(t: _dt.datetime) -> str:
    return t.strftime("%Y-%m-%d")


def _sha256(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest().upper()


def link_chain(certs: Sequence[x509.Certificate], root: TrustRoot, at: _dt.datetime, *,
               what: str = "RIM") -> StepResult:
    """Certificates (leaf first) each directly issued by the next, the last by the pinned ``root``; CA flags, key
    usages and path lengths as a signing chain needs them; every certificate valid at ``at``.

    Done by hand rather than with :mod:`cryptography.x509.verification`: NVIDIA's RIM certificates write dates
    before 2050 as GeneralizedTime, which that (web-PKI) validator refuses."""
    certs = list(certs)
    names = [_cn(c) for c in certs]
    detail: dict[str, Any] = {"certificates": names, "root": root.name, "root_sha256": root.sha256,
                              "validated_at": at.isoformat()}
    if certs and certs[-1].subject == certs[-1].issuer:
        if _sha256(certs[-1]) != root.sha256:
            return StepResult(False, f"the {what} chain ends at its own root '{names[-1]}' "
                              f"(SHA-256 {_sha256(certs[-1])[:16]}…), not at the pinned {root.name}: a look-alike "
                              "root is not trusted", detail)
        certs, names = certs[:-1], names[:-1]  # the RIM's own copy of the pinned root: only the pinned one counts
    if not certs:
        return StepResult(False, f"the {what} carries no signing certificate below the root", detail)
    full = certs + [root.certificate]
    for i, cert in enumerate(certs):
        issuer = full[i + 1]
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature) as exc:
            return StepResult(False, f"broken link: '{names[i]}' is not signed by '{_cn(issuer)}' "
                              f"({type(exc).__name__}: {exc or 'signature invalid'})", detail)
        basic, usage = _basic(issuer), _usage(issuer)
        if basic is None or not basic.ca or (usage is not None and not usage.key_cert_sign):
            return StepResult(False, f"'{_cn(issuer)}' signs '{names[i]}' but is not a CA allowed to sign "
                              "certificates", detail)
        if basic.path_length is not None and i > basic.path_length:
            return StepResult(False, f"'{_cn(issuer)}' allows {basic.path_length} CA(s) below it; the chain puts "
                              f"{i}", detail)
    leaf_basic, leaf_usage = _basic(certs[0]), _usage(certs[0])
    if (leaf_basic is not None and leaf_basic.ca) or (leaf_usage is not None and not leaf_usage.digital_signature):
        return StepResult(False, f"the signing certificate '{names[0]}' is a CA or may not sign documents "
                          "(key usage lacks digitalSignature)", detail)
    for cert in full:
        if at < cert.not_valid_before_utc:
            return StepResult(False, f"'{_cn(cert)}' is valid only from {_day(cert.not_valid_before_utc)}: not yet "
                              f"valid at {_day(at)}, the time the evidence is judged at", detail)
        if at > cert.not_valid_after_utc:
            return StepResult(False, f"'{_cn(cert)}' expired on {_day(cert.not_valid_after_utc)}, before "
                              f"{_day(at)}, the time the evidence is judged at (NVIDIA re-signs RIMs: fetch the "
                              "current one, or judge at the evidence's capture time)", detail)
    until = min(c.not_valid_after_utc for c in full)
    return StepResult(True, f"{len(certs)} certificate(s) link to the pinned {root.name}, all valid at {_day(at)} "
                      f"(the first to expire: {_day(until)})", detail)


def verify_rim_chain(rim: Rim, root: TrustRoot, *, at: float | _dt.datetime | None = None) -> StepResult:
    certs = rim_certificates(rim)
    if isinstance(certs, StepResult):
        return certs
    return link_chain(certs, root, _at(at))


# --- 3. binding ----------------------------------------------------------------------------------------------

def verify_rim_binding(rim: Rim, *, version: str | None, product: str | None) -> StepResult:
    """``colloquialVersion`` = the version the evidence reports (exact, as NVIDIA's C++ verifier compares it) and
    ``product`` = the chip; a RIM of another release cannot stand in, even when signed."""
    detail = {"rim_version": rim.version, "evidence_version": version, "rim_product": rim.product,
              "evidence_product": product}
    if version is None:
        return StepResult(False, "the evidence reports no version to bind the RIM to", detail)
    if rim.version.upper() != version.upper():
        return StepResult(False, f"the RIM is for version {rim.version}, the evidence reports {version}", detail)
    if product and rim.product.upper().replace("_", "") != product.upper().replace("_", ""):  # "LS_10" = "LS10"
        return StepResult(False, f"the RIM is for product {rim.product}, the evidence is from a {product}", detail)
    return StepResult(True, f"version {rim.version} and product {rim.product} are the evidence's", detail)


@dataclass(frozen=True)
class RimVerification:
    """One RIM judged for one GPU: which id and role, and the steps. ``revocation`` comes from :mod:`.ocsp`."""

    rim_id: str
    role: str  # "driver", "vbios" or "switch"
    rim: Rim | None
    signature: StepResult
    chain: StepResult
    binding: StepResult
    revocation: StepResult = field(default_factory=lambda: StepResult(None, "no OCSP answers given"))

    @property
    def trusted(self) -> bool | None:
        """True when signature, chain and binding hold; False when any failed; None when the RIM is missing."""
        steps = (self.signature, self.chain, self.binding)
        if any(s.ok is False for s in steps):
            return False
        return True if all(s.ok for s in steps) else None

    def first_problem(self) -> StepResult | None:
        for s in (self.signature, self.chain, self.binding):
            if s.ok is not True:
                return s
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"rim_id": self.rim_id, "role": self.role, "rim": self.rim.summary() if self.rim else None,
                "signature": self.signature.to_dict(), "chain": self.chain.to_dict(),
                "binding": self.binding.to_dict(), "revocation": self.revocation.to_dict()}


def missing_rim(rim_id: str, role: str, reason: str) -> RimVerification:
    gone = StepResult(None, reason)
    return RimVerification(rim_id, role, None, gone, gone, gone, gone)


def verify_rim(rim: Rim, *, root: TrustRoot, rim_id: str, role: str, version: str | None,
               product: str | None, at: float | _dt.datetime | None = None,
               revocation: StepResult | None = None) -> RimVerification:
    """Signature, chain at ``at`` and binding of one RIM (``revocation`` is passed in by the appraisal)."""
    if not isinstance(root, TrustRoot):
        raise InputError("root must be a TrustRoot (phalanb.gpu.nvidia_rim_root() for NVIDIA's RIMs)")
    return RimVerification(rim_id, role, rim, verify_rim_signature(rim), verify_rim_chain(rim, root, at=at),
                           verify_rim_binding(rim, version=version, product=product),
                           revocation or StepResult(None, "no OCSP answers given: revocation not checked"))
