"""A session appraises the GPU measurements with RIMs it fetched online (issue 23 §4): from the simulator's own RIM
service and OCSP responder under simulated trust, for a model server's GPUs and, behind an ACI gateway, the
upstream model server's GPUs in the deep audit; its bundle keeps the RIMs so the appraisal re-runs offline."""

from __future__ import annotations

import json

import pytest

from phalanb.audit.bundle import load_bundle, reverify
from phalanb.errors import InputError
from phalanb.policy import Policy
from phalanb.session import Session, Settings
from phalanb.sim import SimConfig, Simulator

PROTOCOLS = {"legacy": "", "aci": "upstream."}  # where the GPU checks of each protocol's verdict live


@pytest.fixture(scope="module")
def sims():
    started = {p: Simulator(SimConfig(seed=23, ttft_ms=0, tokens_per_second=0, protocol=p)).start()
               for p in PROTOCOLS}
    yield started
    for s in started.values():
        s.stop()


def _chat(sim, faults=(), **settings):
    sim.set_faults(list(faults))
    try:
        kw = {"base_url": sim.base_url, "model": sim.model, "trust": "simulated", "rims": "fetch", **settings}
        with Session(Settings(**kw)) as session:
            return session.chat_and_verify("Whose firmware measured this?", max_tokens=6)
    finally:
        sim.set_faults([])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_session_fetching_rims_from_the_simulator_verifies(sims, protocol):
    result = _chat(sims[protocol], ask_nras=False)  # phalanb's own appraisal alone completes the GPU link
    at = PROTOCOLS[protocol]
    assert result.verdict.status == "verified", result.verdict.table()
    measured, revoked = result.verdict[at + "gpu.measurements"], result.verdict[at + "gpu.revocation"]
    assert measured.passed and "all 33 judged match" in measured.reason
    assert revoked.passed and "device chain: 3 certificate(s) good" in revoked.reason
    assert result.verdict[at + "nras.result"].status.value == "skipped"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_without_rims_a_session_asks_nras_only_as_before(sims, protocol):
    result = _chat(sims[protocol], rims=None)
    ids = {c.id for c in result.verdict.checks}
    assert not {i for i in ids if i.endswith(("gpu.measurements", "gpu.revocation"))}
    assert result.verdict.status == "verified" and result.bundle().rims is None


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("fault, failing, words", [
    # the simulated NRAS does not know the RIMs were broken: it passes, so the two appraisals disagree — shown
    ("rim_mismatch", {"gpu.measurements", "gpu.appraisal_agree"}, "index 7 (driver): measured"),
    ("rim_other_version", {"gpu.measurements", "gpu.appraisal_agree"}, "the RIM is for version 570.172.99"),
    ("rim_revoked", {"gpu.revocation"}, "is revoked (certificate_hold)"),
])
def test_each_rim_fault_fails_its_own_check_through_a_session(sims, protocol, fault, failing, words):
    verdict = _chat(sims[protocol], [fault]).verdict
    at = PROTOCOLS[protocol]
    assert verdict.status == "failed"
    assert {c.id for c in verdict.failed} == {at + f for f in failing}, verdict.table()
    blamed = verdict[at + ("gpu.revocation" if fault == "rim_revoked" else "gpu.measurements")]
    assert words in blamed.reason


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_bundle_keeps_the_rims_and_re_verifies_offline_to_the_same_verdict(sims, protocol, tmp_path):
    result = _chat(sims[protocol])
    path = result.save(tmp_path / "bundle.json")
    bundle = load_bundle(path)
    assert sorted(bundle.rims["rims"]) == ["NV_GPU_DRIVER_GH100_570.172.08", "NV_GPU_VBIOS_G520_0280_895_9600CF0002"]
    assert len(bundle.rims["ocsp"]) == 4  # the RIM signer (both RIMs share it) and the GPU's device chain (3)
    again = reverify(bundle, policy=Policy(trust="simulated"))  # no network: everything comes from the bundle
    assert again.same and again.verdict.status == "verified"
    check = PROTOCOLS[protocol] + "gpu.measurements"
    assert again.verdict[check].to_dict() == result.verdict[check].to_dict()


def test_an_edited_rim_in_a_bundle_fails_on_re_verification(sims, tmp_path):
    result = _chat(sims["legacy"])
    data = json.loads(result.save(tmp_path / "bundle.json").read_text())
    import base64

    item = data["rims"]["rims"]["NV_GPU_DRIVER_GH100_570.172.08"][0]
    rim = base64.b64decode(item["rim"])
    at = rim.index(b'index="7"')
    value = rim.index(b'Hash0="', at) + len(b'Hash0="')
    edited = rim[:value] + (b"0" if rim[value:value + 1] != b"0" else b"1") + rim[value + 1:]
    item["rim"] = base64.b64encode(edited).decode()
    (tmp_path / "edited.json").write_text(json.dumps(data))
    again = reverify(load_bundle(tmp_path / "edited.json"), policy=Policy(trust="simulated"))
    measured = again.verdict["gpu.measurements"]
    assert measured.status.value == "fail" and "signature" in measured.reason.lower(), measured.reason
    assert again.verdict.status == "failed"


def test_simulated_rims_never_pass_under_production_trust(sims, tmp_path):
    sim = sims["legacy"]
    root = sim.base_url.removesuffix("/v1")
    # The auditor points a production session at the simulator's RIM service: its RIMs are not NVIDIA's.
    result = _chat(sim, trust="production", online=True, pccs_url=f"{root}/pccs", nras_url=f"{root}/nras",
                   rim_url=f"{root}/rim/v1/rim", ocsp_url=f"{root}/ocsp")
    measured = result.verdict["gpu.measurements"]
    assert measured.status.value == "fail" and "not at the pinned NVIDIA CoRIM signing Root CA" in measured.reason
    # and a bundle of a simulated session, re-verified under production trust, does not pass them either
    bundle = load_bundle(_chat(sim).save(tmp_path / "bundle.json"))
    again = reverify(bundle, policy=Policy())
    assert again.verdict["gpu.measurements"].status.value == "fail" and again.verdict.status == "failed"


def test_simulated_trust_fetches_rims_only_from_this_machine(sims):
    for where in ({"rim_url": "https://rim.attestation.nvidia.com/v1/rim"}, {"ocsp_url": "http://ocsp.example/"}):
        with pytest.raises(InputError, match="simulated trust applies only"):
            _chat(sims["legacy"], **where)


def test_a_rims_folder_caches_what_the_session_fetched_and_serves_it_offline(sims, tmp_path):
    folder = tmp_path / "rims"
    online = _chat(sims["legacy"], rims=str(folder))
    # the simulator's RIMs carry NVIDIA's ids: kept apart from the real ones a shared cache holds
    assert not list(folder.glob("*.json"))
    assert sorted(p.name for p in (folder / "simulated").glob("*.json")) == [
        "NV_GPU_DRIVER_GH100_570.172.08.json", "NV_GPU_VBIOS_G520_0280_895_9600CF0002.json"]
    offline = _chat(sims["legacy"], rims=str(folder), online=False)
    assert offline.verdict["gpu.measurements"].passed and offline.verdict["gpu.revocation"].passed
    assert offline.verdict["gpu.measurements"].reason == online.verdict["gpu.measurements"].reason


def test_rims_fetch_offline_is_refused_with_a_teaching_message(sims):
    with pytest.raises(InputError, match="give a folder of RIMs offline"):
        _chat(sims["legacy"], online=False)


def test_demo_with_rims_fetch_saves_a_bundle_that_phalanb_verify_re_appraises(tmp_path, capsys):
    from phalanb.cli import main

    path = tmp_path / "demo.json"
    code = main(["demo", "--protocol", "legacy", "--rims", "fetch", "--save", str(path), "--json"])
    shown = json.loads(capsys.readouterr().out)["verdict"]
    assert code == 0 and {c["id"]: c["status"] for c in shown["checks"]}["gpu.measurements"] == "pass"
    assert main(["verify", str(path), "--trust", "simulated"]) == 0
    assert "same verdict as recorded: verified" in capsys.readouterr().out


def test_a_batch_audit_of_the_bundles_reaches_the_verdicts_their_sessions_did(sims, tmp_path):
    from phalanb.audit.batch import audit

    for protocol in PROTOCOLS:
        for fault in ((), ("rim_mismatch",)):
            _chat(sims[protocol], fault).save(tmp_path / f"{protocol}-{len(fault)}.json")
    df = audit([tmp_path], workers=1, policy=Policy(trust="simulated"), progress=False)
    assert len(df) == 4 and (df.verdict == df.recorded).all()
    assert sorted(df.verdict) == ["failed", "failed", "verified", "verified"]


def test_chat_with_rims_but_nothing_verified_is_refused_not_ignored(capsys):
    from phalanb.cli import main

    assert main(["chat", "Hello", "--rims", "fetch"]) == 2
    assert "add --save" in capsys.readouterr().err


def test_chat_save_with_rims_keeps_them_for_phalanb_verify(tmp_path, capsys):
    from phalanb.cli import main

    path = tmp_path / "chat.json"
    assert main(["chat", "Hello", "--rims", "fetch", "--save", str(path)]) == 0  # the embedded ACI gateway
    assert sorted(load_bundle(path).rims["rims"]) == ["NV_GPU_DRIVER_GH100_570.172.08",
                                                      "NV_GPU_VBIOS_G520_0280_895_9600CF0002"]
    assert main(["verify", str(path), "--trust", "simulated"]) == 0
    assert "upstream.gpu.measurements" in capsys.readouterr().out
