"""Audit bundles re-verify offline with the same verdict; tampering and edited claims are caught; batches."""

import json
import subprocess
import sys

import pytest

from phalanb.audit.bundle import load_bundle, parse_bundle, reverify
from phalanb.audit.batch import audit, load_items, write_batch
from phalanb.errors import ParseError
from phalanb.session import Session, Settings
from phalanb.cli import main


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Bundles recorded from a simulator that is gone by the time the tests read them."""
    folder = tmp_path_factory.mktemp("bundles")
    with Session(Settings(protocol="legacy", sim_options={"seed": 21, "ttft_ms": 0, "tokens_per_second": 0})) as s:
        results = [s.chat_and_verify(f"audit me {i}", max_tokens=4, stream=i % 2 == 0) for i in range(3)]
        for i, r in enumerate(results):
            r.save(folder / f"reply{i}.json")
    return folder, results


def test_bundle_reverifies_offline_with_the_same_verdict(recorded):
    folder, results = recorded
    again = reverify(load_bundle(folder / "reply0.json"), trust="simulated")
    assert again.verdict.status == results[0].verdict.status == "verified"
    assert again.same, again.differences
    assert [c.to_dict() for c in again.verdict] == [c.to_dict() for c in results[0].verdict]


def test_bundle_holds_no_secrets_and_is_json(recorded):
    folder, _ = recorded
    data = json.loads((folder / "reply0.json").read_text())
    assert data["kind"] == "phalanb.audit-bundle" and data["schema_version"] == 2 and data["protocol"] == "vllm-proxy"
    assert "authorization" not in json.dumps(data["exchange"]["request_headers"]).lower().replace(
        '"authorization": "<redacted>"', "")


def test_any_flipped_byte_in_the_stored_response_fails(recorded, tmp_path):
    folder, _ = recorded
    data = json.loads((folder / "reply0.json").read_text())
    import base64
    body = base64.b64decode(data["exchange"]["response_b64"])
    for i in range(0, len(body), max(1, len(body) // 40)):
        flipped = body[:i] + bytes([body[i] ^ 0x20]) + body[i + 1:]
        data["exchange"]["response_b64"] = base64.b64encode(flipped).decode()
        r = reverify(parse_bundle(json.dumps(data)), trust="simulated")
        assert r.verdict.status == "failed" and "response.hash" in {c.id for c in r.verdict.failed}, i
        assert not r.same


def test_a_bundle_edited_to_claim_verified_is_not_believed(recorded):
    folder, _ = recorded
    data = json.loads((folder / "reply1.json").read_text())
    # Evidence edited, claim left at "verified": the claim is ignored and the change is named.
    last = data["signature"]["text"][-1]
    data["signature"]["text"] = data["signature"]["text"][:-1] + ("0" if last != "0" else "1")
    r = reverify(parse_bundle(json.dumps(data)), trust="simulated")
    assert r.verdict.status == "failed" and not r.same
    assert any(d.startswith("response.hash: recorded pass, now fail") for d in r.differences)
    # A failed verdict relabelled "verified": the recorded checks themselves contradict the label.
    data["verdict"]["checks"][0]["status"] = "fail"
    data["verdict"]["status"] = "verified"
    r = reverify(parse_bundle(json.dumps(data)), trust="simulated")
    assert r.verdict.status == "failed"
    assert any("edited" in d for d in r.differences)


def test_reverify_at_a_later_time_says_what_changed(recorded):
    folder, _ = recorded
    b = load_bundle(folder / "reply0.json")
    later = reverify(b, at=b.verified_at + 90 * 86400, trust="simulated")  # the simulated collateral lives ~31 days
    assert later.verdict.status != "verified"
    assert not later.same and "tdx.tcb_status" in later.explain()


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.update(kind="other"), "kind"),
    (lambda d: d.update(schema_version=99), "schema_version"),
    (lambda d: d["attestation"].update(nonce="zz"), "attestation.nonce"),
    (lambda d: d.update(verified_at="yesterday"), "verified_at"),
    (lambda d: d.pop("signature"), "signature"),
])
def test_malformed_bundles_are_parse_errors(recorded, mutate, field):
    folder, _ = recorded
    data = json.loads((folder / "reply0.json").read_text())
    mutate(data)
    with pytest.raises(ParseError) as info:
        parse_bundle(json.dumps(data))
    assert info.value.field == field


def test_oversized_bundle_is_refused_before_reading(tmp_path, monkeypatch):
    import phalanb.audit.bundle as a
    monkeypatch.setattr(a, "MAX_BUNDLE_BYTES", 10)
    p = tmp_path / "big.json"
    p.write_text("{}" * 10)
    with pytest.raises(ParseError, match="limit"):
        load_bundle(p)


def test_cli_verify_exit_codes(recorded, tmp_path, capsys):
    folder, _ = recorded
    assert main(["verify", str(folder / "reply0.json"), "--trust", "simulated"]) == 0
    assert "same verdict as recorded" in capsys.readouterr().out
    data = json.loads((folder / "reply0.json").read_text())
    data["attestation"]["nonce"] = "11" * 32
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    assert main(["verify", str(bad), "--json", "--trust", "simulated"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["same_as_recorded"] is False and out["verdict"]["status"] == "failed"
    (tmp_path / "junk.json").write_text("not json")
    assert main(["verify", str(tmp_path / "junk.json")]) == 2


def test_cli_report_on_real_fixtures(fixtures, capsys):
    d = fixtures / "reports" / "nanogpt-gemma-2026-03"
    nonce = (d / "client_nonce.txt").read_text().strip()
    assert main(["report", str(d / "attestation_report.json"), "--nonce", nonce]) == 1
    assert "report.nonce_fresh" in capsys.readouterr().out
    d = fixtures / "reports" / "neardirect-qwen-2026-04"
    nonce = json.loads((d / "manifest.json").read_text())["nonce_hex"]
    assert main(["report", str(d / "attestation_report.json"), "--nonce", nonce, "--json"]) == 3
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "incomplete"
    assert main(["report", str(d / "attestation_report.json"), "--nonce", "abc"]) == 2


def test_batch_audit_of_a_folder(recorded):
    folder, results = recorded
    df = audit([folder], progress=False, trust="simulated")
    assert len(df) == 3 and set(df["verdict"]) == {"verified"}
    assert list(df["recorded"]) == ["verified"] * 3


def test_batch_verdicts_equal_single_verdicts(recorded):
    folder, _ = recorded
    df = audit([folder], progress=False, verdicts=True, trust="simulated")
    for src, v in zip(df["source"], df["verdict_obj"]):
        single = reverify(load_bundle(src), trust="simulated").verdict
        assert [c.to_dict() for c in v] == [c.to_dict() for c in single]


def test_jsonl_batch_shares_one_attestation(recorded, tmp_path):
    _, results = recorded
    r0 = results[0]
    path = write_batch(tmp_path / "batch.jsonl", report=r0.attestation.report, nonce=r0.attestation.nonce,
                       policy=r0.policy, verified_at=r0.attestation.fetched_at,
                       collateral=r0.online.collateral, replies=[(r.exchange, r.signature) for r in results] * 20)
    items = load_items([path], trust="simulated")
    assert len(items) == 60 and len({i.attestation_key() for i in items}) == 1
    df = audit(items, workers=2, progress=False)
    assert (df["verdict"] == "verified").all()


def test_cli_audit(recorded, tmp_path):
    folder, _ = recorded
    csv = tmp_path / "audit.csv"
    proc = subprocess.run([sys.executable, "-m", "phalanb.cli", "audit", str(folder), "--trust", "simulated", "--no-progress", "--csv",
                           str(csv)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "verified: 3" in proc.stdout and csv.read_text().count("\n") == 4


@pytest.mark.slow
def test_batch_audit_runs_on_a_dask_cluster(recorded):
    distributed = pytest.importorskip("distributed") if False else __import__("distributed")
    folder, _ = recorded
    _, results = recorded
    r0 = results[0]
    # A framed batch too: the cluster's workers read its spans by path, exactly as local workers do.
    framed = write_batch(folder.parent / "dask.pbatch", report=r0.attestation.report, nonce=r0.attestation.nonce,
                         policy=r0.policy, verified_at=r0.attestation.fetched_at, collateral=r0.online.collateral,
                         replies=[(r.exchange, r.signature) for r in results] * 200)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as c, \
            distributed.Client(c) as client:
        df = audit([folder], executor=client.get_executor(), progress=False, trust="simulated")
        rows = audit([framed], executor=client.get_executor(), progress=False, trust="simulated")
    assert (df["verdict"] == "verified").all()
    assert len(rows) == 600 and rows.equals(audit([framed], progress=False, trust="simulated"))
    assert (rows["verdict"] == "verified").all()


def test_the_auditor_decides_trust_not_the_bundle(recorded, capsys):
    folder, _ = recorded
    # A simulator bundle says trust "simulated"; re-verified as an auditor would by default, it fails at the roots.
    r = reverify(load_bundle(folder / "reply0.json"))
    assert r.verdict.status == "failed"
    assert {c.id for c in r.verdict.failed} >= {"tdx.pck_chain", "gpu.cert_chain"}
    assert "simulated trust" in r.differences[0] and "production trust" in r.differences[0]
    assert main(["verify", str(folder / "reply0.json")]) == 1
    df = audit([folder], progress=False)
    assert set(df["verdict"]) == {"failed"}


def test_roots_written_into_a_bundle_are_never_used(recorded, tmp_path):
    """Whoever writes a bundle could write their own roots into it: they are ignored."""
    folder, _ = recorded
    data = json.loads((folder / "reply0.json").read_text())
    data["policy"]["tdx_root_der"] = "30" * 10  # garbage that would break verification if it were used
    r = reverify(parse_bundle(json.dumps(data)), trust="simulated")
    assert r.verdict.status == "verified"
