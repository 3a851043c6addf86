"""Simulated NVIDIA GPUs for the local service: real SPDM layout, a simulated 5-certificate chain, and an NRAS.

:class:`SimulatedGpus` produces the ``nvidia_payload`` object of the simulator's attestation report: one entry per
GPU, each a GET_MEASUREMENTS request carrying the client's nonce plus a MEASUREMENTS response with 64 blocks of
48-byte SHA-384 values, opaque data shaped like a 570-series driver's (VBIOS, SKU, project, driver version,
measurement counts, FWID, …), signed with ECDSA P-384 by the GPU's leaf key. Each leaf chains through a GSP BROM,
a Provisioner ICA and an Identity CA to a **simulated** Device Identity CA, and carries the DICE extension with the
FWID the evidence reports, so the offline verifier exercises every step it runs on real GPUs.

Every certificate says ``O=phalanb simulator``. The simulated root (:func:`simulated_root`) is one fixed
certificate shared by every simulator, and it is never trusted by default: verifying
against NVIDIA's root fails and says the chain ends at a simulated root. Tests pass
:meth:`SimulatedGpus.trust_root` explicitly, and the verdict then carries a ``gpu.trust_root`` warning.

:meth:`SimulatedGpus.routes` adds an NRAS look-alike to the simulator app: ``POST /nras/v3/attest/gpu`` appraises
the evidence (signature, chain, nonce, measurements) and answers a detached EAT of ES384 tokens, and
``GET /nras/.well-known/jwks.json`` publishes its key. Its issuer is :attr:`SimulatedGpus.nras_issuer`. It also
serves the GPUs' signed reference manifests and OCSP answers (``/rim/v1/rim/{id}``, ``/ocsp``:
:mod:`phalanb.gpu.rim_sim`).

Keys and certificates are made once per instance (deterministically from ``seed``); a request only signs.

>>> gpus = SimulatedGpus(seed=1, count=2)
>>> payload = gpus.payload("00" * 32)
>>> len(payload["evidence_list"]), payload["arch"]
(2, 'HOPPER')
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ..errors import InputError, PhalanbError
from .nras import NrasAnchor, jwk_of, sign_es384
from .payload import parse_payload
from .spdm import OPAQUE_FIELD_NAMES
from .rim_sim import SimulatedRims
from .sim_pki import (DRIVER_VERSION, NOT_AFTER, NOT_BEFORE, P384_ORDER, VBIOS_VERSION, fixed_root, sign_cert,
                      sim_name)
from .verify import TrustRoot, verify_payload

__all__ = ["SimulatedGpus", "SIM_NRAS_ISSUER", "simulated_root",
           "simulated_nras_anchor"]

SIM_NRAS_ISSUER = "https://nras.phalanb-simulator.invalid"
_SHA384_OID = bytes.fromhex("0609608648016503040202")  # DER of OID 2.16.840.1.101.3.4.2.2
_FWID_OID = x509.ObjectIdentifier("2.23.133.5.4.1")
_NVIDIA_SAN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.412.274.1")
_ID = {name.removeprefix("OPAQUE_FIELD_ID_"): num for num, name in OPAQUE_FIELD_NAMES.items()}

# Measurement counts per block as a 570-series H100 reports them; blocks counted 0 read as 48 zero bytes.
_MSRSCNT = [0, 1, 5, 1, 1, 1, 1, 1, 0, 1, 0, 131, 3, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 1, 1, 1, 0, 1, 1, 1, 1, 1,
            2, 1, 1, 1, 1, 1, 1, 1] + [0] * 22


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _vbios_bytes(text: str) -> bytes:
    pairs = text.split(".")
    low = int("".join(pairs[:4]), 16)
    high = int(pairs[4], 16)
    return low.to_bytes(4, "little") + high.to_bytes(4, "little")


def _tlv(ftype: int, value: bytes) -> bytes:
    return ftype.to_bytes(2, "little") + len(value).to_bytes(2, "little") + value


# The simulated NRAS intermediate plays NVIDIA's "Attestation Service GPU Intermediate": every simulator's NRAS key
# carries an x5c chain to it, so the simulator's tokens verify exactly the way NVIDIA's do — under simulated trust
# only. Like the device root its key comes from a public label and protects nothing.
_NRAS_LABEL = b"phalanb-sim-gpu/fixed/nras-intermediate"


@lru_cache(maxsize=1)
def _fixed_nras_intermediate() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    value = int.from_bytes(hashlib.sha512(_NRAS_LABEL).digest(), "big") % (P384_ORDER - 1) + 1
    key = ec.derive_private_key(value, ec.SECP384R1())
    name = sim_name("phalanb simulated Attestation Service Intermediate")
    pub = key.public_key()
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(pub)
               .serial_number(int.from_bytes(hashlib.sha256(_NRAS_LABEL).digest()[:16], "big") | 1)
               .not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False))
    return key, sign_cert(builder, key)


def simulated_nras_anchor() -> NrasAnchor:
    """The simulator's NRAS intermediate (the same everywhere); trusted only under ``trust="simulated"``."""
    return NrasAnchor(_fixed_nras_intermediate()[1], "phalanb simulated NRAS intermediate", simulated=True)


def simulated_root() -> TrustRoot:
    """phalanb's simulated NVIDIA device root (the same everywhere). Never trusted unless passed explicitly."""
    return TrustRoot(fixed_root()[1], "phalanb simulated Device Identity CA", simulated=True)


@dataclass
class _Gpu:
    index: int
    leaf_key: ec.EllipticCurvePrivateKey
    chain_pem: bytes
    fwid: bytes
    board_id: bytes


class SimulatedGpus:
    """``count`` simulated H100s (1-8) behind one simulated NVIDIA PKI, deterministic for a given ``seed``."""

    arch = "HOPPER"

    def __init__(self, seed: int | None = None, count: int = 1):
        if not isinstance(count, int) or not 1 <= count <= 8:
            raise InputError(f"count must be between 1 and 8 simulated GPUs, got {count!r}")
        self.count = count
        self._seed = (str(seed) if seed is not None else secrets.token_hex(16)).encode()
        self.nras_issuer = SIM_NRAS_ISSUER
        root_key, self._root = fixed_root()
        identity_key = self._key(b"identity")
        ica_key = self._key(b"provisioner-ica")
        identity = self._cert(self._name("phalanb simulated GH100 Identity"), identity_key, self._root, root_key,
                              ca=True, path_length=None)
        ica = self._cert(self._name("phalanb simulated GH100 Provisioner ICA 1"), ica_key, identity, identity_key,
                         ca=True, path_length=None)
        upper_pem = b"".join(c.public_bytes(Encoding.PEM) for c in (ica, identity, self._root))
        self.measurements = {i: self._measurement(i) for i in range(1, 65)}
        self._gpus = []
        for i in range(count):
            brom_key = self._key(b"brom-%d" % i)
            leaf_key = self._key(b"leaf-%d" % i)
            fwid = hashlib.sha384(self._seed + b"fmc-firmware").digest()
            serial = self._serial(b"brom-%d" % i, 9)
            brom = self._cert(self._name("GH100 A01 GSP BROM", serial=f"{serial:X}"), brom_key, ica, ica_key,
                              ca=True, path_length=None)
            leaf = self._leaf(i, leaf_key, brom, brom_key, fwid)
            chain = leaf.public_bytes(Encoding.PEM) + brom.public_bytes(Encoding.PEM) + upper_pem
            board = hashlib.sha256(self._seed + b"board-%d" % i).digest()[:4]
            self._gpus.append(_Gpu(i, leaf_key, chain, fwid, board))
        self._nras_key = self._key(b"nras-signing")
        self.nras_kid = "phalanb-sim-nras-" + hashlib.sha256(self._seed + b"kid").hexdigest()[:24]
        ca_key, ca = _fixed_nras_intermediate()
        nras_leaf = (self._builder(self._name("phalanb simulated Attestation Service GPU"), self._nras_key, ca, ca_key)
                     .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
        self._nras_chain = [sign_cert(nras_leaf, ca_key), ca]

    # --- deterministic material ----------------------------------------------------------------------------

    def _key(self, label: bytes) -> ec.EllipticCurvePrivateKey:
        value = int.from_bytes(hashlib.sha512(self._seed + b"/" + label).digest(), "big") % (P384_ORDER - 1) + 1
        return ec.derive_private_key(value, ec.SECP384R1())

    def _serial(self, label: bytes, size: int = 19) -> int:
        # Positive and at most 20 bytes, as RFC 5280 (and the web-PKI verifier) require.
        return int.from_bytes(hashlib.sha256(self._seed + b"serial/" + label).digest()[:size], "big") | 1

    # Every simulated certificate, the GPUs' and the RIMs', is named alike (sim_pki).
    _name = staticmethod(sim_name)

    def _builder(self, subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
                 issuer_key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
        pub = key.public_key()
        b = (x509.CertificateBuilder().subject_name(subject)
             .issuer_name(issuer.subject if issuer is not None else subject)
             .public_key(pub).serial_number(self._serial(subject.rfc4514_string().encode()))
             .not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False))
        aki_key = issuer_key.public_key()
        return b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(aki_key), critical=False)

    def _cert(self, subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
              issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool, path_length: int | None) -> x509.Certificate:
        b = self._builder(subject, key, issuer, issuer_key)
        b = b.add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        b = b.add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                          data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                          crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        return sign_cert(b, issuer_key)

    def _leaf(self, i: int, key: ec.EllipticCurvePrivateKey, brom: x509.Certificate,
              brom_key: ec.EllipticCurvePrivateKey, fwid: bytes) -> x509.Certificate:
        serial = f"{self._serial(b'leaf-name-%d' % i, 16):032X}"
        b = self._builder(self._name("GH100 A01 GSP FMC LF", serial=serial), key, brom, brom_key)
        b = b.add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                          data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                          crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        san_value = _der(0x0C, f"NVIDIA:GH100:{serial[:16]}".encode())
        b = b.add_extension(x509.SubjectAlternativeName([x509.OtherName(_NVIDIA_SAN_OID, san_value)]),
                            critical=False)
        # The Hopper layout of NVIDIA's DICE extension: SEQUENCE { INTEGER 1, SubjectPublicKeyInfo,
        # SEQUENCE { hashAlg sha384, OCTET STRING fwid } }.
        spki = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        fwid_seq = _der(0x30, _SHA384_OID + _der(0x04, fwid))
        dice = _der(0x30, _der(0x02, b"\x01") + spki + fwid_seq)
        b = b.add_extension(x509.UnrecognizedExtension(_FWID_OID, dice), critical=False)
        return sign_cert(b, brom_key)

    def _measurement(self, index: int) -> bytes:
        if _MSRSCNT[index - 1] == 0:
            return bytes(48)
        return hashlib.sha384(self._seed + b"measurement-%d" % index).digest()

    # --- public --------------------------------------------------------------------------------------------

    def trust_root(self) -> TrustRoot:
        """The simulated device root, for tests that choose to trust it (the verdict then warns)."""
        return simulated_root()

    @property
    def root_pem(self) -> bytes:
        return self._root.public_bytes(Encoding.PEM)

    def _opaque(self, gpu: _Gpu) -> bytes:
        fields = [
            (_ID["VBIOS_VERSION"], _vbios_bytes(VBIOS_VERSION)),
            (_ID["BOARD_ID"], gpu.board_id),
            (_ID["CHIP_SKU"], b"895".ljust(9, b"\0")),
            (_ID["CHIP_SKU_MOD"], b"0".ljust(5, b"\0")),
            (_ID["PROJECT"], b"G520\0"),
            (_ID["PROJECT_SKU"], b"0280\0"),
            (_ID["PROJECT_SKU_MOD"], b"\0\0"),
            (_ID["DRIVER_VERSION"], DRIVER_VERSION.encode() + b"\0"),
            (_ID["GPU_INFO"], bytes.fromhex("8001000000000000")),
            (_ID["MSRSCNT"], b"".join(c.to_bytes(4, "little") for c in _MSRSCNT)),
            (_ID["CPRINFO"], bytes.fromhex("00800300")),
            (_ID["NVDEC0_STATUS"], b"\x55"),
            (_ID["FWID"], gpu.fwid),
            (_ID["PROTECTED_PCIE_STATUS"], b"\xaa"),
            (_ID["OPAQUE_DATA_VERSION"], (1).to_bytes(2, "little")),
            (_ID["FEATURE_FLAG"], (0 if self.count == 1 else 1).to_bytes(2, "little")),
        ]
        return b"".join(_tlv(t, v) for t, v in fields)

    def evidence(self, index: int, nonce: bytes) -> bytes:
        """One GPU's signed SPDM request ‖ response for requester nonce ``nonce`` (32 bytes)."""
        if len(nonce) != 32:
            raise InputError(f"the SPDM requester nonce is 32 bytes, got {len(nonce)}")
        gpu = self._gpus[index]
        request = bytes([0x11, 0xE0, 0x01, 0xFF]) + nonce + b"\x00"
        record = b"".join(bytes([i, 0x01]) + (51).to_bytes(2, "little") + b"\x01" + (48).to_bytes(2, "little") + v
                          for i, v in self.measurements.items())
        opaque = self._opaque(gpu)
        response = (bytes([0x11, 0x60, 0x00, 0x00, len(self.measurements)]) + len(record).to_bytes(3, "little")
                    + record + secrets.token_bytes(32) + len(opaque).to_bytes(2, "little") + opaque)
        der = gpu.leaf_key.sign(request + response, ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(der)
        return request + response + r.to_bytes(48, "big") + s.to_bytes(48, "big")

    def payload(self, nonce_hex: str) -> dict[str, Any]:
        """The dstack ``nvidia_payload`` object for the client's nonce (64 hex digits)."""
        try:
            nonce = bytes.fromhex(nonce_hex)
        except (ValueError, TypeError):
            raise InputError(f"nonce must be 64 hex digits, got {str(nonce_hex)[:80]!r}") from None
        items = [{"certificate": base64.b64encode(g.chain_pem).decode(),
                  "evidence": base64.b64encode(self.evidence(g.index, nonce)).decode(),
                  "arch": self.arch} for g in self._gpus]
        return {"nonce": nonce_hex, "evidence_list": items, "arch": self.arch}

    # --- NRAS look-alike -----------------------------------------------------------------------------------

    def jwks(self) -> dict[str, Any]:
        return {"keys": [jwk_of(self._nras_key.public_key(), self.nras_kid, self._nras_chain)]}

    def appraise(self, request: Any, *, now: float | None = None) -> Any:
        """What the simulated NRAS answers for a request body: the detached EAT, or an error object + status."""
        iat = int(time.time() if now is None else now)
        try:
            payload = parse_payload(request)
        except PhalanbError as exc:
            return 400, {"errorCode": 400, "message": f"invalid evidence: {exc}"}
        nonce = request.get("nonce") if isinstance(request, dict) else None
        if not isinstance(nonce, str):
            return 400, {"errorCode": 400, "message": "the request must carry the nonce"}
        result = verify_payload(payload, root=self.trust_root(), expected_nonce=None, at=iat)
        base = {"iss": self.nras_issuer, "iat": iat, "nbf": iat, "exp": iat + 3600}
        tokens: dict[str, str] = {}
        all_ok = True
        for g in result.gpus:
            claims = dict(base, jti=str(uuid.uuid4()))
            if g.facts.requester_nonce != nonce.lower():
                all_ok = False
                claims["x-nvidia-error-details"] = {"code": 4010, "fieldName": "nonce", "httpStatus": "400 BAD_REQUEST",
                                                    "description": "Nonce from request is not matching with evidence "
                                                                   "nonce ", "message": "NONCE_NOT_MATCHING"}
            else:
                ev = payload.gpus[g.facts.index].spdm
                measured_ok = ev.measurements == self.measurements
                ok = g.signature.ok is True and g.chain.ok is True and g.fwid.ok is not False and measured_ok
                all_ok &= ok
                claims.update({
                    "eat_nonce": nonce, "ueid": g.facts.ueid, "hwmodel": g.facts.chip, "oemid": "5703",
                    "measres": "success" if ok else "fail", "secboot": True, "dbgstat": "disabled",
                    "x-nvidia-gpu-arch-check": g.facts.arch == "HOPPER",
                    "x-nvidia-gpu-attestation-report-parsed": True,
                    "x-nvidia-gpu-attestation-report-nonce-match": True,
                    "x-nvidia-gpu-attestation-report-signature-verified": g.signature.ok is True,
                    "x-nvidia-gpu-attestation-report-cert-chain-validated": g.chain.ok is True,
                    "x-nvidia-gpu-driver-version": g.facts.driver_version,
                    "x-nvidia-gpu-vbios-version": g.facts.vbios_version,
                    "x-nvidia-gpu-driver-rim-measurements-available": True,
                    "x-nvidia-gpu-vbios-rim-measurements-available": True,
                    "x-nvidia-attestation-warning": "simulated NRAS (phalanb): not NVIDIA's appraisal",
                })
            tokens[f"GPU-{g.facts.index}"] = sign_es384(claims, self._nras_key, self.nras_kid)
        submods = {name: ["DIGEST", ["SHA-256", hashlib.sha256(tok.encode()).hexdigest()]]
                   for name, tok in tokens.items()}
        overall = dict(base, sub="NVIDIA-PLATFORM-ATTESTATION", jti=str(uuid.uuid4()), eat_nonce=nonce,
                       submods=submods, **{"x-nvidia-ver": "2.0", "x-nvidia-overall-att-result": all_ok})
        return 200, [["JWT", sign_es384(overall, self._nras_key, self.nras_kid)], tokens]

    def routes(self) -> list:
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def attest(request: Request) -> JSONResponse:
            try:
                body = json.loads(await request.body())
            except (json.JSONDecodeError, UnicodeDecodeError):
                return JSONResponse({"errorCode": 400, "message": "body is not JSON"}, status_code=400)
            status, answer = await asyncio.to_thread(self.appraise, body)
            return JSONResponse(answer, status_code=status)

        async def jwks(request: Request) -> JSONResponse:
            return JSONResponse(self.jwks())

        return [Route("/nras/v3/attest/gpu", attest, methods=["POST"]),
                Route("/nras/.well-known/jwks.json", jwks, methods=["GET"])] + SimulatedRims(self).routes()
