"""The whole ACI flow as `phalanb demo` runs it (Session.chat_and_verify against the simulated gateway): verified
with the issue's check ids; each simulator fault fails exactly its own link and blames nothing else; the audit
bundle (schema 2) re-verifies offline, and editing any byte of its evidence is caught."""

import base64
import json

import pytest

from phalanb.vllm.signatures import fetch_signature
from phalanb.audit.bundle import load_bundle, parse_bundle, reverify
from phalanb.session import Session, Settings
from phalanb.sim import FAULTS, SimConfig, Simulator

ISSUE_IDS = ("aci.keyset_digest", "aci.report_data", "aci.nonce_fresh", "aci.keyset_expiry", "aci.provenance",
             "receipt.signature", "receipt.keyset", "receipt.request_hash", "receipt.response_hash",
             "receipt.upstream", "session.id", "session.evidence_digest", "session.claims",
             "tdx.quote_signature", "tdx.pck_chain", "tdx.tcb_status", "app.compose_hash",
             "upstream.tdx.quote_signature", "upstream.gpu.evidence_signature", "upstream.nras.result")

# fault → the checks it must fail (and no other check may fail)
OWN_LINK = {
    "aci_tamper_response": {"receipt.response_hash"},
    "aci_tamper_receipt": {"receipt.signature"},
    "aci_receipt_other_keyset": {"receipt.signature", "receipt.keyset"},
    "aci_rewrite_request": set(),  # a service-side rewrite is shown, not failed: receipt.rewrite warns
    "aci_upstream_failed": {"receipt.upstream"},
    "aci_session_expired": {"session.window"},
    "aci_edit_session": {"session.id"},
    "aci_expired_keyset": {"aci.keyset_expiry"},
    "aci_ignore_nonce": {"aci.report_data", "aci.nonce_fresh"},
    "aci_tls_key_not_in_keyset": {"channel.tls_spki"},
}


SHAPES = ("v3", "aug-2026", "preview-2026-06")


def _verify(shape="aug-2026", **config):
    https = config.pop("https", False)
    with Simulator(SimConfig(seed=21, ttft_ms=0, tokens_per_second=0, protocol="aci", aci_shape=shape, https=https,
                             **config)) as sim:
        settings = Settings(base_url=sim.base_url, model=sim.model, trust="simulated",
                            ca_pem=sim.ca_pem if https else None)
        with Session(settings) as session:
            return session.chat_and_verify("Which link do you break?", max_tokens=6)


@pytest.fixture(scope="module")
def clean():
    with Session(Settings(protocol="aci", sim_options={"aci_shape": "aug-2026"})) as session:
        yield session.chat_and_verify("Verify me through the gateway.", max_tokens=8)


def test_the_gateway_flow_is_verified_with_the_issue_check_ids(clean):
    v = clean.verdict
    assert v.status == "verified", v.table()
    for cid in ISSUE_IDS:
        assert v[cid].status.value in ("pass", "warning"), (cid, v[cid].reason)
    assert v["receipt.rewrite"].status.value == "pass"


def test_every_aci_fault_is_covered_here():
    assert {f for f in FAULTS if f.startswith("aci_")} == set(OWN_LINK)


def test_the_default_v3_gateway_flow_is_verified():
    with Session(Settings(protocol="aci")) as session:
        result = session.chat_and_verify("Verify me through the v3 gateway.", max_tokens=8)
    v = result.verdict
    assert v.status == "verified", v.table()
    assert v["aci.shape"].evidence["shape"] == "v3"
    for cid in ("aci.keyset_b64", "aci.tee_type", *ISSUE_IDS):
        assert v[cid].status.value in ("pass", "warning"), (cid, v[cid].reason)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("fault", sorted(OWN_LINK))
def test_each_fault_fails_exactly_its_own_link(fault, shape):
    result = _verify(shape, faults={fault}, https=fault == "aci_tls_key_not_in_keyset")
    failed = {c.id for c in result.verdict.failed}
    assert failed == OWN_LINK[fault], result.verdict.table()
    if fault == "aci_rewrite_request":
        rewrite = result.verdict["receipt.rewrite"]
        assert rewrite.status.value == "warning"
        assert rewrite.evidence["received"] != rewrite.evidence["forwarded"]  # both hashes shown


def test_the_bundle_reverifies_offline_and_the_recorded_verdict_is_not_believed(clean, tmp_path):
    path = clean.save(tmp_path / "aci.phalanb.json")
    data = json.loads(path.read_text())
    assert data["schema_version"] == 2 and data["protocol"] == "aci" and data["signature"] is None
    again = reverify(load_bundle(path), trust="simulated")
    assert again.verdict.status == "verified" and again.same, again.explain()
    # Production trust never accepts simulator evidence, and says how to check it as such.
    assert reverify(load_bundle(path)).verdict.status == "failed"


@pytest.mark.parametrize("part, check", [("receipt_b64", "receipt.signature"), ("report_b64", "aci.keyset_digest")])
def test_an_edited_byte_of_the_bundled_evidence_is_caught(clean, part, check):
    data = clean.bundle().to_dict()
    raw = bytearray(base64.b64decode(data["aci"][part]))
    at = raw.index(b'"sha256:') + 10  # a hex digit inside a digest: still valid JSON, no longer what was signed
    raw[at] = ord("0") if raw[at] != ord("0") else ord("1")
    data["aci"][part] = base64.b64encode(bytes(raw)).decode()
    data["verdict"]["status"] = "verified"
    verdict = reverify(parse_bundle(data), trust="simulated").verdict
    assert verdict.status == "failed" and verdict[check].status.value == "fail"


def test_an_edited_exact_byte_of_the_reply_fails_the_response_hash(clean):
    data = clean.bundle().to_dict()
    body = bytearray(base64.b64decode(data["exchange"]["response_b64"]))
    body[-20] ^= 0x01
    data["exchange"]["response_b64"] = base64.b64encode(bytes(body)).decode()
    verdict = reverify(parse_bundle(data), trust="simulated").verdict
    assert {c.id for c in verdict.failed} == {"receipt.response_hash"}


def test_an_old_chat_record_gets_a_sentence_not_a_crash():
    from phalanb.errors import ParseError

    with pytest.raises(ParseError, match="older `phalanb chat --save`"):
        parse_bundle({"kind": "phalanb.exchange", "version": 1})


def test_the_old_flow_against_the_gateway_is_never_proof_about_the_model():
    # What an older phalanb (or a user of verify_exchange) does against today's Redpill: /v1/signature and
    # /v1/attestation/report. Both now describe the gateway; the verdict says so and cannot be "verified".
    from phalanb.wire.client import Client
    from phalanb.policy import Policy
    from phalanb.gateway import verify_exchange

    with Simulator(SimConfig(seed=5, ttft_ms=0, tokens_per_second=0, protocol="aci", aci_shape="aug-2026")) as sim:
        with Client(base_url=sim.base_url, model=sim.model) as c:
            ex = c.chat("the old way", max_tokens=4)
            sig = fetch_signature(c, ex.chat_id)
            att = c.attestation(signing_address=sig.signing_address)
    v = verify_exchange(ex, sig, att.report, nonce=att.nonce, policy=Policy(trust="simulated"))
    assert v.status == "incomplete"
    assert v["legacy.gateway"].status.value == "warning" and "GATEWAY, not the model" in v["legacy.gateway"].reason
    assert v["legacy.signer_bound"].status.value == "skipped" and "/v1/aci/attestation" in v["legacy.signer_bound"].reason
    assert v["legacy.text"].status.value == "pass" and v["request.hash"].status.value == "pass"
    assert not any(c.id.startswith(("tdx.", "gpu.")) and c.passed for c in v)  # nothing about the model's TEE


def test_the_trust_chain_widget_draws_the_gateway_chain(clean):
    from phalanb.widgets.chain import chain_html, link_statuses

    links = link_statuses(clean.verdict)
    assert set(links) >= {"request", "response", "receipt", "keyset", "report_data", "quote", "tcb", "app",
                          "upstream", "session", "model"}
    # over plain http no TLS key is observed: channel.tls_spki is skipped (optional), and its link is drawn as not
    # shown, never as held; every other link held
    assert links.pop("channel") == "skipped", links
    assert all(s in ("pass", "warning") for s in links.values()), links
    assert "receipt → keyset key" in chain_html(clean.verdict)


def test_a_broken_link_lights_up_in_the_chain():
    from phalanb.widgets.chain import link_statuses

    links = link_statuses(_verify(faults={"aci_edit_session"}).verdict)
    assert links["session"] == "fail" and links["receipt"] == "pass" and links["model"] == "skipped"


def test_a_batch_audit_verifies_aci_bundles_beside_the_old_ones(clean, tmp_path):
    from phalanb.audit.batch import audit

    clean.save(tmp_path / "aci.phalanb.json")
    data = clean.bundle().to_dict()
    raw = bytearray(base64.b64decode(data["exchange"]["response_b64"]))
    raw[-20] ^= 1
    data["exchange"]["response_b64"] = base64.b64encode(bytes(raw)).decode()
    (tmp_path / "aci-tampered.phalanb.json").write_text(json.dumps(data))
    df = audit([tmp_path], progress=False, trust="simulated").set_index("source")
    assert df.loc[str(tmp_path / "aci.phalanb.json"), "verdict"] == "verified"
    row = df.loc[str(tmp_path / "aci-tampered.phalanb.json")]
    assert row["verdict"] == "failed" and row["failing"] == "receipt.response_hash"


def test_an_e2ee_v3_stream_with_a_keepalive_comment_is_verified():
    # The comment passes unsealed (ACI-v3.md §8) and is hashed with the rest of the stream.
    with Session(Settings(protocol="aci", sim_options={"aci_keepalive": True})) as session:
        result = session.chat_and_verify("Seal me.", max_tokens=6, e2ee=True)
    assert result.exchange.response_bytes.startswith(b": PROCESSING\n\ndata: {\"sealed_b64\":")
    assert result.verdict.status == "verified", result.verdict.table()
    assert all(result.verdict[c].passed for c in ("e2ee.model_key", "e2ee.request_sealed", "e2ee.open"))
