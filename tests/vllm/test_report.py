"""Attestation report shapes (SPEC §5) and binding/freshness (SPEC §6), on the real captured reports."""

import hashlib
import json

import pytest

from phalanb.errors import ParseError, PhalanbError
from phalanb.vllm.report import binding_checks, check_signing_public_key, expected_report_data, parse_report
from phalanb.tdx import parse_quote


def load(fixtures, name):
    d = fixtures / "reports" / name
    report = parse_report((d / "attestation_report.json").read_text())
    nonce = None
    if (d / "manifest.json").exists():
        nonce = json.loads((d / "manifest.json").read_text()).get("nonce_hex")
    if (d / "client_nonce.txt").exists():
        nonce = (d / "client_nonce.txt").read_text().strip()
    return report, bytes.fromhex(nonce) if nonce else None


def statuses(node, nonce):
    rd = parse_quote(node.intel_quote).body.report_data
    return {c.id: c.status.value for c in binding_checks(node, rd, nonce)}


@pytest.mark.parametrize("name, shape", [
    ("nanogpt-gemma-2026-03", "dstack-v1.1"), ("nanogpt-gemma-2026-06", "dstack-v1.1"),
    ("neardirect-qwen-2026-04", "near-model-node"), ("neardirect-qwen-2026-06", "near-model-node"),
    ("nearcloud-2026", "near-cloud-gateway"), ("redpill-chutes-deepseek-2026-06", "chutes"),
])
def test_every_captured_shape_is_recognised(fixtures, name, shape):
    report, _ = load(fixtures, name)
    assert report.shape == shape and report.nodes


def test_nanogpt_2026_03_ignored_the_client_nonce(fixtures):
    report, nonce = load(fixtures, "nanogpt-gemma-2026-03")
    node = report.select(report.nodes[0].signing_address)
    assert statuses(node, nonce) == {"report.report_data": "pass", "report.nonce_fresh": "fail"}
    # …and it is bound to its own request_nonce: the server just used another one.
    assert statuses(node, bytes.fromhex(node.request_nonce))["report.nonce_fresh"] == "pass"


def test_v11_signing_public_key_derives_the_address(fixtures):
    report, _ = load(fixtures, "nanogpt-gemma-2026-03")
    assert check_signing_public_key(report.nodes[0]).status.value == "pass"
    node = report.nodes[0]
    node.signing_public_key = "00" * 64
    assert check_signing_public_key(node).status.value == "fail"


@pytest.mark.parametrize("name", ["nanogpt-gemma-2026-06", "neardirect-qwen-2026-04", "neardirect-qwen-2026-06"])
def test_honoured_nonces_bind_and_are_fresh(fixtures, name):
    report, nonce = load(fixtures, name)
    assert statuses(report.nodes[0], nonce) == {"report.report_data": "pass", "report.nonce_fresh": "pass"}


def test_tls_variant_report_data(fixtures):
    report, _ = load(fixtures, "neardirect-qwen-2026-04")
    node = report.nodes[0]
    want, how = expected_report_data(node)
    assert want == hashlib.sha256(bytes.fromhex(node.signing_address) + bytes.fromhex(node.tls_cert_fingerprint)).digest()
    assert "TLS" in how


def test_nearcloud_model_attestation_is_unwrapped(fixtures):
    report, nonce = load(fixtures, "nearcloud-2026")
    assert report.gateway is not None and report.gateway.signing_algo == "ed25519"
    node = report.select(report.nodes[0].signing_address)
    assert node.model_name == "Qwen/Qwen3.5-122B-A10B"
    assert statuses(node, nonce) == {"report.report_data": "pass", "report.nonce_fresh": "pass"}


def test_chutes_is_bound_to_its_own_nonce_but_not_fresh(fixtures):
    report, nonce = load(fixtures, "redpill-chutes-deepseek-2026-06")
    assert len(report.nodes) == 5 and all(len(n.gpu_evidence) == 8 for n in report.nodes)
    for node in report.nodes:
        assert statuses(node, nonce) == {"report.report_data": "pass", "report.nonce_fresh": "fail"}


def test_legacy_report_is_unbound(fixtures):
    d = fixtures / "reports" / "private-ml-sdk-2025-01"
    report = parse_report({"intel_quote": (d / "intel_quote.hex").read_text().strip(),
                           "nvidia_payload": (d / "nvidia_payload.json").read_text()})
    node = report.nodes[0]
    assert report.shape == "legacy" and node.binding is None
    got = statuses(node, b"\1" * 32)
    assert got == {"report.report_data": "skipped", "report.nonce_fresh": "skipped"}


def test_selecting_an_unknown_node_explains(fixtures):
    report, _ = load(fixtures, "redpill-chutes-deepseek-2026-06")
    with pytest.raises(PhalanbError, match="signing_address="):
        report.select("0x" + "00" * 20)


@pytest.mark.parametrize("bad, field", [
    ("[]", "report"), ("{nope", "report"), ('{"attestation_type":"chutes"}', "all_attestations"),
    ('{"model_attestations": []}', "model_attestations"), ('{"signing_address": 5, "intel_quote": "00"}', "signing_address"),
    ('{"request_nonce":"00","info":"{x"}', "info"), ('{"all_attestations":[5], "request_nonce":"00"}', "all_attestations[0]"),
])
def test_malformed_reports_are_parse_errors_naming_the_field(bad, field):
    with pytest.raises(ParseError) as info:
        parse_report(bad)
    assert info.value.field == field


def test_tinfoil_reports_decode_but_cannot_bind(fixtures):
    quote_hex = (fixtures / "tdx" / "dcap-qvl" / "near_gas_quote_hex.txt").read_text().strip()
    report = parse_report({"attestation_type": "tinfoil", "intel_quote": quote_hex})
    node = report.nodes[0]
    assert report.shape == "tinfoil" and node.binding is None and node.signing_address is None
    got = statuses(node, b"\3" * 32)
    assert got == {"report.report_data": "skipped", "report.nonce_fresh": "skipped"}
    from phalanb.vllm.verify import verify_report
    v = verify_report({"attestation_type": "tinfoil", "intel_quote": quote_hex}, nonce=b"\3" * 32)
    assert v["tdx.quote_signature"].status.value == "pass"  # the quote itself is decoded and checked
    assert v.status == "incomplete"
