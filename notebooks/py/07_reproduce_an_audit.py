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
# [Index](00_start_here.ipynb) · [← Back: timing](06_timing.ipynb) · [Next: failure gallery →](08_failure_gallery.ipynb)
#
# # 07 · Reproduce an audit
#
# A verification you cannot repeat is an anecdote. An **audit bundle** is one JSON file holding everything needed to
# verify a reply again, offline, years later: the exact request and response bytes, the signature, the attestation
# report with the nonce we sent, the collateral and NRAS answer that were fetched, the trust policy, the time, and
# the verdict reached then. It never holds the API key.
#
# **What you will learn**
# - to load a bundle and re-verify it offline, getting the same verdict;
# - that editing anything in it — bytes, or the recorded verdict itself — is caught;
# - to audit a whole folder of bundles with a progress bar and a summary table;
# - what real reports from the fixtures earn when audited offline.

# %%
import json
from pathlib import Path

import pandas as pd
from IPython.display import display

from phalanb.audit.bundle import load_bundle, parse_bundle, reverify
from phalanb.vllm.signatures import fetch_signature
from phalanb.widgets import table

shipped = Path("data") / "sim-reply.phalanb.json"
bundle = load_bundle(shipped)
display(table([("file", shipped.name), ("recorded verdict (shown, never believed)", bundle.recorded_verdict["status"]),
               ("verified at (unix time)", bundle.verified_at), ("endpoint", bundle.endpoint)],
              columns=["audit bundle", ""], title=repr(bundle)))

# %% [markdown]
# This bundle ships with the notebooks. It was recorded from phalanb's simulator (so its roots are the simulated
# ones, and it says so). Nothing below touches the network.
#
# ## 1. Re-verify offline
#
# `reverify` runs the very same `verify_exchange` as the live path, at the time of the original verification, and
# compares the new verdict with the recorded one — which is shown, never believed. What to trust is the
# auditor's choice, never the bundle's: by default Intel's and NVIDIA's production roots. This bundle came from
# the simulator, so we say `trust="simulated"` out loud (and first see what production trust makes of it).

# %%
as_production = reverify(bundle)
print(as_production.explain())
assert as_production.verdict.status == "failed"  # simulator evidence never passes as real hardware

again = reverify(bundle, trust="simulated")
print(again.verdict.table())
print(again.explain())
assert again.same and again.verdict.status == "verified"

# %% [markdown]
# ## 2. Tamper, and watch it fail
#
# Three edits an adversary (or an accident) might make: one byte of the reply, the nonce the report was made for,
# and the recorded verdict itself.

# %%
import base64

raw = json.loads(shipped.read_text())


def edited(change):
    data = json.loads(json.dumps(raw))
    change(data)
    return reverify(parse_bundle(data), trust="simulated")


def flip_reply(d):
    body = bytearray(base64.b64decode(d["exchange"]["response_b64"]))
    body[100] ^= 0x01
    d["exchange"]["response_b64"] = base64.b64encode(bytes(body)).decode()


def other_nonce(d):
    d["attestation"]["nonce"] = "00" * 32


def edit_recorded_check(d):
    d["verdict"]["checks"][1]["status"] = "fail"  # the stored checks now disagree with the stored status


tampered = {"one reply byte flipped": edited(flip_reply), "another nonce": edited(other_nonce),
            "recorded verdict edited": edited(edit_recorded_check)}
summary = pd.DataFrame([{"edit": k, "verdict now": r.verdict.status, "failing": ", ".join(c.id for c in r.verdict.failed),
                         "same as recorded": r.same} for k, r in tampered.items()])
display(table(summary, title="Edited bundles, re-verified"))
assert tampered["one reply byte flipped"].verdict["response.hash"].status.value == "fail"
assert tampered["another nonce"].verdict["report.nonce_fresh"].status.value == "fail"
assert not tampered["recorded verdict edited"].same  # the edit is reported…
assert tampered["recorded verdict edited"].verdict.status == "verified"  # …and the evidence still decides

# %% [markdown]
# ## 3. Audit a folder
#
# Replies signed by one node share one attestation, and checking it costs far more than checking a signature, so
# `phalanb.audit.batch.audit` verifies each distinct attestation once and each reply's own links in parallel. Let us make
# a folder: the shipped bundle, a few fresh replies from the live service (simulator by default), and one tampered
# copy.

# %%
import tempfile

from phalanb.session import Session, Settings

folder = Path(tempfile.mkdtemp(prefix="phalanb-audit-"))
(folder / "00-shipped.json").write_text(shipped.read_text())
with Session(Settings.from_env(model_server=True)) as session:
    print(session.settings.describe())
    for i in range(5):
        session.chat_and_verify(f"Audit me, reply {i}.").save(folder / f"{i + 1:02d}-live.json")
bad = json.loads(shipped.read_text())
flip_reply(bad)
(folder / "99-tampered.json").write_text(json.dumps(bad))
display(table([(p.name, p.stat().st_size) for p in sorted(folder.iterdir())], columns=["file", "bytes"],
              title=f"The folder to audit: {folder}"))

# %%
from phalanb.audit.batch import audit

audited = audit([folder], workers=1, progress=True, trust="simulated")
display(table(audited[["source", "verdict", "failing", "recorded"]].assign(
    source=audited.source.map(lambda s: Path(s).name)), title="One row per reply"))
counts = audited.verdict.value_counts()
display(table(list(counts.items()), columns=["verdict", "replies"]))
assert counts.get("verified") == 6 and counts.get("failed") == 1
assert audited.loc[audited.source.str.endswith("99-tampered.json"), "failing"].item() == "response.hash"

# %% [markdown]
# ### Thousands of replies: one batch file
#
# Replies that share one attestation can also travel as one batch file, the attestation written once in its
# header. A `.pbatch` file is phalanb's framed batch: the same records as a `.jsonl` batch, but each record's exact
# bytes are stored raw beside its JSON, so a worker slices them out instead of decoding base64 (about a quarter
# faster; `benchmarks/bench_batch.py` measures it). The workers read their own share of the file, and every length
# in it is checked against what holds it.

# %%
from phalanb.audit.batch import write_batch

with Session(Settings.from_env(model_server=True)) as session:
    first = session.chat_and_verify("A batch of replies, number 0.")
    replies = [(first.exchange, first.signature)]
    for i in range(1, 20):
        exchange = session.client.chat(f"A batch of replies, number {i}.")
        replies.append((exchange, fetch_signature(session.client, exchange.chat_id)))
batch_file = write_batch(folder.parent / f"{folder.name}-replies.pbatch", report=first.attestation.report,
                         nonce=first.attestation.nonce, policy=first.policy, verified_at=first.verified_at,
                         collateral=first.online.collateral, nras_response=first.online.nras_response,
                         jwks=first.online.jwks, replies=replies)
batch_rows = audit([batch_file], progress=False, trust="simulated")
display(table(list(batch_rows.verdict.value_counts().items()), columns=["verdict", "replies"],
              title=f"{batch_file.name}: {batch_file.stat().st_size:,} bytes, one attestation, 20 replies"))
assert len(batch_rows) == 20 and (batch_rows.verdict == "verified").all()

# %% [markdown]
# Break it: cut the last 100 bytes off, as an interrupted copy would. The audit does not guess at what is missing;
# it names the field and the byte where the file stops making sense.

# %%
from phalanb.errors import PhalanbError

cut_file = batch_file.with_name(f"{folder.name}-cut.pbatch")
cut_file.write_bytes(batch_file.read_bytes()[:-100])
try:
    audit([cut_file], progress=False, trust="simulated")
    raise AssertionError("a cut batch must not audit")
except PhalanbError as exc:
    print(exc)
    assert exc.offset is not None and exc.offset < cut_file.stat().st_size

# %% [markdown]
# ## 4. Real reports, audited offline
#
# The fixtures hold attestation reports captured from live services. Audited offline with what was captured beside
# them, two lessons appear:
#
# - the NEAR AI node (2026-06), judged as the service it came from (`Policy(service="near-ai-cloud")`: without a
#   service profile phalanb could not place the deployment), passes every check that can be made offline — but no
#   Intel collateral was captured, so its TCB status is *skipped* and the verdict is **incomplete**, never "verified";
# - the NanoGPT deployment (2026-03) ignored the client's nonce: the quote is genuine, but it could be a replay,
#   so freshness **fails**.

# %%
from phalanb.gpu import parse_nras_response
from phalanb.lab import fixtures_path
from phalanb.policy import Policy
from phalanb.vllm.verify import verify_report

FIXTURES = fixtures_path()
assert FIXTURES is not None, ("the real fixtures were not found: run `python -m phalanb.fixtures` in a terminal "
                              "(it fetches what their public sources hold, each checked by sha256, and names the rest), or set "
                              "PHALANB_FIXTURES to a copy")
near = FIXTURES / "reports/neardirect-qwen-2026-06"
near_nras = json.loads((near / "nras_response.json").read_text())
near_verdict = verify_report(json.loads((near / "attestation_report.json").read_text()),
                             nonce=bytes.fromhex(json.loads((near / "manifest.json").read_text())["nonce_hex"]),
                             nras_response=near_nras, jwks=json.loads((near / "nras_jwks_at_capture.json").read_text()),
                             at=parse_nras_response(near_nras).overall.claims["iat"],
                             policy=Policy(service="near-ai-cloud"))
nano = FIXTURES / "reports/nanogpt-gemma-2026-03"
nano_verdict = verify_report(json.loads((nano / "attestation_report.json").read_text()),
                             nonce=bytes.fromhex((nano / "client_nonce.txt").read_text().strip()))
display(table([(name, v.status, v.tally(), v.summary().split(": ", 1)[-1])
               for name, v in (("neardirect-qwen-2026-06", near_verdict), ("nanogpt-gemma-2026-03", nano_verdict))],
              columns=["report", "verdict", "checks", "why"], title="Real reports, audited offline"))
assert near_verdict.status == "incomplete" and [c.id for c in near_verdict.skipped] == ["tdx.tcb_status"]
assert nano_verdict["report.nonce_fresh"].status.value == "fail" and nano_verdict["tdx.quote_signature"].passed

# %% [markdown]
# ## Check yourself
#
# 1. Why is the recorded verdict inside a bundle never trusted on its own?
# 2. A bundle re-verified five years later fails `tdx.pck_chain` because a certificate expired. Which clock should
#    an auditor use, and why does `reverify` default to the original verification time?
# 3. Add Intel collateral to the NEAR report's audit (`collateral=…`): which verdict would you then expect?
#
# Try them first. Then, to compare with a worked answer, type `solution()` in a new cell: the collapsed cell below
# only *defines* it, so Run All never gives the answer away.

# %% jupyter={"source_hidden": true} tags=["solution"]
def solution():
    """Worked answers, from the bundle and the reports above."""
    forged = edited(edit_recorded_check)
    print("1. Whoever wrote the bundle could write any verdict into it. reverify recomputes every check from the",
          f"evidence and compares: the bundle whose recorded check was edited now reads {forged.verdict.status!r},",
          "and the difference is reported:", "; ".join(forged.differences)[:160], "…")
    print("2. The original verification time: the evidence was judged then, with the certificates valid then.",
          "Re-verifying at that time reproduces the verdict; re-verifying 'now' (--at now) answers another question",
          "— what has expired or been revoked since — and an auditor should ask both, knowingly.")
    print("3. Only tdx.tcb_status was skipped:", [c.id for c in near_verdict.skipped], "— with Intel's collateral",
          "for that date it is judged too, so the verdict would be 'verified' if the platform was up to date then,",
          "'failed' if its TCB was revoked or out of date beyond what the policy accepts.")
    assert forged.verdict.status == "verified" and not forged.same

# %%
assert reverify(load_bundle(shipped), trust="simulated").verdict.status == "verified"
assert b"Bearer" not in shipped.read_bytes() and b"sk-" not in shipped.read_bytes()  # bundles never hold the key
