"""NVIDIA Remote Attestation Service (NRAS): build the request, fetch the answer, verify its tokens offline.

NRAS appraises GPU evidence against NVIDIA's reference measurements (RIMs) and revocation data, and answers with
a *detached EAT* (SPEC §9)::

    [["JWT", <overall token>], {"GPU-0": <token>, "GPU-1": <token>, …}]

every token ES384-signed with a key published at ``/.well-known/jwks.json`` (by ``kid``; keys rotate daily). The
services' own verifiers read these claims without checking the signatures; phalanb checks them, and keeps
fetching (:func:`fetch_nras`, :class:`JwksCache`) apart from verifying (:func:`verify_nras`) so an archived answer
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
from typing import Any, Callable, Iterable, Mapping, Sequence

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

from .. import _json
from ..errors import InputError, ParseError, ServiceError, TransportError
from ..verdict import Check, Status, Verdict
from .payload import GpuPayload
from .verify import GpuFacts

__all__ = [
    "NRAS_URL",
    "NRAS_ISSUER",
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


class Jwks:
    """A JSON Web Key Set, indexed by ``kid``. Keys that are not EC P-384 are kept out (NRAS uses only those)."""

    def __init__(self, document: Mapping[str, Any] | None = None):
        self.keys: dict[str, ec.EllipticCurvePublicKey] = {}
        self.skipped: dict[str, str] = {}
        if document is not None:
            self.add(document)

    def add(self, document: Mapping[str, Any]) -> None:
        if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
            raise ParseError('a JWKS is an object {"keys": [...]}', field="jwks")
        for jwk in document["keys"]:
            if not isinstance(jwk, Mapping) or not isinstance(jwk.get("kid"), str):
                continue
            try:
                self.keys[jwk["kid"]] = _public_key_from_jwk(jwk)
            except ParseError as exc:
                self.skipped[jwk["kid"]] = str(exc)

    def key(self, kid: str) -> ec.EllipticCurvePublicKey | None:
        return self.keys.get(kid)

    def __contains__(self, kid: object) -> bool:
        return kid in self.keys

    def __len__(self) -> int:
        return len(self.keys)


def jwk_of(public_key: ec.EllipticCurvePublicKey, kid: str) -> dict[str, str]:
    """The JWK of a P-384 public key (used by the simulator to publish its JWKS)."""
    nums = public_key.public_numbers()
    return {"kty": "EC", "crv": "P-384", "kid": kid, "use": "sig", "alg": ALLOWED_ALG,
            "x": _b64url_encode(nums.x.to_bytes(48, "big")), "y": _b64url_encode(nums.y.to_bytes(48, "big"))}


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
    key = jwks.key(kid)
    if key is None:
        return f"kid {kid!r} is not in the JWKS ({len(jwks)} keys): fetch the JWKS of the token's day"
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
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if not _finite(exp):
        # NaN compares false with every clock and would never expire; Infinity is no NumericDate either.
        return f"the token has no finite numeric exp (exp is {exp!r:.40})"
    if nbf is not None and not _finite(nbf):
        return f"nbf {nbf!r:.40} is not a finite number"
    if nbf is not None and at < nbf:
        return f"not valid before {int(nbf)} (clock {int(at)})"
    if at >= exp:
        iat = claims.get("iat")
        when = (f"pass --at {int(iat)} (its iat, when NVIDIA issued it; at={int(iat)} in Python)" if _finite(iat)
                else "pass --at with the time it was issued")
        return f"expired at {int(exp)} (clock {int(at)}); to verify an archived answer as of when it was issued, {when}"
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


def _post_json(client: httpx.Client, url: str, body: Any) -> Any:
    try:
        resp = client.post(url, json=body)
    except httpx.HTTPError as exc:
        raise TransportError(f"could not reach NRAS at {url}: {exc}", url=url) from None
    return _json_of(resp, url)


def _json_of(resp: httpx.Response, url: str) -> Any:
    if resp.status_code >= 400:
        raise ServiceError(f"NRAS answered HTTP {resp.status_code} at {url}: {resp.text[:300]}",
                           status=resp.status_code, server_message=resp.text[:1000], url=url)
    try:
        # Not resp.json(): a deeply nested answer would overflow the C stack there (see phalanb._json).
        return _json.loads(resp.content)
    except json.JSONDecodeError:
        raise ServiceError(f"NRAS answered non-JSON at {url}: {resp.text[:200]!r}", status=resp.status_code,
                           url=url) from None


def fetch_nras(request: Mapping[str, Any], *, base_url: str = NRAS_URL, client: httpx.Client | None = None,
               timeout: float = 30.0) -> Any:
    """POST the request to ``{base_url}/v3/attest/gpu`` and return the decoded JSON answer (not verified)."""
    url = base_url.rstrip("/") + ATTEST_PATH
    if client is not None:
        return _post_json(client, url, request)
    with httpx.Client(timeout=timeout) as own:
        return _post_json(own, url, request)


def fetch_jwks(*, base_url: str = NRAS_URL, client: httpx.Client | None = None, timeout: float = 30.0) -> Any:
    """GET ``{base_url}/.well-known/jwks.json`` (the decoded JSON, not yet a :class:`Jwks`)."""
    url = base_url.rstrip("/") + JWKS_PATH

    def get(c: httpx.Client) -> Any:
        try:
            return _json_of(c.get(url), url)
        except httpx.HTTPError as exc:
            raise TransportError(f"could not fetch the NRAS JWKS at {url}: {exc}", url=url) from None

    if client is not None:
        return get(client)
    with httpx.Client(timeout=timeout) as own:
        return get(own)


class JwksCache:
    """NRAS keys by ``kid``, fetched on demand: a miss triggers exactly one refetch (keys rotate daily).

    >>> cache = JwksCache(base_url="http://127.0.0.1:8000/nras")                    # doctest: +SKIP
    >>> jwks = cache.keys_for(parse_nras_response(answer).kids)                     # doctest: +SKIP
    """

    def __init__(self, *, base_url: str = NRAS_URL, client: httpx.Client | None = None,
                 fetch: Callable[[], Any] | None = None):
        self._fetch = fetch or (lambda: fetch_jwks(base_url=base_url, client=client))
        self.jwks = Jwks()
        self.fetches = 0

    def _refresh(self) -> None:
        self.fetches += 1
        self.jwks.add(self._fetch())

    def key(self, kid: str) -> ec.EllipticCurvePublicKey | None:
        if kid not in self.jwks:
            self._refresh()
        return self.jwks.key(kid)

    def keys_for(self, kids: Iterable[str]) -> Jwks:
        """A :class:`Jwks` holding every known key, after at most one refetch for the kids not cached yet."""
        if any(k not in self.jwks for k in kids):
            self._refresh()
        return self.jwks


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


def _jwks_of(value: Jwks | JwksCache | Mapping[str, Any]) -> Jwks:
    if isinstance(value, Jwks):
        return value
    if isinstance(value, JwksCache):
        return value.jwks
    return Jwks(value)


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
                gpu_facts: Sequence[GpuFacts] | None = None) -> NrasVerification:
    """Verify an NRAS answer offline. ``at`` pins the clock (Unix seconds; default now) for archived tokens.

    Malformed answers raise :class:`ParseError`; everything else is a check in the result. A *validly signed
    failure* (tokens good, NRAS said no) yields ``nras.token`` PASS and ``nras.result`` FAIL with NRAS's error.
    """
    resp = response if isinstance(response, NrasResponse) else parse_nras_response(response)
    keys = _jwks_of(jwks)
    clock = time.time() if at is None else float(at)
    # 1. every token: alg, kid, signature, issuer, time window
    errors: dict[str, str] = {}
    for name, tok in resp.tokens():
        why = verify_jwt(tok, keys, at=clock, issuer=issuer)
        if why:
            errors[name] = why
    n = len(resp.gpus)
    token_ev = {"clock": int(clock), "issuer": issuer, "kids": sorted(resp.kids), "tokens": n + 1}
    checks = []
    if errors:
        first = next(iter(errors.items()))
        checks.append(Check("nras.token", Status.FAIL, f"{first[0]} token: {first[1]}"
                            + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
                            {**token_ev, "errors": errors}))
    else:
        checks.append(Check("nras.token", Status.PASS, f"{n + 1} ES384 tokens verify with the JWKS, issuer "
                            f"{issuer}, valid at {int(clock)}", token_ev))
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
        if eat is None or bad:
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
        checks.append(_identity(resp, gpu_facts))
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
