"""End-to-end verdicts: the simulator (every link verified), the real captured reports (honest gaps), and the
shapes that cannot be fresh or bound."""

import json

import pytest

from phalanb.policy import Policy
from phalanb.vllm.report import parse_report
from phalanb.session import Session, Settings
from phalanb.vllm.verify import REQUIRED_CHECKS, verify_exchange, verify_report


@pytest.fixture(scope="module")
def verified(tmp_path_factory):
    with Session(Settings(protocol="legacy", sim_options={"seed": 11, "ttft_ms": 0, "tokens_per_second": 0})) as s:
        yield s.chat_and_verify("verify everything", max_tokens=6)


def test_a_full_simulator_exchange_is_verified(verified):
    v = verified.verdict
    assert v.status == "verified", v.table()
    ids = {c.id for c in v}
    assert set(REQUIRED_CHECKS) <= ids
    # …and it says loudly that the roots were simulated.
    assert v["trust.simulated"].status.value == "warning"


def test_the_same_evidence_fails_under_production_roots(verified):
    v = verify_exchange(verified.exchange, verified.signature, verified.attestation.report,
                        nonce=verified.attestation.nonce, collateral=verified.online.collateral)
    assert v.status == "failed"
    assert {c.id for c in v.failed} == {"tdx.pck_chain", "gpu.cert_chain", "tdx.tcb_status"}


def test_without_collateral_the_verdict_is_incomplete_never_verified(verified):
    v = verify_exchange(verified.exchange, verified.signature, verified.attestation.report,
                        nonce=verified.attestation.nonce, policy=verified.policy)
    assert v.status == "incomplete"
    assert [c.id for c in v.skipped] == ["tdx.tcb_status"]


def test_without_a_nonce_freshness_is_not_shown(verified):
    v = verify_exchange(verified.exchange, verified.signature, verified.attestation.report, nonce=None,
                        policy=verified.policy, collateral=verified.online.collateral)
    assert v["report.nonce_fresh"].status.value == "skipped" and v.status == "incomplete"


def test_a_wrong_nonce_fails_freshness_and_the_gpu_nonce(verified):
    v = verify_exchange(verified.exchange, verified.signature, verified.attestation.report, nonce=b"\x01" * 32,
                        policy=verified.policy, collateral=verified.online.collateral,
                        nras_response=verified.online.nras_response, jwks=verified.online.jwks)
    assert {c.id for c in v.failed} >= {"report.nonce_fresh", "gpu.nonce"}


def test_expected_measurements_are_enforced(verified):
    node = parse_report(verified.attestation.report).nodes[0]
    from phalanb.tdx import parse_quote
    mr_td = parse_quote(node.intel_quote).body.mr_td.hex()
    kw = dict(nonce=verified.attestation.nonce, collateral=verified.online.collateral)
    ok = verify_exchange(verified.exchange, verified.signature, verified.attestation.report,
                         policy=Policy(trust="simulated", expected={"mr_td": mr_td}), **kw)
    assert ok["policy.measurements"].status.value == "pass"
    bad = verify_exchange(verified.exchange, verified.signature, verified.attestation.report,
                          policy=Policy(trust="simulated", expected={"mr_td": "00" * 48}), **kw)
    assert bad.status == "failed" and [c.id for c in bad.failed] == ["policy.measurements"]


# -- the real captured reports --------------------------------------------------------------------------------

def _real(fixtures, name):
    d = fixtures / "reports" / name
    report = json.loads((d / "attestation_report.json").read_text())
    nonce = None
    if (d / "manifest.json").exists():
        nonce = json.loads((d / "manifest.json").read_text()).get("nonce_hex")
    if (d / "client_nonce.txt").exists():
        nonce = (d / "client_nonce.txt").read_text().strip()
    return report, bytes.fromhex(nonce) if nonce else None


def test_nanogpt_2026_03_fails_freshness(fixtures):
    report, nonce = _real(fixtures, "nanogpt-gemma-2026-03")
    v = verify_report(report, nonce=nonce)
    assert v.status == "failed"
    assert v["report.nonce_fresh"].status.value == "fail"
    assert v["report.report_data"].status.value == "pass"


@pytest.mark.parametrize("name", ["nanogpt-gemma-2026-06", "neardirect-qwen-2026-04", "neardirect-qwen-2026-06",
                                  "nearcloud-2026"])
def test_honest_reports_pass_every_link_but_tcb_and_are_incomplete(fixtures, name):
    report, nonce = _real(fixtures, name)
    v = verify_report(report, nonce=nonce)
    for cid in ("report.report_data", "report.nonce_fresh", "tdx.quote_signature", "tdx.qe_report", "tdx.pck_chain",
                "tdx.debug_disabled", "tdx.event_log", "gpu.nonce", "gpu.evidence_signature", "gpu.cert_chain"):
        assert v[cid].status.value == "pass", (cid, v[cid].reason)
    assert v["tdx.tcb_status"].status.value == "skipped"  # no collateral was captured with these reports
    assert v.status == "incomplete"


def test_neardirect_2026_06_with_its_nras_answer(fixtures):
    d = fixtures / "reports" / "neardirect-qwen-2026-06"
    report, nonce = _real(fixtures, "neardirect-qwen-2026-06")
    answer = json.loads((d / "nras_response.json").read_text())
    jwks = json.loads((d / "nras_jwks_at_capture.json").read_text())
    from phalanb.gpu.nras import parse_nras_response
    iat = parse_nras_response(answer).overall.claims["iat"]
    v = verify_report(report, nonce=nonce, nras_response=answer, jwks=jwks, at=iat)
    assert v["nras.result"].status.value == "pass" and v["nras.token"].status.value == "pass"
    assert v["gpu.cert_chain"].status.value == "pass"


def test_chutes_is_reported_not_fresh(fixtures):
    report, nonce = _real(fixtures, "redpill-chutes-deepseek-2026-06")
    v = verify_report(report, nonce=nonce)
    assert v.status == "failed" and [c.id for c in v.failed] == ["report.nonce_fresh"]
    assert "server chose the nonce" in v["report.nonce_fresh"].reason
    assert v["gpu.nonce"].status.value == "pass"  # GPUs carry sha256(nonce + e2e_pubkey), as Chutes says


def test_legacy_static_attestation_is_unbound(fixtures):
    d = fixtures / "reports" / "private-ml-sdk-2025-01"
    report = {"intel_quote": (d / "intel_quote.hex").read_text().strip(),
              "nvidia_payload": (d / "nvidia_payload.json").read_text()}
    v = verify_report(report, nonce=b"\x02" * 32)
    assert v["report.shape"].evidence["shape"] == "legacy"
    assert v["report.report_data"].status.value == "skipped" and "cannot bind" in v["report.report_data"].reason
    assert v["report.nonce_fresh"].status.value == "skipped"
    assert v.status != "verified"
