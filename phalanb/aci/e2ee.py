"""ACI E2EE v2, the client side: encrypt a prompt to an *attested* service key, open the sealed reply, and say in
three checks what held (ACI.md §6). No network here: the caller sends :attr:`EncryptedRequest.body` with
:attr:`EncryptedRequest.headers` and hands back the reply bytes.

Verify before you send: the only key :func:`prepare_request` encrypts to is an :class:`AttestedE2EEKey`, which comes
from a keyset phalanb established (:meth:`AttestedE2EEKey.from_established_keyset`) or from the loudly named
:meth:`AttestedE2EEKey.UNVERIFIED_override`, whose use every result remembers and :func:`check_key_attested`
reports.

>>> from phalanb.aci.verify import EstablishedKeyset
>>> ks = EstablishedKeyset(digest="sha256:…", keyset={"e2ee_public_keys": [{"key_id": "e2ee-1",
...     "algo": "x25519-aes-256-gcm-hkdf-sha256",
...     "public_key": "5dfedd3b6bd47f6fa28ee15d969d5bb0ea53774d488bdaf9df1c6e0124b3ef22"}]})  # by hand: tests only
>>> key = AttestedE2EEKey.from_established_keyset(ks)   # normally: verify_aci_report(...).keyset
>>> req = prepare_request({"model": "demo-model", "messages": [{"role": "user", "content": "hi"}]}, model_key=key)
>>> req.headers["X-E2EE-Version"], req.encrypted_fields
('2', ('messages.0.content',))
>>> b'"hi"' in req.body
False
"""

from __future__ import annotations

import copy
import hashlib
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from ..errors import E2EEError, InputError, UnsupportedError
from ..wire.sse import SSEDecoder
from ..verdict import Check, Status
from .e2ee_crypto import (
    E2EE_HEADERS, CHAT, COMPLETIONS, E2EE_VERSION, EMBEDDINGS, SECP256K1, SUITES, X25519, Rng, Suite, endpoint_kind,
    looks_sealed, open_field, parse_public_key, request_aad, request_slots, response_aad, response_slots,
    seal_field, serde_dumps, serde_loads, stream_slots, suite_for, _split,
)
from .e2ee_record import E2EERecord, is_present, reply_units
from .established import AciAttestation, EstablishedKeyset

__all__ = [
    "AttestedE2EEKey", "EncryptedRequest", "DecryptedResponse", "DecryptedChunk", "DecryptedStream", "StreamDecryptor",
    "prepare_request", "decrypt_response", "decrypt_chunk", "decrypt_stream",
    "check_key_attested", "check_request_encrypted", "check_response_authenticated",
    "E2EE_HEADERS", "X25519", "SECP256K1",
]

#: Preferred suite when a keyset offers both: X25519 (the spec's RECOMMENDED suite).
_PREFERENCE = (X25519, SECP256K1)

class AttestedE2EEKey:
    """A service E2EE v2 public key phalanb may encrypt to.

    Not constructible directly: take one from a verified keyset with :meth:`from_established_keyset`, or — when
    you knowingly skip attestation — :meth:`UNVERIFIED_override`. ``attested`` says which; it travels into every
    :class:`EncryptedRequest` so :func:`check_key_attested` can report it.
    """

    __slots__ = ("key_id", "algo", "public_key", "attested", "keyset_digest", "_suite", "version")

    def __init__(self, *args: Any, **kw: Any):
        raise TypeError("an AttestedE2EEKey comes from AttestedE2EEKey.from_established_keyset(...) (a keyset "
                        "phalanb verified) or, knowingly, AttestedE2EEKey.UNVERIFIED_override(...)")

    @classmethod
    def _make(cls, *, key_id: str | None, algo: str, public_key: bytes, attested: bool,
              keyset_digest: str | None, version: int = 2) -> "AttestedE2EEKey":
        self = object.__new__(cls)
        object.__setattr__(self, "version", version)
        object.__setattr__(self, "key_id", key_id)
        object.__setattr__(self, "algo", algo)
        object.__setattr__(self, "public_key", public_key)
        object.__setattr__(self, "attested", attested)
        object.__setattr__(self, "keyset_digest", keyset_digest)
        object.__setattr__(self, "_suite", suite_for(algo))
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("an AttestedE2EEKey is read-only")

    @property
    def suite(self) -> Suite:
        return self._suite

    def seal(self, payload: Mapping[str, Any], *, endpoint: str) -> "EncryptedRequest":
        """The wire's :class:`~phalanb.wire.encryption.Encryption`: ``payload`` sealed to this key
        (:func:`prepare_request`); the client sends ``.body`` with ``.headers`` and opens the reply with
        ``.opener(...)``. A key of a v3 keyset seals the whole body by E2EE v3 (:mod:`phalanb.aci.e2ee_v3`)."""
        if self.version == 3:
            from .e2ee_v3 import seal_request

            return seal_request(payload, model_key=self, endpoint=endpoint)
        return prepare_request(payload, model_key=self, endpoint=endpoint)

    @property
    def public_key_hex(self) -> str:
        """The key as ``X-Model-Pub-Key`` carries it (lowercase hex; secp256k1 with its ``04``)."""
        return self.public_key.hex()

    def __repr__(self) -> str:
        how = "attested" if self.attested else "UNVERIFIED"
        return (f"<AttestedE2EEKey {how} {self.key_id or '-'} {self.algo} E2EE v{self.version} "
                f"{self.public_key_hex[:16]}…>")

    @classmethod
    def from_established_keyset(cls, established: Any, key_id: str | None = None, *,
                                algo: str | None = None) -> "AttestedE2EEKey":
        """The E2EE v2 key of an established (verified) keyset.

        ``established`` must be the :class:`phalanb.aci.verify.EstablishedKeyset` that
        :func:`~phalanb.aci.verify.verify_aci_report` returns as ``.keyset`` — only when the report's binding and
        quote verified (it is None otherwise). Nothing else is accepted: a look-alike object would let any
        unverified key through. Select by ``key_id`` or ``algo``; with neither, X25519 is preferred, then
        secp256k1. Entries of other algorithms (``ecdsa``, ``ed25519`` in preview keysets) are never picked.
        """
        if isinstance(established, AciAttestation):
            raise E2EEError("pass the attestation's .keyset (an EstablishedKeyset), not the AciAttestation itself"
                            + ("" if established.keyset is not None else
                               f"; this one established no keyset: {established.reason}"))
        if not isinstance(established, EstablishedKeyset):
            raise E2EEError("no established keyset: the E2EE key must come from the EstablishedKeyset that "
                            "verify_aci_report returned (None when the report did not verify); verify the report "
                            "first, or use AttestedE2EEKey.UNVERIFIED_override knowingly")
        keyset = established.keyset
        entries = keyset.get("e2ee_public_keys") if isinstance(keyset, Mapping) else None
        if established.shape == "v3":
            return cls._from_v3_keyset(established, entries, key_id)
        if not isinstance(entries, list):
            raise E2EEError("the established keyset has no e2ee_public_keys list", field="e2ee_public_keys")
        v2 = [e for e in entries if isinstance(e, Mapping) and e.get("algo") in SUITES]
        if key_id is not None:
            named = [e for e in entries if isinstance(e, Mapping) and e.get("key_id") == key_id]
            if not named:
                raise E2EEError(f"the established keyset lists no E2EE key {key_id!r}", field="key_id")
            if named[0].get("algo") not in SUITES:
                raise UnsupportedError(f"E2EE key {key_id!r} is {named[0].get('algo')!r}, not an E2EE v2 suite")
            if algo is not None and named[0].get("algo") != algo:
                raise E2EEError(f"E2EE key {key_id!r} is {named[0].get('algo')!r}, not the {algo!r} asked for",
                                field="key_id")
            chosen = named[0]
        else:
            wanted = [algo] if algo is not None else list(_PREFERENCE)
            if algo is not None:
                suite_for(algo)
            chosen = next((e for a in wanted for e in v2 if e.get("algo") == a), None)
            if chosen is None:
                have = sorted({str(e.get("algo")) for e in entries if isinstance(e, Mapping)})
                raise UnsupportedError(f"the established keyset offers no E2EE v2 key of {' or '.join(wanted)} "
                                       f"(it lists {', '.join(have) or 'none'})")
        digest = established.digest
        public = parse_public_key(chosen["algo"], chosen.get("public_key"), what=f"e2ee key {chosen.get('key_id')}")
        return cls._make(key_id=chosen.get("key_id"), algo=chosen["algo"], public_key=public, attested=True,
                         keyset_digest=digest if isinstance(digest, str) else None)

    @classmethod
    def _from_v3_keyset(cls, established: Any, entries: Any, key_id: str | None) -> "AttestedE2EEKey":
        """E2EE v3 (ACI-v3.md §8): X25519 only; ``X-Model-Pub-Key`` is the entry's text verbatim."""
        from .e2ee_v3 import SUITE

        listed = [e for e in entries or [] if isinstance(e, Mapping) and e.get("algo") == SUITE
                  and (key_id is None or e.get("key_id") == key_id)]
        if not listed:
            raise UnsupportedError("the established v3 keyset lists no X25519 E2EE key"
                                   + (f" named {key_id!r}" if key_id else ""))
        chosen = listed[0]
        text = chosen.get("public_key")
        public = parse_public_key(SUITE, text, what=f"e2ee key {chosen.get('key_id')}")
        if not isinstance(text, str) or text != public.hex():
            raise E2EEError("a v3 X25519 key is 64 lowercase hex (it is compared verbatim)", field="public_key")
        return cls._make(key_id=chosen.get("key_id"), algo=SUITE, public_key=public, attested=True,
                         keyset_digest=established.digest, version=3)

    @classmethod
    def UNVERIFIED_override(  # noqa: N802 - the shout is the point: this skips attestation
            cls, public_key_hex: str, algo: str, *, key_id: str | None = None, version: int = 2
    ) -> "AttestedE2EEKey":
        """A key taken on trust, with no attestation behind it. Encryption to it works, but nothing shows the
        private key lives in a TEE: :func:`check_key_attested` reports it as not checked, and the verdict cannot
        be ``verified``."""
        if version not in (2, 3):
            raise InputError(f"E2EE version is 2 or 3, got {version!r}")
        return cls._make(key_id=key_id, algo=algo, public_key=parse_public_key(algo, public_key_hex),
                         attested=False, keyset_digest=None, version=version)


@dataclass(frozen=True, repr=False)
class EncryptedRequest:
    """What :func:`prepare_request` made. Send ``body`` with ``headers``; keep the object to open the reply.

    - ``body``: the exact wire bytes (sealed fields in place);
    - ``headers``: the five E2EE v2 headers;
    - ``restored_body``: the bytes the gateway's receipt ``request.received.body_hash`` covers — the decrypted
      body as ``serde_json`` re-serialises it (client key order, compact), **not** ``body``;
    - ``encrypted_fields``: the field paths sealed; ``warnings``: things the protocol will do that you may not
      expect (a string content that parses as a JSON array is restored as structured content).
    The client private key never appears in ``repr``.
    """

    body: bytes
    headers: dict[str, str]
    restored_body: bytes
    encrypted_fields: tuple[str, ...]
    model_key: AttestedE2EEKey
    model: str
    nonce: str
    timestamp: int
    endpoint: str
    client_public_key: str
    warnings: tuple[str, ...] = ()
    _client_private: Any = field(default=None, compare=False)

    @property
    def algo(self) -> str:
        return self.model_key.algo

    @property
    def key_attested(self) -> bool:
        return self.model_key.attested

    @property
    def restored_body_sha256(self) -> str:
        """Bare hex sha256 of :attr:`restored_body` — compare with the receipt's ``request.received``."""
        return hashlib.sha256(self.restored_body).hexdigest()

    @property
    def body_sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()

    def opener(self, *, stream: bool, on_text: Callable[[str], None] | None = None) -> Any:
        """The wire's :class:`~phalanb.wire.encryption.ReplyOpener` for this request's reply."""
        return ReplyOpener(self, stream=stream, on_text=on_text)

    def __repr__(self) -> str:
        return (f"<EncryptedRequest {self.algo} model={self.model!r} fields={list(self.encrypted_fields)} "
                f"nonce={self.nonce[:8]}… key={'attested' if self.key_attested else 'UNVERIFIED'}>")

    def decrypt_response(self, body: bytes) -> "DecryptedResponse":
        return decrypt_response(body, self)

    def to_dict(self, *, include_client_key: bool = False) -> dict[str, Any]:
        """A JSON-ready record for an audit bundle. The client private key is left out unless
        ``include_client_key`` (whoever holds it can read the reply; the bundle then is as secret as the chat)."""
        d: dict[str, Any] = {
            "body": self.body.decode("utf-8"), "headers": dict(self.headers),
            "restored_body": self.restored_body.decode("utf-8"), "encrypted_fields": list(self.encrypted_fields),
            "algo": self.algo, "key_id": self.model_key.key_id, "model": self.model, "nonce": self.nonce,
            "timestamp": self.timestamp, "endpoint": self.endpoint, "client_public_key": self.client_public_key,
            "key_attested": self.key_attested, "warnings": list(self.warnings),
        }
        if include_client_key:
            d["client_private_key"] = _private_secret(self.model_key.suite, self._client_private).hex()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, model_key: AttestedE2EEKey) -> "EncryptedRequest":
        """Rebuild from :meth:`to_dict`. The record's ``key_attested`` is a claim and is ignored: pass the key
        re-established from the bundle's re-verified report (or an override), and it must be the key the recorded
        headers name. Without ``client_private_key`` in the record, replies cannot be opened."""
        try:
            headers = {str(k): str(v) for k, v in dict(d["headers"]).items()}
            suite = model_key.suite
            if d["algo"] != model_key.algo or \
                    parse_public_key(model_key.algo, headers.get("X-Model-Pub-Key")) != model_key.public_key:
                raise E2EEError("the recorded request was sealed to another key than the one given "
                                f"({d['algo']} {str(headers.get('X-Model-Pub-Key'))[:16]}…)")
            secret = d.get("client_private_key")
            private = suite.private_from_bytes(bytes.fromhex(secret)) if isinstance(secret, str) else None
            if private is not None and suite.public_bytes(private).hex() != d["client_public_key"]:
                raise E2EEError("the recorded client private key does not belong to the recorded client public key")
            return cls(body=str(d["body"]).encode("utf-8"), headers=headers,
                       restored_body=str(d["restored_body"]).encode("utf-8"),
                       encrypted_fields=tuple(d["encrypted_fields"]), model_key=model_key, model=str(d["model"]),
                       nonce=str(d["nonce"]), timestamp=int(d["timestamp"]), endpoint=endpoint_kind(d["endpoint"]),
                       client_public_key=str(d["client_public_key"]), warnings=tuple(d.get("warnings") or ()),
                       _client_private=private)
        except (KeyError, TypeError, ValueError) as exc:
            raise E2EEError(f"the recorded E2EE request is incomplete or malformed ({exc})") from None

    def stream_decryptor(self) -> "StreamDecryptor":
        return StreamDecryptor(self)


def _private_secret(suite: Suite, private: Any) -> bytes:
    if suite.algo == X25519:
        return private.private_bytes_raw()
    return private.private_numbers().private_value.to_bytes(32, "big")


def _infer_endpoint(body: Mapping[str, Any]) -> str:
    if "messages" in body:
        return CHAT
    if "prompt" in body:
        return COMPLETIONS
    if "input" in body:
        return EMBEDDINGS
    raise InputError("the body has no messages, prompt or input: nothing for E2EE v2 to encrypt")


_PART_FIELDS = {"text": ("text",), "image_url": ("image_url", "url"), "input_audio": ("input_audio", "data")}


def _parts_encryptable(content: list[Any]) -> bool:
    """True when every part is a type the per-part field paths cover, with a string at that place."""
    for part in content:
        if not isinstance(part, dict) or part.get("type") not in _PART_FIELDS:
            return False
        path = _PART_FIELDS[part["type"]]
        value: Any = part
        for name in path:
            value = value.get(name) if isinstance(value, dict) else None
        if not isinstance(value, str):
            return False
    return True


def prepare_request(body: Mapping[str, Any], *, model_key: AttestedE2EEKey, suite: str | None = None,
                    endpoint: str | None = None, split_parts: bool = False, now: int | float | None = None,
                    rng: Rng | None = None, client_secret: bytes | None = None) -> EncryptedRequest:
    """Seal every prompt field of ``body`` (a parsed request: ``model`` plus ``messages`` / ``prompt`` /
    ``input``) to ``model_key``.

    Chat content that is a string is sealed whole (``messages.{m}.content``). Structured content (a parts array)
    is sealed whole as its compact JSON, which hides the parts' types and count; with ``split_parts=True`` each
    ``text`` / ``image_url.url`` / ``input_audio.data`` is sealed in place instead (only when every part is one of
    those, else whole). ``endpoint`` defaults from the body; ``suite``, if given, must be the key's algo. ``now``
    fixes ``X-E2EE-Timestamp``; ``rng`` (tests) supplies, in order: the client key (32 bytes, unless
    ``client_secret``), the 32-byte E2EE nonce, then per field an ephemeral key (32) and a GCM nonce (12).
    Raises :class:`InputError` for a body that cannot be sealed."""
    if not isinstance(model_key, AttestedE2EEKey):
        raise E2EEError("prepare_request encrypts only to an AttestedE2EEKey (from a verified keyset, or "
                        "AttestedE2EEKey.UNVERIFIED_override); a bare key string is refused")
    if suite is not None and suite != model_key.algo:
        raise E2EEError(f"suite {suite!r} was asked for, but the key is {model_key.algo!r}; the suite is the key's "
                        "algo (choose the key with AttestedE2EEKey.from_established_keyset(..., algo=...))")
    if not isinstance(body, Mapping):
        raise InputError(f"the request body must be a JSON object, not {type(body).__name__}")
    model = body.get("model")
    if not isinstance(model, str):
        raise InputError("the request needs a string 'model': E2EE v2 binds it into every field's AAD")
    kind = endpoint_kind(endpoint) if endpoint is not None else _infer_endpoint(body)
    draw = rng or os.urandom
    cipher = model_key.suite
    client_private = cipher.private_from_bytes(client_secret) if client_secret is not None else cipher.generate(draw)
    nonce = draw(32).hex()
    ts = int(time.time() if now is None else now)

    # Work on the serde view of the body, so the sealed body, the restored body and the gateway agree on numbers.
    try:
        plain = serde_loads(serde_dumps(dict(body)), what="request body")
    except E2EEError as exc:
        raise InputError(f"the request body cannot be sent as JSON: {exc}") from None
    warnings: list[str] = []
    was_parts: set[str] = set()
    if kind == CHAT:
        messages = plain.get("messages")
        if not isinstance(messages, list):
            raise InputError("'messages' must be a list")
        for m, message in enumerate(messages):
            content = message.get("content") if isinstance(message, dict) else None
            if content is None or isinstance(content, str):
                continue
            if not isinstance(content, list):
                raise InputError(f"messages.{m}.content is a {type(content).__name__}; E2EE v2 seals a string or "
                                 "a parts array only")
            if not (split_parts and _parts_encryptable(content)):
                message["content"] = serde_dumps(content).decode("utf-8")
                was_parts.add(f"messages.{m}.content")

    sealed: list[str] = []
    restored_values: list[tuple[Any, Any, Any]] = []
    for slot in list(request_slots(plain, kind)):
        plaintext = slot.container[slot.key]
        if slot.whole_content and _parses_as_array(plaintext):
            restored = serde_loads(plaintext)
            if slot.path not in was_parts:
                warnings.append(f"{slot.path} is a string that reads as a JSON array; the gateway restores it as "
                                "structured content, not text")
        else:
            restored = plaintext
        aad = request_aad(model_key.algo, model, slot.path, nonce, ts)
        slot.container[slot.key] = seal_field(cipher, model_key.public_key, plaintext.encode("utf-8"), aad, rng=draw)
        restored_values.append((slot.container, slot.key, restored))
        sealed.append(slot.path)
    if not sealed:
        raise InputError("the request holds no string prompt field to encrypt (E2EE v2 needs at least one: "
                         "message content, prompt or input)")
    wire = serde_dumps(plain)
    for container, key, restored in restored_values:
        container[key] = restored
    restored_body = serde_dumps(plain)

    client_public = cipher.public_bytes(client_private).hex()
    headers = {
        "X-E2EE-Version": E2EE_VERSION,
        "X-Client-Pub-Key": client_public,
        "X-Model-Pub-Key": model_key.public_key_hex,
        "X-E2EE-Nonce": nonce,
        "X-E2EE-Timestamp": str(ts),
    }
    return EncryptedRequest(body=wire, headers=headers, restored_body=restored_body, encrypted_fields=tuple(sealed),
                            model_key=model_key, model=model, nonce=nonce, timestamp=ts, endpoint=kind,
                            client_public_key=client_public, warnings=tuple(warnings), _client_private=client_private)


def _parses_as_array(text: str) -> bool:
    try:
        return isinstance(serde_loads(text), list)
    except E2EEError:
        return False


# ---- replies ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DecryptedResponse:
    """A buffered reply with every sealed field opened. ``body`` is the plaintext JSON (embeddings restored to
    their values); ``wire`` the exact bytes received (what the receipt's ``response.returned`` hashes);
    ``fields`` the field paths opened and authenticated; ``id`` the response id bound into their AAD."""

    body: dict[str, Any]
    wire: bytes
    fields: tuple[str, ...]
    id: str
    key_attested: bool
    plaintexts: tuple[tuple[str, str], ...] = ()  # (path, decrypted text) per opened field, for the leak search

    @property
    def text(self) -> str:
        """The first choice's content (chat) or text (completions), '' when absent."""
        choices = self.body.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return ""
        first = choices[0]
        msg = first.get("message")
        value = msg.get("content") if isinstance(msg, dict) else first.get("text")
        return value if isinstance(value, str) else ""


def _response_id(body: Mapping[str, Any]) -> str:
    value = body.get("id")
    return value if isinstance(value, str) else ""


def _open_slots(slots: Iterable[Any], request: EncryptedRequest, response_id: str,
                plaintexts: list[tuple[str, str]]) -> list[str]:
    opened: list[str] = []
    suite = request.model_key.suite
    for slot in slots:
        if slot.key not in slot.container:
            continue
        value = slot.container[slot.key]
        if value is None:
            continue  # null content (tool calls, a finish chunk) carries nothing to protect
        if not isinstance(value, str) or not looks_sealed(suite, value):
            raise E2EEError(f"{slot.path} arrived unencrypted although E2EE was requested; refusing the reply "
                            "(a relay may have answered in the clear)", field=slot.path)
        if request._client_private is None:
            raise E2EEError("this recorded request carries no client private key, so its reply cannot be opened",
                            field=slot.path)
        aad = response_aad(request.algo, request.model, response_id, slot.path, request.nonce, request.timestamp)
        plaintext = open_field(suite, request._client_private, value, aad, field=slot.path)
        try:
            text = plaintext.decode("utf-8")
        except UnicodeDecodeError:
            raise E2EEError(f"{slot.path} decrypted to bytes that are not UTF-8", field=slot.path) from None
        slot.container[slot.key] = serde_loads(text, what=slot.path) if slot.json_value else text
        opened.append(slot.path)
        plaintexts.append((slot.path, text))
    return opened


def decrypt_response(body: bytes, request: EncryptedRequest) -> DecryptedResponse:
    """Open every sealed field of a buffered reply to ``request``. A field that fails authentication, does not
    decode, or arrived unencrypted raises :class:`E2EEError` naming its path."""
    parsed = serde_loads(body, what="response body")
    if not isinstance(parsed, dict):
        raise E2EEError("the response body is not a JSON object", field="response body")
    rid = _response_id(parsed)
    plaintexts: list[tuple[str, str]] = []
    opened = _open_slots(list(response_slots(parsed, request.endpoint)), request, rid, plaintexts)
    return DecryptedResponse(body=parsed, wire=bytes(body), fields=tuple(opened), id=rid,
                             key_attested=request.key_attested, plaintexts=tuple(plaintexts))


@dataclass(frozen=True)
class DecryptedChunk:
    """One streamed event with its sealed fields opened: ``data`` the plaintext chunk, ``fields`` the paths."""

    data: dict[str, Any]
    fields: tuple[str, ...]
    id: str
    plaintexts: tuple[tuple[str, str], ...] = ()

    @property
    def deltas(self) -> dict[int, str]:
        """``{choice index: content text}`` of this chunk (chat ``delta.content`` or completions ``text``)."""
        out: dict[int, str] = {}
        choices = self.data.get("choices")
        for pos, choice in enumerate(choices if isinstance(choices, list) else ()):
            if not isinstance(choice, dict):
                continue
            idx = choice.get("index") if isinstance(choice.get("index"), int) else pos
            delta = choice.get("delta")
            value = delta.get("content") if isinstance(delta, dict) else choice.get("text")
            if isinstance(value, str):
                out[idx] = out.get(idx, "") + value
        return out


def decrypt_chunk(data: str | bytes | Mapping[str, Any], request: EncryptedRequest) -> DecryptedChunk:
    """Open one SSE event's JSON (the text after ``data:``; not ``[DONE]``)."""
    parsed = serde_loads(data, what="stream event") if isinstance(data, (str, bytes)) else copy.deepcopy(dict(data))
    if not isinstance(parsed, dict):
        raise E2EEError("a stream event is not a JSON object", field="stream event")
    rid = _response_id(parsed)
    plaintexts: list[tuple[str, str]] = []
    opened = _open_slots(list(stream_slots(parsed, request.endpoint)), request, rid, plaintexts)
    return DecryptedChunk(data=parsed, fields=tuple(opened), id=rid, plaintexts=tuple(plaintexts))


class StreamDecryptor:
    """Opens a streamed reply as its bytes arrive: ``feed(chunk)`` returns the decrypted events completed by
    ``chunk``; ``text`` is the assembled content of choice 0; ``close()`` checks nothing was left half-sent.

    Each field's tag binds its chunk id and field path, not its place in the stream: a relay that drops, repeats
    or reorders whole events is caught by the signed receipt's ``response.returned`` hash over the exact bytes,
    not here (spec §7).

    >>> dec = StreamDecryptor(req)          # doctest: +SKIP
    >>> for c in dec.feed(raw_bytes): ...   # doctest: +SKIP
    """

    def __init__(self, request: EncryptedRequest):
        self.request = request
        self._sse = SSEDecoder()
        self.chunks: list[DecryptedChunk] = []
        self.done = False
        self._texts: dict[int, str] = {}

    def feed(self, chunk: bytes) -> list[DecryptedChunk]:
        out = []
        for event in self._sse.feed(chunk):
            if event.done:
                self.done = True
                continue
            try:
                dec = decrypt_chunk(event.data, self.request)
            except E2EEError as exc:
                raise E2EEError(f"stream event at byte {event.offset}: {exc}", field=exc.field) from None
            for idx, text in dec.deltas.items():
                self._texts[idx] = self._texts.get(idx, "") + text
            self.chunks.append(dec)
            out.append(dec)
        return out

    def close(self) -> None:
        rest = self._sse.close()
        if rest.strip():
            raise E2EEError(f"the stream ended inside an event ({len(rest)} bytes after the last blank line)")

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(f for c in self.chunks for f in c.fields)

    def text(self, index: int = 0) -> str:
        return self._texts.get(index, "")


@dataclass(frozen=True)
class DecryptedStream:
    """A whole streamed reply, opened: the chunks, every field path authenticated (one per chunk and field),
    whether ``[DONE]`` arrived, and the assembled text of choice 0."""

    chunks: tuple[DecryptedChunk, ...]
    wire: bytes
    fields: tuple[str, ...]
    done: bool
    text: str
    key_attested: bool
    plaintexts: tuple[tuple[str, str], ...] = ()

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.id for c in self.chunks))


def decrypt_stream(body: bytes, request: EncryptedRequest) -> DecryptedStream:
    """Open a complete captured SSE reply (e.g. an exchange's response bytes)."""
    dec = StreamDecryptor(request)
    dec.feed(bytes(body))
    dec.close()
    return DecryptedStream(chunks=tuple(dec.chunks), wire=bytes(body), fields=dec.fields, done=dec.done,
                           text=dec.text(0), key_attested=request.key_attested,
                           plaintexts=tuple(p for c in dec.chunks for p in c.plaintexts))


# ---- checks -----------------------------------------------------------------------------------------------------

def check_key_attested(key: AttestedE2EEKey | EncryptedRequest) -> Check:
    """``e2ee.key_attested``: the key we encrypted to came from a keyset phalanb established. Taken on trust
    (:meth:`AttestedE2EEKey.UNVERIFIED_override`) it is *skipped*, never passed: the verdict stays incomplete."""
    k = key.model_key if isinstance(key, EncryptedRequest) else key
    evidence = {"key_id": k.key_id, "algo": k.algo, "public_key": k.public_key_hex, "keyset_digest": k.keyset_digest}
    if k.attested:
        return Check("e2ee.key_attested", Status.PASS,
                     f"the prompt was encrypted to {k.key_id or 'the'} {k.algo} key of the verified keyset",
                     evidence)
    return Check("e2ee.key_attested", Status.SKIPPED,
                 "the E2EE key was supplied with UNVERIFIED_override: nothing shows its private key is held "
                 "inside an attested TEE", evidence)


#: Plaintexts shorter than this are not searched for in the wire bytes: a two-letter prompt may occur by chance.
_MIN_LEAK_SEARCH = 8


def check_request_encrypted(request: EncryptedRequest) -> Check:
    """``e2ee.request_encrypted``: re-reads the wire body as sent and confirms every location E2EE v2 can seal
    holds a sealed value (hex of the right shape whose ephemeral key is valid), that the sealed set is the one
    recorded, the headers name the attested key, and no sealed plaintext of ≥ 8 bytes appears in the wire bytes.
    Content the protocol does not cover (tool-call arguments, tool results' structure, names) is listed in the
    evidence as ``not_covered``."""
    cid = "e2ee.request_encrypted"
    evidence: dict[str, Any] = {"fields": list(request.encrypted_fields), "body_sha256": request.body_sha256}
    try:
        wire = serde_loads(request.body, what="request body")
    except E2EEError as exc:
        return Check(cid, Status.FAIL, f"the sent body is not JSON: {exc}", evidence)
    suite = request.model_key.suite
    clear, found = [], []
    for slot in request_slots(wire, request.endpoint):
        (found if looks_sealed(suite, slot.container[slot.key]) else clear).append(slot.path)
    if clear:
        return Check(cid, Status.FAIL, f"{', '.join(clear)} went out unencrypted", {**evidence, "clear": clear})
    if tuple(found) != request.encrypted_fields:
        return Check(cid, Status.FAIL, f"the body seals {found}, not the recorded {list(request.encrypted_fields)}",
                     evidence)
    if request.headers.get("X-Model-Pub-Key") != request.model_key.public_key_hex or \
            request.headers.get("X-E2EE-Version") != E2EE_VERSION:
        return Check(cid, Status.FAIL, "the E2EE headers do not name the key the fields were sealed to", evidence)
    restored = serde_loads(request.restored_body, what="restored body")
    leaked = leaked_plaintext(((slot.path, slot.container[slot.key]) for slot in
                               request_slots(_reseal_shape(restored, request), request.endpoint)), request.body)
    if leaked:
        return Check(cid, Status.FAIL, f"the plaintext of {', '.join(leaked)} appears in the sent bytes",
                     {**evidence, "leaked": leaked})
    not_covered = _not_covered(restored)
    evidence["not_covered"] = not_covered
    note = f"; not covered by E2EE v2 and sent in the clear: {', '.join(not_covered)}" if not_covered else ""
    return Check(cid, Status.PASS, f"all {len(found)} prompt field(s) left encrypted to the {request.algo} key{note}",
                 evidence)


def leaked_plaintext(plaintexts: Iterable[tuple[str, Any]], wire: bytes) -> list[str]:
    """The paths whose plaintext (of at least 8 bytes: shorter ones occur by chance) appears in ``wire`` as it would
    be written there, raw or JSON-escaped: the text crossed the wire in clear beside (or instead of) its sealed
    copy. Used for the request and the reply alike."""
    leaked = []
    for path, value in plaintexts:
        text = value if isinstance(value, str) else serde_dumps(value).decode()
        raw = text.encode("utf-8", "surrogatepass")
        if len(raw) >= _MIN_LEAK_SEARCH and (raw in wire or serde_dumps(text)[1:-1] in wire):
            leaked.append(path)
    return leaked


def _reseal_shape(restored: Any, request: EncryptedRequest) -> Any:
    """The restored body with whole-content arrays turned back into the string that was sealed, so the slots of
    the restored body line up with the sealed ones."""
    shaped = copy.deepcopy(restored)
    if request.endpoint == CHAT and isinstance(shaped.get("messages"), list):
        for path in request.encrypted_fields:
            parts = path.split(".")
            if len(parts) == 3 and parts[2] == "content":
                msg = shaped["messages"][int(parts[1])]
                if isinstance(msg, dict) and isinstance(msg.get("content"), list):
                    msg["content"] = serde_dumps(msg["content"]).decode()
    return shaped


def _not_covered(restored: Any) -> list[str]:
    out = []
    for m, message in enumerate(restored.get("messages") or () if isinstance(restored, dict) else ()):
        if isinstance(message, dict):
            for name in ("tool_calls", "function_call"):
                if message.get(name):
                    out.append(f"messages.{m}.{name}")
    if isinstance(restored, dict):
        for name in ("tools", "functions", "response_format", "prediction"):
            if restored.get(name):
                out.append(name)
    return out


def check_response_authenticated(outcome: DecryptedResponse | DecryptedStream | BaseException) -> Check:
    """``e2ee.response_authenticated``: every generated-content field of the reply opened under its AAD (request
    model, nonce and ts, response id, field path). Pass the result of :func:`decrypt_response` /
    :func:`decrypt_stream`, or the :class:`E2EEError` they raised (→ fail). A reply with no content field at all
    is *skipped* (nothing was authenticated)."""
    cid = "e2ee.response_authenticated"
    if isinstance(outcome, BaseException):
        return Check(cid, Status.FAIL, str(outcome), {"field": getattr(outcome, "field", None)})
    evidence: dict[str, Any] = {"fields": len(outcome.fields), "paths": sorted(set(outcome.fields)),
                                "response_sha256": hashlib.sha256(outcome.wire).hexdigest()}
    if not outcome.fields:
        return Check(cid, Status.SKIPPED, "the reply carried no generated content field to authenticate", evidence)
    texts = list(outcome.plaintexts)
    if isinstance(outcome, DecryptedStream):
        texts.append(("the assembled text", outcome.text))
    leaked = leaked_plaintext(texts, outcome.wire)
    if leaked:
        return Check(cid, Status.FAIL, f"the decrypted text of {', '.join(dict.fromkeys(leaked))} also appears in "
                     "the reply bytes: the answer crossed the wire in clear", {**evidence, "leaked": leaked})
    kind = "field(s)"
    if isinstance(outcome, DecryptedStream):
        kind = "streamed chunk field(s)"
        evidence["done"] = outcome.done
    return Check(cid, Status.PASS, f"{len(outcome.fields)} reply {kind} decrypted and authenticated under their "
                 "AAD", evidence)


# -- recording the reply on the exchange (the wire's ReplyOpener) ----------------------------------------

def reply_field_keys(request: EncryptedRequest, wire: bytes, *, stream: bool) -> tuple[str, ...]:
    """The AES-256-GCM key of every sealed reply value, in wire order, derived with the client private key the
    live ``request`` holds. Call after the reply decrypted (each key is then known to open its field)."""
    if request._client_private is None:
        raise E2EEError("this request carries no client private key: the reply's field keys cannot be derived")
    suite = request.model_key.suite
    keys = []
    for _, slots in reply_units(wire, stream=stream, endpoint=request.endpoint):
        for slot in slots:
            if is_present(slot):
                eph, _, _ = _split(suite, slot.container[slot.key], slot.path)
                keys.append(suite.aes_key(suite.shared_secret(request._client_private, eph)).hex())
    return tuple(keys)


def record_e2ee(request: EncryptedRequest, *, stream: bool, reply: Any = None, reply_fields: tuple[str, ...] = (),
                reply_keys: tuple[str, ...] = (), reply_error: str | None = None) -> E2EERecord:
    """The record of one sent :class:`~phalanb.aci.e2ee.EncryptedRequest` and how its reply opened."""
    return E2EERecord(algo=request.algo, key_id=request.model_key.key_id, headers=dict(request.headers),
                      restored_request=request.restored_body, encrypted_fields=request.encrypted_fields,
                      model=request.model, endpoint=request.endpoint, stream=stream,
                      key_attested=request.key_attested, keyset_digest=request.model_key.keyset_digest,
                      reply=reply, reply_fields=tuple(reply_fields), reply_keys=tuple(reply_keys),
                      reply_error=reply_error, warnings=request.warnings)


class ReplyOpener:
    """Opens an E2EE v2 reply for :meth:`~phalanb.wire.client.Client.chat` (the wire's
    :class:`~phalanb.wire.encryption.ReplyOpener`): event by event while it streams (plaintext to
    ``on_text``), or whole at the end; then records it on the exchange. A decryption failure does not stop the
    reading — the exact bytes are still wanted for the receipt — but is raised once the reply is complete."""

    def __init__(self, request: EncryptedRequest, *, stream: bool, on_text: Callable[[str], None] | None):
        self.request = request
        self.stream = stream
        self.on_text = on_text
        self.decryptor = StreamDecryptor(request) if stream else None
        self.error: E2EEError | None = None

    def feed(self, chunk: bytes) -> None:
        if self.error is not None or self.decryptor is None:
            return
        try:
            for event in self.decryptor.feed(chunk):
                piece = event.deltas.get(0)
                if piece and self.on_text is not None:
                    self.on_text(piece)
        except E2EEError as exc:
            self.error = exc

    def finish(self, exchange: Any) -> None:
        reply: Any = None
        fields: tuple[str, ...] = ()
        keys: tuple[str, ...] = ()
        if self.error is None:
            try:
                if self.decryptor is not None:
                    self.decryptor.close()
                    reply = [c.data for c in self.decryptor.chunks]
                    fields = self.decryptor.fields
                else:
                    opened = decrypt_response(exchange.response_bytes, self.request)
                    reply, fields = opened.body, opened.fields
                    if opened.text and self.on_text is not None:
                        self.on_text(opened.text)
                keys = reply_field_keys(self.request, exchange.response_bytes, stream=self.stream)
            except E2EEError as exc:
                self.error = exc
        exchange.e2ee = record_e2ee(self.request, stream=self.stream, reply=None if self.error else reply,
                                    reply_fields=() if self.error else fields, reply_keys=() if self.error else keys,
                                    reply_error=str(self.error) if self.error else None)
        exchange.text = exchange.e2ee.text
        if self.error is not None:
            err = E2EEError(f"the encrypted reply could not be opened: {self.error} (the exact bytes are kept in "
                            "the exception's .partial exchange)", field=self.error.field)
            err.partial = exchange  # type: ignore[attr-defined]
            raise err
