"""An E2EE v2 chat as it travelled, recorded so it can be re-verified offline without any private key (ACI.md §6).

:class:`E2EERecord` rides on an :class:`~phalanb.wire.exchange.Exchange` (``exchange.e2ee``) next to the exact wire
bytes (``request_bytes`` = the sealed request, ``response_bytes`` = the sealed reply). It keeps:

- the five request headers (all public: the client *public* key, the attested model key, nonce, timestamp);
- the restored request (the bytes the receipt's ``request.received`` hashes) and the sealed field paths;
- the decrypted reply and the paths of the fields that opened;
- per sealed reply field, the AES-256-GCM key that opened it (``reply_keys``). Each key is derived from one
  fresh server ephemeral key and the client key; it opens that one field only — whose plaintext the record holds
  anyway — and reveals nothing about the client private key, which is never stored. With these keys an auditor
  re-checks every reply tag under its AAD offline.

:func:`e2ee_checks` makes the three ``e2ee.*`` checks from a record, the established keyset and the wire bytes.

>>> record = exchange.e2ee                                           # doctest: +SKIP
>>> [c.id for c in e2ee_checks(record, keyset=att.keyset, request_bytes=exchange.request_bytes,
...                            response_bytes=exchange.response_bytes)]   # doctest: +SKIP
['e2ee.key_attested', 'e2ee.request_encrypted', 'e2ee.response_authenticated']
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import E2EEError, ParseError
from ..wire.exchange import register_sealed_record_reader
from ..wire.sse import SSEDecoder
from ..verdict import Check, Status
from .e2ee import (E2EE_HEADERS, AttestedE2EEKey, EncryptedRequest, StreamDecryptor, check_request_encrypted,
                   decrypt_response, leaked_plaintext)
from .e2ee_crypto import (
    GCM_NONCE_BYTES, SUITES, _split, endpoint_kind, looks_sealed, parse_public_key, request_slots, response_aad,
    response_slots, serde_dumps, serde_loads, stream_slots,
)

if TYPE_CHECKING:
    from .verify import EstablishedKeyset

__all__ = ["E2EERecord", "record_e2ee", "reply_field_keys", "open_reply_with_keys", "reply_text", "e2ee_checks",
           "E2EE_CHECK_IDS"]

E2EE_CHECK_IDS = ("e2ee.key_attested", "e2ee.request_encrypted", "e2ee.response_authenticated")


@dataclass
class E2EERecord:
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
    def model_public_key(self) -> str:
        return self.headers.get("X-Model-Pub-Key", "")

    @property
    def client_public_key(self) -> str:
        return self.headers.get("X-Client-Pub-Key", "")

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

def _reply_units(wire: bytes, *, stream: bool, endpoint: str) -> list[tuple[Any, list[Any]]]:
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


def _present(slot: Any) -> bool:
    return slot.key in slot.container and slot.container[slot.key] is not None


def reply_field_keys(request: EncryptedRequest, wire: bytes, *, stream: bool) -> tuple[str, ...]:
    """The AES-256-GCM key of every sealed reply value, in wire order, derived with the client private key the
    live ``request`` holds. Call after the reply decrypted (each key is then known to open its field)."""
    if request._client_private is None:
        raise E2EEError("this request carries no client private key: the reply's field keys cannot be derived")
    suite = request.model_key.suite
    keys = []
    for _, slots in _reply_units(wire, stream=stream, endpoint=request.endpoint):
        for slot in slots:
            if _present(slot):
                eph, _, _ = _split(suite, slot.container[slot.key], slot.path)
                keys.append(suite.aes_key(suite.shared_secret(request._client_private, eph)).hex())
    return tuple(keys)


def open_reply_with_keys(record: E2EERecord, wire: bytes, plaintexts: list[tuple[str, str]] | None = None
                         ) -> tuple[Any, tuple[str, ...]]:
    """Open every sealed reply value of ``wire`` with the record's field keys, each under its own AAD (request
    model, nonce and timestamp, response id, field path). Returns the decrypted reply (same form as
    ``record.reply``) and the paths opened. Any value that is unsealed, does not authenticate, or has no key
    raises :class:`E2EEError` naming its path. ``plaintexts``, when given, receives (path, decrypted text) per
    value opened."""
    suite = SUITES[record.algo]
    units = _reply_units(wire, stream=record.stream, endpoint=record.endpoint)
    keys = list(record.reply_keys)
    opened: list[str] = []
    used = 0
    for obj, slots in units:
        rid = obj.get("id") if isinstance(obj.get("id"), str) else ""
        for slot in slots:
            if not _present(slot):
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


def record_e2ee(request: EncryptedRequest, *, stream: bool, reply: Any = None, reply_fields: tuple[str, ...] = (),
                reply_keys: tuple[str, ...] = (), reply_error: str | None = None) -> E2EERecord:
    """The record of one sent :class:`~phalanb.aci.e2ee.EncryptedRequest` and how its reply opened."""
    return E2EERecord(algo=request.algo, key_id=request.model_key.key_id, headers=dict(request.headers),
                      restored_request=request.restored_body, encrypted_fields=request.encrypted_fields,
                      model=request.model, endpoint=request.endpoint, stream=stream,
                      key_attested=request.key_attested, keyset_digest=request.model_key.keyset_digest,
                      reply=reply, reply_fields=tuple(reply_fields), reply_keys=tuple(reply_keys),
                      reply_error=reply_error, warnings=request.warnings)


# -- the checks --------------------------------------------------------------------------------------------------

def _key_check(record: E2EERecord, keyset: "EstablishedKeyset | None") -> Check:
    cid = "e2ee.key_attested"
    ev: dict[str, Any] = {"algo": record.algo, "key_id": record.key_id, "public_key": record.model_public_key,
                          "keyset_digest": keyset.digest if keyset is not None else None}
    if not record.key_attested:
        return Check(cid, Status.SKIPPED, "the prompt was encrypted to a key supplied with UNVERIFIED_override: "
                     "nothing verified its private key is held inside the attested TEE when it was sent", ev)
    if keyset is None:
        return Check(cid, Status.SKIPPED, "no keyset was established (the report did not verify): the key the "
                     "prompt was encrypted to cannot be shown to be attested", ev)
    try:
        used = parse_public_key(record.algo, record.model_public_key, what="X-Model-Pub-Key")
    except E2EEError as exc:
        return Check(cid, Status.FAIL, f"the recorded model key is unusable: {exc}", ev)
    for entry in keyset.e2ee_keys:
        if entry.get("algo") != record.algo:
            continue
        try:
            listed = parse_public_key(record.algo, entry.get("public_key"))
        except E2EEError:
            continue
        if listed == used:
            ev["listed_key_id"] = entry.get("key_id")
            return Check(cid, Status.PASS, f"the prompt was encrypted to {entry.get('key_id') or 'a'} "
                         f"{record.algo} key of the verified keyset", ev)
    return Check(cid, Status.FAIL, f"the prompt was encrypted to a {record.algo} key the verified keyset does not "
                 "list: whoever holds it is not shown to be the attested gateway", ev)


def _same_outside(wire: Any, restored: Any, fields: tuple[str, ...], endpoint: str) -> bool:
    """True when the wire body and the restored body differ only at the sealed paths (the restored body, which
    the receipt hashes, is then the wire body with its prompt fields opened)."""
    a, b = copy.deepcopy(wire), copy.deepcopy(restored)
    for body in (a, b):
        for slot in list(request_slots(body, endpoint)):
            if slot.path in fields:
                slot.container[slot.key] = None
        if endpoint.endswith("/chat/completions") and isinstance(body.get("messages"), list):
            for m, message in enumerate(body["messages"]):
                # Whole-content parts arrays are restored as arrays: blank the whole content in both forms.
                if isinstance(message, dict) and f"messages.{m}.content" in fields:
                    message["content"] = None
    return a == b


def _request_check(record: E2EERecord, request_bytes: bytes | None) -> Check:
    cid = "e2ee.request_encrypted"
    if request_bytes is None:
        return Check(cid, Status.SKIPPED, "the exact request bytes sent were not given", {})
    try:
        parse_public_key(record.algo, record.model_public_key, what="X-Model-Pub-Key")
        # Only the key's shape matters here; whether it is attested is e2ee.key_attested's question.
        key = AttestedE2EEKey.UNVERIFIED_override(record.model_public_key, record.algo, key_id=record.key_id)
        request = EncryptedRequest.from_dict(
            {"body": request_bytes.decode("utf-8"), "headers": record.headers,
             "restored_body": record.restored_request.decode("utf-8"), "encrypted_fields": record.encrypted_fields,
             "algo": record.algo, "model": record.model, "nonce": record.nonce, "timestamp": record.timestamp,
             "endpoint": record.endpoint, "client_public_key": record.client_public_key}, model_key=key)
        restored = serde_loads(record.restored_request, what="restored request")
        if not isinstance(restored, dict):
            raise E2EEError("the restored request is not a JSON object")
        check = check_request_encrypted(request)
    except (E2EEError, UnicodeDecodeError) as exc:
        return Check(cid, Status.FAIL, f"the recorded request cannot be read as an E2EE v2 request: {exc}", {})
    except (IndexError, KeyError, TypeError, ValueError, AttributeError):
        # A restored request whose shape does not match the sent one (e.g. fewer messages) — never a crash.
        return Check(cid, Status.FAIL, "the restored request does not have the shape of the sent one", {})
    if check.status is not Status.PASS:
        return check
    try:
        wire = serde_loads(request_bytes, what="request body")
        restored = serde_loads(record.restored_request, what="restored body")
        consistent = isinstance(wire, dict) and isinstance(restored, dict) and wire.get("model") == record.model \
            and _same_outside(wire, restored, record.encrypted_fields, record.endpoint)
    except E2EEError:
        consistent = False
    if not consistent:
        return Check(cid, Status.FAIL, "the restored request differs from the sent one outside its sealed prompt "
                     "fields: the receipt's request.received would cover another request than the one sent",
                     check.evidence)
    return Check(cid, Status.PASS, check.reason + "; the restored request is the sent one with those fields "
                 "opened (their decryption needs the service's key: the gateway's signed request.received shows "
                 "what it opened)", check.evidence)


def _response_check(record: E2EERecord, response_bytes: bytes | None, response_hash: Check | None) -> Check:
    cid = "e2ee.response_authenticated"
    ev: dict[str, Any] = {"recorded_fields": len(record.reply_fields)}
    if record.reply_error is not None:
        return Check(cid, Status.FAIL, f"the reply did not decrypt when it arrived: {record.reply_error}", ev)
    if response_bytes is None:
        return Check(cid, Status.SKIPPED, "the exact reply bytes were not given", ev)
    plaintexts: list[tuple[str, str]] = []
    try:
        reply, opened = open_reply_with_keys(record, response_bytes, plaintexts)
    except E2EEError as exc:
        return Check(cid, Status.FAIL, str(exc), {**ev, "field": exc.field})
    ev.update(fields=len(opened), paths=sorted(set(opened)))
    if not opened:
        return Check(cid, Status.SKIPPED, "the reply carried no generated content field to authenticate", ev)
    if record.stream:
        plaintexts.append(("the assembled text", reply_text(reply, stream=True)))
    leaked = leaked_plaintext(plaintexts, response_bytes)
    if leaked:
        return Check(cid, Status.FAIL, f"the decrypted text of {', '.join(dict.fromkeys(leaked))} also appears in "
                     "the reply bytes: the answer crossed the wire in clear", {**ev, "leaked": leaked})
    if record.reply is None or serde_dumps(reply) != serde_dumps(record.reply):
        return Check(cid, Status.FAIL, "the recorded decrypted reply is not what the sealed reply bytes open to", ev)
    if response_hash is None or response_hash.status is not Status.PASS:
        # The field keys are in the record: anyone holding it could re-seal other text under them. Only the signed
        # receipt's hash over these exact bytes shows the ciphertext is the gateway's.
        why = ("no receipt check was given" if response_hash is None else
               "the signed receipt does not cover these bytes (receipt.response_hash did not pass)")
        return Check(cid, Status.SKIPPED, f"{len(opened)} reply field(s) open under their AAD with the recorded keys, "
                     f"but {why}, so the ciphertext is not shown to be the gateway's", ev)
    return Check(cid, Status.PASS, f"{len(opened)} reply field(s) authenticate under their AAD (model, nonce, "
                 "timestamp, response id, field path) with the per-field keys derived when the reply arrived, over "
                 "the exact bytes the signed receipt covers; the client private key is not needed (and never "
                 "stored)", ev)


def e2ee_checks(record: E2EERecord, *, keyset: "EstablishedKeyset | None", request_bytes: bytes | None,
                response_bytes: bytes | None, response_hash: Check | None = None) -> list[Check]:
    """``e2ee.key_attested``, ``e2ee.request_encrypted``, ``e2ee.response_authenticated`` for one exchange.

    ``request_bytes``/``response_bytes``: the exact wire bytes; ``response_hash``: the receipt's
    ``receipt.response_hash`` check — the recorded field keys prove a reply only for bytes the signed receipt
    covers, so without a passing one ``e2ee.response_authenticated`` is skipped."""
    return [_key_check(record, keyset), _request_check(record, request_bytes),
            _response_check(record, response_bytes, response_hash)]


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


def _read_record(d: Any) -> Any:
    """A saved exchange's E2EE record: E2EE v3 records say ``version: 3``; anything else is read as v2."""
    if isinstance(d, Mapping) and d.get("version") == 3:
        from .e2ee_v3 import E2EEv3Record

        return E2EEv3Record.from_dict(d)
    return E2EERecord.from_dict(d)


# The wire stores a sealed exchange's record without knowing its protocol: reading a saved one back is ours.
register_sealed_record_reader(_read_record)
