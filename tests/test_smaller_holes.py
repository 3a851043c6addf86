"""Issue 12 item 9: weak ed25519 keys, a record that contradicts its signer, a closed pipe, GPU measurement blocks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from phalanb.cli import main
from phalanb.ed25519 import SMALL_ORDER_POINTS, check_public_key, is_small_order
from phalanb.errors import ParseError, SignatureFormatError
from phalanb.vllm.signatures import SignatureRecord, check_signature, recover_signer
from phalanb.verdict import Status
from phalanb.vllm.verify import verify_exchange

_P = 2**255 - 19


# --- ed25519 -------------------------------------------------------------------------------------------------

def test_ed25519_small_order_points_are_the_eight_torsion_points():
    assert len(set(SMALL_ORDER_POINTS)) == 8
    assert bytes(32) in SMALL_ORDER_POINTS                       # all zero
    assert (1).to_bytes(32, "little") in SMALL_ORDER_POINTS      # the identity


@pytest.mark.parametrize("point", SMALL_ORDER_POINTS, ids=lambda p: p.hex()[:8])
def test_ed25519_small_order_keys_are_refused(point):
    with pytest.raises(ParseError) as err:
        check_public_key(point)
    assert "small-order" in str(err.value)


def test_ed25519_small_order_key_cannot_sign_every_message():
    # The attack: under the identity key, R = S·B with S = 0 (R = identity) verifies for any message in
    # cofactored/loose verifiers. phalanb refuses the key before looking at the signature.
    identity = (1).to_bytes(32, "little")
    forged = (1).to_bytes(32, "little") + bytes(32)  # R = identity, S = 0
    for text in ("a" * 64 + ":" + "b" * 64, "anything at all"):
        with pytest.raises(SignatureFormatError) as err:
            recover_signer(text, forged.hex(), "ed25519", public_key=identity.hex())
        assert "small-order" in str(err.value)
    check, signer = check_signature(SignatureRecord(text="x", signature=forged.hex(), signing_algo="ed25519",
                                                    signing_address=identity.hex()))
    assert check.status is Status.FAIL and signer is None


def test_ed25519_non_canonical_keys_are_refused():
    for y in (_P, _P + 1, 2**255 - 1):                            # y ≥ p: a second spelling of a point
        raw = y.to_bytes(32, "little")
        with pytest.raises(ParseError):
            check_public_key(raw)
    assert is_small_order((_P + 1).to_bytes(32, "little"))        # = identity, spelled y + p


def test_ed25519_ordinary_keys_pass_and_still_verify():
    key = Ed25519PrivateKey.generate()
    pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    check_public_key(pub)
    sig = key.sign(b"hello").hex()
    assert recover_signer("hello", sig, "ed25519", public_key=pub.hex()) == pub.hex()
    with pytest.raises(ParseError):
        check_public_key(pub[:31])


# --- the record's own signing_address ------------------------------------------------------------------------

def test_signature_record_address_that_is_not_the_signer_is_a_warning(fixtures):
    base = fixtures / "field" / "near-docs-sig-llama-2025-12"
    vector = json.loads((base / "signature_vector.json").read_text())
    record = SignatureRecord.from_dict(vector)
    verdict = verify_exchange(None, record, None)
    check = verdict["signature.record_address"]
    assert check.status is Status.WARNING
    assert "0x1d58EE32e9eB327c074294A2b8320C47E33b9316" in check.reason
    assert "0x7D5A20391452d3bb2c32B1a7C49B948c1D171Ee0" in check.reason
    assert check.evidence["signer"] == "0x7D5A20391452d3bb2c32B1a7C49B948c1D171Ee0"
    assert verdict["signature.valid"].evidence["signer"] == "0x7D5A20391452d3bb2c32B1a7C49B948c1D171Ee0"


def test_signature_record_address_that_is_the_signer_adds_no_warning(fixtures):
    base = fixtures / "field" / "near-docs-sig-llama-2025-12"
    vector = dict(json.loads((base / "signature_vector.json").read_text()))
    vector["signing_address"] = "0x7d5a20391452d3bb2c32b1a7c49b948c1d171ee0"
    verdict = verify_exchange(None, SignatureRecord.from_dict(vector), None)
    assert "signature.record_address" not in [c.id for c in verdict.checks]


# --- a closed pipe -------------------------------------------------------------------------------------------

def _run_into(stdout, args):
    return subprocess.run([sys.executable, "-m", "phalanb.cli", *args], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def test_cli_exits_quietly_with_the_verdicts_code_on_a_closed_pipe(fixtures):
    args = ["report", str(fixtures / "reports" / "neardirect-qwen-2026-06" / "attestation_report.json"),
            "--at", "1782698794"]
    full = _run_into(subprocess.PIPE, args)
    assert full.stdout and full.returncode in (0, 1, 3)
    read_end, write_end = os.pipe()
    os.close(read_end)                      # `| head -0`: the reader is gone before the first line
    try:
        closed = _run_into(write_end, args)
    finally:
        os.close(write_end)
    assert closed.stderr == full.stderr, closed.stderr  # no traceback, no "Exception ignored … BrokenPipeError"
    assert closed.returncode == full.returncode        # still the verdict's code


# --- phalanb gpu --json ---------------------------------------------------------------------------------------

def test_gpu_json_lists_each_gpus_measurement_blocks(fixtures, capsys):
    from phalanb.gpu import parse_payload

    base = fixtures / "reports" / "neardirect-qwen-2026-06"
    report = json.loads((base / "attestation_report.json").read_text())
    main(["gpu", str(base / "attestation_report.json"), "--json"])
    out = json.loads(capsys.readouterr().out)
    payload = parse_payload(report["nvidia_payload"])
    assert len(out["gpus"]) == len(payload.gpus) == 8
    for row, gpu in zip(out["gpus"], payload.gpus):
        blocks = row["measurements"]
        assert len(blocks) == len(gpu.spdm.measurements) == 64
        assert blocks["1"] == gpu.spdm.measurements[1].hex() and len(blocks["1"]) == 96  # SHA-384 values
