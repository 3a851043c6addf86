"""The phalanb command: sim, demo, chat; exit codes 0 / 1 / 2 / 3."""

import json
import os
import subprocess
import sys

import pytest

from phalanb.vllm.signatures import fetch_signature
from phalanb.cli import main


def run(args, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "phalanb.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_sim_prints_its_base_url_first_and_serves(tmp_path, api_key, client_for):
    proc = subprocess.Popen([sys.executable, "-m", "phalanb.cli", "sim", "--seed", "5", "--ttft-ms", "0",
                             "--tokens-per-second", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        from phalanb.wire.client import Client
        with Client(base_url=url, model="phalanb/sim-llama-3-8b", api_key=api_key) as c:
            ex = c.chat("hi from another process", max_tokens=3)
            assert fetch_signature(c, ex.chat_id).signing_address
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
        (tmp_path / "sim.out").write_text(url + out + err)


def test_sim_lists_faults(capsys):
    assert main(["sim", "--list-faults"]) == 0
    assert "cut_stream" in capsys.readouterr().out


def test_demo_json_exit_code_follows_the_verdict(capsys):
    code = main(["demo", "--json", "--max-tokens", "5"])
    out = json.loads(capsys.readouterr().out)
    verdict = out["verdict"]
    assert out["simulated"] is True and out["protocol"] == "aci"  # the demo speaks today's gateway protocol
    by_id = {c["id"]: c["status"] for c in verdict["checks"]}
    for cid in ("receipt.request_hash", "receipt.response_hash", "receipt.signature", "receipt.keyset",
                "aci.report_data", "aci.nonce_fresh", "session.id", "upstream.tdx.quote_signature"):
        assert by_id[cid] == "pass"
    assert code == {"verified": 0, "failed": 1, "incomplete": 3}[verdict["status"]] == 0


def test_demo_protocol_legacy_keeps_the_model_servers_flow(capsys):
    code = main(["demo", "--json", "--max-tokens", "5", "--protocol", "legacy"])
    out = json.loads(capsys.readouterr().out)
    by_id = {c["id"]: c["status"] for c in out["verdict"]["checks"]}
    for cid in ("request.hash", "response.hash", "signature.valid", "signature.bound", "report.nonce_fresh"):
        assert by_id[cid] == "pass"
    assert code == 0 and not any(cid.startswith("receipt.") for cid in by_id)


def test_demo_fails_with_exit_1_when_the_signer_is_not_attested(fresh_sim, capsys):
    sim = fresh_sim(faults={"wrong_signing_key"}, api_key=None)
    code = main(["demo", "--json", "--base-url", sim.base_url, "--max-tokens", "3"])
    out = json.loads(capsys.readouterr().out)
    by_id = {c["id"]: c["status"] for c in out["verdict"]["checks"]}
    assert code == 1 and by_id["signature.bound"] == "fail" and by_id["signature.valid"] == "pass"


def test_demo_table_output(capsys):
    main(["demo", "--max-tokens", "3", "--no-stream"])
    out = capsys.readouterr().out
    assert "SIMULATED" in out and "receipt.signature" in out and "verdict:" in out


def test_chat_save_writes_a_bundle_that_verify_reproduces_without_the_key(fresh_sim, tmp_path, api_key):
    sim = fresh_sim()
    path = tmp_path / "exchange.json"
    proc = run(["chat", "hello", "--base-url", sim.base_url, "--model", sim.model, "--save", str(path),
                "--trust", "simulated"], env={"PHALANB_API_KEY": api_key})
    (tmp_path / "chat.log").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stderr
    saved = json.loads(path.read_text())
    assert saved["kind"] == "phalanb.audit-bundle"
    assert saved["exchange"]["request_headers"]["authorization"] == "<redacted>"
    assert saved["signature"]["signing_address"] == sim.signing_address
    assert api_key not in path.read_text()
    hint = proc.stderr.rsplit("re-verify offline: ", 1)[1].split(")")[0]
    again = run(hint.split()[1:])  # the printed command, verbatim
    assert again.returncode == 0 and "same verdict as recorded: verified" in again.stdout, again.stdout


def test_wrong_key_is_a_clear_error_with_exit_2(fresh_sim, tmp_path):
    sim = fresh_sim()
    proc = run(["chat", "x", "--base-url", sim.base_url, "--model", sim.model],
               env={"PHALANB_API_KEY": "sk-wrong-key-1234567890"})
    assert proc.returncode == 2
    assert "HTTP 401" in proc.stderr and "sk-wrong-key" not in proc.stderr


@pytest.mark.parametrize("args", [["demo", "--timeout", "-1"], ["nonsense"], ["chat"], ["sim", "--port", "x"]])
def test_usage_errors_exit_2(args):
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2


def test_unreachable_base_url_exits_2_with_a_message():
    proc = run(["demo", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--timeout", "3"])
    assert proc.returncode == 2 and "could not connect" in proc.stderr
