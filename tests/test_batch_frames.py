"""A framed batch (``.pbatch``: the JSONL batch's records with their exact bytes stored raw) is audited as the same
records in JSON lines would be: row by row equal to single verification, on one worker and two, with whole
verdicts; and a file that lies about its lengths, is cut short or holds a record the fast reader would read
otherwise is a ParseError naming the field and the offset — never a row the exact reader would not give."""

from __future__ import annotations

import base64
import json
import random
import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib: make the kits importable

import batchkit  # noqa: E402
import dupkit  # noqa: E402
import fuzzkit as fk  # noqa: E402
from phalanb.audit import fastpath as _batchscan
from phalanb.wire import frames as _frames  # noqa: E402
from phalanb.audit.batch import audit, load_items, write_batch  # noqa: E402
from phalanb.errors import ParseError  # noqa: E402
from phalanb.wire.exchange import Exchange  # noqa: E402
from phalanb.gateway import verify_exchange  # noqa: E402  (the single path a user runs)


def _record(row: dict) -> tuple[dict, bytes, bytes]:
    """A JSONL row as a framed record: the object without the base64 fields, and the bytes they held."""
    meta = json.loads(json.dumps(row))
    ex = meta["exchange"]
    if ex is None:
        return meta, b"", b""
    return meta, base64.b64decode(ex.pop("request_b64")), base64.b64decode(ex.pop("response_b64"))


def _frame(records: list[bytes]) -> bytes:
    payload = b"".join(records)
    return _frames.FRAME_HEAD.pack(_frames.MAGIC, len(payload), len(records)) + payload


def _encode(meta: dict | bytes, request: bytes, response: bytes) -> bytes:
    text = meta if isinstance(meta, bytes) else json.dumps(meta).encode("utf-8", "surrogatepass")
    return _frames.RECORD_HEAD.pack(len(text), len(request), len(response)) + text + request + response


def _variants(rows: list[dict]) -> list[tuple[bytes, bytes, bytes]]:
    """Framed records whose meta only the exact reader reads alike (the typed fast reader refuses each): each must
    come out as the exact reader decides it."""
    out = []

    def take(i: int, change) -> None:
        meta, request, response = _record(rows[i % len(rows)])
        text = change(meta)
        out.append((text if isinstance(text, bytes) else json.dumps(meta).encode("utf-8", "surrogatepass"),
                    request, response))

    take(1, lambda m: m["exchange"].update(status=200.0))                      # a float status: int() takes it
    take(1, lambda m: m["exchange"].update(stream=0))                          # a number for a flag: bool() takes it
    take(0, lambda m: m["exchange"].update(request_headers=[["a", "b"]]))      # pairs: dict() takes them
    take(0, lambda m: m["exchange"]["timings"].update(token_ns=[None, 5]))     # a null stamp: allowed
    take(0, lambda m: m["exchange"]["timings"].update(wall_start=True))        # a bool start: refused
    take(1, lambda m: m["exchange"].update(timings=[]))                        # falsy timings: read as none
    take(1, lambda m: m["signature"].update(extra={"x": [1, 2]}))              # an unknown field, kept raw
    take(1, lambda m: m["signature"].update(signing_algo=""))                  # empty algo: ecdsa
    take(2, lambda m: m["exchange"].update(usage={"deep": json.loads("[" * 600 + "]" * 600)}))  # too deep
    take(3, lambda m: json.dumps(m).replace('"url": ', '"\\u0075rl": ', 1).encode())          # an escaped key
    take(3, lambda m: json.dumps(m).replace('"stream": ', '"stream": 5, "stream": ', 1).encode())  # duplicate:
    # refused (phalanb's one JSON rule), as msgspec's last-wins reading would not
    take(1, lambda m: m["exchange"]["timings"].update(done_ns=2 ** 70))       # > 64 bits: still exact
    take(0, lambda m: m["exchange"].update(text="\ud800"))                     # a lone surrogate escape: refused
    take(0, lambda m: m["exchange"].update(request_b64="AAAA"))                # bytes twice: refused
    take(2, lambda m: m.update(exchange=None))                                 # bytes without an exchange
    return out


@pytest.fixture(scope="module")
def framed(tmp_path_factory):
    """A framed batch: recorded simulator replies, one tampered copy per rule, the variants above; the single
    verdict of each record (or the error the exact reader gives the first record it refuses)."""
    first, replies = batchkit.record_replies(6, "frames")
    tmp = tmp_path_factory.mktemp("frames")
    lines = write_batch(tmp / "batch.jsonl", report=first.attestation.report, nonce=first.attestation.nonce,
                        policy=first.policy, verified_at=first.verified_at, collateral=first.online.collateral,
                        nras_response=first.online.nras_response, jwks=first.online.jwks, replies=replies)
    framed = write_batch(tmp / "batch.pbatch", report=first.attestation.report, nonce=first.attestation.nonce,
                         policy=first.policy, verified_at=first.verified_at, collateral=first.online.collateral,
                         nras_response=first.online.nras_response, jwks=first.online.jwks, replies=replies)
    header, *texts = lines.read_text().splitlines()
    rows = [json.loads(t) for t in texts]
    records = [_record(r) for r in batchkit.mutations(rows)]
    records = [(json.dumps(m).encode("utf-8", "surrogatepass"), q, r) for m, q, r in records]
    good = [rec for rec in records + _variants(rows) if _exact(*rec) is not None]
    singles = [_single(first, *_exact(*rec)) for rec in good]
    head = framed.read_bytes().split(b"\n", 1)[0] + b"\n"
    path = tmp / "mixed.pbatch"
    # Two frames, so a record's place is counted across frames too.
    path.write_bytes(head + _frame([_encode(*r) for r in good[:7]]) + _frame([_encode(*r) for r in good[7:]]))
    return {"path": path, "singles": singles, "head": head, "records": good, "first": first, "lines": lines,
            "framed": framed, "variants": _variants(rows)}


def _exact(meta: bytes, request: bytes, response: bytes):
    try:
        return _batchscan.framed_exchange(meta, request, response)
    except (ParseError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _single(first, ex, sig):
    v = verify_exchange(ex, sig, first.attestation.report, nonce=first.attestation.nonce, policy=first.policy,
                        collateral=first.online.collateral, nras_response=first.online.nras_response,
                        jwks=first.online.jwks, at=first.verified_at)
    return (ex.chat_id if ex is not None else sig.chat_id, v,
            (ex.timings.ttft_s, ex.timings.total_s) if ex is not None else (None, None))


def test_write_batch_frames_a_pbatch_and_it_reads_back_as_the_jsonl_batch(framed):
    jsonl, pbatch = load_items([framed["lines"]], trust="simulated"), load_items([framed["framed"]], trust="simulated")
    assert framed["framed"].read_bytes()[len(framed["head"]):].startswith(_frames.MAGIC)
    assert b"request_b64" not in framed["framed"].read_bytes()
    assert len(jsonl) == len(pbatch) == 4
    for a, b in zip(jsonl, pbatch):
        assert (a.exchange.request_bytes, a.exchange.response_bytes, a.exchange.stream, a.exchange.chat_id,
                a.exchange.timings, a.signature.to_dict()) == \
            (b.exchange.request_bytes, b.exchange.response_bytes, b.exchange.stream, b.exchange.chat_id,
             b.exchange.timings, b.signature.to_dict())
    assert [i.source for i in pbatch] == [f"{framed['framed']}#{n}" for n in range(1, 5)]


def test_framed_rows_equal_single_verification_row_by_row(framed):
    path, singles = framed["path"], framed["singles"]
    df = audit([path], progress=False, trust="simulated")
    batchkit.same_rows(df, singles)
    assert list(df["source"]) == [f"{path}#{n}" for n in range(1, len(singles) + 1)]
    assert {"verified", "failed", "incomplete"} <= set(df["verdict"])
    for rule in ("request.hash", "response.hash", "signature.valid", "signature.bound"):
        assert rule in ",".join(df["failing"])


def test_framed_rows_on_two_workers_and_in_small_spans_equal_single_verification(framed, monkeypatch):
    path, singles = framed["path"], framed["singles"]
    batchkit.same_rows(audit([path], workers=2, progress=False, trust="simulated"), singles)
    monkeypatch.setattr(_batchscan, "SPAN_BYTES", 1)  # one frame per span
    monkeypatch.setattr("phalanb.audit.batch.EARLY_SPAN_BYTES", 1)
    batchkit.same_rows(audit([path], workers=2, progress=False, trust="simulated"), singles)


def test_framed_whole_verdicts_equal_single_verdicts_check_by_check(framed):
    df = audit([framed["path"]], progress=False, verdicts=True, trust="simulated")
    batchkit.same_rows(df, framed["singles"])
    for got, (_, want, _) in zip(df["verdict_obj"], framed["singles"]):
        assert [c.to_dict() for c in got] == [c.to_dict() for c in want]


def test_the_variants_are_read_by_the_exact_reader(framed):
    """Each variant is refused by the typed fast reader; each that the exact reader accepts is in the batch."""
    for meta, request, response in framed["variants"]:
        assert _batchscan.quick_record(meta, request, response, 0, None) is None, meta[:200]
    refused = [rec for rec in framed["variants"] if _exact(*rec) is None]
    # the bool start, the deep usage, the duplicate member, the lone surrogate, the bytes twice, the bytes without
    # an exchange
    assert len(refused) == 6


def _fast_or_exact(meta: bytes, request: bytes, response: bytes) -> tuple:
    """What the batch makes of a record: (kind, value) — the compact row of the fast reader, or of the exact one,
    or the exact reader's error."""
    from phalanb.audit.batch import _own

    row = _batchscan.quick_record(meta, request, response, 0, None)
    try:
        ex, sig = _batchscan.framed_exchange(meta, request, response)
    except (ParseError, ValueError, KeyError, TypeError, AttributeError) as exc:
        assert row is None, "the fast reader read a record the exact reader refuses"
        return "refused", type(exc).__name__
    want = _own(0, ex.chat_id if ex is not None else sig.chat_id, ex and ex.request_bytes,
                ex and ex.response_bytes, bool(ex and ex.stream), sig, None, ex and ex.timings, False)
    if row is not None:
        assert row == want, (row, want)
        return "fast", row
    return "exact", want


def test_the_fast_reader_agrees_with_the_exact_reader_on_mutated_records(framed):
    """Structure-aware mutations of a real record's meta: wherever the typed reader gives a row, the exact reader
    gives the very same one; where the exact reader refuses, the typed one never read it."""
    rng = random.Random(15)
    kinds = {"fast": 0, "exact": 0, "refused": 0}
    for meta, request, response in framed["records"][:4]:
        obj = json.loads(meta)
        for _ in range(300):
            text = fk.dumps_with_raw(fk.mutate_json(rng, obj)).encode("utf-8", "surrogatepass")
            kinds[_fast_or_exact(text, request, response)[0]] += 1
        kinds[_fast_or_exact(meta, request, response)[0]] += 1
    assert all(kinds.values()), kinds  # each way was taken


def _written(framed) -> list[tuple[bytes, bytes, bytes]]:
    """The records of the framed batch as phalanb's writer wrote them (compact metas)."""
    data = framed["framed"].read_bytes()
    start = data.index(b"\n") + 1
    return [(m, q, r) for _, _, m, q, r in _frames.records(data[start:], start)]


def test_a_meta_as_phalanb_writes_it_is_told_free_of_duplicates_by_one_comparison(framed):
    """The typed reader writes back the record it read with exactly the members it kept; for a meta phalanb wrote,
    that writing is the meta itself, byte for byte — no member was dropped — and the record is read fast."""
    written = _written(framed)
    assert len(written) >= 4
    for meta, request, response in written:
        assert _batchscan._encode(_batchscan._decode_record(meta)) == meta
        assert _fast_or_exact(meta, request, response)[0] == "fast"


def test_a_member_written_twice_anywhere_in_a_meta_is_refused_as_the_exact_reader_refuses_it(framed):
    """One member of any object of a meta (the record, the exchange, its headers, timings, the signature) written
    twice — the same value or another of its type, before or after the original, compact or spaced: the typed
    reader never reads the record (the exact reader refuses it); written once in another member order or spacing,
    the typed reader reads it, to the exact reader's row."""
    rng = random.Random(1915)
    kinds = {True: {"fast": 0, "exact": 0, "refused": 0}, False: {"fast": 0, "exact": 0, "refused": 0}}
    typed = 0
    for meta, request, response in _written(framed)[:4]:
        value = json.loads(meta)
        docs = dupkit.variants(value, rng, per_object=10)
        shuffled = {k: dict(reversed(v.items())) if isinstance(v, dict) else v for k, v in reversed(value.items())}
        docs.append(dupkit.write(shuffled, rng, at=None))  # written once, in another order: the colon count decides
        for doc, twice in docs:
            kind = _fast_or_exact(doc, request, response)[0]
            kinds[twice][kind] += 1
            assert kind == ("refused" if twice else "fast"), doc[:300]
            if twice:
                try:  # msgspec read it, keeping the last: only the duplicate test declined it
                    _batchscan._decode_record(doc)
                    typed += 1
                except _batchscan._DecodeError:
                    pass
    assert kinds[True]["refused"] == 240 and typed > 150 and kinds[False]["fast"] == 12, (kinds, typed)


# -- files that lie, or are cut short --------------------------------------------------------------------------

def _errors(path) -> list[tuple]:
    """The error of every way of reading ``path``: the loader, and the audit on one worker and on two."""
    out = []
    for read in (lambda: load_items([path], trust="simulated"),
                 lambda: audit([path], progress=False, trust="simulated"),
                 lambda: audit([path], workers=2, progress=False, trust="simulated")):
        with pytest.raises(ParseError) as got:
            read()
        out.append((str(got.value), got.value.field, got.value.offset))
    return out


def _body(framed) -> bytes:
    return framed["path"].read_bytes()[len(framed["head"]):]


def _write(framed, tmp_path, body: bytes, head: bytes | None = None, name: str = "bad.pbatch"):
    p = tmp_path / name
    p.write_bytes((framed["head"] if head is None else head) + body)
    return p


@pytest.mark.parametrize("cut", [1, 5, 11, 12, 13, 30, 700, -700, -1])
def test_a_truncated_framed_batch_is_a_parse_error_with_its_offset(framed, tmp_path, cut):
    body = _body(framed)
    at = cut if cut > 0 else len(body) + cut
    p = _write(framed, tmp_path, body[:at])
    errors = _errors(p)
    message, field, offset = errors[0]
    assert field.startswith(("frame", "record")) and "bad.pbatch" in message
    assert len(framed["head"]) <= offset <= len(framed["head"]) + at
    assert "truncated" in message or "cut short" in message or "past the" in message, message


def test_lying_lengths_and_counts_are_parse_errors_naming_the_field(framed, tmp_path):
    body = _body(framed)
    head_len = len(framed["head"])
    size, count = struct.unpack_from("<II", body, 4)

    def with_u32(at: int, value: int) -> bytes:
        return body[:at] + struct.pack("<I", value) + body[at + 4:]

    cases = {
        "frame.magic": b"PBF2" + body[4:],
        "frame.length": with_u32(4, 2 ** 32 - 1),
        "record.head": with_u32(8, count + 1),                # one record more than the frame holds
        "record.length": with_u32(12, 2 ** 31),               # the first record's meta length
    }
    for field, bad in cases.items():
        errors = _errors(_write(framed, tmp_path, bad))
        assert all(e[1] == field for e in errors), (field, errors)
        assert all(head_len <= e[2] < head_len + len(body) for e in errors), (field, errors)
    # Fewer records than the frame holds bytes for: the bytes left over are named.
    errors = _errors(_write(framed, tmp_path, with_u32(8, count - 1)))
    assert errors[0][1] == "frame.records" and "bytes are left" in errors[0][0]
    # A frame larger than a worker may hold is refused before it is read.
    errors = _errors(_write(framed, tmp_path, with_u32(4, _frames.MAX_FRAME_BYTES + 1)))
    assert errors[0][1] == "frame.length" and "at most" in errors[0][0]


def test_a_record_the_exact_reader_refuses_is_the_loaders_parse_error_on_every_path(framed, tmp_path):
    """Same words, field and offset from the loader and from the workers' fast reader (which hands it over)."""
    records = [_encode(*r) for r in framed["records"]]
    meta, request, response = framed["records"][9]
    bad = [(b'{"exchange": null, "signature": {"text": 5}}', b"", b""),          # not a signature record
           (b"{not json", request, response),                                     # not JSON
           (meta.replace(b'"exchange": {', b'"exchange": {"request_b64": "", ', 1), request, response),
           (meta.replace(b'"exchange": {', b'"exchange": {"e2ee": 5, ', 1), request, response),
           (b'{"exchange": null, "signature": {"text": "", "signature": ""}}', b"x", b"")]
    for rec in bad:
        p = _write(framed, tmp_path, _frame(records[:3]) + _frame(records[3:9] + [_encode(*rec)] + records[9:]))
        errors = _errors(p)
        assert errors[0] == errors[1] == errors[2], errors
        assert " record 10: " in errors[0][0]


def test_an_unknown_framing_and_a_cut_header_are_refused(framed, tmp_path):
    """The loader raises; the audit records the file as a failed row (one unreadable file does not end an audit)."""
    head = framed["head"].replace(b'"phalanb.frames/1"', b'"phalanb.frames/9"')
    for p, field, words in ((_write(framed, tmp_path, _body(framed), head=head), "header.framing", "phalanb.frames/1"),
                            (_write(framed, tmp_path, b"", head=framed["head"][:-1], name="cut.pbatch"), "header",
                             "truncated")):
        with pytest.raises(ParseError) as got:
            load_items([p], trust="simulated")
        assert got.value.field == field and words in str(got.value)
        df = audit([p], progress=False, trust="simulated")
        assert list(df["verdict"]) == ["failed"] and list(df["failing"]) == ["bundle.read"]
        assert df["error"][0] == str(got.value)


def test_an_empty_framed_batch_audits_to_no_rows(framed, tmp_path):
    p = _write(framed, tmp_path, b"")
    assert load_items([p], trust="simulated") == []
    assert len(audit([p], progress=False, trust="simulated")) == 0


def test_a_folder_audit_reads_pbatch_files_too(framed, tmp_path):
    folder = tmp_path / "audit"
    folder.mkdir()
    (folder / "replies.pbatch").write_bytes(framed["framed"].read_bytes())
    df = audit([folder], progress=False, trust="simulated")
    assert len(df) == 4 and (df["verdict"] == "verified").all()


def test_write_batch_refuses_an_unknown_framing(framed, tmp_path):
    from phalanb.errors import InputError

    with pytest.raises(InputError, match="framing"):
        write_batch(tmp_path / "x.pbatch", report={}, nonce=None, policy=framed["first"].policy, verified_at=0.0,
                    replies=[], framing="zip")


def test_exchange_from_dict_with_raw_bytes_refuses_base64_beside_them():
    ex = Exchange.from_bytes(request_bytes=b"{}", response_bytes=b'{"id": "a"}', stream=False)
    d = {k: v for k, v in ex.to_dict().items() if k not in ("request_b64", "response_b64")}
    assert Exchange.from_dict(d, raw=(b"{}", b'{"id": "a"}')).chat_id == "a"
    with pytest.raises(ParseError) as got:
        Exchange.from_dict({**d, "response_b64": ""}, raw=(b"{}", b""))
    assert got.value.field == "exchange.response_b64"


def test_the_chat_id_read_in_one_pass_is_the_recorders(framed):
    """The fast reader takes a small ASCII body's id with msgspec; on mutated bodies (JSON-aware and byte-level,
    NaN, lone surrogates, duplicate ids, non-string ids, error events) it always names the id the exchange
    recorder names."""
    rng = random.Random(27)
    bodies = {True: [], False: []}
    for _, _, response in framed["records"][:4]:
        bodies[response.startswith(b"data:")].append(response)
    checked = 0
    for stream, originals in bodies.items():
        for body in originals:
            first = body.split(b"\n\n")[0][6:] if stream else body
            obj = json.loads(first)
            for _ in range(400):
                k = rng.randrange(3)
                if k == 0:
                    part = fk.dumps_with_raw(fk.mutate_json(rng, obj)).encode("utf-8", "surrogatepass")
                elif k == 1:
                    part = fk.mutate_bytes(rng, first)
                else:
                    part = rng.choice((b'{"id": "a", "id": "b"}', b'{"id": 5}', b'{"id": NaN}', b'{"error": 1}',
                                       b'{"error": 1, "choices": [], "id": "e"}', b'{"x": "\\ud800", "id": "s"}',
                                       b'[1]', b'{"id": "q"', b'{"id": "\\u0071"}', b'{"\\u0069d": "k"}'))
                whole = (b"data: " + part + b"\n\n" + body.split(b"\n\n", 1)[1]) if stream else part
                want = Exchange.from_bytes(request_bytes=b"", response_bytes=whole, stream=stream).chat_id
                assert _batchscan.response_chat_id(whole, stream, 200) == want, whole[:200]
                checked += 1
    assert checked == 400 * sum(map(len, bodies.values())) and bodies[True] and bodies[False]


def test_the_chat_id_of_a_body_with_a_member_written_twice_is_the_recorders(framed):
    """A member of any object of a JSON body, or of a stream's first event, written twice (compact, as servers
    write: where orjson's writing of the parse is the body when nothing was, or spaced): the fast reader names the
    id the exchange recorder names — none, as the exact reader refuses the body (the event)."""
    rng = random.Random(1916)
    checked = {True: 0, False: 0}
    for _, _, response in _written(framed)[:4]:
        stream = response.startswith(b"data:")
        first = response.split(b"\n\n")[0][6:] if stream else response
        for part, twice in dupkit.variants(json.loads(first), rng, per_object=5):
            whole = (b"data: " + part + b"\n\n" + response.split(b"\n\n", 1)[1]) if stream else part
            want = Exchange.from_bytes(request_bytes=b"", response_bytes=whole, stream=stream).chat_id
            assert _batchscan.response_chat_id(whole, stream, 200) == want, whole[:200]
            if not stream:
                assert (want is None) == twice
            checked[twice] += 1
    assert checked[True] > 50 and checked[False] == 8, checked


def test_a_file_that_changes_after_it_was_cut_into_spans_is_named_so(framed, tmp_path):
    """A worker reads a span the parent cut from whole frames: if the file no longer holds it (it was rewritten or
    cut meanwhile) the worker says so, with the offset, rather than reading what is there now."""
    path = framed["path"]
    body = len(framed["head"])
    (start, end), = list(_batchscan.spans(str(path), body, size=1 << 30, framed=True))
    with pytest.raises(_batchscan.LineError) as got:  # the span now ends inside a frame
        _, replies = _batchscan.read_span(str(path), start, end - 5, None, True)
        list(replies)
    assert got.value.field == "frame.length" and "changed while it was being read" in got.value.detail
    with pytest.raises(_batchscan.LineError) as got:  # the file is shorter than the span
        _batchscan.read_span(str(path), start, end + 10, None, True)
    assert got.value.field == "file" and got.value.offset == end and "changed while being read" in got.value.detail


def test_reframe_batch_rewrites_either_way_and_the_rows_stay_the_same(framed, tmp_path):
    from phalanb.audit.batch import reframe_batch
    from phalanb.errors import InputError

    lines = framed["lines"]
    pbatch = reframe_batch(lines, tmp_path / "again.pbatch")
    back = reframe_batch(pbatch, tmp_path / "again.jsonl")
    assert pbatch.read_bytes() == framed["framed"].read_bytes()  # as write_batch frames the same replies
    want = audit([lines], progress=False, trust="simulated").drop(columns="source")
    for p in (pbatch, back):
        assert audit([p], progress=False, trust="simulated").drop(columns="source").equals(want)
    assert [(i.exchange.to_dict(), i.signature.to_dict()) for i in load_items([back], trust="simulated")] == \
        [(i.exchange.to_dict(), i.signature.to_dict()) for i in load_items([lines], trust="simulated")]
    with pytest.raises(InputError, match="another file"):
        reframe_batch(lines, lines)
    # A record that does not read stops the rewrite with the loader's error.
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(lines.read_bytes() + b'{"exchange": null, "signature": {"text": 5}}\n')
    with pytest.raises(ParseError, match="line 6"):
        reframe_batch(bad, tmp_path / "bad.pbatch")


def test_a_reply_too_large_for_a_frame_is_an_input_error_that_says_what_to_do(monkeypatch, tmp_path):
    from phalanb.errors import InputError

    monkeypatch.setattr(_frames, "MAX_FRAME_BYTES", 100)
    with open(tmp_path / "x", "wb") as fh, pytest.raises(InputError, match=r"\.jsonl"):
        _frames.write_frames(fh, [b"x" * 101])
