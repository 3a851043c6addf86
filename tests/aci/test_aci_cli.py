"""``phalanb report`` (aci/1), ``phalanb receipt`` and ``phalanb session``: exit codes 0 verified, 1 failed,
3 incomplete, 2 usage/input errors."""

from __future__ import annotations

import json

import pytest

import acikit as k
from phalanb.cli import main

REAL_NONCE = k.REAL_NONCE.hex()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("aci")
    sid, sbytes = k.upstream_session()
    paths = {"report": k.sim_report(), "receipt": json.loads(k.sign_receipt(k.cite(k.receipt_doc(), sid)))}
    out = {}
    for name, doc in paths.items():
        out[name] = d / f"{name}.json"
        out[name].write_text(json.dumps(doc, indent=2))
    out["session"] = d / "session.json"
    out["session"].write_bytes(sbytes)
    out["request"] = d / "request.bin"
    out["request"].write_bytes(k.REQUEST)
    out["response"] = d / "response.bin"
    out["response"].write_bytes(k.RESPONSE)
    out["collateral"] = d / "collateral.json"
    out["collateral"].write_text(json.dumps(k.sim_collateral().data))
    out["keyset"] = d / "keyset.json"
    out["keyset"].write_text(json.dumps(k.A["keyset"]["object"]))
    out["sid"] = sid
    return out


def _receipt_args(files, *extra):
    return ["receipt", str(files["receipt"]), "--report", str(files["report"]), "--nonce", k.NONCE.hex(),
            "--request", str(files["request"]), "--response", str(files["response"]), "--session",
            str(files["session"]), "--collateral", str(files["collateral"]), "--at", str(k.AT), "--trust",
            "simulated", "--kms-root", k.KMS_ROOT.public_key.format(compressed=True).hex(), *extra]


def test_report_command_routes_aci_reports_and_is_incomplete_without_collateral(capsys):
    assert main(["report", str(k.REAL), "--nonce", REAL_NONCE, "--at", str(k.REAL_AT)]) == 3
    out = capsys.readouterr()
    assert "aci.report_data" in out.out and "keyset established" in out.err


def test_report_command_fails_for_a_wrong_nonce(capsys):
    assert main(["report", str(k.REAL), "--nonce", "22" * 32, "--at", str(k.REAL_AT), "--json"]) == 1
    verdict = json.loads(capsys.readouterr().out)["verdict"]
    assert {c["id"]: c["status"] for c in verdict["checks"]}["aci.nonce_fresh"] == "fail"


def test_report_command_fails_the_stub_quote():
    assert main(["report", str(k.STUB), "--nonce", k.STUB_NONCE.hex(), "--at", "1783805115"]) == 1


def test_report_command_refuses_a_short_nonce():
    assert main(["report", str(k.REAL), "--nonce", "00" * 16]) == 2


def test_receipt_command_verifies_the_whole_chain(files, capsys):
    assert main(_receipt_args(files)) == 0, capsys.readouterr().out


def test_receipt_command_fails_on_a_tampered_response(files, tmp_path, capsys):
    bad = tmp_path / "response.bin"
    bad.write_bytes(k.RESPONSE + b"\n")
    args = _receipt_args(files)
    args[args.index("--response") + 1] = str(bad)
    assert main(args + ["--json"]) == 1
    checks = {c["id"]: c["status"] for c in json.loads(capsys.readouterr().out)["verdict"]["checks"]}
    assert checks["receipt.response_hash"] == "fail"


def test_receipt_with_a_keyset_given_directly_is_at_best_incomplete(files, capsys):
    code = main(["receipt", str(files["receipt"]), "--keyset", str(files["keyset"]), "--request",
                 str(files["request"]), "--response", str(files["response"]), "--json"])
    assert code == 3
    checks = {c["id"]: c for c in json.loads(capsys.readouterr().out)["verdict"]["checks"]}
    given = checks["aci.keyset_given"]
    assert given["status"] == "skipped" and "not established" in given["reason"]
    sig = checks["receipt.signature"]
    assert sig["status"] == "pass" and "NOT established" in sig["reason"]
    assert checks["receipt.response_hash"]["status"] == "pass" and checks["receipt.keyset"]["status"] == "pass"


def _given(files, receipt_path, capsys):
    code = main(["receipt", str(receipt_path), "--keyset", str(files["keyset"]), "--request", str(files["request"]),
                 "--response", str(files["response"]), "--json"])
    return code, {c["id"]: c["status"] for c in json.loads(capsys.readouterr().out)["verdict"]["checks"]}


def test_a_keyset_given_directly_still_judges_the_receipt_a_forged_one_fails(files, tmp_path, capsys):
    forged = tmp_path / "forged.json"
    forged.write_bytes(k.sign_receipt(k.cite(k.receipt_doc(), files["sid"]), key=k.OTHER_KEY))
    code, checks = _given(files, forged, capsys)
    assert code == 1 and checks["receipt.signature"] == "fail" and checks["aci.keyset_given"] == "skipped"


def test_a_keyset_given_directly_still_judges_the_receipt_an_edited_one_fails(files, tmp_path, capsys):
    doc = json.loads(files["receipt"].read_text())
    doc["model"] = "another-model"                                  # edited after signing
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(doc))
    code, checks = _given(files, edited, capsys)
    assert code == 1 and checks["receipt.signature"] == "fail"


def test_a_keyset_given_directly_still_judges_the_hashes(files, tmp_path, capsys):
    other = tmp_path / "other-response.bin"
    other.write_bytes(k.RESPONSE + b" ")
    code = main(["receipt", str(files["receipt"]), "--keyset", str(files["keyset"]), "--response", str(other),
                 "--json"])
    checks = {c["id"]: c["status"] for c in json.loads(capsys.readouterr().out)["verdict"]["checks"]}
    assert code == 1 and checks["receipt.response_hash"] == "fail"


def test_receipt_command_rejects_report_and_keyset_together(files):
    with pytest.raises(SystemExit) as exc:
        main(["receipt", str(files["receipt"]), "--report", str(files["report"]), "--keyset", str(files["keyset"])])
    assert exc.value.code == 2


def test_receipt_command_on_garbage_is_an_input_error(tmp_path):
    bad = tmp_path / "r.json"
    bad.write_text('{"signature": 1.5}')
    assert main(["receipt", str(bad)]) == 2


def test_session_command_with_the_cited_id(files, capsys):
    code = main(["session", str(files["session"]), "--id", files["sid"], "--served-at", str(k.T0), "--trust",
                 "simulated", "--collateral", str(files["collateral"]), "--at", str(k.AT), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["session_id"] == files["sid"]
    assert {c["id"]: c["status"] for c in out["verdict"]["checks"]}["session.id"] == "pass"
    assert code == 0


def test_session_command_with_another_id_fails(files):
    assert main(["session", str(files["session"]), "--id", "00" * 32, "--trust", "simulated"]) == 1


def test_report_command_reads_aci_reports_strictly(tmp_path, capsys):
    bad = tmp_path / "dup.json"
    bad.write_text(k.REAL.read_text().replace('"api_version": "aci/1",', '"api_version": "aci/1", "report_data": 1,'
                                              ' "report_data": 2,', 1))
    assert main(["report", str(bad)]) == 2
    assert "twice" in capsys.readouterr().err


def test_report_command_notes_a_legacy_gateway_answer(tmp_path, capsys):
    doc = json.loads(k.REAL.read_text())
    doc.update(signing_address="0x79a5061efe5a46b0d1f33b11cf1c5adbedae6b79", signing_algo="ecdsa",
               intel_quote=doc["attestation"]["evidence"]["quote"])
    path = tmp_path / "legacy.json"
    path.write_text(json.dumps(doc))
    main(["report", str(path)])
    assert "legacy" in capsys.readouterr().err
