"""A self-signed certificate for the simulator's optional HTTPS listener.

Made at start-up with ``cryptography`` (ECDSA P-256, SANs 127.0.0.1, ::1 and localhost); derived from the seed
when there is one, so a seeded simulator presents the same key (and the same SPKI digest) every time. A client
trusts it only when told to explicitly (``phalanb.Client(ca_pem=sim.ca_pem)``).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import ipaddress
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["SelfSignedCert", "make_self_signed"]

_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256 group order


@dataclass(frozen=True)
class SelfSignedCert:
    cert_pem: bytes
    key_pem: bytes = b""

    @property
    def spki_der(self) -> bytes:
        cert = x509.load_pem_x509_certificate(self.cert_pem)
        return cert.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)

    @property
    def spki_sha256(self) -> str:
        return hashlib.sha256(self.spki_der).hexdigest()

    def __repr__(self) -> str:  # the private key never appears in a repr
        return f"<SelfSignedCert spki_sha256={self.spki_sha256[:16]}…>"


def make_self_signed(seed: int | None = None) -> SelfSignedCert:
    material = (secrets.token_bytes(32) if seed is None
                else hashlib.sha256(f"phalanb-sim/tls/{seed}".encode()).digest())
    key = ec.derive_private_key(int.from_bytes(material, "big") % (_N - 1) + 1, ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "phalanb simulator (self-signed)")])
    start = _dt.datetime(2025, 1, 1, tzinfo=_dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(int.from_bytes(hashlib.sha256(material).digest()[:16], "big") >> 1)
               .not_valid_before(start).not_valid_after(start + _dt.timedelta(days=365 * 25))
               .add_extension(x509.SubjectAlternativeName([
                   x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1")),
                   x509.DNSName("localhost")]), critical=False)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    try:
        cert = builder.sign(key, hashes.SHA256(), ecdsa_deterministic=True)
    except TypeError:  # cryptography < 44
        cert = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return SelfSignedCert(cert.public_bytes(serialization.Encoding.PEM), key_pem)
