"""The simulator's GPUs and NRAS: real layout, the client's nonce, a simulated root that is never trusted by default."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phalanb.errors import InputError
from phalanb.gpu import parse_payload, verify_payload
from phalanb.gpu.nras import JwksCache, build_nras_request, fetch_nras, parse_nras_response, verify_nras
from phalanb.gpu.sim import SIM_NRAS_ISSUER, SimulatedGpus, simulated_nras_anchor, simulated_root
from phalanb.verdict import Status


def test_simulated_evidence_has_the_real_layout(sim_gpus):
    nonce = "ab" * 32
    p = parse_payload(sim_gpus.payload(nonce))
    assert p.variant == "dstack" and p.nonce == nonce and len(p.gpus) == 2
    for g in p.gpus:
        ev = g.spdm
        assert ev.raw[:4] == bytes.fromhex("11e001ff") and ev.requester_nonce.hex() == nonce
        assert len(ev.response.measurement_blocks) == 64
        assert all(len(b.value) == 48 for b in ev.response.measurement_blocks)
        assert ev.opaque.driver_version == "570.172.08" and ev.opaque.vbios_version == "96.00.CF.00.02"
        assert ev.opaque.fwid is not None and ev.trailing == b""
        assert len(g.certificates) == 5
        assert g.certificates[0].subject.rfc4514_string().endswith("CN=GH100 A01 GSP FMC LF")


def test_simulated_gpus_are_deterministic_per_seed_and_distinct():
    a, b = SimulatedGpus(seed=3, count=2), SimulatedGpus(seed=3, count=2)
    pa, pb = parse_payload(a.payload("00" * 32)), parse_payload(b.payload("00" * 32))
    # Same keys, names and serials (ECDSA signatures themselves are randomised, so the bytes differ).
    for ga, gb in zip(pa.gpus, pb.gpus):
        assert [c.public_key() for c in ga.certificates] == [c.public_key() for c in gb.certificates]
        assert [c.serial_number for c in ga.certificates] == [c.serial_number for c in gb.certificates]
    assert len({g.certificates[0].serial_number for g in pa.gpus}) == 2
    assert [g.certificate_text for g in pa.gpus] == [g.certificate_text for g in pb.gpus]  # deterministic bytes
    # One simulated root for every seed and process (like NVIDIA's), so recorded evidence re-verifies anywhere;
    # the GPUs below it differ per seed.
    other = SimulatedGpus(seed=4)
    assert other.trust_root().sha256 == a.trust_root().sha256 == simulated_root().sha256
    assert parse_payload(other.payload("00" * 32)).gpus[0].certificates[0].public_key() != \
        pa.gpus[0].certificates[0].public_key()


def test_count_is_bounded():
    with pytest.raises(InputError):
        SimulatedGpus(seed=1, count=9)
    with pytest.raises(InputError):
        SimulatedGpus(seed=1, count=0)


def test_eight_simulated_gpus_are_fast_to_make_and_to_attest():
    t0 = time.perf_counter()
    gpus = SimulatedGpus(seed=11, count=8)
    t1 = time.perf_counter()
    payload = gpus.payload("cd" * 32)
    t2 = time.perf_counter()
    assert len(payload["evidence_list"]) == 8
    assert t1 - t0 < 2.0 and t2 - t1 < 0.5


def test_the_simulator_serves_gpu_evidence_bound_to_the_clients_nonce(fresh_sim):
    sim = fresh_sim(gpus=3)
    nonce = "7e" * 32
    report = httpx.get(sim.base_url + "/attestation/report", params={"nonce": nonce}).json()
    payload = parse_payload(report["nvidia_payload"])
    assert payload.encoded_as == "json-string" and len(payload.gpus) == 3
    root = sim.state.gpu.trust_root()
    result = verify_payload(payload, root=root, expected_nonce=nonce)
    assert result.verdict().status == "verified", result.verdict().summary()
    assert result.check("gpu.trust_root").status is Status.WARNING


def test_no_gpus_means_no_payload(fresh_sim):
    sim = fresh_sim(gpus=0)
    report = httpx.get(sim.base_url + "/attestation/report", params={"nonce": "00" * 32}).json()
    assert report["nvidia_payload"] is None


def test_simulated_nras_appraises_and_signs_with_its_own_jwks(fresh_sim):
    sim = fresh_sim(gpus=2)
    nonce = "42" * 32
    report = httpx.get(sim.base_url + "/attestation/report", params={"nonce": nonce}).json()
    payload = parse_payload(report["nvidia_payload"])
    nras_base = sim.base_url.rsplit("/v1", 1)[0] + "/nras"
    answer = fetch_nras(build_nras_request(payload), base_url=nras_base)
    cache = JwksCache(base_url=nras_base, anchor=simulated_nras_anchor())
    jwks = cache.keys_for(parse_nras_response(answer).kids)
    facts = [g.facts for g in verify_payload(payload, root=sim.state.gpu.trust_root(), expected_nonce=nonce).gpus]
    result = verify_nras(answer, jwks=jwks, expected_nonce=nonce, issuer=SIM_NRAS_ISSUER, gpu_facts=facts,
                         anchor=simulated_nras_anchor())
    assert result.verdict().status == "verified", result.verdict().summary()
    assert cache.fetches == 1
    # NVIDIA's keys and issuer are what verify_nras expects by default: simulated tokens are not NVIDIA's.
    refused = verify_nras(answer, jwks=jwks, expected_nonce=nonce)
    assert refused.check("nras.token").status is Status.FAIL and "not NVIDIA" in refused.check("nras.token").reason
    refused = verify_nras(answer, jwks=jwks, expected_nonce=nonce, anchor=simulated_nras_anchor())
    assert refused.check("nras.token").status is Status.FAIL and "issuer" in refused.check("nras.token").reason


def test_simulated_nras_answers_a_signed_4010_for_the_wrong_nonce(sim_gpus):
    nonce = "42" * 32
    request = dict(sim_gpus.payload(nonce), nonce="43" * 32)
    status, answer = sim_gpus.appraise(request)
    assert status == 200
    result = verify_nras(answer, jwks=sim_gpus.jwks(), expected_nonce="43" * 32, issuer=SIM_NRAS_ISSUER,
                         anchor=simulated_nras_anchor())
    assert result.signed_failure and "4010" in result.check("nras.result").reason


def test_simulated_nras_refuses_garbage(sim_gpus):
    status, answer = sim_gpus.appraise({"evidence_list": "nope"})
    assert status == 400 and "invalid evidence" in answer["message"]


def test_payload_rejects_a_bad_nonce(sim_gpus):
    with pytest.raises(InputError):
        sim_gpus.payload("zz")
    with pytest.raises(InputError):
        sim_gpus.payload("00" * 31)


def test_payload_is_json_serialisable(sim_gpus):
    assert json.loads(json.dumps(sim_gpus.payload("01" * 32)))["arch"] == "HOPPER"


@settings(max_examples=15, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.integers(min_value=1, max_value=3))
def test_any_nonce_and_count_verifies_with_the_simulated_root_only(nonce, count):
    gpus = SimulatedGpus(seed=count, count=count)
    payload = parse_payload(json.dumps(gpus.payload(nonce.hex())))
    ok = verify_payload(payload, root=simulated_root(), expected_nonce=nonce)
    assert ok.verdict().status == "verified" and len(ok.gpus) == count
    from phalanb.gpu import nvidia_device_identity_ca

    bad = verify_payload(payload, root=nvidia_device_identity_ca(), expected_nonce=nonce)
    assert bad.check("gpu.cert_chain").status is Status.FAIL
