"""The simulator behaves like the real service, and each fault produces the failure it stands for."""

import json

import httpx
import pytest

from phalanb.vllm.signatures import fetch_signature
from phalanb.errors import InputError, SignatureExpiredError
from phalanb.sim import FAULTS, SimConfig, Simulator
from phalanb.sim.server import set_remote_faults
from phalanb.vllm.verify import verify_exchange

CHAT_LINKS = ("request.hash", "response.hash", "signature.valid", "signature.bound", "report.nonce_fresh")


def _run(sim, client_for, stream=True):
    client = client_for(sim)
    ex = client.chat("fault?", stream=stream, max_tokens=4)
    sig = fetch_signature(client, ex.chat_id)
    att = client.attestation()
    v = verify_exchange(ex, sig, att.report, nonce=att.nonce)
    return {cid: v[cid].status.value for cid in CHAT_LINKS}


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
@pytest.mark.parametrize("fault, failing", [
    ("tamper_response", "response.hash"),
    ("tamper_request", "request.hash"),
    ("wrong_signing_key", "signature.bound"),
    ("ignore_nonce", "report.nonce_fresh"),
])
def test_each_fault_fails_its_own_check_and_nothing_else(fresh_sim, client_for, fault, failing, stream):
    statuses = _run(fresh_sim(faults={fault}), client_for, stream)
    assert statuses.pop(failing) == "fail"
    assert set(statuses.values()) == {"pass"}, statuses


def test_without_faults_every_chat_link_passes(fresh_sim, client_for):
    assert set(_run(fresh_sim(), client_for).values()) == {"pass"}


def test_signature_missing_fault_is_an_explained_404(fresh_sim, client_for):
    client = client_for(fresh_sim(faults={"signature_missing"}))
    ex = client.chat("x", max_tokens=1)
    with pytest.raises(SignatureExpiredError):
        fetch_signature(client, ex.chat_id)


def test_faults_can_be_set_remotely_and_are_validated(fresh_sim):
    sim = fresh_sim()
    assert set_remote_faults(sim.base_url, ["cut_stream"]) == ["cut_stream"]
    assert sim.config.faults == {"cut_stream"}
    r = httpx.post(sim.base_url.removesuffix("/v1") + "/_sim/faults", json={"faults": ["nope"]})
    assert r.status_code == 400
    with pytest.raises(InputError, match="unknown simulator faults"):
        sim.set_faults(["nope"])
    assert set(FAULTS) >= {"cut_stream", "tamper_response"}


def test_seeded_keys_and_text_are_reproducible(fresh_sim, client_for):
    a, b = fresh_sim(seed=7), fresh_sim(seed=7)
    assert a.signing_address == b.signing_address
    assert client_for(a).chat("same", max_tokens=5).text == client_for(b).chat("same", max_tokens=5).text
    assert fresh_sim(seed=8).signing_address != a.signing_address


def test_unseeded_simulators_have_their_own_keys():
    with Simulator(SimConfig(ttft_ms=0, tokens_per_second=0)) as a, \
            Simulator(SimConfig(ttft_ms=0, tokens_per_second=0)) as b:
        assert a.signing_address != b.signing_address


def test_stream_shape_matches_openai_chunks(sim, client_for):
    ex = client_for(sim).chat("shape", stream=True, max_tokens=3, body={"stream_options": {"include_usage": True}})
    events = [e for e in ex.response_bytes.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    first = json.loads(events[0][len(b"data: "):])
    assert first["object"] == "chat.completion.chunk" and first["choices"][0]["delta"]["role"] == "assistant"
    assert ex.usage == {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}
    assert ex.output_tokens == 3


def test_simulator_listens_on_loopback_by_default(sim):
    assert sim.base_url.startswith("http://127.0.0.1:")


def test_missing_key_is_401(sim):
    r = httpx.post(sim.base_url + "/chat/completions", content=b"{}")
    assert r.status_code == 401 and "Invalid or missing API key" in r.text


@pytest.mark.parametrize("body, status", [(b"{nope", 400), (b"[]", 400),
                                          (b'{"model":"phalanb/sim-llama-3-8b","messages":[]}', 400),
                                          (b'{"model":"phalanb/sim-llama-3-8b","messages":[{"role":"user","content":"x"}],"max_tokens":0}', 400)])
def test_bad_chat_requests_are_refused(sim, api_key, body, status):
    r = httpx.post(sim.base_url + "/chat/completions", content=body, headers={"Authorization": f"Bearer {api_key}"})
    assert r.status_code == status and r.json()["error"]["message"]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_upstream_mode_forwards_exact_bytes_and_signs_them(fresh_sim, client_for, api_key, stream):
    upstream = fresh_sim(seed=3, api_key="sk-upstream-only")
    proxy = fresh_sim(seed=4, upstream=upstream.base_url, upstream_api_key="sk-upstream-only")
    client = client_for(proxy)
    ex = client.chat("through the proxy", stream=stream, max_tokens=4)
    sig = fetch_signature(client, ex.chat_id)
    att = client.attestation()
    v = verify_exchange(ex, sig, att.report, nonce=att.nonce)
    assert {cid: v[cid].status.value for cid in CHAT_LINKS} == dict.fromkeys(CHAT_LINKS, "pass")
    assert sig.signing_address == proxy.signing_address != upstream.signing_address


@pytest.mark.parametrize("fault, failing", [
    ("tamper_response", {"response.hash"}),
    ("tamper_request", {"request.hash"}),
    ("wrong_signing_key", {"signature.bound"}),
    ("stale_quote", {"report.nonce_fresh"}),
    ("debug_td", {"tdx.debug_disabled"}),
    ("wrong_compose_hash", {"app.compose_hash"}),
    # The GPUs signed another nonce: the evidence check and NRAS's own appraisal both say so.
    ("gpu_nonce_mismatch", {"gpu.nonce", "gpu.agree", "nras.result"}),
    # The server used its own nonce for the quote and the GPUs alike.
    ("ignore_nonce", {"report.nonce_fresh", "gpu.nonce", "nras.result"}),
])
def test_every_attestation_fault_fails_exactly_its_checks(fault, failing):
    from phalanb.session import Session, Settings

    with Session(Settings(protocol="legacy", sim_options={"seed": 5, "ttft_ms": 0, "tokens_per_second": 0, "faults": {fault}})) as s:
        verdict = s.chat_and_verify("fault", max_tokens=3).verdict
    assert verdict.status == "failed"
    assert {c.id for c in verdict.failed} == failing, verdict.table()


def test_every_fault_is_documented_and_tested():
    tested = {"tamper_response", "tamper_request", "wrong_signing_key", "stale_quote", "debug_td",
              "wrong_compose_hash", "gpu_nonce_mismatch", "ignore_nonce", "chat_500", "signature_500",
              "attestation_500", "cut_stream", "signature_missing",
              # network faults: tests/test_network_faults.py
              "rate_limit", "flaky_503", "hang", "truncated_json", "slow_drip",
              # RIM service / OCSP faults: tests/gpu/test_gpu_rim_sim.py
              "rim_mismatch", "rim_revoked", "rim_other_version"}
    # ACI gateway faults: tests/aci/test_sim_aci_faults.py (which checks it covers every aci_* fault)
    assert {f for f in FAULTS if not f.startswith("aci_")} == tested


def test_a_fixed_reply_is_served_word_by_word_and_signed(fresh_sim, client_for):
    sim = fresh_sim(reply="Hello <b>world</b> again")
    client = client_for(sim)
    ex = client.chat("anything", max_tokens=10, stream=False)
    assert ex.text == "Hello <b>world</b> again" and ex.usage["completion_tokens"] == 3
    assert set(_run(sim, client_for).values()) == {"pass"}


# -- a fault the running protocol cannot inject is refused (issue 21, item 3) ------------------------------------
ACI_FAULTS = sorted(f for f in FAULTS if f.startswith("aci_"))


@pytest.mark.parametrize("fault", ACI_FAULTS)
def test_an_aci_fault_is_refused_by_a_legacy_simulator(fault):
    with pytest.raises(InputError, match=f"the fault {fault} cannot be injected here: it needs an ACI gateway"):
        SimConfig(protocol="legacy", faults={fault})


def test_faults_that_need_https_or_an_aggregator_are_refused_without_them():
    with pytest.raises(InputError, match="needs an HTTPS listener.*--https"):
        SimConfig(protocol="aci", faults={"aci_tls_key_not_in_keyset"})
    for fault in ("aci_upstream_failed", "aci_session_expired", "aci_edit_session"):
        with pytest.raises(InputError, match="needs an aggregator gateway.*--aci-mode aggregator"):
            SimConfig(protocol="aci", aci_mode="direct", faults={fault})
    SimConfig(protocol="aci", https=True, faults={"aci_tls_key_not_in_keyset"})  # accepted where it acts


def test_a_refused_fault_leaves_the_running_simulator_unchanged(fresh_sim):
    s = fresh_sim(protocol="legacy", faults={"tamper_response"})
    with pytest.raises(InputError, match="aci_tamper_response"):
        s.set_faults(["aci_tamper_response"])
    assert s.config.faults == {"tamper_response"}
    with pytest.raises(Exception, match="cannot be injected here"):
        set_remote_faults(s.base_url, ["aci_tamper_response"])
    assert set(httpx.get(s.base_url.removesuffix("/v1") + "/_sim/faults").json()["faults"]) == {"tamper_response"}


def test_the_sim_command_refuses_an_aci_fault_on_the_legacy_protocol():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "phalanb.cli", "sim", "--protocol", "legacy", "--fault",
                          "aci_tamper_response"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert "aci_tamper_response cannot be injected here" in out.stderr and "--protocol aci" in out.stderr
    assert "Traceback" not in out.stderr
