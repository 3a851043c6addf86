"""One chat exchange as it happened on the wire: the exact request bytes, the exact response bytes, and when
each piece arrived.

Both ways of chatting (phalanb's own :class:`~phalanb.wire.client.Client` and the OpenAI-SDK capture in
:mod:`phalanb.wire.capture`) feed raw chunks into an :class:`ExchangeRecorder`, so there is one definition of "the
bytes" and one of "the timings".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .apikey import REDACTED
from ..errors import ParseError
from .sse import ChatAssembler, SSEDecoder, parse_completion

#: Reads a sealed exchange's saved record (``exchange.e2ee``) back. The wire carries bytes and knows no protocol:
#: the protocol that seals chats registers its reader (phalanb.aci.e2ee_wire does, when imported).
_sealed_record_reader: Callable[[Any], Any] | None = None


def register_sealed_record_reader(reader: Callable[[Any], Any]) -> None:
    """Make ``reader`` read the ``e2ee`` record of a saved exchange in :meth:`Exchange.from_dict`."""
    global _sealed_record_reader
    _sealed_record_reader = reader

__all__ = ["Timings", "Exchange", "ExchangeRecorder", "redact_headers", "register_sealed_record_reader"]

_SECRET_HEADERS = {"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie", "set-cookie"}


def redact_headers(headers: Mapping[str, str] | Any) -> dict[str, str]:
    """Headers as a plain dict with every credential replaced by ``<redacted>``."""
    items = headers.multi_items() if hasattr(headers, "multi_items") else headers.items()
    out: dict[str, str] = {}
    for k, v in items:
        out[k.lower()] = REDACTED if k.lower() in _SECRET_HEADERS else v
    return out


@dataclass
class Timings:
    """``time.perf_counter_ns`` stamps of one exchange (monotonic; compare within a process only).

    ``chunks`` holds (arrival ns, byte count) for every raw chunk read from the socket.

    The byte stamps are exact by construction: ``first_byte_ns`` is the first chunk's stamp and ``last_byte_ns``
    the last one's, so ``ttfb_ns + sum(chunk_gaps_ns) == last_byte_ns - request_sent_ns`` holds in integers.
    ``done_ns`` comes later (after the response was closed and parsed), so ``total_s`` includes that tail.

    >>> t = Timings(request_sent_ns=0, first_byte_ns=5, last_byte_ns=20, chunks=[(5, 10), (12, 3), (20, 7)])
    >>> t.ttfb_ns + sum(t.chunk_gaps_ns) == t.last_byte_ns
    True
    """

    request_sent_ns: int = 0
    headers_ns: int | None = None
    first_byte_ns: int | None = None
    first_token_ns: int | None = None
    done_ns: int | None = None
    chunks: list[tuple[int, int]] = field(default_factory=list)
    token_ns: list[int] = field(default_factory=list)  # arrival of every chunk that added content
    wall_start: float = 0.0  # time.time() at request_sent, to place the exchange on a calendar
    last_byte_ns: int | None = None  # stamp of the last raw chunk (== chunks[-1][0])

    def _since(self, ns: int | None) -> float | None:
        return None if ns is None else (ns - self.request_sent_ns) / 1e9

    @property
    def ttfb_s(self) -> float | None:
        """Seconds from sending the request to the first body byte."""
        return self._since(self.first_byte_ns)

    @property
    def ttft_s(self) -> float | None:
        """Seconds from sending the request to the first chunk that carried content."""
        return self._since(self.first_token_ns)

    @property
    def total_s(self) -> float | None:
        """Seconds from sending the request until the exchange was finished (response closed and parsed)."""
        return self._since(self.done_ns)

    @property
    def ttfb_ns(self) -> int | None:
        return None if self.first_byte_ns is None else self.first_byte_ns - self.request_sent_ns

    @property
    def last_byte_total_ns(self) -> int | None:
        """Nanoseconds from sending the request to the last body byte: exactly ttfb + the chunk gaps."""
        last = self.last_byte_ns if self.last_byte_ns is not None else (self.chunks[-1][0] if self.chunks else None)
        return None if last is None else last - self.request_sent_ns

    @property
    def last_byte_s(self) -> float | None:
        ns = self.last_byte_total_ns
        return None if ns is None else ns / 1e9

    @property
    def chunk_gaps_ns(self) -> list[int]:
        """Gaps between consecutive raw chunks, in integer nanoseconds (no rounding, so they add up exactly)."""
        return [b[0] - a[0] for a, b in zip(self.chunks, self.chunks[1:])]

    @property
    def token_gaps_ns(self) -> list[int]:
        return [b - a for a, b in zip(self.token_ns, self.token_ns[1:])]

    @property
    def inter_token_s(self) -> list[float]:
        return [(b - a) / 1e9 for a, b in zip(self.token_ns, self.token_ns[1:])]

    def to_dict(self) -> dict[str, Any]:
        return {"request_sent_ns": self.request_sent_ns, "headers_ns": self.headers_ns,
                "first_byte_ns": self.first_byte_ns, "first_token_ns": self.first_token_ns,
                "done_ns": self.done_ns, "chunks": [list(c) for c in self.chunks],
                "token_ns": list(self.token_ns), "wall_start": self.wall_start, "last_byte_ns": self.last_byte_ns}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Timings":
        # Saved timings are read back from files: every stamp must be an integer (or absent), or the timing
        # tables would fail later, far from the file that was wrong.
        if not isinstance(d, Mapping):
            raise ParseError("timings must be an object", field="exchange.timings")

        def ns(key: str, value: Any) -> Any:
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise ParseError(f"must be integer nanoseconds, got {type(value).__name__}",
                                 field=f"exchange.timings.{key}")
            return value

        chunks_in, token_in = d.get("chunks", []), d.get("token_ns", [])
        if not isinstance(chunks_in, list) or not isinstance(token_in, list):
            raise ParseError("chunks and token_ns must be lists", field="exchange.timings")
        if not all(isinstance(c, (list, tuple)) and len(c) == 2 for c in chunks_in):
            raise ParseError("each chunk is [arrival ns, byte count]", field="exchange.timings.chunks")
        if d.get("request_sent_ns", 0) is None:  # every duration is measured from it
            raise ParseError("must be integer nanoseconds, got null", field="exchange.timings.request_sent_ns")
        for key in ("request_sent_ns", "headers_ns", "first_byte_ns", "first_token_ns", "done_ns", "last_byte_ns"):
            ns(key, d.get(key))
        for c in chunks_in:
            ns("chunks", c[0]), ns("chunks", c[1])
        for t in token_in:
            ns("token_ns", t)
        wall = d.get("wall_start", 0.0)
        if not isinstance(wall, (int, float)) or isinstance(wall, bool):
            raise ParseError("must be Unix seconds", field="exchange.timings.wall_start")
        chunks = [tuple(c) for c in chunks_in]
        last = d.get("last_byte_ns")
        if last is None and chunks:  # saved before last_byte_ns existed: the last chunk's stamp is the same fact
            last = chunks[-1][0]
        return cls(request_sent_ns=d.get("request_sent_ns", 0), headers_ns=d.get("headers_ns"),
                   first_byte_ns=d.get("first_byte_ns"), first_token_ns=d.get("first_token_ns"),
                   done_ns=d.get("done_ns"), chunks=chunks,
                   token_ns=list(d.get("token_ns", [])), wall_start=d.get("wall_start", 0.0), last_byte_ns=last)


@dataclass
class Exchange:
    """A chat request and its reply, byte-exact. Hash ``request_bytes`` and ``response_bytes``; nothing else."""

    url: str
    request_bytes: bytes
    response_bytes: bytes
    status: int
    stream: bool
    request_headers: dict[str, str] = field(default_factory=dict)
    response_headers: dict[str, str] = field(default_factory=dict)
    chat_id: str | None = None
    model: str | None = None
    text: str = ""
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None
    complete: bool = True
    timings: Timings = field(default_factory=Timings)
    content_error: str | None = None  # why the bytes could not be read as a chat reply (they are kept as is)
    # ACI (ACI.md §1): the gateway's X-Receipt-Id and X-ACI-Keyset-Digest, and the SHA-256 of the SPKI of the
    # certificate the connection actually used (None over plain http).
    receipt_id: str | None = None
    aci_keyset_digest: str | None = None
    tls_spki_sha256: str | None = None
    # ACI E2EE v2 (ACI.md §6): request_bytes/response_bytes stay the exact *wire* bytes (ciphertext); the record
    # keeps the restored request, the decrypted reply and what offline re-verification needs (no private key).
    # ``text`` is then the decrypted reply text.
    e2ee: Any = None  # the sealing protocol's record (phalanb.aci.E2EERecord), see phalanb.wire.encryption

    @property
    def request_sha256(self) -> str:
        return hashlib.sha256(self.request_bytes).hexdigest()

    @property
    def response_sha256(self) -> str:
        return hashlib.sha256(self.response_bytes).hexdigest()

    @property
    def output_tokens(self) -> int | None:
        if self.usage and isinstance(self.usage.get("completion_tokens"), int):
            return self.usage["completion_tokens"]
        return None

    def __repr__(self) -> str:
        return (f"<Exchange {self.chat_id or '?'} {'stream' if self.stream else 'json'} status={self.status} "
                f"request={len(self.request_bytes)}B response={len(self.response_bytes)}B"
                f"{' e2ee ' + self.e2ee.algo.split('-')[0] if self.e2ee is not None else ''}>")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: bytes in base64, headers already redacted."""
        return {
            "url": self.url, "status": self.status, "stream": self.stream,
            "request_b64": base64.b64encode(self.request_bytes).decode(),
            "response_b64": base64.b64encode(self.response_bytes).decode(),
            "request_headers": redact_headers(self.request_headers),
            "response_headers": redact_headers(self.response_headers),
            "chat_id": self.chat_id, "model": self.model, "text": self.text, "usage": self.usage,
            "finish_reason": self.finish_reason, "complete": self.complete, "timings": self.timings.to_dict(),
            # Written only when known, so exchanges of the legacy protocol keep their old form.
            **{k: v for k, v in (("receipt_id", self.receipt_id), ("aci_keyset_digest", self.aci_keyset_digest),
                                 ("tls_spki_sha256", self.tls_spki_sha256)) if v is not None},
            **({"e2ee": self.e2ee.to_dict()} if self.e2ee is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, raw: tuple[bytes, bytes] | None = None) -> "Exchange":
        """The exchange :meth:`to_dict` wrote. ``raw``: the exact (request, response) bytes, when they were stored
        beside the object rather than in it as base64 (a framed batch's records); the object may then not carry
        ``request_b64``/``response_b64`` as well."""
        if not isinstance(d, Mapping):
            raise ParseError("an exchange must be a JSON object", field="exchange")
        if raw is not None:
            for key in ("request_b64", "response_b64"):
                if key in d:  # two sources for the bytes: which would be the exact ones is not for a reader to pick
                    raise ParseError(f"a framed record carries its bytes raw, so its exchange may not hold {key}",
                                     field=f"exchange.{key}")
            req, resp = bytes(raw[0]), bytes(raw[1])
        else:
            try:
                req = base64.b64decode(d["request_b64"], validate=True)
                resp = base64.b64decode(d["response_b64"], validate=True)
            except KeyError as exc:
                raise ParseError(f"missing {exc.args[0]}", field=f"exchange.{exc.args[0]}") from None
            except (binascii.Error, TypeError, ValueError) as exc:
                raise ParseError(f"not valid base64 ({exc})", field="exchange.request_b64/response_b64") from None
        try:
            status = int(d.get("status", 200))
            request_headers = {str(k): str(v) for k, v in dict(d.get("request_headers") or {}).items()}
            response_headers = {str(k): str(v) for k, v in dict(d.get("response_headers") or {}).items()}
        except (TypeError, ValueError, OverflowError) as exc:
            raise ParseError(f"status or headers malformed ({exc})", field="exchange") from None
        ex = cls.from_bytes(url=str(d.get("url", "")), request_bytes=req, response_bytes=resp,
                            status=status, stream=bool(d.get("stream")), request_headers=request_headers,
                            response_headers=response_headers, timings=Timings.from_dict(d.get("timings") or {}))
        ex.complete = bool(d.get("complete", ex.complete))
        for key in ("receipt_id", "aci_keyset_digest", "tls_spki_sha256"):
            value = d.get(key)
            if value is not None and not isinstance(value, str):
                raise ParseError(f"must be a string, got {type(value).__name__}", field=f"exchange.{key}")
            if value is not None:
                setattr(ex, key, value)
        if d.get("e2ee") is not None:
            if _sealed_record_reader is None:
                raise ParseError("a sealed exchange's record is read by the protocol that sealed it, and none is "
                                 "loaded: import phalanb.aci (ACI E2EE v2) before reading this exchange",
                                 field="exchange.e2ee")
            ex.e2ee = _sealed_record_reader(d["e2ee"])
            # The wire reply is ciphertext: the readable text is the recorded decrypted reply (a claim until
            # verify_aci re-opens the sealed fields with the recorded field keys).
            ex.text = ex.e2ee.text
        return ex

    @classmethod
    def from_bytes(cls, *, request_bytes: bytes, response_bytes: bytes, stream: bool | None = None,
                   url: str = "", status: int = 200, request_headers: Mapping[str, str] | None = None,
                   response_headers: Mapping[str, str] | None = None, timings: Timings | None = None) -> "Exchange":
        """Rebuild an exchange from saved bytes (e.g. the fixtures' ``request_body.json`` + ``response_body.sse``).

        ``stream`` is guessed from the response when not given: SSE bodies start with ``data:``.
        """
        if stream is None:
            stream = response_bytes.lstrip().startswith((b"data:", b":"))
        rec = ExchangeRecorder(url=url, request_bytes=request_bytes, stream=stream,
                               request_headers=dict(request_headers or {}))
        rec.status = status
        rec.response_headers = dict(response_headers or {})
        rec.feed(response_bytes, now_ns=0)
        ex = rec.finish(now_ns=0)
        if timings is not None:
            ex.timings = timings
        return ex


class ExchangeRecorder:
    """Collects raw response chunks as they arrive and understands them on the fly (for timings and live text).

    The bytes are appended untouched; parsing failures of the *content* do not alter them.
    """

    def __init__(self, *, url: str, request_bytes: bytes, stream: bool, request_headers: Mapping[str, str],
                 on_text: Callable[[str], None] | None = None):
        self.url = url
        self.request_bytes = request_bytes
        self.stream = stream
        self.request_headers = redact_headers(request_headers)
        self.response_headers: dict[str, str] = {}
        self.status = 0
        self._parts: list[bytes] = []
        self._decoder = SSEDecoder() if stream else None
        self._assembler = ChatAssembler()
        self._on_text = on_text
        self.content_error: str | None = None
        self.tls_spki_sha256: str | None = None  # set by the client from the live connection
        self.timings = Timings(request_sent_ns=time.perf_counter_ns(), wall_start=time.time())

    def mark_sent(self) -> None:
        self.timings.request_sent_ns = time.perf_counter_ns()
        self.timings.wall_start = time.time()

    def mark_headers(self, status: int, headers: Mapping[str, str] | Any) -> None:
        self.timings.headers_ns = time.perf_counter_ns()
        self.status = status
        self.response_headers = redact_headers(headers)

    def feed(self, chunk: bytes, *, now_ns: int | None = None) -> None:
        if not chunk:
            return
        t = time.perf_counter_ns() if now_ns is None else now_ns
        if self.timings.first_byte_ns is None:
            self.timings.first_byte_ns = t
        self.timings.last_byte_ns = t
        self.timings.chunks.append((t, len(chunk)))
        self._parts.append(chunk)
        if self._decoder is not None and self.status < 400 and self.content_error is None:
            try:
                events = list(self._decoder.feed(chunk))
            except ParseError as exc:
                events = []
                self.content_error = str(exc)
            for event in events:
                try:
                    added = self._assembler.add(event)
                except ParseError as exc:
                    # The bytes stay exactly as received (and hashable); only their meaning is unknown.
                    self.content_error = str(exc)
                    break
                if added:
                    if self.timings.first_token_ns is None:
                        self.timings.first_token_ns = t
                    self.timings.token_ns.append(t)
                    if self._on_text is not None:
                        self._on_text(added)

    def replace_body(self, body: bytes) -> None:
        """Swap the received bytes for their decompressed form (the form the service hashed)."""
        self._parts = [body]

    @property
    def received(self) -> bytes:
        return b"".join(self._parts)

    def finish(self, *, complete: bool = True, now_ns: int | None = None) -> Exchange:
        self.timings.done_ns = time.perf_counter_ns() if now_ns is None else now_ns
        body = self.received
        if self.stream:
            asm = self._assembler
            leftover = self._decoder.close() if self._decoder else b""
            if leftover.strip() or self.content_error is not None:
                complete = False
            if not asm.saw_done:
                complete = False
        elif self.status < 400 and complete:
            try:
                asm = parse_completion(body)
            except ParseError as exc:
                self.content_error = str(exc)
                asm = ChatAssembler()
            if self.timings.first_byte_ns is not None:
                self.timings.first_token_ns = self.timings.first_byte_ns
                self.timings.token_ns = [self.timings.first_byte_ns]
            if asm.text and self._on_text is not None:
                self._on_text(asm.text)
        else:
            asm = ChatAssembler()
        return Exchange(url=self.url, request_bytes=self.request_bytes, response_bytes=body, status=self.status,
                        stream=self.stream, request_headers=self.request_headers,
                        response_headers=self.response_headers, chat_id=asm.chat_id, model=asm.model,
                        text=asm.text, usage=asm.usage, finish_reason=asm.finish_reason,
                        complete=complete and self.content_error is None, content_error=self.content_error,
                        timings=self.timings, receipt_id=self.response_headers.get("x-receipt-id"),
                        aci_keyset_digest=self.response_headers.get("x-aci-keyset-digest"),
                        tls_spki_sha256=self.tls_spki_sha256)
