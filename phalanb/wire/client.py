"""Talking to a confidential-inference service over httpx, keeping the exact bytes.

>>> client = Client(base_url="https://api.redpill.ai/v1", model="phala/deepseek-v3.2")   # doctest: +SKIP
>>> ex = client.chat("What is your model name?")                                         # doctest: +SKIP
>>> sig = fetch_signature(client, ex.chat_id)      # phalanb.vllm.signatures reads what the client fetched # doctest: +SKIP
>>> att = client.attestation()               # a fresh random 32-byte nonce every time     # doctest: +SKIP

The API key comes from ``api_key=`` or the environment (``PHALANB_API_KEY``, then ``REDPILL_API_KEY``); it is
sent only in the ``Authorization`` header, and never appears in a repr, a log line, an error or a saved file.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import secrets
import socket
import ssl
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import httpx

from .. import _json
from .apikey import ApiKey, check_key_transport, resolve_api_key
from ..errors import (
    InputError,
    NotFoundError,
    ParseError,
    ServiceError,
    SignatureExpiredError,
    TransportError,
)
from .bodies import _decode_content, _reason, read_limited  # noqa: F401  (read_limited: public here too)
from .encryption import Encryption
from .exchange import Exchange, ExchangeRecorder

__all__ = ["Client", "AttestationFetch", "AciFetch", "AciAttestationFetch", "DEFAULT_BASE_URL", "DEFAULT_TIMEOUT",
           "new_nonce", "encode_body", "default_transport", "tls_context", "peer_spki_sha256", "read_limited"]

DEFAULT_BASE_URL = "https://api.redpill.ai/v1"
#: The values the service takes for the ``signing_algo`` query parameter (the wire knows no protocol, so the
#: pair is spelled here too; tests/test_layers.py holds it equal to phalanb.vllm.signatures.ALGOS).
ALGOS = ("ecdsa", "ed25519")
#: Connect quickly or fail; allow slow models a minute between bytes.
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=30.0, pool=10.0)
_MAX_ERROR_BODY = 64 * 1024
_MAX_JSON_BODY = 64 * 1024 * 1024
_MAX_CHAT_BODY = 64 * 1024 * 1024  # the reply, streamed or not, after decompression
_RETRY_STATUSES = {429, 502, 503, 504}  # attestation reports with 8 GPUs are ~1 MB; refuse absurd ones

SIGNATURE_EXPIRED_HELP = (
    "the service has no signature for this chat id. Signatures live in a per-node cache (1200 s by default, "
    "300 s before 2025-02, at most 1000 entries, so busy nodes forget sooner); they appear only after a stream "
    "has ended; and with several nodes the lookup can reach one that never saw the chat. Fetch the signature "
    "right after the reply, from the same endpoint.")


def default_transport(*, verify: bool | ssl.SSLContext = True) -> httpx.HTTPTransport:
    """httpx's transport with TCP_NODELAY: without it a request written in two segments (headers, body) can wait
    for a delayed ACK (~40 ms on Linux), which would pollute every latency figure phalanb reports."""
    return httpx.HTTPTransport(verify=verify, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])


def tls_context(*, verify: bool | str | ssl.SSLContext = True, ca_pem: str | bytes | None = None
                ) -> bool | ssl.SSLContext:
    """What to trust for https: the system's roots (``verify=True``), a CA bundle file (``verify="path"``), a
    ready context, or exactly the PEM certificates in ``ca_pem`` (e.g. the simulator's self-signed certificate,
    ``sim.ca_pem``). ``verify=False`` turns verification off, only when asked for, and warns."""
    if ca_pem is not None:
        if verify is False:
            raise InputError("give ca_pem= or verify=False, not both")
        try:
            return ssl.create_default_context(cadata=ca_pem.decode() if isinstance(ca_pem, bytes) else ca_pem)
        except (ssl.SSLError, ValueError) as exc:
            raise InputError(f"ca_pem is not a PEM certificate ({exc})") from None
    if isinstance(verify, str):
        try:
            return ssl.create_default_context(cafile=verify)
        except (OSError, ssl.SSLError) as exc:
            raise InputError(f"cannot read the CA bundle {verify!r} ({exc})") from None
    if verify is False:
        warnings.warn("TLS certificate verification is OFF: any server can impersonate the service",
                      stacklevel=3)
    return verify


def peer_spki_sha256(response: httpx.Response) -> str | None:
    """SHA-256 (hex) of the SubjectPublicKeyInfo of the certificate the server presented on the connection that
    carried ``response`` (read while the response is open); None over plain http or when it cannot be seen."""
    stream = response.extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(True)  # binary_form (the low-level _SSLSocket takes it positionally)
    if not der:
        return None
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    spki = x509.load_der_x509_certificate(der).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def new_nonce() -> bytes:
    """32 random bytes from the OS: the freshness challenge for an attestation report."""
    return secrets.token_bytes(32)


#: Error types whose meaning a user needs spelled out (ACI-v3.md §2: what the status alone does not say).
_MEANINGS = {
    "redaction_required": "the receipt exists but belongs to another API key (not absence): fetch it with the key "
                          "that made the request",
    "upstream_verification_failed": "the gateway could not verify the model server's TEE and did not forward the "
                                    "prompt; its refusal has a signed receipt (X-Receipt-Id)",
}


def encode_body(body: Mapping[str, Any]) -> bytes:
    """The request bytes phalanb sends for a JSON body: compact, UTF-8. These exact bytes are what gets hashed."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class AttestationFetch:
    """An attestation report as fetched: the parsed JSON, the exact bytes, the nonce sent and how long it took."""

    report: dict[str, Any]
    raw: bytes
    nonce: bytes | None
    url: str
    params: dict[str, str] = field(default_factory=dict)
    elapsed_s: float = 0.0
    fetched_at: float = 0.0

    @property
    def nonce_hex(self) -> str | None:
        return None if self.nonce is None else self.nonce.hex()

    def __repr__(self) -> str:
        return f"<AttestationFetch {self.url} nonce={self.nonce_hex} {len(self.raw)}B {self.elapsed_s * 1000:.0f} ms>"


@dataclass(repr=False)
class AciFetch:
    """An ACI document as fetched (receipt, session, session list): the exact bytes, the parsed JSON, the
    ``X-ACI-*`` response headers (lower-case names) and the TLS key the connection used."""

    url: str
    raw: bytes
    document: Any
    headers: dict[str, str] = field(default_factory=dict)
    tls_spki_sha256: str | None = None
    elapsed_s: float = 0.0
    fetched_at: float = 0.0

    @property
    def keyset_digest_header(self) -> str | None:
        """``X-ACI-Keyset-Digest`` (a hint: the verified value is the one inside the report)."""
        return self.headers.get("x-aci-keyset-digest")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} {len(self.raw)}B>"


@dataclass(repr=False)
class AciAttestationFetch(AciFetch):
    """``GET /v1/aci/attestation``: the nonce sent (32 bytes, as 64 lower-case hex) and the report."""

    nonce: bytes = b""

    @property
    def nonce_hex(self) -> str:
        return self.nonce.hex()

    @property
    def report(self) -> Any:
        return self.document


def _server_message(body: bytes) -> str | None:
    """The error message a server put in its body: OpenAI ``error.message``, FastAPI ``detail``, or the text."""
    text = body[:_MAX_ERROR_BODY].decode("utf-8", "replace").strip()
    try:
        obj = _json.loads(text)
    except json.JSONDecodeError:
        return text[:300] or None
    if isinstance(obj, dict):
        err = obj.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"]
        if isinstance(err, str):
            return err
        if isinstance(obj.get("detail"), str):
            return obj["detail"]
        if isinstance(obj.get("message"), str):
            return obj["message"]
    return text[:300] or None


def _server_error_type(body: bytes) -> str | None:
    """The ``error.type`` of an OpenAI/ACI-shaped error body, if any."""
    try:
        obj = _json.loads(body[:_MAX_ERROR_BODY].decode("utf-8", "replace"))
    except json.JSONDecodeError:
        return None
    err = obj.get("error") if isinstance(obj, dict) else None
    value = err.get("type") if isinstance(err, dict) else None
    return value if isinstance(value, str) else None


class Client:
    """A byte-exact client for the OpenAI-compatible confidential-inference API (SPEC §2).

    All configuration is keyword-only. ``transport`` plugs in any httpx transport (tests, the OpenAI-SDK capture,
    proxies). ``allow_insecure_http`` permits sending the key over plain http to a non-loopback host.
    """

    def __init__(self, *, base_url: str = DEFAULT_BASE_URL, model: str | None = None,
                 api_key: str | ApiKey | None = None, signing_algo: str = "ecdsa",
                 timeout: float | httpx.Timeout | None = None, transport: httpx.BaseTransport | None = None,
                 allow_insecure_http: bool = False, headers: Mapping[str, str] | None = None,
                 api_key_env: bool = True, retries: int = 2, backoff: float = 0.5, max_retry_after: float = 30.0,
                 verify: bool | str | ssl.SSLContext = True, ca_pem: str | bytes | None = None):
        if signing_algo not in ALGOS:
            raise InputError(f"signing_algo must be one of {', '.join(ALGOS)}, got {signing_algo!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.signing_algo = signing_algo
        if retries < 0 or backoff < 0 or max_retry_after < 0:
            raise InputError("retries, backoff and max_retry_after must be >= 0")
        self.retries = retries
        self.backoff = backoff
        self.max_retry_after = max_retry_after
        self._sleep = time.sleep  # replaceable in tests
        # api_key_env=False: never pick a key up from the environment (e.g. for the embedded simulator).
        self._key = resolve_api_key(api_key, environ=None if api_key_env else {})
        check_key_transport(self.base_url, self._key, allow_insecure_http=allow_insecure_http)
        if isinstance(timeout, (int, float)):
            timeout = httpx.Timeout(timeout, connect=min(float(timeout), 10.0))
        if transport is None:
            transport = default_transport(verify=tls_context(verify=verify, ca_pem=ca_pem))
        elif ca_pem is not None or verify is not True:
            raise InputError("verify= and ca_pem= configure phalanb's own transport; with transport= configure "
                             "TLS on that transport")
        # Every keyset digest the service announced, in order ((where, digest)): a change between the attested
        # report and a chat means another replica or a rotated keyset answered (ACI.md §8: re-attest).
        self.aci_keyset_digests: list[tuple[str, str]] = []
        self._http = httpx.Client(timeout=timeout or DEFAULT_TIMEOUT, transport=transport,
                                  headers={"Accept-Encoding": "identity", **dict(headers or {})},
                                  follow_redirects=False)

    # -- housekeeping ----------------------------------------------------------------------------------
    def __repr__(self) -> str:
        key = "set" if self._key is not None else "none"
        return f"<phalanb.Client {self.base_url} model={self.model!r} api_key={key}>"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def has_api_key(self) -> bool:
        return self._key is not None

    def _auth_headers(self) -> dict[str, str]:
        return {} if self._key is None else {"Authorization": f"Bearer {self._key.reveal()}"}

    def _url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def _model(self, model: str | None) -> str:
        m = model or self.model
        if not m:
            raise InputError("no model given: pass model= to the Client or to this call")
        return m

    # -- transport errors become phalanb errors ---------------------------------------------------------
    def _send(self, request: httpx.Request, *, stream: bool) -> httpx.Response:
        try:
            return self._http.send(request, stream=stream)
        except httpx.ConnectError as exc:
            raise TransportError(f"could not connect to {request.url.host}:{request.url.port or ''} "
                                 f"({_reason(exc)}); is the service running and the base URL right?",
                                 url=str(request.url)) from None
        except httpx.TimeoutException as exc:
            phase = {"ConnectTimeout": "connecting", "ReadTimeout": "waiting for data", "WriteTimeout": "sending",
                     "PoolTimeout": "waiting for a free connection"}.get(type(exc).__name__, "waiting")
            raise TransportError(f"timed out talking to {request.url.host} while {phase}; the client's timeouts "
                                 "can be raised with timeout=", url=str(request.url)) from None
        except httpx.HTTPError as exc:
            raise TransportError(f"HTTP failure talking to {request.url.host}: {_reason(exc)}",
                                 url=str(request.url)) from None

    def _raise_for_status(self, response: httpx.Response, body: bytes, *, what: str) -> None:
        if response.status_code < 400:
            return
        msg = _server_message(body)
        status = response.status_code
        code = _server_error_type(body)
        if code is not None and code.startswith("e2ee_") and msg is not None:
            # The E2EE refusals are told apart by their type (e2ee_replay_detected, …): keep it in the sentence.
            msg = f"{code}: {msg}"
        elif code in _MEANINGS:
            msg = f"{code}: {msg + ' — ' if msg else ''}{_MEANINGS[code]}"
        text = f"{what} failed: HTTP {status}" + (f": {msg}" if msg else "")
        cls = NotFoundError if status == 404 else ServiceError
        raise cls(text, status=status, server_message=msg, url=str(response.request.url))

    def _get_json(self, path: str, params: Mapping[str, str], *, what: str, auth: bool = True
                  ) -> tuple[Any, bytes, float]:
        """GET and decode JSON, retrying what is safe to retry (see :meth:`_get_raw`)."""
        response, body, elapsed, _ = self._get_raw(path, params, what=what, auth=auth)
        try:
            return _json.loads(body), body, elapsed
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ParseError(f"{what}: the server's answer is not JSON ({exc}); {len(body)} bytes received",
                             field="body", offset=getattr(exc, "pos", None)) from None

    def _get_raw(self, path: str, params: Mapping[str, str], *, what: str, auth: bool = True
                 ) -> tuple[httpx.Response, bytes, float, str | None]:
        """GET the exact body bytes (and the TLS key the connection used), retrying what is safe to retry.

        These fetches are idempotent, so a refused connection, a timeout, a 429 (honouring Retry-After up to
        ``max_retry_after``) or a 502/503/504 is retried up to ``retries`` times with exponential backoff. A chat
        is never retried: sending it twice would create a second, different reply.
        """
        t0 = time.perf_counter()
        attempt = 0
        while True:
            request = self._http.build_request("GET", self._url(path), params=params,
                                               headers=self._auth_headers() if auth else {})
            try:
                response = self._send(request, stream=True)
                try:
                    spki = peer_spki_sha256(response)
                    body = self._read_limited(response, _MAX_JSON_BODY, what=what)
                finally:
                    response.close()
            except TransportError:
                if attempt >= self.retries:
                    raise
                self._sleep(self._backoff(attempt))
                attempt += 1
                continue
            if response.status_code in _RETRY_STATUSES and attempt < self.retries:
                wait = self._retry_after(response) if response.status_code == 429 else None
                self._sleep(self._backoff(attempt) if wait is None else wait)
                attempt += 1
                continue
            break
        elapsed = time.perf_counter() - t0
        self._raise_for_status(response, body, what=what)
        return response, body, elapsed, spki

    def _backoff(self, attempt: int) -> float:
        return self.backoff * (2 ** attempt)

    def _retry_after(self, response: httpx.Response) -> float:
        """Seconds the server asked us to wait (integer seconds or an HTTP date), capped at ``max_retry_after``."""
        value = response.headers.get("retry-after", "")
        try:
            wait = float(value)
        except ValueError:
            try:
                wait = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError):
                wait = self.backoff
        if wait > self.max_retry_after:
            raise ServiceError(f"the service asks to wait {wait:.0f} s before retrying (HTTP 429), more than "
                               f"max_retry_after={self.max_retry_after:.0f} s", status=429,
                               url=str(response.request.url))
        return max(0.0, wait)

    def _read_limited(self, response: httpx.Response, limit: int, *, what: str) -> bytes:
        return read_limited(response, limit, what=what)

    # -- the API ---------------------------------------------------------------------------------------
    def chat(self, messages: str | Sequence[Mapping[str, Any]] | None = None, *, stream: bool = True,
             model: str | None = None, max_tokens: int | None = None, body: Mapping[str, Any] | None = None,
             raw_body: bytes | None = None, on_text: Callable[[str], None] | None = None,
             e2ee: Encryption | None = None) -> Exchange:
        """Send one chat request and return the :class:`~phalanb.wire.exchange.Exchange` with the exact bytes.

        ``messages`` is a prompt string or an OpenAI message list. ``body`` adds or overrides JSON fields;
        ``raw_body`` sends bytes exactly as given (for reproducing someone else's request). ``on_text`` is
        called with each piece of reply text as it streams in.

        ``e2ee``: an :class:`~phalanb.wire.encryption.Encryption` the protocol provides; today ACI E2EE v2 (ACI.md §6)
        to this key, which comes from a keyset phalanb
        verified: ``AttestedE2EEKey.from_established_keyset(verify_aci_report(...).keyset)``. The exchange then
        keeps the exact wire bytes (ciphertext both ways) in ``request_bytes``/``response_bytes``, the decrypted
        reply text in ``text``, and in ``exchange.e2ee`` (:class:`~phalanb.aci.e2ee_wire.E2EERecord`) the restored
        request, the sealed paths, the headers and the decrypted reply — never the client private key. A reply
        field that does not decrypt or arrives unencrypted raises :class:`~phalanb.errors.E2EEError` (its
        ``partial`` is the exchange); a refusal by the service (``e2ee_*``) is a :class:`ServiceError` naming it.

        >>> att = verify_aci_report(client.aci_attestation().raw, nonce=..., policy=...)   # doctest: +SKIP
        >>> ex = client.chat("hi", e2ee=AttestedE2EEKey.from_established_keyset(att.keyset))  # doctest: +SKIP
        """
        if e2ee is not None and not isinstance(e2ee, Encryption):
            raise InputError("e2ee= takes an AttestedE2EEKey: AttestedE2EEKey.from_established_keyset(att.keyset) "
                             "for a keyset phalanb verified (or, knowingly, AttestedE2EEKey.UNVERIFIED_override)")
        if raw_body is not None:
            if e2ee is not None:
                raise InputError("raw_body is sent exactly as given, so it cannot also be encrypted; pass "
                                 "messages/body with e2ee=")
            if messages is not None or body is not None:
                raise InputError("give either raw_body or messages/body, not both")
            data = bytes(raw_body)
            try:
                stream = bool(_json.loads(data).get("stream", False))
            except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
                raise InputError("raw_body must be a JSON object (the service would refuse anything else)") from None
        else:
            if isinstance(messages, str):
                messages = [{"role": "user", "content": messages}]
            payload: dict[str, Any] = {"model": self._model(model), "messages": list(messages or []),
                                       "stream": stream}
            if max_tokens is not None:
                payload["max_tokens"] = max_tokens
            payload.update(body or {})
            if not payload["messages"]:
                raise InputError("no messages to send")
            stream = bool(payload.get("stream"))
            data = encode_body(payload)
        sealed = None
        if e2ee is not None:
            sealed = e2ee.seal(payload, endpoint="/v1/chat/completions")
            data = sealed.body
        headers = {"Content-Type": "application/json", **self._auth_headers()}
        if stream:
            headers["Accept"] = "text/event-stream"
        if sealed is not None:
            headers.update(sealed.headers)
        request = self._http.build_request("POST", self._url("chat/completions"), content=data, headers=headers)
        # Under E2EE the recorder sees ciphertext: the plaintext reaches on_text through the decryptor instead.
        opener = sealed.opener(stream=stream, on_text=on_text) if sealed is not None else None
        recorder = ExchangeRecorder(url=str(request.url), request_bytes=request.content, stream=stream,
                                    request_headers=request.headers, on_text=on_text if sealed is None else None)
        recorder.mark_sent()
        response = self._send(request, stream=True)
        try:
            recorder.mark_headers(response.status_code, response.headers)
            recorder.tls_spki_sha256 = peer_spki_sha256(response)
            encoding = response.headers.get("content-encoding")
            if encoding not in (None, "identity") and stream:
                raise TransportError(f"the server compressed the stream ({encoding}) although phalanb asked for "
                                     "identity; the exact bytes cannot be recovered chunk by chunk")
            if response.status_code >= 400:
                body_bytes = self._read_limited(response, _MAX_ERROR_BODY * 16, what="chat")
                recorder.feed(body_bytes)
                try:
                    self._raise_for_status(response, body_bytes, what="chat")
                except (ServiceError, NotFoundError) as err:
                    # The refusal's bytes (and an ACI gateway's X-Receipt-Id for it) stay available.
                    err.partial = recorder.finish(complete=False)  # type: ignore[attr-defined]
                    raise
            received = 0
            try:
                for chunk in response.iter_raw():
                    received += len(chunk)
                    if received > _MAX_CHAT_BODY:
                        # A reply of this size is no chat: stop reading rather than fill the memory.
                        raise ParseError(f"chat: the reply exceeds {_MAX_CHAT_BODY} bytes (phalanb's limit); "
                                         "reading stopped", field="response", offset=_MAX_CHAT_BODY)
                    recorder.feed(chunk)
                    if opener is not None and stream and encoding in (None, "identity"):
                        opener.feed(chunk)
            except (httpx.HTTPError, httpx.StreamError) as exc:
                partial = recorder.finish(complete=False)
                err = TransportError(f"the chat stream was cut after {len(partial.response_bytes)} bytes "
                                     f"({_reason(exc)}); the reply is incomplete and the service keeps no "
                                     "signature for it", url=str(request.url))
                err.partial = partial  # type: ignore[attr-defined]
                raise err from None
            if encoding not in (None, "identity"):
                recorder.replace_body(_decode_content(recorder.received, encoding, limit=_MAX_CHAT_BODY,
                                                      what="chat"))
            exchange = recorder.finish()
        finally:
            response.close()
        if exchange.content_error is not None:
            err = ParseError(f"the reply cannot be read as a chat completion: {exchange.content_error}",
                             field="response")
            err.partial = exchange  # type: ignore[attr-defined]
            raise err
        if stream and not exchange.complete:
            err = TransportError(f"the chat stream ended without 'data: [DONE]' after "
                                 f"{len(exchange.response_bytes)} bytes; the reply is incomplete",
                                 url=exchange.url)
            err.partial = exchange  # type: ignore[attr-defined]
            raise err
        self._note_keyset("chat", exchange.aci_keyset_digest)
        if opener is not None:
            opener.finish(exchange)
        return exchange

    def signature_document(self, chat_id: str, *, model: str | None = None, signing_algo: str | None = None
                           ) -> Any:
        """``GET /signature/{chat_id}``: the decoded JSON answer, not yet read as a signature (that is
        :func:`phalanb.vllm.signatures.fetch_signature`). A 404 raises :class:`SignatureExpiredError` with the
        explanation."""
        if not chat_id or "/" in chat_id:
            raise InputError(f"not a chat id: {chat_id!r}")
        algo = signing_algo or self.signing_algo
        if algo not in ALGOS:
            raise InputError(f"signing_algo must be one of {', '.join(ALGOS)}, got {algo!r}")
        params = {"signing_algo": algo}
        m = model or self.model
        if m:
            params["model"] = m
        try:
            data, _, _ = self._get_json(f"signature/{chat_id}", params, what="signature fetch")
        except NotFoundError as exc:
            raise SignatureExpiredError(f"signature for {chat_id} not found (HTTP 404"
                                        f"{': ' + exc.server_message if exc.server_message else ''}): "
                                        f"{SIGNATURE_EXPIRED_HELP}", status=404,
                                        server_message=exc.server_message, url=exc.url) from None
        return data

    def attestation(self, *, nonce: bytes | str | None = None, model: str | None = None,
                    signing_algo: str | None = None, signing_address: str | None = None,
                    extra_params: Mapping[str, str] | None = None) -> AttestationFetch:
        """``GET /attestation/report`` with a fresh random 32-byte nonce unless one is given."""
        if nonce is None:
            nonce_b = new_nonce()
        elif isinstance(nonce, str):
            try:
                nonce_b = bytes.fromhex(nonce.removeprefix("0x"))
            except ValueError:
                raise InputError("nonce must be 64 hex digits") from None
        else:
            nonce_b = bytes(nonce)
        if len(nonce_b) != 32:
            raise InputError(f"nonce must be 32 bytes, got {len(nonce_b)}")
        params = {"nonce": nonce_b.hex(), "signing_algo": signing_algo or self.signing_algo}
        m = model or self.model
        if m:
            params["model"] = m
        if signing_address:
            params["signing_address"] = signing_address
        params.update(extra_params or {})
        fetched_at = time.time()
        data, raw, elapsed = self._get_json("attestation/report", params, what="attestation fetch")
        if not isinstance(data, dict):
            raise ParseError("the attestation report is JSON but not an object", field="report")
        return AttestationFetch(report=data, raw=raw, nonce=nonce_b, url=self._url("attestation/report"),
                                params=params, elapsed_s=elapsed, fetched_at=fetched_at)

    # -- ACI (ACI.md §1) -----------------------------------------------------------------------------------
    def _note_keyset(self, where: str, digest: str | None) -> None:
        if digest:
            self.aci_keyset_digests.append((where, digest))
            del self.aci_keyset_digests[:-1000]

    @property
    def aci_keyset_changed(self) -> bool:
        """True when the service announced more than one keyset digest (X-ACI-Keyset-Digest) to this client:
        the report, a chat or a receipt came from another replica or a rotated keyset."""
        return len({d for _, d in self.aci_keyset_digests}) > 1

    def _aci_get(self, path: str, params: Mapping[str, str], *, what: str, auth: bool = True,
                 cls: type = AciFetch, **extra: Any) -> Any:
        fetched_at = time.time()
        response, raw, elapsed, spki = self._get_raw(path, params, what=what, auth=auth)
        headers = {k.lower(): v for k, v in response.headers.items() if k.lower().startswith("x-aci-")}
        document = _json.loads_signed(raw, what=what)
        result = cls(url=str(response.request.url), raw=raw, document=document, headers=headers,
                     tls_spki_sha256=spki, elapsed_s=elapsed, fetched_at=fetched_at, **extra)
        self._note_keyset(path.split("/")[1] if "/" in path else path, headers.get("x-aci-keyset-digest"))
        return result

    def aci_attestation(self, nonce: bytes | None = None) -> AciAttestationFetch:
        """``GET /aci/attestation?nonce=`` with a fresh random 32-byte nonce unless one is given; the nonce always
        travels as 64 lower-case hex (the only form the current gateway accepts)."""
        nonce_b = new_nonce() if nonce is None else bytes(nonce)
        if len(nonce_b) != 32:
            raise InputError(f"an ACI nonce is 32 bytes, got {len(nonce_b)}")
        result = self._aci_get("aci/attestation", {"nonce": nonce_b.hex()}, what="ACI attestation fetch",
                               cls=AciAttestationFetch, nonce=nonce_b)
        if not isinstance(result.document, dict):
            raise ParseError("the ACI report is JSON but not an object", field="report")
        return result

    def receipt(self, receipt_id: str) -> AciFetch:
        """``GET /aci/receipts/{id}`` (``X-Receipt-Id`` or the chat id), with the same API key as the chat."""
        if not receipt_id or "/" in receipt_id or "?" in receipt_id:
            raise InputError(f"not a receipt or chat id: {receipt_id!r}")
        return self._aci_get(f"aci/receipts/{receipt_id}", {}, what="ACI receipt fetch")

    def session(self, session_id: str) -> AciFetch:
        """``GET /aci/sessions/{id}``: the exact bytes that must hash to ``session_id``. A v3 id
        (``sha256:<hex>``) is fetched by its hex (ACI-v3.md §2)."""
        if not session_id or "/" in session_id or "?" in session_id:
            raise InputError(f"not a session id: {session_id!r}")
        path_id = session_id.removeprefix("sha256:")
        return self._aci_get(f"aci/sessions/{path_id}", {}, what="ACI session fetch", auth=False)

    def sessions(self, model: str | None = None, upstream_name: str | None = None) -> AciFetch:
        """``GET /aci/sessions?upstream_name=&model=``. Entries lack evidence data: fetch one to audit it."""
        params = {k: v for k, v in (("upstream_name", upstream_name), ("model", model)) if v is not None}
        return self._aci_get("aci/sessions", params, what="ACI session list", auth=False)

    def models(self) -> list[str]:
        """``GET /models``: the model ids the service offers."""
        data, _, _ = self._get_json("models", {}, what="model list")
        try:
            return [m["id"] for m in data["data"]]
        except (KeyError, TypeError) as exc:
            raise ParseError(f"the model list has an unexpected shape ({exc!r})", field="data") from None
