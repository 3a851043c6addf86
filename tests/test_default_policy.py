"""The default production policy: which TDX module and OS image (``tdx.measurements``), NVIDIA's appraisal of the
GPU measurements (``nras.result`` required), and the GPU count (``gpu.count``). Fed by real captures."""

from __future__ import annotations

import json
import re

import pytest

from phalanb.cli import main
from phalanb.errors import InputError
from phalanb.gpu.nras import NRAS_URL, parse_nras_response
from phalanb.policy import Policy
from phalanb.tdx import parse_quote
from phalanb.tdx.measurements import JUDGED_REGISTERS, KnownMeasurements, check_measurements
from phalanb.vllm.verify import measurement_check, verify_report

# Every real capture of a dstack (or Chutes sek8s) deployment, with the node's MRSEAM / MRTD as decoded.
REAL_REPORTS = ["reports/nanogpt-gemma-2026-03", "reports/nanogpt-gemma-2026-06", "reports/neardirect-qwen-2026-04",
                "reports/neardirect-qwen-2026-06", "reports/nearcloud-2026", "reports/redpill-chutes-deepseek-2026-06",
                "field/venice-qwen35-2026-06", "field/neardirect-qwen-2026-03", "field/nearai-gateway-gptoss-2026-04",
                "field/nanogpt-gateway-glm5-2026-03", "field/nanogpt-chutes-deepseek-2026-03"]
UNLISTED_MRTD_QUOTE = "tdx/dstack/tdx-lite-getquote.json"  # a real dstack quote whose OS image no list names


def _report(fixtures, name):
    return json.loads((fixtures / name / "attestation_report.json").read_text())


def _capture(fixtures, name):
    """A field capture with everything it was captured with: report, nonce, collateral, NRAS answer, JWKS, clock."""
    d = fixtures / "field" / name
    answer = json.loads((d / "nras_response.json").read_text())
    return dict(report=json.loads((d / "attestation_report.json").read_text()),
                nonce=bytes.fromhex((d / "client_nonce.txt").read_text().strip()),
                collateral=json.loads((d / "collateral.json").read_text()), nras_response=answer,
                jwks=json.loads((d / "nras_jwks.json").read_text()),
                at=parse_nras_response(answer).overall.claims["iat"])


def _quote(fixtures, rel):
    return parse_quote(json.loads((fixtures / rel).read_text())["quote"])


# -- the shipped lists ---------------------------------------------------------------------------------------

def test_every_shipped_measurement_names_where_it_was_published():
    known = KnownMeasurements.shipped()
    assert set(known.good) == set(JUDGED_REGISTERS)
    for source in known.sources.values():
        assert source["repository"] and source["path"] and "date" in source and "commit" in source
    for reg in JUDGED_REGISTERS:
        for value, entry in {**known.good[reg], **known.bad[reg]}.items():
            assert re.fullmatch(r"[0-9a-f]{96}", value), (reg, value)
            assert entry.name and entry.sources and set(entry.sources) <= set(known.sources), (reg, entry)
        assert not set(known.good[reg]) & set(known.bad[reg])
    assert len(known.good["mr_seam"]) == 19  # Intel's table of TDX module releases, 1.5.01 … 2.0.18


@pytest.mark.parametrize("name", REAL_REPORTS)
def test_real_deployments_run_a_published_tdx_module_and_os_image(fixtures, name):
    v = verify_report(_report(fixtures, name))
    check = v["tdx.measurements"]
    assert check.status.value == "pass", check.reason
    assert "Intel TDX module 1.5." in check.reason
    assert check.evidence["mr_td"]["sources"]  # and the evidence says which published list knows it


def test_an_os_image_no_list_knows_is_incomplete_naming_the_register(fixtures):
    report = json.loads((fixtures / UNLISTED_MRTD_QUOTE).read_text())
    v = verify_report(report)
    check = v["tdx.measurements"]
    assert check.status.value == "skipped" and check.required
    assert "MRTD" in check.reason and "pin it to accept" in check.reason and "MRSEAM" not in check.reason
    assert check.evidence["mr_seam"]["status"] == "good"  # Intel TDX module 1.5.20: the module is known
    assert v.status != "verified" and check in v.skipped


def test_pinning_an_unknown_value_accepts_it(fixtures):
    q = _quote(fixtures, UNLISTED_MRTD_QUOTE)
    mr_td = q.body.mr_td.hex()
    for policy in (Policy(accept_measurements={"mr_td": [mr_td.upper()]}), Policy(expected={"mr_td": mr_td})):
        check = measurement_check(q, policy)
        assert check.status.value == "pass" and "mr_td pinned by your policy" in check.reason
    # Pinning another value does not accept this one.
    assert measurement_check(q, Policy(accept_measurements={"mr_td": ["ab" * 48]})).status.value == "skipped"


def test_relaxing_a_register_is_visible_as_a_warning(fixtures):
    q = _quote(fixtures, UNLISTED_MRTD_QUOTE)
    check = measurement_check(q, Policy(relax_measurements=("mr_td",)))
    assert check.status.value == "warning" and "mr_td (relaxed)" in check.reason


def test_a_known_bad_value_fails_even_when_relaxed_or_pinned(fixtures):
    q = _quote(fixtures, "tdx/dstack/quote-report.json")
    actual = {"mr_seam": q.body.mr_seam.hex(), "mr_td": q.body.mr_td.hex()}
    known = KnownMeasurements.shipped().with_values("mr_td", [actual["mr_td"]], name="a withdrawn image", bad=True)
    for kw in ({}, {"relaxed": ("mr_td",)}, {"pinned": {"mr_td": [actual["mr_td"]]}}):
        check = check_measurements(actual, known=known, **kw)
        assert check.status.value == "fail" and "known bad (a withdrawn image)" in check.reason


def test_the_simulators_measurements_are_known_only_under_simulated_trust():
    from phalanb.tdx.sim import SimulatedTdx

    q = parse_quote(SimulatedTdx(seed=3).attest(bytes(64)).quote)
    assert measurement_check(q, Policy.for_simulator()).status.value == "pass"
    assert measurement_check(q, Policy()).status.value == "skipped"  # never a production-known image


@pytest.mark.parametrize("bad", [dict(accept_measurements={"rt_mr0": ["00" * 48]}),
                                 dict(accept_measurements={"mr_td": "00" * 48}),
                                 dict(accept_measurements={"mr_td": ["00" * 47]}),
                                 dict(accept_measurements=["mr_td"]),
                                 dict(relax_measurements="mr_td"), dict(relax_measurements=("rt_mr3",)),
                                 dict(require_nras="yes")])
def test_malformed_measurement_knobs_are_refused_clearly(bad):
    with pytest.raises(InputError):
        Policy(**bad)


def test_the_new_knobs_travel_in_to_dict_and_back():
    p = Policy(accept_measurements={"mr_td": ["AB" * 48]}, relax_measurements=("mr_seam",), require_nras=False)
    again = Policy.from_dict(json.loads(json.dumps(p.to_dict())))
    assert again == p and again.accept_measurements == {"mr_td": ("ab" * 48,)}
    assert Policy().require_nras is True and Policy.for_simulator().require_nras is False


def test_a_bundles_own_relaxations_and_pins_are_not_the_auditors(tmp_path):
    """Whoever wrote a bundle could write any policy into it; re-verification judges with the auditor's."""
    from phalanb.audit.bundle import parse_bundle, reverify
    from phalanb.session import Session, Settings

    with Session(Settings(protocol="legacy", sim_options={"seed": 5, "ttft_ms": 0, "tokens_per_second": 0})) as s:
        r = s.chat_and_verify("measure me", max_tokens=2)
    assert r.verdict["tdx.measurements"].status.value == "pass"
    data = r.bundle().to_dict()
    data["policy"].update(relax_measurements=["mr_seam", "mr_td"], accept_measurements={"mr_td": ["ee" * 48]})
    again = reverify(parse_bundle(json.dumps(data)), trust="simulated")
    check = again.verdict["tdx.measurements"]
    assert check.status.value == "pass" and "relaxed" not in check.reason and "pinned" not in check.reason
    # An auditor with production trust knows no simulated image, whatever the bundle relaxed.
    assert reverify(parse_bundle(json.dumps(data))).verdict["tdx.measurements"].status.value == "skipped"


# -- NVIDIA's appraisal of the GPU measurements -----------------------------------------------------------------

#: The service each capture came from (its SOURCE.md): the auditor's profile, as `--service` would choose it.
SERVICE = {"venice-qwen35-2026-06": "venice", "neardirect-qwen-2026-03": "near-ai-cloud"}


@pytest.mark.parametrize("name", ["venice-qwen35-2026-06", "neardirect-qwen-2026-03"])
def test_a_real_capture_with_its_nras_answer_is_verified_under_the_default_policy(fixtures, name):
    v = verify_report(**_capture(fixtures, name), policy=Policy(service=SERVICE[name]))
    assert v.status == "verified", v.table()
    assert v["tdx.measurements"].status.value == "pass" and v["nras.result"].status.value == "pass"
    # The profile names where the compose hashes are published, not the hashes: held, with that caveat.
    assert v["service.profile"].status.value == "warning" and "compare compose hash" in v["service.profile"].reason


@pytest.mark.parametrize("name", ["venice-qwen35-2026-06", "neardirect-qwen-2026-03"])
def test_a_deployment_phalanb_cannot_place_is_incomplete(fixtures, name):
    v = verify_report(**_capture(fixtures, name))                    # no profile, no pinned compose
    assert v.status == "incomplete" and [c.id for c in v.skipped] == ["service.profile"]
    assert "pin its compose or choose a profile" in v["service.profile"].reason.replace(
        " (Policy(expected={'compose_hash': '<hex>'}), --expect-compose HEX)", "")


@pytest.mark.parametrize("name", ["venice-qwen35-2026-06", "neardirect-qwen-2026-03"])
def test_without_nvidias_appraisal_the_default_policy_says_incomplete(fixtures, name):
    kw = _capture(fixtures, name)
    del kw["nras_response"], kw["jwks"]
    v = verify_report(**kw, policy=Policy(service=SERVICE[name]))
    assert v.status == "incomplete" and [c.id for c in v.skipped] == ["nras.result"]
    assert "require_nras=False" in v["nras.result"].reason
    relaxed = verify_report(**kw, policy=Policy(require_nras=False, service=SERVICE[name]))  # the user's choice
    assert relaxed.status == "verified"


def test_an_unreachable_nras_leaves_the_verdict_incomplete(fixtures):
    from phalanb.audit.evidence import fetch_online_evidence

    kw = _capture(fixtures, "venice-qwen35-2026-06")
    online = fetch_online_evidence(kw["report"], signing_address=None, nonce=kw["nonce"], pccs_url=None,
                                   nras_url="http://127.0.0.1:9", timeout=2)  # nothing listens on the discard port
    assert online.nras_response is None and online.problems and "NRAS" in online.problems[0]
    v = verify_report(kw["report"], nonce=kw["nonce"], collateral=kw["collateral"], at=kw["at"],
                      nras_response=online.nras_response, jwks=online.jwks)
    assert v.status == "incomplete" and v["nras.result"] in v.skipped


def test_a_production_session_asks_nvidias_nras_by_default_with_an_explicit_opt_out():
    from phalanb.audit.evidence import DEFAULT_PCCS_URL
    from phalanb.session import Session, Settings

    with Session(Settings(base_url="https://api.example.invalid/v1", model="m")) as s:
        assert s.policy.require_nras and s._online_sources() == (DEFAULT_PCCS_URL, NRAS_URL)
    with Session(Settings(base_url="https://api.example.invalid/v1", model="m", ask_nras=False)) as s:
        assert s._online_sources() == (DEFAULT_PCCS_URL, None) and s.policy.require_nras


def test_phalanb_gpu_without_an_appraisal_is_incomplete_on_evidence_nvidia_rejects(fixtures, capsys):
    # NVIDIA's SDK rejects this evidence (a RIM certificate on hold); offline, phalanb must not call it verified.
    path = fixtures / "field/nvidia-sdk-hopper-cert-hold/hopper_evidence_cert_hold.json"
    code = main(["gpu", str(path), "--nonce", "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb",
                 "--json"])
    out = json.loads(capsys.readouterr().out)
    by_id = {c["id"]: c for c in out["verdict"]["checks"]}
    assert code == 3 and out["verdict"]["status"] == "incomplete"
    assert by_id["gpu.evidence_signature"]["status"] == "pass"  # the evidence itself is genuine
    assert by_id["nras.result"]["status"] == "skipped" and "not appraised" in by_id["nras.result"]["reason"]


# -- the GPU count ----------------------------------------------------------------------------------------------

def test_the_gpu_count_matches_vm_config_on_a_real_capture(fixtures):
    v = verify_report(_report(fixtures, "field/venice-qwen35-2026-06"))
    assert v["gpu.count"].status.value == "pass" and v["gpu.count"].evidence == {"vm_config.num_gpus": 8,
                                                                                  "evidence": 8}


@pytest.mark.parametrize("num_gpus", [9, 7, -1, "8", True])
def test_a_gpu_count_other_than_the_evidence_fails(fixtures, num_gpus):
    report = _report(fixtures, "field/venice-qwen35-2026-06")
    info = dict(report["info"]) if isinstance(report["info"], dict) else json.loads(report["info"])
    vm = json.loads(info["vm_config"])
    vm["num_gpus"] = num_gpus
    info["vm_config"] = json.dumps(vm)
    report = {**report, "info": info}
    v = verify_report(report)
    assert v["gpu.count"].status.value == "fail" and v.status == "failed"


def test_the_simulator_reports_as_many_gpus_as_it_attests():
    from phalanb.session import Session, Settings

    with Session(Settings(protocol="legacy", sim_options={"seed": 6, "gpus": 3, "ttft_ms": 0, "tokens_per_second": 0})) as s:
        r = s.chat_and_verify("count my GPUs", max_tokens=2)
    assert r.verdict.status == "verified", r.verdict.table()
    assert r.verdict["gpu.count"].evidence == {"vm_config.num_gpus": 3, "evidence": 3}


# -- the same choices on the command line -----------------------------------------------------------------------

def test_phalanb_report_pins_and_relaxes_only_when_told(fixtures, capsys):
    path = fixtures / UNLISTED_MRTD_QUOTE
    mr_td = _quote(fixtures, UNLISTED_MRTD_QUOTE).body.mr_td.hex()

    def measurements(*extra):
        main(["report", str(path), "--json", *extra])
        return {c["id"]: c for c in json.loads(capsys.readouterr().out)["checks"]}["tdx.measurements"]

    assert measurements()["status"] == "skipped"
    assert measurements("--accept-measurement", f"mr_td={mr_td}")["status"] == "pass"
    assert measurements("--relax-measurement", "mr_td")["status"] == "warning"
    assert main(["report", str(path), "--accept-measurement", "mr_td"]) == 2  # REGISTER=HEX, said plainly
    assert "REGISTER=HEX" in capsys.readouterr().err


def test_phalanb_report_on_a_real_capture_needs_nras_unless_told_otherwise(fixtures, capsys):
    d = fixtures / "field/venice-qwen35-2026-06"
    at = str(_capture(fixtures, "venice-qwen35-2026-06")["at"])
    base = ["report", str(d / "attestation_report.json"), "--nonce", (d / "client_nonce.txt").read_text().strip(),
            "--collateral", str(d / "collateral.json"), "--at", at, "--service", "venice"]
    assert main(base + ["--nras-response", str(d / "nras_response.json"), "--jwks", str(d / "nras_jwks.json")]) == 0
    assert main(base) == 3
    assert main(base + ["--no-require-nras"]) == 0
    capsys.readouterr()


def test_the_policy_names_the_simulators_kms_root_the_simulator_derives():
    """The ground layer spells the simulated dstack-kms root out (policy imports no simulator); it must be the very
    key the simulator derives from its public label, or simulated trust would reject the simulator's keysets."""
    from phalanb.policy import SIMULATED_KMS_ROOT, Policy
    from phalanb.sim.aci_docs import SIM_KMS_ROOT

    assert SIMULATED_KMS_ROOT == SIM_KMS_ROOT
    assert Policy(trust="simulated").aci_kms_roots == (SIM_KMS_ROOT,)
    assert SIM_KMS_ROOT not in Policy().aci_kms_roots
