"""An E2EE v2 chat as it travelled, re-verified offline without any private key (ACI.md §6).

The record is :mod:`phalanb.aci.e2ee_record` (re-exported here); the live side (:mod:`phalanb.aci.e2ee`) writes it
when a reply arrives, and this module judges it and reads saved ones back for the wire. :class:`E2EERecord` rides on an :class:`~phalanb.wire.exchange.Exchange` (``exchange.e2ee``) next to the exact wire
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
from typing import Any, Mapping

from ..errors import E2EEError
from ..verdict import Check, Status
from ..wire.exchange import register_sealed_record_reader
from .e2ee import (AttestedE2EEKey, EncryptedRequest, check_request_encrypted, leaked_plaintext, record_e2ee,
                   reply_field_keys)
from .e2ee_crypto import parse_public_key, request_slots, serde_dumps, serde_loads
from .e2ee_record import E2EERecord, open_reply_with_keys, reply_text
from .established import EstablishedKeyset

__all__ = ["E2EERecord", "record_e2ee", "reply_field_keys", "open_reply_with_keys", "reply_text", "e2ee_checks",
           "E2EE_CHECK_IDS"]

E2EE_CHECK_IDS = ("e2ee.key_attested", "e2ee.request_encrypted", "e2ee.response_authenticated")


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


def _read_record(d: Any) -> Any:
    """A saved exchange's E2EE record: E2EE v3 records say ``version: 3``; anything else is read as v2."""
    if isinstance(d, Mapping) and d.get("version") == 3:
        from .e2ee_v3 import E2EEv3Record

        return E2EEv3Record.from_dict(d)
    return E2EERecord.from_dict(d)


# The wire stores a sealed exchange's record without knowing its protocol: reading a saved one back is ours.
register_sealed_record_reader(_read_record)
