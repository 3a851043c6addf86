"""The TDX quote parser against real quotes (fixtures/tdx/ground_truth.json) and against broken input."""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest
from hypothesis import given, settings, strategies as st

from phalanb.errors import InputError, ParseError, PhalanbError, UnsupportedError
from phalanb.tdx import parse_quote
from phalanb.tdx.quote import TD_ATTRIBUTE_BITS

from .conftest import gt_params

BODY_FIELDS = ["tee_tcb_svn", "mr_seam", "mr_signer_seam", "seam_attributes", "td_attributes", "xfam", "mr_td",
               "mr_config_id", "mr_owner", "mr_owner_config", "rt_mr0", "rt_mr1", "rt_mr2", "rt_mr3", "report_data"]


@pytest.mark.parametrize("entry", gt_params())
def test_every_field_equals_the_ground_truth_table(entry, load):
    q = parse_quote(load(entry["file"]))
    assert hashlib.sha256(q.raw).hexdigest() == entry["sha256_of_quote_bytes"]
    assert len(q.raw) == entry["len"]
    d = q.to_dict()
    assert d["quote_type"] == entry["quote_type"] == "TDX"
    for name in ("version", "att_key_type", "qe_svn", "pce_svn"):
        assert d[name] == entry[name], name
    assert d["tee_type"] == int(entry["tee_type"], 16)
    assert d["qe_vendor_id"] == entry["qe_vendor_id"]
    assert d["user_data"] == entry["user_data"]
    assert "PyTdReport" + d["report_class"][2:] == entry["report_class"]
    for name in BODY_FIELDS + ["tee_tcb_svn2", "mr_service_td"]:
        if name in entry:
            assert d[name] == entry[name].lower(), name
        else:
            assert name not in d, name


@pytest.mark.parametrize("entry", gt_params())
def test_fields_carry_absolute_offsets_that_point_at_their_bytes(entry, load):
    q = parse_quote(load(entry["file"]))
    rows = list(q.fields())
    # The byte map covers the quote without gaps or overlaps, trailing bytes included.
    pos = 0
    for f in rows:
        assert f.offset == pos, f.name
        if isinstance(f.value, bytes):
            assert q.raw[f.offset:f.end] == f.value, f.name
        pos = f.end
    assert pos == len(q.raw)
    body = 48 if q.version == 4 else 54
    assert q.field("mr_td").offset == body + 136
    assert q.field("report_data").offset == body + 520
    assert q.field("qe_report.mr_signer").size == 32
    assert q.signed_length == (632 if q.version == 4 else 702)


def test_v4_report_data_sits_at_568(load):
    q = parse_quote(load("dcap-qvl/tdx_quote"))
    assert q.field("report_data").offset == 568
    assert q.raw[568:632] == q.body.report_data


def test_td15_fields_of_a_v5_quote(load):
    q = parse_quote(load("dcap-qvl/tdx_quote_outdated"))
    assert (q.version, q.body_type, q.body_size, q.report_class) == (5, 3, 648, "TD15")
    assert q.field("tee_tcb_svn2").offset == 54 + 584
    assert q.field("mr_service_td").offset == 54 + 600


def test_td_attributes_are_decoded_into_named_flags(load):
    q = parse_quote(load("dcap-qvl/tdx_quote"))
    attrs = q.body.attributes
    assert attrs.sept_ve_disable and not attrs.debug
    assert attrs.flags == ["SEPT_VE_DISABLE"]
    assert TD_ATTRIBUTE_BITS[0][0] == "DEBUG"


def test_qe_report_fields(load):
    q = parse_quote(load("dcap-qvl/tdx_quote"))
    qe = q.qe_report
    assert qe.mr_signer.hex().startswith("dc9e2a7c6f948f17")  # Intel's QE signer
    assert qe.isv_prod_id == 2
    assert qe.report_data[32:] == bytes(32)
    assert len(q.pck_chain_pem) == 3
    assert q.signature_data.pck_chain_trailing_nul


@pytest.mark.parametrize("rel,trailing,nonzero", [
    ("dcap-qvl/tdx_quote", 70, False),
    ("go-tdx-guest/tdx_prod_quote_SPR_E4.dat", 39, True),
    ("go-tdx-guest/ccel_cos-113-tdx-quote.dat", 8000 - 4935, None),
    ("dcap-qvl/tdx_quote_outdated", 0, False),
])
def test_trailing_bytes_are_tolerated_and_reported(rel, trailing, nonzero, load):
    q = parse_quote(load(rel))
    assert len(q.trailing) == trailing
    if trailing:
        row = list(q.fields())[-1]
        assert row.name == "trailing" and row.offset == q.end
        if nonzero is not None:
            assert (q.trailing.count(0) != len(q.trailing)) == nonzero


def test_hex_0x_hex_base64_and_bytes_give_the_same_quote(load):
    raw = load("dcap-qvl/tdx_quote")
    ref = parse_quote(raw)
    for text, enc in [(raw.hex(), "hex"), ("0x" + raw.hex(), "0x-hex"), (raw.hex().upper(), "hex"),
                      (base64.b64encode(raw).decode(), "base64"), (raw.hex().encode(), "hex"),
                      (" " + raw.hex()[:100] + "\n" + raw.hex()[100:] + "\n", "hex")]:
        q = parse_quote(text)
        assert q.raw == raw and q.input_encoding == enc
    assert parse_quote(load("dcap-qvl/tdx-quote.hex")).input_encoding == "0x-hex"
    assert ref.input_encoding == "binary"


def test_private_ml_sdk_base64_and_hex_quotes_match(fixtures):
    d = fixtures / "reports" / "private-ml-sdk-2025-01"
    a = parse_quote((d / "intel_quote.b64").read_text())
    b = parse_quote((d / "intel_quote.hex").read_text())
    assert a.raw == b.raw and a.input_encoding == "base64" and b.input_encoding == "hex"


def test_sgx_quote_is_refused_as_not_tdx(load):
    with pytest.raises(UnsupportedError, match="not a TDX quote"):
        parse_quote(load("dcap-qvl/sgx_quote"))


def test_intel_synthetic_quote_with_der_chain_in_reverse_order_parses(load):
    q = parse_quote(load("intel-qvl/quote.dat"))
    assert len(q.pck_chain_pem) == 3 and not q.trailing


# ---- bad input ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rel", ["dcap-qvl/tdx_quote", "dcap-qvl/tdx_quote_outdated"])
def test_truncation_at_every_offset_is_a_parse_error_naming_field_and_offset(rel, load):
    raw = load(rel)
    end = parse_quote(raw).end
    for n in range(end):
        with pytest.raises(ParseError) as info:
            parse_quote(raw[:n])
        err = info.value
        assert err.field and err.offset is not None, n
        assert 0 <= err.offset <= n, (n, err)


def _patch(raw: bytes, offset: int, fmt: str, value: int) -> bytes:
    b = bytearray(raw)
    struct.pack_into(fmt, b, offset, value)
    return bytes(b)


@pytest.mark.parametrize("field,value", [
    ("signature_data_len", 0xFFFFFFFF), ("certification_data_size", 0xFFFFFFFF), ("qe_auth_data_size", 0xFFFF),
    ("pck_cert_data_size", 0xFFFFFFFF), ("pck_cert_data_size", 10_000), ("signature_data_len", 5000),
])
def test_absurd_length_fields_name_the_field_and_offset(field, value, load):
    raw = load("dcap-qvl/tdx_quote")
    f = parse_quote(raw).field(field)
    bad = _patch(raw, f.offset, {2: "<H", 4: "<I"}[f.size], value)
    with pytest.raises(ParseError) as info:
        parse_quote(bad)
    assert info.value.field == field and info.value.offset == f.offset
    assert "exceeds" in str(info.value)


def test_absurd_v5_body_size(load):
    raw = load("dcap-qvl/tdx_quote_outdated")
    for value, word in [(0xFFFFFFFF, "exceeds"), (584, "does not match")]:
        with pytest.raises(ParseError, match=word) as info:
            parse_quote(_patch(raw, 50, "<I", value))
        assert (info.value.field, info.value.offset) == ("body_size", 50)


def test_unknown_v5_body_type_is_unsupported(load):
    with pytest.raises(UnsupportedError, match="body_type 9"):
        parse_quote(_patch(load("dcap-qvl/tdx_quote_outdated"), 48, "<H", 9))


def test_wrong_version_and_tee_type(load):
    raw = load("dcap-qvl/tdx_quote")
    with pytest.raises(ParseError) as info:
        parse_quote(_patch(raw, 0, "<H", 7))
    assert (info.value.field, info.value.offset) == ("version", 0)
    with pytest.raises(ParseError) as info:
        parse_quote(_patch(raw, 4, "<I", 0x42))
    assert (info.value.field, info.value.offset) == ("tee_type", 4)
    with pytest.raises(UnsupportedError, match="not a TDX quote"):
        parse_quote(_patch(raw, 4, "<I", 0))


def test_non_hex_and_bad_base64_text():
    with pytest.raises(ParseError, match="not hex") as info:
        parse_quote("0x0400zz")
    assert info.value.offset == 6
    with pytest.raises(ParseError, match="odd number"):
        parse_quote("04000")
    with pytest.raises(ParseError, match="neither hex"):
        parse_quote("BAACAIEAAAA*")
    with pytest.raises(ParseError, match="padding or length"):
        parse_quote("BAACAIEAAAA")
    with pytest.raises(ParseError):
        parse_quote("   ")
    with pytest.raises(InputError):
        parse_quote(12345)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=800))
def test_random_bytes_raise_only_phalanb_errors(data):
    try:
        parse_quote(data)
    except PhalanbError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=4935), st.integers(min_value=1, max_value=255))
def test_single_byte_corruption_of_a_real_quote_never_escapes_as_a_python_error(pos, xor):
    raw = bytearray(_REAL)
    raw[pos] ^= xor
    try:
        parse_quote(bytes(raw))
    except PhalanbError:
        pass


from .conftest import TDX  # noqa: E402  (read once for the hypothesis tests above)

_REAL = (TDX / "dcap-qvl" / "tdx_quote").read_bytes()


def test_field_rows_unpack_as_tuples(load):
    q = parse_quote(load("dcap-qvl/tdx_quote"))
    rows = {name: (offset, size) for name, offset, size, _value, _meaning in q.fields()}
    assert rows["mr_td"] == (184, 48) and rows["rt_mr3"] == (520, 48)
