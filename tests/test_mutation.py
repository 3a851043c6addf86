"""Zero silent passes: a single-byte flip inside a signed region turns the result to failed (issue 8).

The real fixtures and a few recorded simulator replies, with bytes flipped in memory (the fixtures are never
written). What counts as signed:

- TDX quote: header and TD report ``[0:signed_length]`` (attestation key's signature), the signature and the
  attestation key (bound by the QE report's report_data), the QE report (PCK leaf's signature), the QE auth data
  (hashed into the QE report), every PCK certificate (its issuer's signature; the root against the pinned key),
  and the length/type fields that frame them. *Not* signed, and allowed to change: the padding after the quote and
  the line breaks or NUL between and after the PEM certificates.
- SPDM report: the request and the response up to the signature (the GPU's signature), the signature itself, and
  every certificate of the chain. Not signed: bytes after the signature (one real report carries one).
- Chat exchange: the request and response bytes (their sha256 is the signed text), the signed text and the
  signature value (as bytes: the case of its hex digits is spelling, not content).

This file flips a seeded sample of positions; ``scripts/fuzz_and_mutate.py`` flips every byte of every region.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib: make fuzzkit importable

import fuzzkit as fk  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")  # cryptography warns about the odd certificates flips make

PER_REGION = 40  # sampled positions per signed region (every region of every artefact gets some)


@pytest.fixture(scope="session")
def corpus(fixtures):
    return fk.Corpus(fixtures)


@pytest.fixture(scope="module")
def recorded():
    return fk.record_exchanges(n_stream=1, n_json=1, ed25519=True)


def _sample(rng: random.Random, region: fk.Region, k: int = PER_REGION) -> list[tuple[int, int]]:
    """(position, mask) pairs: the region's first and last byte always, the rest at random."""
    positions = {region.start, region.end - 1} | {rng.randrange(region.start, region.end)
                                                   for _ in range(min(k, len(region)))}
    return [(i, rng.choice(fk.FLIP_MASKS)) for i in sorted(positions)]


def _silent(judge, data: bytes, regions, rng) -> list[tuple]:
    """Flips in the signed regions whose result was not "failed" (a pass or an exception: both are findings)."""
    bad = []
    for r in regions:
        if not r.signed:
            continue
        for i, mask in _sample(rng, r):
            result = judge(fk.flip(data, i, mask))
            if result != "failed":
                bad.append((r.name, i, hex(mask), result))
    return bad


# --------------------------------------------------------------------------------------------------------------
# TDX quotes

def test_every_real_quote_verifies_offline_before_it_is_mutated(corpus):
    for seed in corpus.quotes:
        assert fk.QuoteJudge(seed).baseline == {"quote_signature", "qe_report_signature", "qe_report_data",
                                                "pck_chain"}, seed.name


@pytest.mark.parametrize("index", range(11))
def test_a_flip_in_a_signed_region_of_a_real_quote_fails(corpus, index):
    seed = corpus.quotes[index]
    regions = fk.quote_regions(seed.raw)
    assert sum(len(r) for r in regions) == len(seed.raw)  # the regions tile the quote: no byte is forgotten
    assert _silent(fk.QuoteJudge(seed), seed.raw, regions, random.Random(index)) == []


@pytest.mark.parametrize("name", fk.FIELD_QUOTES)
def test_a_flip_in_a_signed_region_of_a_field_shape_quote_fails(corpus, name):
    # Issue 12: the quotes of Tinfoil v2/v3, the Chutes evidence API and a NEAR AI Cloud gateway.
    seed = next(q for q in corpus.quotes if q.name == name)
    regions = fk.quote_regions(seed.raw)
    assert sum(len(r) for r in regions) == len(seed.raw)
    assert _silent(fk.QuoteJudge(seed), seed.raw, regions, random.Random(name)) == []


@pytest.mark.parametrize("index", range(len(fk.BOUND_FIELDS)),
                         ids=[".".join(map(str, f[1])) + "@" + f[0].split("/")[1] for f in fk.BOUND_FIELDS])
def test_a_flip_in_a_value_the_report_data_binds_fails(corpus, index):
    # Issue 12: a gateway's key, nonce and TLS fingerprint, Tinfoil v3's report_data inputs, a Chutes e2e key.
    source, path, encoding, cap = fk.BOUND_FIELDS[index]
    judge = fk.ReportFieldJudge(corpus, source, path, encoding)
    region = fk.Region(".".join(map(str, path)), 0, min(len(judge.data), cap or len(judge.data)))
    assert _silent(judge, judge.data, [region], random.Random(index)) == []


def test_quote_padding_is_not_signed_and_may_change(corpus):
    # Documented, not a weakness: bytes after the signature data are covered by nothing (dcap-qvl ignores them too).
    seed = next(q for q in corpus.quotes if q.name == "go-tdx-guest/ccel_cos-113-tdx-quote.dat")
    pad = next(r for r in fk.quote_regions(seed.raw) if r.name == "trailing_padding")
    assert len(pad) == 8000 - 4935
    assert fk.QuoteJudge(seed)(fk.flip(seed.raw, pad.start + 10, 0xFF)) == "passed"


@pytest.mark.parametrize("offset, mask, why", [
    (1843, 0x01, "an extension OID becomes a second basicConstraints: DuplicateExtension, not a ValueError"),
    (1302, 0x20, "the certificate version becomes 106: InvalidVersion, not a ValueError"),
    (1285, 0x01, "a line break in the PEM becomes a vertical tab, which the PEM decoder skipped"),
])
def test_pck_certificate_flips_that_once_crashed_or_passed_now_fail(corpus, offset, mask, why):
    seed = corpus.quotes[0]
    assert seed.name == "dcap-qvl/tdx_quote"
    region = next(r for r in fk.quote_regions(seed.raw) if r.start <= offset < r.end)
    assert region.name == "pck_chain.certificate[0]" and region.signed
    assert fk.QuoteJudge(seed)(fk.flip(seed.raw, offset, mask)) == "failed", why


def test_non_canonical_base64_padding_bits_in_a_pck_certificate_fail(corpus):
    # "…Ag==" and "…Ah==" decode to the same DER: a PEM decoder cannot tell them apart, yet the bytes differ.
    import base64
    import re

    seed = corpus.quotes[0]
    m = next(m for m in re.finditer(rb"-----BEGIN CERTIFICATE-----\n([A-Za-z0-9+/\n]*?)(==?)\n-----END", seed.raw))
    at = m.end(1) - 1  # the last base64 digit before the padding: its low bits are padding bits
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    twin = alphabet[alphabet.index(seed.raw[at]) ^ 1]
    data = seed.raw[:at] + bytes([twin]) + seed.raw[at + 1:]
    der = lambda raw: base64.b64decode(re.sub(rb"\s", b"", raw[m.start(1):m.end(2)]))  # noqa: E731
    assert der(data) == der(seed.raw)  # the very same certificate…
    assert fk.QuoteJudge(seed)(data) == "failed"  # …and still refused, because the quote's bytes changed


# --------------------------------------------------------------------------------------------------------------
# GPU evidence and certificate chains

def test_every_gpu_report_in_the_table_is_covered(corpus):
    # 10 records of the nvidia table pass (the invalid-signature sample already fails and is left out): 27 GPUs.
    assert len(corpus.gpus) == 27


def test_a_flip_in_a_signed_region_of_a_gpu_report_fails(corpus):
    bad, seen = [], set()
    for n, seed in enumerate(corpus.gpus):
        judge = fk.GpuJudge(seed)
        rng = random.Random(n)
        # Fewer positions per GPU than per quote: 27 GPUs, and the full matrix covers every byte of each.
        for r in fk.spdm_regions(seed.evidence):
            if r.signed:
                for i, mask in _sample(rng, r, k=12):
                    result = judge.evidence(fk.flip(seed.evidence, i, mask))
                    if result != "failed":
                        bad.append((seed.name, r.name, i, hex(mask), result))
        if seed.chain_pem not in seen:  # a chain several GPUs share is one artefact: flipped once
            seen.add(seed.chain_pem)
            for r in fk.chain_regions(seed.chain_pem):
                if r.signed:
                    for i, mask in _sample(rng, r, k=10):
                        result = judge.chain(fk.flip(seed.chain_pem, i, mask))
                        if result != "failed":
                            bad.append((seed.name, r.name, i, hex(mask), result))
    assert bad == []


def test_a_line_break_inside_a_gpu_certificate_cannot_change_silently(corpus):
    seed = corpus.gpus[0]
    cert = next(r for r in fk.chain_regions(seed.chain_pem) if r.signed)
    newline = seed.chain_pem.index(b"\n", cert.start + 30)
    assert fk.GpuJudge(seed).chain(fk.flip(seed.chain_pem, newline, 0x01)) == "failed"


def test_the_spdm_trailing_byte_is_not_signed(corpus):
    seed = next(g for g in corpus.gpus if g.name.startswith("trustee-coco-trailing-byte"))
    trailing = [r for r in fk.spdm_regions(seed.evidence) if not r.signed]
    assert [(r.name, len(r)) for r in trailing] == [("trailing", 1)]
    assert fk.GpuJudge(seed).evidence(fk.flip(seed.evidence, trailing[0].start, 0xFF)) == "passed"


# --------------------------------------------------------------------------------------------------------------
# Recorded simulator exchanges

def test_recorded_exchanges_verify_before_they_are_mutated(recorded):
    assert [r.status for r in recorded] == ["verified"] * 3
    assert {r.parsed.signature.signing_algo for r in recorded} == {"ecdsa", "ed25519"}


def test_a_flip_in_a_recorded_exchange_fails(recorded):
    bad = []
    for n, rec in enumerate(recorded):
        rng = random.Random(n)
        for region, data in rec.regions():
            for i, mask in _sample(rng, fk.Region(region, 0, len(data)), k=80):
                result = rec.judge(region, fk.flip(data, i, mask))
                if result != "failed":
                    bad.append((rec.name, region, i, hex(mask), result))
    assert bad == []


def test_the_shortcut_judge_agrees_with_verify_exchange_and_reverify(recorded):
    """The matrix re-checks a reply's own links against an attestation verified once (as the batch auditor does);
    here the full pipelines give the same answer on a sample."""
    import json

    from phalanb.audit.bundle import parse_bundle, reverify
    from phalanb.wire.exchange import Exchange
    from phalanb.vllm.verify import verify_exchange

    rng = random.Random(7)
    for rec in recorded:
        b = rec.parsed
        for region, data in rec.regions():
            i, mask = rng.randrange(len(data)), rng.choice(fk.FLIP_MASKS)
            mutated = fk.flip(data, i, mask)
            ex, sig = rec.mutated(region, mutated)
            full = verify_exchange(ex, sig, b.report, nonce=b.nonce, policy=b.policy, collateral=b.collateral,
                                   nras_response=b.nras_response, jwks=b.jwks, at=b.verified_at)
            assert full.status == "failed" == rec.judge(region, mutated), (rec.name, region, i)
            # And through a saved bundle, as an auditor meets it.
            d = json.loads(json.dumps(rec.bundle))
            d["exchange"] = Exchange.to_dict(ex)
            d["signature"] = sig.to_dict()
            again = reverify(parse_bundle(d), trust="simulated")
            assert again.verdict.status == "failed" and not again.same, (rec.name, region, i)
