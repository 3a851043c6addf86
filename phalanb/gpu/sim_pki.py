"""What the simulated GPUs (:mod:`phalanb.gpu.sim`) and their simulated RIMs (:mod:`phalanb.gpu.rim_sim`) share:
the firmware the GPUs run (which the RIMs are issued for) and the simulated PKI both sign under: one validity
window, one organisation name, deterministic P-384 signing and the fixed simulated device root.

Kept below both so the RIM simulator needs nothing from the GPU simulator, which serves its routes.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["DRIVER_VERSION", "VBIOS_VERSION", "P384_ORDER", "NOT_BEFORE", "NOT_AFTER", "sim_name", "sign_cert",
           "fixed_root"]

DRIVER_VERSION = "570.172.08"
VBIOS_VERSION = "96.00.CF.00.02"

P384_ORDER = int("ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973", 16)
_SIM_ORG = "phalanb simulator (not NVIDIA)"
NOT_BEFORE = _dt.datetime(2020, 10, 17, tzinfo=_dt.timezone.utc)
NOT_AFTER = _dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=_dt.timezone.utc)


def sim_name(cn: str, serial: str | None = None) -> x509.Name:
    """A simulated certificate's name: every one says ``O=phalanb simulator (not NVIDIA)``."""
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, _SIM_ORG),
             x509.NameAttribute(NameOID.COUNTRY_NAME, "US")]
    if serial:
        attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial))
    return x509.Name(attrs)


def sign_cert(builder: x509.CertificateBuilder, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    try:
        # Deterministic ECDSA (RFC 6979): the same seed gives the same certificate bytes in every process.
        return builder.sign(key, hashes.SHA384(), ecdsa_deterministic=True)
    except TypeError:  # cryptography < 44
        return builder.sign(key, hashes.SHA384())


# The simulated device root is the same for every seed and every process, like NVIDIA's: evidence recorded from
# any simulator re-verifies offline against it (``phalanb gpu FILE --root sim``). Its key is derived from a public
# label, so it protects nothing — which is why it is never trusted unless a caller passes it explicitly.
_ROOT_LABEL = b"phalanb-sim-gpu/fixed/device-identity-root"


@lru_cache(maxsize=1)
def fixed_root() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    value = int.from_bytes(hashlib.sha512(_ROOT_LABEL).digest(), "big") % (P384_ORDER - 1) + 1
    key = ec.derive_private_key(value, ec.SECP384R1())
    name = sim_name("phalanb simulated Device Identity CA")
    pub = key.public_key()
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(pub)
               .serial_number(int.from_bytes(hashlib.sha256(_ROOT_LABEL).digest()[:16], "big") | 1)
               .not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER)
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False, key_agreement=False,
                                            key_cert_sign=True, crl_sign=True, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(pub), critical=False))
    return key, sign_cert(builder, key)
