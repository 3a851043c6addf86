"""What the wire asks of an encryption it is handed: seal the request, open the reply, record what was sent.

The client carries bytes and knows no protocol. A protocol that encrypts chats (ACI's E2EE v2:
:class:`phalanb.aci.AttestedE2EEKey`) implements :class:`Encryption`; the client calls it at three moments:

1. ``sealed = encryption.seal(payload, endpoint="/v1/chat/completions")`` before sending: the body to send
   (``sealed.body``) and the headers that go with it (``sealed.headers``);
2. ``opener = sealed.opener(stream=..., on_text=...)``, fed every raw chunk of the reply while it streams
   (``opener.feed(chunk)``: plaintext pieces reach ``on_text``);
3. ``opener.finish(exchange)`` once the exact bytes are recorded: it sets ``exchange.e2ee`` (the protocol's record of
   what was sent, for offline re-verification) and ``exchange.text``, or raises the protocol's error.

A saved exchange's record is read back by the reader the protocol registered with
:func:`phalanb.wire.exchange.register_sealed_record_reader`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol, runtime_checkable

__all__ = ["Encryption", "SealedRequest", "ReplyOpener"]


class ReplyOpener(Protocol):
    def feed(self, chunk: bytes) -> None: ...

    def finish(self, exchange: Any) -> None: ...


class SealedRequest(Protocol):
    body: bytes
    headers: Mapping[str, str]

    def opener(self, *, stream: bool, on_text: Callable[[str], None] | None) -> ReplyOpener: ...


@runtime_checkable
class Encryption(Protocol):
    def seal(self, payload: Mapping[str, Any], *, endpoint: str) -> SealedRequest: ...
