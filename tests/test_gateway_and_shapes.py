"""Issue 12 items 6 and 8: the NEAR AI Cloud gateway is a link verified like any TD (``gateway.*``), and every
shape met in the field is named for what it is — an unknown object is an error naming its keys, never "legacy".

Fed by the real captures in ``fixtures/field`` and ``fixtures/reports``; tampering works on in-memory copies."""

from __future__ import annotations

import base64
import copy
import gzip
import hashlib
import json

import pytest

from phalanb.cli import main
from phalanb.errors import ParseError, UnsupportedError
from phalanb.policy import Policy
from phalanb.vllm.report import merge_chutes_instances, parse_report
from phalanb.vllm.verify import verify_report


def _json(path):
    return json.loads(path.read_text())


def _nonce(path):
    return bytes.fromhex(path.read_text().strip())


@pytest.fixture(scope="module")
def gptoss(fixtures):
    d = fixtures / "field" / "nearai-gateway-gptoss-2026-04"
    return _json(d / "attestation_report.json"), _nonce(d / "client_nonce.txt")


@pytest.fixture(scope="module")
def nearcloud(fixtures):
    d = fixtures / "reports" / "nearcloud-2026"
    return _json(d / "attestation_report.json"), bytes.fromhex(_json(d / "manifest.json")["nonce_hex"])


def statuses(verdict, prefix="gateway."):
    return {c.id: c.status.value for c in verdict if c.id.startswith(prefix)}


# -- item 6: the gateway is a link ------------------------------------------------------------------------------

def test_gateway_quote_binds_its_address_and_the_client_nonce(gptoss):
    report, nonce = gptoss
    v = verify_report(report, nonce=nonce)
    got = statuses(v)
    assert got["gateway.report_data"] == "pass" and got["gateway.nonce_fresh"] == "pass"
    for cid in ("gateway.tdx.quote_signature", "gateway.tdx.qe_report", "gateway.tdx.pck_chain",
                "gateway.tdx.debug_disabled", "gateway.tdx.event_log", "gateway.app.compose_hash"):
        assert got[cid] == "pass", cid
    assert v["gateway.report_data"].evidence["derivation"] == "signing address right-padded to 32 bytes"
    assert v.status != "failed"


def test_gateway_with_another_nonce_is_not_fresh(gptoss):
    report, nonce = gptoss
    v = verify_report(report, nonce=bytes(32))
    assert v["gateway.nonce_fresh"].status.value == "fail" and v.status == "failed"


def test_a_16_byte_zero_gateway_quote_fails_the_verdict(nearcloud):
    report, nonce = nearcloud
    forged = copy.deepcopy(report)
    forged["gateway_attestation"]["intel_quote"] = "00" * 16
    v = verify_report(forged, nonce=nonce)
    assert v["gateway.tdx.quote_signature"].status.value == "fail"
    assert v.status == "failed"


def test_a_gateway_quote_of_another_td_does_not_bind_the_gateway_key(nearcloud):
    report, nonce = nearcloud
    forged = copy.deepcopy(report)
    # A genuine quote, but the model node's: it vouches for another key.
    forged["gateway_attestation"]["intel_quote"] = report["model_attestations"][0]["intel_quote"]
    v = verify_report(forged, nonce=nonce)
    assert v["gateway.tdx.quote_signature"].status.value == "pass"
    assert v["gateway.report_data"].status.value == "fail" and v.status == "failed"


def test_gateway_tls_fingerprint_is_part_of_the_binding(nearcloud):
    report, nonce = nearcloud
    assert verify_report(report, nonce=nonce)["gateway.report_data"].status.value == "pass"
    forged = copy.deepcopy(report)
    forged["gateway_attestation"]["tls_cert_fingerprint"] = "ab" * 32
    v = verify_report(forged, nonce=nonce)
    assert v["gateway.report_data"].status.value == "fail"
    assert "TLS" in v["gateway.report_data"].reason


def test_gateway_event_log_must_replay_to_its_quote(nearcloud):
    report, nonce = nearcloud
    forged = copy.deepcopy(report)
    log = json.loads(forged["gateway_attestation"]["event_log"])
    entry = next(e for e in log if e.get("event") == "compose-hash")
    entry["event_payload"] = "00" * 32
    entry["digest"] = ""
    forged["gateway_attestation"]["event_log"] = json.dumps(log)
    v = verify_report(forged, nonce=nonce)
    assert v["gateway.tdx.event_log"].status.value == "fail" and v.status == "failed"


def test_a_gateway_report_without_its_gateway_attestation_is_incomplete(nearcloud):
    report, nonce = nearcloud
    stripped = {k: v for k, v in report.items() if k != "gateway_attestation"}
    v = verify_report(stripped, nonce=nonce)
    assert v["gateway.quote"].status.value == "skipped" and v["gateway.quote"].required
    assert v.status != "verified"


def test_a_gateway_attestation_that_is_not_an_object_is_malformed(nearcloud):
    report, _ = nearcloud
    with pytest.raises(ParseError) as info:
        parse_report({**report, "gateway_attestation": "00" * 16})
    assert info.value.field == "gateway_attestation"


def test_expected_measurements_of_the_model_are_not_applied_to_the_gateway(nearcloud):
    report, nonce = nearcloud
    model_mrtd = parse_report(report).nodes[0]
    from phalanb.tdx import parse_quote

    mr_td = parse_quote(model_mrtd.intel_quote).body.mr_td.hex()
    v = verify_report(report, nonce=nonce, policy=Policy(expected={"mr_td": mr_td}))
    assert v["policy.measurements"].status.value == "pass"
    assert v.get("gateway.policy.measurements") is None


def test_gateway_collateral_is_given_separately(fixtures, tmp_path, gptoss, capsys):
    # The gateway runs on another platform (FMSPC) than the model node: its TCB needs its own collateral, and
    # collateral for another platform is not taken as a verdict on this one.
    report, nonce = gptoss
    col = _json(fixtures / "field" / "chutes-direct-glm5-2026-06" / "collateral.json")
    v = verify_report(report, nonce=nonce, gateway_collateral=col, at=1776729600)
    tcb = v["gateway.tdx.tcb_status"]
    assert tcb.status.value == "skipped" and "FMSPC 90c06f000000" in tcb.reason and "b0c06f000000" in tcb.reason
    f, c = tmp_path / "r.json", tmp_path / "col.json"
    f.write_text(json.dumps(report))
    c.write_text(json.dumps(col))
    code = main(["report", str(f), "--nonce", nonce.hex(), "--gateway-collateral", str(c), "--at", "1776729600",
                 "--json"])
    out = {x["id"]: x for x in json.loads(capsys.readouterr().out)["checks"]}
    assert code == 3 and out["gateway.report_data"]["status"] == "pass"
    assert "FMSPC" in out["gateway.tdx.tcb_status"]["reason"]


# -- item 8: shapes are named -----------------------------------------------------------------------------------

def test_an_unknown_object_is_an_error_naming_its_keys():
    with pytest.raises(UnsupportedError) as info:
        parse_report({"hello": 1, "world": [2]})
    assert "'hello'" in str(info.value) and "'world'" in str(info.value)
    with pytest.raises(UnsupportedError):
        verify_report({"signing_address": "0x" + "11" * 20})


def test_an_unknown_shape_exits_2_from_phalanb_report(tmp_path, capsys):
    f = tmp_path / "odd.json"
    f.write_text(json.dumps({"quote_b64": "AAAA", "sig": "00"}))
    assert main(["report", str(f)]) == 2
    err = capsys.readouterr().err
    assert "'quote_b64'" in err and "'sig'" in err


def test_the_legacy_boot_time_report_is_recognised_by_its_quote(fixtures):
    d = fixtures / "reports" / "private-ml-sdk-2025-01"
    report = parse_report({"intel_quote": (d / "intel_quote.hex").read_text().strip(),
                           "nvidia_payload": (d / "nvidia_payload.json").read_text()})
    assert report.shape == "legacy"
    with pytest.raises(UnsupportedError):
        parse_report({"nvidia_payload": (d / "nvidia_payload.json").read_text()})


def test_an_aci_gateway_report_points_to_the_aci_verifier():
    with pytest.raises(UnsupportedError,
                       match=r"^an ACI gateway document \(api_version aci/1\), not a model server's report: "
                             r"`phalanb report FILE` and phalanb.gateway.verify_any_report"):
        parse_report({"api_version": "aci/1", "keyset": {}})


@pytest.mark.parametrize("folder, file", [("tinfoil-cloud-sevsnp-2026-06", "tinfoil_attestation.json"),
                                          ("dstack-sevsnp-2026", "sev-snp-attestation.json")])
def test_amd_sev_snp_attestations_are_named_as_such(fixtures, folder, file):
    with pytest.raises(UnsupportedError, match="^an AMD SEV-SNP attestation; phalanb verifies Intel TDX"):
        parse_report((fixtures / "field" / folder / file).read_text())


def test_a_sev_snp_report_given_as_a_quote_is_named_not_called_sgx(fixtures):
    from phalanb.tdx import parse_quote

    doc = _json(fixtures / "field" / "tinfoil-cloud-sevsnp-2026-06" / "tinfoil_attestation.json")
    raw = base64.b64decode(doc["cpu"]["report"])
    with pytest.raises(UnsupportedError, match="^an AMD SEV-SNP attestation; phalanb verifies Intel TDX") as info:
        parse_quote(raw)
    assert "SGX" not in str(info.value)
    with pytest.raises(UnsupportedError, match="SGX enclave quote"):  # a real SGX quote is still named SGX
        parse_quote((fixtures / "tdx" / "dcap-qvl" / "sgx_quote").read_bytes())


def test_tinfoil_v2_body_decompresses_to_the_published_quote(fixtures):
    d = fixtures / "field" / "tinfoil-verifier-tdx-v2"
    report = parse_report((d / "attestation_doc.json").read_text())
    assert report.shape == "tinfoil-v2"
    assert bytes.fromhex(report.nodes[0].intel_quote) == (d / "quote.bin").read_bytes()


@pytest.mark.parametrize("body, why", [
    (base64.b64encode(gzip.compress(bytes(8 << 20))).decode(), "compression bomb"),
    (base64.b64encode(gzip.compress(b"x" * 1000)[:-12]).decode(), "truncated"),
    (base64.b64encode(b"\x1f\x8b\x08\x00garbage-not-deflate").decode(), "not a valid gzip"),
    ("not base64!", "not base64"),
])
def test_tinfoil_bodies_are_decompressed_within_bounds(body, why):
    with pytest.raises(ParseError, match=why) as info:
        parse_report({"format": "https://tinfoil.sh/predicate/tdx-guest/v2", "body": body})
    assert info.value.field == "body"


def test_unknown_tinfoil_formats_are_refused_as_tinfoil():
    with pytest.raises(UnsupportedError, match="Tinfoil"):
        parse_report({"format": "https://tinfoil.sh/predicate/nitro/v9", "body": ""})


@pytest.fixture(scope="module")
def tinfoil_v3(fixtures):
    d = fixtures / "field" / "tinfoil-direct-gemma4-2026-06"
    return _json(d / "tinfoil_attestation.json"), _nonce(d / "client_nonce.txt")


def test_tinfoil_v3_report_data_binds_keys_nonce_and_gpu_evidence(tinfoil_v3):
    doc, nonce = tinfoil_v3
    v = verify_report(doc, nonce=nonce)
    assert v["report.shape"].evidence["shape"] == "tinfoil-v3"
    assert v["report.report_data"].status.value == "pass" and v["report.nonce_fresh"].status.value == "pass"
    assert v["gpu.evidence_signature"].status.value == "pass" and v["gpu.nonce"].status.value == "pass"


def test_tinfoil_v3_with_other_gpu_evidence_does_not_bind(tinfoil_v3, fixtures):
    doc, nonce = tinfoil_v3
    forged = copy.deepcopy(doc)
    forged["gpu"]["evidences"][0]["arch"] = "hopper"  # any change to the GPU evidence changes its hash
    assert verify_report(forged, nonce=nonce)["report.report_data"].status.value == "fail"


def test_tinfoil_v3_with_another_nonce_is_not_fresh(tinfoil_v3):
    doc, nonce = tinfoil_v3
    forged = copy.deepcopy(doc)
    forged["report_data"]["nonce"] = "00" * 32
    v = verify_report(forged, nonce=nonce)
    assert v["report.report_data"].status.value == "fail" and v["report.nonce_fresh"].status.value == "fail"


def test_tinfoil_v3_with_nvswitch_evidence_is_refused_as_tinfoil(tinfoil_v3):
    doc, _ = tinfoil_v3
    with pytest.raises(UnsupportedError, match="NVSwitch"):
        parse_report({**doc, "nvswitch": {"evidences": []}})


@pytest.fixture(scope="module")
def chutes_direct(fixtures):
    d = fixtures / "field" / "chutes-direct-glm5-2026-06"
    return _json(d / "evidence.json"), _json(d / "e2e_instances.json"), _nonce(d / "client_nonce.txt")


def test_chutes_evidence_api_binds_our_nonce_through_the_e2e_key(chutes_direct):
    evidence, instances, nonce = chutes_direct
    merged = merge_chutes_instances(evidence, instances)
    assert parse_report(merged).shape == "chutes-evidence"
    v = verify_report(merged, nonce=nonce, node=0)
    assert v["report.report_data"].status.value == "pass" and v["report.nonce_fresh"].status.value == "pass"
    want = hashlib.sha256((nonce.hex() + merged["evidence"][0]["e2e_pubkey"]).encode()).hexdigest()
    assert v["report.report_data"].evidence["expected"] == want
    assert v["gpu.nonce"].status.value == "pass"  # the GPUs carry the same hash, not the raw client nonce
    other = verify_report(merged, nonce=bytes(32), node=0)
    assert other["report.report_data"].status.value == "fail" and other["report.nonce_fresh"].status.value == "fail"


def test_chutes_evidence_without_e2e_keys_cannot_bind(chutes_direct):
    evidence, _, nonce = chutes_direct
    v = verify_report(evidence, nonce=nonce, node=0)
    assert v["report.report_data"].status.value == "skipped" and "e2e" in v["report.report_data"].reason
    assert v["report.nonce_fresh"].status.value == "skipped"


def test_venice_shape_text_says_what_it_is(fixtures):
    report = parse_report((fixtures / "field" / "venice-qwen35-2026-06" / "attestation_report.json").read_text())
    assert report.shape == "venice" and "Venice" in report.description
    assert report.nodes[0].binding == "address"


def test_venice_own_verified_claim_is_not_believed(fixtures):
    d = fixtures / "field" / "venice-qwen35-2026-06"
    report = _json(d / "attestation_report.json")
    assert report["verified"] is True and report["server_verification"]
    forged = copy.deepcopy(report)
    forged["request_nonce"] = "00" * 32
    v = verify_report(forged, nonce=_nonce(d / "client_nonce.txt"))
    assert v.status == "failed"


@pytest.mark.parametrize("folder, shape", [("nanogpt-chutes-deepseek-2026-03", "chutes"),
                                           ("nanogpt-gateway-glm5-2026-03", "near-cloud-gateway"),
                                           ("nanogpt-tinfoil-llama-2026-03", "tinfoil-v2")])
def test_nanogpt_wrappers_are_recognised_and_their_nonce_ignored(fixtures, folder, shape):
    d = fixtures / "field" / folder
    report = parse_report((d / "attestation_report.json").read_text())
    assert report.shape == shape and report.wrapper == "nanogpt" and "NanoGPT" in report.description
    # The wrapper's nonce echoes the client's; the attested nonce does not.
    assert report.raw["nonce"] == (d / "client_nonce.txt").read_text().strip()
    v = verify_report(report.raw, nonce=_nonce(d / "client_nonce.txt"), node=0)
    assert v["report.nonce_fresh"].status.value != "pass"


def test_nvswitch_evidence_is_refused_as_nvswitch_not_misread(fixtures):
    from phalanb.gpu import parse_files, parse_payload

    d = fixtures / "field" / "nvidia-sdk-nvswitch-ls10"
    for evidence in ("switchAttestationReport.txt", "switchAttestationReportInvalidSignature.txt"):
        with pytest.raises(UnsupportedError, match="NVSwitch") as info:
            parse_files(d / evidence, d / "switchCertChain.txt")
        assert "VBIOS" not in str(info.value)
    with pytest.raises(UnsupportedError, match="NVSwitch"):
        parse_payload((d / "switch_evidence_ls10.json").read_text())
    # The same evidence with its arch removed is still recognised by its certificate chain.
    items = _json(d / "switch_evidence_ls10.json")
    with pytest.raises(UnsupportedError, match="NVSwitch"):
        parse_payload([{k: v for k, v in i.items() if k != "arch"} for i in items])


def test_nvswitch_evidence_in_a_report_is_never_verified_gpu_evidence(fixtures, gptoss):
    report, nonce = gptoss
    items = _json(fixtures / "field" / "nvidia-sdk-nvswitch-ls10" / "switch_evidence_ls10.json")
    forged = copy.deepcopy(report)
    forged["model_attestations"][0]["nvidia_payload"] = json.dumps(
        {"nonce": nonce.hex(), "evidence_list": items, "arch": "LS10"})
    v = verify_report(forged, nonce=nonce)
    assert v["gpu.evidence_signature"].status.value == "skipped" and "NVSwitch" in v["gpu.evidence_signature"].reason
    assert v.status != "verified"


# -- the gateway's own collateral travels with the evidence ------------------------------------------------------

def test_online_evidence_fetches_the_gateway_collateral_too(nearcloud, monkeypatch):
    import phalanb.audit.evidence as evidence
    from phalanb.tdx.verify import pck_extension

    asked = []

    class Fetched:
        def __init__(self, fmspc):
            self.fmspc = fmspc

        def to_dict(self):
            return {"fmspc": self.fmspc}

    def fake(quote, url, timeout, cache):
        asked.append(pck_extension(quote)[0].fmspc.hex())
        return Fetched(asked[-1])

    monkeypatch.setattr(evidence, "_collateral", fake)
    report, nonce = nearcloud
    out = evidence.fetch_online_evidence(report, signing_address=None, nonce=nonce, pccs_url="http://127.0.0.1:9")
    assert out.collateral == {"fmspc": "90c06f000000"} and out.gateway_collateral == {"fmspc": "b0c06f000000"}
    assert not out.problems


def test_a_bundle_keeps_the_gateway_collateral_and_never_a_path(fixtures, nearcloud):
    from phalanb.audit.bundle import make_bundle, parse_bundle, reverify
    from phalanb.vllm.signatures import SignatureRecord

    report, nonce = nearcloud
    vec = _json(fixtures / "field" / "near-docs-sig-qwen35-2026-06" / "signature_vector.json")
    col = _json(fixtures / "field" / "chutes-direct-glm5-2026-06" / "collateral.json")
    b = make_bundle(None, SignatureRecord.from_dict(vec), policy=Policy(), verdict=None, report=report, nonce=nonce,
                    gateway_collateral=col, verified_at=1782698817.0)
    data = json.loads(json.dumps(b.to_dict()))
    again = reverify(parse_bundle(data)).verdict
    assert "FMSPC 90c06f000000" in again["gateway.tdx.tcb_status"].reason  # this collateral was used for the gateway
    data["gateway_collateral"] = "/dev/zero"
    with pytest.raises(ParseError) as info:
        parse_bundle(data)
    assert info.value.field == "gateway_collateral"


def test_a_batch_shares_the_gateway_collateral_with_every_reply(fixtures, nearcloud, tmp_path):
    from phalanb.audit.batch import _attest, load_items, write_batch
    from phalanb.wire.exchange import Exchange
    from phalanb.vllm.signatures import SignatureRecord

    report, nonce = nearcloud
    d = fixtures / "field" / "near-docs-sig-qwen35-2026-06"
    ex = Exchange.from_bytes(request_bytes=(d / "request_body.json").read_bytes(),
                             response_bytes=(d / "response_body.sse").read_bytes())
    sig = SignatureRecord.from_dict(_json(d / "signature_vector.json"))
    col = _json(fixtures / "field" / "chutes-direct-glm5-2026-06" / "collateral.json")
    path = write_batch(tmp_path / "b.jsonl", report=report, nonce=nonce, policy=Policy(), verified_at=1782698817.0,
                       replies=[(ex, sig), (ex, sig)], gateway_collateral=col)
    items = load_items([path])
    assert len(items) == 2 and all(i.gateway_collateral == col for i in items)
    checks = {c.id: c for c in _attest(items[0]).checks}
    assert "FMSPC 90c06f000000" in checks["gateway.tdx.tcb_status"].reason


def test_odd_values_in_the_new_shapes_are_refused_or_skipped_never_a_crash(tinfoil_v3, chutes_direct):
    doc, nonce = tinfoil_v3
    odd = copy.deepcopy(doc)
    odd["gpu"]["evidences"][0]["arch"] = ["HOPPER"]  # unhashable where a string belongs
    verify_report(odd, nonce=nonce)
    odd["gpu"]["evidences"].append(float("nan"))
    assert verify_report(odd, nonce=nonce)["report.report_data"].status.value == "skipped"
    with pytest.raises(UnsupportedError, match="platform"):
        parse_report({**doc, "cpu": {"platform": ["x"] * 1000, "report": ""}})
    evidence, instances, _ = chutes_direct
    merged = merge_chutes_instances({**evidence, "evidence": [{"instance_id": ["x"]}, *evidence["evidence"]]},
                                    {"instances": [{"instance_id": {"a": 1}}, *instances["instances"]]})
    assert "e2e_pubkey" not in merged["evidence"][0] and "e2e_pubkey" in merged["evidence"][1]
