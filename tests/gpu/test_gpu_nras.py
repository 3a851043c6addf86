"""NRAS tokens verified offline (SPEC §9): ES384 only, key by kid, issuer, time, nonce, submods, the appraisal."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phalanb.errors import ParseError, PhalanbError
from phalanb.gpu import gpu_facts, parse_payload
from phalanb.gpu.nras import (JwksCache, build_nras_request, decode_jwt, parse_nras_response, verify_nras)
from phalanb.verdict import Status


def _iat(response):
    return parse_nras_response(response).overall.claims["iat"]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def near_facts(neardirect):
    return [gpu_facts(g) for g in parse_payload(neardirect["report"]["nvidia_payload"]).gpus]


def _verify(data, response=None, **kw):
    response = data["nras_response"] if response is None else response
    kw.setdefault("at", _iat(data["nras_response"]))
    kw.setdefault("expected_nonce", data["nras_request"]["nonce"])
    return verify_nras(response, jwks=data["jwks"], **kw)


def test_neardirect_nras_answer_verifies_with_the_captured_jwks_at_iat(neardirect, near_facts):
    result = _verify(neardirect, gpu_facts=near_facts)
    verdict = result.verdict()
    assert verdict.status == "verified", verdict.summary()
    assert [c.id for c in result.checks] == ["nras.token", "nras.submods", "nras.nonce", "nras.result",
                                             "nras.identity"]
    assert "9 ES384 tokens" in result.check("nras.token").reason


def test_each_gpu_ueid_is_its_leaf_serial(neardirect, near_facts):
    resp = parse_nras_response(neardirect["nras_response"])
    for facts in near_facts:
        assert resp.gpus[f"GPU-{facts.index}"].claims["ueid"] == facts.ueid
        assert int(facts.ueid) == int(facts.serial_hex, 16)


def test_the_captured_request_nonce_is_the_reports_nonce(neardirect):
    assert neardirect["nras_request"]["nonce"] == neardirect["nonce"] == neardirect["report"]["request_nonce"]


def test_archived_tokens_are_expired_without_the_clock_override(neardirect):
    result = verify_nras(neardirect["nras_response"], jwks=neardirect["jwks"], expected_nonce=neardirect["nonce"])
    check = result.check("nras.token")
    assert check.status is Status.FAIL and "expired" in check.reason and "iat" in check.reason
    assert result.check("nras.result").status is Status.SKIPPED  # claims of unverified tokens are not believed


def test_before_nbf_is_refused(neardirect):
    check = _verify(neardirect, at=_iat(neardirect["nras_response"]) - 60).check("nras.token")
    assert check.status is Status.FAIL and "not valid before" in check.reason


def test_another_issuer_is_refused(neardirect):
    check = _verify(neardirect, issuer="https://evil.example").check("nras.token")
    assert check.status is Status.FAIL and "issuer" in check.reason


def test_wrong_expected_nonce_fails_the_nonce_check(neardirect):
    result = _verify(neardirect, expected_nonce="11" * 32)
    assert result.check("nras.nonce").status is Status.FAIL
    assert result.check("nras.token").status is Status.PASS


def test_unknown_kid_fails_and_says_which_jwks_is_needed(neardirect, chutes):
    result = verify_nras(neardirect["nras_response"], jwks=chutes["jwks"], expected_nonce=neardirect["nonce"],
                         at=_iat(neardirect["nras_response"]))
    check = result.check("nras.token")
    assert check.status is Status.FAIL and "not in the JWKS" in check.reason


def test_chutes_nras_answer_is_a_validly_signed_failure_4010(chutes):
    result = _verify(chutes)
    assert result.check("nras.token").status is Status.PASS
    assert result.check("nras.submods").status is Status.PASS
    check = result.check("nras.result")
    assert check.status is Status.FAIL
    assert "validly signed failure" in check.reason and "4010" in check.reason and "NONCE_NOT_MATCHING" in check.reason
    assert result.signed_failure
    assert {d["code"] for d in result.error_details.values()} == {4010}
    assert result.verdict().status == "failed"


def test_chutes_failure_came_from_posting_the_raw_nonce(chutes):
    entry = chutes["report"]["all_attestations"][0]
    payload = parse_payload(entry)
    assert chutes["nras_request"]["nonce"] == entry["nonce"]  # what the capture tool posted
    right = build_nras_request(payload)  # phalanb posts the nonce inside the evidence
    assert right["nonce"] == hashlib.sha256((entry["nonce"] + entry["e2e_pubkey"]).encode()).hexdigest()
    assert right["evidence_list"] == chutes["nras_request"]["evidence_list"]


# --- tampering and algorithm confusion ----------------------------------------------------------------------

def _flip_char(token: str, pos: int) -> str:
    c = token[pos]
    return token[:pos] + ("B" if c == "A" else "A") + token[pos + 1:]


@pytest.mark.parametrize("which", ["overall", "GPU-3"])
@pytest.mark.parametrize("segment", [0, 1, 2])
def test_one_flipped_byte_in_a_token_fails_naming_the_step(neardirect, which, segment):
    response = json.loads(json.dumps(neardirect["nras_response"]))
    token = response[0][1] if which == "overall" else response[1][which]
    parts = token.split(".")
    start = sum(len(p) + 1 for p in parts[:segment])
    for pos in (start + 5, start + len(parts[segment]) // 2, start + len(parts[segment]) - 2):
        bad = _flip_char(token, pos)
        if which == "overall":
            response[0][1] = bad
        else:
            response[1][which] = bad
        result = _verify(neardirect, response)
        check = result.check("nras.token")
        assert check.status is Status.FAIL, (which, segment, pos)
        assert check.reason.startswith(which), check.reason
        assert result.verdict().status == "failed"


def test_a_gpu_token_swapped_for_another_breaks_the_submods_digest(neardirect):
    response = json.loads(json.dumps(neardirect["nras_response"]))
    response[1]["GPU-0"], response[1]["GPU-1"] = response[1]["GPU-1"], response[1]["GPU-0"]
    result = _verify(neardirect, response)
    assert result.check("nras.token").status is Status.PASS  # each token is still genuine
    check = result.check("nras.submods")
    assert check.status is Status.FAIL and "GPU-0" in check.reason


def _forge(token: str, alg: str, key: bytes = b"") -> str:
    header = decode_jwt(token).header
    h = _b64url(json.dumps(dict(header, alg=alg)).encode())
    body = token.split(".")[1]
    sig = _b64url(hmac.new(key, f"{h}.{body}".encode(), hashlib.sha256).digest()) if alg == "HS256" else ""
    return f"{h}.{body}.{sig}"


@pytest.mark.parametrize("alg", ["none", "HS256", "ES256", "RS384"])
def test_tokens_with_another_alg_are_refused(neardirect, alg):
    response = json.loads(json.dumps(neardirect["nras_response"]))
    # HS256 "signed" with the public key as the HMAC secret: the classic algorithm-confusion forgery.
    public = json.dumps(neardirect["jwks"]["keys"][0]).encode()
    response[0][1] = _forge(response[0][1], alg, public)
    check = _verify(neardirect, response).check("nras.token")
    assert check.status is Status.FAIL
    assert f"alg '{alg}' refused" in check.reason and "ES384 only" in check.reason


def test_garbage_answers_are_parse_errors():
    for bad in ("not json", "{}", "[]", '[["JWT"], {}]', '{"errorCode": 400, "message": "bad"}'):
        with pytest.raises(ParseError):
            parse_nras_response(bad)


# --- JWKS cache ---------------------------------------------------------------------------------------------

def test_jwks_is_fetched_once_per_missing_kid(neardirect):
    calls = []

    def fetch():
        calls.append(1)
        return neardirect["jwks"]

    # The captured keys' certificates (valid ~48 h) have long ended: the cache's clock is the capture's.
    cache = JwksCache(fetch=fetch, clock=lambda: _iat(neardirect["nras_response"]))
    kids = parse_nras_response(neardirect["nras_response"]).kids
    jwks = cache.keys_for(kids)
    assert len(calls) == 1 and all(k in jwks for k in kids)
    cache.keys_for(kids)
    assert len(calls) == 1  # cached by kid: no refetch
    assert cache.key("nv-eat-kid-unknown") is None
    assert len(calls) == 2  # one refetch on a miss, then the answer is "no such key"
    result = verify_nras(neardirect["nras_response"], jwks=cache, expected_nonce=neardirect["nonce"],
                         at=_iat(neardirect["nras_response"]))
    assert result.check("nras.token").status is Status.PASS


_tokenish = st.one_of(st.text(alphabet="ABCDEFGHabcdefgh0123456789-_.=", max_size=60), st.integers(), st.none())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.lists(_tokenish, max_size=3),
                 st.tuples(st.tuples(st.just("JWT"), _tokenish).map(list),
                           st.dictionaries(st.sampled_from(["GPU-0", "GPU-1", "x"]), _tokenish, max_size=3)).map(list)))
def test_any_answer_is_verified_or_refused_with_a_phalanb_error(neardirect, value):
    try:
        result = verify_nras(value, jwks=neardirect["jwks"], expected_nonce="00" * 32, at=0)
    except PhalanbError:
        return
    assert result.verdict().status == "failed"


STORED_ANSWERS = ["reports/nanogpt-gemma-2026-06/nras_response.json",
                  "reports/private-ml-sdk-dstack-sample/nras_sample_response.json",
                  "reports/private-ml-sdk-dstack-sample/nras_sample_ppcie_response.json",
                  "reports/nearcloud-2026/nras_response.json",
                  "nvidia/nvidia_attestation_sdk/sample_hopperClaimsv3_detached_eat.json"]


@pytest.mark.parametrize("rel", STORED_ANSWERS)
def test_stored_answers_without_their_jwks_are_not_trusted_but_their_digests_hold(fixtures, rel):
    answer = json.loads((fixtures / rel).read_text())
    resp = parse_nras_response(answer)
    result = verify_nras(answer, jwks={"keys": []}, expected_nonce=resp.overall.claims.get("eat_nonce"),
                         at=resp.overall.claims["iat"])
    assert result.check("nras.submods").status is Status.PASS
    token = result.check("nras.token")
    assert token.status is Status.FAIL and "not in the JWKS" in token.reason
    assert result.check("nras.result").status is Status.SKIPPED


def test_nearcloud_answer_verifies_with_its_captured_jwks(fixtures):
    base = fixtures / "reports/nearcloud-2026"
    report = json.loads((base / "attestation_report.json").read_text())
    model = report["model_attestations"][0]
    facts = [gpu_facts(g) for g in parse_payload(model["nvidia_payload"]).gpus]
    answer = json.loads((base / "nras_response.json").read_text())
    result = verify_nras(answer, jwks=json.loads((base / "nras_jwks_at_capture.json").read_text()),
                         expected_nonce=model["request_nonce"], at=_iat(answer), gpu_facts=facts)
    assert result.verdict().status == "verified", result.verdict().summary()


def test_an_expired_archived_answer_says_exactly_which_time_to_pass(neardirect):
    import re

    late = verify_nras(neardirect["nras_response"], jwks=neardirect["jwks"], expected_nonce=neardirect["nonce"])
    reason = late.check("nras.token").reason
    hint = re.search(r"pass --at (\d+)", reason)
    assert hint, reason
    # The time the message names is the one that makes the archived answer verify.
    again = verify_nras(neardirect["nras_response"], jwks=neardirect["jwks"], expected_nonce=neardirect["nonce"],
                        at=int(hint.group(1)))
    assert again.check("nras.token").status is Status.PASS
