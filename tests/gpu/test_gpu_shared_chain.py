"""The upper chain the GPUs of one board share is validated once per payload — and reused only for certificates
equal to it in every byte."""

from __future__ import annotations

import base64
import datetime
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from phalanb.gpu import parse_payload, verify_payload
from phalanb.gpu.verify import verify_chain
from phalanb.verdict import Status

AT = 1_790_000_000  # a fixed clock inside the certificates' validity, so a remembered chain could be reused
_BEGIN, _END = b"-----BEGIN CERTIFICATE-----\n", b"-----END CERTIFICATE-----\n"


def _with_flipped_certificate(report: dict, gpu: int, cert: int) -> dict:
    """The payload with one byte of one certificate of one GPU flipped (inside its signature value, so the
    certificate still parses and only the cryptography can tell)."""
    payload = json.loads(report["nvidia_payload"])
    item = payload["evidence_list"][gpu]
    certs = parse_payload({"evidence_list": [item]}).gpus[0].certificates
    ders = [bytearray(c.public_bytes(Encoding.DER)) for c in certs]
    ders[cert][-5] ^= 0x01
    x509.load_der_x509_certificate(bytes(ders[cert]))  # still a certificate
    pem = b"".join(_BEGIN + base64.encodebytes(bytes(d)) + _END for d in ders)
    item["certificate"] = base64.b64encode(pem).decode()
    return payload


def test_the_eight_gpus_share_the_upper_three_certificates(neardirect):
    gpus = parse_payload(neardirect["report"]["nvidia_payload"]).gpus
    assert len({g.certificates[2:] for g in gpus}) == 1 and len({g.certificates[:2] for g in gpus}) == 8


def test_validating_the_shared_upper_chain_once_gives_every_gpu_the_same_result(neardirect, nvidia_root):
    p = parse_payload(neardirect["report"]["nvidia_payload"])
    result = verify_payload(p, root=nvidia_root, expected_nonce=neardirect["nonce"])
    assert result.check("gpu.cert_chain").status is Status.PASS
    at = datetime.datetime.fromisoformat(result.gpus[0].chain.detail["validated_at"])
    for g, r in zip(p.gpus, result.gpus):
        alone = verify_chain(g.certificates, nvidia_root, at=at)  # a full walk of its own
        assert (r.chain.ok, r.chain.reason) == (alone.ok, alone.reason)


@pytest.mark.parametrize("gpu", [0, 5])
@pytest.mark.parametrize("cert", [2, 3], ids=["provisioner-ica", "identity-ca"])
def test_a_flipped_byte_in_a_shared_certificate_is_never_covered_by_the_validated_chain(neardirect, nvidia_root,
                                                                                       gpu, cert):
    good = verify_payload(parse_payload(neardirect["report"]["nvidia_payload"]), root=nvidia_root,
                          expected_nonce=neardirect["nonce"], at=AT)
    assert good.check("gpu.cert_chain").status is Status.PASS  # its upper chain is remembered now
    payload = _with_flipped_certificate(neardirect["report"], gpu, cert)
    result = verify_payload(parse_payload(payload), root=nvidia_root, expected_nonce=neardirect["nonce"], at=AT)
    chain = result.check("gpu.cert_chain")
    assert chain.status is Status.FAIL and chain.reason.startswith(f"GPU-{gpu}:"), chain.reason
    per_gpu = chain.evidence["gpus"]
    assert [k for k, v in per_gpu.items() if v["status"] == "fail"] == [f"GPU-{gpu}"]
    assert result.verdict().status == "failed"


def test_an_upper_chain_remembered_at_one_time_is_validated_again_at_another(neardirect, nvidia_root):
    p = parse_payload(neardirect["report"]["nvidia_payload"])
    assert verify_payload(p, root=nvidia_root, expected_nonce=neardirect["nonce"], at=AT).verdict().status == \
        "verified"
    ica = p.gpus[0].certificates[2]
    earlier = ica.not_valid_before_utc.timestamp() - 86400  # before the Provisioner ICA was issued
    chain = verify_payload(p, root=nvidia_root, expected_nonce=neardirect["nonce"], at=earlier).check("gpu.cert_chain")
    assert chain.status is Status.FAIL
