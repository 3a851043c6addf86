"""The SSE reader and the verdict model."""

import pytest

from phalanb.errors import ParseError
from phalanb.exchange import Exchange
from phalanb.sse import MAX_EVENT_BYTES, SSEDecoder, parse_completion, parse_sse
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
