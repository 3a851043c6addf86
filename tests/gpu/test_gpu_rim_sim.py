"""The simulator's RIM service and OCSP responder, fetched online and cached (issue 23 §4): the same appraisal as
for NVIDIA's RIMs, under the simulator's own RIM root, with one fault per thing a deployment can get wrong."""

from __future__ import annotations

import httpx
import pytest

from phalanb.gpu import parse_payload
from phalanb.gpu.appraise import RimStore, appraise_payload
from phalanb.gpu.rim_fetch import fetch_rims_for
from phalanb.gpu.rim_sim import SimulatedRims, simulated_rim_root
from phalanb.gpu.rim_verify import nvidia_rim_root
from phalanb.gpu.sim import SimulatedGpus
from phalanb.policy import Policy
from phalanb.vllm.verify import rim_checks


def _fetch(sim, tmp_path, **kw):
    root = sim.base_url.rsplit("/v1", 1)[0]
    report = httpx.get(sim.base_url + "/attestation/report", params={"nonce": "42" * 32}).json()
    payload = parse_payload(report["nvidia_payload"])
    kw = {"rim_url": root + "/rim/v1/rim", "ocsp_url": root + "/ocsp", **kw}
    store = fetch_rims_for(payload, cache_dir=tmp_path / "cache", **kw)
    return payload, store


def test_simulated_rims_are_fetched_cached_and_appraise_the_simulated_gpus(fresh_sim, tmp_path):
    payload, store = _fetch(fresh_sim(gpus=2), tmp_path)
    assert sorted(store.rims) == ["NV_GPU_DRIVER_GH100_570.172.08", "NV_GPU_VBIOS_G520_0280_895_9600CF0002"]
    import time

    now = time.time()
    result = appraise_payload(payload, store, root=simulated_rim_root(), at=now)
    assert result.check("gpu.measurements").status.value == "pass"
    assert all(v.revocation.ok for g in result.gpus for v in g.rims)  # the RIM signer: good per the simulator
    # the cache is a --rims folder: the same appraisal offline
    again = appraise_payload(payload, RimStore.from_dir(tmp_path / "cache"), root=simulated_rim_root(), at=now)
    assert again.check("gpu.measurements").to_dict() == result.check("gpu.measurements").to_dict()
    assert (tmp_path / "cache" / "ocsp").is_dir()


def test_simulated_rims_never_pass_against_nvidias_root(fresh_sim, tmp_path):
    payload, store = _fetch(fresh_sim(gpus=1), tmp_path)
    check = appraise_payload(payload, store, root=nvidia_rim_root()).check("gpu.measurements")
    assert check.status.value == "fail" and "not at the pinned NVIDIA CoRIM signing Root CA" in check.reason


@pytest.mark.parametrize("fault, check_id, words", [
    ("rim_mismatch", "gpu.measurements", "index 7 (driver)"),
    ("rim_other_version", "gpu.measurements", "the RIM is for version 570.172.99"),
    ("rim_revoked", "gpu.revocation", "revoked (certificate_hold)"),
])
def test_each_simulated_rim_fault_fails_its_check(fresh_sim, tmp_path, fault, check_id, words):
    payload, store = _fetch(fresh_sim(gpus=1, faults={fault}), tmp_path)
    check = appraise_payload(payload, store, root=simulated_rim_root()).check(check_id)
    assert check.status.value == "fail" and words in check.reason


def test_a_missing_rim_is_named_not_an_error(fresh_sim, tmp_path):
    sim = fresh_sim(gpus=1)
    payload, store = _fetch(sim, tmp_path, rim_url=sim.base_url.rsplit("/v1", 1)[0] + "/rim/v1/nowhere")
    check = appraise_payload(payload, store, root=simulated_rim_root()).check("gpu.measurements")
    assert check.status.value == "skipped" and "missing driver RIM NV_GPU_DRIVER_GH100_570.172.08" in check.reason


def test_policy_rims_under_simulated_trust_use_the_simulators_rim_root(tmp_path):
    gpus = SimulatedGpus(seed=5)
    store = RimStore()
    for rim_id, doc in SimulatedRims(gpus).documents().items():
        store.add(rim_id, doc, "sim")
    payload = parse_payload(gpus.payload("00" * 32))
    measured, _ = rim_checks(payload, Policy(trust="simulated", rims=store))
    assert measured.status.value == "pass"
    measured, _ = rim_checks(payload, Policy(rims=store))
    assert measured.status.value == "fail"


def test_gpu_cli_fetches_rims_into_the_folder_then_appraises(fresh_sim, tmp_path, capsys):
    import json

    from phalanb.cli import main

    sim = fresh_sim(gpus=1)
    root = sim.base_url.rsplit("/v1", 1)[0]
    nonce = "42" * 32
    report = httpx.get(sim.base_url + "/attestation/report", params={"nonce": nonce}).json()
    (tmp_path / "report.json").write_text(json.dumps(report))
    argv = ["gpu", str(tmp_path / "report.json"), "--nonce", nonce, "--root", "sim", "--rims", str(tmp_path / "r"),
            "--json"]
    main(argv + ["--fetch-rims", "--rim-url", root + "/rim/v1/rim", "--ocsp-url", root + "/ocsp"])
    first = {c["id"]: c["status"] for c in json.loads(capsys.readouterr().out)["verdict"]["checks"]}
    assert first["gpu.measurements"] == "pass"
    assert sorted(p.name for p in (tmp_path / "r").glob("*.json")) == [
        "NV_GPU_DRIVER_GH100_570.172.08.json", "NV_GPU_VBIOS_G520_0280_895_9600CF0002.json"]
    sim.stop()  # offline now: the folder alone reproduces the appraisal
    main(argv)
    again = {c["id"]: c["status"] for c in json.loads(capsys.readouterr().out)["verdict"]["checks"]}
    assert again["gpu.measurements"] == "pass"


def test_a_rim_id_that_is_no_file_name_never_touches_the_cache(fresh_sim, tmp_path, monkeypatch):
    # RIM ids are built from the evidence's version strings: a liar's "../" must not read or write outside the cache
    outside = tmp_path / "NV_GPU_DRIVER_GH100_X.json"
    outside.write_text('{"id": "../NV_GPU_DRIVER_GH100_X", "rim": ""}')
    monkeypatch.setattr("phalanb.gpu.rim_fetch.rim_ids", lambda spdm, arch: {"driver": "../NV_GPU_DRIVER_GH100_X"})
    payload, store = _fetch(fresh_sim(gpus=1), tmp_path, with_ocsp=False)
    assert not store.rims and not (tmp_path / "cache").exists()


def test_a_corrupt_cache_entry_is_fetched_again(fresh_sim, tmp_path):
    sim = fresh_sim(gpus=1)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "NV_GPU_DRIVER_GH100_570.172.08.json").write_text("{not json")
    payload, store = _fetch(sim, tmp_path, with_ocsp=False)
    assert sorted(store.rims) == ["NV_GPU_DRIVER_GH100_570.172.08", "NV_GPU_VBIOS_G520_0280_895_9600CF0002"]
    assert appraise_payload(payload, store, root=simulated_rim_root()).check("gpu.measurements").passed
