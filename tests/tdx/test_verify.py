"""Offline crypto chain, DCAP with stored collateral, the policy, and tampering — all on real quotes."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from phalanb.errors import InputError, ParseError, UnsupportedError
from phalanb.verdict import Status, Verdict
from phalanb.tdx import (
    INTEL_SGX_ROOT_CA_SHA256,
    TdxPolicy,
    TrustRoot,
    judge,
    load_collateral,
    parse_quote,
    verify_quote_offline,
    verify_with_collateral,
)

from .conftest import gt_params


def test_packaged_root_is_intel_sgx_root_ca_by_hash():
    root = TrustRoot.intel()
    assert hashlib.sha256(root.der).hexdigest() == INTEL_SGX_ROOT_CA_SHA256
    assert root.cert_sha256.upper().startswith("44A0196B") and root.cert_sha256.upper().endswith("FAB674D3")
    assert "Intel SGX Root CA" in root.subject


@pytest.mark.parametrize("entry", gt_params())
def test_offline_chain_passes_on_every_real_quote(entry, load):
    q = parse_quote(load(entry["file"]))
    result = verify_quote_offline(q, at=entry.get("verify_now"))
    assert [s.name for s in result.steps] == ["quote_signature", "qe_report_signature", "qe_report_data",
                                              "pck_chain"]
    assert result.ok, [s.reason for s in result.failed]
    assert [c.status for c in result.checks()] == [Status.PASS] * 3
    assert [c.id for c in result.checks()] == ["tdx.quote_signature", "tdx.qe_report", "tdx.pck_chain"]
    assert result.pck.fmspc.hex() == entry["fmspc"].lower()
    assert result.ca == entry["ca"]
    assert len(result.pck.cpu_svn) == 16 and len(result.pck.tcb_components) == 16


def test_offline_chain_passes_today_as_well(load):
    # PCK certificates are valid for years: the default time (now) must work for a 2025 quote.
    assert verify_quote_offline(load("dcap-qvl/tdx_quote")).ok


def test_intel_synthetic_sample_fails_against_the_pinned_root(load):
    result = verify_quote_offline(load("intel-qvl/quote.dat"))
    chain = result.step("pck_chain")
    assert not chain.ok
    assert "look-alike" in chain.reason and "Intel SGX Root CA" in chain.reason
    # Its own signatures are fine: only the root is wrong, and the result says exactly that.
    assert [s.name for s in result.failed] == ["pck_chain"]


def test_intel_synthetic_sample_passes_with_its_own_root_given_explicitly(tdx_dir, load):
    root = TrustRoot.from_bytes((tdx_dir / "intel-qvl" / "trustedRootCaCert.pem").read_bytes())
    chain = verify_quote_offline(load("intel-qvl/quote.dat"), root=root).step("pck_chain")
    # Chain signatures hold under the look-alike root; the synthetic certificates may be out of date.
    assert chain.ok or "valid" in chain.reason


@pytest.mark.parametrize("entry", gt_params(lambda e: "collateral" in e))
def test_dcap_result_at_verify_now_equals_the_table(entry, load, tdx_dir):
    q = parse_quote(load(entry["file"]))
    res = verify_with_collateral(q, tdx_dir / entry["collateral"], at=entry["verify_now"])
    expected = entry["verify_status"]
    checks = {c.id: c for c in judge(q, res)}
    if expected.startswith("ERROR: "):
        assert res.status is None and res.error == expected[len("ERROR: "):]
        assert not res.expired
        assert checks["tdx.tcb_status"].status is Status.FAIL
        assert "No matching TCB level" in checks["tdx.tcb_status"].reason
    else:
        assert res.status == expected and res.advisory_ids == entry["advisory_ids"]
        assert checks["tdx.tcb_status"].status is Status.PASS
    assert checks["tdx.debug_disabled"].status is Status.PASS


def test_expired_collateral_is_an_explained_skip_not_a_crash(load, tdx_dir):
    q = parse_quote(load("dcap-qvl/tdx_quote"))
    col = load_collateral(tdx_dir / "dcap-qvl/tdx_quote_collateral.json")
    for at in (1752919234 + 40 * 86400, 2_000_000_000, 1_600_000_000):
        res = verify_with_collateral(q, col, at=at)
        assert res.expired and res.status is None
        check = judge(q, res)[0]
        assert check.status is Status.SKIPPED
        assert "not valid at" in check.reason and "fetch fresh collateral" in check.reason
    verdict = Verdict(verify_quote_offline(q, at=2_000_000_000 - 10**8).checks() + judge(q, res))
    assert verdict.status == "incomplete"


def test_no_collateral_is_skipped():
    from phalanb.tdx.collateral import judge as j
    q = parse_quote((_TDX / "dcap-qvl/tdx_quote").read_bytes())
    assert j(q, None)[0].status is Status.SKIPPED


def test_collateral_round_trips_through_json_for_audit_bundles(tdx_dir, load):
    col = load_collateral(tdx_dir / "dcap-qvl/tdx_quote_collateral.json")
    again = load_collateral(col.to_json())
    assert again.data == col.data and again.source.startswith("file:")
    assert col.fmspc == "b0c06f000000"
    start, end, items = col.window()
    assert start <= 1752919234 <= end and set(items) == {"tcb_info", "qe_identity", "root_ca_crl", "pck_crl"}
    res = verify_with_collateral(load("dcap-qvl/tdx_quote"), again.to_dict(), at=1752919234)
    assert res.status == "UpToDate"


def test_bad_collateral_is_an_input_error(tmp_path):
    with pytest.raises(InputError):
        load_collateral('{"tcb_info": "x"}')
    with pytest.raises(InputError):
        load_collateral(tmp_path / "missing.json")


def test_policy_defaults_and_warnings():
    from phalanb.tdx.collateral import DcapResult
    q = parse_quote((_TDX / "dcap-qvl/tdx_quote").read_bytes())
    sw = DcapResult(at=0, root="intel", status="SWHardeningNeeded", advisory_ids=["INTEL-SA-00615"])
    assert judge(q, sw)[0].status is Status.FAIL  # default: UpToDate only
    relaxed = TdxPolicy().allowing("SWHardeningNeeded", "OutOfDate")
    checks = judge(q, sw, relaxed)
    assert checks[0].status is Status.WARNING and checks[0].required and "SWHardeningNeeded" in checks[0].reason
    assert Verdict(checks).status == "verified" and Verdict(checks).warnings
    rejected = relaxed.rejecting(["INTEL-SA-00615"])
    assert judge(q, sw, rejected)[0].status is Status.FAIL
    with pytest.raises(InputError):
        TdxPolicy().allowing("Revoked")
    with pytest.raises(InputError):
        TdxPolicy(accepted_statuses={"Fine"})


def test_debug_td_is_always_rejected(load):
    raw = bytearray(load("dcap-qvl/tdx_quote"))
    raw[48 + 120] |= 1  # td_attributes bit 0
    q = parse_quote(bytes(raw))
    from phalanb.tdx.collateral import DcapResult
    ok = DcapResult(at=0, root="intel", status="UpToDate")
    checks = {c.id: c for c in judge(q, ok, TdxPolicy().allowing("OutOfDate"))}
    assert checks["tdx.debug_disabled"].status is Status.FAIL and "DEBUG" in checks["tdx.debug_disabled"].reason


# ---- tampering ---------------------------------------------------------------------------------------------

def _failed_steps(raw: bytes, at=None) -> set[str]:
    try:
        result = verify_quote_offline(raw, at=at)
    except ParseError as exc:
        return {f"parse:{exc.field}"}
    except UnsupportedError as exc:  # e.g. version 4 -> 5 makes the body type nonsense: refused, not verified
        return {f"parse:{exc}"}
    return {s.name for s in result.failed}


@pytest.mark.parametrize("rel", ["dcap-qvl/tdx_quote", "dcap-qvl/tdx_quote_outdated"])
def test_flipping_any_byte_of_the_signed_region_fails_the_quote_signature(rel, load):
    raw = load(rel)
    q = parse_quote(raw)
    for pos in range(q.signed_length):
        bad = bytearray(raw)
        bad[pos] ^= 0x01
        failed = _failed_steps(bytes(bad))
        # A flip in the header's length-free fields still parses; a flip of version/tee_type is refused by the
        # parser (a clear error), everything else must fail step 1.
        assert "quote_signature" in failed or any(f.startswith("parse:") for f in failed), pos
    assert not _failed_steps(raw)


def test_flipping_bytes_of_signatures_keys_and_qe_report_names_the_step(load):
    raw = load("dcap-qvl/tdx_quote")
    q = parse_quote(raw)
    expect = {
        "signature": "quote_signature",
        "attestation_key": "quote_signature",   # and the QE binding
        "qe_report_signature": "qe_report_signature",
        "qe_auth_data": "qe_report_data",
    }
    for name, step in expect.items():
        f = q.field(name)
        for pos in range(f.offset, f.end, max(1, f.size // 16)):
            bad = bytearray(raw)
            bad[pos] ^= 0x80
            assert step in _failed_steps(bytes(bad)), (name, pos)
    for f in q.fields():
        if f.name.startswith("qe_report.") and f.size:
            for pos in range(f.offset, f.end, max(1, f.size // 4)):
                bad = bytearray(raw)
                bad[pos] ^= 0x01
                assert "qe_report_signature" in _failed_steps(bytes(bad)), (f.name, pos)


def _replace_cert(raw: bytes, q, index: int, der: bytes) -> bytes:
    old = q.pck_chain_pem[index].encode()
    body = base64.b64encode(der).decode()
    new = ("-----BEGIN CERTIFICATE-----\n" + "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
           + "\n-----END CERTIFICATE-----\n").encode()
    start = raw.index(old.rstrip(b"\n"))
    assert len(new.rstrip(b"\n")) == len(old.rstrip(b"\n"))  # same DER length, same PEM length
    return raw[:start] + new.rstrip(b"\n") + raw[start + len(old.rstrip(b"\n")):]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_flipping_a_byte_in_any_pck_chain_certificate_fails_naming_the_step(index, load):
    raw = load("dcap-qvl/tdx_quote")
    q = parse_quote(raw)
    der = x509.load_pem_x509_certificate(q.pck_chain_pem[index].encode()).public_bytes(serialization.Encoding.DER)
    for pos in range(4, len(der), len(der) // 24):
        bad = bytearray(der)
        bad[pos] ^= 0x01
        failed = _failed_steps(_replace_cert(raw, q, index, bytes(bad)), at=1752919234)
        assert failed & {"pck_chain", "qe_report_signature"} or any(f.startswith("parse:") for f in failed), \
            (index, pos, failed)


def test_dcap_also_rejects_a_tampered_quote(load, tdx_dir):
    raw = bytearray(load("dcap-qvl/tdx_quote"))
    raw[600] ^= 1  # inside report_data
    q = parse_quote(bytes(raw))
    res = verify_with_collateral(q, tdx_dir / "dcap-qvl/tdx_quote_collateral.json", at=1752919234)
    assert res.status is None and not res.expired
    assert judge(q, res)[0].status is Status.FAIL


from .conftest import TDX as _TDX  # noqa: E402


def test_verify_tdx_runs_every_check_in_order(load, tdx_dir, fixtures):
    import json as _json
    from phalanb.tdx import verify_tdx
    res = verify_tdx(load("dcap-qvl/tdx_quote"), collateral=tdx_dir / "dcap-qvl/tdx_quote_collateral.json",
                     at=1752919234)
    assert [c.id for c in res] == ["tdx.quote_signature", "tdx.qe_report", "tdx.pck_chain", "tdx.tcb_status",
                                   "tdx.debug_disabled"]
    assert Verdict(res.checks).status == "verified" and res.dcap.status == "UpToDate"
    r = _json.loads((fixtures / "reports/nanogpt-gemma-2026-06/attestation_report.json").read_text())
    res = verify_tdx(r["intel_quote"], event_log=r["event_log"], info=r["info"])
    by_id = {c.id: c.status for c in res}
    assert by_id["tdx.event_log"] is Status.PASS and by_id["app.compose_hash"] is Status.PASS
    assert by_id["tdx.tcb_status"] is Status.SKIPPED and Verdict(res.checks).status == "incomplete"


def test_collateral_of_another_platform_is_skipped_not_failed(load, tdx_dir):
    q = parse_quote(load("go-tdx-guest/ccel_cos-113-tdx-quote.dat"))
    res = verify_with_collateral(q, tdx_dir / "dcap-qvl/tdx_quote_collateral.json", at=1752919234)
    assert res.wrong_collateral
    check = judge(q, res)[0]
    assert check.status is Status.SKIPPED and "00806f050000" in check.reason


def test_fetching_from_an_unreachable_pccs_is_a_transport_error(load):
    from phalanb.errors import TransportError
    from phalanb.tdx import fetch_collateral_sync
    with pytest.raises(TransportError):
        fetch_collateral_sync(load("dcap-qvl/tdx_quote"), "http://127.0.0.1:9", timeout=20)
