"""The v3 vectors through the commands a user runs: `phalanb receipt` with a v3 envelope, its keyset bytes, the
exact bodies and the cited session; `phalanb report` on the upstream's own v3 report; `phalanb session` by a
sha256: id."""

from __future__ import annotations

import json

from phalanb.cli import main
from tests.conftest import FIXTURES

V3 = FIXTURES / "aci" / "v3"
V = json.loads((V3 / "test_vectors.json").read_text())
PUB = V["receipts"]["published"]


def _files(tmp_path, envelope):
    out = {}
    for name, text in (("receipt", envelope), ("keyset", V["keyset"]["bytes"]), ("request", PUB["request_body"]),
                       ("response", PUB["response_body"]), ("session", V["sessions"]["published"]["bytes"])):
        out[name] = tmp_path / name
        out[name].write_bytes(text.encode())
    return out


def _receipt_args(f):
    return ["receipt", str(f["receipt"]), "--keyset", str(f["keyset"]), "--request", str(f["request"]),
            "--response", str(f["response"]), "--session", str(f["session"]), "--at", "1750000100", "--json"]


def test_a_published_v3_receipt_holds_under_its_given_keyset_but_is_not_established(tmp_path, capsys):
    assert main(_receipt_args(_files(tmp_path, PUB["envelope_bytes"]))) == 3
    checks = {c["id"]: c["status"] for c in json.loads(capsys.readouterr().out)["verdict"]["checks"]}
    assert checks["aci.keyset_given"] == "skipped"
    for cid in ("receipt.signature", "receipt.keyset", "receipt.request_hash", "receipt.response_hash",
                "receipt.upstream", "session.id", "session.evidence_digest", "session.window"):
        assert checks[cid] == "pass", cid


def test_a_tampered_v3_payload_fails_on_the_command_line(tmp_path, capsys):
    assert main(_receipt_args(_files(tmp_path, V["receipts"]["tampered_payload"]["envelope_bytes"]))) == 1
    checks = {c["id"]: c["status"] for c in json.loads(capsys.readouterr().out)["verdict"]["checks"]}
    assert checks["receipt.signature"] == "fail"


def test_report_command_on_the_upstream_v3_fixture_binds_and_fails_the_stub_quote(capsys):
    rc = main(["report", str(V3 / "upstream" / "aci_report_fixture.json"), "--nonce", V["report_fixture"]["nonce"],
               "--json"])
    checks = {c["id"]: c["status"] for c in json.loads(capsys.readouterr().out)["verdict"]["checks"]}
    assert rc == 1 and checks["aci.keyset_digest"] == checks["aci.report_data"] == "pass"
    assert checks["tdx.quote_signature"] == "fail"


def test_report_command_takes_a_v3_nonce_string_and_refuses_an_illegal_one(tmp_path, capsys):
    report = V3 / "upstream" / "aci_report_fixture.json"
    assert main(["report", str(report), "--nonce", "test-nonce", "--json"]) == 1  # legal, but not this report's
    checks = {c["id"]: c["status"] for c in json.loads(capsys.readouterr().out)["verdict"]["checks"]}
    assert checks["aci.report_data"] == "fail"
    assert main(["report", str(report), "--nonce", "bad nonce"]) == 2


def test_session_command_hashes_the_served_bytes_for_a_sha256_id(tmp_path, capsys):
    f = tmp_path / "s"
    f.write_bytes(V["sessions"]["published"]["bytes"].encode())
    main(["session", str(f), "--id", V["sessions"]["published"]["session_id"], "--served-at", "1750000000",
          "--json"])
    checks = {c["id"]: c["status"] for c in json.loads(capsys.readouterr().out)["verdict"]["checks"]}
    assert checks["session.id"] == "pass"
