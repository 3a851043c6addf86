# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,jupyter,-all
#     notebook_metadata_filter: kernelspec,jupytext,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# [Index](00_start_here.ipynb) · [← Back: event log and the application](04_event_log_and_application.ipynb) · [Next: timing →](06_timing.ipynb)
#
# # 05 · GPU evidence
#
# The model runs on GPUs, so the CPU's quote is not enough: each NVIDIA GPU in confidential mode signs its own
# evidence — an SPDM `GET_MEASUREMENTS` request and response — over our nonce, with a key whose certificate chains to
# NVIDIA's Device Identity CA. NVIDIA's attestation service (NRAS) can also appraise the evidence and answer with
# signed tokens.
#
# **What you will learn**
# - the SPDM evidence byte by byte: request, measurement blocks, opaque data, signature;
# - what each GPU's checks are (nonce, signature, chain, FWID) and how they appear per GPU;
# - how to read NRAS tokens, and check them offline with a saved answer from a real 8-GPU node;
# - how phalanb appraises the measurements itself against NVIDIA's signed reference manifests (RIMs).

# %%
import json

import pandas as pd
from IPython.display import display

from phalanb.gpu import parse_payload, verify_payload
from phalanb.lab import fixtures_path
from phalanb.vllm.report import parse_report
from phalanb.session import Session, Settings
from phalanb.gpu.roots import gpu_root
from phalanb.widgets import table

FIXTURES = fixtures_path()
assert FIXTURES is not None, ("the real fixtures were not found: run `python -m phalanb.fixtures` in a terminal "
                              "(it fetches what their public sources hold, each checked by sha256, and names the rest), or set "
                              "PHALANB_FIXTURES to a copy")
with Session(Settings.from_env(model_server=True)) as session:
    print(session.settings.describe())
    result = session.chat_and_verify("How many GPUs serve you?")
    policy = session.policy
node = parse_report(result.attestation.report).select(result.signature.signing_address)
payload = parse_payload(node.nvidia_payload)
print(payload.description)
gpu = payload.gpus[0]
spdm = gpu.spdm

# %% [markdown]
# ## 1. The SPDM byte map
#
# The evidence is the request the driver sent (37 bytes, with our nonce at bytes 4..36) followed by the GPU's
# answer: a header, 64 measurement blocks (48-byte SHA-384 values of firmware and configuration), a random
# responder nonce, *opaque data* (driver and VBIOS versions, chip SKU, FWID…), and an ECDSA P-384 signature over all
# of it.

# %%
top_level = [f for f in spdm.byte_map() if not f.name.startswith(("MeasurementBlock", "OPAQUE"))]
display(table([(f.name, f.offset, f.size) for f in top_level], columns=["field", "offset", "size"],
              title=f"GPU-{gpu.index} SPDM evidence: the top-level fields (bytes)"))
assert spdm.raw[4:36] == spdm.requester_nonce == result.attestation.nonce

# %%
from phalanb.widgets import ByteMapExplorer

explorer = ByteMapExplorer(spdm.raw, spdm.byte_map(), title=f"GPU-{gpu.index} SPDM evidence")
explorer.select("request.Nonce")
display(explorer)
assert explorer.highlight == (4, 36)

# %% [markdown]
# ## 2. Measurements and opaque fields
#
# Each block is `index, spec, size` then a DMTF header and the value. Which values are the right ones is defined by
# NVIDIA's signed reference manifests (RIMs): section 5 compares them.

# %%
blocks = spdm.response.measurement_blocks
measurements = pd.DataFrame([(b.index, b.offset, b.dmtf_spec_measurement_value_size, b.value.hex()[:32] + "…")
                             for b in blocks], columns=["index", "offset", "bytes", "value"])
display(table(measurements.head(8), title=f"The first 8 of {len(blocks)} measurement blocks"))
opaque = pd.DataFrame([(f.name.removeprefix("OPAQUE_FIELD_ID_"), f.offset, f.size,
                        str(f.decoded if f.decoded is not None else f.value.hex())[:48]) for f in spdm.opaque.fields],
                      columns=["field", "offset", "size", "value"])
display(table(opaque, title="Opaque data"))
assert len(blocks) == spdm.response.number_of_blocks and all(len(b.value) == 48 for b in blocks)

# %% [markdown]
# ## 3. Signature and chain, per GPU
#
# For every GPU: the requester nonce must be ours; the signature at the end must verify with the leaf
# certificate's key over everything before it (located by offset, not by "the last 96 bytes"); the 5-certificate
# chain must end at the **pinned** root; and the FWID in the opaque data must appear in the leaf certificate.

# %%
gpus = verify_payload(payload, root=gpu_root(policy), expected_nonce=result.attestation.nonce)
per_gpu = pd.DataFrame([{"gpu": r.facts.index, "nonce": r.nonce.status.value, "signature": r.signature.status.value,
                         "chain": r.chain.status.value, "fwid": r.fwid.status.value,
                         "driver": r.facts.driver_version, "vbios": r.facts.vbios_version} for r in gpus.gpus])
display(table(per_gpu, title="Every GPU, checked"))
assert (per_gpu[["nonce", "signature", "chain", "fwid"]] == "pass").all().all()

# %% [markdown]
# Each GPU brings its own five certificates, leaf first; the last one must be the pinned root (here the simulated
# Device Identity CA, because the policy says `simulated`):

# %%
display(table([(i, cert.subject.rfc4514_string()) for i, cert in enumerate(gpu.certificates)],
              columns=["#", "certificate (leaf first)"], title=f"GPU-{gpu.index}'s chain"))
display(table([(gpu_root(policy).name, gpu_root(policy).sha256[:16] + "…")], columns=["pinned root", "sha256"]))
assert len(gpu.certificates) == 5

# %% [markdown]
# Change one measurement byte and the GPU's signature no longer verifies:

# %%
from phalanb.gpu import parse_evidence, verify_signature

flipped = bytearray(spdm.raw)
flipped[blocks[1].value_offset] ^= 0x01
assert not verify_signature(parse_evidence(bytes(flipped)), gpu.certificates[0]).ok

# %% [markdown]
# ## 4. A real 8-GPU node and its NRAS answer
#
# The fixtures hold a NEAR AI model node's attestation (2026-06-29) with the nonce that was sent, NVIDIA's NRAS
# answer to its GPU evidence, and NVIDIA's signing keys (JWKS) as published that day. Its certificates chain to the
# real NVIDIA Device Identity CA, pinned in phalanb.

# %%
from phalanb.gpu import (
    Jwks,
    nvidia_device_identity_ca,
    parse_nras_response,
    verify_nras,
)

base = FIXTURES / "reports/neardirect-qwen-2026-06"
real_nonce = json.loads((base / "manifest.json").read_text())["nonce_hex"]
real_payload = parse_payload(json.loads((base / "attestation_report.json").read_text())["nvidia_payload"])
nras = parse_nras_response((base / "nras_response.json").read_text())
jwks = Jwks(json.loads((base / "nras_jwks_at_capture.json").read_text()))
issued = nras.overall.claims["iat"]
real = verify_payload(real_payload, root=nvidia_device_identity_ca(), expected_nonce=real_nonce, at=issued)
display(table([(c.id, c.status.value, c.reason) for c in real.checks], columns=["check", "status", "reason"],
              title=real_payload.description))
assert all(c.status.value == "pass" for c in real.checks)

# %% [markdown]
# NRAS answers with one overall token and one token per GPU, all JWTs signed with ES384. Decoded (not yet trusted):

# %%
claims = pd.DataFrame([{"token": name, "alg": tok.header.get("alg"),
                        "measres": tok.claims.get("measres"), "secboot": tok.claims.get("secboot"),
                        "dbgstat": tok.claims.get("dbgstat"),
                        "nonce match": tok.claims.get("x-nvidia-gpu-attestation-report-nonce-match"),
                        "ueid": tok.claims.get("ueid")} for name, tok in nras.tokens()])
# The overall token carries no per-GPU claims: its cells show "—", like any claim a token does not make.
display(table(claims, title=f"NRAS tokens, decoded (signed with key {nras.overall.kid})"))
display(table([("overall result", nras.overall.claims["x-nvidia-overall-att-result"]),
               ("eat_nonce", nras.overall.claims["eat_nonce"])], columns=["overall token", "claim"]))

# %% [markdown]
# Now check them: every signature against NVIDIA's keys, the issuer, the validity window (the tokens expired long
# ago, so the clock is pinned to when they were issued), the nonce, that the overall token commits to each GPU token
# by hash, the per-GPU results, and that each token's `ueid` is the serial of that GPU's certificate.

# %%
checked = verify_nras(nras, jwks=jwks, expected_nonce=real_nonce, at=issued, gpu_facts=real.facts)
display(table([(c.id, c.status.value, c.reason) for c in checked.checks], columns=["check", "status", "reason"],
              title="NRAS, verified at the tokens' iat"))
assert all(c.status.value == "pass" for c in checked.checks)

# %% [markdown]
# The same tokens checked *today* are expired — and that is reported, not hidden:

# %%
late = verify_nras(nras, jwks=jwks, expected_nonce=real_nonce, gpu_facts=real.facts)
display(table([("nras.token", late.check("nras.token").status.value, late.check("nras.token").reason)],
              columns=["check", "status", "reason"], title="The same tokens, checked now"))
assert late.check("nras.token").status.value == "fail"

# %% [markdown]
# ## 5. Is this the firmware NVIDIA published? Reference manifests (RIMs)
#
# Signature, chain and nonce say *which GPU* said what, not that its firmware and driver are good. NVIDIA publishes
# a signed Reference Integrity Manifest (RIM) for every driver and VBIOS release: for each measurement index, the
# value(s) a genuine release produces. phalanb appraises a GPU against them itself, offline — the same comparison
# NRAS makes, but with every step shown:
#
# - the RIM ids come from the evidence's *signed* opaque data (driver version; project, SKU, chip SKU and VBIOS
#   version);
# - each RIM's XML signature must verify and its certificate chain reach NVIDIA's CoRIM root pinned in phalanb,
#   valid **at the time the evidence is judged** (NVIDIA re-signs RIMs every two years);
# - every *active* index of the driver and VBIOS RIMs must equal the GPU's measurement block (runtime index =
#   block number − 1).
#
# The real H100 report from NVIDIA's nvtrust repository (driver 550.90.07, VBIOS 96.00.9F.00.01) and its two RIMs,
# judged on 2025-10-24 — inside the RIMs' validity and the day NVIDIA's OCSP responder vouched for their signers:

# %%
import datetime as dt

from phalanb.gpu import parse_files
from phalanb.gpu.appraise import RimStore, appraise_evidence, appraise_payload

nvtrust = FIXTURES / "nvidia/nvtrust"
h100 = parse_files(nvtrust / "hopperAttestationReport.txt", nvtrust / "hopperCertChain.txt")
rims = RimStore.from_dir(FIXTURES / "nvidia/rims")
judged_at = dt.datetime(2025, 10, 24, 12, tzinfo=dt.timezone.utc)
appraisal = appraise_payload(h100, rims, at=judged_at)
h100_gpu = appraisal.gpus[0]
display(table([(v.role, v.rim_id, v.rim.version, v.signature.reason, v.chain.reason, v.revocation.reason)
               for v in h100_gpu.rims],
              columns=["RIM", "id (from the evidence)", "version", "signature", "chain", "OCSP"],
              title="Who signed the reference values"))
display(table(h100_gpu.frame(), title="Every active reference index against the GPU's measurement"))
display(table([(c.id, c.status.value, c.reason) for c in appraisal.checks], columns=["check", "status", "reason"]))
assert appraisal.check("gpu.measurements").passed and len(h100_gpu.rows) == 33

# %% [markdown]
# Index 35 is not judged: the GPU reports its video decoder NVDEC0 disabled (opaque field `NVDEC0_STATUS` = 0x55),
# and NVIDIA's verifiers then skip that index. `gpu.revocation` stays *skipped*: the saved OCSP answers for the
# GPU's own certificates are from another day (2025-08-21), so they say nothing about 2025-10-24.
#
# Now break one value on purpose: flip a byte of measurement block 8 (runtime index 7, owned by the driver RIM).
# The GPU's signature would no longer verify either — here we look only at what the appraisal says:

# %%
block = next(b for b in h100.gpus[0].spdm.response.measurement_blocks if b.index == 8)
broken = bytearray(h100.gpus[0].spdm.raw)
broken[block.value_offset] ^= 0x01
tampered = appraise_evidence(parse_evidence(bytes(broken)), h100.gpus[0].certificates, "HOPPER", rims,
                             at=judged_at)
display(table([r for r in tampered.table() if r["match"] is False], title="The mismatch, with both values"))
print(tampered.measurements.reason)
assert [r.index for r in tampered.mismatches] == [7] and tampered.measurements.ok is False

# %% [markdown]
# And the same genuine RIMs judged *today*: their signing certificates have expired since (NVIDIA re-signed the
# RIMs), so the appraisal does not pass and says why — judge evidence at the time it was taken, or fetch the
# current RIM (`phalanb gpu … --rims DIR --fetch-rims`).

# %%
today = appraise_payload(h100, rims)
print(today.check("gpu.measurements").reason)
assert today.check("gpu.measurements").status.value == "fail"

# %% [markdown]
# Online, a session does the same for every reply with `Settings(rims="fetch")` (`phalanb demo --rims fetch`): it
# fetches the RIMs and OCSP answers its GPUs need — from NVIDIA's RIM service and OCSP responder for a real service,
# from the simulator's own (under its simulated root, trusted only on this machine) here — and a saved bundle keeps
# them, so `phalanb verify` repeats the appraisal offline. Without it (the default) NRAS alone appraises.

# %%
with Session(Settings.from_env(model_server=True, rims="fetch")) as session:
    fetched = session.chat_and_verify("Whose firmware measured you?")
print(fetched.verdict["gpu.measurements"].reason)
print(fetched.verdict["gpu.revocation"].reason)
if session.simulated:  # a real service's verdict is its own: shown above, not asserted
    assert fetched.verdict["gpu.measurements"].passed and fetched.verdict["gpu.revocation"].passed

# %% [markdown]
# ## Check yourself
#
# 1. Which bytes of the evidence does the GPU sign, and why is the signature located by offset?
# 2. What would a *validly signed* NRAS failure look like (hint: `x-nvidia-error-details`), and which check fails?
# 3. Verify `real_payload` with `expected_nonce="00" * 32`: which check fails, for how many GPUs?
#
# Try them first. Then, to compare with a worked answer, type `solution()` in a new cell: the collapsed cell below
# only *defines* it, so Run All never gives the answer away.

# %% jupyter={"source_hidden": true} tags=["solution"]
def solution():
    """Question 3 worked out."""
    wrong = verify_payload(real_payload, root=nvidia_device_identity_ca(), expected_nonce="00" * 32, at=issued)
    display(table([(c.id, c.status.value, c.reason) for c in wrong.checks], columns=["check", "status", "reason"],
                  title='real_payload against expected_nonce="00" * 32'))
    failing = [r.facts.index for r in wrong.gpus if r.nonce.status.value == "fail"]
    assert wrong.check("gpu.nonce").status.value == "fail" and wrong.check("gpu.evidence_signature").passed
    print(f"gpu.nonce fails, for all {len(failing)} GPUs; every signature still verifies: the evidence is genuine, "
          "it was just made for another nonce.")


# %%
assert real.check("gpu.nonce").passed and checked.check("nras.token").passed
