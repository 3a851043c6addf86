"""Rule: the auditor's service profile says what they talk to; evidence that does not fit it fails, naming the
mismatch, and a deployment phalanb cannot place is incomplete (issue 19, item 4)."""

from __future__ import annotations

import pytest

import acikit as k
from phalanb.aci import verify_aci_report
from phalanb.gateway import verify_aci
from phalanb.errors import InputError
from phalanb.policy import Policy
from phalanb.services import ServiceProfile, profile, profile_for_url, profiles
from phalanb.session import _service_kw
from phalanb.verdict import Status

SIM_KMS = k.KMS_ROOT.public_key.format(compressed=True).hex()


@pytest.fixture(scope="module")
def collateral():
    return k.sim_collateral()


def _checks(att):
    return {c.id: c for c in att.checks}


def test_any_app_on_an_allow_listed_kms_root_does_not_verify_as_the_gateway(collateral):
    # The simulated app's keys descend from an allow-listed KMS root, so custody holds — but it is not the app the
    # Redpill/Phala gateway profile pins (fdb7a14e…): it must not verify as the gateway.
    policy = Policy(trust="simulated", service="redpill-aci", aci_kms_roots=(SIM_KMS,))
    att = verify_aci_report(k.sim_report(), nonce=k.NONCE, policy=policy, collateral=collateral, at=k.AT)
    c = _checks(att)
    assert c["aci.key_custody"].status is Status.PASS
    assert c["service.profile"].status is Status.FAIL and "fdb7a14e5a6675f752e2cb69c9067a98ca402918" in \
        c["service.profile"].reason
    assert att.keyset is None          # a keyset of another app is never established for the gateway
    sid, sbytes = k.upstream_session()
    v = verify_aci(None, receipt=k.sign_receipt(k.cite(k.receipt_doc(), sid)), report=k.sim_report(), nonce=k.NONCE,
                   sessions={sid: sbytes}, policy=policy, collateral=collateral, at=k.AT, request_bytes=k.REQUEST,
                   response_bytes=k.RESPONSE)
    assert v.status == "failed" and v["receipt.signature"].status is Status.SKIPPED


def test_the_gateway_app_its_profile_pins_fits_it(collateral):
    sim_app = k.sim_tdx().app_id
    gateway = ServiceProfile(name="my-gateway", title="my gateway", protocols=("aci",), shapes=("current",),
                             upstream="required", kms_roots=(SIM_KMS,), app_ids=(sim_app,))
    att = verify_aci_report(k.sim_report(), nonce=k.NONCE, policy=Policy(trust="simulated", service=gateway),
                            collateral=collateral, at=k.AT)
    c = _checks(att)
    assert c["service.profile"].status is Status.PASS and sim_app in c["service.profile"].reason
    assert c["aci.key_custody"].status is Status.PASS      # the profile's KMS roots are the allow-list
    assert att.keyset is not None


def test_a_profile_for_another_shape_fails_naming_it(collateral):
    preview_only = ServiceProfile(name="preview-gw", title="a preview gateway", protocols=("aci",),
                                  shapes=("preview",))
    att = verify_aci_report(k.sim_report(), nonce=k.NONCE, policy=Policy(trust="simulated", service=preview_only),
                            collateral=collateral, at=k.AT)
    c = _checks(att)["service.profile"]
    assert c.status is Status.FAIL and "expects shape preview" in c.reason and "current" in c.reason


def test_a_model_server_profile_refuses_an_aci_gateway(collateral):
    att = verify_aci_report(k.sim_report(), nonce=k.NONCE,
                            policy=Policy(trust="simulated", service="near-ai-cloud"), collateral=collateral, at=k.AT)
    c = _checks(att)["service.profile"]
    assert c.status is Status.FAIL and "answers vllm-proxy" in c.reason and att.keyset is None


def test_the_real_gateway_report_fits_the_redpill_profile_by_its_app_id_and_kms_root():
    att = verify_aci_report(k.REAL.read_bytes(), nonce=k.REAL_NONCE, policy=Policy(service="redpill-aci"),
                            at=k.REAL_AT)
    c = _checks(att)
    assert c["service.profile"].status is Status.PASS and "fdb7a14e" in c["service.profile"].reason
    assert c["aci.key_custody"].evidence["allowed_roots"] == [k.REAL_KMS_ROOT]


def test_without_a_profile_a_real_gateway_is_placed_only_by_its_attested_app_id():
    att = verify_aci_report(k.REAL.read_bytes(), nonce=k.REAL_NONCE, policy=Policy(), at=k.REAL_AT)
    c = _checks(att)["service.profile"]
    assert c.status is Status.PASS and "redpill-aci" in c.reason and "attested app id" in c.reason


def test_without_a_profile_an_unknown_production_deployment_is_incomplete():
    class Unplaced:
        service, expected = None, {}

    from phalanb.services import profile_check

    c = profile_check(Unplaced(), protocol="aci", shape="current", app_id="22" * 20, compose_hash=None)
    assert c.status is Status.SKIPPED and "pin its compose" in c.reason and "choose a profile" in c.reason


def test_the_host_picks_the_profile_only_when_unambiguous():
    assert profile_for_url("https://api.redpill.ai/v1").name == "redpill-aci"
    assert profile_for_url("https://inference.phala.com/v1").name == "redpill-aci"
    assert profile_for_url("https://cloud-api.near.ai/v1").name == "near-ai-cloud"
    assert profile_for_url("https://gemma4-31b-1.inf10.tinfoil.sh").name == "tinfoil"
    assert profile_for_url("https://api.red-pill.ai/v1") is None          # not listed by any source: --service
    assert profile_for_url("https://example.com/v1") is None
    assert profile_for_url("http://127.0.0.1:8000/v1").name == "simulator"
    # A session never takes a profile for other roots than its trust from the host alone.
    assert _service_kw(None, "http://127.0.0.1:8000/v1", "production") == {}
    assert _service_kw(None, "https://api.redpill.ai/v1", "production") == {"service": "redpill-aci"}
    assert _service_kw("venice", "https://api.redpill.ai/v1", "production") == {"service": "venice"}


def test_every_shipped_profile_names_its_sources():
    names = set(profiles())
    assert {"redpill-aci", "phala-direct", "near-ai-cloud", "venice", "chutes", "tinfoil", "simulator"} <= names
    for p in profiles().values():
        assert p.sources, p.name
        assert p.app_ids or p.compose_hashes or p.compose_source, p.name


def test_the_simulator_profile_needs_simulated_trust():
    with pytest.raises(InputError, match="simulated"):
        Policy(service="simulator")
    assert Policy(trust="simulated").service is profile("simulator")
    with pytest.raises(InputError, match="no service profile"):
        Policy(service="nobody")


def test_the_profile_decides_upstream_never_the_report():
    assert Policy(service="redpill-aci").upstream_expected
    assert not Policy(trust="simulated", service="simulator-direct").upstream_expected
    assert Policy().upstream_expected and Policy().aci_require_upstream
    # Real Redpill marks upstream.verified required:false unless the request asks (ACI.md §5): its profile accepts a
    # verified upstream either way; an explicit policy still may demand the flag.
    assert not Policy(service="redpill-aci").aci_require_upstream
    assert Policy(service="redpill-aci", aci_require_upstream=True).aci_require_upstream


def test_a_recorded_policy_names_its_profile_but_a_misfit_name_is_dropped():
    assert Policy.from_dict(Policy(service="venice").to_dict()).service is profile("venice")
    assert Policy.from_dict({"trust": "production", "service": "simulator"}).service is None
    assert Policy.from_dict({"trust": "production", "service": "nobody"}).service is None
