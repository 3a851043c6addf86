"""Simulated NVIDIA RIMs and OCSP answers, for the simulator's GPUs, under the simulator's own RIM root.

:class:`SimulatedRims` writes the driver and VBIOS RIMs of :class:`~phalanb.gpu.sim.SimulatedGpus` as NVIDIA does
(SWID XML, enveloped XML-DSig with C14N 1.1 and ECDSA P-384), signed by a "phalanb simulated RIM Signer" issued by
a fixed simulated CoRIM root (:func:`simulated_rim_root`, derived from a public label: it protects nothing and is
trusted only under ``trust="simulated"``), and answers OCSP requests for that signer signed by the root itself.

Served by the simulator (:meth:`SimulatedRims.routes`): ``GET /rim/v1/rim/{id}`` (NVIDIA's RIM service shape:
``{"id", "rim": base64, "sha256"}``) and ``POST /ocsp`` (``application/ocsp-request``). Faults, each one thing a
real deployment can get wrong: ``rim_mismatch`` (one driver index differs from what the GPUs measure),
``rim_revoked`` (the RIM signer is revoked, certificateHold), ``rim_other_version`` (the RIM served under the id is
signed for another driver version). The OCSP responder also answers for the GPUs' device chains (below the
root, the FMC leaf excepted, as NVIDIA's does), each answer signed by the certificate's issuer.

>>> from phalanb.gpu.sim import SimulatedGpus
>>> rims = SimulatedRims(SimulatedGpus(seed=1))
>>> sorted(rims.documents())[0]
'NV_GPU_DRIVER_GH100_570.172.08'
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
from functools import lru_cache
from typing import Any, Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from lxml import etree

from .rim import DSIG_NS, SWID_NS
from .sim_pki import DRIVER_VERSION, NOT_AFTER, NOT_BEFORE, P384_ORDER, VBIOS_VERSION, fixed_root, sign_cert, sim_name
from .verify import TrustRoot

__all__ = ["SimulatedRims", "simulated_rim_root", "RIM_FAULTS", "DRIVER_INDICES", "VBIOS_INDICES"]

RIM_FAULTS = ("rim_mismatch", "rim_revoked", "rim_other_version")
#: Which runtime indices each RIM owns, as in every Hopper RIM NVIDIA publishes (580-series driver layout).
DRIVER_INDICES = (7, *range(21, 42))
VBIOS_INDICES = (0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12)
_ROOT_LABEL = b"phalanb-sim-gpu/fixed/corim-signing-root"
_C14N11 = "http://www.w3.org/2006/12/xml-c14n11"
_TCG = "https://trustedcomputinggroup.org/resource/tcg-reference-integrity-manifest-rim-information-model/"
_SHA384_NS = "http://www.w3.org/2001/04/xmlenc#sha384"


def _key(label: bytes) -> ec.EllipticCurvePrivateKey:
    value = int.from_bytes(hashlib.sha512(label).digest(), "big") % (P384_ORDER - 1) + 1
    return ec.derive_private_key(value, ec.SECP384R1())


def _usage(*, sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=not sign, crl_sign=not sign,
                         encipher_only=False, decipher_only=False)


@lru_cache(maxsize=1)
def _pki() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, ec.EllipticCurvePrivateKey, x509.Certificate]:
    root_key, signer_key = _key(_ROOT_LABEL), _key(_ROOT_LABEL + b"/signer")
    root_name = sim_name("phalanb simulated CoRIM signing Root CA")
    signer_name = sim_name("phalanb simulated RIM Signer")
    root = sign_cert(
        x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name).public_key(root_key.public_key())
        .serial_number(int.from_bytes(hashlib.sha256(_ROOT_LABEL).digest()[:16], "big") | 1)
        .not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_usage(sign=False), critical=True), root_key)
    signer = sign_cert(
        x509.CertificateBuilder().subject_name(signer_name).issuer_name(root_name).public_key(signer_key.public_key())
        .serial_number(int.from_bytes(hashlib.sha256(_ROOT_LABEL + b"/signer").digest()[:16], "big") | 1)
        .not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(sign=True), critical=True), root_key)
    return root_key, root, signer_key, signer


def simulated_rim_root() -> TrustRoot:
    """The simulator's CoRIM signing root (the same everywhere). Trusted only under ``trust="simulated"``."""
    return TrustRoot(_pki()[1], "phalanb simulated CoRIM signing Root CA", simulated=True)


def sign_rim(root: Any, key: ec.EllipticCurvePrivateKey, certificates: Iterable[x509.Certificate]) -> bytes:
    """Append an enveloped XML-DSig (C14N 1.1, SHA-384, ECDSA P-384) to the SWID element ``root``; the bytes."""
    ds = f"{{{DSIG_NS}}}"
    digest = hashlib.sha384(etree.tostring(root.getroottree(), method="c14n")).digest()
    sig = etree.SubElement(root, ds + "Signature", nsmap={"ds": DSIG_NS})
    info = etree.SubElement(sig, ds + "SignedInfo")
    etree.SubElement(info, ds + "CanonicalizationMethod", Algorithm=_C14N11)
    etree.SubElement(info, ds + "SignatureMethod", Algorithm="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384")
    ref = etree.SubElement(info, ds + "Reference", URI="")
    transforms = etree.SubElement(ref, ds + "Transforms")
    etree.SubElement(transforms, ds + "Transform", Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature")
    etree.SubElement(transforms, ds + "Transform", Algorithm=_C14N11)
    etree.SubElement(ref, ds + "DigestMethod", Algorithm="http://www.w3.org/2001/04/xmldsig-more#sha384")
    etree.SubElement(ref, ds + "DigestValue").text = base64.b64encode(digest).decode()
    r, s = decode_dss_signature(key.sign(etree.tostring(info, method="c14n"), ec.ECDSA(hashes.SHA384())))
    etree.SubElement(sig, ds + "SignatureValue").text = base64.b64encode(r.to_bytes(48, "big")
                                                                          + s.to_bytes(48, "big")).decode()
    data = etree.SubElement(etree.SubElement(sig, ds + "KeyInfo"), ds + "X509Data")
    for cert in certificates:
        etree.SubElement(data, ds + "X509Certificate").text = base64.b64encode(cert.public_bytes(Encoding.DER)).decode()
    return etree.tostring(root, xml_declaration=False)


def _swid(version: str, values: dict[int, bytes], owned: Iterable[int]) -> Any:
    owned = set(owned)
    root = etree.Element(f"{{{SWID_NS}}}SoftwareIdentity", nsmap={None: SWID_NS, "ns0": SWID_NS, "ns2": _SHA384_NS},
                         corpus="false", name="GH100", patch="false", supplemental="false", version="1.0",
                         tagId=hashlib.sha384(version.encode()).hexdigest(), tagVersion="0")
    etree.SubElement(root, f"{{{SWID_NS}}}Entity", name="phalanb simulator (not NVIDIA)", role="softwareCreator")
    etree.SubElement(root, f"{{{SWID_NS}}}Meta", nsmap={"ns1": _TCG}, colloquialVersion=version, edition="GPU",
                     product="GH100", revision="r1")
    payload = etree.SubElement(root, f"{{{SWID_NS}}}Payload")
    for index in range(64):
        value = values[index] if index in owned else bytes(48)
        res = etree.SubElement(payload, f"{{{SWID_NS}}}Resource", type="Measurement", index=str(index),
                               active="True" if index in owned else "False", alternatives="1",
                               name=f"Measurement_{index}", size="48")
        res.set(f"{{{_SHA384_NS}}}Hash0", value.hex())
    return root


class SimulatedRims:
    """The RIMs and OCSP answers that go with ``gpus`` (a :class:`~phalanb.gpu.sim.SimulatedGpus`)."""

    def __init__(self, gpus: Any):
        self.gpus = gpus
        self.driver_id = f"NV_GPU_DRIVER_GH100_{DRIVER_VERSION}"
        self.vbios_id = "NV_GPU_VBIOS_G520_0280_895_" + VBIOS_VERSION.replace(".", "")

    def _values(self) -> dict[int, bytes]:
        return {block - 1: value for block, value in self.gpus.measurements.items()}

    def documents(self, faults: Iterable[str] = ()) -> dict[str, bytes]:
        """RIM id → signed SWID bytes, with ``faults`` applied."""
        faults = set(faults)
        _, root, signer_key, signer = _pki()
        values = self._values()
        driver_values = dict(values)
        if "rim_mismatch" in faults:
            driver_values[7] = hashlib.sha384(b"a driver the GPUs do not run").digest()
        version = "570.172.99" if "rim_other_version" in faults else DRIVER_VERSION
        return {
            self.driver_id: sign_rim(_swid(version, driver_values, DRIVER_INDICES), signer_key, (signer, root)),
            self.vbios_id: sign_rim(_swid(VBIOS_VERSION, values, VBIOS_INDICES), signer_key, (signer, root)),
        }

    def service_answer(self, rim_id: str, faults: Iterable[str] = ()) -> dict[str, Any] | None:
        doc = self.documents(faults).get(rim_id)
        if doc is None:
            return None
        return {"id": rim_id, "rim": base64.b64encode(doc).decode(), "sha256": hashlib.sha256(doc).hexdigest()}

    def _responders(self) -> dict[int, tuple[x509.Certificate, x509.Certificate, ec.EllipticCurvePrivateKey]]:
        """Serial → (certificate, issuer, issuer's key) for every certificate the responder answers for: the RIM
        signer, and each GPU's device chain below the root but its FMC leaf (as NVIDIA's responder does)."""
        if getattr(self, "_answers_for", None) is None:
            root_key, root, _, signer = _pki()
            table = {signer.serial_number: (signer, root, root_key)}
            keys = {fixed_root()[1].subject: fixed_root()[0]}
            for g in self.gpus._gpus:
                certs = x509.load_pem_x509_certificates(g.chain_pem)
                # Issuer keys by subject: the simulated PKI derives them from the same labels SimulatedGpus does.
                keys[certs[3].subject] = self.gpus._key(b"identity")
                keys[certs[2].subject] = self.gpus._key(b"provisioner-ica")
                for cert, issuer in zip(certs[1:-1], certs[2:]):
                    table.setdefault(cert.serial_number, (cert, issuer, keys[issuer.subject]))
            self._answers_for = table
        return self._answers_for

    def ocsp_answer(self, request_der: bytes, faults: Iterable[str] = (), *,
                    now: _dt.datetime | None = None) -> bytes:
        """The DER OCSP response for a request about the RIM signer (signed by the simulated CoRIM root) or a
        certificate of a GPU's device chain (signed by its issuer)."""
        try:
            req = ocsp.load_der_ocsp_request(request_der)
        except ValueError:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST).public_bytes(
                Encoding.DER)
        known = self._responders().get(req.serial_number)
        if known is None:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED).public_bytes(
                Encoding.DER)
        cert, issuer, issuer_key = known
        now = (now or _dt.datetime.now(_dt.timezone.utc)).replace(microsecond=0)
        revoked = "rim_revoked" in set(faults) and cert.serial_number == _pki()[3].serial_number
        builder = ocsp.OCSPResponseBuilder().add_response(
            cert=cert, issuer=issuer, algorithm=hashes.SHA384(),
            cert_status=ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD,
            this_update=now - _dt.timedelta(minutes=5), next_update=now + _dt.timedelta(hours=24),
            revocation_time=now - _dt.timedelta(days=1) if revoked else None,
            revocation_reason=x509.ReasonFlags.certificate_hold if revoked else None,
        ).responder_id(ocsp.OCSPResponderEncoding.NAME, issuer)
        return builder.sign(issuer_key, hashes.SHA384()).public_bytes(Encoding.DER)

    def routes(self) -> list:
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route

        def faults_of(request: Request) -> set[str]:
            sim = getattr(request.app.state, "sim", None)
            return set(getattr(getattr(sim, "config", None), "faults", ()) or ())

        async def rim(request: Request) -> JSONResponse:
            answer = self.service_answer(request.path_params["rim_id"], faults_of(request))
            if answer is None:
                return JSONResponse({"message": f"no RIM {request.path_params['rim_id']!r}"}, status_code=404)
            return JSONResponse(answer)

        async def answer_ocsp(request: Request) -> Response:
            body = await request.body()
            return Response(self.ocsp_answer(body[:65536], faults_of(request)),
                            media_type="application/ocsp-response")

        return [Route("/rim/v1/rim/{rim_id:str}", rim, methods=["GET"]),
                Route("/ocsp", answer_ocsp, methods=["POST"])]
