"""E2EE v2 building blocks shared by the client (:mod:`phalanb.aci.e2ee`) and the simulator (:mod:`phalanb.sim.e2ee`).

ACI's E2EE v2 (ACI.md §6, the gateway's ``spec/e2ee-v2.md``) seals single JSON string values, not whole bodies. Each
sealed value is ``hex(ephemeral_public ‖ gcm_nonce(12) ‖ ciphertext ‖ tag(16))`` where the AES-256-GCM key is
``HKDF-SHA256(salt=none, ikm=ECDH(ephemeral, recipient), info=<suite>, 32)`` and the associated data is the JCS of
``{purpose, algo, model, field, nonce, ts}`` (responses add ``id``). Binding the field path, model, request nonce and
timestamp into every tag is what stops a relay from moving a ciphertext to another field or another request.

This module holds what both ends need and nothing that decides trust:

- :class:`Suite` and :data:`SUITES` (X25519 and secp256k1), :func:`suite_for` and :func:`parse_public_key`;
- :func:`seal_field` / :func:`open_field` and the two AAD builders;
- the field-path walkers for requests and responses (which JSON locations the protocol encrypts);
- :func:`serde_loads` / :func:`serde_dumps`: the gateway re-serialises the decrypted request with Rust's
  ``serde_json`` (key order preserved, compact, floats as ``ryu`` prints them), and the receipt's
  ``request.received`` hashes *those* bytes, so a client has to produce them byte for byte.

>>> request_aad("x25519-aes-256-gcm-hkdf-sha256", "m", "prompt", "00" * 32, 1)[:30]
b'{"algo":"x25519-aes-256-gcm-hk'
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .. import _json
from ..errors import E2EEError
from .jcs import canonicalize

__all__ = [
    "E2EE_VERSION", "X25519", "SECP256K1", "SUITES", "REQUEST_PURPOSE", "RESPONSE_PURPOSE", "GCM_NONCE_BYTES",
    "TAG_BYTES", "NONCE_HEX_RE", "Rng", "Suite", "suite_for", "parse_public_key", "deterministic_rng",
    "request_aad", "response_aad", "seal_field", "open_field", "looks_sealed",
    "CHAT", "COMPLETIONS", "EMBEDDINGS", "ENDPOINTS", "endpoint_kind",
    "RequestSlot", "request_slots", "ResponseSlot", "response_slots", "stream_slots",
    "serde_loads", "serde_dumps", "E2EE_HEADERS",
]

E2EE_VERSION = "2"
#: The five request headers of E2EE v2, in the order the spec lists them.
E2EE_HEADERS = ("X-E2EE-Version", "X-Client-Pub-Key", "X-Model-Pub-Key", "X-E2EE-Nonce", "X-E2EE-Timestamp")
X25519 = "x25519-aes-256-gcm-hkdf-sha256"
SECP256K1 = "secp256k1-aes-256-gcm-hkdf-sha256"
REQUEST_PURPOSE = "aci.e2ee.request.v2"
RESPONSE_PURPOSE = "aci.e2ee.response.v2"
GCM_NONCE_BYTES = 12
TAG_BYTES = 16
#: ``X-E2EE-Nonce``: 32 bytes as 64 hex digits, either case, no ``0x`` (spec §7).
NONCE_HEX_RE = re.compile(r"[0-9a-fA-F]{64}")

#: A source of random bytes: ``rng(n)`` returns ``n`` bytes. ``os.urandom`` unless a test passes its own.
Rng = Callable[[int], bytes]

_SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@dataclass(frozen=True)
class Suite:
    """One E2EE v2 cipher suite: its ``algo`` name, HKDF info and the size of its (ephemeral) public keys."""

    algo: str
    hkdf_info: bytes
    public_key_bytes: int  # 32 raw X25519, 65 uncompressed SEC1 secp256k1

    def generate(self, rng: Rng | None = None) -> Any:
        """A fresh private key. With ``rng`` it is drawn from 32 bytes of it (tests, the fixed vectors)."""
        draw = rng or os.urandom
        if self.algo == X25519:
            return X25519PrivateKey.from_private_bytes(_take(draw, 32))
        while True:  # a scalar outside [1, n-1] is drawn again (probability ~2^-128)
            scalar = int.from_bytes(_take(draw, 32), "big")
            if 0 < scalar < _SECP256K1_ORDER:
                return ec.derive_private_key(scalar, ec.SECP256K1())

    def private_from_bytes(self, secret: bytes) -> Any:
        """The private key whose 32-byte secret (X25519 seed / secp256k1 scalar) is ``secret``."""
        if self.algo == X25519:
            return X25519PrivateKey.from_private_bytes(secret)
        return ec.derive_private_key(int.from_bytes(secret, "big"), ec.SECP256K1())

    def public_bytes(self, private_key: Any) -> bytes:
        """The public key as it travels: 32 raw bytes, or 65 bytes ``04 ‖ X ‖ Y``."""
        if self.algo == X25519:
            return private_key.public_key().public_bytes_raw()
        nums = private_key.public_key().public_numbers()
        return b"\x04" + nums.x.to_bytes(32, "big") + nums.y.to_bytes(32, "big")

    def shared_secret(self, private_key: Any, peer_public: bytes) -> bytes:
        """The ECDH output (X25519) or the shared point's x-coordinate (secp256k1)."""
        try:
            if self.algo == X25519:
                return private_key.exchange(X25519PublicKey.from_public_bytes(peer_public))
            point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), peer_public)
            return private_key.exchange(ec.ECDH(), point)
        except ValueError:  # a point off the curve, or an X25519 key of small order (all-zero secret)
            raise E2EEError(f"the {self.algo} public key cannot be used for key agreement "
                            "(not on the curve, or of small order)") from None

    def aes_key(self, shared: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=self.hkdf_info).derive(shared)


SUITES: dict[str, Suite] = {
    X25519: Suite(X25519, b"aci.e2ee.v2.x25519", 32),
    SECP256K1: Suite(SECP256K1, b"aci.e2ee.v2.secp256k1", 65),
}


def suite_for(algo: Any) -> Suite:
    """The suite named ``algo``; anything else (``ecdsa``, ``ed25519``, v1 names, typos) is refused: the spec
    forbids guessing or reinterpreting one suite as another."""
    suite = SUITES.get(algo) if isinstance(algo, str) else None
    if suite is None:
        raise E2EEError(f"{algo!r} is not an E2EE v2 suite; phalanb speaks {X25519!r} and {SECP256K1!r}")
    return suite


def _take(draw: Rng, n: int) -> bytes:
    out = draw(n)
    if not isinstance(out, (bytes, bytearray)) or len(out) != n:
        raise E2EEError(f"the random source returned {len(out) if hasattr(out, '__len__') else out!r} bytes "
                        f"where {n} were asked for")
    return bytes(out)


def deterministic_rng(seed: bytes | str) -> Rng:
    """A reproducible byte stream (SHA-256 in counter mode over ``seed``) for tests and seeded simulators.
    Never for real traffic: anyone who knows the seed can read every field."""
    base = seed.encode() if isinstance(seed, str) else bytes(seed)
    state = {"counter": 0, "buf": b""}

    def draw(n: int) -> bytes:
        while len(state["buf"]) < n:
            state["buf"] += hashlib.sha256(base + state["counter"].to_bytes(8, "big")).digest()
            state["counter"] += 1
        out, state["buf"] = state["buf"][:n], state["buf"][n:]
        return out

    return draw


def parse_public_key(algo: str, value: Any, *, what: str = "public key") -> bytes:
    """``value`` (hex, optional ``0x``) as the suite's public-key bytes. secp256k1 accepts the 64-byte form
    without the ``04`` prefix (the spec makes it the same key) and checks the point is on the curve; the result
    is always the 65-byte ``04 ‖ X ‖ Y``. Raises :class:`E2EEError` naming ``what``."""
    suite = suite_for(algo)
    if not isinstance(value, str):
        raise E2EEError(f"the {what} must be a hex string, not {type(value).__name__}", field=what)
    text = value[2:] if value.startswith("0x") else value
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise E2EEError(f"the {what} {value[:20]!r}… is not hex", field=what) from None
    if not re.fullmatch(r"[0-9a-fA-F]*", text):  # bytes.fromhex skips spaces: refuse them
        raise E2EEError(f"the {what} holds characters that are not hex digits", field=what)
    if suite.algo == X25519:
        if len(raw) != 32:
            raise E2EEError(f"the {what} is {len(raw)} bytes; an X25519 key is 32", field=what)
        return raw
    if len(raw) == 64:
        raw = b"\x04" + raw
    if len(raw) != 65 or raw[0] != 4:
        raise E2EEError(f"the {what} is {len(raw)} bytes; a secp256k1 key is 65 bytes starting 04 "
                        "(or 64 without the 04)", field=what)
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), raw)
    except ValueError:
        raise E2EEError(f"the {what} is not a point on secp256k1", field=what) from None
    return raw


# ---- associated data -------------------------------------------------------------------------------------------

def request_aad(algo: str, model: str, field: str, nonce: str, ts: int) -> bytes:
    """JCS of the request-field AAD (spec §6). ``nonce`` is the ``X-E2EE-Nonce`` string as sent."""
    return canonicalize({"purpose": REQUEST_PURPOSE, "algo": algo, "model": model, "field": field,
                         "nonce": nonce, "ts": int(ts)})


def response_aad(algo: str, model: str, response_id: str, field: str, nonce: str, ts: int) -> bytes:
    """JCS of the response-field AAD: the request's model, nonce and ts, plus the response (or chunk) ``id``."""
    return canonicalize({"purpose": RESPONSE_PURPOSE, "algo": algo, "model": model, "id": response_id,
                         "field": field, "nonce": nonce, "ts": int(ts)})


# ---- one field --------------------------------------------------------------------------------------------------

def seal_field(suite: Suite, recipient_public: bytes, plaintext: bytes, aad: bytes, *, rng: Rng | None = None) -> str:
    """Encrypt one value to ``recipient_public``: lowercase hex of ephemeral ‖ nonce ‖ ciphertext ‖ tag.
    A fresh ephemeral key (32 bytes of ``rng``) and GCM nonce (the next 12) per call."""
    draw = rng or os.urandom
    ephemeral = suite.generate(draw)
    nonce = _take(draw, GCM_NONCE_BYTES)
    key = suite.aes_key(suite.shared_secret(ephemeral, recipient_public))
    sealed = AESGCM(key).encrypt(nonce, plaintext, aad)
    return (suite.public_bytes(ephemeral) + nonce + sealed).hex()


def _split(suite: Suite, value: Any, field: str) -> tuple[bytes, bytes, bytes]:
    if not isinstance(value, str):
        raise E2EEError(f"{field} is a {type(value).__name__}, not an encrypted hex string", field=field)
    if len(value) % 2 or not re.fullmatch(r"[0-9a-fA-F]*", value):
        raise E2EEError(f"{field} is not encrypted: its value is not hex", field=field)
    raw = bytes.fromhex(value)
    least = suite.public_key_bytes + GCM_NONCE_BYTES + TAG_BYTES
    if len(raw) < least:
        raise E2EEError(f"{field} is {len(raw)} bytes; an encrypted value is at least {least} "
                        f"(ephemeral key, nonce, tag)", field=field)
    k, n = suite.public_key_bytes, suite.public_key_bytes + GCM_NONCE_BYTES
    return raw[:k], raw[k:n], raw[n:]


def looks_sealed(suite: Suite, value: Any) -> bool:
    """True when ``value`` has the shape of a sealed field for ``suite`` (hex, long enough, a valid ephemeral
    point). Shape only: whether it opens needs the recipient's private key."""
    try:
        eph, _, _ = _split(suite, value, "value")
        if suite.algo == SECP256K1:
            parse_public_key(SECP256K1, eph.hex())
    except E2EEError:
        return False
    return True


def open_field(suite: Suite, private_key: Any, value: Any, aad: bytes, *, field: str) -> bytes:
    """Decrypt one sealed value. Every failure (not hex, too short, bad point, wrong key, changed AAD or
    ciphertext) is an :class:`E2EEError` naming ``field``."""
    eph, nonce, sealed = _split(suite, value, field)
    if suite.algo == SECP256K1 and eph[0] != 4:
        raise E2EEError(f"{field}: the ephemeral key is not an uncompressed secp256k1 point", field=field)
    try:
        shared = suite.shared_secret(private_key, eph)
    except E2EEError as exc:
        raise E2EEError(f"{field}: {exc}", field=field) from None
    try:
        return AESGCM(suite.aes_key(shared)).decrypt(nonce, sealed, aad)
    except InvalidTag:
        raise E2EEError(f"{field} failed authentication: wrong key, or the ciphertext or its context (model, "
                        "nonce, timestamp, field path, response id) was changed", field=field) from None


# ---- which fields: endpoints and field paths --------------------------------------------------------------------

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
EMBEDDINGS = "/v1/embeddings"
#: The endpoints whose field shapes E2EE v2 defines; anything else (``/v1/responses``, ``/v1/messages``) is refused.
ENDPOINTS = (CHAT, COMPLETIONS, EMBEDDINGS)


def endpoint_kind(path: str) -> str:
    """``path`` (query string ignored) as one of :data:`ENDPOINTS`, or :class:`E2EEError`."""
    bare = path.split("?", 1)[0].rstrip("/") if isinstance(path, str) else path
    if bare not in ENDPOINTS:
        raise E2EEError(f"E2EE v2 defines no encrypted fields for {path!r}; it covers {', '.join(ENDPOINTS)}")
    return bare


@dataclass(frozen=True)
class RequestSlot:
    """One request location that holds (or must hold) a sealed value.

    ``container[key]`` is the value; ``whole_content`` marks ``messages.{m}.content`` whose plaintext is restored
    as structured content when it parses as a JSON array.
    """

    path: str
    container: Any
    key: Any
    whole_content: bool = False


def request_slots(body: Any, endpoint: str) -> Iterator[RequestSlot]:
    """Every encryptable location of a request body, as the gateway walks it (``e2ee_crypto.rs``): chat
    ``messages.{m}.content`` (a string), or per part ``.text`` / ``.image_url.url`` / ``.input_audio.data`` by
    the part's ``type``; completions ``prompt`` / ``prompt.{i}``; embeddings ``input`` / ``input.{i}``. Only string
    values are yielded; non-strings (token ids, null content) pass through by design."""
    if not isinstance(body, dict):
        return
    kind = endpoint_kind(endpoint)
    if kind in (COMPLETIONS, EMBEDDINGS):
        name = "prompt" if kind == COMPLETIONS else "input"
        value = body.get(name)
        if isinstance(value, str):
            yield RequestSlot(name, body, name)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, str):
                    yield RequestSlot(f"{name}.{i}", value, i)
        return
    messages = body.get("messages")
    if not isinstance(messages, list):
        return
    for m, message in enumerate(messages):
        if not isinstance(message, dict) or "content" not in message:
            continue
        content = message["content"]
        if isinstance(content, str):
            yield RequestSlot(f"messages.{m}.content", message, "content", whole_content=True)
        elif isinstance(content, list):
            for c, part in enumerate(content):
                if not isinstance(part, dict):
                    continue
                kind_ = part.get("type")
                base = f"messages.{m}.content.{c}"
                if kind_ == "text" and isinstance(part.get("text"), str):
                    yield RequestSlot(f"{base}.text", part, "text")
                elif kind_ in ("image_url", "input_audio"):
                    inner_key = "url" if kind_ == "image_url" else "data"
                    inner = part.get(kind_)
                    if isinstance(inner, dict) and isinstance(inner.get(inner_key), str):
                        yield RequestSlot(f"{base}.{kind_}.{inner_key}", inner, inner_key)


@dataclass(frozen=True)
class ResponseSlot:
    """One response location: ``container[key]`` at field path ``path``; ``json_value`` for embeddings, whose
    plaintext is the compact JSON of the value (a float array or a base64 string)."""

    path: str
    container: Any
    key: str
    json_value: bool = False


def _entry_index(entry: Any, position: int) -> int:
    """The field path uses the entry's own ``index`` member (a non-negative integer), else its position."""
    index = entry.get("index") if isinstance(entry, dict) else None
    if isinstance(index, int) and not isinstance(index, bool) and index >= 0:
        return index
    return position


_CHAT_MESSAGE_FIELDS = ("content", "reasoning", "reasoning_content")


def response_slots(body: Any, endpoint: str) -> Iterator[ResponseSlot]:
    """Every location of a buffered response that the service must encrypt, whether or not a value is there
    (the caller decides what a missing or null value means)."""
    if not isinstance(body, dict):
        return
    kind = endpoint_kind(endpoint)
    if kind == EMBEDDINGS:
        data = body.get("data")
        for pos, entry in enumerate(data if isinstance(data, list) else ()):
            if isinstance(entry, dict):
                yield ResponseSlot(f"data.{_entry_index(entry, pos)}.embedding", entry, "embedding", True)
        return
    choices = body.get("choices")
    for pos, choice in enumerate(choices if isinstance(choices, list) else ()):
        if not isinstance(choice, dict):
            continue
        i = _entry_index(choice, pos)
        if kind == COMPLETIONS:
            yield ResponseSlot(f"choices.{i}.text", choice, "text")
            continue
        message = choice.get("message")
        if isinstance(message, dict):
            for name in _CHAT_MESSAGE_FIELDS:
                yield ResponseSlot(f"choices.{i}.message.{name}", message, name)
            audio = message.get("audio")
            if isinstance(audio, dict):
                yield ResponseSlot(f"choices.{i}.message.audio.data", audio, "data")


def stream_slots(chunk: Any, endpoint: str) -> Iterator[ResponseSlot]:
    """Every location of one streamed chunk that the service must encrypt (embeddings never stream)."""
    if not isinstance(chunk, dict):
        return
    kind = endpoint_kind(endpoint)
    if kind == EMBEDDINGS:
        raise E2EEError("embeddings are not streamed under E2EE v2")
    choices = chunk.get("choices")
    for pos, choice in enumerate(choices if isinstance(choices, list) else ()):
        if not isinstance(choice, dict):
            continue
        i = _entry_index(choice, pos)
        if kind == COMPLETIONS:
            yield ResponseSlot(f"choices.{i}.text", choice, "text")
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict):
            for name in _CHAT_MESSAGE_FIELDS:
                yield ResponseSlot(f"choices.{i}.delta.{name}", delta, name)


# ---- serde_json's JSON: what the gateway parses and re-emits ------------------------------------------------------

_U64_MAX = 2**64 - 1
_I64_MIN = -(2**63)


class _Reject(Exception):
    def __init__(self, why: str):
        self.why = why


def _serde_int(text: str) -> int | float:
    # serde_json reads an integer literal as u64 / i64 when it fits, "-0" as the float -0.0, and anything wider
    # as an f64; all three re-serialise differently, so the parse must keep the distinction.
    value = int(text)
    if text.startswith("-"):
        if value == 0:
            return -0.0
        if value >= _I64_MIN:
            return value
    elif value <= _U64_MAX:
        return value
    as_float = float(value)
    if not math.isfinite(as_float):
        raise _Reject(f"number {text[:20]}… is out of range")
    return as_float


def _serde_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Reject(f"number {text[:20]} is out of range")
    return value


def serde_loads(data: bytes | str, *, what: str = "body") -> Any:
    """Parse JSON as the gateway's ``serde_json`` (with ``preserve_order``) does — member order kept, integers stay
    integers (u64/i64 range), ``-0`` and wider integers become floats — under phalanb's one reading rule
    (:func:`phalanb._json.loads`): a repeated member (serde_json would keep its last value, so a reply could carry
    the answer in clear beside a sealed copy), NaN/Infinity and unpaired surrogate escapes are refused.
    Raises :class:`E2EEError` naming ``what`` and the offset."""
    try:
        return _json.loads(data, field=what, parse_int=_serde_int, parse_float=_serde_float)
    except _Reject as exc:
        raise E2EEError(f"the {what} is not JSON the gateway accepts: {exc.why}", field=what) from None
    except _json.JSONRefused as exc:
        raise E2EEError(f"the {what} is not JSON phalanb reads ({exc.msg} at offset {exc.pos})",
                        field=what) from None


def _ryu(value: float) -> str:
    """An f64 as serde_json prints it (the ``ryu`` crate): shortest round-trip digits, ``1.0`` not ``1``,
    plain notation for decimal exponents -5 < k ≤ 16, else ``1e16`` / ``1.5e-7``."""
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign = "-" if value < 0 else ""
    m = re.fullmatch(r"(\d+)(?:\.(\d+))?(?:e([+-]\d+))?", repr(abs(value)))
    assert m is not None  # repr of a finite positive float always has this shape
    whole, frac, exp = m.group(1), m.group(2) or "", int(m.group(3) or 0)
    digits = (whole + frac).lstrip("0")
    k = exp - len(frac)
    stripped = digits.rstrip("0")
    k += len(digits) - len(stripped)
    digits = stripped
    n = len(digits)
    kk = n + k  # 10^(kk-1) <= value < 10^kk
    if 0 <= k and kk <= 16:
        body = digits + "0" * k + ".0"
    elif 0 < kk <= 16:
        body = digits[:kk] + "." + digits[kk:]
    elif -5 < kk <= 0:
        body = "0." + "0" * (-kk) + digits
    elif n == 1:
        body = f"{digits}e{kk - 1}"
    else:
        body = f"{digits[0]}.{digits[1:]}e{kk - 1}"
    return sign + body


def _dump(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        # Python's escaping with ensure_ascii=False is serde_json's: " \\ \b \f \n \r \t, other C0 as \u00xx.
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, int):
        out.append(str(int(value)))
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise E2EEError(f"{value!r} has no JSON form")
        out.append(_ryu(value))
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _dump(item, out)
        out.append("]")
    elif isinstance(value, dict):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            if not isinstance(key, str):
                raise E2EEError(f"member name {key!r} is not a string")
            if i:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _dump(item, out)
        out.append("}")
    else:
        raise E2EEError(f"a {type(value).__name__} has no JSON form")


def serde_dumps(value: Any) -> bytes:
    """``serde_json::to_vec``: compact, member order as given, non-ASCII raw UTF-8, floats as ``ryu`` prints them.

    >>> serde_dumps({"b": 1.0, "a": [1e16, 0.0001, 1e-7, "é"]})
    b'{"b":1.0,"a":[1e16,0.0001,1e-7,"\\xc3\\xa9"]}'
    """
    out: list[str] = []
    _dump(value, out)
    try:
        return "".join(out).encode("utf-8")
    except UnicodeEncodeError:
        raise E2EEError("a string holds a character with no UTF-8 form (an unpaired surrogate)") from None
