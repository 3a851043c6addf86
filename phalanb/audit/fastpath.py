"""The per-reply half of a batch audit, built for throughput: a worker reads its own share of a JSONL batch (a byte
span of the file, never bytes pickled to it), decides each reply's own links and sends back one compact row.

The decisions are :func:`phalanb.vllm.verify.chat_checks`'s, not a second implementation of them. The common case —
both hashes match and an EIP-191 signature recovers — is decided here with the primitives ``chat_checks`` ends in
(sha256; keccak-256 and libsecp256k1 recovery through coincurve, as eth-account does), without building
:class:`~phalanb.verdict.Check` objects. Every other case (a hash that differs, a signed text or signature that
does not parse, ed25519, a line that does not read) is handed to ``chat_checks`` and the exact line reader, so a
failing row is decided by the very code that decides a single verification.

Lines are read with orjson where its reading is the exact reader's (:func:`_fast_json`, :func:`_fast_reply`); any
line it would read otherwise — or refuse — is read again by the exact reader, which decides it or words its error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import sys
import threading
from itertools import chain, repeat
from typing import Any, Iterator

import msgspec
import orjson
from coincurve import PublicKey
from eth_hash.auto import keccak
from eth_utils import to_checksum_address

try:  # the same libsecp256k1 calls coincurve's PublicKey.from_signature_and_message makes, minus its wrappers
    from coincurve._libsecp256k1 import ffi as _ffi
    from coincurve._libsecp256k1 import lib as _lib
    from coincurve.context import GLOBAL_CONTEXT as _CONTEXT
except ImportError:  # pragma: no cover - another coincurve layout: the public API
    _lib = None
try:  # eth_hash's own backend, called without eth_hash's dispatch
    from Crypto.Hash import keccak as _keccak

    def _keccak256(data: bytes) -> bytes:
        return _keccak.new(data=data, digest_bits=256).digest()
except ImportError:  # pragma: no cover
    _keccak256 = keccak


def _raw_keccak() -> Any:
    """Keccak-256 straight through pycryptodome's C functions (the calls its ``Keccak_Hash`` makes, minus its
    Python wrapping), with one state per thread, reset before each hash, so threads never share one; None when
    that library is laid out otherwise or disagrees with published digests (then the wrapper above)."""
    try:
        from Crypto.Util._raw_api import backend, ffi

        lib = _keccak._raw_keccak_lib
        if backend != "cffi":
            return None
    except (ImportError, AttributeError, NameError):  # pragma: no cover
        return None
    local = threading.local()

    def keccak256(data: bytes) -> bytes:
        try:
            state, out = local.state
        except AttributeError:
            holder = ffi.new("void **")
            if lib.keccak_init(holder, 64, 24):  # capacity 2 x 32 bytes, 24 rounds: Keccak-256
                raise MemoryError("no memory for a keccak state") from None
            state, out = local.state = (ffi.gc(holder[0], lib.keccak_destroy), ffi.new("uint8_t[32]"))
        lib.keccak_reset(state)
        lib.keccak_absorb(state, data, len(data))
        lib.keccak_digest(state, out, 32, 0x01)  # 0x01: the original Keccak padding, as Ethereum uses
        return ffi.buffer(out)[:]

    try:
        ok = (keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
              and keccak256(b"abc").hex() == "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"
              and keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470")
    except (AttributeError, TypeError, MemoryError):  # pragma: no cover - e.g. no keccak_reset in this version
        return None
    return keccak256 if ok else None


_keccak256 = _raw_keccak() or _keccak256

from ..wire import frames as _frames
from .. import _json
from ..errors import ParseError
from ..aci import e2ee_wire as _e2ee_wire  # noqa: F401  (registers the E2EE record reader Exchange.from_dict uses)
from ..wire.exchange import Exchange, Timings
from ..vllm.signatures import ALGOS, SignatureRecord, check_signature, parse_signed_text, response_hash_candidates
from ..wire.sse import MAX_EVENT_BYTES, ChatAssembler, SSEDecoder
from ..verdict import Status
from ..vllm.verify import chat_checks

PASS, FAIL, SKIPPED = Status.PASS, Status.FAIL, Status.SKIPPED

#: A worker's share of a JSONL batch: about this many bytes of whole lines.
SPAN_BYTES = 1 << 20

# -- the signature: EIP-191 recovery without the wrappers --------------------------------------------------------

_EIP191 = b"\x19Ethereum Signed Message:\n"
#: Recovered public key -> checksummed address. keccak is a function of the key's bytes alone, so this memo can
#: never answer for a key other than the one it was computed from; replies signed by one node share one entry.
_ADDRESSES: dict[bytes, str] = {}


def _address(public_key: bytes) -> str:
    address = _ADDRESSES.get(public_key)
    if address is None:
        if len(_ADDRESSES) > 4096:
            _ADDRESSES.clear()
        address = _ADDRESSES[public_key] = to_checksum_address(_keccak256(public_key[1:])[-20:])
    return address


def fast_signer(record: SignatureRecord) -> str | None:
    """The address an ecdsa record recovers to, or None whenever the case is not the plain one (then
    :func:`~phalanb.vllm.signatures.check_signature` decides, with its own error message)."""
    if record.signing_algo != "ecdsa":
        return None
    value = record.signature
    body = value[2:] if value[:2] in ("0x", "0X") else value
    if len(body) != 130:
        return None
    try:
        sig = bytes.fromhex(body)
        message = record.text.encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        return None
    if len(sig) != 65:  # fromhex skips spaces
        return None
    v = sig[64]
    if v not in (27, 28):
        return None
    digest = _keccak256(_EIP191 + str(len(message)).encode() + message)
    key = _recover(sig, v - 27, digest)
    return None if key is None else _address(key)


def _recover(sig: bytes, recid: int, digest: bytes) -> bytes | None:
    """The uncompressed public key (65 bytes) that signed ``digest``, or None (r or s out of range, no point for
    r): check_signature then words the failure."""
    if _lib is None:  # pragma: no cover
        try:
            return PublicKey.from_signature_and_message(sig[:64] + bytes((recid,)), digest,
                                                        hasher=None).format(compressed=False)
        except Exception:
            return None
    try:  # this thread's buffers: every call below writes them in full before they are read
        parsed, key, out, size = _BUFFERS.recover
    except AttributeError:
        parsed, key = _ffi.new("secp256k1_ecdsa_recoverable_signature *"), _ffi.new("secp256k1_pubkey *")
        out, size = _ffi.new("unsigned char[65]"), _ffi.new("size_t *")
        _BUFFERS.recover = parsed, key, out, size
    ctx = _CONTEXT.ctx
    if not _lib.secp256k1_ecdsa_recoverable_signature_parse_compact(ctx, parsed, sig[:64], recid):
        return None
    if not _lib.secp256k1_ecdsa_recover(ctx, key, parsed, digest):
        return None
    size[0] = 65
    _lib.secp256k1_ec_pubkey_serialize(ctx, out, size, key, _lib.SECP256K1_EC_UNCOMPRESSED)
    return _ffi.buffer(out, 65)[:]


_BUFFERS = threading.local()


def decide(request_bytes: bytes | None, response_bytes: bytes | None, stream: bool, record: SignatureRecord
           ) -> tuple[Status, Status, Status, str | None]:
    """(``request.hash``, ``response.hash``, ``signature.valid``) statuses and the signer, as ``chat_checks``
    would give them for an exchange with these bytes (``None``: no exchange)."""
    text = record.text
    # The usual text, req_hash:resp_hash: when both halves equal the hex digests of the bytes, they are 64 lowercase
    # hex digits each, so parse_signed_text would read exactly these two hashes, and both match.
    if (request_bytes is not None and len(text) == 129 and text[64] == ":"
            and text[:64] == hashlib.sha256(request_bytes).hexdigest()
            and text[65:] == hashlib.sha256(response_bytes).hexdigest()):
        signer = fast_signer(record)
        if signer is not None:
            return PASS, PASS, PASS, signer
        check, signer = check_signature(record)
        return PASS, PASS, check.status, signer
    try:
        signed = parse_signed_text(text)
    except Exception:
        return _slow(request_bytes, response_bytes, stream, record)
    if request_bytes is None:
        req = resp = SKIPPED
    else:
        req = PASS if hashlib.sha256(request_bytes).hexdigest() == signed.request_hash else FAIL
        if hashlib.sha256(response_bytes).hexdigest() == signed.response_hash:
            resp = PASS
        elif stream:
            resp = FAIL
        else:  # the older servers' re-serialised body may still match: the candidates decide
            resp = PASS if any(c.sha256 == signed.response_hash
                               for c in response_hash_candidates(response_bytes, stream=False)) else FAIL
    signer = fast_signer(record)
    if signer is not None:
        return req, resp, PASS, signer
    check, signer = check_signature(record)
    return req, resp, check.status, signer


def _slow(request_bytes: bytes | None, response_bytes: bytes | None, stream: bool, record: SignatureRecord
          ) -> tuple[Status, Status, Status, str | None]:
    ex = None
    if request_bytes is not None:
        ex = Exchange(url="", request_bytes=request_bytes, response_bytes=response_bytes, status=200, stream=stream)
    checks, signer = chat_checks(ex, record)
    return checks[0].status, checks[1].status, checks[2].status, signer


# -- reading a line the way Exchange.from_dict does, minus what a row does not need ------------------------------

def _fast_json(data: bytes | str) -> Any:
    """``orjson``'s reading of ``data`` (about three times faster than :func:`phalanb._json.loads`), or None when
    it may differ from that exact reader's.

    The two agree on every document orjson accepts, with three exceptions, all handled: orjson keeps the last of
    duplicate members where the exact reader refuses the document (:func:`phalanb._json.has_duplicates` tells from
    the bytes and orjson's writing of the parse whether any member was dropped; a document it cannot judge, one
    with a backslash that orjson would not write so, is left to the exact reader), orjson nests up to 1024 levels
    where the exact reader refuses more than 512 (a value orjson's writer refuses is left to the exact reader:
    :func:`_writer_bounds_depth` checks that it refuses anything deeper than 512 levels, and where it does not, a
    document with more brackets than that, as :func:`_brackets` counts them, is left to the exact reader), and
    orjson reads an integer beyond 64 bits as a float (callers accept only the value types the exact reader would
    give, so such a field sends the line the exact way). Everything orjson refuses — NaN and Infinity, lone
    surrogates, invalid UTF-8, bad syntax — returns None, and the exact reader then reads the document or words its
    error."""
    if not _WRITER_BOUNDS_DEPTH and len(data) > 2 * _json.MAX_DEPTH and _brackets(data) > _json.MAX_DEPTH:
        return None
    try:
        value = _loads(data)
    except _JSONDecodeError:
        return None
    if type(value) is dict or type(value) is list:
        try:
            written = _dumps(value)
        except (orjson.JSONEncodeError, TypeError):  # nested beyond orjson's writer: perhaps beyond 512 levels
            return None
        if _json.has_duplicates(data, value, written=written) is not False:
            return None
    return value


_loads, _dumps, _JSONDecodeError = orjson.loads, orjson.dumps, orjson.JSONDecodeError


def _writer_bounds_depth() -> bool:
    """Whether orjson's writer refuses every value nested deeper than the exact reader reads (it stops at 255
    levels), so that a value it writes was read from a document the exact reader does not refuse for its depth.
    Checked once, on a list and an object one level too deep; a writer that does not refuse them is not relied
    on (the bracket count then guards)."""
    for wrap in (lambda v: [v], lambda v: {"a": v}):
        value: Any = 0
        for _ in range(_json.MAX_DEPTH + 1):
            value = wrap(value)
        try:
            orjson.dumps(value)
        except (orjson.JSONEncodeError, TypeError):
            continue
        return False
    return True


_WRITER_BOUNDS_DEPTH = _writer_bounds_depth()


_RESPONSE_B64 = b'"response_b64": "'


def _brackets(data: bytes | str) -> int:
    """An upper bound of how deep ``data`` can nest: its ``[`` and ``{``, leaving out those of a line's
    response_b64 string (most of a line's bytes; a bracket inside a JSON string does not nest).

    Where the key appears as ``"response_b64": "`` in valid JSON (the only JSON orjson accepts), the quote after
    ``response_b64`` is a real one that follows a letter, so it closes a string; then ``: `` lies outside strings,
    the next quote opens a value, and the bytes up to the next quote byte lie inside that string."""
    if isinstance(data, str):
        return data.count("[") + data.count("{")
    start = data.find(_RESPONSE_B64)
    if start < 0:  # one pass: the bytes left when the brackets are deleted
        return len(data) - len(data.translate(None, b"[{"))
    start += len(_RESPONSE_B64)
    end = data.find(b'"', start)
    if end < 0:
        end = start
    return data.count(b"[", 0, start) + data.count(b"{", 0, start) + data.count(b"[", end) + data.count(b"{", end)


if sys.version_info >= (3, 11):
    def _b64(text: Any) -> bytes:
        # strict_mode accepts exactly the canonical alphabet with correct padding: a subset of what
        # base64.b64decode(validate=True) accepts, decoded the same. Anything else takes the exact path.
        return binascii.a2b_base64(text, strict_mode=True)
else:  # pragma: no cover - Python 3.10
    def _b64(text: Any) -> bytes:
        return base64.b64decode(text, validate=True)


def response_chat_id(body: bytes, stream: bool, status: int) -> str | None:
    """The chat id :meth:`Exchange.from_bytes` reads from the response bytes (SPEC §2: the first event's id).

    For a stream, it stops at the first event with an id rather than decoding them all; that is the same answer
    because the recorder keeps the first id even when a later event fails — except when the *decoder* fails
    (an event that is not UTF-8, or an endless one), which discards every event: those bodies take the exact path.
    """
    if status >= 400:
        return None
    if not stream:  # parse_completion's id: the body's top-level "id" when the body is a JSON object
        obj = _fast_json(body)  # its strings and keys are the exact reader's: the id is the same
        if obj is None:
            try:
                obj = _json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError):
                return None
        return obj["id"] if isinstance(obj, dict) and isinstance(obj.get("id"), str) else None
    if len(body) > MAX_EVENT_BYTES:
        return Exchange.from_bytes(request_bytes=b"", response_bytes=body, stream=True, status=status).chat_id
    try:
        body.isascii() or body.decode("utf-8")
    except UnicodeDecodeError:
        return Exchange.from_bytes(request_bytes=b"", response_bytes=body, stream=True, status=status).chat_id
    quick = _first_event_id(body)
    if quick is not None:
        return quick
    # Most streams name the id in their first event: decode up to the first blank line, and the rest only if
    # needed (the events before a cut are the ones the whole body gives, since the earliest separator wins).
    cut = body.find(b"\n\n")
    for part in ((body[:cut + 2], body) if 0 <= cut < len(body) - 2 else (body,)):
        assembler = ChatAssembler()
        try:
            for event in SSEDecoder().feed(part):
                assembler.add(event)
                if assembler.chat_id is not None:
                    return assembler.chat_id
        except ParseError:
            return None
    return None


_LINE_BREAK = re.compile(rb"[\n\r\v\f\x1c\x1d\x1e]")  # what str.splitlines splits ASCII at


_DecodeError = msgspec.DecodeError


def _first_event_id(body: bytes) -> str | None:
    """The id of a stream whose first event is one ``data: {...}`` line naming it — what the SSE decoder and
    :class:`ChatAssembler` give for such a body — or None to let them decide."""
    if not body.startswith(b"data: "):
        return None
    cut = body.find(b"\n\n")
    if cut < 0 or body.find(b"\r", 0, cut) >= 0:
        return None
    data = body[6:cut]
    if not data.isascii():
        return None
    if _LINE_BREAK.search(data):
        return None
    obj = _fast_json(data)
    if obj is None:  # refused, or a duplicate member the exact reader refuses: the SSE decoder decides
        return None
    if not isinstance(obj, dict) or ("error" in obj and "choices" not in obj):
        return None
    chat_id = obj.get("id")
    return chat_id if isinstance(chat_id, str) else None


class Reply:
    """What a row needs of one JSONL line."""

    __slots__ = ("request_bytes", "response_bytes", "stream", "chat_id", "timings", "signature")

    def __init__(self, request_bytes: bytes | None, response_bytes: bytes | None, stream: bool,
                 chat_id: str | None, timings: Timings | None, signature: SignatureRecord):
        self.request_bytes, self.response_bytes, self.stream = request_bytes, response_bytes, stream
        self.chat_id, self.timings, self.signature = chat_id, timings, signature


def _fast_exchange(d: Any, raw: tuple[bytes, bytes] | None = None
                   ) -> tuple[bytes, bytes, bool, str | None, Timings] | None:
    """The fields ``Exchange.from_dict`` would give a row (``raw``: a framed record's bytes), or None if anything
    is unusual (the exact path then reads the line and raises its own error)."""
    if type(d) is not dict:
        return None
    if raw is not None:
        if "request_b64" in d or "response_b64" in d:
            return None
        request, response = raw
    else:
        try:
            request = _b64(d["request_b64"])
            response = _b64(d["response_b64"])
        except (KeyError, TypeError, ValueError, binascii.Error):
            return None
    status = d.get("status", 200)
    if type(status) is not int:  # e.g. "200", or a float orjson made of an integer beyond 64 bits
        return None
    for key in ("request_headers", "response_headers"):
        headers = d.get(key)
        if headers and type(headers) is not dict:
            return None
    if d.get("e2ee") is not None or not set(map(type, map(d.get, _CLAIMS))) <= _STR:
        return None  # from_dict reads these (and may refuse them): the exact way
    timings = _fast_timings(d.get("timings") or {})
    if timings is None:
        return None
    stream = bool(d.get("stream"))
    return request, response, stream, response_chat_id(response, stream, status), timings


_CLAIMS = ("receipt_id", "aci_keyset_digest", "tls_spki_sha256")
_STR = {str, type(None)}
_STAMPS = ("request_sent_ns", "headers_ns", "first_byte_ns", "first_token_ns", "done_ns", "last_byte_ns")
_NONE, _LIST, _TWO, _NUMBER = {int, type(None)}, {list}, {2}, (int, float)


def _plain_timings(d: Any) -> bool:
    """Whether :meth:`Timings.from_dict` accepts ``d`` as these checks read it: chunks pairs, every stamp an
    integer or null (checked with C-level ``map`` over the values rather than a Python call per stamp) and
    request_sent_ns not null, wall_start a number. False sends the line the exact way."""
    if type(d) is not dict:
        return False
    chunks, tokens = d.get("chunks", []), d.get("token_ns", [])
    if type(chunks) is not list or type(tokens) is not list:
        return False
    if chunks and not (set(map(type, chunks)) == _LIST and set(map(len, chunks)) == _TWO):
        return False
    if not set(map(type, chain(chain.from_iterable(chunks), tokens, map(d.get, _STAMPS)))) <= _NONE:
        return False
    return type(d.get("wall_start", 0.0)) in _NUMBER and d.get("request_sent_ns", 0) is not None


def _fast_timings(d: Any) -> Times | None:
    """The row's two durations, when :meth:`Timings.from_dict` would accept ``d`` (:func:`_plain_timings`)."""
    if not _plain_timings(d):
        return None
    return Times(d.get("request_sent_ns", 0), d.get("first_token_ns"), d.get("done_ns"))


class Times:
    """``ttft_s`` and ``total_s`` as :class:`Timings` computes them."""

    __slots__ = ("ttft_s", "total_s")

    def __init__(self, sent: int, first_token: int | None, done: int | None):
        self.ttft_s = None if first_token is None else (first_token - sent) / 1e9
        self.total_s = None if done is None else (done - sent) / 1e9


class LineError(Exception):
    """A line that is not an exchange record, found by a worker that knows the line's place in its span only;
    the caller, who knows how many lines came before, turns it into the batch loader's :class:`ParseError`."""

    def __init__(self, line: int, offset: int, detail: str, field: str | None, what: str = "line"):
        super().__init__(line, offset, detail, field)
        self.line, self.offset, self.detail, self.field, self.what = line, offset, detail, field, what

    def parse_error(self, path: str, lineno: int) -> ParseError:
        return ParseError(f"{path} {self.what} {lineno}: {self.detail}", field=self.field, offset=self.offset)


def read_line(line: bytes, number: int = 0, offset: int = 0) -> Reply:
    """One JSONL line; a line that is not an exchange record raises :class:`LineError` (``number``: the line's
    place, ``offset``: its first byte in the file), worded as the batch loader words it."""
    row = _fast_json(line)
    if row is not None:
        reply = _fast_reply(row)
        if reply is not None:
            return reply
    return _exact_line(line, number, offset)


def _fast_reply(row: Any, raw: tuple[bytes, bytes] | None = None) -> Reply | None:
    """The reply of a line orjson read, when every field a row takes from it is one the exact reader gives alike
    and :meth:`Exchange.from_dict` and :meth:`SignatureRecord.from_dict` would accept; None otherwise (the exact
    way then reads the line again, and decides or words the error)."""
    if type(row) is not dict:
        return None
    sig = row.get("signature")
    if type(sig) is not dict:
        return None
    text, signature = sig.get("text"), sig.get("signature")
    algo = sig.get("signing_algo") or "ecdsa"
    address, chat_id = sig.get("signing_address"), sig.get("chat_id")
    if (type(text) is not str or type(signature) is not str or type(algo) is not str or algo not in ALGOS
            or type(address) not in _STR or type(chat_id) not in _STR):
        return None
    record = SignatureRecord(text=text, signature=signature, signing_algo=algo, signing_address=address,
                             chat_id=chat_id, raw=sig)
    ex = row.get("exchange")
    if ex is None:
        if raw is not None and (raw[0] or raw[1]):
            return None  # bytes without an exchange: the exact way words it
        return Reply(None, None, False, None, None, record)
    fields = _fast_exchange(ex, raw)
    return None if fields is None else Reply(*fields, record)


def _exact_line(line: bytes, number: int, offset: int) -> Reply:
    """The exact reader: what :func:`phalanb.audit.batch.load_items` does with a line, errors worded alike."""
    try:
        row = _json.loads(line)
        fields = _fast_exchange(row.get("exchange"))
        if fields is None:
            ex = Exchange.from_dict(row["exchange"]) if row.get("exchange") is not None else None
            fields = ((ex.request_bytes, ex.response_bytes, ex.stream, ex.chat_id, ex.timings) if ex is not None
                      else (None, None, False, None, None))
        sig = SignatureRecord.from_dict(row["signature"])
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise LineError(number, offset, f"not an exchange record ({exc!r})", "line") from None
    except ParseError as exc:
        raise LineError(number, offset, str(exc), exc.field) from None
    return Reply(*fields, sig)


def framed_exchange(meta: bytes, request: bytes, response: bytes) -> tuple[Exchange | None, SignatureRecord]:
    """The exact reading of a framed record (:mod:`phalanb.wire.frames`): what its JSONL line would give.
    Raises what reading that line raises (``json.JSONDecodeError``, ``KeyError``... or a :class:`ParseError`)."""
    row = _json.loads(meta)
    ex = row.get("exchange")
    if ex is None:
        if request or response:
            raise ParseError(f"the record holds {len(request)} request and {len(response)} response bytes but no "
                             "exchange they belong to", field="record.length")
        exchange = None
    else:
        exchange = Exchange.from_dict(ex, raw=(request, response))
    return exchange, SignatureRecord.from_dict(row["signature"])


def read_record(meta: bytes, request: bytes, response: bytes, number: int = 0, offset: int = 0) -> Reply:
    """One framed record; one that is not an exchange record raises :class:`LineError` (``number``: its place in
    the span, ``offset``: its first byte in the file), worded as the batch loader words it."""
    row = _fast_json(meta)
    if row is not None:
        reply = _fast_reply(row, (request, response))
        if reply is not None:
            return reply
    try:
        ex, sig = framed_exchange(meta, request, response)
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise LineError(number, offset, f"not an exchange record ({exc!r})", "record", "record") from None
    except ParseError as exc:
        raise LineError(number, offset, str(exc), exc.field, "record") from None
    if ex is None:
        return Reply(None, None, False, None, None, sig)
    return Reply(ex.request_bytes, ex.response_bytes, ex.stream, ex.chat_id, ex.timings, sig)


# -- the common row in one pass ----------------------------------------------------------------------------------

def _quick(row: dict, sig: Any, ex: dict, request: bytes, response: bytes, n: int, clean: dict | None
           ) -> tuple | None:
    """The finished row of the common reply — read, checked and put together in one pass — or None for any other
    (the general path then reads it again and decides). With ``clean`` None (the attestation is still being
    verified) the common reply's compact row instead, whatever address it names.

    "Common" is exactly what the general path would finish with the attestation's clean cells: a record that
    :func:`_fast_reply` reads, whose signed text is ``sha256(request):sha256(response)`` of these very bytes, whose
    ECDSA signature :func:`fast_signer` recovers, and whose signer is the address its record names, written the
    same way, and attested (a key of ``clean``). Every condition below is one of those functions' own, in the
    same terms; nothing here decides anything they would decide otherwise."""
    address, text, value = sig.get("signing_address"), sig.get("text"), sig.get("signature")
    if type(address) is not str or type(text) is not str or type(value) is not str:
        return None
    if "receipt" in sig:  # perhaps an ACI receipt wrapper: verify_exchange's preflight decides (takes_preflight)
        return None
    if type(sig.get("chat_id")) not in _STR:
        return None
    status = ex.get("status", 200)
    if type(status) is not int:
        return None
    headers = ex.get("request_headers")
    if headers and type(headers) is not dict:
        return None
    headers = ex.get("response_headers")
    if headers and type(headers) is not dict:
        return None
    if ex.get("e2ee") is not None or not set(map(type, map(ex.get, _CLAIMS))) <= _STR:
        return None
    t = ex.get("timings") or {}
    if not _plain_timings(t):
        return None
    sent, first, done = t.get("request_sent_ns", 0), t.get("first_token_ns"), t.get("done_ns")
    return _common_row(n, text, value, address, sig.get("signing_algo"), clean, request, response,
                       bool(ex.get("stream")), status, sent, first, done)


def _common_row(n: int, text: str, value: str, address: str, algo: Any, clean: dict | None, request: bytes,
                response: bytes, stream: bool, status: int, sent: int, first: int | None, done: int | None
                ) -> tuple | None:
    """The half of the one-pass path both batch formats share, once the record has been read: the attestation
    the record names, the signed text's shape, both hashes, the signature, the signer, the row."""
    tail = None if clean is None else clean.get(address, _UNATTESTED)  # None: the compact row, no attestation yet
    if tail is _UNATTESTED:
        return None
    if len(text) != 129 or text[64] != ":" or (algo and algo != "ecdsa"):
        return None
    if text[:64] != _sha256(request).hexdigest() or text[65:] != _sha256(response).hexdigest():
        return None
    body = value[2:] if value[:2] in _HEX_PREFIXES else value
    if len(body) != 130:
        return None
    try:
        signature = bytes.fromhex(body)
    except ValueError:
        return None
    if len(signature) != 65:
        return None
    v = signature[64]
    if v != 27 and v != 28:
        return None
    # The text is 129 ASCII characters (two hex digests and a colon): its EIP-191 length prefix is "129".
    key = _recover(signature, v - 27, _keccak256(_EIP191_129 + text.encode()))
    if key is None:
        return None
    signer = _address(key)
    ttft = None if first is None else (first - sent) / 1e9
    total = None if done is None else (done - sent) / 1e9
    if tail is None:  # no attestation yet: the compact row (phalanb.audit.batch._own's), for the caller to finish
        return (n, response_chat_id(response, stream, status), PASS, PASS, PASS, signer, address, "ecdsa", None,
                ttft, total, None)
    if signer != address:
        return None
    return (n, response_chat_id(response, stream, status), *tail, ttft, total)


_sha256 = hashlib.sha256
_UNATTESTED = object()  # an address no attestation in ``clean`` binds: the general path words what that means
_HEX_PREFIXES = ("0x", "0X")
_EIP191_129 = _EIP191 + b"129"


def quick_line(line: bytes, n: int, clean: dict | None) -> tuple | None:
    """:func:`_quick` for a JSONL line, read by orjson as :func:`_fast_json` reads it, with
    :func:`_line_has_duplicates` for its duplicate test (which writes the line's value with orjson: its depth is
    then bounded as _fast_json's is)."""
    if not _WRITER_BOUNDS_DEPTH and len(line) > 2 * _json.MAX_DEPTH and _brackets(line) > _json.MAX_DEPTH:
        return None
    try:
        row = _loads(line)
    except _JSONDecodeError:
        return None
    if type(row) is not dict:
        return None
    sig, ex = row.get("signature"), row.get("exchange")
    if type(sig) is not dict or type(ex) is not dict:
        return None
    try:
        request = _b64(ex["request_b64"])
        response = _b64(ex["response_b64"])
    except (KeyError, TypeError, ValueError, binascii.Error):
        return None
    if _line_has_duplicates(line, row, ex) is not False:
        return None  # the exact reader refuses the line, or this test cannot tell: the general path reads it
    return _quick(row, sig, ex, request, response, n, clean)


def _line_has_duplicates(line: bytes, row: dict, ex: dict) -> bool | None:
    """:func:`phalanb._json.has_duplicates` for a line orjson read to ``row`` whose ``ex["request_b64"]`` and
    ``ex["response_b64"]`` are canonical base64 (:func:`_b64` decoded them), without counting through the base64:
    most of a line's bytes, where no colon can be; has_duplicates itself for a line not written that way. None
    when it cannot tell (a backslash, or a value nested beyond orjson's writer: the caller then takes the general
    path).

    The same count as has_duplicates', minus what is known to be zero. On the line's side: without a backslash,
    the bytes after ``"response_b64": "`` up to the next quote are one string's (see :func:`_brackets`); holding no
    colon (``find``, a memchr, tells), they add none, and the line's colons are those before and after them. On the
    kept side: the kept request_b64 and response_b64 are canonical base64, which has no colon, so the kept members
    and the colons of the kept strings are those orjson writes for ``row`` with those two values emptied (the
    members stay, so their count does not change). The two counts are then has_duplicates' two counts, and differ
    exactly when a member was dropped."""
    if b"\\" in line:
        return None
    start = line.find(_RESPONSE_B64)
    end = -1 if start < 0 else line.find(b'"', start + len(_RESPONSE_B64))
    if end < 0 or line.find(b":", start + len(_RESPONSE_B64), end) >= 0:
        try:
            return _json.has_duplicates(line, row, written=_dumps(row))
        except (orjson.JSONEncodeError, TypeError):  # nested beyond orjson's writer
            return None
    start += len(_RESPONSE_B64)
    ex["request_b64"] = ex["response_b64"] = ""  # the row is this reader's own: only _quick reads it next
    try:
        written = _dumps(row)
    except (orjson.JSONEncodeError, TypeError):  # nested beyond orjson's writer
        return None
    return line.count(b":", 0, start) + line.count(b":", end) != written.count(b":")


# A framed record's meta, typed: msgspec decodes and type-checks it in one C pass. Every field a record may hold
# is named, with the narrowest type the exact reader accepts for it, and any other field is refused; so a meta
# decoded here is one Exchange.from_dict and SignatureRecord.from_dict accept, read to the same values (msgspec
# agrees with the exact reader wherever it accepts a document without a duplicate member: integers are exact; it
# refuses NaN, lone surrogates, invalid UTF-8 and numbers out of range). A meta it refuses — an unknown field, a
# "status" of 200.0 — is read the exact way. Being fully typed, the document cannot nest deeper than six levels,
# so no depth guard is needed.
#
# Duplicate members, which msgspec reads as the last one where the exact reader refuses the record, are told from
# this same pass: a field absent from the meta stays UNSET, so msgspec writes the decoded record back with exactly
# the members it kept, and _json.has_duplicates compares that writing with the meta — one comparison of bytes for
# a meta written compactly in the fields' order (as phalanb's writer writes it: the fields below are declared in
# its order), else the colon count its docstring proves. The typed reading is then the exact reader's, or None.

_UNSET = msgspec.UNSET


class _Timings(msgspec.Struct, forbid_unknown_fields=True):
    request_sent_ns: int | msgspec.UnsetType = _UNSET  # absent: 0
    headers_ns: int | None | msgspec.UnsetType = _UNSET
    first_byte_ns: int | None | msgspec.UnsetType = _UNSET
    first_token_ns: int | None | msgspec.UnsetType = _UNSET
    done_ns: int | None | msgspec.UnsetType = _UNSET
    chunks: list[tuple[int, int]] | msgspec.UnsetType = _UNSET
    token_ns: list[int] | msgspec.UnsetType = _UNSET
    wall_start: float | msgspec.UnsetType = _UNSET
    last_byte_ns: int | None | msgspec.UnsetType = _UNSET


class _Exchange(msgspec.Struct, forbid_unknown_fields=True):
    url: str | msgspec.UnsetType = _UNSET
    status: int | msgspec.UnsetType = _UNSET  # absent: 200
    stream: bool | msgspec.UnsetType = _UNSET  # absent: False
    request_headers: dict[str, str] | None | msgspec.UnsetType = _UNSET
    response_headers: dict[str, str] | None | msgspec.UnsetType = _UNSET
    complete: bool | None | msgspec.UnsetType = _UNSET
    timings: _Timings | None | msgspec.UnsetType = _UNSET
    receipt_id: str | None | msgspec.UnsetType = _UNSET
    aci_keyset_digest: str | None | msgspec.UnsetType = _UNSET
    tls_spki_sha256: str | None | msgspec.UnsetType = _UNSET


class _Signature(msgspec.Struct, forbid_unknown_fields=True):
    text: str
    signature: str
    signing_address: str | None | msgspec.UnsetType = _UNSET
    signing_algo: str | None | msgspec.UnsetType = _UNSET
    chat_id: str | None | msgspec.UnsetType = _UNSET


class _Record(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    exchange: _Exchange | None | msgspec.UnsetType = _UNSET
    signature: _Signature


_decode_record = msgspec.json.Decoder(_Record).decode
_encode = msgspec.json.Encoder().encode


def quick_record(meta: bytes, request: bytes, response: bytes, n: int, clean: dict | None) -> tuple | None:
    """:func:`_quick` for a framed record, its meta decoded and typed by msgspec."""
    try:
        record = _decode_record(meta)
    except _DecodeError:
        return None
    if _json.has_duplicates(meta, record, written=_encode(record)) is not False:
        return None  # a member written twice (the exact reader refuses the record), or a backslash: the exact way
    ex, sig = record.exchange, record.signature
    if ex is None or ex is _UNSET:
        return None
    address = sig.signing_address
    if address is None or address is _UNSET:
        return None
    t = ex.timings
    if t is None or t is _UNSET:
        sent, first, done = 0, None, None
    else:
        sent, first, done = t.request_sent_ns, t.first_token_ns, t.done_ns
        if sent is _UNSET:
            sent = 0
        if first is _UNSET:
            first = None
        if done is _UNSET:
            done = None
    status, stream, algo = ex.status, ex.stream, sig.signing_algo
    return _common_row(n, sig.text, sig.signature, address, None if algo is _UNSET else algo, clean, request,
                       response, False if stream is _UNSET else stream, 200 if status is _UNSET else status, sent,
                       first, done)


def read_span(path: str, start: int, end: int, clean: dict | None | bool = False, framed: bool = False
              ) -> tuple[int, Iterator[tuple[int, Reply | tuple]]]:
    """The lines (or, ``framed``, the records) of bytes ``start..end`` of ``path``, whole ones: how many there are,
    and each non-blank one's place in the span (0 = the first) with its reply — or, for the common reply, a row
    (a tuple): finished when ``clean`` maps the attested addresses to their rows' cells, compact when ``clean`` is
    None (no attestation yet); ``False``: replies only. Lines end at ``\n`` only, as a file iterator ends them."""
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read(end - start)
    if len(data) != end - start:
        raise LineError(0, start + len(data), f"the file ends at byte {start + len(data)}, before the span "
                        f"{start}..{end} it was cut into (it changed while being read)", "file")
    if framed:
        try:
            count = _frames.count(data, start)
        except _frames.FrameError as exc:
            raise LineError(exc.record, exc.offset, exc.detail, exc.field, "record") from None
        return count, _framed_replies(data, start, clean)
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()

    def replies() -> Iterator[tuple[int, Reply | tuple]]:
        offset = start
        for number, line in enumerate(lines):
            if line and not line.isspace():  # what line.strip() tells, without copying the line
                row = quick_line(line, number, clean) if clean is not False else None
                yield number, row if row is not None else read_line(line, number, offset)
            offset += len(line) + 1

    return len(lines), replies()


def _framed_replies(data: bytes, start: int, clean: dict | None | bool) -> Iterator[tuple[int, Reply | tuple]]:
    try:
        for number, offset, meta, request, response in _frames.records(data, start):
            row = quick_record(meta, request, response, number, clean) if clean is not False else None
            yield number, row if row is not None else read_record(meta, request, response, number, offset)
    except _frames.FrameError as exc:
        raise LineError(exc.record, exc.offset, exc.detail, exc.field, "record") from None


def spans(path: str, start: int, *, size: int | None = None, framed: bool = False,
          first: tuple[int, int] = (0, 0)) -> Iterator[tuple[int, int]]:
    """Cut ``path`` from byte ``start`` (just after the header) into (start, end) spans of whole lines (or whole
    frames), about ``size`` bytes each — the first ``first[0]`` of them about ``first[1]`` bytes. Only the bytes
    around each cut (or the frame heads) are read: the workers read the rest."""
    size = size or SPAN_BYTES
    sizes = chain(repeat(first[1], first[0]), repeat(size))
    if framed:
        for begin, end, _ in _frames.spans(path, start, sizes=sizes):
            yield begin, end
        return
    total = os.path.getsize(path)
    with open(path, "rb") as fh:
        while start < total:
            cut = start + _frames.tail_size(next(sizes), total - start)
            if cut >= total:
                yield start, total
                return
            fh.seek(cut - 1)
            fh.readline()  # to the end of the line that holds byte cut - 1: the next line starts a span
            end = fh.tell()
            yield start, end
            start = end
