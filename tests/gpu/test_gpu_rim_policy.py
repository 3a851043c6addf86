"""RIM appraisal inside verdicts: Policy(rims=…), --rims on the CLI, bundles, and how it is weighed against NRAS
(issue 23 §4-5)."""

from __future__ import annotations

import json

import pytest

from phalanb.cli import main
from phalanb.errors import InputError
from phalanb.policy import Policy
from phalanb.verdict import Check, Status, Verdict
from phalanb.vllm.verify import combine_appraisals, verify_report

NONCE = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb"
IN_WINDOW = 1761307200  # 2025-10-24 12:00 UTC: inside the 550.90.07 RIMs' validity and OCSP window


@pytest.fixture(scope="module")
def rims(fixtures):
    return fixtures / "nvidia" / "rims"


def _cli(capsys, *argv):
    code = main(["gpu", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def _st(out):
    return {c["id"]: c for c in out["verdict"]["checks"]}


def test_gpu_cli_with_rims_appraises_the_measurements_itself(fixtures, rims, capsys):
    d = fixtures / "nvidia" / "nvtrust"
    code, out = _cli(capsys, str(d / "hopperAttestationReport.txt"), "--chain", str(d / "hopperCertChain.txt"),
                     "--nonce", NONCE, "--rims", str(rims), "--at", str(IN_WINDOW))
    got = _st(out)
    assert got["gpu.measurements"]["status"] == "pass"
    assert got["nras.result"]["status"] == "skipped" and not got["nras.result"]["required"]
    # the device chain's saved answers are of another day: revocation unknown, so the verdict stays incomplete
    assert got["gpu.revocation"]["status"] == "skipped" and got["gpu.revocation"]["required"]
    assert out["verdict"]["status"] == "incomplete" and code == 3
    rows = out["rim_appraisal"]["gpus"][0]["rows"]
    assert len(rows) == 33 and sum(r["match"] is True for r in rows) == 32


def test_gpu_cli_with_rims_judged_now_names_the_expired_rim(fixtures, rims, capsys):
    d = fixtures / "nvidia" / "nvtrust"
    code, out = _cli(capsys, str(d / "hopperAttestationReport.txt"), "--chain", str(d / "hopperCertChain.txt"),
                     "--nonce", NONCE, "--rims", str(rims), "--at", "1796601600")  # 2026-12-07
    got = _st(out)
    assert got["gpu.measurements"]["status"] == "fail" and "expired on 2026-06-01" in got["gpu.measurements"]["reason"]
    assert code == 1


def test_expired_rim_field_capture_fails_with_the_sdk_negative_rim(fixtures, rims, capsys, tmp_path):
    e = fixtures / "field" / "nvidia-sdk-hopper-expired-rim"
    folder = tmp_path / "rims"
    folder.mkdir()
    (folder / "NV_GPU_DRIVER_GH100_570.124.03.xml").write_bytes(
        (rims / "negative" / "NV_GPU_DRIVER_GH100_570.124.03_expired.xml").read_bytes())
    code, out = _cli(capsys, str(e / "hopperAttestationReportExpired.txt"), "--chain",
                     str(e / "hopperCertChainExpired.txt"), "--nonce", NONCE, "--rims", str(folder))
    assert _st(out)["gpu.measurements"]["status"] == "fail" and code == 1


def test_gpu_cli_without_rims_is_unchanged(fixtures, capsys):
    d = fixtures / "nvidia" / "nvtrust"
    code, out = _cli(capsys, str(d / "hopperAttestationReport.txt"), "--chain", str(d / "hopperCertChain.txt"),
                     "--nonce", NONCE)
    assert "gpu.measurements" not in _st(out) and code == 3


def test_595_report_with_rims_stays_incomplete_and_names_the_missing_vbios_rim(fixtures, rims):
    d = fixtures / "field" / "tinfoil-direct-gemma4-2026-06"
    report = json.loads((d / "tinfoil_attestation.json").read_text())
    nonce = bytes.fromhex((d / "client_nonce.txt").read_text().strip())
    v = verify_report(report, nonce=nonce, collateral=json.loads((d / "collateral.json").read_text()),
                      at=1782699184, policy=Policy(rims=str(rims)))
    m = v["gpu.measurements"]
    assert m.status is Status.SKIPPED and m.required
    assert "NV_GPU_VBIOS_G520_0280_895_9600D90002" in m.reason and "22 active indices, all 21 judged match" in m.reason
    assert v.status != "verified"


def test_policy_rims_must_be_a_folder_or_a_store():
    with pytest.raises(InputError, match="rims"):
        Policy(rims=42)
    assert Policy(rims="x").to_dict()["rims"] == "x"


def test_the_cli_refuses_a_rims_path_that_is_not_a_folder(fixtures, tmp_path, capsys):
    report = fixtures / "field" / "tinfoil-direct-gemma4-2026-06" / "tinfoil_attestation.json"
    assert main(["report", str(report), "--rims", str(tmp_path / "nope")]) == 2
    assert "--rims" in capsys.readouterr().err


# --- one rule for NRAS and RIMs ------------------------------------------------------------------------------------

def _c(cid, status, required=True):
    return Check(cid, status, f"{cid} {status}", required=required)


def test_either_appraisal_passing_suffices():
    rim_pass = [_c("gpu.measurements", Status.PASS), _c("gpu.revocation", Status.PASS)]
    nras_skipped = [_c("nras.result", Status.SKIPPED)]
    assert Verdict(combine_appraisals(rim_pass, nras_skipped)).status == "verified"
    rim_missing = [_c("gpu.measurements", Status.SKIPPED), _c("gpu.revocation", Status.SKIPPED)]
    nras_pass = [_c("nras.result", Status.PASS)]
    assert Verdict(combine_appraisals(rim_missing, nras_pass)).status == "verified"


def test_neither_appraisal_leaves_the_verdict_incomplete():
    out = combine_appraisals([_c("gpu.measurements", Status.SKIPPED), _c("gpu.revocation", Status.SKIPPED)],
                             [_c("nras.result", Status.SKIPPED)])
    assert Verdict(out).status == "incomplete"
    assert Verdict(combine_appraisals([], [_c("nras.result", Status.SKIPPED)])).status == "incomplete"


@pytest.mark.parametrize("nras, rim", [(Status.PASS, Status.FAIL), (Status.FAIL, Status.PASS)])
def test_disagreeing_appraisals_fail_and_show_both(nras, rim):
    out = combine_appraisals([_c("gpu.measurements", rim), _c("gpu.revocation", Status.PASS)],
                             [_c("nras.result", nras)])
    agree = Verdict(out)["gpu.appraisal_agree"]
    assert agree.status is Status.FAIL and "NRAS" in agree.reason and "RIM" in agree.reason
    assert set(agree.evidence) == {"nras", "rims"}
    assert Verdict(out).status == "failed"


def test_a_failed_rim_appraisal_fails_even_when_nras_passed():
    out = combine_appraisals([_c("gpu.measurements", Status.FAIL), _c("gpu.revocation", Status.SKIPPED)],
                             [_c("nras.result", Status.PASS)])
    assert Verdict(out).status == "failed"


# --- bundles -------------------------------------------------------------------------------------------------------

def test_a_bundle_keeps_the_rims_it_needs_and_reappraises_offline(fixtures, rims):
    from phalanb.audit.bundle import make_bundle, parse_bundle, reverify
    from phalanb.vllm.signatures import SignatureRecord

    d = fixtures / "field" / "tinfoil-direct-gemma4-2026-06"
    report = json.loads((d / "tinfoil_attestation.json").read_text())
    vec = json.loads((fixtures / "field" / "near-docs-sig-qwen35-2026-06" / "signature_vector.json").read_text())
    b = make_bundle(None, SignatureRecord.from_dict(vec), policy=Policy(rims=str(rims)), verdict=None,
                    report=report, verified_at=1782699184.0)
    data = json.loads(json.dumps(b.to_dict()))
    assert list(data["rims"]["rims"]) == ["NV_GPU_DRIVER_GH100_595.71.05"]  # only what the GPUs need
    assert len(data["rims"]["ocsp"]) == 7
    again = reverify(parse_bundle(data)).verdict  # the auditor names no RIM folder: the bundle's are used
    m = again["gpu.measurements"]
    assert m.status is Status.SKIPPED and "NV_GPU_VBIOS_G520_0280_895_9600D90002" in m.reason
    # a RIM altered inside the bundle is caught by its signature, not believed
    import base64

    entry = data["rims"]["rims"]["NV_GPU_DRIVER_GH100_595.71.05"][0]
    raw = base64.b64decode(entry["rim"]).replace(b'index="7" active="True"', b'index="7" active="False"')
    entry["rim"] = base64.b64encode(raw).decode()
    broken = reverify(parse_bundle(data)).verdict["gpu.measurements"]
    assert broken.status is Status.FAIL and "digest mismatch" in broken.reason


def test_a_batch_audit_of_the_bundle_reaches_the_same_rim_verdict_as_verify(fixtures, rims, tmp_path):
    import pickle

    from phalanb.audit.bundle import make_bundle, parse_bundle, reverify, save_bundle
    from phalanb.audit.batch import audit
    from phalanb.gpu.appraise import RimStore
    from phalanb.vllm.signatures import SignatureRecord

    d = fixtures / "field" / "tinfoil-direct-gemma4-2026-06"
    report = json.loads((d / "tinfoil_attestation.json").read_text())
    vec = json.loads((fixtures / "field" / "near-docs-sig-qwen35-2026-06" / "signature_vector.json").read_text())
    b = make_bundle(None, SignatureRecord.from_dict(vec), policy=Policy(rims=str(rims)), verdict=None,
                    report=report, verified_at=1782699184.0)
    save_bundle(b, tmp_path / "b.phalanb.json")
    single = reverify(parse_bundle(b.to_dict())).verdict
    rows = audit([tmp_path], workers=2, progress=False, verdicts=True)
    batch = rows.iloc[0]["verdict_obj"]
    assert rows.iloc[0]["verdict"] == single.status
    assert batch["gpu.measurements"].to_dict() == single["gpu.measurements"].to_dict()
    # stores travel to worker processes as bytes, and judge alike there
    store = RimStore.from_dir(rims)
    assert pickle.loads(pickle.dumps(store)).digest() == store.digest()
    assert Policy(rims=store).to_dict()["rims"] == f"RIM store sha256:{store.digest()}"
