"""Widgets: click buttons, read traits. ipywidgets swallows exceptions raised in callbacks (it only logs them), so
an autouse fixture makes every callback exception fail the test instead."""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import ipywidgets
import pytest

from phalanb.session import Session, Settings
from phalanb.verdict import Check, Status, Verdict
from phalanb.widgets import (
    ByteMapExplorer,
    ChatPanel,
    QuoteExplorer,
    SettingsPanel,
    TimingDashboard,
    TrustChainView,
    VerdictBadges,
    hex_view,
    link_statuses,
)
from phalanb.widgets.chain import chain_html
from phalanb.widgets.chat import reply_html

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(autouse=True)
def callback_exceptions_fail_the_test(monkeypatch):
    """Call widget callbacks without ipywidgets' catch-and-log, so a broken handler raises here."""

    def strict_call(self, *args, **kwargs):
        value = None
        for callback in self.callbacks:
            local = callback(*args, **kwargs)
            value = local if local is not None else value
        return value

    monkeypatch.setattr(ipywidgets.CallbackDispatcher, "__call__", strict_call)


def test_a_failing_callback_fails_the_test():
    b = ipywidgets.Button()
    b.on_click(lambda _b: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        b.click()


def _env(sim, api_key):
    return {"PHALANB_BASE_URL": sim.base_url, "PHALANB_TRUST": "simulated", "PHALANB_API_KEY": api_key}


# -- settings -------------------------------------------------------------------------------------------------
def test_settings_panel_never_puts_an_environment_key_into_a_widget(sim, api_key):
    panel = SettingsPanel(environ=_env(sim, api_key))
    assert panel.has_key and panel.key_source == "$PHALANB_API_KEY"
    assert panel.key.value == "" and api_key not in panel.status.value and api_key not in repr(panel)
    assert all(api_key not in json.dumps(w.get_state(), default=str) for w in panel.children)
    s = panel.settings()
    assert s.base_url == sim.base_url and s.trust == "simulated" and s.api_key.reveal() == api_key


def test_a_typed_key_leaves_the_password_field_at_once():
    panel = SettingsPanel(environ={})
    assert not panel.has_key and "embedded simulator" in panel.status.value
    before = panel.version
    panel.key.value = "sk-typed-secret-123"
    assert panel.key.value == "" and panel.has_key and panel.key_source == "typed"
    assert panel.settings().api_key.reveal() == "sk-typed-secret-123"
    assert "sk-typed" not in panel.status.value and panel.version > before
    panel.forget_key()
    assert not panel.has_key and panel.settings().api_key is None


def test_changing_the_endpoint_bumps_the_version_and_the_description():
    panel = SettingsPanel(environ={})
    v = panel.version
    panel.endpoint.value = "https://api.redpill.ai/v1"
    assert panel.version == v + 1 and "api.redpill.ai" in panel.status.value
    assert panel.settings().base_url == "https://api.redpill.ai/v1"


# -- chat ------------------------------------------------------------------------------------------------------
def test_chat_panel_streams_then_fills_badges_and_chain(sim, api_key):
    panel = ChatPanel(SettingsPanel(environ=_env(sim, api_key)), min_interval=0.0)
    try:
        panel.send.click()
        assert panel.status == "verified", panel.info.value
        result = panel.result
        assert panel.text == result.exchange.text and panel.updates >= 2
        assert set(panel.badges.statuses) == {c.id for c in result.verdict}
        assert panel.chain.links["signature"] == "pass" and panel.chain.links["gpu"] in ("pass", "warning")
        assert not panel.send.disabled and "chatcmpl-" in panel.info.value
        assert api_key not in panel.info.value and api_key not in panel.reply.value
    finally:
        panel.close_session()


def test_chat_panel_throttles_redraws(sim, api_key):
    panel = ChatPanel(SettingsPanel(environ=_env(sim, api_key)), min_interval=60.0)
    try:
        panel.send.click()
        # one empty start, at most one throttled redraw during the stream, the final one
        assert panel.status == "verified" and panel.updates <= 3
    finally:
        panel.close_session()


def test_chat_panel_shows_service_errors_instead_of_raising(fresh_sim, api_key):
    sim = fresh_sim(faults={"chat_500"})
    panel = ChatPanel(SettingsPanel(environ=_env(sim, api_key)))
    try:
        panel.send.click()
        assert panel.status == "error" and "500" in panel.info.value and panel.result is None
        assert not panel.send.disabled
    finally:
        panel.close_session()


class _Upstream(BaseHTTPRequestHandler):
    """A tiny OpenAI-compatible upstream whose model answers with markup."""

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        events = [{"id": "chatcmpl-0123456789abcdef0123456789abcdef", "object": "chat.completion.chunk",
                   "created": 1, "model": "evil", "choices": [{"index": 0, "delta": {"content": piece},
                                                                "finish_reason": None}]}
                  for piece in ("Look: ", XSS, " <script>alert(2)</script>")]
        body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def markup_upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_a_reply_containing_html_is_shown_as_text(fresh_sim, api_key, markup_upstream):
    sim = fresh_sim(upstream=markup_upstream)
    panel = ChatPanel(SettingsPanel(environ=_env(sim, api_key)), min_interval=0.0)
    try:
        panel.send.click()
        assert panel.result is not None and XSS in panel.result.exchange.text  # the model really sent markup
        html = panel.reply.value
        assert "<img" not in html and "<script" not in html
        assert "&lt;img src=x onerror=alert(1)&gt;" in html and "&lt;script&gt;" in html
        assert panel.text.endswith("<script>alert(2)</script>")  # the trait holds plain text, unchanged
        for w in (panel.info, panel.badges.summary, panel.badges.details, panel.chain):
            assert "<img" not in w.value
    finally:
        panel.close_session()


def test_reply_html_escapes_everything():
    assert reply_html(XSS) .count("<img") == 0 and "&lt;img" in reply_html(XSS)


# -- badges and chain -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def verified():
    with Session(Settings(protocol="legacy")) as session:  # the embedded model-server simulator
        return session.chat_and_verify("badges please"), session.policy


def test_each_badge_click_shows_its_check(verified):
    result, _ = verified
    badges = VerdictBadges(result.verdict)
    assert len(badges.row.children) == len(result.verdict)
    for check_id, button in badges.buttons.items():
        button.click()
        assert badges.selected == check_id
        assert check_id in badges.details.value
    assert badges.buttons["signature.valid"].button_style == "success"
    assert badges.buttons["trust.simulated"].button_style == "warning"


def test_badge_details_escape_reasons_and_evidence():
    v = Verdict([Check("response.hash", Status.FAIL, XSS, {"bytes": XSS})])
    badges = VerdictBadges(v)
    badges.buttons["response.hash"].click()
    assert "<img" not in badges.details.value and "&lt;img" in badges.details.value
    assert badges.buttons["response.hash"].button_style == "danger" and "failed" in badges.summary.value


def test_the_chain_relights_when_one_byte_changes(verified):
    from phalanb.vllm.verify import verify_exchange

    result, policy = verified
    chain = TrustChainView(result.verdict)
    assert set(chain.links.values()) <= {"pass", "warning"}
    flipped = bytearray(result.exchange.response_bytes)
    flipped[10] ^= 1
    bad = verify_exchange(dataclasses.replace(result.exchange, response_bytes=bytes(flipped)), result.signature,
                          result.attestation.report, nonce=result.attestation.nonce, policy=policy,
                          collateral=result.online.collateral, nras_response=result.online.nras_response,
                          jwks=result.online.jwks)
    chain.show(bad)
    assert chain.links["response"] == "fail" and chain.links["request"] == "pass"
    assert 'data-link="response" data-status="fail"' in chain.value


def test_links_without_checks_are_skipped_not_passed():
    v = Verdict([Check("request.hash", Status.PASS, "ok"), Check("tdx.tcb_status", Status.SKIPPED, "offline")])
    links = link_statuses(v)
    assert links["request"] == "pass" and links["tcb"] == "skipped" and links["gpu"] == "skipped"
    assert link_statuses(None)["request"] == "skipped"


def test_the_gateway_link_appears_only_for_reports_with_a_gateway_and_shows_its_failure():
    plain = Verdict([Check("request.hash", Status.PASS, "ok")])
    assert "gateway" not in link_statuses(plain) and 'data-link="gateway"' not in chain_html(plain)
    v = Verdict([Check("request.hash", Status.PASS, "ok"),
                 Check("gateway.tdx.quote_signature", Status.FAIL, "gateway: the quote cannot be decoded")])
    assert link_statuses(v)["gateway"] == "fail"
    assert 'data-link="gateway" data-status="fail"' in chain_html(v)


# -- byte maps --------------------------------------------------------------------------------------------------
def test_quote_explorer_highlights_exactly_the_picked_field(verified):
    from phalanb.vllm.report import parse_report
    from phalanb.tdx import parse_quote

    result, _ = verified
    quote = parse_quote(parse_report(result.attestation.report).nodes[0].intel_quote)
    ex = QuoteExplorer(quote)
    ex.picker.value = "mr_td"
    assert ex.field == "mr_td" and ex.highlight == (184, 232)
    hex_part = ex.hex.value
    marked = re.findall(r'<span style="[^"]*">([0-9a-f]{2})</span>', hex_part)
    assert "".join(marked) == quote.body.mr_td.hex()
    ex.select("report_data")
    assert ex.picker.value == "report_data" and ex.highlight == (568, 632) and "report_data" in ex.about.value


def test_byte_map_explorer_takes_plain_rows_and_cuts_long_fields():
    raw = bytes(range(256)) * 20
    ex = ByteMapExplorer(raw, [("head", 0, 4), ("long", 4, 5000)])
    ex.picker.value = "long"
    assert ex.highlight == (4, 5004) and "…" in ex.hex.value
    with pytest.raises(ValueError):
        hex_view(raw, 10, 99999)


# -- timing -----------------------------------------------------------------------------------------------------
def test_timing_dashboard_runs_chats_on_click(sim, client_for):
    dash = TimingDashboard(client=client_for(sim), n=3)
    assert dash.rows == 0
    dash.go.click()
    assert dash.rows == 3 and "ttft_ms" in dash.table.value and not dash.go.disabled
    assert bytes(dash.plot.value).startswith(b"\x89PNG")


def test_timing_dashboard_without_a_client_has_no_run_button():
    import pandas as pd

    frame = pd.DataFrame({"ttft_ms": [100.0, 200.0], "total_ms": [300.0, 400.0], "error": [None, None]})
    dash = TimingDashboard(frame)
    assert dash.go.disabled and dash.rows == 2 and "ttft_ms" in dash.table.value
