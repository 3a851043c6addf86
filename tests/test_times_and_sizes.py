"""Issue 12 item 3: times and sizes from outside are validated — a clear phalanb error, never a crash, and a
batch goes on past a bad file."""

from __future__ import annotations

import gzip
import json
import zlib

import httpx
import pytest

from phalanb.wire import client as client_module
from phalanb.audit.bundle import parse_bundle, reverify
from phalanb.audit.batch import audit
from phalanb.cli import main
from phalanb.wire.client import Client
from phalanb.errors import ParseError, PhalanbError
from phalanb.timeutil import MAX_TIME, parse_time
from phalanb.vllm.verify import verify_report

BAD_TIMES = [float("nan"), float("inf"), float("-inf"), -1, MAX_TIME + 1, 1e300, "NaN", "Infinity", "-5", "soon",
             True, None, [1]]
BAD_TIME_TEXT = ["NaN", "inf", "-Infinity", "-1", "1e300", "253402300800", "yesterday"]


@pytest.mark.parametrize("value", BAD_TIMES, ids=repr)
def test_times_from_outside_are_refused_naming_the_field(value):
    with pytest.raises(ParseError) as err:
        parse_time(value, field="verified_at")
    assert "verified_at" in str(err.value)


def test_times_now_and_numbers_are_accepted():
    assert parse_time("1782698794", field="--at") == 1782698794.0
    assert parse_time(0, field="at") == 0.0 and parse_time(MAX_TIME, field="at") == MAX_TIME
    assert parse_time("now", field="--at", allow_now=True) > 1.7e9
    with pytest.raises(ParseError):
        parse_time("now", field="verified_at")  # a bundle records a moment, not "now"


@pytest.fixture(scope="module")
def saved_bundle(tmp_path_factory):
    from phalanb.session import Session, Settings

    with Session(Settings(protocol="legacy", sim_options={"ttft_ms": 0.0, "tokens_per_second": 0.0})) as s:
        result = s.chat_and_verify("times", max_tokens=3)
        path = result.save(tmp_path_factory.mktemp("bundles") / "good.json")
    return json.loads(path.read_text())


def _raw_with(bundle: dict, value_json: str) -> str:
    # Non-finite numbers go in as raw JSON tokens (json.dumps would write NaN too, but be explicit).
    text = json.dumps(dict(bundle, verified_at="__T__"))
    return text.replace('"__T__"', value_json)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "-1", "1e300", "253402300800"])
def test_times_a_bundles_verified_at_is_validated(saved_bundle, value):
    with pytest.raises(ParseError) as err:
        parse_bundle(_raw_with(saved_bundle, value))
    assert "verified_at" in str(err.value)


@pytest.mark.parametrize("value", ["NaN", "inf", "-1", "1e300"])
def test_times_reverify_and_verify_refuse_a_bad_at(saved_bundle, value):
    bundle = parse_bundle(json.dumps(saved_bundle))
    with pytest.raises(ParseError):
        reverify(bundle, at=float(value), trust="simulated")
    with pytest.raises(PhalanbError):
        verify_report(saved_bundle["attestation"]["report"], at=float(value))


@pytest.mark.parametrize("value", BAD_TIME_TEXT)
def test_times_cli_at_is_a_usage_error(tmp_path, saved_bundle, value, capsys):
    path = tmp_path / "b.json"
    path.write_text(json.dumps(saved_bundle))
    with pytest.raises(SystemExit) as exit_:
        main(["verify", str(path), "--trust", "simulated", "--at", value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--at" in err and "Traceback" not in err


def test_times_cli_verify_a_bundle_with_nan_verified_at_exits_2(tmp_path, saved_bundle, capsys):
    path = tmp_path / "nan.json"
    path.write_text(_raw_with(saved_bundle, "NaN"))
    assert main(["verify", str(path), "--trust", "simulated"]) == 2
    assert "verified_at" in capsys.readouterr().err


def test_times_a_batch_records_a_failed_row_and_goes_on(tmp_path, saved_bundle):
    (tmp_path / "a_good.json").write_text(json.dumps(saved_bundle))
    (tmp_path / "b_nan.json").write_text(_raw_with(saved_bundle, "NaN"))
    (tmp_path / "c_inf.json").write_text(_raw_with(saved_bundle, "1e400"))
    (tmp_path / "d_good.json").write_text(json.dumps(saved_bundle))
    df = audit([tmp_path], progress=False, trust="simulated")
    assert len(df) == 4
    by = dict(zip(df["source"].map(lambda s: s.rsplit("/", 1)[-1]), df["verdict"]))
    assert by["a_good.json"] == by["d_good.json"] == "verified"
    assert by["b_nan.json"] == by["c_inf.json"] == "failed"
    bad = df[df["failing"] == "bundle.read"]
    assert len(bad) == 2 and bad["error"].str.contains("verified_at").all()


# --- sizes ---------------------------------------------------------------------------------------------------

def _client(body: bytes, encoding: str | None, status: int = 200) -> Client:
    headers = {"content-type": "application/json"}
    if encoding:
        headers["content-encoding"] = encoding

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body))

    return Client(base_url="http://127.0.0.1:1/v1", model="m", transport=httpx.MockTransport(handler), retries=0)


def test_sizes_a_gzip_bomb_is_refused_while_inflating():
    # The attack as reproduced: ~71 KB of gzip that inflates to 73 MB was accepted (the limit counted the
    # compressed bytes). The limit now applies to the inflated bytes, checked while inflating.
    bomb = gzip.compress(b'{"a":"' + b"0" * (73 * 1024 * 1024) + b'"}', compresslevel=9)
    assert len(bomb) < 100 * 1024
    with pytest.raises(ParseError) as err:
        _client(bomb, "gzip").attestation()
    assert "decompresses to more than" in str(err.value)


@pytest.mark.parametrize("encoding, body", [
    ("gzip", b"\x1f\x8b\x08\x00garbage"), ("gzip", gzip.compress(b'{"a": 1}')[:-9]),
    ("deflate", b"not deflate at all"), ("gzip", gzip.compress(b'{"a": 1}') + b"trailing junk"),
])
def test_sizes_corrupt_compressed_answers_are_parse_errors(encoding, body):
    with pytest.raises(ParseError):
        _client(body, encoding).models()


def test_sizes_compressed_answers_still_decode(monkeypatch):
    assert _client(gzip.compress(b'{"data": [{"id": "m1"}]}'), "gzip").models() == ["m1"]
    assert _client(zlib.compress(b'{"data": [{"id": "m2"}]}'), "deflate").models() == ["m2"]


def test_sizes_the_non_streamed_chat_reply_is_limited(monkeypatch):
    monkeypatch.setattr(client_module, "_MAX_CHAT_BODY", 4096)
    reply = json.dumps({"id": "chatcmpl-1", "choices": [{"message": {"content": "x" * 10000}}]}).encode()
    with pytest.raises(ParseError) as err:
        _client(reply, None).chat("hi", stream=False)
    assert "exceeds 4096 bytes" in str(err.value)
    with pytest.raises(ParseError) as err:
        _client(gzip.compress(reply), "gzip").chat("hi", stream=False)
    assert "more than 4096" in str(err.value)


def test_sizes_nras_and_jwks_answers_are_limited_after_decompression():
    from phalanb.gpu.nras import MAX_NRAS_BODY, fetch_jwks, fetch_nras

    bomb = gzip.compress(b'{"keys": "' + b"0" * (MAX_NRAS_BODY + 1) + b'"}')

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-encoding": "gzip"}, stream=httpx.ByteStream(bomb))

    with httpx.Client(transport=httpx.MockTransport(handler)) as c:
        for call in (lambda: fetch_jwks(base_url="http://127.0.0.1:1", client=c),
                     lambda: fetch_nras({"nonce": "00"}, base_url="http://127.0.0.1:1", client=c)):
            with pytest.raises(ParseError) as err:
                call()
            assert "decompresses to more than" in str(err.value)
    small = gzip.compress(b'{"keys": []}')
    with httpx.Client(transport=httpx.MockTransport(
            lambda r: httpx.Response(200, headers={"content-encoding": "gzip"}, stream=httpx.ByteStream(small)))) as c:
        assert fetch_jwks(base_url="http://127.0.0.1:1", client=c) == {"keys": []}


def test_times_cli_audit_reports_an_unreadable_bundle_and_goes_on(tmp_path, saved_bundle, capsys):
    (tmp_path / "good.json").write_text(json.dumps(saved_bundle))
    (tmp_path / "nan.json").write_text(_raw_with(saved_bundle, "NaN"))
    code = main(["audit", str(tmp_path), "--trust", "simulated", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 1
    assert "verified: 1" in out and "failed: 1" in out and "could not read" in out and "verified_at" in out
