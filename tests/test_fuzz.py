"""Every parser takes arbitrary bytes or JSON and either parses it or raises phalanb's own error (issue 8).

Property tests (hypothesis) over each parser, fed three ways: raw bytes or text, JSON values of any shape, and
structured mutations of the real fixtures (valid framing with random length fields, real JSON with random values,
NRAS answers signed with a throwaway key so their claims reach the checks). Each input runs under a 2 s alarm: a
hang fails the test as surely as an ``IndexError``. ``scripts/fuzz_and_mutate.py`` runs the same generators
100,000 times; this file is the bounded sample for the suite (``PHALANB_FUZZ_EXAMPLES`` scales it).

The regression tests at the end pin each bug the fuzzing found, one rule each.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib: make fuzzkit importable

import fuzzkit as fk  # noqa: E402
from phalanb.errors import ParseError, PhalanbError  # noqa: E402

EXAMPLES = int(os.environ.get("PHALANB_FUZZ_EXAMPLES", "150"))
BOUND_S = 2.0

FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])


@pytest.fixture(scope="session")
def corpus(fixtures):
    return fk.Corpus(fixtures)


def parses_or_rejects(fn, value) -> None:
    """The rule: a result or a PhalanbError, within the time bound. Anything else fails with the input named."""
    outcome = fk.run_one(fn, value, bound=BOUND_S)
    assert outcome.kind in ("parsed", "rejected"), (
        f"{outcome.kind}: {outcome.error}: {outcome.message}\ninput: {repr(value)[:300]}")


# --------------------------------------------------------------------------------------------------------------
# Structured inputs from the real fixtures, for every parser

@pytest.mark.filterwarnings("ignore")  # cryptography warns about the odd certificates mutations make
@pytest.mark.parametrize("name", sorted(fk.targets()))
@FUZZ
@given(rnd=st.randoms(use_true_random=False))
def test_structured_mutations_of_real_inputs_parse_or_raise_phalanb_error(corpus, name, rnd):
    target = fk.targets()[name]
    parses_or_rejects(target.call, target.generate(rnd, corpus))


# --------------------------------------------------------------------------------------------------------------
# Raw bytes and text

RAW_BYTES = ["tdx.parse_quote", "tdx.parse_event_log", "tdx.parse_ccel_log", "gpu.parse_evidence",
             "gpu.parse_payload", "gpu.parse_cert_chain", "gpu.nras.parse_nras_response", "report.parse_report",
             "sse.parse_sse", "sse.SSEDecoder.feed", "signatures.SignatureRecord.from_json", "audit.parse_bundle",
             "batch.load_items", "tdx.load_collateral", "aci.parse_aci_report", "aci.parse_receipt",
             "aci.parse_session"]


@pytest.mark.parametrize("name", RAW_BYTES)
@FUZZ
@given(data=st.binary(max_size=2048))
def test_raw_bytes_parse_or_raise_phalanb_error(name, data):
    parses_or_rejects(fk.targets()[name].call, data)


@pytest.mark.parametrize("name", ["tdx.parse_quote", "tdx.parse_dstack_log", "gpu.nras.decode_jwt",
                                  "signatures.parse_signed_text", "gpu.parse_payload", "report.parse_report",
                                  "aci.parse_aci_report", "aci.parse_receipt"])
@FUZZ
@given(text=st.text(max_size=512))
def test_raw_text_parses_or_raises_phalanb_error(name, text):
    parses_or_rejects(fk.targets()[name].call, text)


@FUZZ
@given(prefix=st.sampled_from([b"\x04\x00\x02\x00\x81\x00\x00\x00", b"\x05\x00\x02\x00\x81\x00\x00\x00",
                               b"\x11\xe0\x01\xff"]), rest=st.binary(max_size=1200))
def test_binary_parsers_past_a_valid_magic(prefix, rest):
    # A real header makes random bytes reach the length fields instead of stopping at the first byte.
    parses_or_rejects(fk.targets()["tdx.parse_quote"].call, prefix + rest)
    parses_or_rejects(fk.targets()["gpu.parse_evidence"].call, prefix + rest)


# --------------------------------------------------------------------------------------------------------------
# JSON values of any shape, where a parser takes decoded objects

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
                    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner,
                                                                                max_size=5),
                    max_leaves=30)


@pytest.mark.parametrize("name", ["gpu.parse_payload", "report.parse_report", "gpu.nras.parse_nras_response",
                                  "exchange.Exchange.from_dict", "audit.parse_bundle", "tdx.parse_dstack_log",
                                  "tdx.parse_event_log", "gpu.nras.Jwks", "timeutil.parse_time",
                                  "aci.parse_aci_report", "aci.parse_receipt", "aci.parse_session"])
@FUZZ
@given(value=JSON)
def test_any_json_value_parses_or_raises_phalanb_error(name, value):
    parses_or_rejects(fk.targets()[name].call, value)


@FUZZ
@given(value=st.dictionaries(st.sampled_from(["intel_quote", "nvidia_payload", "event_log", "signing_address",
                                              "request_nonce", "signing_public_key", "info", "vm_config",
                                              "tls_cert_fingerprint", "model_name", "attestation_type",
                                              "all_attestations", "model_attestations", "nonce", "e2e_pubkey"]),
                             JSON, max_size=8),
       nonce=st.none() | st.binary(min_size=32, max_size=32))
def test_verify_report_over_any_report_returns_a_verdict(value, nonce):
    parses_or_rejects(lambda v: fk.targets()["verify.verify_report"].call((v, nonce)), value)


@FUZZ
@given(text=JSON, sig=st.text(max_size=140), algo=st.sampled_from(["ecdsa", "ed25519", "rsa"]),
       key=st.none() | st.text(max_size=70))
def test_recover_signer_with_any_arguments(text, sig, algo, key):
    parses_or_rejects(fk.targets()["signatures.recover_signer"].call, (text, sig, algo, key))


# --------------------------------------------------------------------------------------------------------------
# Regressions: one rule per bug the fuzzing found

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("name", ["gpu.parse_payload", "report.parse_report", "gpu.nras.parse_nras_response",
                                  "audit.parse_bundle", "tdx.parse_dstack_log", "tdx.load_collateral",
                                  "signatures.SignatureRecord.from_json"])
def test_deeply_nested_json_is_a_parse_error_not_a_crash(name):
    # eth-account imports py_ecc, which raises the interpreter's recursion limit to 100000: json.loads then
    # overflows the C stack (a segfault of the whole process) instead of raising RecursionError.
    text = DEEP if name != "tdx.load_collateral" else '{"a":' + DEEP + "}"
    with pytest.raises(PhalanbError):
        with fk.time_bound(BOUND_S):
            fk.targets()[name].call(text)


def test_deeply_nested_json_inside_a_jwt_and_an_sse_event():
    import base64

    from phalanb.gpu.nras import decode_jwt
    from phalanb.wire.sse import parse_completion

    part = base64.urlsafe_b64encode(DEEP.encode()).rstrip(b"=").decode()
    with pytest.raises(ParseError, match="not JSON"):
        decode_jwt(f"{part}.{part}.")
    with pytest.raises(ParseError, match="not JSON"):
        parse_completion(DEEP.encode())


def test_a_deeply_nested_nras_or_jwks_answer_is_a_service_error():
    import httpx

    from phalanb.errors import ServiceError
    from phalanb.gpu.nras import fetch_jwks, fetch_nras

    client = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200, content=DEEP.encode())))
    with pytest.raises(ServiceError, match="non-JSON"):
        fetch_nras({}, base_url="http://nras.invalid", client=client)
    with pytest.raises(ServiceError, match="non-JSON"):
        fetch_jwks(base_url="http://nras.invalid", client=client)


def test_integer_literals_beyond_4300_digits_are_parse_errors():
    # Python refuses them with a plain ValueError (not JSONDecodeError), which every caller let through.
    from phalanb.vllm.report import parse_report
    from phalanb.vllm.signatures import response_hash_candidates

    with pytest.raises(ParseError):
        parse_report('{"request_nonce": ' + "1" * 5000 + "}")
    # A non-streaming body that is such a number only loses the re-serialised candidate.
    assert [c.name for c in response_hash_candidates(b"1" * 5000, stream=False)] == ["body-bytes"]


def test_event_log_bytes_that_are_not_utf8_are_a_parse_error():
    from phalanb.tdx import parse_event_log

    raw = b'[{"imr": 0, "event": "\xff"}]'
    with pytest.raises(ParseError, match="not UTF-8") as info:
        parse_event_log(raw)
    assert info.value.field == "event_log" and info.value.offset == raw.index(b"\xff")


def test_certificate_chain_scan_is_linear_in_the_input():
    # BEGIN lines without an END made the lazy regex rescan the rest of the input from each one: 24 s for 430 kB.
    from phalanb.gpu import parse_cert_chain

    start = time.perf_counter()
    with pytest.raises(ParseError, match="no PEM certificate"):
        parse_cert_chain(b"-----BEGIN CERTIFICATE-----" * 40_000)
    assert time.perf_counter() - start < 0.5


def test_a_long_event_dripped_byte_by_byte_is_decoded_in_linear_time():
    # The decoder searched the whole buffer for a blank line on every chunk: 200 kB dripped 1 byte at a time took
    # 54 s. The events must not depend on how the bytes were split.
    from phalanb.wire.sse import SSEDecoder, parse_sse

    data = b"data: " + b"x" * 200_000 + b"\r\n\r\n" + b": keep-alive\n\ndata: [DONE]\r\r"
    dec = SSEDecoder()
    start = time.perf_counter()
    events = [e for i in range(len(data)) for e in dec.feed(data[i:i + 1])]
    assert time.perf_counter() - start < 5
    assert events == parse_sse(data) and [len(e.data) for e in events] == [200_000, 6]


@FUZZ
@given(data=st.binary(max_size=300) | st.sampled_from([b"data: a\r\n\r\ndata: b\n\n", b"data: x\r\r\n\n"]),
       cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=8))
def test_sse_events_do_not_depend_on_how_the_stream_is_split(data, cuts):
    from phalanb.errors import ParseError as PE
    from phalanb.wire.sse import SSEDecoder

    def events(chunks):
        dec = SSEDecoder()
        try:
            return [e for c in chunks for e in dec.feed(c)], dec.close()
        except PE as exc:
            return type(exc), None

    bounds = sorted({0, len(data), *[min(c, len(data)) for c in cuts]})
    assert events([data[a:b] for a, b in zip(bounds, bounds[1:])]) == events([data])


def _forged_nras(claims_overall: str, gpu_names=("GPU-0",)):
    forge = fk.NrasForge()
    gpus = {n: forge.sign({"iss": forge.ISSUER, "exp": 2e9, "measres": "success", "secboot": True,
                           "dbgstat": "disabled", "x-nvidia-gpu-attestation-report-nonce-match": True})
            for n in gpu_names}
    import base64

    head = base64.urlsafe_b64encode(b'{"kid":"fuzz-kid","alg":"ES384"}').rstrip(b"=").decode()
    return [["JWT", fk._resign(head, claims_overall.encode(), forge.key)], gpus], forge


@pytest.mark.parametrize("exp", ["NaN", "Infinity", "1e400", "true"])
def test_nras_tokens_with_a_non_finite_exp_are_refused(exp):
    # NaN compares false with every clock, so a token with exp NaN never expired (and Infinity crashed int()).
    from phalanb.gpu.nras import verify_nras

    answer, forge = _forged_nras('{"iss": "%s", "exp": %s, "x-nvidia-overall-att-result": true}'
                                 % (fk.NrasForge.ISSUER, exp))
    result = verify_nras(answer, jwks=forge.jwks, expected_nonce=None, at=1.8e9, issuer=forge.ISSUER,
                         anchor=forge.anchor)
    assert result.check("nras.token").status.value == "fail"
    # NaN/Infinity/1e400 are refused already when the claims are read (phalanb._json's one rule), naming exp.
    assert re.search(r"finite numeric exp|'exp': the number \S+ is not finite", result.token_errors["overall"])


@pytest.mark.parametrize("nbf", ["NaN", "Infinity", "-1e400"])
def test_nras_tokens_with_a_non_finite_nbf_are_refused(nbf):
    from phalanb.gpu.nras import verify_nras

    answer, forge = _forged_nras('{"iss": "%s", "exp": 2e9, "nbf": %s}' % (fk.NrasForge.ISSUER, nbf))
    result = verify_nras(answer, jwks=forge.jwks, expected_nonce=None, at=1.8e9, issuer=forge.ISSUER,
                         anchor=forge.anchor)
    assert "finite" in result.token_errors["overall"]


def test_nras_gpu_names_with_non_ascii_digits_sort_without_crashing():
    # "GPU-²".isdigit() is True but int("²") raises ValueError.
    from phalanb.gpu.nras import verify_nras

    answer, forge = _forged_nras('{"iss": "%s", "exp": 2e9}' % fk.NrasForge.ISSUER,
                                 gpu_names=("GPU-\u00b2", "GPU-\u0661", "GPU-1"))
    result = verify_nras(answer, jwks=forge.jwks, expected_nonce=None, at=1.8e9, issuer=forge.ISSUER,
                         anchor=forge.anchor)
    assert [name for name, _ in result.response.tokens()][1] == "GPU-1"


def test_a_jwks_key_with_non_string_coordinates_is_skipped():
    from phalanb.gpu.nras import Jwks

    jwks = Jwks({"keys": [{"kty": "EC", "crv": "P-384", "kid": "k", "x": 12345, "y": "AA"}]})
    assert len(jwks) == 0 and "base64url" in jwks.skipped["k"]


@pytest.mark.parametrize("field, value", [("status", "200 OK"), ("status", {}), ("request_headers", [1]),
                                          ("response_headers", "x"), ("timings", {"chunks": 5}),
                                          ("timings", {"chunks": [[1, "2"]]}), ("timings", {"done_ns": "soon"}),
                                          ("timings", [1])])
def test_a_saved_exchange_with_malformed_fields_is_a_parse_error(corpus, field, value):
    from phalanb.wire.exchange import Exchange

    d = dict(corpus.exchange_dict)
    d[field] = value
    with pytest.raises(ParseError):
        Exchange.from_dict(d)


def test_a_bundle_cannot_name_a_collateral_file(corpus):
    # A string collateral is a *path* to load_collateral: a bundle from elsewhere must not make the verifier read
    # local files (/dev/zero would never end).
    from phalanb.audit.bundle import parse_bundle

    d = json.loads(corpus.bundle_text)
    d["collateral"] = "/dev/zero"
    with pytest.raises(ParseError) as info:
        parse_bundle(d)
    assert info.value.field == "collateral"


@pytest.mark.parametrize("field, value", [("verdict", {"status": "verified", "checks": [{"id": "x"}]}),
                                          ("created_at", "yesterday"), ("endpoint", [1, 2]),
                                          ("policy", {"expected": [[1, 2]]}),
                                          ("policy", {"trust": "simulated", "tdx_root_der": "zz"}),
                                          ("policy", {"accepted_tcb": [{"a": 1}]})])
def test_a_bundle_with_malformed_fields_is_a_parse_error(corpus, field, value):
    from phalanb.audit.bundle import parse_bundle

    d = json.loads(corpus.bundle_text)
    d[field] = value
    with pytest.raises(ParseError) as info:
        parse_bundle(d)
    assert info.value.field == field


@pytest.mark.parametrize("item", ["tcb_info", "qe_identity"])
@pytest.mark.parametrize("value", ['{"fmspc": ', '"a string"', "[1]"])
def test_collateral_whose_tcb_info_or_qe_identity_is_not_a_json_object_is_refused(corpus, item, value):
    # dcap-qvl accepts any text there and reads it only when verifying; phalanb read it first (FMSPC, window) and
    # leaked a JSONDecodeError from verify_with_collateral.
    from phalanb.errors import InputError
    from phalanb.tdx import load_collateral, verify_with_collateral

    col = json.loads(corpus.collaterals[0])
    col[item] = value
    with pytest.raises(InputError, match=item):
        load_collateral(col)
    q = corpus.quotes[0]
    with pytest.raises(InputError, match=item):
        verify_with_collateral(q.raw, col, at=q.at)


def test_policy_settings_must_be_strings():
    from phalanb.errors import InputError
    from phalanb.policy import Policy

    with pytest.raises(InputError, match="accepted_tcb"):
        Policy(accepted_tcb=[{"a": 1}])
    with pytest.raises(InputError, match="accepted_tcb"):
        Policy(accepted_tcb="UpToDate")  # a string would have been read as a list of letters
    with pytest.raises(InputError, match="expected"):
        Policy(expected={"mr_td": 5})


def test_lone_surrogates_in_report_strings_fail_checks_instead_of_crashing(corpus):
    # JSON may escape a lone surrogate ("\udc80"); Python keeps it in the str, and str.encode() refuses it.
    from phalanb.gpu import chutes_gpu_nonce
    from phalanb.tdx import compose_hash, runtime_event_digest

    assert len(compose_hash("x\udc80")) == 64
    assert len(runtime_event_digest("app-id\ud800", b"")) == 48
    assert len(chutes_gpu_nonce("00\udc80", "key")) == 64
    report = json.loads(json.dumps(corpus.reports["nanogpt-gemma-2026-06"]))
    report["info"]["tcb_info"] = json.dumps({"app_compose": "\udc80"})
    verdict = fk.targets()["verify.verify_report"].call((report, None))
    assert verdict.status in ("failed", "incomplete")


def test_a_truncation_at_every_offset_of_a_quote_is_a_parse_error(corpus):
    from phalanb.tdx import parse_quote

    q = corpus.quotes[0]
    for n in range(0, len(q.raw), 7):
        outcome = fk.run_one(parse_quote, q.raw[:n])
        assert outcome.kind == "rejected" or (outcome.kind == "parsed" and n >= 4936), (n, outcome)


def test_the_time_bound_catches_a_hang():
    outcome = fk.run_one(lambda _: time.sleep(5), None, bound=0.2)
    assert outcome.kind == "hang"
    assert math.isclose(outcome.seconds, 0.2, abs_tol=0.5)
