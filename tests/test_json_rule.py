"""Issue 19 item 3: one JSON reading rule (phalanb._json.loads) for every verification path. Duplicate members,
lone surrogates and non-finite numbers are refused with phalanb's own error naming the member and the offset —
and the batch's fast readers (orjson, msgspec), which keep the last duplicate, reach the same decision."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib: make fuzzkit importable
import dupkit  # noqa: E402
import fuzzkit as fk  # noqa: E402
from phalanb import _json  # noqa: E402
from phalanb.aci import jcs, parse_receipt, parse_session  # noqa: E402
from phalanb.audit.bundle import parse_bundle  # noqa: E402
from phalanb.errors import ParseError  # noqa: E402
from phalanb.wire.sse import parse_sse  # noqa: E402


def test_duplicate_members_are_refused_naming_the_member_and_its_offset():
    text = '{"id": "x", "choices": [{"content": "the answer in clear", "content": "sealed"}]}'
    with pytest.raises(_json.JSONRefused) as err:
        _json.loads(text, field="reply")
    assert "'content' appears twice" in str(err.value)
    assert err.value.offset == text.index('"content": "sealed"') and err.value.field == "reply"
    assert isinstance(err.value, ParseError) and isinstance(err.value, json.JSONDecodeError)


@pytest.mark.parametrize("text", ['["\\ud800"]', '{"\\udc00": 1}', '["a\\ud83d"]', '["\\ude00\\ud83d"]'])
def test_lone_surrogates_are_refused(text):
    with pytest.raises(_json.JSONRefused, match="lone UTF-16 surrogate"):
        _json.loads(text)


def test_paired_surrogates_are_one_character():
    assert _json.loads('["\\ud83d\\ude00"]') == ["\U0001F600"]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
def test_non_finite_numbers_are_refused_naming_the_member(number):
    text = '{"note": "NaN Infinity", "verified_at": %s}' % number
    with pytest.raises(_json.JSONRefused) as err:
        _json.loads(text.encode())
    assert "'verified_at'" in str(err.value) and "not finite" in str(err.value)
    assert err.value.offset == text.index(number, text.index("verified_at"))


def test_the_rule_holds_on_every_verification_path(fixtures):
    # A bundle, an ACI receipt and session, an SSE event: each reader refuses a duplicate member.
    with pytest.raises(ParseError, match="appears twice"):
        parse_bundle(b'{"kind": "phalanb.audit-bundle", "kind": "x"}')
    vectors = json.loads((fixtures / "aci" / "test_vectors.json").read_text())["aci"]
    for parse, doc in ((parse_receipt, vectors["receipt"]["document_jcs"]),
                       (parse_session, vectors["session"]["document_jcs"])):
        parse(doc.encode())  # the genuine document reads
        with pytest.raises(ParseError, match="appears twice"):
            parse((doc[:-1] + ',"api_version":"aci/1"}').encode())
    events = parse_sse(b'data: {"id": "a", "choices": [], "id": "b"}\n\n')
    with pytest.raises(ParseError, match="appears twice"):
        events[0].json()
    with pytest.raises(ParseError, match="appears twice"):
        jcs.loads(b'{"a":1,"a":1}')


def test_the_fast_readers_duplicate_test_is_the_exact_readers():
    """has_duplicates(raw, orjson's reading) answers exactly whether the exact reader refuses a duplicate: on
    random documents, with and without a member written twice (the proof is in its docstring)."""
    rng = random.Random(19)
    compared = dups = 0
    for _ in range(3000):
        value = {fk.random_key(rng): fk.random_json_value(rng) for _ in range(rng.randrange(1, 5))}
        raw = json.dumps(value, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
        if rng.random() < 0.5:  # write one member twice, somewhere
            cut = raw.index(b"{") + 1
            raw = raw[:cut] + json.dumps(rng.choice(list(value))).encode() + b': "x:y", ' + raw[cut:]
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        verdict = _json.has_duplicates(raw, parsed)
        if verdict is None:
            assert b"\\" in raw
            continue
        try:
            _json.loads(raw)
            exact = False
        except _json.JSONRefused as exc:
            exact = "appears twice" in exc.msg
        assert verdict == exact, raw[:200]
        compared += 1
        dups += exact
    assert compared > 1000 and dups > 300
    print(f"has_duplicates compared with the exact reader on {compared} documents ({dups} with a duplicate)")


def test_the_duplicate_test_decides_by_one_comparison_or_by_the_count_as_the_exact_reader_does():
    """A member written twice in any object, at any depth, compact (where orjson's writing of the parse is the
    document itself, when nothing was written twice: one comparison decides) or spaced (the colon count decides):
    has_duplicates answers as the exact reader does, every time."""
    rng = random.Random(1919)
    compared = by_comparison = dups = 0
    for _ in range(400):
        value = {fk.random_key(rng): fk.random_json_value(rng) for _ in range(rng.randrange(1, 5))}
        for raw, twice in dupkit.variants(value, rng, per_object=2):
            try:
                parsed = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            verdict = _json.has_duplicates(raw, parsed)
            try:
                _json.loads(raw)
                exact = False
            except _json.JSONRefused as exc:
                exact = "appears twice" in exc.msg
            if verdict is None:
                assert b"\\" in raw
                continue
            assert verdict == exact, raw[:200]
            # a member written twice under one name is what the exact reader refuses (keys may collide otherwise)
            assert exact or not twice
            compared += 1
            dups += exact
            by_comparison += orjson.dumps(parsed) == raw
    assert compared > 1000 and dups > 400 and by_comparison > 300
    print(f"has_duplicates compared with the exact reader on {compared} documents ({dups} with a duplicate, "
          f"{by_comparison} decided by the comparison)")
