"""The real production sessions (fixtures/aci/real/sessions/, SOURCE.md "What a verifier should conclude") reach
their stated verdicts through phalanb's public functions (issue 20 item 4): every evidence type a session carries
that phalanb can verify elsewhere is deep-audited; what it cannot is named; a refuted claim is a warning naming it;
a pinned clock is compared with the session window."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from phalanb.aci.verify import verify_session as aci_only_verify_session
from phalanb.cli import main
from phalanb.gateway import identify, upstream_report, verify_session
from phalanb.aci.session import parse_session
from phalanb.policy import Policy
from phalanb.verdict import Status, Verdict


def _session(fixtures: Path, name: str) -> bytes:
    return (fixtures / "aci" / "real" / "sessions" / f"{name}.json").read_bytes()


def _verdict(raw: bytes, *, at_offset: int = 60, at: float | None = None, **kw) -> Verdict:
    s = parse_session(raw)
    t = s.established_at + at_offset
    return Verdict(verify_session(raw, expected_id=hashlib.sha256(raw).hexdigest(), served_at=t, policy=Policy(),
                                  at=t if at is None else at, **kw))


def st(v: Verdict, cid: str) -> str:
    return v[cid].status.value


@pytest.mark.parametrize("name,sid", [
    ("near-ai-a", "8ff41165f8f2fdb9c307a997618c59f5c7bc3815974c1fee5afcaf257f75a713"),
    ("phala-direct-a", "652a431c9b2fd94f6bd5c17109a9f4feb3fca210d8cf1671d53206d3999c4699"),
    ("phala-direct-b", "6c3db756736b38a16cd6730f114b56bc126e11014d351050dd4eef40886c330b"),
    ("tinfoil", "880626f21591c9ad10698bb7bd1e87e3e9311658d3d25034b7d38467e1840a3e"),
    ("chutes-embed", "09d48e471a8536fe9eb84e881243bb4daf60d9e15e897ce3f226ac6ed1362e00")])
def test_each_session_hashes_to_the_id_its_source_states(fixtures, name, sid):
    assert parse_session(_session(fixtures, name)).id == sid
    assert _verdict(_session(fixtures, name))["session.id"].status is Status.PASS


# -- near-ai-a: the NEAR AI Cloud gateway, TCB OutOfDate --------------------------------------------------------

@pytest.fixture(scope="module")
def near(fixtures) -> Verdict:
    return _verdict(_session(fixtures, "near-ai-a"))


def test_near_gateway_evidence_is_deep_audited_not_skipped(near):
    assert near["upstream.evidence"].status is Status.PASS
    assert near["upstream.evidence"].evidence["shape"] == "near-gateway-evidence"
    for cid in ("upstream.tdx.quote_signature", "upstream.tdx.qe_report", "upstream.tdx.pck_chain",
                "upstream.tdx.debug_disabled", "upstream.tdx.event_log", "upstream.app.compose_hash",
                "upstream.report.report_data", "upstream.channel"):
        assert st(near, cid) == "pass", (cid, near[cid].reason)
    assert "29 events" in near["upstream.tdx.event_log"].reason


def test_near_gateway_evidence_is_scoped_to_the_gateway_no_model_node_no_gpu(near):
    assert "nothing here attests a model node or a GPU" in near["upstream.evidence"].reason
    assert not [c for c in near.checks if c.id.startswith("upstream.gpu.")]


def test_the_sessions_own_refuted_tcb_claim_surfaces_as_a_warning_naming_it(near):
    c = near["session.refuted_claims"]
    assert c.status is Status.WARNING and "tcb_up_to_date refuted" in c.reason and "OutOfDate" in c.reason


def test_near_session_tcb_is_not_presented_as_up_to_date(near):
    # No Intel collateral in the document: TCB cannot be judged from it, and the verdict never says verified.
    assert st(near, "upstream.tdx.tcb_status") == "skipped" and near.status == "incomplete"


def test_the_gateways_nonce_is_not_ours(near):
    assert near["upstream.report.nonce_fresh"].status is Status.WARNING


# -- phala-direct-a/-b: a Phala dstack CVM with one H100 ------------------------------------------------------------

@pytest.mark.parametrize("name", ["phala-direct-a", "phala-direct-b"])
def test_phala_direct_model_server_is_deep_audited_including_its_gpu(fixtures, name):
    v = _verdict(_session(fixtures, name))
    for cid in ("upstream.report.report_data", "upstream.report.signing_key", "upstream.tdx.quote_signature",
                "upstream.tdx.pck_chain", "upstream.tdx.debug_disabled", "upstream.tdx.event_log",
                "upstream.app.compose_hash", "upstream.gpu.nonce", "upstream.gpu.evidence_signature",
                "upstream.gpu.cert_chain", "upstream.gpu.count", "upstream.identity", "upstream.channel"):
        assert st(v, cid) == "pass", (cid, v[cid].reason)
    assert "10 runtime digests were empty and recomputed" in v["upstream.tdx.event_log"].reason
    assert st(v, "upstream.tdx.tcb_status") == "skipped" and st(v, "upstream.nras.result") == "skipped"
    assert v["upstream.report.nonce_fresh"].status is Status.WARNING and v.status == "incomplete"


def test_phala_direct_evidence_is_not_labelled_a_near_model_node(fixtures):
    v = _verdict(_session(fixtures, "phala-direct-a"))
    assert v["upstream.report.shape"].evidence["shape"] == "dstack-tls"
    assert "NEAR AI model node" not in v["upstream.report.shape"].reason


def test_a_pinned_clock_outside_the_session_window_is_named_and_fails(fixtures):
    """SOURCE.md: the 2026-06-29 collateral expired before the session; judging at 1782900000 made TCB pass."""
    collateral = json.loads((fixtures / "field" / "tinfoil-direct-gemma4-2026-06" / "collateral.json").read_text())
    v = _verdict(_session(fixtures, "phala-direct-a"), at=1782900000, collateral=collateral)
    c = v["session.clock"]
    assert c.status is Status.FAIL and "outside the session's window" in c.reason and v.status == "failed"
    inside = _verdict(_session(fixtures, "phala-direct-a"), collateral=collateral)
    assert inside["session.clock"].status is Status.PASS
    assert st(inside, "upstream.tdx.tcb_status") != "pass"  # that collateral does not decide TCB at the session


# -- tinfoil, chutes-embed: evidence phalanb cannot re-verify ---------------------------------------------------------

def test_a_tinfoil_verifier_summary_is_named_never_verified(fixtures):
    v = _verdict(_session(fixtures, "tinfoil"))
    assert st(v, "session.evidence_digest") == "pass"
    c = v["upstream.evidence"]
    assert c.status is Status.SKIPPED and "Tinfoil verifier's result summary" in c.reason and c.required
    assert v.status == "incomplete"


def test_chutes_empty_evidence_is_named_and_the_upstream_never_independently_verified(fixtures):
    v = _verdict(_session(fixtures, "chutes-embed"))
    c = v["upstream.evidence"]
    assert c.status is Status.SKIPPED and "no evidence" in c.reason and "gateway's claims only" in c.reason
    assert v.status == "incomplete"


def test_without_the_cited_id_nothing_is_more_than_the_documents_word(fixtures):
    raw = _session(fixtures, "near-ai-a")
    checks = verify_session(raw, expected_id=None, served_at=None, policy=Policy())
    assert not [c for c in checks if c.status is Status.PASS and c.id.startswith("upstream.")]


def test_each_evidence_kind_is_identified_by_the_registry(fixtures):
    kinds = {}
    for name in ("near-ai-a", "phala-direct-a", "tinfoil"):
        s = parse_session(_session(fixtures, name))
        kinds[name] = identify(json.loads(s.evidence_parts[0].data)).name
    assert kinds == {"near-ai-a": "near-gateway-evidence", "phala-direct-a": "dstack-tls",
                     "tinfoil": "tinfoil-verifier-summary"}
    assert upstream_report(parse_session(_session(fixtures, "tinfoil"))) is None


def test_aci_alone_names_where_the_deep_audit_lives(fixtures):
    raw = _session(fixtures, "phala-direct-a")
    checks = {c.id: c for c in aci_only_verify_session(raw, expected_id=hashlib.sha256(raw).hexdigest(),
                                                       served_at=None, policy=Policy())}
    assert checks["upstream.evidence"].status is Status.SKIPPED
    assert "phalanb.gateway" in checks["upstream.evidence"].reason


def test_phalanb_session_reaches_the_same_verdict(fixtures, capsys):
    path = fixtures / "aci" / "real" / "sessions" / "near-ai-a.json"
    raw = path.read_bytes()
    t = str(parse_session(raw).established_at + 60)
    code = main(["session", str(path), "--id", hashlib.sha256(raw).hexdigest(), "--served-at", t, "--at", t])
    out = capsys.readouterr().out
    assert code == 3 and "session.refuted_claims" in out and "upstream.tdx.event_log" in out


def test_the_near_gateway_evidence_alone_verifies_the_same_through_phalanb_report(fixtures, tmp_path, capsys):
    s = parse_session(_session(fixtures, "near-ai-a"))
    path = tmp_path / "near_gateway_evidence.json"
    path.write_bytes(s.evidence_bytes)
    nonce = json.loads(s.evidence_bytes)["request_nonce"]
    assert main(["report", str(path), "--nonce", nonce, "--at", str(s.established_at + 60)]) == 3
    out = capsys.readouterr().out
    assert "near-gateway-evidence" in out and "report.report_data" in out and "tdx.event_log" in out
