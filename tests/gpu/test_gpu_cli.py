"""``phalanb gpu``: exit 0 all passed, 1 failed, 3 incomplete, 2 unreadable input."""

from __future__ import annotations

import json

from gpu_table import CHUTES, NEARDIRECT
from phalanb.cli import main
from phalanb.gpu.nras import parse_nras_response


def test_neardirect_report_with_nonce_and_nras_answer_exits_0(fixtures, capsys):
    base = fixtures / NEARDIRECT
    nonce = json.loads((base / "manifest.json").read_text())["nonce_hex"]
    iat = parse_nras_response((base / "nras_response.json").read_text()).overall.claims["iat"]
    code = main(["gpu", str(base / "attestation_report.json"), "--nonce", nonce,
                 "--nras-response", str(base / "nras_response.json"), "--jwks", str(base / "nras_jwks_at_capture.json"),
                 "--at", str(iat)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "8 GPUs" in out and "96.00.CF.00.02" in out and "verdict: verified" in out


def test_without_a_nonce_the_result_is_incomplete_exit_3(fixtures, capsys):
    code = main(["gpu", str(fixtures / "nvidia/nvtrust/hopperAttestationReport.txt"),
                 "--chain", str(fixtures / "nvidia/nvtrust/hopperCertChain.txt")])
    assert code == 3
    assert "incomplete" in capsys.readouterr().out


def test_broken_chain_exits_1_and_says_why(fixtures, capsys):
    code = main(["gpu", str(fixtures / "nvidia/nvtrust/hopperAttestationReport.txt"),
                 "--chain", str(fixtures / "nvidia/trustee/hopper_cert_chain_case4.txt"),
                 "--nonce", "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb"])
    assert code == 1
    assert "leaf missing" in capsys.readouterr().out


def test_chutes_signed_failure_exits_1_in_json(fixtures, capsys):
    base = fixtures / CHUTES
    iat = parse_nras_response((base / "nras_response.json").read_text()).overall.claims["iat"]
    report = json.loads((base / "attestation_report.json").read_text())
    code = main(["gpu", str(base / "nras_request.json"), "--nonce", report["nonce"], "--json",
                 "--nras-response", str(base / "nras_response.json"), "--jwks", str(base / "nras_jwks_at_capture.json"),
                 "--at", str(iat)])
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    by_id = {c["id"]: c for c in out["verdict"]["checks"]}
    # the evidence carries sha256(nonce + e2e_pubkey), not the raw nonce: freshness fails, NRAS said 4010
    assert by_id["gpu.nonce"]["status"] == "fail"
    assert by_id["nras.token"]["status"] == "pass" and "4010" in by_id["nras.result"]["reason"]


def test_unreadable_input_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"evidence_list": [{"evidence": "%%%", "certificate": "x"}]}')
    assert main(["gpu", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "evidence_list[0].evidence" in err and "ParseError" not in err  # the field, in words; no class name
    assert main(["gpu", str(tmp_path / "missing.json")]) == 2


def test_nras_response_needs_its_jwks(fixtures, capsys):
    base = fixtures / NEARDIRECT
    assert main(["gpu", str(base / "attestation_report.json"), "--nras-response",
                 str(base / "nras_response.json")]) == 2
    assert "--jwks" in capsys.readouterr().err


def test_simulated_payload_against_nvidias_root_exits_1_saying_simulated(tmp_path, capsys):
    from phalanb.gpu.sim import SimulatedGpus

    gpus = SimulatedGpus(seed=2, count=1)
    nonce = "33" * 32
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(gpus.payload(nonce)))
    assert main(["gpu", str(path), "--nonce", nonce]) == 1
    assert "simulated device root" in capsys.readouterr().out
    assert main(["gpu", str(path), "--nonce", nonce, "--root", "sim"]) == 0
    assert "[SIMULATED]" in capsys.readouterr().out
    root = tmp_path / "root.pem"
    root.write_bytes(gpus.root_pem)
    assert main(["gpu", str(path), "--nonce", nonce, "--root", str(root)]) == 0
    assert "[SIMULATED]" in capsys.readouterr().out
