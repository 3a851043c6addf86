"""The record of an E2EE v2 chat as it travelled (ACI.md §6), and how a reply is opened again from it offline.

:class:`E2EERecord` rides on an :class:`~phalanb.wire.exchange.Exchange` (``exchange.e2ee``); the live side
(:mod:`phalanb.aci.e2ee`) writes it when a reply arrives, :mod:`phalanb.aci.e2ee_wire` judges it. It keeps no private
key: per sealed reply field, the AES-256-GCM key that opened it (``reply_keys``), with which
:func:`open_reply_with_keys` re-checks every reply tag under its AAD.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import E2EEError, ParseError
from ..wire.sse import SSEDecoder
from .e2ee_crypto import (
    E2EE_HEADERS, GCM_NONCE_BYTES, SUITES, _split, endpoint_kind, looks_sealed, response_aad, response_slots,
    serde_loads, stream_slots,
)

__all__ = ["E2EERecord", "reply_text", "reply_units", "open_reply_with_keys"]


class KeyHeaders:
    """The public keys a sealed request named in its headers (E2EE v2 and v3 name them alike)."""

    headers: dict[str, str]

    @property
    def model_public_key(self) -> str:
        return self.headers.get("X-Model-Pub-Key", "")

    @property
    def client_public_key(self) -> str:
        return self.headers.get("X-Client-Pub-Key", "")


@dataclass
class E2EERecord(KeyHeaders):
    """What an E2EE v2 exchange needs to be re-verified offline. No private key is ever part of it.

    ``headers``: the five E2EE request headers as sent; ``restored_request``: the decrypted body as the gateway
    re-serialises it (what ``request.received`` hashes); ``encrypted_fields``: the sealed request paths;
    ``reply``: the decrypted reply (the JSON body, or the list of decrypted stream events); ``reply_fields``: the
    reply paths that opened (one per field and event); ``reply_keys``: hex AES-256-GCM keys, one per sealed reply
    value in wire order; ``reply_error``: why the reply did not decrypt (then ``reply`` is None);
    ``key_attested``: whether the key came from a verified keyset *when the chat was made* (only ever lowers
    trust on re-verification: the keyset is re-judged).
    """

    algo: str
    key_id: str | None
    headers: dict[str, str]
    restored_request: bytes
    encrypted_fields: tuple[str, ...]
    model: str
    endpoint: str
    stream: bool
    key_attested: bool = False
    keyset_digest: str | None = None
    reply: Any = None
    reply_fields: tuple[str, ...] = ()
    reply_keys: tuple[str, ...] = field(default=(), repr=False)
    reply_error: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def nonce(self) -> str:
        return self.headers.get("X-E2EE-Nonce", "")

    @property
    def timestamp(self) -> int:
        try:
            return int(self.headers.get("X-E2EE-Timestamp", ""))
        except ValueError:
            return -1

    @property
    def text(self) -> str:
        """The decrypted reply text of choice 0 ('' when the reply did not decrypt)."""
        return reply_text(self.reply, stream=self.stream)

    def to_dict(self) -> dict[str, Any]:
        return {"algo": self.algo, "key_id": self.key_id, "headers": dict(self.headers),
                "restored_request": self.restored_request.decode("utf-8"),
                "encrypted_fields": list(self.encrypted_fields), "model": self.model, "endpoint": self.endpoint,
                "stream": self.stream, "key_attested": self.key_attested, "keyset_digest": self.keyset_digest,
                "reply": self.reply, "reply_fields": list(self.reply_fields), "reply_keys": list(self.reply_keys),
                "reply_error": self.reply_error, "warnings": list(self.warnings)}

    @classmethod
    def from_dict(cls, d: Any) -> "E2EERecord":
        where = "exchange.e2ee"
        if not isinstance(d, Mapping):
            raise ParseError("the E2EE record must be an object", field=where)

        def text(name: str, *, optional: bool = False) -> Any:
            value = d.get(name)
            if value is None and optional:
                return None
            if not isinstance(value, str):
                raise ParseError(f"must be a string, got {type(value).__name__}", field=f"{where}.{name}")
            return value

        def strings(name: str) -> tuple[str, ...]:
            value = d.get(name) or []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ParseError("must be a list of strings", field=f"{where}.{name}")
            return tuple(value)

        headers = d.get("headers")
        if not isinstance(headers, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                       for k, v in headers.items()):
            raise ParseError("must be an object of header strings", field=f"{where}.headers")
        missing = [h for h in E2EE_HEADERS if h not in headers]
        if missing:
            raise ParseError(f"lacks {', '.join(missing)}", field=f"{where}.headers")
        if "client_private_key" in d:
            # A bundle never carries it; one that does was not written by phalanb and is refused, not trusted.
            raise ParseError("an E2EE record must not carry a client private key", field=f"{where}.client_private_key")
        algo = text("algo")
        if algo not in SUITES:
            raise ParseError(f"{algo!r} is not an E2EE v2 suite", field=f"{where}.algo")
        try:
            endpoint = endpoint_kind(text("endpoint"))
        except E2EEError as exc:
            raise ParseError(str(exc), field=f"{where}.endpoint") from None
        for name in ("stream", "key_attested"):
            if not isinstance(d.get(name, False), bool):
                raise ParseError("must be true or false", field=f"{where}.{name}")
        return cls(algo=algo, key_id=text("key_id", optional=True), headers=dict(headers),
                   restored_request=text("restored_request").encode("utf-8"),
                   encrypted_fields=strings("encrypted_fields"), model=text("model"), endpoint=endpoint,
                   stream=bool(d.get("stream", False)), key_attested=bool(d.get("key_attested", False)),
                   keyset_digest=text("keyset_digest", optional=True), reply=copy.deepcopy(d.get("reply")),
                   reply_fields=strings("reply_fields"), reply_keys=strings("reply_keys"),
                   reply_error=text("reply_error", optional=True), warnings=strings("warnings"))


def reply_text(reply: Any, *, stream: bool) -> str:
    """The content of choice 0 of a decrypted reply (buffered body or list of stream events)."""
    if reply is None:
        return ""
    if not stream:
        choices = reply.get("choices") if isinstance(reply, dict) else None
        first = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
        msg = first.get("message")
        value = msg.get("content") if isinstance(msg, dict) else first.get("text")
        return value if isinstance(value, str) else ""
    out = []
    for event in reply if isinstance(reply, list) else ():
        choices = event.get("choices") if isinstance(event, dict) else None
        for pos, choice in enumerate(choices if isinstance(choices, list) else ()):
            if not isinstance(choice, dict) or choice.get("index", pos) != 0:
                continue
            delta = choice.get("delta")
            value = delta.get("content") if isinstance(delta, dict) else choice.get("text")
            if isinstance(value, str):
                out.append(value)
    return "".join(out)


# -- walking the sealed reply ------------------------------------------------------------------------------------

def reply_units(wire: bytes, *, stream: bool, endpoint: str) -> list[tuple[Any, list[Any]]]:
    """(parsed object, its response slots) for the buffered body or for every stream event, in wire order."""
    if not stream:
        body = serde_loads(wire, what="response body")
        if not isinstance(body, dict):
            raise E2EEError("the response body is not a JSON object", field="response body")
        return [(body, list(response_slots(body, endpoint)))]
    decoder = SSEDecoder()
    try:
        events = list(decoder.feed(bytes(wire)))
    except ParseError as exc:
        raise E2EEError(f"the reply stream cannot be read: {exc}") from None
    units = []
    for event in events:
        if event.done:
            continue
        chunk = serde_loads(event.data, what=f"stream event at byte {event.offset}")
        if not isinstance(chunk, dict):
            raise E2EEError(f"the stream event at byte {event.offset} is not a JSON object")
        units.append((chunk, list(stream_slots(chunk, endpoint))))
    return units


def is_present(slot: Any) -> bool:
    return slot.key in slot.container and slot.container[slot.key] is not None


def open_reply_with_keys(record: E2EERecord, wire: bytes, plaintexts: list[tuple[str, str]] | None = None
                         ) -> tuple[Any, tuple[str, ...]]:
    """Open every sealed reply value of ``wire`` with the record's field keys, each under its own AAD (request
    model, nonce and timestamp, response id, field path). Returns the decrypted reply (same form as
    ``record.reply``) and the paths opened. Any value that is unsealed, does not authenticate, or has no key
    raises :class:`E2EEError` naming its path. ``plaintexts``, when given, receives (path, decrypted text) per
    value opened."""
    suite = SUITES[record.algo]
    units = reply_units(wire, stream=record.stream, endpoint=record.endpoint)
    keys = list(record.reply_keys)
    opened: list[str] = []
    used = 0
    for obj, slots in units:
        rid = obj.get("id") if isinstance(obj.get("id"), str) else ""
        for slot in slots:
            if not is_present(slot):
                continue
            value = slot.container[slot.key]
            if not looks_sealed(suite, value):
                raise E2EEError(f"{slot.path} is not encrypted on the wire", field=slot.path)
            if used >= len(keys):
                raise E2EEError(f"the record holds no key for {slot.path} (sealed value {used + 1})", field=slot.path)
            try:
                key = bytes.fromhex(keys[used])
            except ValueError:
                raise E2EEError(f"the recorded key for {slot.path} is not hex", field=slot.path) from None
            used += 1
            _, nonce, sealed = _split(suite, value, slot.path)
            aad = response_aad(record.algo, record.model, rid, slot.path, record.nonce, record.timestamp)
            try:
                plaintext = AESGCM(key).decrypt(nonce, sealed, aad) if len(key) == 32 and \
                    len(nonce) == GCM_NONCE_BYTES else None
            except InvalidTag:
                plaintext = None
            if plaintext is None:
                raise E2EEError(f"{slot.path} does not authenticate under its AAD with the recorded key",
                                field=slot.path)
            try:
                text = plaintext.decode("utf-8")
            except UnicodeDecodeError:
                raise E2EEError(f"{slot.path} decrypted to bytes that are not UTF-8", field=slot.path) from None
            slot.container[slot.key] = serde_loads(text, what=slot.path) if slot.json_value else text
            opened.append(slot.path)
            if plaintexts is not None:
                plaintexts.append((slot.path, text))
    if used != len(keys):
        raise E2EEError(f"the record holds {len(keys)} field keys but the reply has {used} sealed values")
    reply = units[0][0] if not record.stream else [obj for obj, _ in units]
    return reply, tuple(opened)
