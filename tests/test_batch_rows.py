"""A batch audit decides every row as a single verification would: row by row, good and tampered lines alike,
on one worker, on two, and with whole verdicts. (Throughput is benchmarks/bench_batch.py's business, not a test's.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib: make batchkit importable

import batchkit  # noqa: E402
from phalanb.audit.batch import audit, write_batch  # noqa: E402
from phalanb.wire.exchange import Exchange  # noqa: E402
from phalanb.vllm.signatures import SignatureRecord  # noqa: E402
from phalanb.gateway import verify_exchange  # noqa: E402  (the single path a user runs)



@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """A JSONL batch of recorded simulator replies plus one tampered copy per rule, and the single verdicts."""
    first, replies = batchkit.record_replies(5, "rows")
    path = tmp_path_factory.mktemp("rows") / "batch.jsonl"
    write_batch(path, report=first.attestation.report, nonce=first.attestation.nonce, policy=first.policy,
                verified_at=first.verified_at, collateral=first.online.collateral,
                nras_response=first.online.nras_response, jwks=first.online.jwks, replies=replies)
    header, *lines = path.read_text().splitlines()
    rows = batchkit.mutations([json.loads(line) for line in lines])
    texts = [json.dumps(r) for r in rows]
    path.write_text("\n".join([header] + texts + [""]))
    singles = []
    for r in rows:
        ex = Exchange.from_dict(r["exchange"]) if r["exchange"] is not None else None
        sig = SignatureRecord.from_dict(r["signature"])
        v = verify_exchange(ex, sig, first.attestation.report, nonce=first.attestation.nonce, policy=first.policy,
                            collateral=first.online.collateral, nras_response=first.online.nras_response,
                            jwks=first.online.jwks, at=first.verified_at)
        singles.append((ex.chat_id if ex is not None else sig.chat_id, v,
                        (ex.timings.ttft_s, ex.timings.total_s) if ex is not None else (None, None)))
    return path, singles


def test_batch_rows_equal_single_verification_row_by_row(batch):
    path, singles = batch
    df = audit([path], progress=False, trust="simulated")
    batchkit.same_rows(df, singles)
    # The rules above really were exercised: each kind of outcome occurs.
    assert {"verified", "failed", "incomplete"} <= set(df["verdict"])
    failing = ",".join(df["failing"])
    for rule in ("request.hash", "response.hash", "signature.valid", "signature.bound"):
        assert rule in failing


def test_batch_rows_on_two_workers_equal_single_verification(batch):
    path, singles = batch
    batchkit.same_rows(audit([path], workers=2, progress=False, trust="simulated"), singles)


def test_batch_whole_verdicts_equal_single_verdicts_check_by_check(batch):
    path, singles = batch
    df = audit([path], progress=False, verdicts=True, trust="simulated")
    batchkit.same_rows(df, singles)
    for got, (_, want, _) in zip(df["verdict_obj"], singles):
        assert [c.to_dict() for c in got] == [c.to_dict() for c in want]


def test_a_batch_is_read_in_spans_of_whole_lines(batch, monkeypatch):
    """Cutting the file into many small spans (one worker's share each) changes no row."""
    import phalanb.audit.fastpath as scan

    path, singles = batch
    monkeypatch.setattr(scan, "SPAN_BYTES", 700)
    data = path.read_bytes()
    body = len(data.split(b"\n")[0]) + 1
    spans = list(scan.spans(str(path), body))
    assert len(spans) > 5 and spans[0][0] == body and spans[-1][1] == len(data)
    assert all(a[1] == b[0] and data[a[1] - 1:a[1]] == b"\n" for a, b in zip(spans, spans[1:]))
    df = audit([path], progress=False, trust="simulated")
    batchkit.same_rows(df, singles)
    assert list(df["source"]) == [f"{path}:{n}" for n in range(2, 2 + len(singles))]


def test_a_bad_line_in_a_later_span_is_the_loaders_parse_error(batch, monkeypatch, tmp_path):
    """The workers read the lines, but a line that is not an exchange record is reported exactly as
    load_items reports it: same words, same line number, same offset."""
    import phalanb.audit.fastpath as scan
    from phalanb.audit.batch import load_items
    from phalanb.errors import ParseError

    path, _ = batch
    lines = path.read_bytes().split(b"\n")
    lines[20] = b'{"exchange": null, "signature": {"text": 5}}'
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\n".join(lines))
    with pytest.raises(ParseError) as want:
        load_items([bad], trust="simulated")
    monkeypatch.setattr(scan, "SPAN_BYTES", 700)
    for workers in (1, 2):
        with pytest.raises(ParseError) as got:
            audit([bad], workers=workers, progress=False, trust="simulated")
        assert (str(got.value), got.value.field, got.value.offset) == \
            (str(want.value), want.value.field, want.value.offset)
        assert "line 21" in str(got.value)


def _with_line(path, tmp_path, at: int, make) -> object:
    lines = path.read_bytes().split(b"\n")
    lines[at] = make(lines[at])
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\n".join(lines))
    return bad


def _deep(line: bytes) -> bytes:  # nests 600 levels: orjson would read it, the exact reader refuses it
    return line[:-1] + b', "deep": ' + b"[" * 600 + b"]" * 600 + b"}"


def _not_utf8(line: bytes) -> bytes:
    return line.replace(b'"signature": {', b'"signature": {"x": "\xff", ', 1)


def _bad_e2ee(line: bytes) -> bytes:  # the loader reads an e2ee record (and refuses this one): so does the batch
    return line.replace(b'"exchange": {', b'"exchange": {"e2ee": 5, ', 1)


def _receipt_not_a_string(line: bytes) -> bytes:
    return line.replace(b'"exchange": {', b'"exchange": {"receipt_id": 7, ', 1)


def _refused(kind: str):
    return lambda line: batchkit.refused_lines(line)[kind]


_REFUSED = ["duplicate-member", "duplicate-response", "nan", "infinite", "lone-surrogate"]


@pytest.mark.parametrize("make", [_deep, _not_utf8, _bad_e2ee, _receipt_not_a_string, *map(_refused, _REFUSED)],
                         ids=["nested-600", "not-utf8", "bad-e2ee", "receipt-id-not-a-string", *_REFUSED])
def test_a_line_the_fast_reader_would_read_otherwise_is_the_loaders_parse_error(batch, tmp_path, make):
    """orjson nests deeper than the exact reader allows and refuses what that reader words: such lines, and
    fields only the exact reader looks at, are read the exact way — same words, field and offset as load_items."""
    from phalanb.audit.batch import load_items
    from phalanb.errors import ParseError

    path, _ = batch
    bad = _with_line(path, tmp_path, 3, make)
    with pytest.raises(ParseError) as want:
        load_items([bad], trust="simulated")
    assert "line 4" in str(want.value)
    for workers in (1, 2):
        with pytest.raises(ParseError) as got:
            audit([bad], workers=workers, progress=False, trust="simulated")
        assert (str(got.value), got.value.field, got.value.offset) == \
            (str(want.value), want.value.field, want.value.offset)


def test_the_fast_reader_reads_a_line_as_the_exact_reader_does():
    """Where orjson and the exact reader could differ, the fast reader declines (the exact one then reads)."""
    import phalanb.audit.fastpath as scan

    assert scan._fast_json(b'{"a": NaN}') is None                          # orjson refuses NaN
    assert scan._fast_json(b'"\\ud800"') is None                           # and lone surrogates
    assert scan._fast_json(b"[" * 600 + b"]" * 600) is None                # deeper than the exact reader allows
    assert scan._fast_json(b"[" * 300 + b"]" * 300) is None                # deeper than orjson writes: declined
    assert scan._fast_json(b"[" * 250 + b"]" * 250) is not None
    assert scan._WRITER_BOUNDS_DEPTH                                       # this orjson stops writing at 255 levels
    assert scan._fast_json(b'{"a": 1, "a": 2}') is None                    # orjson keeps the last; refused
    assert scan._fast_json(b'{"a": "1:2", "b": {"c": 2}}') == {"a": "1:2", "b": {"c": 2}}
    assert scan._fast_json(b'{"a": "\\u0041"}') is None                    # a backslash: the exact reader decides
    row = scan._fast_json(b'{"signature": {"text": "t", "signature": "s", "chat_id": 18446744073709551616}}')
    assert scan._fast_reply(row) is None                                   # a > 64-bit integer became a float
    line = b'{"exchange": {"request_b64": "", "response_b64": "", "status": 18446744073709551816}, ' \
           b'"signature": {"text": "t", "signature": "s"}}'
    assert scan._fast_reply(scan._fast_json(line)) is None
    assert scan.read_line(line).chat_id is None                            # the exact reader: status >= 400


def _outcome(read, line: bytes) -> tuple:
    import phalanb.audit.fastpath as scan

    try:
        r = read(line)
    except scan.LineError as exc:
        return ("line error", exc.detail, exc.field, exc.offset)
    except Exception as exc:  # noqa: BLE001 - whatever escapes must escape both readers alike
        return ("raised", type(exc).__name__, str(exc))
    times = None if r.timings is None else (r.timings.ttft_s, r.timings.total_s)
    return ("reply", r.request_bytes, r.response_bytes, r.stream, r.chat_id, times, r.signature)


def test_the_fast_reader_agrees_with_the_exact_reader_on_mutated_lines(batch):
    """Structure-aware mutations of real lines (nasty numbers, deep nesting, wrong types, broken bytes): the
    fast reader gives the exact reader's reply or error, every time."""
    import random
    import sys
    from pathlib import Path

    import phalanb.audit.fastpath as scan

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import fuzzkit as fk

    path, _ = batch
    rows = [json.loads(line) for line in path.read_bytes().split(b"\n")[1:] if line.strip()]
    rng = random.Random(15)
    kinds = set()
    for _ in range(500):
        text = fk.mutate_json_text(rng, rng.choice(rows))
        try:
            line = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            line = text.encode("utf-8", "surrogatepass")
        want = _outcome(lambda b: scan._exact_line(b, 0, 0), line)
        assert _outcome(scan.read_line, line) == want, line[:300]
        kinds.add(want[0])
    assert kinds == {"reply", "line error"}


def _quick_or_exact(line: bytes) -> str:
    """What the batch makes of a line: "fast" (the one-pass reader's row, which must be the exact reader's), "exact"
    (the one-pass reader declined; the exact reader reads it) or "refused" (the exact reader refuses it: then the
    one-pass reader must not have read it, and the general reader raises the exact reader's error)."""
    import phalanb.audit.fastpath as scan
    from phalanb.audit.batch import _own

    row = scan.quick_line(line, 0, None)
    try:
        r = scan._exact_line(line, 0, 0)
    except scan.LineError as exc:
        assert row is None, "the one-pass reader read a line the exact reader refuses"
        assert _outcome(scan.read_line, line) == ("line error", exc.detail, exc.field, exc.offset)
        return "refused"
    if row is None:
        return "exact"
    want = _own(0, r.chat_id if r.request_bytes is not None else r.signature.chat_id, r.request_bytes,
                r.response_bytes, r.stream, r.signature, None, r.timings, False)
    assert row == want, (row, want)
    return "fast"


def test_a_member_written_twice_anywhere_in_a_line_is_refused_as_the_exact_reader_refuses_it(batch):
    """One member of any object of a line written twice (request_b64 and response_b64 among them, with base64 or
    with colons, before or after the original; compact or spaced): the one-pass reader never reads the line — its
    count leaves the base64 out, so this is its proof at work — and the general reader raises the exact reader's
    error; written once, in either spacing, the line is read as it was (fast, to the exact reader's row)."""
    import random
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import dupkit

    path, _ = batch
    lines = [line for line in path.read_bytes().split(b"\n")[1:] if line.strip()]
    rng = random.Random(1917)
    kinds = {True: {"fast": 0, "exact": 0, "refused": 0}, False: {"fast": 0, "exact": 0, "refused": 0}}
    for line in lines[:4]:  # two untouched replies (read fast), then two whose request differs (read exactly)
        alone = _quick_or_exact(line)
        value = json.loads(line)
        docs = dupkit.variants(value, rng, per_object=8)
        ex = value["exchange"]
        for key in ("request_b64", "response_b64"):  # the members the count skips, written twice on purpose
            for dup in (ex[key], "AAAA", "a:b", ":"):
                for after in (False, True):
                    pair = f'"{key}": "{dup}", '
                    at = line.index(f'"{key}": '.encode())
                    if after:
                        end = line.index(b'"', line.index(b'": "', at) + 4) + 1
                        docs.append((line[:end] + b", " + pair[:-2].encode() + line[end:], True))
                    else:
                        docs.append((line[:at] + pair.encode() + line[at:], True))
        # A string after the first '"response_b64": "' that is not the exchange's base64 and holds colons (here a
        # field of the signature, written first), beside a member written twice whose colons match them: the count
        # must not leave that string out.
        first = {"signature": {**value["signature"], "response_b64": ":"}, "exchange": ex}
        once = json.dumps(first).encode()
        docs.append((once, False))
        docs.append((once.replace(b'"stream": ', b'"stream": %s, "stream": ' % json.dumps(ex["stream"]).encode(), 1),
                     True))
        first["signature"]["response_b64"] = ":" * (ex["url"].count(":") + 1)
        once = json.dumps(first).encode()
        docs.append((once.replace(b'"url": ', b'"url": %s, "url": ' % json.dumps(ex["url"]).encode(), 1), True))
        for doc, twice in docs:
            kind = _quick_or_exact(doc)
            kinds[twice][kind] += 1
            assert kind == ("refused" if twice else alone), doc[:300]
    assert kinds[True]["refused"] > 200 and kinds[False]["fast"] == 6 and kinds[False]["exact"] == 6, kinds
