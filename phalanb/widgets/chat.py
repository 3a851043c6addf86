"""A chat panel: type a prompt, watch the reply stream in, then see every check as a badge and the chain light up.

It calls :meth:`phalanb.session.Session.chat_and_verify` — the same path as ``phalanb demo`` — and only displays
the result. The model's text is escaped before it reaches HTML, and screen updates are throttled so a fast stream
does not flood the browser with messages.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import ipywidgets as W
import traitlets

from ..errors import PhalanbError
from ..session import Session, Settings, VerifiedChat
from ._style import esc
from .badges import VerdictBadges
from .chain import TrustChainView
from .settings import SettingsPanel

__all__ = ["ChatPanel", "reply_html"]


def reply_html(text: str, *, streaming: bool = False) -> str:
    """The reply as HTML: escaped text in a pre-wrapped block (a reply is text, never markup)."""
    cursor = "▌" if streaming else ""
    return (f'<div style="white-space:pre-wrap;font-family:sans-serif;border-left:3px solid #8c959f;'
            f'padding:4px 8px;min-height:1.5em">{esc(text)}{cursor}</div>')


class ChatPanel(W.VBox):
    """``ChatPanel(settings_panel)`` or ``ChatPanel(session=session)``.

    Traits for code and tests: ``text`` (the reply so far, plain text), ``status`` (``idle``, ``streaming``,
    ``verifying``, the verdict status, or ``error``), ``updates`` (how many times the reply was redrawn).
    ``result`` holds the last :class:`~phalanb.session.VerifiedChat`.
    """

    text = traitlets.Unicode("")
    status = traitlets.Unicode("idle")
    updates = traitlets.Int(0)

    def __init__(self, settings: SettingsPanel | Settings | None = None, *, session: Session | None = None,
                 prompt: str = "In one sentence: what does a signed reply prove?", stream: bool = True,
                 max_tokens: int | None = None, min_interval: float = 0.1, **kwargs: Any):
        self._settings_source = settings
        self._session = session
        self._own_session: Session | None = None
        self._session_version = -1
        self.min_interval = min_interval
        self.max_tokens = max_tokens
        self.result: VerifiedChat | None = None
        self.prompt = W.Textarea(value=prompt, placeholder="Ask something", rows=2,
                                 layout=W.Layout(width="min(100%, 640px)"))
        self.stream = W.Checkbox(value=stream, description="stream", indent=False)
        # ACI gateways: verify the keyset first, then seal the prompt to its E2EE key (ACI.md §6).
        self.encrypt = W.Checkbox(value=False, description="encrypt (E2EE)", indent=False)
        self.wire = W.HTML()
        self.send = W.Button(description="Send and verify", button_style="primary", icon="paper-plane")
        self.reply = W.HTML(reply_html(""))
        self.info = W.HTML()
        self.badges = VerdictBadges()
        self.chain = TrustChainView()
        self.send.on_click(lambda _b: self.ask())
        super().__init__([self.prompt, W.HBox([self.send, self.stream, self.encrypt]), self.reply, self.info,
                          self.wire, self.badges, self.chain], **kwargs)

    # -- the session ------------------------------------------------------------------------------------
    def _current_session(self) -> Session:
        if self._session is not None:
            return self._session
        src = self._settings_source
        version = src.version if isinstance(src, SettingsPanel) else 0
        if self._own_session is None or version != self._session_version:
            self.close_session()
            settings = src.settings() if isinstance(src, SettingsPanel) else (src or Settings.from_env())
            self._own_session = Session(settings)
            self._session_version = version
        return self._own_session

    def close_session(self) -> None:
        if self._own_session is not None:
            self._own_session.close()
            self._own_session = None

    # -- streaming with throttled redraws ----------------------------------------------------------------
    def _throttled(self) -> Callable[[str], None]:
        pieces: list[str] = []
        last = [0.0]

        def on_text(piece: str) -> None:
            pieces.append(piece)
            now = time.monotonic()
            if now - last[0] >= self.min_interval:
                last[0] = now
                self._draw("".join(pieces), streaming=True)
        return on_text

    def _draw(self, text: str, *, streaming: bool) -> None:
        self.text = text
        self.reply.value = reply_html(text, streaming=streaming)
        self.updates += 1

    # -- one round ---------------------------------------------------------------------------------------
    def ask(self, prompt: str | None = None) -> VerifiedChat | None:
        """Chat, verify, display. Service and input errors are shown in the panel (and returned as None)."""
        if prompt is not None:
            self.prompt.value = prompt
        self.send.disabled = True
        self.status = "streaming"
        self.badges.show(None)
        self.chain.show(None)
        self.info.value = ""
        self.wire.value = ""
        self._draw("", streaming=True)
        try:
            session = self._current_session()
            where = "the simulator" if session.simulated else session.client.base_url
            self.info.value = f"<i>asking {esc(session.client.model)} at {esc(where)}…</i>"
            result = session.chat_and_verify(self.prompt.value, stream=self.stream.value,
                                             max_tokens=self.max_tokens, on_text=self._throttled(),
                                             e2ee=self.encrypt.value)
        except PhalanbError as exc:
            self.status = "error"
            self.info.value = f"<span style='color:#cf222e'>{esc(exc)}</span>"
            return None
        finally:
            self.send.disabled = False
        self.result = result
        self._draw(result.exchange.text, streaming=False)
        ex = result.exchange
        t = ex.timings
        ttft = f"{t.ttft_s * 1000:.0f} ms" if t.ttft_s is not None else "n/a"
        receipt = f" · receipt <code>{esc(ex.receipt_id)}</code>" if ex.receipt_id else ""
        self.info.value = (f"chat id <code>{esc(ex.chat_id)}</code>{receipt} · {len(ex.request_bytes)} request "
                           f"bytes · {len(ex.response_bytes)} response bytes · first token {ttft}")
        self.wire.value = wire_html(ex)
        self.badges.show(result.verdict)
        self.chain.show(result.verdict)
        self.status = result.verdict.status
        return result


def wire_html(exchange: Any, *, limit: int = 600) -> str:
    """What travelled next to what was meant: with E2EE, the request bytes on the wire (ciphertext in every prompt
    field) beside the prompt as typed, and the reply's wire bytes beside the decrypted text. Empty without E2EE."""
    rec = getattr(exchange, "e2ee", None)
    if rec is None:
        return ""

    def cut(b: bytes) -> str:
        text = b[:limit].decode("utf-8", "replace")
        return esc(text) + (f" … ({len(b) - limit} more bytes)" if len(b) > limit else "")

    cell = "vertical-align:top;padding:4px 8px;font-family:monospace;font-size:11px;word-break:break-all"
    return (f"<div style='margin:6px 0'><b>E2EE v2</b> ({esc(rec.algo)}, key {esc(rec.key_id)} of the verified "
            f"keyset): {esc(', '.join(rec.encrypted_fields))} left encrypted."
            f"<table style='width:100%;max-width:900px;table-layout:fixed'><tr><th>on the wire</th><th>what you "
            f"meant / what you read</th></tr>"
            f"<tr><td style='{cell}'>{cut(exchange.request_bytes)}</td><td style='{cell}'>"
            f"{cut(rec.restored_request)}</td></tr>"
            f"<tr><td style='{cell}'>{cut(exchange.response_bytes)}</td><td style='{cell}'>{esc(exchange.text)}"
            f"</td></tr></table></div>")
