"""Event-log replay (dstack JSON, binary CCEL) and the dstack values, on real logs and reports."""

from __future__ import annotations

import json

import pytest

from phalanb.errors import ParseError
from phalanb.verdict import Status
from phalanb.tdx import parse_quote
from phalanb.tdx.dstack import check_compose_hash, compose_hash, derive, expected_mr_config_id
from phalanb.tdx.eventlog import (
    check_event_log,
    parse_ccel_log,
    parse_event_log,
    replay,
    runtime_event_digest,
)

DSTACK_SAMPLES = [
    ("dstack/quote-report.quote.hex", "dstack/quote-report.event_log.json"),
    ("private-ml-sdk/dstack_quote.hex", "private-ml-sdk/dstack_event_log.json"),
    ("dstack/tdx-lite-getquote.quote.hex", "dstack/tdx-lite-getquote.event_log.json"),
]


@pytest.mark.parametrize("quote_file,log_file", DSTACK_SAMPLES)
def test_dstack_json_logs_replay_rtmr0_to_3(quote_file, log_file, tdx_dir):
    q = parse_quote((tdx_dir / quote_file).read_text())
    text = (tdx_dir / log_file).read_text()
    for form in (text, json.loads(text)):  # JSON string and list
        check = check_event_log(q, form)
        assert check.status is Status.PASS, check.reason
        assert replay(parse_event_log(form)).rtmrs == q.body.rtmrs


def test_ccel_binary_log_replays_rtmr0_to_3(tdx_dir):
    q = parse_quote((tdx_dir / "go-tdx-guest/ccel_cos-113-tdx-quote.dat").read_bytes())
    log = parse_ccel_log((tdx_dir / "go-tdx-guest/ccel_ccel_data.dat").read_bytes())
    assert log.format == "tcg2-ccel" and len(log) > 10
    assert {e.imr for e in log} <= {-1, 0, 1, 2, 3}
    assert check_event_log(q, (tdx_dir / "go-tdx-guest/ccel_ccel_data.dat").read_bytes()).status is Status.PASS


def _report(fixtures, name):
    return json.loads((fixtures / "reports" / name / "attestation_report.json").read_text())


def test_nanogpt_2026_03_replays(fixtures):
    r = _report(fixtures, "nanogpt-gemma-2026-03")
    q = parse_quote(r["intel_quote"])
    assert isinstance(r["event_log"], str)
    assert check_event_log(q, r["event_log"]).status is Status.PASS


def test_nanogpt_2026_06_replays_only_with_recomputed_runtime_digests(fixtures):
    r = _report(fixtures, "nanogpt-gemma-2026-06")
    q = parse_quote(r["intel_quote"])
    log = parse_event_log(r["event_log"])
    assert any(e.is_runtime and not e.digest for e in log)
    ok = check_event_log(q, log)
    assert ok.status is Status.PASS and "empty and recomputed" in ok.reason
    trusting = check_event_log(q, log, recompute_runtime=False)
    assert trusting.status is Status.FAIL and "rt_mr3" in trusting.reason


def test_private_ml_sdk_dstack_sample_replays(fixtures):
    d = json.loads((fixtures / "reports/private-ml-sdk-dstack-sample/sample_dstack_quote.json").read_text())
    assert check_event_log(parse_quote(d["quote"]), d["event_log"]).status is Status.PASS


def test_runtime_digest_formula():
    import hashlib
    want = hashlib.sha384(bytes.fromhex("01000008") + b":app-id:" + bytes.fromhex("abcd")).digest()
    assert runtime_event_digest("app-id", bytes.fromhex("abcd")) == want


def test_altered_runtime_payload_fails_naming_the_event(tdx_dir):
    q = parse_quote((tdx_dir / "private-ml-sdk/dstack_quote.hex").read_text())
    events = json.loads((tdx_dir / "private-ml-sdk/dstack_event_log.json").read_text())
    for e in events:
        if e["event"] == "compose-hash":
            e["event_payload"] = "00" + e["event_payload"][2:]
    check = check_event_log(q, events)
    assert check.status is Status.FAIL and "compose-hash" in check.reason


def test_altered_boot_digest_fails_naming_the_rtmr(tdx_dir):
    q = parse_quote((tdx_dir / "private-ml-sdk/dstack_quote.hex").read_text())
    events = json.loads((tdx_dir / "private-ml-sdk/dstack_event_log.json").read_text())
    first_rtmr1 = next(e for e in events if e["imr"] == 1)
    first_rtmr1["digest"] = "00" * 48
    check = check_event_log(q, events)
    assert check.status is Status.FAIL and "rt_mr1" in check.reason


@pytest.mark.parametrize("bad", ["{", "[1]", '[{"imr": "x", "event_type": 1}]', '[{"imr":0,"event_type":1,"digest":"zz"}]',
                                 b"\x00" * 10, b"\x01" * 80])
def test_broken_logs_are_parse_errors(bad):
    with pytest.raises(ParseError):
        parse_event_log(bad)


def test_ccel_truncation_is_a_parse_error(tdx_dir):
    raw = (tdx_dir / "go-tdx-guest/ccel_ccel_data.dat").read_bytes()
    log = parse_ccel_log(raw)
    last = log.events[-1].offset
    for n in list(range(0, 200, 7)) + list(range(last + 1, last + 60, 3)):
        try:
            parse_ccel_log(raw[:n])
        except ParseError:
            continue
        # A cut exactly between records is a shorter valid log, never a crash.


# ---- dstack values -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["nanogpt-gemma-2026-03", "nanogpt-gemma-2026-06"])
def test_compose_hash_and_mr_config_id_bind_app_compose(name, fixtures):
    r = _report(fixtures, name)
    q = parse_quote(r["intel_quote"])
    check = check_compose_hash(q, r["event_log"], info=r["info"])
    assert check.status is Status.PASS and "mr_config_id" in check.reason
    facts = derive(r["event_log"], info=r["info"], vm_config=r["vm_config"])
    assert q.body.mr_config_id == expected_mr_config_id(facts.compose_hash)
    assert facts.app_id == r["info"]["app_id"] and facts.instance_id == r["info"]["instance_id"]
    assert facts.key_provider["name"] == "kms"
    assert facts.audit["os_image_is_dev"] is True            # dstack-nvidia-dev-…
    assert facts.audit["ssh_keys_injectable"] is True         # DSTACK_AUTHORIZED_KEYS allowed
    assert facts.audit["images_not_pinned"]                   # tags, not @sha256 digests


def test_private_ml_sdk_info_matches_derived_values(tdx_dir):
    info = json.loads((tdx_dir / "private-ml-sdk/dstack_info.json").read_text())
    log = (tdx_dir / "private-ml-sdk/dstack_event_log.json").read_text()
    facts = derive(log, info=info)
    for key in ("app_id", "compose_hash", "instance_id", "os_image_hash"):
        assert getattr(facts, key) == info[key], key
    q = parse_quote((tdx_dir / "private-ml-sdk/dstack_quote.hex").read_text())
    assert check_compose_hash(q, log, info=info).status is Status.PASS


def test_wrong_app_compose_fails(fixtures):
    r = _report(fixtures, "nanogpt-gemma-2026-06")
    q = parse_quote(r["intel_quote"])
    check = check_compose_hash(q, r["event_log"], app_compose='{"docker_compose_file": "evil"}')
    assert check.status is Status.FAIL and "not the one running" in check.reason
    assert compose_hash("x") == "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"


def test_double_encoded_json_log_is_accepted(tdx_dir):
    text = (tdx_dir / "private-ml-sdk/dstack_event_log.json").read_text()
    assert len(parse_event_log(json.dumps(text))) == len(parse_event_log(text))


from hypothesis import given, settings, strategies as st  # noqa: E402

from phalanb.errors import PhalanbError  # noqa: E402
from .conftest import TDX  # noqa: E402

_CCEL = (TDX / "go-tdx-guest/ccel_ccel_data.dat").read_bytes()[:12000]


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=11999), st.integers(min_value=1, max_value=255))
def test_corrupted_ccel_log_raises_only_phalanb_errors(pos, xor):
    raw = bytearray(_CCEL)
    raw[pos] ^= xor
    try:
        parse_ccel_log(bytes(raw))
    except PhalanbError:
        pass
