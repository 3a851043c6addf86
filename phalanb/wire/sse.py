"""Reading OpenAI-style chat replies from the exact bytes: server-sent events and plain JSON bodies.

Parsing here is for *understanding* the reply (chat id, text, usage). Hashing never uses what is parsed: it uses
the bytes as they arrived. That is why the decoder is incremental over raw chunks and never rebuilds lines.

>>> dec = SSEDecoder()
>>> [e.data for e in dec.feed(b'data: {"a":1}\\n\\ndata: [DONE]\\n\\n')]
['{"a":1}', '[DONE]']
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterator

from .. import _json
from ..errors import ParseError

__all__ = ["SSEEvent", "SSEDecoder", "ChatAssembler", "parse_sse", "parse_completion"]

#: One event larger than this is refused: a stream that never ends an event must not eat memory.
MAX_EVENT_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class SSEEvent:
    data: str
    offset: int  # absolute byte offset of the event's first byte in the stream
    length: int

    @property
    def done(self) -> bool:
        return self.data == "[DONE]"

    def json(self) -> Any:
        try:
            return _json.loads(self.data)
        except json.JSONDecodeError as exc:
            raise ParseError(f"event data is not JSON ({exc.msg} at column {exc.colno})",
                             field="sse.data", offset=self.offset) from None


class SSEDecoder:
    """Splits a byte stream into events as chunks arrive. ``feed`` yields complete events; ``close`` checks the end."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._base = 0  # absolute offset of _buf[0]
        # Where the next boundary search starts: the bytes before it were searched already. Rescanning the whole
        # buffer on every chunk made a long event dripped in small chunks quadratic (200 kB, 1 byte a chunk: 54 s).
        self._searched = 0

    def feed(self, chunk: bytes) -> Iterator[SSEEvent]:
        self._buf += chunk
        while True:
            end, sep = self._find_boundary()
            if end < 0:
                # A separator is at most 4 bytes: the next search re-reads only the last 3 of these.
                self._searched = max(0, len(self._buf) - 3)
                if len(self._buf) > MAX_EVENT_BYTES:
                    raise ParseError(f"an event longer than {MAX_EVENT_BYTES} bytes without a blank line",
                                     field="sse.event", offset=self._base)
                return
            raw = bytes(self._buf[:end])
            start = self._base
            del self._buf[:end + sep]
            self._base += end + sep
            self._searched = 0
            event = self._decode(raw, start, end + sep)
            if event is not None:
                yield event

    def close(self) -> bytes:
        """Bytes left after the last complete event (a stream cut mid-event leaves some)."""
        rest = bytes(self._buf)
        self._buf.clear()
        self._searched = 0
        return rest

    @property
    def offset(self) -> int:
        return self._base + len(self._buf)

    def _find_boundary(self) -> tuple[int, int]:
        buf = self._buf
        candidates = [(buf.find(s, self._searched), len(s)) for s in (b"\n\n", b"\r\n\r\n", b"\r\r")]
        found = [(i, n) for i, n in candidates if i >= 0]
        return min(found) if found else (-1, 0)

    @staticmethod
    def _decode(raw: bytes, offset: int, length: int) -> SSEEvent | None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError("event is not valid UTF-8", field="sse.event", offset=offset + exc.start) from None
        data_lines = []
        for line in text.splitlines():
            if not line or line.startswith(":"):
                continue  # comments (keep-alives) carry no data
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "data":
                data_lines.append(value)
        if not data_lines:
            return None
        return SSEEvent("\n".join(data_lines), offset, length)


def parse_sse(data: bytes) -> list[SSEEvent]:
    """All events of a complete stream."""
    dec = SSEDecoder()
    events = list(dec.feed(data))
    rest = dec.close()
    if rest.strip():
        raise ParseError(f"the stream ends inside an event ({len(rest)} bytes after the last blank line)",
                         field="sse.event", offset=len(data) - len(rest))
    return events


@dataclass
class ChatAssembler:
    """Builds the assistant's reply from chat-completion chunks (stream) and knows the chat id."""

    chat_id: str | None = None
    model: str | None = None
    parts: list[str] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None
    saw_done: bool = False
    chunks: int = 0
    content_chunks: int = 0

    def add(self, event: SSEEvent) -> str:
        """Take one event; return the content it added ('' if none)."""
        if event.done:
            self.saw_done = True
            return ""
        if self.saw_done:
            raise ParseError("data after data: [DONE]", field="sse.event", offset=event.offset)
        obj = event.json()
        if not isinstance(obj, dict):
            raise ParseError("event data is JSON but not an object", field="sse.data", offset=event.offset)
        if "error" in obj and "choices" not in obj:
            err = obj["error"]
            msg = err.get("message") if isinstance(err, dict) else err
            raise ParseError(f"the server reported an error inside the stream: {msg}", field="sse.error",
                             offset=event.offset)
        self.chunks += 1
        if self.chat_id is None and isinstance(obj.get("id"), str):
            self.chat_id = obj["id"]  # the chat id is the id of the first event (SPEC §2)
        if self.model is None and isinstance(obj.get("model"), str):
            self.model = obj["model"]
        if isinstance(obj.get("usage"), dict):
            self.usage = obj["usage"]
        added = ""
        choices = obj.get("choices")
        for choice in choices if isinstance(choices, list) else ():  # "choices": 1.5 is no choice, not a crash
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(content, str) and content:
                added += content
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        if added:
            self.parts.append(added)
            self.content_chunks += 1
        return added

    @property
    def text(self) -> str:
        return "".join(self.parts)


def parse_completion(body: bytes) -> ChatAssembler:
    """Read a non-streaming ``chat.completion`` body."""
    try:
        obj = _json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ParseError(f"response body is not JSON ({exc})", field="body", offset=getattr(exc, "pos", None)) from None
    if not isinstance(obj, dict):
        raise ParseError("response body is JSON but not an object", field="body", offset=0)
    out = ChatAssembler(chat_id=obj.get("id") if isinstance(obj.get("id"), str) else None,
                        model=obj.get("model") if isinstance(obj.get("model"), str) else None,
                        usage=obj.get("usage") if isinstance(obj.get("usage"), dict) else None)
    choices = obj.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message") or {}
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            out.parts.append(content)
        out.finish_reason = choices[0].get("finish_reason")
    out.saw_done = True
    return out
