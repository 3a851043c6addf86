"""The SSE reader and the verdict model."""

import pytest

from phalanb.errors import ParseError
from phalanb.wire.exchange import Exchange
from phalanb.wire.sse import MAX_EVENT_BYTES, SSEDecoder, parse_completion, parse_sse
from phalanb.verdict import Check, Status, Verdict


def test_events_split_on_any_blank_line_and_keep_offsets():
    data = b'data: {"id":"a"}\r\n\r\n: keep-alive\n\ndata: [DONE]\n\n'
    events = parse_sse(data)
    assert [e.data for e in events] == ['{"id":"a"}', "[DONE]"]
    assert events[0].offset == 0 and data[events[1].offset:].startswith(b"data: [DONE]")


def test_chunk_boundaries_do_not_matter():
    data = b'data: {"id":"x","choices":[{"index":0,"delta":{"content":"h\\u00e9"}}]}\n\ndata: [DONE]\n\n'
    whole = Exchange.from_bytes(request_bytes=b"{}", response_bytes=data)
    dec = SSEDecoder()
    pieces = [e.data for i in range(len(data)) for e in dec.feed(data[i:i + 1])]
    assert pieces == [e.data for e in parse_sse(data)]
    assert whole.text == "hé" and whole.chat_id == "x" and whole.complete


def test_multiline_data_is_joined():
    assert parse_sse(b"data: a\ndata: b\n\n")[0].data == "a\nb"


def test_endless_event_is_refused():
    dec = SSEDecoder()
    with pytest.raises(ParseError, match="without a blank line"):
        list(dec.feed(b"data: " + b"x" * (MAX_EVENT_BYTES + 1)))


def test_a_stream_without_done_is_incomplete():
    ex = Exchange.from_bytes(request_bytes=b"{}", response_bytes=b'data: {"id":"x"}\n\n', stream=True)
    assert ex.complete is False


def test_error_event_inside_stream_is_reported_and_the_bytes_kept():
    body = b'data: {"error":{"message":"overloaded"}}\n\n'
    ex = Exchange.from_bytes(request_bytes=b"{}", response_bytes=body, stream=True)
    assert "server reported an error" in ex.content_error and "overloaded" in ex.content_error
    assert ex.response_bytes == body and ex.complete is False


def test_completion_body_errors_name_the_field():
    with pytest.raises(ParseError, match="body"):
        parse_completion(b"not json")
    assert parse_completion(b'{"id":"c","choices":[{"message":{"content":"hi"}}]}').text == "hi"


def _v(*statuses, required=True):
    return Verdict(Check(f"c{i}", s, "r", required=required) for i, s in enumerate(statuses))


def test_verdict_status_rules():
    assert _v(Status.PASS, Status.PASS).status == "verified"
    assert _v(Status.PASS, Status.SKIPPED).status == "incomplete"
    assert _v(Status.PASS, Status.WARNING).status == "verified"  # held, with a caveat the policy accepted
    assert _v(Status.SKIPPED, Status.FAIL).status == "failed"
    assert _v().status == "incomplete"  # nothing checked is not "verified"
    mixed = Verdict([Check("a", Status.PASS, "r"), Check("b", Status.WARNING, "w", required=False)])
    assert mixed.status == "verified" and mixed.warnings
    assert [v.exit_code() for v in (_v(Status.PASS), _v(Status.FAIL), _v(Status.SKIPPED))] == [0, 1, 3]


def test_a_stored_status_is_never_believed():
    data = _v(Status.PASS, Status.FAIL).to_dict()
    data["status"] = "verified"
    assert Verdict.from_dict(data).status == "failed"


def test_duplicate_check_ids_are_refused():
    with pytest.raises(ValueError, match="duplicate"):
        Verdict([Check("a", Status.PASS, "r"), Check("a", Status.PASS, "r")])


# --- how a verdict reads (issue 14 item 5) ---------------------------------------------------------------------

def _mixed():
    return Verdict([Check("request.hash", Status.PASS, "sha256 of the sent bytes matches the signed text"),
                    Check("response.hash", Status.FAIL, "sha256 of the received bytes " + "ab" * 32 + " differs from "
                          "the signed hash; something changed the bytes between the service and us"),
                    Check("gpu.nonce", Status.SKIPPED, "no GPU evidence in the report"),
                    Check("tdx.tcb_status", Status.WARNING, "SWHardeningNeeded, accepted by the policy")])


def test_tally_counts_each_outcome_in_one_line():
    assert _mixed().tally() == "4 checks: 1 pass, 1 fail, 1 skipped, 1 warning"
    v = Verdict([Check(f"c{i}", Status.PASS, "ok") for i in range(25)]
                + [Check(f"w{i}", Status.WARNING, "caveat") for i in range(2)])
    assert v.tally() == "27 checks: 25 pass, 2 warnings"


def test_table_is_plain_by_default_with_a_short_verdict_line_and_details_below():
    table = _mixed().table()
    assert "\033[" not in table
    lines = table.splitlines()
    at = lines.index("verdict: failed")  # the verdict line is short: the reasons come below it
    assert lines[at - 1] == "4 checks: 1 pass, 1 fail, 1 skipped, 1 warning"
    assert lines[at + 1].startswith("  failed: response.hash (") and lines[at + 2].startswith("  not checked: gpu.nonce")


def test_table_colours_each_status_only_when_asked_and_keeps_columns_aligned():
    import re

    v = _mixed()
    plain, coloured = v.table(), v.table(color=True)
    assert "\033[32mpass\033[0m" in coloured and "\033[31mfail\033[0m" in coloured
    assert "\033[90mskipped\033[0m" in coloured and "\033[33mwarning\033[0m" in coloured
    assert re.sub(r"\033\[[0-9;]*m", "", coloured) == plain


def test_table_wraps_long_reasons_to_the_width_and_keeps_hashes_whole():
    v = _mixed()
    table = v.table(width=80)
    assert all(len(line) <= 80 for line in table.splitlines() if "ab" * 32 not in line)
    assert "ab" * 32 in table  # a hash is never cut in two
    assert " ".join(table.split()).count("something changed the bytes between the service and us") == 2
    assert v.table(width=80).splitlines()[0] == v.table().splitlines()[0]


def test_color_only_on_a_tty_and_never_with_no_color():
    import io

    from phalanb._term import use_color

    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert use_color(Tty(), environ={}) is True
    assert use_color(io.StringIO(), environ={}) is False  # piped
    assert use_color(Tty(), environ={"NO_COLOR": "1"}) is False
    assert use_color(Tty(), environ={"TERM": "dumb"}) is False


def test_the_cli_colours_and_wraps_on_a_terminal_and_prints_plain_lines_to_a_pipe(monkeypatch):
    import io

    from phalanb._term import verdict_table

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("COLUMNS", "72")
    v = _mixed()
    on_tty = verdict_table(v, Tty())
    assert "\033[31mfail\033[0m" in on_tty and max(len(line) for line in on_tty.splitlines()
                                                    if "ab" * 32 not in line and "\033" not in line) <= 72
    assert verdict_table(v, io.StringIO()) == v.table()  # piped: exactly the plain table
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\033[" not in verdict_table(v, Tty())
