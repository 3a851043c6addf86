"""Every nvidia_payload variant a user can meet is read, and the payload says which one it was (SPEC §9)."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpu_table import CHUTES, NEARDIRECT
from phalanb.errors import InputError, ParseError, PhalanbError
from phalanb.gpu import parse_cert_chain, parse_files, parse_payload


def _json(fixtures, rel):
    return json.loads((fixtures / rel).read_text())


def test_dstack_json_string_with_sorted_keys_and_per_item_nonce(fixtures):
    report = _json(fixtures, f"{NEARDIRECT}/attestation_report.json")
    p = parse_payload(report["nvidia_payload"])
    assert p.variant == "dstack" and p.encoded_as == "json-string" and p.keys_sorted
    assert len(p.gpus) == 8 and all(g.item_nonce == p.nonce for g in p.gpus)
    assert p.nonce == report["request_nonce"]
    assert "per-item nonce" in p.description and "keys sorted" in p.description


def test_dstack_object_without_item_nonces(fixtures):
    p = parse_payload(_json(fixtures, "nvidia/teep_venice_eat/nvidia_eat_hopper.json"))
    assert p.variant == "dstack" and p.encoded_as == "object"
    assert all(g.item_nonce is None for g in p.gpus)
    assert p.nonce.startswith("dec6216ca055") and p.arch == "HOPPER"


def test_legacy_evidence_is_base64_of_ascii_hex(fixtures):
    p = parse_payload((fixtures / "reports/private-ml-sdk-2025-01/nvidia_payload.json").read_text())
    assert p.gpus[0].evidence_encoding == "base64-hex"
    assert p.gpus[0].requester_nonce.hex() == p.nonce
    # the item has no arch of its own: it inherits the payload's
    assert p.gpus[0].arch == "HOPPER"


def test_nvidia_sdk_list_with_per_item_nonce(fixtures):
    p = parse_payload((fixtures / "nvidia/nvidia_attestation_sdk/multi_gpu_hopper.json").read_text())
    assert p.variant == "nvidia-sdk" and len(p.gpus) == 4
    assert p.nonce.startswith("e97b23a17180")


def test_chutes_gpu_evidence_list_and_entry(fixtures):
    lst = parse_payload(_json(fixtures, "nvidia/chutes_api/evidence.json"))
    assert lst.variant == "chutes" and len(lst.gpus) == 8 and lst.nonce is None
    entry = _json(fixtures, f"{CHUTES}/attestation_report.json")["all_attestations"][0]
    p = parse_payload(entry)
    assert p.variant == "chutes" and len(p.gpus) == 8


def test_bare_evidence_file_and_pem_chain(fixtures):
    p = parse_files(fixtures / "nvidia/nvtrust/hopperAttestationReport.txt",
                    fixtures / "nvidia/nvtrust/hopperCertChain.txt")
    assert p.variant == "files" and p.gpus[0].evidence_encoding == "hex" and p.arch == "HOPPER"
    bw = parse_files(fixtures / "nvidia/nvidia_attestation_sdk/sample_blackwellAttestationReport.txt",
                     fixtures / "nvidia/nvidia_attestation_sdk/sample_blackwellCertChain.txt")
    assert bw.arch == "BLACKWELL"


def test_nras_request_of_the_capture_is_the_payload_itself(fixtures):
    from phalanb.gpu.nras import build_nras_request

    report = _json(fixtures, f"{NEARDIRECT}/attestation_report.json")
    assert build_nras_request(parse_payload(report["nvidia_payload"])) == \
        _json(fixtures, f"{NEARDIRECT}/nras_request.json")


def test_whole_report_is_refused_with_advice(fixtures):
    with pytest.raises(InputError, match="nvidia_payload"):
        parse_payload(_json(fixtures, f"{NEARDIRECT}/attestation_report.json"))


# --- bad input ----------------------------------------------------------------------------------------------

def _one_item(fixtures):
    return _json(fixtures, "nvidia/nvidia_attestation_sdk/hopper_evidence.json")[0]


def test_garbage_base64_evidence_is_a_parse_error_naming_the_item(fixtures):
    item = dict(_one_item(fixtures), evidence="%%% not base64 %%%")
    with pytest.raises(ParseError) as err:
        parse_payload([item])
    assert err.value.field == "evidence_list[0].evidence"


def test_base64_of_garbage_bytes_is_a_parse_error(fixtures):
    item = dict(_one_item(fixtures), evidence=base64.b64encode(b"\x00" * 10).decode())
    with pytest.raises(ParseError, match="GPU 0"):
        parse_payload([item])


def test_garbage_base64_certificate_is_a_parse_error(fixtures):
    item = dict(_one_item(fixtures), certificate="@@@")
    with pytest.raises(ParseError) as err:
        parse_payload([item])
    assert err.value.field == "evidence_list[0].certificate"


def test_a_chain_of_zero_certificates_is_a_parse_error(fixtures):
    item = dict(_one_item(fixtures), certificate=base64.b64encode(b"no certificates here").decode())
    with pytest.raises(ParseError, match="no PEM certificate"):
        parse_payload([item])


def test_a_damaged_certificate_is_a_parse_error():
    pem = ("-----BEGIN CERTIFICATE-----\n" + base64.b64encode(b"\x30\x03\x02\x01\x01").decode()
           + "\n-----END CERTIFICATE-----\n")
    with pytest.raises(ParseError, match="certificate 0"):
        parse_cert_chain(pem)


@pytest.mark.parametrize("value", ["", "not json", "[]", '{"evidence_list": []}', "42", '{"foo": 1}',
                                   '[{"evidence": "AA=="}]', '{"evidence_list": "x"}', '{"nonce": 5, '
                                   '"evidence_list": [{}]}'])
def test_malformed_payloads_are_parse_errors(value):
    with pytest.raises(ParseError):
        parse_payload(value)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["nonce", "arch", "evidence_list", "evidence", "certificate", "gpu_evidence", "x"]),
        children, max_size=5),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(_json_values)
def test_any_json_shape_is_read_or_refused_with_a_phalanb_error(value):
    try:
        parse_payload(value)
    except PhalanbError:
        pass
