"""NVIDIA Remote Attestation Service (NRAS): build the request, fetch the answer, verify its tokens offline.

NRAS appraises GPU evidence against NVIDIA's reference measurements (RIMs) and revocation data, and answers with
a *detached EAT* (SPEC §9)::

    [["JWT", <overall token>], {"GPU-0": <token>, "GPU-1": <token>, …}]

every token ES384-signed with a key published at ``/.well-known/jwks.json`` (by ``kid``; keys rotate daily). The
services' own verifiers read these claims without checking the signatures; phalanb checks them — with a key only
when it is *NVIDIA's*: its ``x5c`` certificate carries the same key and chains to NVIDIA's NRAS intermediate,
pinned in the package (:class:`NrasAnchor`); a JWKS that travels with the evidence is otherwise just a claim. It
keeps fetching (:func:`fetch_nras`, :class:`JwksCache`) apart from verifying (:func:`verify_nras`) so an archived answer
re-verifies offline with the JWKS captured beside it and the clock pinned to the token's ``iat``.

Checks produced: ``nras.token`` (alg, key, signature, issuer, time of every token), ``nras.submods`` (the overall
token commits to each GPU token by SHA-256), ``nras.nonce`` (``eat_nonce``), ``nras.result`` (the appraisal:
overall result, per-GPU ``measres``, nonce match, ``secboot``, ``dbgstat``, error details) and, given the offline
facts, ``nras.identity`` (``ueid`` = leaf serial, driver and VBIOS versions agree).

>>> result = verify_nras(response, jwks=captured_jwks, expected_nonce=nonce, at=token_iat)   # doctest: +SKIP
>>> result.check("nras.result").status                                                       # doctest: +SKIP
<Status.PASS: 'pass'>
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Callable, Iterable, Mapping, Sequence

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .. import _json
from ..wire.bodies import read_limited
from ..errors import InputError, ParseError, ServiceError, TransportError
from ..timeutil import parse_time
from ..verdict import Check, Status, Verdict
from .payload import GpuPayload
from .verify import GpuFacts

__all__ = [
    "NRAS_URL",
    "NRAS_ISSUER",
    "NVIDIA_NRAS_INTERMEDIATE_SPKI_SHA256",
    "CLOCK_SKEW",
    "NrasAnchor",
    "NrasKey",
    "nvidia_nras_anchor",
    "authenticate_jwk",
    "Jwt",
    "Jwks",
    "JwksCache",
    "NrasResponse",
    "NrasVerification",
    "decode_jwt",
    "parse_nras_response",
    "build_nras_request",
    "fetch_nras",
    "fetch_jwks",
    "verify_jwt",
    "verify_nras",
    "sign_es384",
    "jwk_of",
]

NRAS_URL = "https://nras.attestation.nvidia.com"
NRAS_ISSUER = "https://nras.attestation.nvidia.com"
ATTEST_PATH = "/v3/attest/gpu"
JWKS_PATH = "/.well-known/jwks.json"
#: The only algorithm NRAS signs with. Anything else (``none``, ``HS256`` with the public key as secret, …) is an
#: attempt to make a verifier accept a token nobody signed, and is refused.
ALLOWED_ALG = "ES384"
#: SubjectPublicKeyInfo SHA-256 of "NVIDIA Attestation Service GPU Intermediate 004" (valid 2025-12-08 to
#: 2029-12-08, issued by "NVIDIA Attestation Service CA 001", which NRAS does not publish). Provenance: ``x5c[1]``
#: of every key in the JWKS captured from nras.attestation.nvidia.com (fixtures/field/neardirect-qwen-2026-03,
#: fixtures/reports/neardirect-qwen-2026-06 and four more captures, 2026-03..06); independent verifiers pin the
#: same value (SPEC §9). The certificate ships as phalanb/roots/nvidia_nras_intermediate_004.der and is checked
#: against this pin when loaded. When NVIDIA rotates it, ship the new certificate and pin together.
NVIDIA_NRAS_INTERMEDIATE_SPKI_SHA256 = "fd32837f954e2c45db073105166dfe6985ae0480bb113fba63b091a75affe896"
_NVIDIA_NRAS_INTERMEDIATE_FILE = "nvidia_nras_intermediate_004.der"
#: Seconds of clock skew allowed on ``nbf``/``iat`` and on the key's certificate (teep uses the same 10 s): NRAS
#: stamps its tokens with its own clock, a few seconds off the capturing machine's.
CLOCK_SKEW = 10.0


# --- tokens --------------------------------------------------------------------------------------------------

def _b64url(text: str, name: str) -> bytes:
    if not isinstance(text, str):
        raise ParseError(f"expected base64url text, got {type(text).__name__}", field=name)
    if not text or any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" for c in text):
        raise ParseError("not base64url text (JWT segments use A-Z a-z 0-9 - _ without padding)", field=name)
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ParseError(f"not valid base64url: {exc}", field=name) from None


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class Jwt:
    """A compact JWS split into its parts. Decoding checks the form only; nothing here is trusted yet."""

    raw: str
    header: dict[str, Any]
    claims: dict[str, Any]
    signature: bytes
    #: Why the token could not be decoded, for tokens read leniently out of an NRAS answer (then nothing else
    #: is set and verification fails naming this).
    error: str | None = None

    @property
    def signing_input(self) -> bytes:
        return self.raw.rsplit(".", 1)[0].encode("ascii")

    @property
    def alg(self) -> Any:
        return self.header.get("alg")

    @property
    def kid(self) -> Any:
        return self.header.get("kid")

    @property
    def sha256(self) -> str:
        """What the overall token's ``submods`` commits to: SHA-256 of the token text."""
        return hashlib.sha256(self.raw.encode("utf-8", "surrogatepass")).hexdigest()


def decode_jwt(token: Any, name: str = "token") -> Jwt:
    """Split and decode a compact JWS (header and claims must be JSON objects). Raises :class:`ParseError`."""
    if not isinstance(token, str):
        raise ParseError(f"expected a JWT string, got {type(token).__name__}", field=name)
    parts = token.split(".")
    if len(parts) != 3:
        raise ParseError(f"a JWT has 3 dot-separated parts, this has {len(parts)}", field=name)
    try:
        token.encode("ascii")
    except UnicodeEncodeError:
        raise ParseError("a JWT is ASCII text", field=name) from None
    decoded = []
    for part, label in zip(parts[:2], ("header", "claims")):
        raw = _b64url(part, f"{name}.{label}")
        try:
            obj = _json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ParseError(f"the {label} is not JSON: {exc}", field=f"{name}.{label}") from None
        if not isinstance(obj, dict):
            raise ParseError(f"the {label} must be a JSON object", field=f"{name}.{label}")
        decoded.append(obj)
    sig = _b64url(parts[2], f"{name}.signature") if parts[2] else b""
    return Jwt(token, decoded[0], decoded[1], sig)


def _decode_lenient(token: Any, name: str) -> Jwt:
    # One bad token (a flipped byte can break its JSON) must fail verification with its name, not abort the
    # reading of the whole answer.
    try:
        return decode_jwt(token, name)
    except ParseError as exc:
        return Jwt(token if isinstance(token, str) else repr(token), {}, {}, b"", error=str(exc))


def _public_key_from_jwk(jwk: Mapping[str, Any]) -> ec.EllipticCurvePublicKey:
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-384":
        raise ParseError(f"key {jwk.get('kid')!r} is {jwk.get('kty')}/{jwk.get('crv')}, not EC P-384", field="jwks")
    try:
        x = int.from_bytes(_b64url(jwk["x"], "jwk.x"), "big")
        y = int.from_bytes(_b64url(jwk["y"], "jwk.y"), "big")
        return ec.EllipticCurvePublicNumbers(x, y, ec.SECP384R1()).public_key()
    except (KeyError, ValueError) as exc:
        raise ParseError(f"key {jwk.get('kid')!r} is not a valid P-384 point: {exc}", field="jwks") from None


def _spki_sha256(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def _timestamp(cert: x509.Certificate, which: str) -> float:
    return getattr(cert, f"not_valid_{which}_utc").timestamp()


class _Dated:
    """The validity window of the ``certificate`` a class holds, as Unix seconds."""

    certificate: x509.Certificate

    @property
    def not_before(self) -> float:
        return _timestamp(self.certificate, "before")

    @property
    def not_after(self) -> float:
        return _timestamp(self.certificate, "after")


@dataclass(frozen=True)
class NrasAnchor(_Dated):
    """The certificate every NRAS signing key must chain to: NVIDIA's pinned intermediate in production
    (:func:`nvidia_nras_anchor`), the simulator's own one only under simulated trust."""

    certificate: x509.Certificate = field(repr=False)
    name: str
    simulated: bool = False

    @property
    def spki_sha256(self) -> str:
        return _spki_sha256(self.certificate)

    def same_as(self, other: "NrasAnchor") -> bool:
        return self.spki_sha256 == other.spki_sha256 and self.simulated == other.simulated


@lru_cache(maxsize=1)
def nvidia_nras_anchor() -> NrasAnchor:
    """NVIDIA's NRAS intermediate, shipped in the package and checked against the pinned SPKI SHA-256."""
    der = resources.files("phalanb.roots").joinpath(_NVIDIA_NRAS_INTERMEDIATE_FILE).read_bytes()
    cert = x509.load_der_x509_certificate(der)
    if _spki_sha256(cert) != NVIDIA_NRAS_INTERMEDIATE_SPKI_SHA256:
        raise InputError(f"phalanb/roots/{_NVIDIA_NRAS_INTERMEDIATE_FILE} does not carry the pinned NRAS key "
                         f"{NVIDIA_NRAS_INTERMEDIATE_SPKI_SHA256[:16]}…: the installation was altered; reinstall")
    return NrasAnchor(cert, "NVIDIA Attestation Service GPU Intermediate 004")


@dataclass(frozen=True)
class NrasKey(_Dated):
    """A JWK that was shown to be the anchor's: its key, and the ``x5c[0]`` certificate vouching for it."""

    kid: str
    public_key: ec.EllipticCurvePublicKey = field(repr=False)
    certificate: x509.Certificate = field(repr=False)
    anchor: NrasAnchor = field(repr=False)
    jwk: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def valid_at(self, at: float) -> str | None:
        """None when the key's certificate and the anchor are valid at ``at`` (with :data:`CLOCK_SKEW`)."""
        for what, lo, hi in (("the key's certificate", self.not_before, self.not_after),
                             (self.anchor.name, self.anchor.not_before, self.anchor.not_after)):
            if not lo - CLOCK_SKEW <= at <= hi + CLOCK_SKEW:
                return f"{what} is valid from {int(lo)} to {int(hi)}, not at the clock {int(at)}"
        return None


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _check_chain(certs: list[x509.Certificate], key: ec.EllipticCurvePublicKey, kid: Any,
                 anchor: NrasAnchor) -> None:
    leaf = certs[0]
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.digital_signature:
        raise ParseError(f"the x5c[0] certificate of key {kid!r} is not for signatures (keyUsage)",
                         field="jwks.x5c[0]")
    leaf_key = leaf.public_key()
    if not isinstance(leaf_key, ec.EllipticCurvePublicKey) or leaf_key.public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo) != key.public_bytes(Encoding.DER,
                                                                               PublicFormat.SubjectPublicKeyInfo):
        raise ParseError(f"key {kid!r} is not the key of its own x5c[0] certificate", field="jwks.x5c[0]")
    current = leaf
    for upper in certs[1:]:
        if _issued_by(current, anchor.certificate):
            break
        try:
            is_ca = upper.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca or not _issued_by(current, upper):
            raise ParseError(f"the x5c chain of key {kid!r} is broken: {current.subject.rfc4514_string()[:80]} is "
                             "not signed by the CA certificate after it", field="jwks.x5c")
        current = upper
    if not _issued_by(current, anchor.certificate):
        raise ParseError(f"the x5c chain of key {kid!r} does not lead to {anchor.name} (pinned by its key "
                         f"{anchor.spki_sha256[:16]}…): it is not NRAS's key", field="jwks.x5c")


def authenticate_jwk(jwk: Mapping[str, Any], anchor: NrasAnchor) -> NrasKey:
    """The JWK as an :class:`NrasKey` when it is the anchor's; raises :class:`ParseError` saying why not.

    It is the anchor's when its key equals its ``x5c[0]`` certificate's key and that certificate chains, through
    the CA certificates after it in ``x5c`` if any, to a certificate signed by the anchor's key (the anchor is
    pinned by key, so a look-alike with the same name fails). Validity in time is checked per token
    (:meth:`NrasKey.valid_at`)."""
    kid = jwk.get("kid")
    key = _public_key_from_jwk(jwk)
    chain_b64 = jwk.get("x5c")
    if not isinstance(chain_b64, list) or not chain_b64 or not all(isinstance(c, str) for c in chain_b64):
        raise ParseError(f"key {kid!r} carries no x5c certificate chain, so nothing says whose key it is",
                         field="jwks.x5c")
    certs = []
    for i, text in enumerate(chain_b64[:8]):
        try:
            certs.append(x509.load_der_x509_certificate(base64.b64decode(text, validate=True)))
        except (binascii.Error, ValueError) as exc:
            raise ParseError(f"x5c[{i}] of key {kid!r} is not a base64 DER certificate: {exc}",
                             field=f"jwks.x5c[{i}]") from None
    try:
        _check_chain(certs, key, kid, anchor)
    except ParseError:
        raise
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # A certificate whose key or extensions cannot even be read is no NVIDIA certificate.
        raise ParseError(f"the x5c chain of key {kid!r} cannot be read: {exc}", field="jwks.x5c") from None
    leaf = certs[0]
    return NrasKey(kid, key, leaf, anchor, dict(jwk))


class Jwks:
    """A JSON Web Key Set, indexed by ``kid``, holding only keys shown to be the anchor's (default: NVIDIA's
    pinned NRAS intermediate). Keys that are not EC P-384 or not authenticated are kept out, in ``skipped`` with
    the reason.

    >>> jwks = Jwks(captured_document)                      # NVIDIA's keys only        # doctest: +SKIP
    """

    def __init__(self, document: Mapping[str, Any] | None = None, *, anchor: NrasAnchor | None = None):
        self.anchor = anchor or nvidia_nras_anchor()
        self.entries: dict[str, NrasKey] = {}
        self.skipped: dict[str, str] = {}
        self.raw: dict[str, Mapping[str, Any]] = {}  # every JWK seen, by kid, to judge again under another anchor
        if document is not None:
            self.add(document)

    def add(self, document: Mapping[str, Any]) -> None:
        if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
            raise ParseError('a JWKS is an object {"keys": [...]}', field="jwks")
        for jwk in document["keys"]:
            if not isinstance(jwk, Mapping) or not isinstance(jwk.get("kid"), str):
                continue
            self.raw.setdefault(jwk["kid"], jwk)
            try:
                self.entries[jwk["kid"]] = authenticate_jwk(jwk, self.anchor)
                self.skipped.pop(jwk["kid"], None)
            except ParseError as exc:
                if jwk["kid"] not in self.entries:
                    self.skipped[jwk["kid"]] = str(exc)

    def add_key(self, entry: NrasKey) -> None:
        self.entries[entry.kid] = entry
        self.raw[entry.kid] = entry.jwk

    @property
    def keys(self) -> dict[str, ec.EllipticCurvePublicKey]:
        return {kid: e.public_key for kid, e in self.entries.items()}

    def entry(self, kid: str) -> NrasKey | None:
        return self.entries.get(kid)

    def key(self, kid: str) -> ec.EllipticCurvePublicKey | None:
        e = self.entries.get(kid)
        return e.public_key if e else None

    def for_anchor(self, anchor: NrasAnchor) -> "Jwks":
        """The same documents judged against ``anchor`` (itself when the anchor is the same)."""
        if self.anchor.same_as(anchor):
            return self
        return Jwks({"keys": list(self.raw.values())}, anchor=anchor)

    def __contains__(self, kid: object) -> bool:
        return kid in self.entries

    def __len__(self) -> int:
        return len(self.entries)


def jwk_of(public_key: ec.EllipticCurvePublicKey, kid: str,
           chain: Sequence[x509.Certificate] = ()) -> dict[str, Any]:
    """The JWK of a P-384 public key, with its ``x5c`` certificate chain when given (the simulator publishes its
    JWKS with this)."""
    nums = public_key.public_numbers()
    jwk: dict[str, Any] = {"kty": "EC", "crv": "P-384", "kid": kid, "use": "sig", "alg": ALLOWED_ALG,
                           "x": _b64url_encode(nums.x.to_bytes(48, "big")),
                           "y": _b64url_encode(nums.y.to_bytes(48, "big"))}
    if chain:
        jwk["x5c"] = [base64.b64encode(c.public_bytes(Encoding.DER)).decode() for c in chain]
    return jwk


def sign_es384(claims: Mapping[str, Any], private_key: ec.EllipticCurvePrivateKey, kid: str) -> str:
    """A compact ES384 JWS of ``claims`` (the simulator's NRAS signs with this)."""
    header = _b64url_encode(json.dumps({"kid": kid, "alg": ALLOWED_ALG}, separators=(",", ":")).encode())
    body = _b64url_encode(json.dumps(dict(claims), separators=(",", ":")).encode())
    der = private_key.sign(f"{header}.{body}".encode(), ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(der)
    return f"{header}.{body}.{_b64url_encode(r.to_bytes(48, 'big') + s.to_bytes(48, 'big'))}"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def verify_jwt(token: Jwt, jwks: Jwks, *, at: float, issuer: str) -> str | None:
    """None when ``token`` is a valid ES384 token of ``issuer`` at time ``at``; else why not (one sentence)."""
    if token.error:
        return f"malformed: {token.error}"
    alg = token.alg
    if alg != ALLOWED_ALG:
        return (f"alg {alg!r} refused: NRAS tokens are {ALLOWED_ALG} only (a token with alg none or an HMAC alg "
                "could be made by anyone)")
    kid = token.kid
    if not isinstance(kid, str):
        return "the header names no kid, so no NRAS key can be chosen"
    entry = jwks.entry(kid)
    if entry is None:
        if kid in jwks.skipped:
            return (f"key {kid[:60]!r} is not {jwks.anchor.name}'s, so its tokens prove nothing: "
                    f"{jwks.skipped[kid]}")
        return f"kid {kid!r} is not in the JWKS ({len(jwks)} keys): fetch the JWKS of the token's day"
    key = entry.public_key
    if len(token.signature) != 96:
        return f"an ES384 signature is 96 bytes (r‖s), this one is {len(token.signature)}"
    der = encode_dss_signature(int.from_bytes(token.signature[:48], "big"), int.from_bytes(token.signature[48:], "big"))
    try:
        key.verify(der, token.signing_input, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        return f"the ES384 signature does not verify with key {kid[:40]}"
    claims = token.claims
    if claims.get("iss") != issuer:
        return f"issuer {claims.get('iss')!r} is not {issuer!r}"
    exp, nbf, iat = claims.get("exp"), claims.get("nbf"), claims.get("iat")
    if not _finite(exp):
        # NaN compares false with every clock and would never expire; Infinity is no NumericDate either.
        return f"the token has no finite numeric exp (exp is {exp!r:.40})"
    if nbf is not None and not _finite(nbf):
        return f"nbf {nbf!r:.40} is not a finite number"
    if iat is not None and not _finite(iat):
        return f"iat {iat!r:.40} is not a finite number"
    if nbf is not None and at + CLOCK_SKEW < nbf:
        return f"not valid before {int(nbf)} (clock {int(at)}, {int(CLOCK_SKEW)} s of skew allowed)"
    if iat is not None and at + CLOCK_SKEW < iat:
        return f"issued at {int(iat)}, after the clock {int(at)} ({int(CLOCK_SKEW)} s of skew allowed)"
    if at >= exp:
        iat = claims.get("iat")
        when = (f"pass --at {int(iat)} (its iat, when NVIDIA issued it; at={int(iat)} in Python)" if _finite(iat)
                else "pass --at with the time it was issued")
        return f"expired at {int(exp)} (clock {int(at)}); to verify an archived answer as of when it was issued, {when}"
    stale = entry.valid_at(at)
    if stale:
        return f"key {kid[:60]!r}: {stale}"
    return None


# --- the response --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NrasResponse:
    """The detached EAT: the overall token and one token per GPU (``GPU-0`` …), decoded but not yet trusted."""

    overall: Jwt
    gpus: dict[str, Jwt]
    raw: Any = field(default=None, repr=False, compare=False)

    def tokens(self) -> list[tuple[str, Jwt]]:
        return [("overall", self.overall)] + sorted(self.gpus.items(), key=lambda kv: _gpu_order(kv[0]))

    @property
    def kids(self) -> set[str]:
        return {t.kid for _, t in self.tokens() if isinstance(t.kid, str)}


def _gpu_order(name: str) -> tuple[int, str]:
    tail = name.rsplit("-", 1)[-1]
    # isdigit() alone accepts "²" or "١", which int() refuses: only ASCII digits are an index.
    return (int(tail), name) if tail.isascii() and tail.isdigit() else (1 << 30, name)


def parse_nras_response(value: Any) -> NrasResponse:
    """Read ``[["JWT", overall], {"GPU-i": token}]`` from JSON text or the decoded list."""
    if isinstance(value, (bytes, str)):
        try:
            value = _json.loads(value)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ParseError(f"the NRAS answer is not JSON: {exc}", field="nras_response") from None
    if isinstance(value, dict) and ("errorCode" in value or "error" in value or "message" in value):
        raise ParseError(f"NRAS answered an error object, not tokens: {json.dumps(value)[:300]}",
                         field="nras_response")
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], list) and len(value[0]) == 2
            and value[0][0] == "JWT" and isinstance(value[1], dict)):
        raise ParseError('expected [["JWT", overall_token], {"GPU-0": token, …}] (NRAS v3 detached EAT)',
                         field="nras_response")
    overall = _decode_lenient(value[0][1], "overall")
    gpus = {str(k): _decode_lenient(v, str(k)) for k, v in value[1].items()}
    return NrasResponse(overall, gpus, value)


def build_nras_request(payload: GpuPayload, *, nonce: str | None = None) -> dict[str, Any]:
    """The body to POST to NRAS: the payload as the service sent it, or rebuilt in dstack shape.

    ``nonce`` must be the nonce *inside the evidence*: for Chutes that is sha256(nonce + e2e_pubkey), not the
    server's raw nonce (posting the raw one is what made NRAS answer 4010 NONCE_NOT_MATCHING).
    """
    if payload.variant == "dstack" and isinstance(payload.raw, dict) and nonce is None:
        return payload.raw
    spdm_nonces = {g.requester_nonce.hex() for g in payload.gpus}
    if nonce is None:
        if len(spdm_nonces) != 1:
            raise InputError("the GPUs carry different nonces: say which one NRAS should check (nonce=...)")
        nonce = spdm_nonces.pop()
    arch = payload.arch or (payload.gpus[0].arch or "HOPPER")
    items = []
    for g in payload.gpus:
        evidence = g.evidence_text if g.evidence_encoding == "base64" and g.evidence_text else \
            base64.b64encode(g.evidence_bytes).decode()
        certificate = g.certificate_text or base64.b64encode(
            b"".join(c.public_bytes(Encoding.PEM) for c in g.certificates)).decode()
        items.append({"arch": g.arch or arch, "certificate": certificate, "evidence": evidence})
    return {"arch": arch, "nonce": nonce, "evidence_list": items}


#: An NRAS answer for 8 GPUs is ~20 KB and the JWKS ~100 KB; anything near this is not NRAS.
MAX_NRAS_BODY = 4 * 1024 * 1024


def _request_json(client: httpx.Client, method: str, url: str, *, body: Any = None, what: str) -> Any:
    """One request, its answer read within :data:`MAX_NRAS_BODY` (after decompression too) and decoded."""
    try:
        # Ask for identity (the answers are small); a gzip or deflate answer is still inflated within the limit.
        with client.stream(method, url, json=body, headers={"Accept-Encoding": "identity"}) as resp:
            content = read_limited(resp, MAX_NRAS_BODY, what=what)
    except httpx.HTTPError as exc:
        raise TransportError(f"could not reach {what} at {url}: {exc}", url=url) from None
    text = content[:1000].decode("utf-8", "replace")
    if resp.status_code >= 400:
        raise ServiceError(f"NRAS answered HTTP {resp.status_code} at {url}: {text[:300]}",
                           status=resp.status_code, server_message=text, url=url)
    try:
        # Not resp.json(): a deeply nested answer would overflow the C stack there (see phalanb._json).
        return _json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ServiceError(f"NRAS answered non-JSON at {url}: {text[:200]!r}", status=resp.status_code,
                           url=url) from None


def fetch_nras(request: Mapping[str, Any], *, base_url: str = NRAS_URL, client: httpx.Client | None = None,
               timeout: float = 30.0) -> Any:
    """POST the request to ``{base_url}/v3/attest/gpu`` and return the decoded JSON answer (not verified)."""
    url = base_url.rstrip("/") + ATTEST_PATH
    if client is not None:
        return _request_json(client, "POST", url, body=request, what="NRAS")
    with httpx.Client(timeout=timeout) as own:
        return _request_json(own, "POST", url, body=request, what="NRAS")


def fetch_jwks(*, base_url: str = NRAS_URL, client: httpx.Client | None = None, timeout: float = 30.0) -> Any:
    """GET ``{base_url}/.well-known/jwks.json`` (the decoded JSON, not yet a :class:`Jwks`)."""
    url = base_url.rstrip("/") + JWKS_PATH

    if client is not None:
        return _request_json(client, "GET", url, what="the NRAS JWKS")
    with httpx.Client(timeout=timeout) as own:
        return _request_json(own, "GET", url, what="the NRAS JWKS")


class JwksCache:
    """NRAS keys by ``kid``, each kept until it expires, fetched on demand: a missing or expired kid triggers
    exactly one refetch (keys rotate daily). Only keys that chain to ``anchor`` (NVIDIA's by default) are kept.

    A key expires ``ttl`` seconds after it was fetched or when its certificate ends, whichever is first, so a
    withdrawn key does not live on in a long-running process.

    >>> cache = JwksCache(base_url="http://127.0.0.1:8000/nras", anchor=simulated_nras_anchor())  # doctest: +SKIP
    >>> jwks = cache.keys_for(parse_nras_response(answer).kids)                                   # doctest: +SKIP
    """

    def __init__(self, *, base_url: str = NRAS_URL, client: httpx.Client | None = None,
                 fetch: Callable[[], Any] | None = None, anchor: NrasAnchor | None = None, ttl: float = 3600.0,
                 clock: Callable[[], float] = time.time):
        self._fetch = fetch or (lambda: fetch_jwks(base_url=base_url, client=client))
        self.anchor = anchor or nvidia_nras_anchor()
        self.ttl = float(ttl)
        self._clock = clock
        self._entries: dict[str, tuple[NrasKey, float]] = {}  # kid -> (key, expires at)
        self._skipped: dict[str, tuple[str, Mapping[str, Any]]] = {}  # kid -> (why not the anchor's, the JWK)
        self.fetches = 0

    def _fresh(self, kid: str) -> bool:
        entry = self._entries.get(kid)
        return entry is not None and self._clock() < entry[1]

    def _refresh(self) -> None:
        self.fetches += 1
        fetched = Jwks(self._fetch(), anchor=self.anchor)
        now = self._clock()
        for kid, key in fetched.entries.items():
            self._entries[kid] = (key, min(now + self.ttl, key.not_after))
        self._skipped.update({k: (v, fetched.raw[k]) for k, v in fetched.skipped.items()
                              if k not in fetched.entries and k in fetched.raw})

    @property
    def jwks(self) -> Jwks:
        """The keys not yet expired, as a :class:`Jwks`."""
        out = Jwks(anchor=self.anchor)
        for kid, (key, _expires) in self._entries.items():
            if self._fresh(kid):
                out.add_key(key)
        for kid, (why, jwk) in self._skipped.items():
            if kid not in out.entries:
                out.skipped[kid] = why
                out.raw.setdefault(kid, jwk)
        return out

    def key(self, kid: str) -> ec.EllipticCurvePublicKey | None:
        if not self._fresh(kid):
            self._refresh()
        return self._entries[kid][0].public_key if self._fresh(kid) else None

    def keys_for(self, kids: Iterable[str]) -> Jwks:
        """A :class:`Jwks` of the unexpired keys, after at most one refetch for kids missing or expired."""
        if any(not self._fresh(k) for k in kids):
            self._refresh()
        return self.jwks

    def __contains__(self, kid: object) -> bool:
        return isinstance(kid, str) and self._fresh(kid)


# --- verification --------------------------------------------------------------------------------------------

class NrasVerification:
    """Checks over one NRAS answer, plus the decoded claims for display."""

    def __init__(self, response: NrasResponse, checks: list[Check], token_errors: dict[str, str]):
        self.response = response
        self.checks = checks
        self.token_errors = token_errors

    @property
    def tokens_valid(self) -> bool:
        return not self.token_errors

    @property
    def error_details(self) -> dict[str, Any]:
        out = {}
        for name, tok in self.response.tokens():
            det = tok.claims.get("x-nvidia-error-details")
            if det:
                out[name] = det
        return out

    @property
    def signed_failure(self) -> bool:
        """True when NRAS, in validly signed tokens, said the evidence did not pass (e.g. 4010)."""
        return self.tokens_valid and self.check("nras.result").status is Status.FAIL

    def check(self, check_id: str) -> Check:
        return self.verdict()[check_id]

    def verdict(self) -> Verdict:
        return Verdict(self.checks)


def _jwks_of(value: Jwks | JwksCache | Mapping[str, Any], anchor: NrasAnchor) -> Jwks:
    # Whatever the caller hands in, only keys that chain to *this* verification's anchor count.
    if isinstance(value, JwksCache):
        if value.anchor.same_as(anchor):
            return value.jwks
        value = value.jwks
    if isinstance(value, Jwks):
        return value.for_anchor(anchor)
    return Jwks(value, anchor=anchor)


def _gpu_claims_problems(name: str, claims: Mapping[str, Any]) -> list[str]:
    out = []
    det = claims.get("x-nvidia-error-details")
    if det:
        if isinstance(det, Mapping):
            out.append(f"{name}: error {det.get('code')} {det.get('message')} "
                       f"({str(det.get('description', '')).strip()})")
        else:
            out.append(f"{name}: error {det}")
        return out
    if claims.get("measres") != "success":
        out.append(f"{name}: measres {claims.get('measres')!r}, not 'success'")
    if claims.get("x-nvidia-gpu-attestation-report-nonce-match") is not True:
        out.append(f"{name}: nonce-match is {claims.get('x-nvidia-gpu-attestation-report-nonce-match')!r}")
    if claims.get("secboot") is not True:
        out.append(f"{name}: secboot is {claims.get('secboot')!r}")
    if claims.get("dbgstat") != "disabled":
        out.append(f"{name}: dbgstat is {claims.get('dbgstat')!r}, not 'disabled'")
    return out


def verify_nras(response: Any, *, jwks: Jwks | JwksCache | Mapping[str, Any], expected_nonce: str | bytes | None,
                at: float | None = None, issuer: str = NRAS_ISSUER,
                gpu_facts: Sequence[GpuFacts] | None = None, anchor: NrasAnchor | None = None) -> NrasVerification:
    """Verify an NRAS answer offline. ``at`` pins the clock (Unix seconds; default now) for archived tokens.

    Only keys of ``jwks`` that chain to ``anchor`` (default: NVIDIA's pinned NRAS intermediate; the simulator's
    under simulated trust, :func:`phalanb.trust.nras_anchor`) verify tokens: a JWKS from a bundle or a file that
    merely *contains* a key proves nothing.

    Malformed answers raise :class:`ParseError`; everything else is a check in the result. A *validly signed
    failure* (tokens good, NRAS said no) yields ``nras.token`` PASS and ``nras.result`` FAIL with NRAS's error.
    """
    resp = response if isinstance(response, NrasResponse) else parse_nras_response(response)
    anchor = anchor or nvidia_nras_anchor()
    keys = _jwks_of(jwks, anchor)
    clock = time.time() if at is None else parse_time(at, field="at")
    # 1. every token: alg, kid, signature, issuer, time window
    errors: dict[str, str] = {}
    for name, tok in resp.tokens():
        why = verify_jwt(tok, keys, at=clock, issuer=issuer)
        if why:
            errors[name] = why
    n = len(resp.gpus)
    token_ev = {"clock": int(clock), "issuer": issuer, "kids": sorted(resp.kids), "tokens": n + 1,
                "key_anchor": {"name": anchor.name, "spki_sha256": anchor.spki_sha256,
                               "simulated": anchor.simulated}}
    checks = []
    if errors:
        first = next(iter(errors.items()))
        checks.append(Check("nras.token", Status.FAIL, f"{first[0]} token: {first[1]}"
                            + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
                            {**token_ev, "errors": errors}))
    else:
        checks.append(Check("nras.token", Status.PASS, f"{n + 1} ES384 tokens verify with keys of {anchor.name} "
                            f"(pinned), issuer {issuer}, valid at {int(clock)}", token_ev))
    # 2. the overall token commits to each GPU token
    submods = resp.overall.claims.get("submods")
    problems = []
    digests = {}
    if not isinstance(submods, Mapping):
        problems.append("the overall token has no submods")
        submods = {}
    for name, tok in resp.gpus.items():
        entry = submods.get(name)
        want = None
        if (isinstance(entry, list) and len(entry) == 2 and entry[0] == "DIGEST" and isinstance(entry[1], list)
                and len(entry[1]) == 2 and entry[1][0] == "SHA-256"):
            want = entry[1][1]
        digests[name] = {"submods": want, "sha256": tok.sha256}
        if want is None:
            problems.append(f"submods has no SHA-256 digest for {name}")
        elif want != tok.sha256:
            problems.append(f"{name}: submods digest {str(want)[:16]}… is not sha256 of its token "
                            f"{tok.sha256[:16]}…")
    extra = set(submods) - set(resp.gpus)
    if extra:
        problems.append(f"submods names GPUs with no token: {sorted(extra)}")
    if problems:
        checks.append(Check("nras.submods", Status.FAIL, "; ".join(problems), {"digests": digests}))
    else:
        checks.append(Check("nras.submods", Status.PASS, f"the overall token commits to all {n} GPU tokens by "
                            "SHA-256", {"digests": digests}))
    # 3. nonce
    eat = resp.overall.claims.get("eat_nonce")
    if expected_nonce is None:
        checks.append(Check("nras.nonce", Status.SKIPPED, f"no expected nonce given; eat_nonce is {eat}",
                            {"eat_nonce": eat}))
    else:
        want_nonce = (expected_nonce.hex() if isinstance(expected_nonce, bytes)
                      else str(expected_nonce).lower().removeprefix("0x"))
        bad = [name for name, tok in resp.tokens() if "eat_nonce" in tok.claims
               and str(tok.claims["eat_nonce"]).lower() != want_nonce]
        if errors and not (eat is None or bad):
            # A matching nonce in tokens nobody authenticated proves nothing: not passed, only reported.
            checks.append(Check("nras.nonce", Status.SKIPPED, "not believed: eat_nonce matches, but the tokens did "
                                "not verify (see nras.token)", {"eat_nonce": eat}))
        elif eat is None or bad:
            checks.append(Check("nras.nonce", Status.FAIL, f"eat_nonce {eat} is not the expected {want_nonce}"
                                if eat is not None else "the overall token carries no eat_nonce",
                                {"eat_nonce": eat, "expected": want_nonce, "mismatched": bad}))
        else:
            checks.append(Check("nras.nonce", Status.PASS, "eat_nonce equals the expected nonce",
                                {"eat_nonce": eat}))
    # 4. the appraisal itself (only believed when the tokens are genuine)
    appraisal = []
    if resp.overall.claims.get("x-nvidia-overall-att-result") is not True:
        appraisal.append(f"x-nvidia-overall-att-result is {resp.overall.claims.get('x-nvidia-overall-att-result')!r}")
    for name, tok in sorted(resp.gpus.items(), key=lambda kv: _gpu_order(kv[0])):
        appraisal.extend(_gpu_claims_problems(name, tok.claims))
    result_ev = {"overall": resp.overall.claims.get("x-nvidia-overall-att-result"),
                 "gpus": {name: {k: tok.claims.get(k) for k in ("measres", "secboot", "dbgstat", "ueid", "hwmodel",
                                                                "x-nvidia-gpu-attestation-report-nonce-match",
                                                                "x-nvidia-error-details")}
                          for name, tok in resp.gpus.items()}}
    if errors:
        checks.append(Check("nras.result", Status.SKIPPED, "not believed: the tokens did not verify (see "
                            "nras.token)", result_ev))
    elif appraisal:
        checks.append(Check("nras.result", Status.FAIL, "NRAS answered a validly signed failure: "
                            + "; ".join(appraisal[:4]) + (f" (+{len(appraisal) - 4} more)" if len(appraisal) > 4
                                                          else ""), result_ev))
    else:
        checks.append(Check("nras.result", Status.PASS, f"NRAS appraised all {n} GPU(s): overall true, measres "
                            "success, nonce match, secure boot on, debug disabled", result_ev))
    # 5. the tokens describe the GPUs that were verified offline
    if gpu_facts is not None:
        identity = _identity(resp, gpu_facts)
        if errors and identity.status is Status.PASS:
            identity = Check("nras.identity", Status.SKIPPED, "not believed: the tokens' ueid and versions match "
                             "the evidence, but the tokens did not verify (see nras.token)", identity.evidence)
        checks.append(identity)
    return NrasVerification(resp, checks, errors)


def _identity(resp: NrasResponse, facts: Sequence[GpuFacts]) -> Check:
    problems = []
    rows = {}
    compared = 0
    if len(facts) != len(resp.gpus):
        problems.append(f"{len(resp.gpus)} GPU tokens for {len(facts)} GPUs in the evidence")
    for f in facts:
        name = f"GPU-{f.index}"
        tok = resp.gpus.get(name)
        if tok is None:
            problems.append(f"no token for {name}")
            continue
        c = tok.claims
        rows[name] = {"ueid": c.get("ueid"), "leaf_serial": f.ueid}
        if "x-nvidia-error-details" in c and "ueid" not in c:
            continue  # a failure token carries no identity claims; nras.result already says why
        compared += 1
        if c.get("ueid") != f.ueid:
            problems.append(f"{name}: ueid {c.get('ueid')} is not the leaf serial {f.ueid}")
        for claim, mine in (("x-nvidia-gpu-driver-version", f.driver_version),
                            ("x-nvidia-gpu-vbios-version", f.vbios_version), ("hwmodel", f.chip)):
            if claim in c and mine is not None and str(c[claim]).upper() != str(mine).upper():
                problems.append(f"{name}: {claim} {c[claim]} differs from the evidence's {mine}")
    if problems:
        return Check("nras.identity", Status.FAIL, "; ".join(problems[:4]), {"gpus": rows})
    if not compared:
        return Check("nras.identity", Status.SKIPPED, "the GPU tokens are failure tokens without identity claims "
                     "(ueid, versions): nothing to compare", {"gpus": rows}, required=False)
    return Check("nras.identity", Status.PASS, f"each GPU token's ueid equals its leaf certificate's serial "
                 f"({len(rows)} GPUs)", {"gpus": rows})
