"""``phalanb quote``: exit codes and JSON keys as in ground_truth.json."""

from __future__ import annotations

import json

import httpx
import pytest

from phalanb.cli import main

from .conftest import gt_params


def run(capsys, *argv):
    code = main(["quote", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("entry", gt_params(lambda e: "collateral" in e))
def test_json_output_matches_ground_truth_and_exit_code_follows_dcap(entry, tdx_dir, capsys):
    code, out, _ = run(capsys, tdx_dir / entry["file"], "--json", "--collateral", tdx_dir / entry["collateral"],
                       "--at", entry["verify_now"])
    d = json.loads(out)
    for key, value in entry.items():
        if key in ("file", "source", "sha256_of_quote_bytes", "collateral", "report_class"):
            continue
        if key == "tee_type":
            assert d[key] == int(value, 16)
        elif isinstance(value, str):
            assert d[key] == (value if key in ("quote_type", "verify_status", "ca") else value.lower()), key
        else:
            assert d[key] == value, key
    assert code == (0 if entry["verify_status"] == "UpToDate" else 1)


def test_without_collateral_is_incomplete(tdx_dir, capsys):
    code, out, _ = run(capsys, tdx_dir / "dcap-qvl/tdx_quote", "--fields")
    assert code == 3 and "tdx.tcb_status" in out and "skipped" in out and "qe_report.mr_signer" in out


def test_sgx_quote_and_garbage_are_input_errors(tdx_dir, tmp_path, capsys):
    code, _, err = run(capsys, tdx_dir / "dcap-qvl/sgx_quote")
    assert code == 2 and "not a TDX quote" in err
    bad = tmp_path / "bad.hex"
    bad.write_text("04000200zz")
    code, _, err = run(capsys, bad)
    assert code == 2 and "offset" in err
    code, _, err = run(capsys, tdx_dir / "dcap-qvl/tdx_quote", "--at", "1")
    assert code == 2 and "--collateral" in err


def test_synthetic_intel_sample_fails(tdx_dir, capsys):
    code, out, _ = run(capsys, tdx_dir / "intel-qvl/quote.dat")
    assert code == 1 and "look-alike" in out


def test_simulator_report_with_root_sim_verifies_and_intel_root_fails(sim, tmp_path, capsys):
    report = httpx.get(sim.base_url + "/attestation/report", params={"nonce": "cd" * 32}, timeout=10).json()
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    pccs = sim.base_url.removesuffix("/v1") + "/pccs"
    from phalanb.tdx import fetch_collateral_sync, parse_quote
    col = fetch_collateral_sync(parse_quote(report["intel_quote"]), pccs)
    col_path = tmp_path / "col.json"
    col_path.write_text(col.to_json())
    code, out, _ = run(capsys, path, "--root", "sim", "--collateral", col_path, "--at", col.fetched_at)
    assert code == 0, out
    assert "tdx.event_log" in out and "app.compose_hash" in out and "simulated root" in out
    code, out, _ = run(capsys, path)
    assert code == 1 and "simulated root" in out
