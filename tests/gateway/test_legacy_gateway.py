"""Reseller wrappers verified for what they prove (issue 20 item 3), fed by the real capture of the Phala gateway's
legacy report as Venice serves it (fixtures/field/venice-aci-gateway-glm52-2026-07, SOURCE.md "What phalanb should
conclude"): quote valid and UpToDate, event log replays, legacy binding (address ‖ 12 zero bytes ‖ client nonce),
keyset endorsement valid, the keyset NOT established, GPU evidence valid but not this VM's, a dev OS image named."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from phalanb.cli import main
from phalanb.gateway import verify_any_report, verify_legacy_gateway_report
from phalanb.policy import Policy
from phalanb.verdict import Status

AT = 1783960850  # the capture time (SOURCE.md)


@pytest.fixture(scope="module")
def venice(fixtures) -> Path:
    return fixtures / "field" / "venice-aci-gateway-glm52-2026-07"


@pytest.fixture(scope="module")
def doc(venice):
    return json.loads((venice / "attestation_report.json").read_text())


@pytest.fixture(scope="module")
def nonce(venice) -> bytes:
    return bytes.fromhex((venice / "client_nonce.txt").read_text().strip())


@pytest.fixture(scope="module")
def verdict(venice, doc, nonce):
    return verify_legacy_gateway_report(doc, nonce=nonce, collateral=json.loads((venice / "collateral.json")
                                                                              .read_text()), at=AT)


def st(v, cid):
    return v[cid].status.value


def test_the_gateways_own_tee_verifies_quote_tcb_and_event_log(verdict):
    for cid in ("tdx.quote_signature", "tdx.qe_report", "tdx.pck_chain", "tdx.debug_disabled", "tdx.event_log"):
        assert st(verdict, cid) == "pass", (cid, verdict[cid].reason)
    assert st(verdict, "tdx.tcb_status") == "pass" and "UpToDate" in verdict["tdx.tcb_status"].reason
    assert "30 events" in verdict["tdx.event_log"].reason


def test_the_legacy_binding_of_the_signing_key_and_our_nonce_holds(verdict):
    assert st(verdict, "legacy.report_data") == "pass" and st(verdict, "legacy.nonce_fresh") == "pass"
    assert st(verdict, "report.signing_key") == "pass"
    assert verdict["legacy.report_data"].evidence["signing_address"] == "0x79a5061efe5a46b0d1f33b11cf1c5adbedae6b79"


def test_the_june_keyset_endorsement_verifies_but_the_keyset_is_not_established(verdict):
    for cid in ("aci.keyset_digest", "aci.workload_id", "aci.keyset_endorsement"):
        assert st(verdict, cid) == "pass", cid
    c = verdict["aci.keyset_established"]
    assert c.status is Status.WARNING and "NOT established" in c.reason
    assert c.evidence["statement_report_data"] != c.evidence["quote_report_data"]


def test_gpu_evidence_is_checked_but_not_this_vms_when_num_gpus_is_0(verdict):
    assert st(verdict, "gpu.evidence_signature") == "pass" and st(verdict, "gpu.nonce") == "pass"
    assert "(not this VM's)" in verdict["gpu.evidence_signature"].reason
    assert not verdict["gpu.evidence_signature"].required  # a pass proves nothing about this VM
    scope = verdict["gpu.scope"]
    assert scope.status is Status.WARNING and "NOT this VM's" in scope.reason
    assert "gpu.count" not in {c.id for c in verdict.checks}


def test_a_forged_gpu_signature_still_fails_even_when_the_gpus_are_not_this_vms(venice, doc, nonce):
    bad = copy.deepcopy(doc)
    payload = json.loads(bad["nvidia_payload"])
    ev = payload["evidence_list"][0]["evidence"]
    payload["evidence_list"][0]["evidence"] = ev[:-8] + ("0" if ev[-8] != "0" else "1") + ev[-7:]
    bad["nvidia_payload"] = json.dumps(payload)
    v = verify_legacy_gateway_report(bad, nonce=nonce, at=AT)
    assert st(v, "gpu.evidence_signature") == "fail" and v["gpu.evidence_signature"].required
    assert v.status == "failed"


def test_a_development_os_image_is_named_and_fails_the_default_policy(verdict):
    c = verdict["tdx.os_image"]
    assert c.status is Status.FAIL and "dstack-dev-0.5.9-de9c74f0" in c.reason
    assert verdict.status == "failed" and "tdx.os_image" in {x.id for x in verdict.failed}


def test_the_resellers_verdict_fields_are_shown_as_its_claims(verdict):
    c = verdict["reseller.claims"]
    assert c.status is Status.WARNING and not c.required
    assert c.evidence["claims"]["verified"] is True and c.evidence["claims"]["tee_provider"] == "phala"
    assert "server_verification" in c.evidence["claims"]


def test_the_result_is_scoped_to_the_gateway_never_the_models_tee(verdict):
    assert "GATEWAY" in verdict["scope"].reason and "NOT the model's TEE" in verdict["scope"].reason
    assert verdict["report.shape"].evidence["shape"] == "reseller-aci-gateway"


def test_a_reseller_saying_verified_changes_nothing(venice, doc, nonce, verdict):
    """What would a liar send? verified:true and a glowing server_verification are claims, never evidence."""
    liar = dict(doc, verified=True, server_verification={"all": "passed", "tdx": True})
    v = verify_legacy_gateway_report(liar, nonce=nonce, collateral=json.loads((venice / "collateral.json")
                                                                           .read_text()), at=AT)
    assert {c.id: c.status for c in v.checks if c.id != "reseller.claims"} == \
        {c.id: c.status for c in verdict.checks if c.id != "reseller.claims"}


def test_another_nonce_fails_freshness(doc):
    v = verify_legacy_gateway_report(doc, nonce=bytes(32), at=AT)
    assert st(v, "legacy.nonce_fresh") == "fail" and st(v, "legacy.report_data") == "pass"


def test_a_swapped_signing_key_fails_the_binding(doc, nonce):
    bad = dict(doc, signing_address="0x" + "11" * 20, signing_public_key=None)
    v = verify_legacy_gateway_report(bad, nonce=nonce, at=AT)
    assert st(v, "legacy.report_data") == "fail"


def test_phalanb_report_verifies_it_instead_of_refusing_it(venice, capsys):
    code = main(["report", str(venice / "attestation_report.json"), "--nonce",
                 (venice / "client_nonce.txt").read_text().strip(), "--collateral", str(venice / "collateral.json"),
                 "--at", str(AT)])
    out, err = capsys.readouterr()
    assert code == 1, out  # the gateway's TEE verifies; the dev OS image fails it
    assert "use phalanb report (ACI)" not in out + err
    assert "legacy.nonce_fresh" in out and "tdx.os_image" in out and "served by a reseller" in err


def test_verify_any_report_routes_it_the_same_way(venice, doc, nonce, verdict):
    v = verify_any_report(doc, nonce=nonce, collateral=json.loads((venice / "collateral.json").read_text()), at=AT)
    assert [(c.id, c.status) for c in v.checks] == [(c.id, c.status) for c in verdict.checks]


def test_under_the_gateways_profile_its_app_id_places_it(venice, doc, nonce):
    v = verify_legacy_gateway_report(doc, nonce=nonce, at=AT, policy=Policy(service="redpill-aci"))
    assert st(v, "service.profile") == "pass" and "fdb7a14e" in v["service.profile"].reason


def test_under_the_resellers_profile_the_relayed_gateway_is_placed_by_its_own(venice, doc, nonce):
    v = verify_legacy_gateway_report(doc, nonce=nonce, at=AT, policy=Policy(service="venice"))
    c = v["service.profile"]
    assert c.status.value == "pass" and "relays" in c.reason and c.evidence["relayed_by"] == "venice"
    # Another reseller's profile that does not say it relays the gateway: the app id is another service's.
    other = verify_legacy_gateway_report(doc, nonce=nonce, at=AT, policy=Policy(service="phala-direct"))
    assert other["service.profile"].status.value == "fail"


@pytest.mark.parametrize("junk", [b"", b"{", b"[]", "{\"api_version\":\"aci/1\",\"signing_address\":1,"
                                  "\"intel_quote\":2,\"tee_provider\":3}".encode()])
def test_bad_input_gives_phalanb_errors_or_failed_checks_never_a_crash(junk):
    from phalanb.errors import PhalanbError

    try:
        v = verify_any_report(junk)
    except PhalanbError as exc:
        assert str(exc)
    else:
        assert v.status == "failed"
