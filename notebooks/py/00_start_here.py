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
# **Index** · [Next: chat and exact bytes →](01_chat_and_exact_bytes.ipynb)
#
# # 00 · Start here: one verified reply
#
# A confidential LLM service runs the model inside an Intel TDX virtual machine with NVIDIA GPUs in confidential
# mode. It signs every reply with a key that was born inside that machine, and it publishes an *attestation
# report* proving which machine holds the key. phalanb checks the whole chain, link by link.
#
# **What you will learn here**
# - where phalanb connects (the simulator by default, a real service by changing one setting);
# - how one chat becomes one *verdict* made of named checks;
# - the trust chain as a picture, and what happens to it when a single byte changes.

# %% [markdown]
# ## The notebooks
#
# | | notebook | the link of the chain it explains |
# |---|---|---|
# | 00 | **start here** (this one) | the whole chain at a glance |
# | 01 | [chat and exact bytes](01_chat_and_exact_bytes.ipynb) | what exactly gets hashed, and why re-serialising breaks it |
# | 02 | [hashing and signatures](02_hashing_and_signatures.ipynb) | the signed text, EIP-191 recovery, ed25519 |
# | 03 | [attestation and the TDX quote](03_attestation_and_tdx_quote.ipynb) | nonce, report_data, the quote byte by byte, Intel's chain |
# | 04 | [event log and the application](04_event_log_and_application.ipynb) | RTMR replay, compose hash, what the app is |
# | 05 | [GPU evidence](05_gpu_evidence.ipynb) | SPDM measurements, NVIDIA's chain, NRAS tokens |
# | 06 | [timing](06_timing.ipynb) | latency, and how long a signature stays retrievable |
# | 07 | [reproduce an audit](07_reproduce_an_audit.ipynb) | bundles, offline re-verification, batch audits |
# | 08 | [failure gallery](08_failure_gallery.ipynb) | every fault the simulator can inject and the verdict it earns |

# %% [markdown]
# ## 1. Where are we connecting?
#
# phalanb reads its settings from the environment:
#
# - `PHALANB_BASE_URL` — the service. **Unset: phalanb's embedded simulator** on 127.0.0.1 (no key, no network).
#   Set it to e.g. `https://api.red-pill.ai/v1` to talk to a real service: that is the one setting to change.
# - `PHALANB_MODEL` — the model (unset: the first one the service lists).
# - `PHALANB_API_KEY` (or `REDPILL_API_KEY`) — the key; it is never printed. You can also paste it into the
#   password field below instead.
#
# The simulator signs and attests exactly like the real services, but with **simulated roots of trust**: a pass
# against it shows that phalanb's checks work, not that real Intel or NVIDIA hardware answered. Every verdict
# says so.

# %%
from IPython.display import display

from phalanb.session import Session
from phalanb.widgets import SettingsPanel, table

panel = SettingsPanel()
display(panel)
settings = panel.settings()
print(settings.describe())

# %% [markdown]
# The settings never show the key itself — only whether one is set and where it came from:

# %%
shown = settings.describe() + repr(settings) + repr(settings.api_key) + panel.status.value
assert settings.api_key is None or settings.api_key.reveal() not in shown
session = Session(settings)
display(table([("endpoint", session.settings.base_url or "phalanb's embedded simulator"),
               ("model", session.settings.model or "the first one the service lists"),
               ("roots of trust", "simulated (phalanb's own)" if session.simulated
                else "production (Intel's and NVIDIA's pinned CAs)")],
              columns=["setting", "value"], title="This session"))

# %% [markdown]
# ## 2. One chat, verified
#
# `chat_and_verify` does what `phalanb demo` does: send the prompt and keep the exact bytes, fetch the reply's
# signature, fetch a *fresh* attestation report (we send a random nonce), fetch Intel's collateral and NVIDIA's
# appraisal when available, and verify everything. The reply streams in as it arrives.

# %%
result = session.chat_and_verify("In one sentence: why does a confidential LLM sign its replies?",
                                 on_text=lambda piece: print(piece, end=""))
print()
print(result.verdict.table())

# %% [markdown]
# Each row is one link of the chain with a stable id. The verdict is `verified` only when every *required* check
# passed; a check that could not be made leaves it `incomplete`, never `verified`.

# %%
verdict = result.verdict
assert verdict["request.hash"].passed and verdict["response.hash"].passed, "the signed hashes are not ours"
assert verdict["signature.bound"].passed, "the reply was not signed by the attested key"
assert verdict.status == "verified", verdict.summary()

# %% [markdown]
# ## 3. The trust chain as a picture
#
# Read it top to bottom: our bytes are hashed, the hashes are signed, the signer is the key named in the
# attestation report, the report's `report_data` binds that key to our fresh nonce, the TDX quote carrying the
# report_data chains to Intel's root, the measured software is the application we expect, and every GPU signed the
# same nonce with a key chained to NVIDIA's root. Green holds, red failed, grey was not checked, amber holds with a
# caveat (here: simulated roots).

# %%
from phalanb.widgets import TrustChainView

chain = TrustChainView(verdict)
display(chain)
assert all(status in ("pass", "warning") for status in chain.links.values()), chain.links

# %% [markdown]
# ## 4. Break one byte
#
# The reply we hold is just bytes. Change one of them — as a proxy or a man in the middle could — and verify again
# with the same signature and the same attestation. Only the response link should go red.

# %%
import dataclasses

from phalanb.verify import verify_exchange

flipped = bytearray(result.exchange.response_bytes)
flipped[len(flipped) // 2] ^= 0x01
tampered = dataclasses.replace(result.exchange, response_bytes=bytes(flipped))
tampered_verdict = verify_exchange(tampered, result.signature, result.attestation.report,
                                   nonce=result.attestation.nonce, policy=session.policy,
                                   collateral=result.online.collateral, nras_response=result.online.nras_response,
                                   jwks=result.online.jwks)
display(TrustChainView(tampered_verdict, title="The same reply with one byte flipped"))
assert tampered_verdict["response.hash"].status.value == "fail"
assert tampered_verdict.status == "failed"

# %% [markdown]
# ## 5. Try it yourself
#
# The panel below does all of the above on a click: type a prompt, watch the reply stream, then click any badge to
# see what that check compared. (It uses the settings panel at the top: change the endpoint there to talk to a real
# service.)

# %%
from phalanb.widgets import ChatPanel

display(ChatPanel(panel))

# %% [markdown]
# ## Check yourself
#
# 1. Which single setting switches these notebooks from the simulator to a real service?
# 2. Why does a passing signature prove nothing until `signature.bound` passes too?
# 3. Flip a byte of the *request* instead of the response (`result.exchange.request_bytes`): which link goes red?
#
# Try them first. Then, to compare with a worked answer, type `solution()` in a new cell: the collapsed cell below
# only *defines* it, so Run All never gives the answer away.

# %% jupyter={"source_hidden": true} tags=["solution"]
def solution():
    """Question 3 worked out: change the request's bytes and verify again with the same signature."""
    flipped_request = dataclasses.replace(
        result.exchange, request_bytes=result.exchange.request_bytes.replace(b"one", b"two"))
    v = verify_exchange(flipped_request, result.signature, result.attestation.report,
                        nonce=result.attestation.nonce, policy=session.policy, collateral=result.online.collateral,
                        nras_response=result.online.nras_response, jwks=result.online.jwks)
    display(TrustChainView(v, title="The same reply with its request changed"))
    assert v["request.hash"].status.value == "fail" and v["response.hash"].passed
    print("request.hash fails, and only that link: the signature covers sha256(request) too, so a changed prompt "
          "is caught even though the reply is untouched.")


# %%
session.close()
