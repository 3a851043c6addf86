"""ACI E2EE v2, the service side, for the simulated gateway: pure functions and small classes, no HTTP.

The gateway calls, per request:

1. :meth:`E2EEService.requested` — did the client send any E2EE header? (none → plaintext path);
2. :meth:`E2EEService.open_request` — validate the five headers as ACI.md §6 / ``spec/e2ee-v2.md`` §7 say, in the
   reference gateway's order, claim the replay tuple, decrypt the fields; returns an :class:`OpenedRequest` with
   the restored body (the bytes ``request.received`` hashes and the upstream receives) and the
   :class:`E2EEContext` for the reply;
3. :meth:`E2EEService.seal_response` (buffered) or :meth:`E2EEService.stream_sealer` (SSE, chunk by chunk), and
   :meth:`E2EEContext.response_headers`.

Every refusal is a :class:`SimE2EEError` carrying the protocol's ``e2ee_*`` type; :meth:`SimE2EEError.body` is the
400 body ``{"error":{"message","type","code":null,"param":null}}``.

>>> svc = E2EEService([ServiceE2EEKey.from_seed(bytes([3]) * 32, key_id="e2ee-1")], rng=deterministic_rng(b"t"))
>>> svc.keyset_entries()[0]["public_key"][:16]
'5dfedd3b6bd47f6f'
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from ..aci.e2ee_crypto import (
    COMPLETIONS, E2EE_VERSION, EMBEDDINGS, ENDPOINTS, NONCE_HEX_RE, SECP256K1, SUITES, X25519, Rng, Suite,
    deterministic_rng, open_field, parse_public_key, request_aad, request_slots, response_aad, response_slots,
    seal_field, serde_dumps, serde_loads, stream_slots, suite_for,
)
from ..errors import E2EEError

__all__ = [
    "SimE2EEError", "E2EE_ERROR_CODES", "ServiceE2EEKey", "ReplayCache", "E2EEContext", "OpenedRequest",
    "E2EEService", "SSESealer", "E2EE_REQUEST_HEADERS", "deterministic_rng",
    "DEFAULT_X25519_KEY_ID", "DEFAULT_SECP256K1_KEY_ID", "TIMESTAMP_WINDOW_S",
]

#: Every ``type`` an E2EE v2 refusal carries (ACI.md §1/§6, spec §9), all answered with HTTP 400.
E2EE_ERROR_CODES = (
    "e2ee_header_missing", "e2ee_invalid_version", "e2ee_invalid_public_key", "e2ee_model_key_mismatch",
    "e2ee_invalid_nonce", "e2ee_replay_detected", "e2ee_invalid_timestamp", "e2ee_invalid_payload_model",
    "e2ee_decryption_failed", "e2ee_unsupported_endpoint",
)
#: The five request headers, lower-case (HTTP header names are case-insensitive).
E2EE_REQUEST_HEADERS = ("x-e2ee-version", "x-client-pub-key", "x-model-pub-key", "x-e2ee-nonce", "x-e2ee-timestamp")
DEFAULT_X25519_KEY_ID = "dstack-kms-e2ee-x25519-v1"
DEFAULT_SECP256K1_KEY_ID = "dstack-kms-e2ee-v1"
#: |now − X-E2EE-Timestamp| may be at most this (spec §7).
TIMESTAMP_WINDOW_S = 300


class SimE2EEError(Exception):
    """A request or reply the E2EE layer refuses. ``code`` is the protocol's error ``type``; ``status`` the HTTP
    status (400 for every ``e2ee_*`` request error; 500 when the service cannot seal its own reply)."""

    def __init__(self, code: str, message: str, *, status: int = 400):
        self.code = code
        self.message = message
        self.status = status
        super().__init__(f"{code}: {message}")

    def body(self) -> bytes:
        """The OpenAI-shaped error body the gateway answers with."""
        return json.dumps({"error": {"message": self.message, "type": self.code, "code": None, "param": None}},
                          separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True, repr=False)
class ServiceE2EEKey:
    """One service E2EE key: the keyset entry it publishes and its private half (never in ``repr``)."""

    key_id: str
    algo: str
    _private: Any = field(compare=False)

    @classmethod
    def from_seed(cls, seed: bytes, *, algo: str = X25519, key_id: str | None = None) -> "ServiceE2EEKey":
        """A key from 32 secret bytes (the test vectors use 0x03×32 for X25519 key ``e2ee-1``)."""
        suite = suite_for(algo)
        default = DEFAULT_X25519_KEY_ID if algo == X25519 else DEFAULT_SECP256K1_KEY_ID
        return cls(key_id or default, algo, suite.private_from_bytes(bytes(seed)))

    @classmethod
    def generate(cls, *, algo: str = X25519, key_id: str | None = None, rng: Rng | None = None) -> "ServiceE2EEKey":
        suite = suite_for(algo)
        default = DEFAULT_X25519_KEY_ID if algo == X25519 else DEFAULT_SECP256K1_KEY_ID
        return cls(key_id or default, algo, suite.generate(rng))

    @property
    def suite(self) -> Suite:
        return SUITES[self.algo]

    @property
    def public_key(self) -> bytes:
        return self.suite.public_bytes(self._private)

    def entry(self) -> dict[str, str]:
        """The ``workload_keyset.e2ee_public_keys`` entry: ``{key_id, algo, public_key}`` (lowercase hex)."""
        return {"key_id": self.key_id, "algo": self.algo, "public_key": self.public_key.hex()}

    def __repr__(self) -> str:
        return f"<ServiceE2EEKey {self.key_id} {self.algo} {self.public_key.hex()[:16]}…>"


class ReplayCache:
    """Seen ``(client key, service key, nonce bytes)`` tuples, per process, bounded.

    A tuple is remembered until its timestamp has left the acceptance window (``ts + 300`` s), after which the
    timestamp check refuses a replay anyway. When ``max_entries`` unexpired tuples are held, the one expiring
    first is dropped; a replay of *that* tuple would then pass, so the bound is sized far above the simulator's
    traffic (a real gateway must share this state across replicas, spec §7).
    """

    def __init__(self, *, max_entries: int = 65536, window_s: int = TIMESTAMP_WINDOW_S):
        self.max_entries = max_entries
        self.window_s = window_s
        self._seen: OrderedDict[tuple[bytes, bytes, bytes], int] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def claim(self, client_key: bytes, service_key: bytes, nonce: bytes, *, ts: int, now: int) -> bool:
        """Record the tuple; False if it was already seen (a replay)."""
        key = (bytes(client_key), bytes(service_key), bytes(nonce))
        with self._lock:
            for old, expires in list(self._seen.items()):
                if expires >= now:
                    break
                del self._seen[old]  # insertion order ~ expiry order: stop at the first live one
            if key in self._seen:
                return False
            while len(self._seen) >= self.max_entries:
                self._seen.popitem(last=False)
            self._seen[key] = max(ts, now) + self.window_s
            return True


@dataclass(frozen=True, repr=False)
class E2EEContext:
    """What the reply needs from the request: the suite, the request model/nonce/ts for the AAD, the client key
    to seal to, and the endpoint (which fields to seal)."""

    algo: str
    key_id: str
    model: str
    nonce: str  # as sent (either case): the AAD binds the header's exact text
    timestamp: int
    client_public_key: bytes
    endpoint: str

    def response_headers(self) -> dict[str, str]:
        """``X-E2EE-Applied``, ``X-E2EE-Version``, ``X-E2EE-Algo`` (hints only; the tags are the proof)."""
        return {"X-E2EE-Applied": "true", "X-E2EE-Version": E2EE_VERSION, "X-E2EE-Algo": self.algo}

    def __repr__(self) -> str:
        return f"<E2EEContext {self.algo} model={self.model!r} endpoint={self.endpoint}>"


@dataclass(frozen=True)
class OpenedRequest:
    """A decrypted request: ``body`` the restored bytes (serde_json compact, client key order — what
    ``request.received.body_hash`` covers and what goes upstream), ``payload`` the same parsed, ``fields`` the
    paths that were sealed, ``context`` for the reply."""

    body: bytes
    payload: dict[str, Any]
    fields: tuple[str, ...]
    context: E2EEContext


class E2EEService:
    """The service end of E2EE v2 for a keyset's E2EE keys.

    ``keys`` are the :class:`ServiceE2EEKey` the keyset publishes (v2 suites only). ``clock`` returns Unix
    seconds; ``rng`` makes sealing deterministic (tests), else fresh randomness. One :class:`ReplayCache` per
    service (= per simulated process) unless one is passed.
    """

    def __init__(self, keys: Iterable[ServiceE2EEKey], *, replay_cache: ReplayCache | None = None,
                 clock: Callable[[], float] = time.time, rng: Rng | None = None):
        self.keys = list(keys)
        if not self.keys:
            raise ValueError("an E2EE service needs at least one key")
        for k in self.keys:
            suite_for(k.algo)
        self.replay = replay_cache or ReplayCache()
        self.clock = clock
        self.rng = rng

    @classmethod
    def from_seed(cls, seed: bytes | str, **kw: Any) -> "E2EEService":
        """Both suites' keys derived from ``seed`` (default key ids), for a reproducible simulator."""
        draw = deterministic_rng(b"phalanb-sim/e2ee/" + (seed.encode() if isinstance(seed, str) else seed))
        return cls([ServiceE2EEKey.generate(algo=X25519, rng=draw), ServiceE2EEKey.generate(algo=SECP256K1, rng=draw)],
                   **kw)

    def keyset_entries(self) -> list[dict[str, str]]:
        """The ``e2ee_public_keys`` list for the workload keyset."""
        return [k.entry() for k in self.keys]

    @staticmethod
    def requested(headers: Mapping[str, str]) -> bool:
        """True when any of the five E2EE v2 headers is present: the request then goes through
        :meth:`open_request` (which reports the missing ones) and must never be served in the clear."""
        names = {k.lower() for k in headers.keys()}
        return any(h in names for h in E2EE_REQUEST_HEADERS)

    # ---- requests ---------------------------------------------------------------------------------------------

    def open_request(self, headers: Mapping[str, str], body: bytes, endpoint: str) -> OpenedRequest:
        """Validate, replay-check and decrypt one request (checks in the reference gateway's order)."""
        h = {k.lower(): v for k, v in headers.items()}
        path = endpoint.split("?", 1)[0].rstrip("/")
        if path not in ENDPOINTS:
            raise SimE2EEError("e2ee_unsupported_endpoint",
                               f"E2EE v2 defines no encrypted fields for {path}; use {', '.join(ENDPOINTS)}")
        if "x-signing-algo" in h:
            raise SimE2EEError("e2ee_invalid_version", "X-Signing-Algo selects the legacy E2EE path, which this "
                               "service does not terminate; send X-E2EE-Version: 2 without X-Signing-Algo")
        version = h.get("x-e2ee-version")
        if version is None:
            raise SimE2EEError("e2ee_header_missing", "X-E2EE-Version is missing; E2EE v2 needs all five headers")
        if version != E2EE_VERSION:
            raise SimE2EEError("e2ee_invalid_version", f"X-E2EE-Version {version[:20]!r} is not supported; send 2")
        for name in E2EE_REQUEST_HEADERS[1:]:
            if name not in h:
                raise SimE2EEError("e2ee_header_missing", f"{_title(name)} is missing; E2EE v2 needs all five headers")
        nonce = h["x-e2ee-nonce"]
        if not NONCE_HEX_RE.fullmatch(nonce):
            raise SimE2EEError("e2ee_invalid_nonce", "X-E2EE-Nonce must be exactly 64 hex characters (32 bytes)")
        ts_text = h["x-e2ee-timestamp"]
        if not re.fullmatch(r"\+?[0-9]{1,20}", ts_text) or int(ts_text) > 2**64 - 1:
            raise SimE2EEError("e2ee_invalid_timestamp", "X-E2EE-Timestamp must be Unix seconds (an unsigned integer)")
        ts = int(ts_text)
        now = int(self.clock())
        if abs(now - ts) > TIMESTAMP_WINDOW_S:
            raise SimE2EEError("e2ee_invalid_timestamp",
                               f"X-E2EE-Timestamp is {ts - now:+d} s from the service clock; at most "
                               f"{TIMESTAMP_WINDOW_S} s either way is accepted")
        key = self._select_key(h["x-model-pub-key"])
        try:
            client_public = parse_public_key(key.algo, h["x-client-pub-key"], what="X-Client-Pub-Key")
            # An X25519 key of small order would make the shared secret all zero: refuse it up front.
            key.suite.shared_secret(key._private, client_public)
        except E2EEError as exc:
            raise SimE2EEError("e2ee_invalid_public_key", f"{exc} (suite {key.algo})") from None
        try:
            payload = serde_loads(body, what="request body")
        except E2EEError as exc:
            raise SimE2EEError("e2ee_decryption_failed", str(exc)) from None
        model = payload.get("model") if isinstance(payload, dict) else None
        if not isinstance(model, str):
            raise SimE2EEError("e2ee_invalid_payload_model",
                               "the request's top-level model must be a string: E2EE v2 binds it into the AAD")
        if not self.replay.claim(client_public, key.public_key, bytes.fromhex(nonce), ts=ts, now=now):
            raise SimE2EEError("e2ee_replay_detected", "this client key, service key and X-E2EE-Nonce were already "
                               "used; send a fresh nonce with every request")
        fields: list[str] = []
        for slot in list(request_slots(payload, path)):
            aad = request_aad(key.algo, model, slot.path, nonce, ts)
            try:
                plaintext = open_field(key.suite, key._private, slot.container[slot.key], aad, field=slot.path)
                text = plaintext.decode("utf-8")
            except E2EEError as exc:
                raise SimE2EEError("e2ee_decryption_failed", str(exc)) from None
            except UnicodeDecodeError:
                raise SimE2EEError("e2ee_decryption_failed", f"{slot.path} decrypted to bytes that are not UTF-8") \
                    from None
            slot.container[slot.key] = _restore_content(text) if slot.whole_content else text
            fields.append(slot.path)
        if not fields:
            where = "prompt" if path == COMPLETIONS else "input" if path == EMBEDDINGS else "messages"
            raise SimE2EEError("e2ee_decryption_failed",
                               f"E2EE v2 was requested but the body has no encrypted field ({where})")
        try:
            restored = serde_dumps(payload)
        except E2EEError as exc:
            raise SimE2EEError("e2ee_decryption_failed", str(exc)) from None
        ctx = E2EEContext(algo=key.algo, key_id=key.key_id, model=model, nonce=nonce, timestamp=ts,
                          client_public_key=client_public, endpoint=path)
        return OpenedRequest(body=restored, payload=payload, fields=tuple(fields), context=ctx)

    def _select_key(self, supplied: str) -> ServiceE2EEKey:
        # The first keyset entry the header equals under that entry's suite normalisation fixes the suite.
        for key in self.keys:
            try:
                if parse_public_key(key.algo, supplied) == key.public_key:
                    return key
            except E2EEError:
                continue
        raise SimE2EEError("e2ee_model_key_mismatch",
                           "X-Model-Pub-Key is not one of this service's attested E2EE v2 keys")

    # ---- replies ----------------------------------------------------------------------------------------------

    def seal_response(self, body: bytes, ctx: E2EEContext) -> bytes:
        """Seal every generated-content field of a buffered JSON reply; returns the wire bytes (serde compact,
        upstream member order). Raises :class:`SimE2EEError` (500) for a field that is not a string/null."""
        try:
            payload = serde_loads(body, what="response body")
        except E2EEError as exc:
            raise SimE2EEError("e2ee_encryption_failed", str(exc), status=500) from None
        self._seal(payload, ctx, list(response_slots(payload, ctx.endpoint)) if isinstance(payload, dict) else [])
        return serde_dumps(payload)

    def seal_chunk(self, data: bytes, ctx: E2EEContext) -> bytes:
        """Seal one streamed event's JSON (the ``data:`` payload). An empty ``delta.content`` is dropped (the
        spec allows omitting it) rather than sealed."""
        try:
            payload = serde_loads(data, what="stream event")
            slots = list(stream_slots(payload, ctx.endpoint)) if isinstance(payload, dict) else []
        except E2EEError as exc:
            raise SimE2EEError("e2ee_encryption_failed", str(exc), status=500) from None
        for slot in slots:
            if slot.path.endswith(".delta.content") and slot.container.get("content") == "":
                del slot.container["content"]
        self._seal(payload, ctx, slots)
        return serde_dumps(payload)

    def _seal(self, payload: Any, ctx: E2EEContext, slots: list[Any]) -> None:
        rid = payload.get("id") if isinstance(payload, dict) else None
        rid = rid if isinstance(rid, str) else ""
        suite = SUITES[ctx.algo]
        for slot in slots:
            if slot.key not in slot.container or slot.container[slot.key] is None:
                continue
            value = slot.container[slot.key]
            if slot.json_value:
                plaintext = serde_dumps(value)
            elif isinstance(value, str):
                plaintext = value.encode("utf-8")
            else:
                raise SimE2EEError("e2ee_encryption_failed", f"{slot.path} is a {type(value).__name__}, not text; "
                                   "it cannot be sealed", status=500)
            aad = response_aad(ctx.algo, ctx.model, rid, slot.path, ctx.nonce, ctx.timestamp)
            slot.container[slot.key] = seal_field(suite, ctx.client_public_key, plaintext, aad, rng=self.rng)

    def stream_sealer(self, ctx: E2EEContext) -> "SSESealer":
        return SSESealer(self, ctx)


def _restore_content(text: str) -> Any:
    """Whole-content plaintext that parses as a JSON array is structured content again; anything else is text."""
    try:
        value = serde_loads(text)
    except E2EEError:
        return text
    return value if isinstance(value, list) else text


_HEADER_NAMES = {"x-client-pub-key": "X-Client-Pub-Key", "x-model-pub-key": "X-Model-Pub-Key",
                 "x-e2ee-nonce": "X-E2EE-Nonce", "x-e2ee-timestamp": "X-E2EE-Timestamp"}


def _title(name: str) -> str:
    return _HEADER_NAMES.get(name, name)


class SSESealer:
    """Re-frames an SSE stream with its fields sealed, as the gateway's transformer does: lines split on ``\\n``
    (a trailing ``\\r`` dropped), an event ends at a blank line; an event without ``data`` (a ``: PROCESSING``
    keep-alive) and ``data: [DONE]`` pass unchanged; otherwise non-data lines are kept and the joined data is
    re-emitted sealed as one ``data: {json}\\n\\n``. ``push(chunk)`` returns the bytes ready to send;
    ``finish()`` flushes a final unterminated event."""

    def __init__(self, service: E2EEService, ctx: E2EEContext):
        self.service = service
        self.ctx = ctx
        self._line = bytearray()
        self._event: list[bytes] = []

    def push(self, chunk: bytes) -> bytes:
        self._line += chunk
        out = bytearray()
        while (end := self._line.find(b"\n")) >= 0:
            line = bytes(self._line[:end])
            del self._line[:end + 1]
            out += self._observe(line[:-1] if line.endswith(b"\r") else line)
        return bytes(out)

    def finish(self) -> bytes:
        out = bytearray()
        if self._line:
            line = bytes(self._line)
            self._line = bytearray()
            out += self._observe(line[:-1] if line.endswith(b"\r") else line)
        if self._event:
            out += self._dispatch()
        return bytes(out)

    def _observe(self, line: bytes) -> bytes:
        if not line:
            return self._dispatch()
        self._event.append(line)
        return b""

    def _dispatch(self) -> bytes:
        lines, self._event = self._event, []
        if not lines:
            return b""
        data_parts = []
        for line in lines:
            if line.startswith(b":") or not line.startswith(b"data:"):
                continue
            rest = line[5:]
            data_parts.append(rest[1:] if rest.startswith(b" ") else rest)
        if not data_parts or b"\n".join(data_parts) == b"[DONE]":
            return b"".join(line + b"\n" for line in lines) + b"\n"
        sealed = self.service.seal_chunk(b"\n".join(data_parts), self.ctx)
        kept = b"".join(line + b"\n" for line in lines if not line.startswith(b"data:"))
        return kept + b"data: " + sealed + b"\n\n"
