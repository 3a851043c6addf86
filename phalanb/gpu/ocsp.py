"""Saved OCSP answers for NVIDIA's certificates, verified offline (RFC 6960).

NVIDIA's responder (``ocsp.ndis.nvidia.com``) answers for the device chain (GSP BROM, Provisioner ICA, Identity)
and for every RIM chain certificate below the root. An answer is used only when all of these hold:

- status ``successful`` and a basic response;
- its CertID is the certificate's: serial number, and the SHA hashes of the *issuer's* name and key (an answer
  for another certificate, or for the same serial under another CA, is refused);
- signed by the issuer itself, or by a delegated responder certificate the issuer signed directly, that carries
  the OCSPSigning extended key usage and was valid when the answer was produced;
- the judged time lies inside ``thisUpdate … nextUpdate``: an answer says nothing about other days, so outside
  its window the status is *unknown* (skipped), never "good".

``good`` passes; ``revoked`` fails with its reason (``certificateHold`` included: a held certificate is not good);
``unknown`` fails, as NVIDIA's verifiers do unless a relying party allows it.

>>> answers = load_ocsp_answers(Path("rims/ocsp"))                            # doctest: +SKIP
>>> ocsp_status(leaf, issuer, answers, at=capture_time).status                # doctest: +SKIP
<Status.PASS: 'pass'>
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hashlib
from pathlib import Path
from typing import Iterable, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, rsa, padding
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from ..errors import ParseError
from .verify import StepResult, _cn

__all__ = ["MAX_OCSP_BYTES", "load_ocsp", "load_ocsp_answers", "check_ocsp", "ocsp_status", "chain_status"]

MAX_OCSP_BYTES = 64 * 1024
_HASHES = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}


def load_ocsp(data: bytes, *, source: str = "OCSP answer") -> ocsp.OCSPResponse:
    """An OCSP response as DER, or as base64 text of it (how NVIDIA's SDK tests save them)."""
    if not isinstance(data, (bytes, bytearray)) or len(data) > MAX_OCSP_BYTES:
        raise ParseError(f"an OCSP answer is at most {MAX_OCSP_BYTES} bytes of DER or base64", field=source)
    data = bytes(data)
    if data[:1] != b"\x30":
        try:
            data = base64.b64decode(b"".join(data.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ParseError("neither DER (starts with 0x30) nor base64 of DER", field=source) from None
    try:
        return ocsp.load_der_ocsp_response(data)
    except ValueError as exc:
        raise ParseError(f"not an OCSP response: {exc}", field=source) from None


def load_ocsp_answers(folder: str | Path) -> list[ocsp.OCSPResponse]:
    """Every ``*.der`` (and ``*.dat`` base64 with no ``.der`` twin) in ``folder``; a file that is not an OCSP
    answer raises :class:`ParseError` naming it."""
    folder = Path(folder)
    out = []
    for path in sorted(folder.glob("*")):
        if path.suffix not in (".der", ".dat", ".ocsp") or not path.is_file():
            continue
        if path.suffix == ".dat" and path.with_suffix(".der").exists():
            continue  # the same answer, saved twice
        out.append(load_ocsp(path.read_bytes(), source=str(path.name)))
    return out


def _key_hash(cert: x509.Certificate, algo) -> bytes:
    # RFC 6960 issuerKeyHash: the hash of the subjectPublicKey BIT STRING's value (no tag, length, unused bits).
    return algo(cert.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)).digest() \
        if isinstance(cert.public_key(), ec.EllipticCurvePublicKey) else \
        algo(cert.public_key().public_bytes(Encoding.DER, PublicFormat.PKCS1)).digest()


def _singles(resp: ocsp.OCSPResponse) -> list:
    return list(resp.responses)


def _responder(resp: ocsp.OCSPResponse, issuer: x509.Certificate) -> x509.Certificate | None:
    if resp.responder_name is not None and resp.responder_name == issuer.subject:
        return issuer
    if resp.responder_key_hash is not None and resp.responder_key_hash == _key_hash(issuer, hashlib.sha1):
        return issuer
    for cert in resp.certificates:
        if (resp.responder_name is not None and cert.subject == resp.responder_name) or (
                resp.responder_key_hash is not None and resp.responder_key_hash == _key_hash(cert, hashlib.sha1)):
            return cert
    return None


def _day(t: _dt.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M")


def check_ocsp(cert: x509.Certificate, issuer: x509.Certificate, resp: ocsp.OCSPResponse,
               at: _dt.datetime) -> StepResult:
    """Judge one answer *given as* the answer for ``cert`` (issued by ``issuer``) at time ``at``."""
    name = _cn(cert)
    detail = {"certificate": name, "serial": f"{cert.serial_number:x}"}
    if resp.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        return StepResult(False, f"the OCSP answer for '{name}' is not successful "
                          f"({resp.response_status.name.lower()})", detail)
    mine = [s for s in _singles(resp) if s.serial_number == cert.serial_number]
    if not mine:
        others = ", ".join(f"{s.serial_number:x}" for s in _singles(resp))
        return StepResult(False, f"the OCSP answer is for serial {others}, not for '{name}' (serial "
                          f"{cert.serial_number:x}): an answer for another certificate", detail)
    single = mine[0]
    algo = _HASHES.get(single.hash_algorithm.name)
    if algo is None or single.issuer_name_hash != algo(issuer.subject.public_bytes()).digest() \
            or single.issuer_key_hash != _key_hash(issuer, algo):
        return StepResult(False, f"the OCSP answer's CertID names serial {cert.serial_number:x} under another "
                          f"issuer, not '{_cn(issuer)}': an answer for another certificate", detail)
    responder = _responder(resp, issuer)
    if responder is None:
        return StepResult(False, f"the OCSP answer for '{name}' is signed by a responder it does not include",
                          detail)
    detail["responder"] = _cn(responder)
    if responder is not issuer:
        try:
            responder.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            return StepResult(False, f"the OCSP responder '{_cn(responder)}' was not issued by '{_cn(issuer)}': it "
                              f"may not answer for '{name}'", detail)
        try:
            eku = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            eku = []
        if ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
            return StepResult(False, f"the OCSP responder '{_cn(responder)}' lacks the OCSPSigning key usage", detail)
        produced = resp.produced_at_utc
        if not responder.not_valid_before_utc <= produced <= responder.not_valid_after_utc:
            return StepResult(False, f"the OCSP responder '{_cn(responder)}' was not valid when the answer was "
                              f"produced ({_day(produced)})", detail)
    key = responder.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(resp.signature, resp.tbs_response_bytes, ec.ECDSA(resp.signature_hash_algorithm))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(resp.signature, resp.tbs_response_bytes, padding.PKCS1v15(), resp.signature_hash_algorithm)
        else:
            return StepResult(False, f"the OCSP responder's key type {type(key).__name__} is not handled", detail)
    except InvalidSignature:
        return StepResult(False, f"the OCSP answer for '{name}' does not verify with '{_cn(responder)}''s key",
                          detail)
    this, nxt = single.this_update_utc, single.next_update_utc
    detail.update({"this_update": this.isoformat(), "next_update": nxt.isoformat() if nxt else None,
                   "status": single.certificate_status.name.lower()})
    if nxt is None or not this <= at <= nxt:
        window = f"{_day(this)} → {_day(nxt) if nxt else '(no nextUpdate)'}"
        return StepResult(None, f"the OCSP answer for '{name}' covers {window} UTC; the judged time {_day(at)} is "
                          "outside it, so the status then is unknown", detail)
    status = single.certificate_status
    if status is ocsp.OCSPCertStatus.GOOD:
        return StepResult(True, f"'{name}' good per {_cn(responder)} ({_day(this)} → {_day(nxt)})", detail)
    if status is ocsp.OCSPCertStatus.REVOKED:
        reason = single.revocation_reason.name if single.revocation_reason else "unspecified"
        detail["revocation_reason"] = reason
        return StepResult(False, f"'{name}' is revoked ({reason}) since {_day(single.revocation_time_utc)} per "
                          f"{_cn(responder)}", detail)
    return StepResult(False, f"the OCSP responder does not know '{name}' (status unknown)", detail)


def ocsp_status(cert: x509.Certificate, issuer: x509.Certificate, answers: Iterable[ocsp.OCSPResponse],
                at: _dt.datetime) -> StepResult:
    """The status of ``cert`` from whichever saved answer names its serial; skipped when none does."""
    candidates = [a for a in answers if a.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
                  and any(s.serial_number == cert.serial_number for s in _singles(a))]
    if not candidates:
        return StepResult(None, f"no OCSP answer for '{_cn(cert)}' (serial {cert.serial_number:x}): revocation "
                          "not checked", {"certificate": _cn(cert)})
    results = [check_ocsp(cert, issuer, a, at) for a in candidates]
    for wanted in (False, True, None):  # a failing answer outweighs a good one: nothing may hide a revocation
        for r in results:
            if r.ok is wanted:
                return r
    return results[0]


def chain_status(certs: Sequence[x509.Certificate], root: x509.Certificate, answers: Sequence[ocsp.OCSPResponse],
                 at: _dt.datetime, *, what: str, skip_leaf: bool = False) -> StepResult:
    """OCSP for every certificate of a chain below its root (leaf first; ``root`` issues the last).
    ``skip_leaf``: the GPU's FMC leaf, for which NVIDIA's responder answers nothing."""
    certs = [c for c in certs if c.subject != c.issuer]  # roots are not asked about
    full = certs + [root]
    results = []
    for i, cert in enumerate(certs):
        if skip_leaf and i == 0:
            continue
        results.append(ocsp_status(cert, full[i + 1], answers, at))
    per = {r.detail.get("certificate", "?"): r.to_dict() for r in results}
    failed = [r for r in results if r.ok is False]
    if failed:
        return StepResult(False, f"{what}: {failed[0].reason}", {"certificates": per})
    unknown = [r for r in results if r.ok is None]
    if unknown:
        return StepResult(None, f"{what}: {len(unknown)} of {len(results)} certificate(s) without a usable OCSP "
                          f"answer; {unknown[0].reason}", {"certificates": per})
    return StepResult(True, f"{what}: {len(results)} certificate(s) good per saved OCSP answers", {"certificates": per})
