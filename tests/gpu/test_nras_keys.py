"""Issue 12 item 2: NRAS tokens count only when signed by NVIDIA's keys (SPEC §9 "Whose keys").

A JWK is NVIDIA's when its key equals its ``x5c[0]`` certificate's and that certificate chains to the pinned
"NVIDIA Attestation Service GPU Intermediate 004" (SPKI SHA-256 fd32837f…e896). Every attack here re-signs the real
captured answer (reports/neardirect-qwen-2026-06) so that only the key differs, and shows it now fails closed."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from phalanb.gpu.nras import (CLOCK_SKEW, NVIDIA_NRAS_INTERMEDIATE_SPKI_SHA256, Jwks, JwksCache, jwk_of,
                              nvidia_nras_anchor, parse_nras_response, sign_es384, verify_nras)
from phalanb.policy import Policy
from phalanb.verdict import Status
from phalanb.vllm.verify import verify_report


def _iat(answer):
    return parse_nras_response(answer).overall.claims["iat"]


def _resign(answer, key, kid):
    """The same claims, every token signed by ``key`` (submods recomputed, so only the key differs)."""
    resp = parse_nras_response(answer)
    gpus = {name: sign_es384(tok.claims, key, kid) for name, tok in resp.gpus.items()}
    overall = dict(resp.overall.claims)
    overall["submods"] = {n: ["DIGEST", ["SHA-256", hashlib.sha256(t.encode()).hexdigest()]] for n, t in gpus.items()}
    return [["JWT", sign_es384(overall, key, kid)], gpus]


def _cert(subject_cn, key, issuer_name, issuer_key, *, ca):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "NVIDIA Corporation")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name or name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc))
            .not_valid_after(dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA384()))


@pytest.fixture(scope="module")
def near_facts(neardirect):
    from phalanb.gpu import gpu_facts, parse_payload

    return [gpu_facts(g) for g in parse_payload(neardirect["report"]["nvidia_payload"]).gpus]


@pytest.fixture(scope="module")
def fresh_key():
    return ec.generate_private_key(ec.SECP384R1())


def test_the_pinned_nras_intermediate_is_the_one_in_spec():
    anchor = nvidia_nras_anchor()
    assert anchor.spki_sha256 == NVIDIA_NRAS_INTERMEDIATE_SPKI_SHA256
    assert NVIDIA_NRAS_INTERMEDIATE_SPKI_SHA256 == ("fd32837f954e2c45db073105166dfe69"
                                                    "85ae0480bb113fba63b091a75affe896")  # SPEC §9
    assert "Intermediate 004" in anchor.certificate.subject.rfc4514_string()
    assert anchor.certificate.not_valid_after_utc.date() == dt.date(2029, 12, 8)


def test_every_captured_nvidia_jwk_is_authenticated(neardirect):
    jwks = Jwks(neardirect["jwks"])
    assert len(jwks) == len(neardirect["jwks"]["keys"]) and not jwks.skipped


def test_a_fresh_key_with_nvidias_issuer_is_not_nvidias(neardirect, fresh_key):
    forged = _resign(neardirect["nras_response"], fresh_key, "nv-eat-kid-forged")
    jwks = {"keys": [jwk_of(fresh_key.public_key(), "nv-eat-kid-forged")]}  # what a bundle or --jwks carries
    result = verify_nras(forged, jwks=jwks, expected_nonce=neardirect["nonce"], at=_iat(forged))
    token = result.check("nras.token")
    assert token.status is Status.FAIL and "not NVIDIA" in token.reason and "x5c" in token.reason
    assert result.check("nras.result").status is Status.SKIPPED  # the appraisal is not believed
    assert result.verdict().status != "verified"


def test_unauthenticated_tokens_pass_no_nras_check(neardirect, near_facts, fresh_key):
    forged = _resign(neardirect["nras_response"], fresh_key, "nv-eat-kid-forged")
    jwks = {"keys": [jwk_of(fresh_key.public_key(), "nv-eat-kid-forged")]}
    result = verify_nras(forged, jwks=jwks, expected_nonce=neardirect["nonce"], at=_iat(forged),
                         gpu_facts=near_facts)
    # The forged claims match the nonce and the GPUs; none of that is believed.
    for cid in ("nras.token", "nras.nonce", "nras.result", "nras.identity"):
        assert result.check(cid).status is not Status.PASS, cid
    assert "not believed" in result.check("nras.nonce").reason


def test_a_jwk_whose_key_differs_from_its_x5c_certificate_is_refused(neardirect, fresh_key):
    real = neardirect["jwks"]["keys"][0]
    kid = parse_nras_response(neardirect["nras_response"]).overall.kid
    forged = _resign(neardirect["nras_response"], fresh_key, kid)
    jwk = dict(jwk_of(fresh_key.public_key(), kid), x5c=real["x5c"])  # NVIDIA's genuine certificate chain
    result = verify_nras(forged, jwks={"keys": [jwk]}, expected_nonce=neardirect["nonce"], at=_iat(forged))
    assert result.check("nras.token").status is Status.FAIL
    assert "not the key of its own x5c[0]" in result.check("nras.token").reason
    assert result.check("nras.result").status is Status.SKIPPED


def test_a_look_alike_intermediate_with_nvidias_name_is_refused(neardirect, fresh_key):
    real_ica = x509.load_der_x509_certificate(base64.b64decode(neardirect["jwks"]["keys"][0]["x5c"][1]))
    fake_ica_key = ec.generate_private_key(ec.SECP384R1())
    fake_ica = (x509.CertificateBuilder().subject_name(real_ica.subject).issuer_name(real_ica.issuer)
                .public_key(fake_ica_key.public_key()).serial_number(real_ica.serial_number)
                .not_valid_before(real_ica.not_valid_before_utc).not_valid_after(real_ica.not_valid_after_utc)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(fake_ica_key, hashes.SHA384()))
    leaf = _cert("NVIDIA Attestation Service GPU GH100", fresh_key, fake_ica.subject, fake_ica_key, ca=False)
    forged = _resign(neardirect["nras_response"], fresh_key, "nv-eat-kid-lookalike")
    jwks = {"keys": [jwk_of(fresh_key.public_key(), "nv-eat-kid-lookalike", [leaf, fake_ica])]}
    result = verify_nras(forged, jwks=jwks, expected_nonce=neardirect["nonce"], at=_iat(forged))
    token = result.check("nras.token")
    assert token.status is Status.FAIL
    assert "does not lead to NVIDIA Attestation Service GPU Intermediate 004" in token.reason
    assert result.check("nras.result").status is Status.SKIPPED


def test_a_forged_jwks_in_a_saved_bundle_does_not_pass_nras(neardirect, fresh_key):
    forged = _resign(neardirect["nras_response"], fresh_key, "nv-eat-kid-forged")
    verdict = verify_report(neardirect["report"], nonce=bytes.fromhex(neardirect["nonce"]),
                            nras_response=forged, jwks={"keys": [jwk_of(fresh_key.public_key(), "nv-eat-kid-forged")]},
                            at=_iat(forged), policy=Policy(require_nras=True))
    assert verdict["nras.token"].status is Status.FAIL
    assert verdict["nras.result"].status is not Status.PASS
    assert verdict.status != "verified"


def test_simulated_nras_keys_count_only_under_simulated_trust(sim_gpus):
    from phalanb.gpu.sim import SIM_NRAS_ISSUER, simulated_nras_anchor
    from phalanb.gpu.roots import nras_anchor

    nonce = "42" * 32
    _status, answer = sim_gpus.appraise(sim_gpus.payload(nonce))
    assert nras_anchor(Policy(trust="simulated")).simulated and not nras_anchor(Policy()).simulated
    good = verify_nras(answer, jwks=sim_gpus.jwks(), expected_nonce=nonce, issuer=SIM_NRAS_ISSUER,
                       anchor=simulated_nras_anchor())
    assert good.check("nras.token").status is Status.PASS
    # The same JWKS under production trust, even with the issuer the tokens carry: not NVIDIA's keys.
    bad = verify_nras(answer, jwks=sim_gpus.jwks(), expected_nonce=nonce, issuer=SIM_NRAS_ISSUER)
    assert bad.check("nras.token").status is Status.FAIL and "not NVIDIA" in bad.check("nras.token").reason


def test_nras_allows_ten_seconds_of_clock_skew(fixtures):
    # field/neardirect-qwen-2026-03: the tokens' iat = nbf = capture time + 3 s; teep allows 10 s (SOURCE.md).
    base = fixtures / "field" / "neardirect-qwen-2026-03"
    answer = json.loads((base / "nras_response.json").read_text())
    jwks = json.loads((base / "nras_jwks.json").read_text())
    nonce = (base / "client_nonce.txt").read_text().strip()
    capture = 1774142948
    assert _iat(answer) == capture + 3
    result = verify_nras(answer, jwks=jwks, expected_nonce=nonce, at=capture)
    assert result.check("nras.token").status is Status.PASS, result.check("nras.token").reason
    assert result.check("nras.result").status is Status.PASS
    early = verify_nras(answer, jwks=jwks, expected_nonce=nonce, at=_iat(answer) - CLOCK_SKEW - 1)
    assert early.check("nras.token").status is Status.FAIL and "not valid before" in early.check("nras.token").reason


def test_nras_key_certificate_must_be_valid_at_the_clock(neardirect):
    # The captured key certificates are valid ~48 h: an answer "verified" a week later with a pinned clock
    # in the future of the key is refused, not only on exp.
    answer = neardirect["nras_response"]
    kid = parse_nras_response(answer).overall.kid
    entry = Jwks(neardirect["jwks"]).entry(kid)
    assert entry.valid_at(_iat(answer)) is None
    assert "not at the clock" in entry.valid_at(entry.not_after + 3600)


def test_jwks_cache_keeps_keys_by_kid_until_they_expire(neardirect):
    calls = []
    now = [float(_iat(neardirect["nras_response"]))]

    def fetch():
        calls.append(1)
        return neardirect["jwks"]

    cache = JwksCache(fetch=fetch, ttl=600, clock=lambda: now[0])
    kid = parse_nras_response(neardirect["nras_response"]).overall.kid
    assert cache.key(kid) is not None and len(calls) == 1
    assert cache.key(kid) is not None and len(calls) == 1  # cached by kid
    now[0] += 601                                           # the entry expired: one refetch
    assert cache.key(kid) is not None and len(calls) == 2
    now[0] += 10 * 86400                                    # past the key certificate's end: gone for good
    assert cache.key(kid) is None and kid not in cache


def test_jwks_cache_keeps_out_keys_that_are_not_nvidias(fresh_key):
    cache = JwksCache(fetch=lambda: {"keys": [jwk_of(fresh_key.public_key(), "forged")]})
    assert cache.key("forged") is None
    assert "x5c" in cache.jwks.skipped["forged"]


def test_nras_field_capture_neardirect_2026_03_holds_at_its_capture_time(fixtures):
    # fixtures/field/README.md: "everything binds; the NRAS tokens verify with the clock at the capture time".
    base = fixtures / "field" / "neardirect-qwen-2026-03"
    verdict = verify_report(json.loads((base / "attestation_report.json").read_text()),
                            nonce=bytes.fromhex((base / "client_nonce.txt").read_text().strip()),
                            collateral=json.loads((base / "collateral.json").read_text()),
                            nras_response=json.loads((base / "nras_response.json").read_text()),
                            jwks=json.loads((base / "nras_jwks.json").read_text()), at=1774142948,
                            policy=Policy(require_nras=True))
    for cid in ("nras.token", "nras.submods", "nras.nonce", "nras.result", "nras.identity"):
        assert verdict[cid].status is Status.PASS, (cid, verdict[cid].reason)
    assert not verdict.failed, verdict.summary()
