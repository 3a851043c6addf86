"""The simulator's TDX: real-format quotes that verify end to end under the simulated root, and only under it."""

from __future__ import annotations

import time

import dcap_qvl
import httpx
import pytest

from phalanb.verdict import Status, Verdict
from phalanb.tdx import (
    TdxPolicy,
    TrustRoot,
    check_compose_hash,
    check_event_log,
    derive,
    fetch_collateral_sync,
    judge,
    parse_quote,
    verify_quote_offline,
    verify_with_collateral,
)
from phalanb.tdx.sim import SimulatedTdx, simulated_root


@pytest.fixture(scope="module")
def report(sim):
    nonce = "ab" * 32
    r = httpx.get(sim.base_url + "/attestation/report", params={"nonce": nonce, "model": sim.model}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def pccs_url(sim):
    return sim.base_url.removesuffix("/v1") + "/pccs"


def test_report_carries_a_v4_quote_binding_address_and_nonce(sim, report):
    q = parse_quote(report["intel_quote"])
    assert q.version == 4 and q.header.tee_type == 0x81 and q.report_class == "TD10"
    address = bytes.fromhex(report["signing_address"].removeprefix("0x"))
    assert q.body.report_data == address.ljust(32, b"\0") + bytes.fromhex("ab" * 32)
    assert q.signature_data.pck_chain_trailing_nul and len(q.pck_chain_pem) == 3


def test_offline_chain_passes_only_with_the_simulated_root(sim, report):
    q = parse_quote(report["intel_quote"])
    root = sim.state.tdx.trust_root
    ok = verify_quote_offline(q, root=root)
    assert ok.ok, [s.reason for s in ok.failed]
    assert ok.pck.fmspc.hex() == "00906ed50000" and ok.ca == "platform"
    assert ok.pck.pce_svn == 13 and ok.pck.sgx_type == 1
    intel = verify_quote_offline(q)  # default root: Intel's
    assert [s.name for s in intel.failed] == ["pck_chain"]
    assert "simulated root" in intel.step("pck_chain").reason


def test_dcap_qvl_accepts_it_as_uptodate_with_collateral_fetched_from_the_simulators_pccs(sim, report, pccs_url):
    q = parse_quote(report["intel_quote"])
    col = fetch_collateral_sync(q, pccs_url)
    assert col.source == f"pccs:{pccs_url}" and col.fmspc == "00906ed50000"
    root = sim.state.tdx.trust_root
    direct = dcap_qvl.verify_with_root_ca(q.raw, col.dcap(), root.der, int(time.time()))
    assert direct.status == "UpToDate"
    res = verify_with_collateral(q, col, root=root)
    checks = judge(q, res, TdxPolicy(trust_root=root))
    assert [c.status for c in checks] == [Status.PASS, Status.PASS]
    verdict = Verdict(verify_quote_offline(q, root=root).checks() + checks
                      + [check_event_log(q, report["event_log"]),
                         check_compose_hash(q, report["event_log"], info=report["info"])])
    assert verdict.status == "verified", verdict.summary()


def test_against_intels_root_dcap_fails_and_says_simulated_root(report, pccs_url):
    q = parse_quote(report["intel_quote"])
    col = fetch_collateral_sync(q, pccs_url)
    res = verify_with_collateral(q, col)  # Intel's pinned root
    assert res.status is None and not res.expired
    check = judge(q, res)[0]
    assert check.status is Status.FAIL and "simulated root" in check.reason


def test_event_log_info_and_dstack_facts(report):
    q = parse_quote(report["intel_quote"])
    assert check_event_log(q, report["event_log"]).status is Status.PASS
    facts = derive(report["event_log"], info=report["info"], vm_config=report["vm_config"])
    assert facts.compose_hash == facts.app_compose_sha256
    assert facts.app_id == report["info"]["app_id"]
    assert facts.audit["images_not_pinned"] == [] and not facts.audit["ssh_keys_injectable"]
    assert facts.audit["os_image_is_dev"] is False


def test_pccs_endpoint_refuses_unknown_fmspc(pccs_url):
    r = httpx.get(pccs_url + "/tdx/certification/v4/tcb", params={"fmspc": "B0C06F000000"})
    assert r.status_code == 404 and "00906ED50000" in r.text


def test_simulated_collateral_expires_like_intels():
    tdx = SimulatedTdx(seed=3, now=1_800_000_000)
    q = parse_quote(tdx.attest(bytes(64)).quote)
    start, end = tdx.collateral_window
    inside = verify_with_collateral(q, tdx.collateral(), at=start + 3600, root=tdx.trust_root)
    assert inside.status == "UpToDate"
    late = verify_with_collateral(q, tdx.collateral(), at=end + 3600, root=tdx.trust_root)
    assert late.expired and judge(q, late)[0].status is Status.SKIPPED


def test_same_seed_same_platform_and_each_quote_is_fresh():
    a, b = SimulatedTdx(seed=11), SimulatedTdx(seed=11)
    assert a.rtmrs == b.rtmrs and a.quote(bytes(64))[700:] == b.quote(bytes(64))[700:]  # same QE and chain
    other = SimulatedTdx(seed=12)
    assert other.rtmrs != a.rtmrs
    # One simulated root for every seed and process (bundles re-verify offline), as Intel has one root.
    assert other.trust_root.der == a.trust_root.der == simulated_root().der
    q1, q2 = a.quote(b"\x01" * 64), a.quote(b"\x02" * 64)
    assert q1[:568] == q2[:568] and q1[568:632] != q2[568:632]
    with pytest.raises(ValueError):
        a.quote(bytes(65))


def test_quote_generation_is_fast():
    tdx = SimulatedTdx(seed=4)
    start = time.perf_counter()
    for i in range(50):
        tdx.attest(i.to_bytes(64, "big"))
    assert (time.perf_counter() - start) / 50 < 0.01


def test_tampered_simulated_quote_fails_even_under_the_simulated_root():
    tdx = SimulatedTdx(seed=5)
    raw = bytearray(tdx.quote(bytes(64)))
    raw[600] ^= 1
    result = verify_quote_offline(bytes(raw), root=tdx.trust_root)
    assert [s.name for s in result.failed] == ["quote_signature"]


def test_simulated_root_is_not_intels():
    assert SimulatedTdx(seed=6).trust_root.key_sha256 != TrustRoot.intel().key_sha256
