"""NVSwitch (LS10) evidence, verified as a switch's (issue 23 item 5): the real evidence of
fixtures/field/nvidia-sdk-nvswitch-ls10 (its SOURCE.md: the report + chain verify, the InvalidSignature variant fails
with SwitchEvidenceInvalidSignature) and the switch BIOS RIM of fixtures/nvidia/rims (31/31 active indices match)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from phalanb.cli import main
from phalanb.errors import InputError, UnsupportedError
from phalanb.gpu import nvidia_device_identity_ca, parse_files, parse_payload
from phalanb.gpu.appraise import RimStore, appraise_payload
from phalanb.gpu.payload import parse_switch_files, parse_switch_payload
from phalanb.gpu.switch import appraise_switch_payload, verify_switch_payload
from phalanb.gpu.verify import verify_payload

NONCE = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb"  # the SDK's nonce for this report
IN_WINDOW = dt.datetime(2026, 7, 1, tzinfo=dt.timezone.utc)  # the switch RIM's leaf: 2026-05-20…2028-05-19


@pytest.fixture(scope="module")
def ls10(fixtures):
    return fixtures / "field" / "nvidia-sdk-nvswitch-ls10"


@pytest.fixture(scope="module")
def rims(fixtures):
    return fixtures / "nvidia" / "rims"


def _read(ls10, name="switchAttestationReport.txt"):
    return parse_switch_files(ls10 / name, ls10 / "switchCertChain.txt")


def _ids(result):
    return {c.id: c for c in result.checks}


def test_the_switch_chain_ends_at_the_pinned_nvidia_device_identity_ca(ls10, nvidia_root):
    certs = _read(ls10).gpus[0].certificates
    names = [c.subject.rfc4514_string() for c in certs]
    # LS_10 leaf ← FSP BROM ← LS_10 Provisioner ICA ← GH100 Identity ← Device Identity CA: the GPUs' anchor
    assert "LS_10 A01 FSP FMC LF" in names[0] and "NVIDIA LS_10 Provisioner ICA 1" in names[2]
    assert "NVIDIA GH100 Identity" in names[3]
    assert certs[-1] == nvidia_root.certificate


def test_the_valid_switch_report_verifies_signature_chain_and_nonce(ls10, nvidia_root):
    v = verify_switch_payload(_read(ls10), root=nvidia_root, expected_nonce=NONCE)
    got = _ids(v)
    for check in ("nvswitch.evidence_signature", "nvswitch.cert_chain", "nvswitch.nonce", "nvswitch.agree"):
        assert got[check].status.value == "pass", got[check].reason
    assert "leaf key" in got["nvswitch.evidence_signature"].reason
    assert "NVIDIA Device Identity CA" in got["nvswitch.cert_chain"].reason
    # switch evidence carries no FWID: informative skip, never a pass
    assert got["nvswitch.fwid"].status.value == "skipped" and not got["nvswitch.fwid"].required
    assert v.verdict().status == "verified"


def test_the_checks_are_named_for_the_switch_never_for_a_gpu(ls10, nvidia_root):
    v = verify_switch_payload(_read(ls10), root=nvidia_root, expected_nonce=NONCE)
    assert all(c.id.startswith("nvswitch.") for c in v.checks)
    assert "NVSwitch-0" in _ids(v)["nvswitch.evidence_signature"].reason


def test_the_invalid_signature_variant_fails_its_signature_check(ls10, nvidia_root):
    v = verify_switch_payload(_read(ls10, "switchAttestationReportInvalidSignature.txt"), root=nvidia_root,
                              expected_nonce="ea038ed507a451e005bae91186bc9403150a3cb8971fdebd05ffed65eeb6a997")
    got = _ids(v)
    assert got["nvswitch.evidence_signature"].status.value == "fail"
    assert "does not verify with the leaf key" in got["nvswitch.evidence_signature"].reason
    assert got["nvswitch.cert_chain"].status.value == "pass"  # the chain is fine: the signature is what failed
    assert v.verdict().status == "failed"


def test_a_flipped_measurement_byte_fails_the_signature_and_the_appraisal(ls10, rims, nvidia_root, tmp_path):
    raw = bytearray(bytes.fromhex((ls10 / "switchAttestationReport.txt").read_text().strip()))
    block = _read(ls10).gpus[0].spdm.response.measurement_blocks[4]
    raw[block.value_offset] ^= 0x01
    (tmp_path / "flipped.bin").write_bytes(bytes(raw))
    p = parse_switch_files(tmp_path / "flipped.bin", ls10 / "switchCertChain.txt")
    v = verify_switch_payload(p, root=nvidia_root, expected_nonce=NONCE)
    assert _ids(v)["nvswitch.evidence_signature"].status.value == "fail"
    a = appraise_switch_payload(p, RimStore.from_dir(rims), at=IN_WINDOW)
    measured = a.check("nvswitch.measurements")
    assert measured.status.value == "fail" and f"index {block.index - 1}" in measured.reason


def test_another_nonce_fails_freshness(ls10, nvidia_root):
    v = verify_switch_payload(_read(ls10), root=nvidia_root, expected_nonce="00" * 32)
    assert _ids(v)["nvswitch.nonce"].status.value == "fail"


def test_with_the_switch_rim_every_active_index_matches(ls10, rims):
    a = appraise_switch_payload(_read(ls10), RimStore.from_dir(rims), at=IN_WINDOW)
    assert a.check("nvswitch.measurements").status.value == "pass"
    rows = a.gpus[0].rows
    assert len(rows) == 31 and all(r.match is True for r in rows)
    assert [v.rim_id for v in a.gpus[0].rims] == ["NV_SWITCH_BIOS_5612_0002_890_9610550001"]


def test_nvidias_serialized_switch_evidence_reads_and_verifies(ls10, nvidia_root):
    p = parse_switch_payload((ls10 / "switch_evidence_ls10.json").read_text())
    assert p.device == "NVSwitch" and p.nonce == NONCE and p.arch == "LS10"
    assert verify_switch_payload(p, root=nvidia_root, expected_nonce=p.nonce).verdict().status == "verified"


def test_gpu_evidence_is_never_read_as_a_switchs(fixtures):
    d = fixtures / "nvidia" / "nvtrust"
    with pytest.raises(UnsupportedError, match="not NVSwitch evidence"):
        parse_switch_files(d / "hopperAttestationReport.txt", d / "hopperCertChain.txt")


def test_a_switch_is_never_verified_or_appraised_as_a_gpu(ls10, rims, nvidia_root):
    p = _read(ls10)
    with pytest.raises(InputError, match="nvswitch"):
        verify_payload(p, root=nvidia_root, expected_nonce=NONCE)
    with pytest.raises(InputError, match="nvswitch"):
        appraise_payload(p, RimStore.from_dir(rims), at=IN_WINDOW)
    # and the GPU readers keep refusing it where a GPU's is expected
    with pytest.raises(UnsupportedError, match="NVSwitch"):
        parse_files(ls10 / "switchAttestationReport.txt", ls10 / "switchCertChain.txt")
    with pytest.raises(UnsupportedError, match="NVSwitch"):
        parse_payload((ls10 / "switch_evidence_ls10.json").read_text())


def test_a_payload_mixing_a_switch_and_a_gpu_is_refused(ls10, fixtures):
    switch = json.loads((ls10 / "switch_evidence_ls10.json").read_text())
    gpus = json.loads((fixtures / "nvidia" / "nvidia_attestation_sdk" / "hopper_evidence.json").read_text())
    with pytest.raises(UnsupportedError):
        parse_switch_payload(switch + gpus[:1])


def test_a_declared_arch_must_be_the_one_the_chain_names(ls10):
    items = json.loads((ls10 / "switch_evidence_ls10.json").read_text())
    with pytest.raises(UnsupportedError):
        parse_switch_payload({"evidence_list": items, "arch": "HOPPER"})


# --- the CLI: exit 0 all passed, 1 failed, 3 incomplete, 2 unreadable ------------------------------------------

def _cli(capsys, *argv):
    code = main(["gpu", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_cli_verifies_a_switch_and_without_rims_stays_incomplete(ls10, capsys):
    code, out = _cli(capsys, str(ls10 / "switchAttestationReport.txt"), "--chain", str(ls10 / "switchCertChain.txt"),
                     "--nonce", NONCE)
    got = {c["id"]: c for c in out["verdict"]["checks"]}
    assert out["device"] == "NVSwitch"
    assert got["nvswitch.evidence_signature"]["status"] == "pass" and got["nvswitch.cert_chain"]["status"] == "pass"
    assert got["nvswitch.measurements"]["status"] == "skipped" and got["nvswitch.measurements"]["required"]
    assert not any(i.startswith("gpu.") or i.startswith("nras.") for i in got)
    assert out["verdict"]["status"] == "incomplete" and code == 3


def test_cli_with_rims_appraises_the_switch(ls10, rims, capsys):
    code, out = _cli(capsys, str(ls10 / "switchAttestationReport.txt"), "--chain", str(ls10 / "switchCertChain.txt"),
                     "--nonce", NONCE, "--rims", str(rims), "--at", str(int(IN_WINDOW.timestamp())))
    got = {c["id"]: c for c in out["verdict"]["checks"]}
    assert got["nvswitch.measurements"]["status"] == "pass" and "31 of 31" in got["nvswitch.measurements"]["reason"]
    # no OCSP answer for the switch chains is held: revocation unknown, so incomplete as for GPUs
    assert got["nvswitch.revocation"]["status"] == "skipped" and out["verdict"]["status"] == "incomplete"
    assert code == 3


def test_cli_invalid_switch_signature_exits_1(ls10, capsys):
    code, out = _cli(capsys, str(ls10 / "switchAttestationReportInvalidSignature.txt"), "--chain",
                     str(ls10 / "switchCertChain.txt"), "--nonce", NONCE)
    assert {c["id"]: c for c in out["verdict"]["checks"]}["nvswitch.evidence_signature"]["status"] == "fail"
    assert code == 1


def test_cli_reads_nvidias_serialized_switch_evidence(ls10, capsys):
    code, out = _cli(capsys, str(ls10 / "switch_evidence_ls10.json"), "--nonce", NONCE)
    assert out["device"] == "NVSwitch" and code == 3


def test_cli_refuses_an_nras_answer_for_a_switch(ls10, fixtures, capsys, tmp_path):
    (tmp_path / "a.json").write_text("{}")
    code = main(["gpu", str(ls10 / "switchAttestationReport.txt"), "--chain", str(ls10 / "switchCertChain.txt"),
                 "--nras-response", str(tmp_path / "a.json"), "--jwks", str(tmp_path / "a.json")])
    assert code == 2 and "NRAS answers for GPUs only" in capsys.readouterr().err
