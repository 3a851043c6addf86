"""The simulated ACI gateway's documents (ACI.md §2–5): keys and their dstack-KMS custody chains, the workload
keyset, the attestation statement and report (current and preview shapes), receipts and attested sessions.

Everything here is pure: values in, documents out. :mod:`phalanb.sim.aci_gateway` serves them. Every digest and
signature covers :func:`phalanb.aci.jcs.canonicalize` bytes, the form ACI defines.

The KMS root is phalanb's own, fixed for every seed and process (like the simulated Intel root), derived from a
public label: it protects nothing. Its compressed public key is :data:`SIM_KMS_ROOT`, so a policy for the simulator
can allow-list it, and no policy for a real service ever will.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import coincurve
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_hash.auto import keccak

from ..aci.jcs import canonicalize, sha256_digest
from .keys import SimKeys

__all__ = [
    "SIM_KMS_ROOT", "API_VERSION", "STATEMENT_PURPOSE", "RECEIPT_KEY_ID", "E2EE_KEY_ID", "E2EE_X25519_KEY_ID",
    "PREVIEW_RECEIPT_KEY_ID", "LEGACY_ED25519_KEY_ID", "U64_MAX", "GatewayKeys", "custody_sig0_message",
    "custody_sig1_message", "keyset", "preview_keyset", "statement", "preview_statement", "workload_id",
    "sign_receipt", "sign_preview_receipt", "session_document", "session_id", "preview_session_document",
    "data_uri", "keccak_address", "spki_sha256",
]

API_VERSION = "aci/1"
STATEMENT_PURPOSE = "aci.report_data.v1"
RECEIPT_KEY_ID = "dstack-kms-receipt-ed25519-v1"
E2EE_KEY_ID = "dstack-kms-e2ee-v1"
E2EE_X25519_KEY_ID = "dstack-kms-e2ee-x25519-v1"
PREVIEW_RECEIPT_KEY_ID = "dstack-kms-receipt-v1"
LEGACY_ED25519_KEY_ID = "dstack-kms-legacy-ed25519-v1"
SECP256K1_SUITE = "secp256k1-aes-256-gcm-hkdf-sha256"
X25519_SUITE = "x25519-aes-256-gcm-hkdf-sha256"
#: The preview build's keyset_epoch.not_after (it never expired); JSON integers keep it exact.
U64_MAX = 2**64 - 1

_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141  # secp256k1 group order


def _scalar(material: bytes) -> bytes:
    """A valid secp256k1 secret from any bytes (1 ≤ k < n)."""
    return (int.from_bytes(hashlib.sha256(material).digest(), "big") % (_N - 1) + 1).to_bytes(32, "big")


_KMS_ROOT_SECRET = _scalar(b"phalanb-sim/aci/kms-root (public label: this key protects nothing)")
#: Compressed secp256k1 public key (hex) of the simulated dstack KMS root. Allow-list it only for the simulator.
SIM_KMS_ROOT: str = coincurve.PrivateKey(_KMS_ROOT_SECRET).public_key.format(compressed=True).hex()


def _sign_recoverable(secret: bytes, digest: bytes) -> bytes:
    """65 bytes r‖s‖v (v = recovery id 0/1) over a 32-byte digest, as dstack's KMS signs (RFC 6979)."""
    return coincurve.PrivateKey(secret).sign_recoverable(digest, hasher=None)


def _compressed(secret: bytes) -> bytes:
    return coincurve.PrivateKey(secret).public_key.format(compressed=True)


def _uncompressed(secret: bytes) -> bytes:
    return coincurve.PrivateKey(secret).public_key.format(compressed=False)


def keccak_address(uncompressed_public_key: bytes) -> str:
    """``0x`` + the last 20 bytes of keccak256(X‖Y), lower case (ACI.md §4)."""
    xy = uncompressed_public_key[1:] if len(uncompressed_public_key) == 65 else uncompressed_public_key
    return "0x" + keccak(xy)[12:].hex()


def spki_sha256(spki_der: bytes) -> str:
    return hashlib.sha256(spki_der).hexdigest()


def custody_sig0_message(purpose: str, covered_key_hex: str) -> bytes:
    """What the app key signs (keccak256 of it): ``"{purpose}:{hex}"``. Current shape: ``hex`` is the compressed
    ``kms_public_key``; preview: the compressed ``public_key`` (secp256k1) or the raw ``public_key`` (ed25519)."""
    return keccak(f"{purpose}:{covered_key_hex}".encode())


def custody_sig1_message(app_id: bytes, app_public_key_compressed: bytes) -> bytes:
    """What the KMS root signs (keccak256 of it): ``"dstack-kms-issued:" ‖ app_id(20) ‖ app key (33, SEC1)``."""
    return keccak(b"dstack-kms-issued:" + app_id + app_public_key_compressed)


def _ed25519_public(seed: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class _Role:
    role: str
    path: str
    purpose: str


_CURRENT_ROLES = {
    "receipt": _Role("receipt", "aci/receipt/ed25519/v1", "aci.receipt.ed25519.v1"),
    "e2ee-secp256k1": _Role("e2ee-secp256k1", "aci/e2ee/v1", "aci.e2ee.v1"),
    "e2ee-x25519": _Role("e2ee-x25519", "aci/e2ee/x25519/v1", "aci.e2ee.x25519.v1"),
}
_PREVIEW_ROLES = {
    "identity": _Role("identity", "aci/identity/v1", "aci.identity.v1"),
    "receipt": _Role("receipt", "aci/receipt/v1", "aci.receipt.v1"),
    "e2ee": _Role("e2ee", "aci/e2ee/v1", "aci.e2ee.v1"),
    "legacy-ed25519": _Role("legacy-ed25519", "aci/legacy-ed25519/v1", "aci.legacy.ed25519.v1"),
}


class GatewayKeys:
    """The gateway's keys, as a dstack app gets them from its KMS: an app key issued by the KMS root for
    ``app_id``, and one secp256k1 key per path derived under it. Ed25519 and X25519 keys use the 32 secret bytes
    of their path's secp256k1 key as their seed (the "k256 → Ed25519/X25519" step rests on measured code).

    ``replica`` makes another replica's keys (another keyset under the same app and KMS).
    """

    def __init__(self, seed: int | None, app_id: bytes, *, replica: str = ""):
        if len(app_id) != 20:
            raise ValueError("a dstack app id is 20 bytes")
        self.app_id = app_id
        material = (secrets.token_bytes(32) if seed is None
                    else f"phalanb-sim/aci/app-key/{seed}/{replica}".encode() + app_id)
        self._app_secret = _scalar(material)
        self.app_public_key = _compressed(self._app_secret)
        # sig1 is the same for every key of this app: the KMS root vouching for the app key.
        self.sig1 = _sign_recoverable(_KMS_ROOT_SECRET, custody_sig1_message(app_id, self.app_public_key))
        self._paths: dict[str, bytes] = {}

    def k256(self, path: str) -> bytes:
        if path not in self._paths:
            self._paths[path] = _scalar(self._app_secret + b"/" + path.encode())
        return self._paths[path]

    # -- the keys -------------------------------------------------------------------------------------------
    @property
    def receipt_seed(self) -> bytes:
        return self.k256(_CURRENT_ROLES["receipt"].path)

    @property
    def receipt_public(self) -> bytes:
        return _ed25519_public(self.receipt_seed)

    @property
    def e2ee_secret(self) -> bytes:
        return self.k256(_CURRENT_ROLES["e2ee-secp256k1"].path)

    @property
    def e2ee_public(self) -> bytes:
        """65-byte uncompressed ``04…``."""
        return _uncompressed(self.e2ee_secret)

    @property
    def x25519_secret(self) -> bytes:
        return self.k256(_CURRENT_ROLES["e2ee-x25519"].path)

    @property
    def x25519_public(self) -> bytes:
        return X25519PrivateKey.from_private_bytes(self.x25519_secret).public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def legacy_ed25519_seed(self) -> bytes:
        return self.k256(_PREVIEW_ROLES["legacy-ed25519"].path)

    @property
    def preview_identity_secret(self) -> bytes:
        return self.k256(_PREVIEW_ROLES["identity"].path)

    @property
    def preview_receipt_secret(self) -> bytes:
        return self.k256(_PREVIEW_ROLES["receipt"].path)

    def legacy_signer(self) -> SimKeys:
        """Signs the legacy ``/v1/signature`` text: ecdsa with the secp256k1 E2EE key, ed25519 with the legacy key."""
        return SimKeys.from_secrets(self.e2ee_secret, self.legacy_ed25519_seed)

    def sign_receipt_bytes(self, data: bytes) -> bytes:
        return Ed25519PrivateKey.from_private_bytes(self.receipt_seed).sign(data)

    # -- custody ----------------------------------------------------------------------------------------------
    def _entry(self, role: _Role, algo: str, public_key: str, covered: str, *, kms_public_key: str | None
               ) -> dict[str, Any]:
        sig0 = _sign_recoverable(self._app_secret, custody_sig0_message(role.purpose, covered))
        entry: dict[str, Any] = {"role": role.role, "path": role.path, "purpose": role.purpose, "algo": algo,
                                 "public_key": public_key}
        if kms_public_key is not None:
            entry["kms_public_key"] = kms_public_key
        entry["signature_chain"] = [sig0.hex(), self.sig1.hex()]
        return entry

    def key_custody(self) -> dict[str, Any]:
        """Current shape (ACI.md §2.1): each entry names the k256 key the KMS derived (``kms_public_key``);
        sig0 by the app key covers ``"{purpose}:{kms_public_key}"``, sig1 by the KMS root covers the app key."""
        keys = []
        for name, algo, public in (("receipt", "ed25519", self.receipt_public.hex()),
                                   ("e2ee-secp256k1", SECP256K1_SUITE, self.e2ee_public.hex()),
                                   ("e2ee-x25519", X25519_SUITE, self.x25519_public.hex())):
            role = _CURRENT_ROLES[name]
            kms = _compressed(self.k256(role.path)).hex()
            keys.append(self._entry(role, algo, public, kms, kms_public_key=kms))
        return {"provider": "dstack-kms", "keys": keys}

    def preview_key_custody(self) -> dict[str, Any]:
        """Preview shape: no ``kms_public_key``; sig0 covers the listed key itself."""
        keys = []
        for name, algo, secret in (("identity", "ecdsa-secp256k1", self.preview_identity_secret),
                                   ("receipt", "ecdsa-secp256k1", self.preview_receipt_secret),
                                   ("e2ee", SECP256K1_SUITE, self.e2ee_secret)):
            keys.append(self._entry(_PREVIEW_ROLES[name], algo, _uncompressed(secret).hex(),
                                    _compressed(secret).hex(), kms_public_key=None))
        legacy = _ed25519_public(self.legacy_ed25519_seed).hex()
        keys.append(self._entry(_PREVIEW_ROLES["legacy-ed25519"], "ed25519", legacy, legacy, kms_public_key=None))
        return {"provider": "dstack-kms", "keys": keys}


# -- keyset and statement -------------------------------------------------------------------------------------
def keyset(keys: GatewayKeys, *, subject: str | None, not_after: int, tls_spki: list[str]) -> dict[str, Any]:
    """The current-shape workload keyset (ACI.md §2.1)."""
    return {
        "subject": subject,
        "not_after": not_after,
        "receipt_signing_keys": [{"key_id": RECEIPT_KEY_ID, "algo": "ed25519",
                                  "public_key": keys.receipt_public.hex()}],
        "e2ee_public_keys": [
            {"key_id": E2EE_KEY_ID, "algo": SECP256K1_SUITE, "public_key": keys.e2ee_public.hex()},
            {"key_id": E2EE_X25519_KEY_ID, "algo": X25519_SUITE, "public_key": keys.x25519_public.hex()},
        ],
        "tls_public_keys": [{"spki_sha256": s} for s in tls_spki],
    }


def preview_keyset(keys: GatewayKeys, *, tls_spki: list[str]) -> dict[str, Any]:
    """The preview keyset (ACI.md §2.2) with the live build's values: secp256k1 identity and receipt keys,
    ``not_after`` u64::MAX, three E2EE entries (v2 suite, legacy ecdsa, legacy ed25519)."""
    e2ee = keys.e2ee_public
    return {
        "workload_identity": {"public_key": {"algo": "ecdsa-secp256k1",
                                             "public_key": _uncompressed(keys.preview_identity_secret).hex()},
                              "subject": None},
        "keyset_epoch": {"version": 1, "not_after": U64_MAX},
        "receipt_signing_keys": [{"key_id": PREVIEW_RECEIPT_KEY_ID, "algo": "ecdsa-secp256k1",
                                  "public_key": _uncompressed(keys.preview_receipt_secret).hex()}],
        "e2ee_public_keys": [
            {"key_id": E2EE_KEY_ID, "algo": SECP256K1_SUITE, "public_key": e2ee.hex()},
            {"key_id": E2EE_KEY_ID + "-legacy-ecdsa", "algo": "ecdsa", "public_key": e2ee[1:].hex()},
            {"key_id": LEGACY_ED25519_KEY_ID, "algo": "ed25519",
             "public_key": _ed25519_public(keys.legacy_ed25519_seed).hex()},
        ],
        "tls_public_keys": [{"spki_sha256": s} for s in tls_spki],
    }


def workload_id(preview_ks: dict[str, Any]) -> str:
    """``sha256:`` + hex(sha256(JCS(workload_identity.public_key)))."""
    return sha256_digest(preview_ks["workload_identity"]["public_key"])


def statement(keyset_digest: str, nonce: str | None) -> bytes:
    """The current statement's exact bytes; ``report_data = sha256(statement)``."""
    return canonicalize({"keyset_digest": keyset_digest, "nonce": nonce, "purpose": STATEMENT_PURPOSE})


def preview_statement(wid: str, keyset_digest: str, nonce: str | None) -> bytes:
    return canonicalize({"nonce": nonce, "purpose": STATEMENT_PURPOSE, "workload_id": wid,
                         "workload_keyset_digest": keyset_digest})


def preview_endorsement(keys: GatewayKeys, keyset_digest: str) -> dict[str, str]:
    """``keyset_endorsement``: 64-byte r‖s by the identity key over sha256(JCS(payload))."""
    payload = canonicalize({"purpose": "aci.keyset.endorsement.v1", "workload_keyset_digest": keyset_digest})
    sig = _sign_recoverable(keys.preview_identity_secret, hashlib.sha256(payload).digest())
    return {"algo": "ecdsa-secp256k1", "value": sig[:64].hex()}


# -- receipts ---------------------------------------------------------------------------------------------------
def sign_receipt(document: dict[str, Any], keys: GatewayKeys) -> dict[str, Any]:
    """Current shape: ``signature = hex(Ed25519(JCS(document minus "signature")))``."""
    unsigned = {k: v for k, v in document.items() if k != "signature"}
    return {**unsigned, "signature": keys.sign_receipt_bytes(canonicalize(unsigned)).hex()}


def sign_preview_receipt(document: dict[str, Any], keys: GatewayKeys) -> dict[str, Any]:
    """Preview shape: ``signature = {algo, key_id, value}``; value = 65-byte r‖s‖v over sha256(JCS(document with
    only signature.value removed))."""
    head = {k: v for k, v in document.items() if k != "signature"}
    head["signature"] = {"algo": "ecdsa-secp256k1", "key_id": PREVIEW_RECEIPT_KEY_ID}
    value = _sign_recoverable(keys.preview_receipt_secret, hashlib.sha256(canonicalize(head)).digest())
    head["signature"] = {**head["signature"], "value": value.hex()}
    return head


# -- sessions ---------------------------------------------------------------------------------------------------
def data_uri(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64," + base64.b64encode(data).decode()


def session_document(*, upstream_name: str, endpoint: str | None, verifier_id: str, established_at: int,
                     expires_at: int, identity: dict[str, Any] | None, channel_binding: list[dict[str, Any]],
                     claims: dict[str, Any], evidence: bytes, media_type: str = "application/json"
                     ) -> dict[str, Any]:
    """A current-shape attested session (ACI.md §5); its id is :func:`session_id` (not inside)."""
    doc: dict[str, Any] = {"api_version": API_VERSION, "upstream_name": upstream_name, "endpoint": endpoint,
                           "verifier_id": verifier_id, "established_at": established_at, "expires_at": expires_at}
    if identity is not None:
        doc["identity"] = identity
    doc.update({"channel_binding": channel_binding, "claims": claims,
                "evidence": {"digest": "sha256:" + hashlib.sha256(evidence).hexdigest(),
                             "data": data_uri(media_type, evidence)}})
    return doc


def session_id(document: dict[str, Any]) -> str:
    return hashlib.sha256(canonicalize(document)).hexdigest()


def preview_session_document(*, provider: str, endpoint: str | None, verifier_id: str, established_at: int,
                             expires_at: int, identity: dict[str, Any] | None, channel_binding: list[dict[str, Any]],
                             claims: dict[str, Any], evidence: bytes, media_type: str = "application/json"
                             ) -> dict[str, Any]:
    """A preview session: ``session_id = "as_" + hex(sha256(JCS({provider, endpoint, verifier_id, identity,
    channel_binding, claims, evidence_digest})))`` — timestamps and evidence data excluded — inside the document."""
    digest = "sha256:" + hashlib.sha256(evidence).hexdigest()
    sid = "as_" + hashlib.sha256(canonicalize({
        "provider": provider, "endpoint": endpoint, "verifier_id": verifier_id, "identity": identity,
        "channel_binding": channel_binding, "claims": claims, "evidence_digest": digest})).hexdigest()
    return {"api_version": API_VERSION, "session_id": sid, "provider": provider, "endpoint": endpoint,
            "verifier_id": verifier_id, "established_at": established_at, "expires_at": expires_at,
            "identity": identity, "channel_binding": channel_binding, "claims": claims,
            "evidence": {"digest": digest, "data": data_uri(media_type, evidence)}}
