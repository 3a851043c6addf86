"""Offline cryptographic verification of a TDX quote, one step at a time (SPEC §7, steps 1-4).

No network and no opinions: each step records its inputs and its result, so a notebook can show the signed bytes,
the key and the outcome, and a failing step names itself and why. Judging (TCB status, DEBUG, accepted levels) is
in :mod:`phalanb.tdx.collateral`.

>>> q = parse_quote(raw)                                        # doctest: +SKIP
>>> result = verify_quote_offline(q)                            # pinned Intel root, time = now
>>> [(s.name, s.ok) for s in result.steps]                      # doctest: +SKIP
[('quote_signature', True), ('qe_report_signature', True), ('qe_report_data', True), ('pck_chain', True)]
>>> result.pck.fmspc.hex()                                      # doctest: +SKIP
'b0c06f000000'

The trust root is a parameter, never a global: :meth:`TrustRoot.intel` (the default) pins the key of Intel's SGX
Root CA shipped inside the package; the simulator's root must be passed explicitly.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import time
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from importlib import resources
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ..errors import InputError, ParseError, PhalanbError
from ..timeutil import parse_time
from ..verdict import Check, Status
from . import _der
from .quote import Quote, parse_quote

__all__ = [
    "INTEL_SGX_ROOT_CA_SHA256",
    "SGX_EXTENSION_OID",
    "TrustRoot",
    "PckExtension",
    "Step",
    "OfflineResult",
    "parse_sgx_extension",
    "pck_extension",
    "verify_quote_signature",
    "verify_qe_report_signature",
    "verify_qe_report_data",
    "verify_pck_chain",
    "verify_quote_offline",
]

#: SHA-256 of the DER of Intel's SGX Root CA certificate (the one Intel publishes and dcap-qvl embeds).
INTEL_SGX_ROOT_CA_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
SGX_EXTENSION_OID = "1.2.840.113741.1.13.1"
SIMULATED_ROOT_MARK = "phalanb simulated"  # appears in the simulator's root CA subject (see phalanb.tdx.sim)


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class TrustRoot:
    """The root CA a PCK chain must end at. Identity is the *key* (SubjectPublicKeyInfo), never the name:
    Intel's own synthetic sample uses a root with Intel's subject name and a different key."""

    name: str  # "intel", "simulated" or "custom"
    der: bytes

    @classmethod
    def intel(cls) -> "TrustRoot":
        return _intel_root()

    @classmethod
    def _load_intel(cls) -> "TrustRoot":
        der = resources.files("phalanb.roots").joinpath("intel_sgx_root_ca.der").read_bytes()
        digest = hashlib.sha256(der).hexdigest()
        if digest != INTEL_SGX_ROOT_CA_SHA256:
            # The packaged file is the pin; if it changed, nothing it verifies can be believed.
            raise PhalanbError(f"the packaged Intel SGX Root CA has sha256 {digest}, expected "
                               f"{INTEL_SGX_ROOT_CA_SHA256}: the installation is corrupt or tampered with")
        return cls("intel", der)

    @classmethod
    def from_bytes(cls, data: bytes | str, name: str = "custom") -> "TrustRoot":
        """A root from PEM or DER (a file's content)."""
        if isinstance(data, str):
            data = data.encode()
        try:
            if b"-----BEGIN CERTIFICATE-----" in data:
                cert = x509.load_pem_x509_certificate(data)
            else:
                cert = x509.load_der_x509_certificate(data)
        except ValueError as exc:
            raise InputError(f"the trust root is not a PEM or DER certificate: {exc}") from None
        return cls(name, cert.public_bytes(serialization.Encoding.DER))

    @cached_property
    def cert(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.der)

    @cached_property
    def spki(self) -> bytes:
        return _spki(self.cert)

    @property
    def key_sha256(self) -> str:
        return hashlib.sha256(self.spki).hexdigest()

    @property
    def cert_sha256(self) -> str:
        return hashlib.sha256(self.der).hexdigest()

    @property
    def subject(self) -> str:
        return self.cert.subject.rfc4514_string()


@lru_cache(maxsize=1)
def _intel_root() -> TrustRoot:
    # Read and hash-checked once per process; TrustRoot is immutable.
    return TrustRoot._load_intel()


# --------------------------------------------------------------------------------------------------------------
# SGX extension of the PCK leaf

_OID = SGX_EXTENSION_OID


@dataclass(frozen=True)
class PckExtension:
    """Values of Intel's SGX extension in the PCK leaf certificate (Intel "PCK Certificate and CRL Profile")."""

    ppid: bytes
    tcb_components: tuple[int, ...]  # SGX TCB component SVNs 1..16
    pce_svn: int
    cpu_svn: bytes
    pce_id: bytes
    fmspc: bytes
    sgx_type: int                    # 0 Standard, 1 Scalable, 2 Scalable with integrity
    platform_instance_id: bytes | None = None
    dynamic_platform: bool | None = None
    cached_keys: bool | None = None
    smt_enabled: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ppid": self.ppid.hex(), "tcb_components": list(self.tcb_components), "pce_svn": self.pce_svn,
                "cpu_svn": self.cpu_svn.hex(), "pce_id": self.pce_id.hex(), "fmspc": self.fmspc.hex(),
                "sgx_type": self.sgx_type,
                "platform_instance_id": self.platform_instance_id.hex() if self.platform_instance_id else None,
                "dynamic_platform": self.dynamic_platform, "cached_keys": self.cached_keys,
                "smt_enabled": self.smt_enabled}


def _pairs(value: bytes) -> dict[str, tuple[int, bytes]]:
    out: dict[str, tuple[int, bytes]] = {}
    for tag, item in _der.read_children(value):
        if tag != 0x30:
            raise ParseError(f"expected a SEQUENCE in the SGX extension, found tag {tag:#x}", field="sgx_extension")
        kids = _der.read_children(item)
        if len(kids) != 2 or kids[0][0] != 0x06:
            raise ParseError("expected (OID, value) in the SGX extension", field="sgx_extension")
        out[_der.decode_oid(kids[0][1])] = kids[1]
    return out


def _int(v: tuple[int, bytes]) -> int:
    return int.from_bytes(v[1], "big")


def parse_sgx_extension(ext_value: bytes) -> PckExtension:
    """Decode the DER content of extension 1.2.840.113741.1.13.1."""
    tag, top, _ = _der.read_tlv(ext_value)
    if tag != 0x30:
        raise ParseError("the SGX extension is not a SEQUENCE", field="sgx_extension", offset=0)
    items = _pairs(top)
    try:
        tcb = _pairs(items[_OID + ".2"][1])
        comps = tuple(_int(tcb[f"{_OID}.2.{i}"]) for i in range(1, 17))
        config = _pairs(items[_OID + ".7"][1]) if _OID + ".7" in items else {}

        def flag(n: int) -> bool | None:
            v = config.get(f"{_OID}.7.{n}")
            return None if v is None else v[1] != b"\0"

        pid = items.get(_OID + ".6")
        return PckExtension(
            ppid=items[_OID + ".1"][1], tcb_components=comps, pce_svn=_int(tcb[_OID + ".2.17"]),
            cpu_svn=tcb[_OID + ".2.18"][1], pce_id=items[_OID + ".3"][1], fmspc=items[_OID + ".4"][1],
            sgx_type=_int(items[_OID + ".5"]), platform_instance_id=pid[1] if pid else None,
            dynamic_platform=flag(1), cached_keys=flag(2), smt_enabled=flag(3))
    except KeyError as exc:
        raise ParseError(f"the SGX extension lacks OID {exc.args[0]}", field="sgx_extension") from None


def _load_chain(quote: Quote) -> list[x509.Certificate]:
    certs = []
    for i, pem in enumerate(quote.pck_chain_pem):
        try:
            cert = x509.load_pem_x509_certificate(pem.encode())
            # cryptography decodes names, keys and extensions lazily; touch them now so a malformed
            # certificate is reported here as a parse error, not later as a KeyError deep in a check.
            _ = (cert.subject, cert.issuer, cert.public_key(), cert.extensions, cert.not_valid_after_utc,
                 cert.not_valid_before_utc, cert.subject.rfc4514_string(), cert.issuer.rfc4514_string())
            certs.append(cert)
        except (ValueError, KeyError, TypeError, UnsupportedAlgorithm, x509.DuplicateExtension,
                x509.InvalidVersion, x509.UnsupportedGeneralNameType) as exc:
            # The last three are not ValueErrors (cryptography gives them no common base): one flipped bit in an
            # extension OID makes a DuplicateExtension.
            raise ParseError(f"certificate {i} of the PCK chain is not valid X.509: {type(exc).__name__}: {exc}",
                             field="pck_chain", offset=quote.field("pck_chain").offset) from None
    return _order_chain(certs)


def _order_chain(certs: list[x509.Certificate]) -> list[x509.Certificate]:
    """Leaf first, root last. Intel's quoting library writes that order; Intel's synthetic sample writes the
    reverse. Order by names only (signatures are checked later); if the names do not form one path, keep the
    order as given and let the chain step say what is wrong."""
    if len(certs) < 2:
        return certs
    issuers = {c.issuer for c in certs if c.issuer != c.subject}
    leaves = [c for c in certs if c.subject not in issuers]
    if len(leaves) != 1:
        return certs
    ordered = [leaves[0]]
    by_subject = {c.subject: c for c in certs}
    while ordered[-1].issuer != ordered[-1].subject and ordered[-1].issuer in by_subject \
            and len(ordered) < len(certs):
        ordered.append(by_subject[ordered[-1].issuer])
    return ordered if len(ordered) == len(certs) else certs


def pck_extension(quote: Quote, leaf: x509.Certificate | None = None) -> tuple[PckExtension, str]:
    """(SGX extension values, CA kind ``"platform"``/``"processor"``) of the quote's PCK leaf."""
    leaf = leaf or _load_chain(quote)[0]
    try:
        ext = leaf.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSION_OID))
    except x509.ExtensionNotFound:
        raise ParseError("the PCK leaf has no SGX extension (1.2.840.113741.1.13.1)", field="pck_chain") from None
    issuer = leaf.issuer.rfc4514_string().lower()
    ca = "processor" if "processor" in issuer else "platform" if "platform" in issuer else "unknown"
    return parse_sgx_extension(ext.value.value), ca


# --------------------------------------------------------------------------------------------------------------
# Steps

@dataclass
class Step:
    """One verification step: what went in, whether it held, and a sentence saying why."""

    name: str
    ok: bool
    reason: str
    inputs: dict[str, Any] = field(default_factory=dict)


def _p256(xy: bytes) -> ec.EllipticCurvePublicKey:
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + xy)


def _rs_to_der(sig: bytes) -> bytes:
    return encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))


def verify_quote_signature(quote: Quote) -> Step:
    """Step 1: the attestation key signed the header and TD report (``raw[:signed_length]``)."""
    sd = quote.signature_data
    inputs = {"signed_region": f"bytes 0..{quote.signed_length}", "signed_sha256":
              hashlib.sha256(quote.signed_region).hexdigest(), "attestation_key": sd.attestation_key.hex(),
              "signature": sd.signature.hex()}
    try:
        key = _p256(sd.attestation_key)
    except ValueError:
        return Step("quote_signature", False, "the attestation key is not a point on P-256", inputs)
    try:
        key.verify(_rs_to_der(sd.signature), quote.signed_region, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return Step("quote_signature", False, f"the quote signature does not verify over bytes "
                    f"0..{quote.signed_length} with the attestation key: header or TD report altered", inputs)
    return Step("quote_signature", True, f"the attestation key signed bytes 0..{quote.signed_length} "
                "(header and TD report)", inputs)


def verify_qe_report_signature(quote: Quote, leaf: x509.Certificate | None = None) -> Step:
    """Step 2: the PCK leaf key signed the 384-byte QE report."""
    sd = quote.signature_data
    inputs = {"qe_report_sha256": hashlib.sha256(sd.qe_report.raw).hexdigest(),
              "qe_report_signature": sd.qe_report_signature.hex()}
    try:
        leaf = leaf or _load_chain(quote)[0]
    except ParseError as exc:
        return Step("qe_report_signature", False, f"cannot read the PCK leaf: {exc}", inputs)
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return Step("qe_report_signature", False, "the PCK leaf key is not an EC key", inputs)
    inputs["pck_leaf_subject"] = leaf.subject.rfc4514_string()
    try:
        key.verify(_rs_to_der(sd.qe_report_signature), sd.qe_report.raw, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return Step("qe_report_signature", False, "the QE report signature does not verify with the PCK leaf "
                    "key: QE report or its signature altered, or a PCK certificate of another platform", inputs)
    return Step("qe_report_signature", True, "the PCK leaf key signed the QE report", inputs)


def verify_qe_report_data(quote: Quote) -> Step:
    """Step 3: QE report_data = sha256(attestation key ‖ QE auth data) ‖ 32 zero bytes (binds the key)."""
    sd = quote.signature_data
    want = hashlib.sha256(sd.attestation_key + sd.qe_auth_data).digest() + bytes(32)
    got = sd.qe_report.report_data
    inputs = {"expected": want.hex(), "qe_report_data": got.hex(), "qe_auth_data": sd.qe_auth_data.hex()}
    if got != want:
        part = "first 32 bytes" if got[:32] != want[:32] else "last 32 bytes (must be zero)"
        return Step("qe_report_data", False, f"QE report_data ({part}) is not sha256(attestation key ‖ QE auth "
                    "data): the attestation key is not the one the QE certified", inputs)
    return Step("qe_report_data", True, "QE report_data = sha256(attestation key ‖ QE auth data): the QE "
                "vouches for the attestation key", inputs)


def _when(at: float | None) -> _dt.datetime:
    # The shared validator: NaN, ±inf, negative or past 9999 is a ParseError, not a crash in datetime.
    seconds = time.time() if at is None else parse_time(at, field="at")
    return _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc)


def verify_pck_chain(quote: Quote, root: TrustRoot | None = None, at: float | None = None, *,
                     certs: list[x509.Certificate] | None = None) -> Step:
    """Step 4: PCK leaf ← intermediate CA ← root, each signature checked, every certificate valid at ``at``
    (Unix seconds; default now), and the root's *key* equal to the pinned one."""
    root = root or TrustRoot.intel()
    when = _when(at)
    inputs: dict[str, Any] = {"trust_root": root.name, "trust_root_subject": root.subject,
                              "trust_root_key_sha256": root.key_sha256, "at": int(when.timestamp())}
    try:
        certs = certs if certs is not None else _load_chain(quote)
    except ParseError as exc:
        return Step("pck_chain", False, str(exc), inputs)
    inputs["chain"] = [c.subject.rfc4514_string() for c in certs]
    if len(certs) < 2:
        return Step("pck_chain", False, f"the PCK chain has {len(certs)} certificate(s); need the leaf and its CA",
                    inputs)
    pinned = root.cert
    # Drop the chain's own root if it is self-issued: trust comes from the pinned key, not from the quote.
    top = certs[-1]
    chain_root = top if top.issuer == top.subject else None
    path = certs[:-1] if chain_root is not None else certs
    if chain_root is not None and _spki(chain_root) != root.spki:
        name = chain_root.subject.rfc4514_string()
        key = hashlib.sha256(_spki(chain_root)).hexdigest()
        inputs["chain_root_key_sha256"] = key
        if SIMULATED_ROOT_MARK in name.lower() and root.name != "simulated":
            return Step("pck_chain", False, f"the chain ends at phalanb's simulated root CA ({name}), not at the "
                        f"{root.name} root: this quote comes from the simulator; trust it only by choosing the "
                        "simulated root explicitly", inputs)
        return Step("pck_chain", False, f"the chain's root '{name}' has key sha256 {key[:16]}…, not the pinned "
                    f"{root.name} root key {root.key_sha256[:16]}… (a look-alike root: same name, other key)",
                    inputs)
    if chain_root is not None and chain_root.public_bytes(serialization.Encoding.DER) != root.der:
        # Same key, other bytes: acceptable only as a genuine re-issue (same subject, signed by the pinned key).
        # Trust still comes from the pinned certificate, but an altered copy means the chain was tampered with.
        try:
            genuine = chain_root.subject == pinned.subject
            chain_root.verify_directly_issued_by(pinned)
        except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
            genuine = False
        if not genuine:
            return Step("pck_chain", False, "the root certificate inside the quote has the pinned key but is not "
                        f"a certificate signed by it (an altered copy of the {root.name} root)", inputs)
    for i, cert in enumerate(path):
        issuer = path[i + 1] if i + 1 < len(path) else pinned
        label = "leaf" if i == 0 else f"certificate {i}"
        if cert.issuer != issuer.subject:
            return Step("pck_chain", False, f"{label} '{cert.subject.rfc4514_string()}' names issuer "
                        f"'{cert.issuer.rfc4514_string()}', but the next certificate is "
                        f"'{issuer.subject.rfc4514_string()}'", inputs)
        try:
            cert.verify_directly_issued_by(issuer)
        except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm) as exc:
            return Step("pck_chain", False, f"{label} '{cert.subject.rfc4514_string()}' is not signed by "
                        f"'{issuer.subject.rfc4514_string()}'" + (f" ({exc})" if str(exc) else ""), inputs)
        if i + 1 < len(path) or issuer is pinned:
            try:
                bc = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
                is_ca = bc.ca
            except x509.ExtensionNotFound:
                is_ca = False
            if not is_ca:
                return Step("pck_chain", False, f"'{issuer.subject.rfc4514_string()}' signs certificates but is "
                            "not a CA (basicConstraints)", inputs)
    for cert in certs[:-1] + [pinned]:
        if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
            return Step("pck_chain", False, f"'{cert.subject.rfc4514_string()}' is valid "
                        f"{cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}, not at "
                        f"{when:%Y-%m-%d %H:%M} UTC", inputs)
    return Step("pck_chain", True, f"{len(path)} certificate(s) chain to the pinned {root.name} root "
                f"(key sha256 {root.key_sha256[:16]}…), valid at {when:%Y-%m-%d}", inputs)


# --------------------------------------------------------------------------------------------------------------
# All four

@dataclass
class OfflineResult:
    """The four offline steps and the PCK leaf's SGX extension values."""

    steps: list[Step]
    pck: PckExtension | None
    ca: str | None
    root: TrustRoot

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps)

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def failed(self) -> list[Step]:
        return [s for s in self.steps if not s.ok]

    def checks(self) -> list[Check]:
        """Check ids ``tdx.quote_signature``, ``tdx.qe_report`` (signature + key binding), ``tdx.pck_chain``."""
        qs, qsig, qdata, chain = (self.step(n) for n in
                                  ("quote_signature", "qe_report_signature", "qe_report_data", "pck_chain"))
        qe_ok = qsig.ok and qdata.ok
        qe_reason = (qsig.reason if not qsig.ok else qdata.reason) if not qe_ok else \
            "the PCK leaf signed the QE report, which vouches for the attestation key"
        return [
            Check("tdx.quote_signature", Status.PASS if qs.ok else Status.FAIL, qs.reason, dict(qs.inputs)),
            Check("tdx.qe_report", Status.PASS if qe_ok else Status.FAIL, qe_reason,
                  {**qsig.inputs, **qdata.inputs}),
            Check("tdx.pck_chain", Status.PASS if chain.ok else Status.FAIL, chain.reason, dict(chain.inputs)),
        ]


def verify_quote_offline(quote: Quote | bytes | str, *, root: TrustRoot | None = None,
                         at: float | None = None) -> OfflineResult:
    """Run steps 1-4 (no network). Every step runs even when an earlier one fails, so the result shows all
    that is wrong at once."""
    if not isinstance(quote, Quote):
        quote = parse_quote(quote)
    root = root or TrustRoot.intel()
    certs: list[x509.Certificate] | None = None
    try:
        certs = _load_chain(quote)  # once, shared by the steps
    except ParseError:
        pass
    leaf = certs[0] if certs else None
    steps = [verify_quote_signature(quote), verify_qe_report_signature(quote, leaf), verify_qe_report_data(quote),
             verify_pck_chain(quote, root, at, certs=certs)]
    pck = ca = None
    if leaf is not None:
        try:
            pck, ca = pck_extension(quote, leaf)
        except ParseError:
            pass
    return OfflineResult(steps, pck, ca, root)
