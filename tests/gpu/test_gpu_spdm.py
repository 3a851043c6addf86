"""SPDM decoding (SPEC §9): every field where NVIDIA puts it, as NVIDIA names it, and bad bytes as ParseErrors."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phalanb.errors import ParseError, PhalanbError, UnsupportedError
from phalanb.gpu.spdm import SIGNATURE_SIZE, parse_evidence, parse_opaque_data, render_vbios_version

from gpu_table import NVIDIA_TABLE


def _hex_file(fixtures, rel):
    return bytes.fromhex((fixtures / "nvidia" / rel).read_text().strip())


@pytest.fixture(scope="module")
def sdk_report(fixtures):
    return _hex_file(fixtures, "nvidia_attestation_sdk/hopperAttestationReport.txt")


@pytest.mark.parametrize("rec", NVIDIA_TABLE, ids=lambda r: r.name)
def test_every_record_decodes_to_the_listed_nonce_driver_vbios_and_64_blocks(fixtures, rec):
    payload = rec.load(fixtures)
    assert len(payload.gpus) == rec.gpus
    for gpu in payload.gpus:
        assert gpu.arch == rec.arch
        assert gpu.requester_nonce.hex().startswith(rec.nonce_prefix)
        assert gpu.spdm.opaque.driver_version == rec.driver
        assert gpu.spdm.opaque.vbios_version == rec.vbios
        blocks = gpu.spdm.response.measurement_blocks
        assert [b.index for b in blocks] == list(range(1, 65))
        assert all(b.dmtf_spec_measurement_value_size == 48 and len(b.value) == 48 for b in blocks)


def test_response_matches_nvidias_own_decode(fixtures, sdk_report):
    gold = json.loads((fixtures / "nvidia/nvidia_attestation_sdk/spdm_parsed_output.json").read_text())
    mine = parse_evidence(sdk_report).response.to_dict()
    for key in ("SPDMVersion", "RequestResponseCode", "Param1", "Param2", "NumberOfBlocks",
                "MeasurementRecordLength", "Nonce", "OpaqueLength", "Signature", "MeasurementRecord"):
        assert mine[key] == gold[key], key
    # NVIDIA's decoder predates TLV types 34 and 36; every field it does know must agree byte for byte.
    gold_opaque = gold["OpaqueData"]["OpaqueDataField"]
    mine_opaque = mine["OpaqueData"]["OpaqueDataField"]
    assert {k: mine_opaque[k] for k in gold_opaque} == gold_opaque
    assert set(mine_opaque) - set(gold_opaque) == {"OPAQUE_FIELD_ID_OPAQUE_DATA_VERSION",
                                                   "OPAQUE_FIELD_ID_FEATURE_FLAG"}


def test_request_matches_nvidias_own_decode(fixtures, sdk_report):
    gold = json.loads((fixtures / "nvidia/nvidia_attestation_sdk/spdm_req_parsed_output.json").read_text())
    assert parse_evidence(sdk_report).request.to_dict() == gold


def test_opaque_fields_match_trustees_claims(fixtures):
    claims = json.loads((fixtures / "nvidia/trustee/hopperAttestationReport-claims.txt").read_text())["config"]
    ev = parse_evidence(_hex_file(fixtures, "nvtrust/hopperAttestationReport.txt"))
    op = ev.opaque
    assert op.driver_version == claims["driver_version"]
    assert op.vbios_version.lower() == claims["vbios_version"]
    assert op.fwid.hex() == claims["fwid"]
    assert (op.chip_sku, op.chip_sku_mod, op.project, op.project_sku) == (
        claims["chip_sku"], claims["chip_sku_mod"], claims["project"], claims["project_sku"])
    assert op.msrscnt == [claims["measurement_count"][str(i)] for i in range(1, 65)]
    assert op.get("NVDEC0_STATUS").decoded == claims["nvdec0_status"]
    measurements = json.loads((fixtures / "nvidia/trustee/hopperAttestationReport-claims.txt").read_text())[
        "measurements"]
    assert {str(i): v.hex() for i, v in ev.measurements.items()} == measurements


def test_newer_opaque_fields_are_named_and_decoded(sdk_report):
    op = parse_evidence(sdk_report).opaque
    assert op.opaque_data_version == 1
    assert op.feature_flag == "SPT"
    assert (op.chip_sku, op.project, op.project_sku) == ("862", "1010", "0205")


def test_vbios_is_rendered_as_nvidia_renders_it():
    assert render_vbios_version(bytes.fromhex("0074009620000000")) == "96.00.74.00.20"
    assert render_vbios_version(bytes.fromhex("00cf009602000000")) == "96.00.CF.00.02"


def test_layout_offsets_follow_the_spec(sdk_report):
    ev = parse_evidence(sdk_report)
    l1 = ev.response.measurement_record_length
    l2 = ev.response.opaque_length
    fields = {f.name: f for f in ev.byte_map()}
    assert fields["request.Nonce"].offset == 4 and fields["request.SlotIDParam"].offset == 36
    assert fields["response.NumberOfBlocks"].offset == 41
    assert fields["response.MeasurementRecordLength"].offset == 42
    assert fields["response.MeasurementRecord"].offset == 45
    assert fields["response.Nonce"].offset == 45 + l1
    assert fields["response.OpaqueLength"].offset == 77 + l1
    assert fields["response.OpaqueData"].offset == 79 + l1
    assert ev.signature_offset == 79 + l1 + l2
    assert fields["MeasurementBlock[1]"].offset == 45
    assert fields["OPAQUE_FIELD_ID_VBIOS_VERSION"].offset == 79 + l1


def test_byte_map_top_level_fields_tile_the_evidence_exactly(fixtures):
    raw = _hex_file(fixtures, "trustee/hopper_coco_report1.txt")
    ev = parse_evidence(raw)
    top = [f for f in ev.byte_map() if f.name.startswith(("request.", "response.", "trailing"))]
    pos = 0
    for f in top:
        assert f.offset == pos, f
        pos = f.end
    assert pos == len(raw)


def test_signature_is_located_by_offset_not_taken_from_the_end(fixtures):
    raw = _hex_file(fixtures, "trustee/hopper_coco_report1.txt")
    ev = parse_evidence(raw)
    assert ev.trailing == raw[-1:]
    assert ev.signature == raw[ev.signature_offset:ev.signature_offset + SIGNATURE_SIZE]
    assert ev.signature != raw[-SIGNATURE_SIZE:]


# --- bad input ----------------------------------------------------------------------------------------------

def test_truncation_at_every_offset_is_a_parse_error(fixtures):
    raw = _hex_file(fixtures, "nvtrust/hopperAttestationReport.txt")
    for n in range(len(raw)):
        with pytest.raises(ParseError) as err:
            parse_evidence(raw[:n])
        assert err.value.field, n


def _l1(raw: bytes) -> int:
    return int.from_bytes(raw[42:45], "little")


def test_l1_that_overruns_names_the_field_and_offset(sdk_report):
    bad = bytearray(sdk_report)
    bad[42:45] = (len(sdk_report)).to_bytes(3, "little")
    with pytest.raises(ParseError) as err:
        parse_evidence(bytes(bad))
    assert err.value.field == "response.MeasurementRecordLength" and err.value.offset == 42
    assert "exceeds" in str(err.value)


def test_l2_that_overruns_names_the_field_and_offset(sdk_report):
    at = 77 + _l1(sdk_report)
    bad = bytearray(sdk_report)
    bad[at:at + 2] = (0xFFFF).to_bytes(2, "little")
    with pytest.raises(ParseError) as err:
        parse_evidence(bytes(bad))
    assert err.value.field == "response.OpaqueLength" and err.value.offset == at


def test_l2_too_short_for_the_signature_is_a_parse_error(sdk_report):
    # An L2 that fits but leaves fewer than 96 bytes for the signature.
    at = 77 + _l1(sdk_report)
    left = len(sdk_report) - (at + 2)
    bad = bytearray(sdk_report)
    bad[at:at + 2] = (left - 10).to_bytes(2, "little")
    with pytest.raises(ParseError) as err:
        parse_evidence(bytes(bad))
    assert err.value.field in ("response.Signature",) or err.value.field.startswith("OPAQUE")


def test_opaque_tlv_size_that_overruns_is_a_parse_error():
    tlv = (3).to_bytes(2, "little") + (200).to_bytes(2, "little") + b"570.1\0"
    with pytest.raises(ParseError) as err:
        parse_opaque_data(tlv, base_offset=1000)
    assert err.value.field == "OPAQUE_FIELD_ID_DRIVER_VERSION" and err.value.offset == 1002


def test_measurement_block_size_that_overruns_is_a_parse_error(sdk_report):
    bad = bytearray(sdk_report)
    bad[47:49] = (0x7FFF).to_bytes(2, "little")  # block 1's MeasurementSize
    with pytest.raises(ParseError) as err:
        parse_evidence(bytes(bad))
    assert err.value.field == "MeasurementBlock[1].MeasurementSize" and err.value.offset == 47


def test_block_count_that_disagrees_with_the_record_is_a_parse_error(sdk_report):
    bad = bytearray(sdk_report)
    bad[41] = 63
    with pytest.raises(ParseError, match="NumberOfBlocks"):
        parse_evidence(bytes(bad))


def test_not_a_measurement_request_is_refused_clearly(sdk_report):
    with pytest.raises(ParseError, match="GET_MEASUREMENTS"):
        parse_evidence(b"\x11\x84" + sdk_report[2:])
    with pytest.raises(UnsupportedError, match="1.3"):
        parse_evidence(b"\x13" + sdk_report[1:])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_random_bytes_never_escape_as_anything_but_phalanb_errors(data):
    try:
        parse_evidence(data)
    except PhalanbError:
        pass


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(min_value=0, max_value=4165), st.integers(min_value=1, max_value=255))
def test_any_single_byte_change_parses_or_fails_as_a_phalanb_error(sdk_report, offset, xor):
    raw = bytearray(sdk_report)
    raw[offset % len(raw)] ^= xor
    try:
        parse_evidence(bytes(raw))
    except PhalanbError:
        pass


def test_a_request_without_signature_is_refused(sdk_report):
    with pytest.raises(UnsupportedError, match="did not ask for a signature"):
        parse_evidence(sdk_report[:2] + b"\x00" + sdk_report[3:])
