"""Keep using the OpenAI SDK and still verify: an httpx client that records the exact bytes of every chat.

>>> import openai                                                                    # doctest: +SKIP
>>> rec = Recorder()
>>> oai = openai.OpenAI(base_url=url, api_key=key, http_client=rec.http_client())    # doctest: +SKIP
>>> stream = oai.chat.completions.create(model=m, messages=[...], stream=True)      # doctest: +SKIP
>>> reply = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)  # doctest: +SKIP
>>> ex = rec.last        # recorded as the SDK read it: exact request and response bytes, timings

The recording happens in the transport, below the SDK: the request bytes are the ones httpx put on the wire and
the response bytes are the raw body chunks before the SDK parses anything.
"""

from __future__ import annotations

import json
import ssl
import threading
from typing import Callable, Iterator

import httpx

from .. import _json
from .client import default_transport, peer_spki_sha256, tls_context
from ..errors import PhalanbError
from .exchange import Exchange, ExchangeRecorder

__all__ = ["Recorder", "RecordingTransport"]

_CHAT_PATH = "/chat/completions"


class _RecordingStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, recorder: ExchangeRecorder,
                 done: Callable[[Exchange], None]):
        self._inner = inner
        self._recorder = recorder
        self._done = done
        self._finished = False

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._recorder.feed(chunk)
            yield chunk
        self._finish(complete=True)

    def _finish(self, *, complete: bool) -> None:
        if not self._finished:
            self._finished = True
            try:
                self._done(self._recorder.finish(complete=complete))
            except PhalanbError:
                # A body the SDK will reject anyway (e.g. not JSON) is still recorded byte for byte.
                rec = self._recorder
                self._done(Exchange(url=rec.url, request_bytes=rec.request_bytes,
                                    response_bytes=rec.received, status=rec.status,
                                    stream=rec.stream, complete=False,
                                    request_headers=rec.request_headers,
                                    response_headers=rec.response_headers,
                                    timings=rec.timings, receipt_id=rec.response_headers.get("x-receipt-id"),
                                    aci_keyset_digest=rec.response_headers.get("x-aci-keyset-digest"),
                                    tls_spki_sha256=rec.tls_spki_sha256))

    def close(self) -> None:
        # The SDK closes the stream as soon as it has read data: [DONE]; a stream is complete when [DONE] arrived
        # (the recorder checks that), and a client that stopped reading earlier gets an incomplete exchange.
        self._finish(complete=True)
        self._inner.close()


class RecordingTransport(httpx.BaseTransport):
    """Wraps another transport; every ``POST …/chat/completions`` becomes an :class:`Exchange` in ``recorder``."""

    def __init__(self, recorder: "Recorder", inner: httpx.BaseTransport | None = None):
        self._recorder = recorder
        self._inner = inner or default_transport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST" or not request.url.path.endswith(_CHAT_PATH):
            return self._inner.handle_request(request)
        body = request.read()
        try:
            stream = _json.loads(body).get("stream") is True
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            stream = False  # the service will refuse it; still recorded as sent
        rec = ExchangeRecorder(url=str(request.url), request_bytes=body, stream=stream,
                               request_headers=request.headers)
        rec.mark_sent()
        response = self._inner.handle_request(request)
        rec.mark_headers(response.status_code, response.headers)
        rec.tls_spki_sha256 = peer_spki_sha256(response)
        if response.headers.get("content-encoding", "identity") != "identity":
            raise PhalanbError("the server compressed the reply; phalanb's recorder asks for identity encoding — "
                               "do not override Accept-Encoding on the recording client")
        assert isinstance(response.stream, httpx.SyncByteStream)
        response.stream = _RecordingStream(response.stream, rec, self._recorder._add)
        return response

    def close(self) -> None:
        self._inner.close()


class Recorder:
    """Holds the exchanges recorded by the clients it made. Thread-safe; newest last."""

    def __init__(self, *, max_exchanges: int = 1000):
        self._items: list[Exchange] = []
        self._lock = threading.Lock()
        self.max_exchanges = max_exchanges

    def _add(self, exchange: Exchange) -> None:
        with self._lock:
            self._items.append(exchange)
            del self._items[:-self.max_exchanges]

    def http_client(self, *, inner: httpx.BaseTransport | None = None, verify: bool | str | ssl.SSLContext = True,
                    ca_pem: str | bytes | None = None, **kwargs) -> httpx.Client:
        """An ``httpx.Client`` for ``openai.OpenAI(http_client=...)`` that records chats.

        It asks for uncompressed replies so that the bytes recorded are the bytes the service hashed.
        ``verify`` / ``ca_pem`` say what https certificates to trust (see :func:`phalanb.wire.client.tls_context`).
        """
        if inner is None:
            inner = default_transport(verify=tls_context(verify=verify, ca_pem=ca_pem))
        headers = {"Accept-Encoding": "identity", **dict(kwargs.pop("headers", {}) or {})}
        return httpx.Client(transport=RecordingTransport(self, inner), headers=headers, **kwargs)

    @property
    def exchanges(self) -> list[Exchange]:
        with self._lock:
            return list(self._items)

    @property
    def last(self) -> Exchange:
        with self._lock:
            if not self._items:
                raise PhalanbError("nothing recorded yet: was the SDK given this recorder's http_client()?")
            return self._items[-1]

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"<Recorder {len(self._items)} exchange(s)>"
