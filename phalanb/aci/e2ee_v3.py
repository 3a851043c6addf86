"""ACI E2EE v3 (ACI-v3.md §8): the whole request body sealed to an attested X25519 key, the reply sealed back.

The rule, byte for byte::

    context  = "aci.e2ee.v3.request" | "aci.e2ee.v3.response"
    shared   = X25519(ephemeral_priv, recipient_pub)
    key      = HKDF-SHA256(salt absent, ikm=shared, info=context, L=32)
    aad_req  = context || 0x00 || model || 0x00 || client_key_hex (lower case)
    aad_resp = context || 0x00 || model
    unit     = eph_pub(32) || gcm_nonce(12) || AES-256-GCM ciphertext || tag(16);   sealed_b64 = base64(unit)

Request: headers ``X-E2EE-Version: 3``, ``X-Client-Pub-Key``, ``X-Model-Pub-Key``; body
``{"model":"<id>","sealed_b64":"…"}`` whose plaintext is the entire original body (what the receipt's
``request.received`` hashes). Buffered reply ``{"sealed_b64":"…"}``; a stream keeps its framing plaintext and seals
each event's data as ``{"sealed_b64":"…"}``, ``data: [DONE]`` plaintext (``response.returned`` hashes those wire
bytes).

The client side plugs into the wire through :class:`phalanb.wire.encryption.Encryption`:
:meth:`phalanb.aci.AttestedE2EEKey.seal` of a key from a v3 keyset returns a :class:`SealedV3Request`, whose
:class:`V3ReplyOpener` records an :class:`E2EEv3Record` on the exchange. The record keeps, per sealed reply unit,
the AES key that opened it (one unit only, never the client private key), so an auditor re-checks every reply tag
offline; :func:`e2ee_v3_checks` makes the ``e2ee.*`` checks from it.

>>> unit = seal_unit(bytes.fromhex("5dfedd3b6bd47f6fa28ee15d969d5bb0ea53774d488bdaf9df1c6e0124b3ef22"), b"hi",
...                  request_aad("demo-model", "ab" * 32), CONTEXT_REQUEST)
>>> len(unit) - len(b"hi")
60
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .. import _json
from ..errors import E2EEError, ParseError
from ..verdict import Check, Status
from ..wire.sse import SSEDecoder
from .e2ee_record import KeyHeaders

__all__ = ["VERSION", "SUITE", "CONTEXT_REQUEST", "CONTEXT_RESPONSE", "HEADERS", "request_aad", "response_aad",
           "derive_key", "seal_unit", "open_unit", "open_unit_with_key", "unit_key", "seal_request", "SealedV3Request",
           "V3ReplyOpener", "E2EEv3Record", "e2ee_v3_checks", "E2EE_V3_CHECK_IDS", "reply_units"]

VERSION = "3"
SUITE = "x25519-aes-256-gcm-hkdf-sha256"
CONTEXT_REQUEST = b"aci.e2ee.v3.request"
CONTEXT_RESPONSE = b"aci.e2ee.v3.response"
#: The three request headers of E2EE v3 (no nonce, no timestamp: there is no replay cache).
HEADERS = ("X-E2EE-Version", "X-Client-Pub-Key", "X-Model-Pub-Key")
E2EE_V3_CHECK_IDS = ("e2ee.model_key", "e2ee.request_sealed", "e2ee.open")
_NONCE_BYTES, _TAG_BYTES, _KEY_BYTES = 12, 16, 32


# -- the primitive ------------------------------------------------------------------------------------------------

def request_aad(model: str, client_key_hex: str) -> bytes:
    """``context || 0x00 || model || 0x00 || client_key_hex``; the reference lower-cases the client key first."""
    return CONTEXT_REQUEST + b"\0" + model.encode("utf-8") + b"\0" + client_key_hex.lower().encode("ascii")


def response_aad(model: str) -> bytes:
    return CONTEXT_RESPONSE + b"\0" + model.encode("utf-8")


def derive_key(shared: bytes, context: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=context).derive(shared)


def _raw_public(private: X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _x25519_public(raw: bytes, what: str) -> X25519PublicKey:
    if len(raw) != _KEY_BYTES:
        raise E2EEError(f"{what} is {len(raw)} bytes; an X25519 key is 32", field=what)
    return X25519PublicKey.from_public_bytes(raw)


def seal_unit(recipient_public: bytes, plaintext: bytes, aad: bytes, context: bytes, *,
              ephemeral: X25519PrivateKey | None = None, gcm_nonce: bytes | None = None) -> bytes:
    """One sealed unit to ``recipient_public`` (a fresh ephemeral key and GCM nonce unless given: vectors only)."""
    eph = ephemeral or X25519PrivateKey.generate()
    nonce = gcm_nonce if gcm_nonce is not None else os.urandom(_NONCE_BYTES)
    try:
        shared = eph.exchange(_x25519_public(recipient_public, "recipient key"))
    except ValueError:
        raise E2EEError("the recipient key is a low-order X25519 point (the shared secret would be zero)") from None
    key = derive_key(shared, context)
    return _raw_public(eph) + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _split(unit: bytes) -> tuple[bytes, bytes, bytes]:
    if len(unit) < _KEY_BYTES + _NONCE_BYTES + _TAG_BYTES:
        raise E2EEError(f"a sealed unit is at least {_KEY_BYTES + _NONCE_BYTES + _TAG_BYTES} bytes "
                        f"(ephemeral key, GCM nonce, tag); this one is {len(unit)}", field="sealed_b64")
    return unit[:_KEY_BYTES], unit[_KEY_BYTES:_KEY_BYTES + _NONCE_BYTES], unit[_KEY_BYTES + _NONCE_BYTES:]


def unit_key(private: X25519PrivateKey, unit: bytes, context: bytes) -> bytes:
    """The AES-256-GCM key of one unit, from the recipient's private key and the unit's ephemeral key."""
    eph, _, _ = _split(unit)
    try:
        shared = private.exchange(_x25519_public(eph, "ephemeral key"))
    except ValueError:
        raise E2EEError("the unit's ephemeral key is a low-order X25519 point", field="sealed_b64") from None
    return derive_key(shared, context)


def open_unit_with_key(key: bytes, unit: bytes, aad: bytes) -> bytes:
    _, nonce, ct = _split(unit)
    try:
        return AESGCM(key).decrypt(nonce, ct, aad)
    except InvalidTag:
        raise E2EEError("the sealed unit does not authenticate under its AAD (another model, context or client "
                        "key, or altered bytes)", field="sealed_b64") from None


def open_unit(private: X25519PrivateKey, unit: bytes, aad: bytes, context: bytes) -> bytes:
    return open_unit_with_key(unit_key(private, unit, context), unit, aad)


def _b64(text: Any, what: str) -> bytes:
    from .v3 import strict_b64decode

    try:
        return strict_b64decode(text, field=what)
    except ParseError as exc:
        raise E2EEError(str(exc), field=what) from None


def envelope_unit(data: bytes | str, *, what: str) -> bytes:
    """The unit inside ``{"sealed_b64":"…"}`` (a reply body or one event's data)."""
    try:
        doc = _json.loads_signed(data, what=what)
    except ParseError as exc:
        raise E2EEError(f"the sealed envelope is not JSON: {exc}", field=what) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("sealed_b64"), str):
        raise E2EEError("a sealed envelope is {\"sealed_b64\": …}; this one is not (an unsealed reply?)", field=what)
    return _b64(doc["sealed_b64"], f"{what}.sealed_b64")


def reply_units(wire: bytes, *, stream: bool) -> list[bytes]:
    """The sealed units of a reply, in wire order: the body's, or each event's (``[DONE]`` and comments skipped)."""
    if not stream:
        return [envelope_unit(wire, what="response")]
    units = []
    dec = SSEDecoder()
    for ev in dec.feed(bytes(wire)):
        if not ev.done:
            units.append(envelope_unit(ev.data, what=f"response event at byte {ev.offset}"))
    if dec.close().strip():
        raise E2EEError("the sealed stream ends in the middle of an event", field="response")
    return units


def _delta(event_plain: bytes) -> str:
    try:
        doc = _json.loads(event_plain)
        return "".join(str(((c.get("delta") or {}).get("content")) or "") for c in doc.get("choices") or []
                       if isinstance(c, dict) and c.get("index", 0) == 0)
    except (json.JSONDecodeError, AttributeError, TypeError):
        return ""


def _message(body_plain: bytes) -> str:
    try:
        doc = _json.loads(body_plain)
        return str(((doc.get("choices") or [{}])[0].get("message") or {}).get("content") or "")
    except (json.JSONDecodeError, AttributeError, TypeError, IndexError):
        return ""


# -- the client ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True, repr=False)
class SealedV3Request:
    """One sealed request: send ``body`` with ``headers``; ``plaintext`` is what ``request.received`` hashes."""

    body: bytes
    headers: dict[str, str]
    plaintext: bytes
    model: str
    endpoint: str
    model_key: Any   # AttestedE2EEKey
    client_public_key: str
    _client_private: X25519PrivateKey = field(compare=False, default=None)  # type: ignore[assignment]

    @property
    def algo(self) -> str:
        return SUITE

    def opener(self, *, stream: bool, on_text: Callable[[str], None] | None = None) -> "V3ReplyOpener":
        return V3ReplyOpener(self, stream=stream, on_text=on_text)

    def __repr__(self) -> str:
        how = "attested" if self.model_key.attested else "UNVERIFIED"
        return f"<SealedV3Request model={self.model!r} {len(self.plaintext)} bytes sealed key={how}>"


def seal_request(payload: Mapping[str, Any] | bytes, *, model_key: Any, endpoint: str = "/v1/chat/completions",
                 client_private: X25519PrivateKey | None = None) -> SealedV3Request:
    """Seal a whole request body to ``model_key`` (an X25519 :class:`~phalanb.aci.AttestedE2EEKey` of a v3
    keyset). ``payload``: a JSON object (encoded compactly) or the exact bytes to seal."""
    if model_key.algo != SUITE:
        raise E2EEError(f"E2EE v3 seals to an X25519 key ({SUITE}); this one is {model_key.algo}")
    # Compact UTF-8, as the wire encodes a plaintext body: these exact bytes are what request.received hashes.
    plaintext = bytes(payload) if isinstance(payload, (bytes, bytearray)) else json.dumps(
        dict(payload), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    try:
        model = _json.loads(plaintext).get("model")
    except (json.JSONDecodeError, AttributeError):
        model = None
    if not isinstance(model, str):
        raise E2EEError("an E2EE v3 request names its model: the envelope's model is bound into the AAD",
                        field="model")
    private = client_private or X25519PrivateKey.generate()
    client_hex = _raw_public(private).hex()
    unit = seal_unit(model_key.public_key, plaintext, request_aad(model, client_hex), CONTEXT_REQUEST)
    body = json.dumps({"model": model, "sealed_b64": base64.b64encode(unit).decode("ascii")},
                      separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    headers = {"X-E2EE-Version": VERSION, "X-Client-Pub-Key": client_hex, "X-Model-Pub-Key": model_key.public_key_hex}
    return SealedV3Request(body=body, headers=headers, plaintext=plaintext, model=model, endpoint=endpoint,
                           model_key=model_key, client_public_key=client_hex, _client_private=private)


@dataclass
class E2EEv3Record(KeyHeaders):
    """What an E2EE v3 exchange needs to be re-verified offline; never a private key. ``restored_request`` is the
    plaintext the client sealed (what ``request.received`` hashes); ``reply``: the opened body, or the opened
    event payloads of a stream; ``reply_keys``: hex AES key per sealed reply unit, in wire order."""

    headers: dict[str, str]
    restored_request: bytes
    model: str
    endpoint: str
    stream: bool
    key_id: str | None = None
    key_attested: bool = False
    keyset_digest: str | None = None
    reply: Any = None
    reply_keys: tuple[str, ...] = field(default=(), repr=False)
    reply_error: str | None = None
    version: int = 3
    algo: str = SUITE

    @property
    def text(self) -> str:
        if self.reply is None:
            return ""
        if self.stream:
            return "".join(_delta(p.encode("utf-8")) for p in self.reply)
        return _message(str(self.reply).encode("utf-8"))

    def to_dict(self) -> dict[str, Any]:
        return {"version": 3, "algo": SUITE, "key_id": self.key_id, "headers": dict(self.headers),
                "restored_request": self.restored_request.decode("utf-8"), "model": self.model,
                "endpoint": self.endpoint, "stream": self.stream, "key_attested": self.key_attested,
                "keyset_digest": self.keyset_digest, "reply": self.reply, "reply_keys": list(self.reply_keys),
                "reply_error": self.reply_error}

    @classmethod
    def from_dict(cls, d: Any) -> "E2EEv3Record":
        w = "exchange.e2ee"
        if not isinstance(d, Mapping) or d.get("version") != 3:
            raise ParseError("an E2EE v3 record is an object with version 3", field=w)
        if "client_private_key" in d:
            raise ParseError("an E2EE record must not carry a client private key", field=f"{w}.client_private_key")
        headers = d.get("headers")
        if not isinstance(headers, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                       for k, v in headers.items()):
            raise ParseError("must be an object of header strings", field=f"{w}.headers")
        missing = [h for h in HEADERS if h not in headers]
        if missing:
            raise ParseError(f"lacks {', '.join(missing)}", field=f"{w}.headers")
        for name in ("restored_request", "model", "endpoint"):
            if not isinstance(d.get(name), str):
                raise ParseError("must be a string", field=f"{w}.{name}")
        keys = d.get("reply_keys") or []
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ParseError("must be a list of hex strings", field=f"{w}.reply_keys")
        reply = d.get("reply")
        stream = d.get("stream") is True
        if reply is not None and not (isinstance(reply, list) and all(isinstance(x, str) for x in reply)
                                      if stream else isinstance(reply, str)):
            raise ParseError("must be the opened body (text) or the opened event payloads (list of text)",
                             field=f"{w}.reply")
        return cls(headers=dict(headers), restored_request=d["restored_request"].encode("utf-8"), model=d["model"],
                   endpoint=d["endpoint"], stream=stream, key_id=d.get("key_id") if isinstance(d.get("key_id"), str)
                   else None, key_attested=d.get("key_attested") is True,
                   keyset_digest=d.get("keyset_digest") if isinstance(d.get("keyset_digest"), str) else None,
                   reply=reply, reply_keys=tuple(keys),
                   reply_error=d.get("reply_error") if isinstance(d.get("reply_error"), str) else None)


class V3ReplyOpener:
    """The wire's :class:`~phalanb.wire.encryption.ReplyOpener` for an E2EE v3 reply: opens each sealed event as it
    streams (plaintext to ``on_text``) or the body at the end, then records the exchange. A unit that does not
    open is raised once the exact bytes are recorded (they are wanted for the receipt either way)."""

    def __init__(self, request: SealedV3Request, *, stream: bool, on_text: Callable[[str], None] | None):
        self.request = request
        self.stream = stream
        self.on_text = on_text
        self.decoder = SSEDecoder() if stream else None
        self.events: list[str] = []
        self.keys: list[str] = []
        self.error: E2EEError | None = None

    def _open(self, unit: bytes) -> bytes:
        key = unit_key(self.request._client_private, unit, CONTEXT_RESPONSE)
        plain = open_unit_with_key(key, unit, response_aad(self.request.model))
        self.keys.append(key.hex())
        return plain

    def feed(self, chunk: bytes) -> None:
        if self.error is not None or self.decoder is None:
            return
        try:
            for ev in self.decoder.feed(chunk):
                if ev.done:
                    continue
                plain = self._open(envelope_unit(ev.data, what=f"response event at byte {ev.offset}"))
                self.events.append(plain.decode("utf-8"))
                piece = _delta(plain)
                if piece and self.on_text is not None:
                    self.on_text(piece)
        except (E2EEError, ParseError, UnicodeDecodeError) as exc:
            self.error = exc if isinstance(exc, E2EEError) else E2EEError(str(exc))

    def finish(self, exchange: Any) -> None:
        reply: Any = None
        if self.error is None:
            try:
                if self.decoder is not None:
                    if self.decoder.close().strip():
                        raise E2EEError("the sealed stream ends in the middle of an event", field="response")
                    reply = list(self.events)
                else:
                    plain = self._open(envelope_unit(exchange.response_bytes, what="response"))
                    reply = plain.decode("utf-8")
                    if self.on_text is not None and _message(plain):
                        self.on_text(_message(plain))
            except (E2EEError, UnicodeDecodeError) as exc:
                self.error = exc if isinstance(exc, E2EEError) else E2EEError(str(exc))
        req = self.request
        exchange.e2ee = E2EEv3Record(headers=dict(req.headers), restored_request=req.plaintext, model=req.model,
                                     endpoint=req.endpoint, stream=self.stream, key_id=req.model_key.key_id,
                                     key_attested=req.model_key.attested, keyset_digest=req.model_key.keyset_digest,
                                     reply=None if self.error else reply,
                                     reply_keys=() if self.error else tuple(self.keys),
                                     reply_error=str(self.error) if self.error else None)
        exchange.text = exchange.e2ee.text
        if self.error is not None:
            err = E2EEError(f"the E2EE v3 reply could not be opened: {self.error} (the exact bytes are kept in the "
                            "exception's .partial exchange)", field=self.error.field)
            err.partial = exchange  # type: ignore[attr-defined]
            raise err


# -- the checks ---------------------------------------------------------------------------------------------------

def _model_key_check(record: E2EEv3Record, keyset: Any) -> Check:
    cid = "e2ee.model_key"
    ev: dict[str, Any] = {"X-Model-Pub-Key": record.model_public_key, "key_id": record.key_id,
                          "keyset_digest": getattr(keyset, "digest", None)}
    if not record.key_attested:
        return Check(cid, Status.SKIPPED, "the request was sealed to a key given with UNVERIFIED_override: nothing "
                     "showed its private key lives in the attested TEE", ev)
    if keyset is None:
        return Check(cid, Status.SKIPPED, "no keyset was established (the report did not verify): the key the "
                     "request was sealed to is not shown to be attested", ev)
    if getattr(keyset, "shape", None) != "v3":
        return Check(cid, Status.FAIL, f"an E2EE v3 exchange judged against a {keyset.shape}-shape keyset: the "
                     "shapes are never mixed", ev)
    for entry in keyset.e2ee_keys:
        # Compared verbatim, as the reference compares X-Model-Pub-Key (ACI-v3.md §8).
        if entry.get("algo") == SUITE and entry.get("public_key") == record.model_public_key:
            ev["listed_key_id"] = entry.get("key_id")
            return Check(cid, Status.PASS, f"the request was sealed to {entry.get('key_id')}, an X25519 key of the "
                         "verified v3 keyset", ev)
    return Check(cid, Status.FAIL, "the request was sealed to a key the verified keyset does not list as X25519: "
                 "whoever holds it is not shown to be the attested gateway", ev)


def _request_check(record: E2EEv3Record, request_bytes: bytes | None) -> Check:
    cid = "e2ee.request_sealed"
    h = record.headers
    ev: dict[str, Any] = {"headers": {k: h.get(k) for k in HEADERS}}
    if request_bytes is None:
        return Check(cid, Status.SKIPPED, "the exact request bytes sent were not given", ev)
    problems = []
    if h.get("X-E2EE-Version", "").strip() != VERSION:
        problems.append(f"X-E2EE-Version is {h.get('X-E2EE-Version')!r}, not 3")
    for name in ("X-Client-Pub-Key", "X-Model-Pub-Key"):
        v = h.get(name, "")
        if len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
            problems.append(f"{name} is not 32 bytes of lowercase hex")
    try:
        doc = _json.loads_signed(request_bytes, what="request")
        if not isinstance(doc, dict) or sorted(doc) != ["model", "sealed_b64"]:
            problems.append("the wire body is not exactly {model, sealed_b64}: something went out unsealed")
        else:
            unit = _b64(doc["sealed_b64"], "request.sealed_b64")
            _split(unit)
            ev.update(sealed_bytes=len(unit), envelope_model=doc["model"])
            if doc["model"] != record.model:
                problems.append(f"the envelope's model {doc['model']!r} is not the sealed request's {record.model!r}")
            if len(unit) != _KEY_BYTES + _NONCE_BYTES + len(record.restored_request) + _TAG_BYTES:
                problems.append("the sealed unit's length does not fit the recorded plaintext")
        plain_model = _json.loads(record.restored_request).get("model")
        if plain_model != record.model:
            problems.append("the recorded plaintext names another model than the envelope")
    except (ParseError, E2EEError, json.JSONDecodeError, AttributeError) as exc:
        problems.append(str(exc))
    if problems:
        return Check(cid, Status.FAIL, "; ".join(problems), ev)
    return Check(cid, Status.PASS, "the whole request body left sealed ({model, sealed_b64}, 3 headers, lowercase "
                 "keys); its plaintext is the body request.received hashes (opening it needs the service's key)",
                 ev)


def _open_check(record: E2EEv3Record, response_bytes: bytes | None, response_hash: Check | None) -> Check:
    cid = "e2ee.open"
    ev: dict[str, Any] = {"units": len(record.reply_keys)}
    if record.reply_error is not None:
        return Check(cid, Status.FAIL, f"the reply did not open when it arrived: {record.reply_error}", ev)
    if response_bytes is None:
        return Check(cid, Status.SKIPPED, "the exact reply bytes were not given", ev)
    try:
        units = reply_units(response_bytes, stream=record.stream)
        if len(units) != len(record.reply_keys):
            raise E2EEError(f"the reply holds {len(units)} sealed unit(s) but {len(record.reply_keys)} key(s) were "
                            "recorded")
        plains = [open_unit_with_key(bytes.fromhex(k), u, response_aad(record.model)).decode("utf-8")
                  for k, u in zip(record.reply_keys, units)]
    except (E2EEError, ValueError) as exc:
        return Check(cid, Status.FAIL, str(exc), ev)
    opened = plains if record.stream else (plains[0] if plains else None)
    if opened != record.reply:
        return Check(cid, Status.FAIL, "the recorded reply is not what the sealed reply bytes open to", ev)
    if response_hash is None or response_hash.status is not Status.PASS:
        why = ("no receipt check was given" if response_hash is None else
               "the signed receipt does not cover these bytes (receipt.response_hash did not pass)")
        return Check(cid, Status.SKIPPED, f"{len(units)} sealed unit(s) open under the response AAD with the "
                     f"recorded keys, but {why}, so the ciphertext is not shown to be the gateway's", ev)
    return Check(cid, Status.PASS, f"{len(units)} sealed reply unit(s) authenticate under the response AAD (context, "
                 "model) with the keys derived when they arrived, over the exact bytes the signed receipt covers",
                 ev)


def e2ee_v3_checks(record: E2EEv3Record, *, keyset: Any, request_bytes: bytes | None, response_bytes: bytes | None,
                   response_hash: Check | None = None) -> list[Check]:
    """``e2ee.model_key``, ``e2ee.request_sealed``, ``e2ee.open`` for one E2EE v3 exchange (ACI-v3.md §10, §7.4)."""
    return [_model_key_check(record, keyset), _request_check(record, request_bytes),
            _open_check(record, response_bytes, response_hash)]
