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
# [Index](00_start_here.ipynb) · [← Back: reproduce an audit](07_reproduce_an_audit.ipynb) · (last notebook)
#
# # 08 · Failure gallery
#
# A verifier earns trust by how it fails. phalanb's simulator can misbehave on purpose, each fault reproducing
# something a real service, a proxy or an attacker can do. Here is every fault, the verdict (or error) it produces,
# and how to read it.
#
# **What you will learn**
# - which link of the chain each kind of misbehaviour breaks;
# - the difference between a *failed* verdict (evidence contradicts the claim), an *incomplete* one (something could
#   not be checked) and an error (the service did not answer);
# - that no fault ever ends in `verified`.
#
# This notebook always runs its own simulator (faults cannot be injected into a real service), whatever
# `PHALANB_BASE_URL` says.

# %%
import logging

import pandas as pd
from IPython.display import display

from phalanb.errors import PhalanbError
from phalanb.session import Session, Settings
from phalanb.sim import FAULTS, SimConfig, Simulator
from phalanb.widgets import table

# The simulator logs the connection it cuts on purpose (cut_stream); that traceback is expected, not news.
sim = Simulator(SimConfig(seed=8, ttft_ms=0, tokens_per_second=0)).start()
logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
print(sim)  # where it listens
display(table(list(FAULTS.items()), columns=["fault", "what the simulator then does"],
              title="Faults the simulator can inject"))

# %% [markdown]
# ## 1. A healthy baseline
#
# First with no fault at all, so every difference below is the fault's doing.

# %%
def attempt(faults):
    sim.set_faults(faults)
    # A short timeout: one fault makes the service hang, and waiting a minute teaches nothing more than one second.
    try:
        with Session(Settings(base_url=sim.base_url, model=sim.model, trust="simulated", timeout=1.0)) as session:
            return session.chat_and_verify("Tell me something verifiable.")
    except PhalanbError as exc:
        return exc


baseline = attempt([])
print(baseline.verdict.tally())
print("verdict:", baseline.verdict.summary())
assert baseline.verdict.status == "verified"

# %% [markdown]
# ## 2. Every fault

# %%
outcomes = {name: attempt([name]) for name in FAULTS}
sim.set_faults([])
rows = []
for name, out in outcomes.items():
    if isinstance(out, PhalanbError):
        rows.append({"fault": name, "outcome": "error", "what phalanb says": str(out)})
    else:
        v = out.verdict
        rows.append({"fault": name, "outcome": v.status,
                     "what phalanb says": ", ".join(c.id for c in (v.failed or v.skipped))})
gallery = pd.DataFrame(rows).set_index("fault")
display(table(gallery.reset_index(), title="Every fault, and the verdict it earns"))

# Faults that change the evidence (bytes, keys, nonces, measurements) must never end in "verified"; faults of the
# transport (errors, pauses, retries) leave the evidence intact and may end in a verified reply or an error — but
# never in a failed verdict that blames evidence which was fine.
EVIDENCE_FAULTS = {"tamper_response", "tamper_request", "wrong_signing_key", "ignore_nonce", "stale_quote",
                   "debug_td", "wrong_compose_hash", "gpu_nonce_mismatch"}
for name, outcome in gallery.outcome.items():
    if name in EVIDENCE_FAULTS:
        assert outcome == "failed", (name, outcome)
    else:
        assert outcome in ("verified", "error"), (name, outcome)

# %% [markdown]
# ## 3. How to read each one
#
# - **`tamper_response`** — the server signed the bytes it produced, but one byte changed on the way. Only
#   `response.hash` fails: the signature is genuine and bound, so *who* answered is proven; *what* you received is
#   not what they signed.
# - **`tamper_request`** — the signed request hash is not the hash of what you sent (a gateway rewrote the body, or
#   answered someone else's prompt). `request.hash` fails.
# - **`wrong_signing_key`** — the signature is valid, but made by a key the attestation does not name:
#   `signature.bound` fails. This is why recovery alone proves nothing.
# - **`ignore_nonce`** — the report is genuine but made for a nonce of the server's choosing: it could be a
#   recording. `report.nonce_fresh` fails (and the GPU and NRAS nonce checks with it).
# - **`cut_stream`** — the connection closed before `data: [DONE]`. phalanb stops with a `TransportError` saying
#   how many bytes arrived: a partial reply can match no signature (and a server whose stream broke may keep none).
# - **`stale_quote`** — the report *echoes* your nonce, but the quote inside was made for an older one: only the
#   CPU-signed `report_data` counts, so the binding/freshness checks fail.
# - **`debug_td`** — the TD runs with DEBUG set: the host can read its memory, so nothing inside is confidential.
#   `tdx.debug_disabled` fails, and no policy can accept it.
# - **`wrong_compose_hash`** — the app compose shown is not the one measured into RTMR3: `app.compose_hash` fails.
#   You would otherwise audit a document that is not what runs.
# - **`gpu_nonce_mismatch`** — the GPUs signed evidence for another nonce: old GPU evidence replayed beside a fresh
#   quote. `gpu.nonce` fails.
# - **`chat_500`, `signature_500`, `attestation_500`, `signature_missing`** — the service did not answer, so there
#   is nothing to verify: phalanb raises an error naming the endpoint rather than inventing a verdict. A missing
#   signature is common in real life: signatures expire (20 minutes today), and behind a load balancer the node you
#   ask may never have seen your chat.
# - **Transport faults** (`rate_limit`, `flaky_503`, `hang`, `truncated_json`, `slow_drip`, when the simulator
#   offers them) — answers that are late, refused once, cut, or dripped in pieces. The evidence itself is intact, so
#   the right outcome is a verified reply (phalanb retried, or reassembled the pieces byte for byte) or an error
#   that names what went wrong — never a *failed* verdict.

# %%
def failing(name):
    out = outcomes[name]
    return None if isinstance(out, PhalanbError) else {c.id for c in out.verdict.failed}


assert failing("tamper_response") == {"response.hash"}
assert failing("tamper_request") == {"request.hash"}
assert "signature.bound" in failing("wrong_signing_key")
assert "report.nonce_fresh" in failing("ignore_nonce")
assert all(isinstance(outcomes[n], PhalanbError) for n in ("chat_500", "signature_500", "attestation_500",
                                                             "signature_missing"))
expected = {"debug_td": "tdx.debug_disabled", "wrong_compose_hash": "app.compose_hash", "gpu_nonce_mismatch": "gpu.nonce"}
for name, check_id in expected.items():
    if name in outcomes:  # faults added to the simulator later are still in the table above
        assert check_id in failing(name), (name, failing(name))
if "stale_quote" in outcomes:
    assert failing("stale_quote") & {"report.report_data", "report.nonce_fresh"}, failing("stale_quote")

# %% [markdown]
# ## 4. One failure, up close
#
# The badges and the chain for the tampered response: click a red badge to see the two hashes it compared.

# %%
from phalanb.widgets import TrustChainView, VerdictBadges

tampered = outcomes["tamper_response"].verdict
badges = VerdictBadges(tampered)
badges.select("response.hash")
display(badges, TrustChainView(tampered, title="tamper_response"))
assert TrustChainView(tampered).links["response"] == "fail"

# %% [markdown]
# ## Check yourself
#
# 1. Two faults leave the signature perfectly valid yet fail the verdict. Which, and what does each prove about the
#    server?
# 2. Why is "the signature endpoint answered 404" an error and not a failed verdict?
# 3. Combine two faults (`attempt(["tamper_response", "ignore_nonce"])`): which checks fail now?
#
# Try them first. Then, to compare with a worked answer, type `solution()` in a new cell: the collapsed cell below
# only *defines* it, so Run All never gives the answer away.

# %% jupyter={"source_hidden": true} tags=["solution"]
def solution():
    """Question 3 worked out (the simulator keeps running until the kernel stops, so this works after Run All)."""
    both = attempt(["tamper_response", "ignore_nonce"])
    sim.set_faults([])
    failed = both.verdict.failed
    display(table([(c.id, c.reason) for c in failed], columns=["failed check", "reason"],
                  title="tamper_response + ignore_nonce"))
    assert {"response.hash", "report.nonce_fresh"} <= {c.id for c in failed}
    print("Both faults' checks fail side by side, each blaming its own link: a verdict lists every broken link, "
          "not just the first.")


# %%
# The simulator stops with the kernel (Kernel → Shut Down), so a solution can still use it after Run All.
assert sim.base_url.startswith("http://127.0.0.1")
