"""Offline GPU verification (SPEC §9): signature by offset, pinned 5-cert chain, FWID, nonce, agreement."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from gpu_table import BROKEN_CHAINS, NVIDIA_TABLE, Record
from phalanb.errors import InputError, ParseError, PhalanbError
from phalanb.gpu import (NVIDIA_DEVICE_IDENTITY_CA_SHA256, TrustRoot, chutes_gpu_nonce, leaf_fwids, parse_files,
                         parse_payload, verify_payload, verify_signature)
from phalanb.gpu.payload import GpuPayload
from phalanb.verdict import Status


def _status(result, check_id):
    return result.check(check_id).status.value


def test_the_shipped_root_is_nvidias_device_identity_ca(nvidia_root, fixtures):
    assert nvidia_root.sha256 == NVIDIA_DEVICE_IDENTITY_CA_SHA256
    assert nvidia_root.sha256.startswith("102BF659") and nvidia_root.sha256.endswith("0B167B48")
    published = (fixtures / "nvidia/nvtrust/verifier_device_root.pem").read_bytes()
    assert TrustRoot.from_pem(published).sha256 == nvidia_root.sha256
    assert not nvidia_root.simulated


@pytest.mark.parametrize("rec", NVIDIA_TABLE, ids=lambda r: r.name)
def test_every_record_passes_or_fails_exactly_as_listed(fixtures, nvidia_root, rec: Record):
    payload = rec.load(fixtures)
    nonce = payload.gpus[0].requester_nonce.hex()
    result = verify_payload(payload, root=nvidia_root, expected_nonce=nonce)
    assert _status(result, "gpu.evidence_signature") == rec.signature
    assert _status(result, "gpu.cert_chain") == rec.chain_result
    assert _status(result, "gpu.fwid") == rec.fwid
    assert _status(result, "gpu.nonce") == "pass"
    expected = "failed" if "fail" in (rec.signature, rec.chain_result, rec.fwid) else "verified"
    assert result.verdict().status == expected
    for facts in result.facts:
        assert facts.driver_version == rec.driver and facts.vbios_version == rec.vbios and facts.arch == rec.arch


def test_invalid_signature_sample_names_both_failures(fixtures, nvidia_root):
    rec = next(r for r in NVIDIA_TABLE if r.name == "sdk-sample-invalid-signature")
    result = verify_payload(rec.load(fixtures), root=nvidia_root)
    assert "does not verify" in result.check("gpu.evidence_signature").reason
    assert "FWID mismatch" in result.check("gpu.fwid").reason


def test_old_driver_without_fwid_is_skipped_not_passed(fixtures, nvidia_root):
    rec = next(r for r in NVIDIA_TABLE if r.name == "sdk-sample-hopper-old-driver")
    check = verify_payload(rec.load(fixtures), root=nvidia_root).check("gpu.fwid")
    assert check.status is Status.SKIPPED and not check.required and "no OPAQUE_FIELD_ID_FWID" in check.reason


def test_blackwell_fwid_comes_from_the_dice_extension_1_1(fixtures):
    p = parse_files(fixtures / "nvidia/nvidia_attestation_sdk/sample_blackwellAttestationReport.txt",
                    fixtures / "nvidia/nvidia_attestation_sdk/sample_blackwellCertChain.txt")
    found = leaf_fwids(p.gpus[0].certificates[0])
    assert found[0]["extension"] == "2.23.133.5.4.1.1"
    assert p.gpus[0].spdm.opaque.fwid.hex() in [f["digest"] for f in found]


def test_trustee_report_passes_only_because_the_signature_is_read_by_offset(fixtures, nvidia_root):
    p = parse_files(fixtures / "nvidia/trustee/hopper_coco_report1.txt",
                    fixtures / "nvidia/trustee/hopper_coco_certs1.txt")
    ev = p.gpus[0].spdm
    assert len(ev.trailing) == 1
    assert verify_signature(ev, p.gpus[0].certificates[0]).ok
    # The naive reading (signature = last 96 bytes, signed = the rest) does not verify.
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
    raw = ev.raw
    der = encode_dss_signature(int.from_bytes(raw[-96:-48], "big"), int.from_bytes(raw[-48:], "big"))
    with pytest.raises(InvalidSignature):
        p.gpus[0].certificates[0].public_key().verify(der, raw[:-96], ec.ECDSA(hashes.SHA384()))


@pytest.mark.parametrize("chain,problem", sorted(BROKEN_CHAINS.items()))
def test_broken_chains_fail_naming_the_chain_problem(fixtures, nvidia_root, chain, problem):
    p = parse_files(fixtures / "nvidia/nvtrust/hopperAttestationReport.txt", fixtures / "nvidia" / chain)
    result = verify_payload(p, root=nvidia_root)
    check = result.check("gpu.cert_chain")
    assert check.status is Status.FAIL
    assert problem in check.reason
    assert result.verdict().status == "failed"


def _with_chain(fixtures, certs) -> GpuPayload:
    pem = b"".join(c.public_bytes(Encoding.PEM) for c in certs)
    return parse_files(fixtures / "nvidia/nvtrust/hopperAttestationReport.txt", pem)


def test_chain_of_one_leaf_fails_with_the_count(fixtures, nvidia_root):
    good = parse_files(fixtures / "nvidia/nvtrust/hopperAttestationReport.txt",
                       fixtures / "nvidia/nvtrust/hopperCertChain.txt").gpus[0].certificates
    check = verify_payload(_with_chain(fixtures, good[:1]), root=nvidia_root).check("gpu.cert_chain")
    assert check.status is Status.FAIL and "1 certificates" in check.reason and "exactly 5" in check.reason


def test_chain_of_seven_fails_with_the_count(fixtures, nvidia_root):
    good = parse_files(fixtures / "nvidia/nvtrust/hopperAttestationReport.txt",
                       fixtures / "nvidia/nvtrust/hopperCertChain.txt").gpus[0].certificates
    check = verify_payload(_with_chain(fixtures, list(good) + [good[-1], good[-1]]),
                           root=nvidia_root).check("gpu.cert_chain")
    assert check.status is Status.FAIL and "7 certificates" in check.reason


def test_chain_of_zero_is_a_parse_error(fixtures):
    with pytest.raises(ParseError, match="no PEM certificate"):
        parse_files(fixtures / "nvidia/nvtrust/hopperAttestationReport.txt", b"")


def test_look_alike_root_is_not_trusted(fixtures, nvidia_root, sim_gpus):
    # A chain that validates to *some* root is not enough: the root must be the pinned one.
    p = parse_files(fixtures / "nvidia/nvtrust/hopperAttestationReport.txt",
                    fixtures / "nvidia/nvtrust/hopperCertChain.txt")
    check = verify_payload(p, root=sim_gpus.trust_root()).check("gpu.cert_chain")
    assert check.status is Status.FAIL and "not at the simulated root" in check.reason


def test_root_must_be_passed_explicitly(fixtures):
    p = parse_files(fixtures / "nvidia/nvtrust/hopperAttestationReport.txt",
                    fixtures / "nvidia/nvtrust/hopperCertChain.txt")
    with pytest.raises(InputError, match="TrustRoot"):
        verify_payload(p, root=None)


# --- the captured reports -----------------------------------------------------------------------------------

def test_neardirect_8_gpus_verify_offline_and_are_bound_to_the_request_nonce(neardirect, nvidia_root):
    p = parse_payload(neardirect["report"]["nvidia_payload"])
    result = verify_payload(p, root=nvidia_root, expected_nonce=neardirect["nonce"])
    assert result.verdict().status == "verified", result.verdict().summary()
    assert len(result.gpus) == 8
    assert {f.requester_nonce for f in result.facts} == {neardirect["nonce"]}
    assert all(f.hwmodel == "GH100 A01 GSP BROM" and f.chip == "GH100" for f in result.facts)
    assert len({f.ueid for f in result.facts}) == 8


def test_neardirect_with_another_nonce_fails_freshness(neardirect, nvidia_root):
    p = parse_payload(neardirect["report"]["nvidia_payload"])
    result = verify_payload(p, root=nvidia_root, expected_nonce="00" * 32)
    assert result.check("gpu.nonce").status is Status.FAIL
    assert result.check("gpu.evidence_signature").status is Status.PASS


def test_without_an_expected_nonce_the_result_is_incomplete(neardirect, nvidia_root):
    p = parse_payload(neardirect["report"]["nvidia_payload"])
    verdict = verify_payload(p, root=nvidia_root).verdict()
    assert verdict.status == "incomplete" and verdict["gpu.nonce"].status is Status.SKIPPED


def test_chutes_gpu_nonce_is_sha256_of_nonce_and_e2e_pubkey(chutes, nvidia_root):
    report = chutes["report"]
    assert report["nonce"] != chutes["manifest"]["nonce_hex"]  # the client's nonce was ignored
    for entry in report["all_attestations"]:
        want = hashlib.sha256((entry["nonce"] + entry["e2e_pubkey"]).encode()).hexdigest()
        assert chutes_gpu_nonce(entry["nonce"], entry["e2e_pubkey"]) == want
        p = parse_payload(entry)
        assert {g.requester_nonce.hex() for g in p.gpus} == {want}
    first = report["all_attestations"][0]
    result = verify_payload(parse_payload(first), root=nvidia_root,
                            expected_nonce=chutes_gpu_nonce(first["nonce"], first["e2e_pubkey"]))
    assert result.verdict().status == "verified", result.verdict().summary()


def test_one_gpu_answering_twice_is_caught(neardirect, nvidia_root):
    payload = json.loads(neardirect["report"]["nvidia_payload"])
    payload["evidence_list"][1] = payload["evidence_list"][0]
    result = verify_payload(parse_payload(payload), root=nvidia_root, expected_nonce=neardirect["nonce"])
    assert result.check("gpu.agree").status is Status.FAIL
    assert "one GPU answering for several" in result.check("gpu.agree").reason


def test_declared_arch_must_match_the_chip(neardirect, nvidia_root):
    payload = json.loads(neardirect["report"]["nvidia_payload"])
    payload["evidence_list"][0]["arch"] = "BLACKWELL"
    result = verify_payload(parse_payload(payload), root=nvidia_root, expected_nonce=neardirect["nonce"])
    assert result.check("gpu.agree").status is Status.FAIL and "BLACKWELL" in result.check("gpu.agree").reason


# --- tampering ----------------------------------------------------------------------------------------------

def test_one_flipped_byte_in_the_signed_spdm_message_fails(fixtures, nvidia_root):
    p = parse_files(fixtures / "nvidia/nvtrust/hopperAttestationReport.txt",
                    fixtures / "nvidia/nvtrust/hopperCertChain.txt")
    ev, leaf = p.gpus[0].spdm, p.gpus[0].certificates[0]
    from phalanb.gpu.spdm import parse_evidence

    # Every byte of the signed message and of the signature (about 4000 flips, a few seconds).
    offsets = range(ev.signature_offset + 96)
    for off in offsets:
        raw = bytearray(ev.raw)
        raw[off] ^= 0x01
        try:
            tampered = parse_evidence(bytes(raw))
        except PhalanbError:
            continue  # a length field changed: the decoder says which
        step = verify_signature(tampered, leaf)
        assert step.ok is False, off
        assert "does not verify" in step.reason


def test_one_flipped_byte_in_any_certificate_fails_naming_the_step(fixtures, nvidia_root):
    p = parse_files(fixtures / "nvidia/nvtrust/hopperAttestationReport.txt",
                    fixtures / "nvidia/nvtrust/hopperCertChain.txt")
    ders = [c.public_bytes(Encoding.DER) for c in p.gpus[0].certificates]
    nonce = p.gpus[0].requester_nonce.hex()
    tried = 0
    for ci, der in enumerate(ders):
        for off in range(3, len(der), 9):  # a bounded matrix: every 9th byte of each certificate
            bad = bytearray(der)
            bad[off] ^= 0x01
            pem = b"".join(b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(bytes(bad) if j == ci else d)
                           + b"-----END CERTIFICATE-----\n" for j, d in enumerate(ders))
            tried += 1
            try:
                payload = parse_files(fixtures / "nvidia/nvtrust/hopperAttestationReport.txt", pem)
            except ParseError:
                continue
            result = verify_payload(payload, root=nvidia_root, expected_nonce=nonce)
            failed = {c.id for c in result.checks if c.status is Status.FAIL}
            assert failed & {"gpu.cert_chain", "gpu.evidence_signature", "gpu.fwid"}, (ci, off)
    assert tried > 300


# --- simulated GPUs -----------------------------------------------------------------------------------------

def test_simulated_payload_verifies_with_the_simulated_root_and_says_so(sim_gpus):
    nonce = "5a" * 32
    result = verify_payload(parse_payload(sim_gpus.payload(nonce)), root=sim_gpus.trust_root(),
                            expected_nonce=nonce)
    verdict = result.verdict()
    assert verdict.status == "verified", verdict.summary()
    assert verdict["gpu.trust_root"].status is Status.WARNING and "simulated" in verdict["gpu.trust_root"].reason
    assert all(len(g.facts.requester_nonce) == 64 for g in result.gpus)


def test_simulated_payload_fails_against_nvidias_root_saying_why(sim_gpus, nvidia_root):
    nonce = "5a" * 32
    result = verify_payload(parse_payload(sim_gpus.payload(nonce)), root=nvidia_root, expected_nonce=nonce)
    check = result.check("gpu.cert_chain")
    assert check.status is Status.FAIL and "simulated device root" in check.reason
    assert result.verdict().status == "failed"


def test_nanogpt_2026_03_ignored_the_clients_nonce_so_gpu_freshness_fails(fixtures, nvidia_root):
    base = fixtures / "reports/nanogpt-gemma-2026-03"
    report = json.loads((base / "attestation_report.json").read_text())
    client_nonce = (base / "client_nonce.txt").read_text().strip()
    result = verify_payload(parse_payload(report["nvidia_payload"]), root=nvidia_root, expected_nonce=client_nonce)
    assert result.check("gpu.nonce").status is Status.FAIL
    assert result.check("gpu.evidence_signature").status is Status.PASS  # genuine evidence, just not fresh
    assert result.verdict().status == "failed"


def test_nanogpt_2026_06_honoured_the_nonce(fixtures, nvidia_root):
    base = fixtures / "reports/nanogpt-gemma-2026-06"
    report = json.loads((base / "attestation_report.json").read_text())
    nonce = json.loads((base / "manifest.json").read_text())["nonce_hex"]
    result = verify_payload(parse_payload(report["nvidia_payload"]), root=nvidia_root, expected_nonce=nonce)
    assert result.verdict().status == "verified", result.verdict().summary()


def test_nearcloud_model_attestation_gpus_verify(fixtures, nvidia_root):
    report = json.loads((fixtures / "reports/nearcloud-2026/attestation_report.json").read_text())
    model = report["model_attestations"][0]
    result = verify_payload(parse_payload(model["nvidia_payload"]), root=nvidia_root,
                            expected_nonce=model["request_nonce"])
    assert result.verdict().status == "verified", result.verdict().summary()
    assert len(result.gpus) == 8


def test_teep_payload_nonce_is_the_gpus_requester_nonce(fixtures, nvidia_root):
    p = parse_payload((fixtures / "nvidia/teep_venice_eat/nvidia_eat_hopper.json").read_text())
    assert {g.requester_nonce.hex() for g in p.gpus} == {p.nonce}
    assert verify_payload(p, root=nvidia_root, expected_nonce=p.nonce).check("gpu.agree").status is Status.PASS
