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
# mode, with keys that were born inside that machine, and publishes *attestation* proving which machine holds
# them. phalanb checks the whole chain, link by link.
#
# This notebook verifies a reply **the way today's Redpill and Phala serve it**: through an attested *gateway*
# speaking ACI. The gateway's keyset is bound into its own TDX quote; it signs a **receipt** for every request
# whose event log hashes our exact bytes; and it records in an **attested session** how it verified the model
# server behind it — whose own quote and GPU evidence phalanb then re-verifies. (Notebooks 01-05 open up the links
# of that model server one by one; 09 and 10 open up the gateway and the reseller chain.)
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
# | 09 | [the ACI gateway](09_aci_gateway.ipynb) | keyset → statement → report_data → quote; a receipt beside the exact bytes |
# | 10 | [the reseller chain](10_reseller_chain.ipynb) | receipt → attested session → the model server's own evidence |
# | 11 | [what the wire sees](11_what_the_wire_sees.ipynb) | E2EE v2: the prompt sealed to the attested key, the AAD, the receipt |

# %% [markdown]
# ## 1. Where are we connecting?
#
# phalanb reads its settings from the environment:
#
# - `PHALANB_BASE_URL` — the service. **Unset: phalanb's embedded simulator** on 127.0.0.1 (no key, no network).
#   Set it to e.g. `https://api.redpill.ai/v1` to talk to a real service: that is the one setting to change.
#   phalanb recognises which protocol answers (an `X-Receipt-Id` header means an ACI gateway).
# - `PHALANB_MODEL` — the model (unset: the first one the service lists).
# - `PHALANB_MODEL_SERVER_URL` — for notebooks 01-07, which open up a *model server's* own protocol link by link:
#   a vllm-proxy server such as a NEAR AI model node (unset: an embedded simulated model server). Today's Redpill
#   gateway does not speak that protocol any more, so it is a separate setting.
# - `PHALANB_API_KEY` (or `REDPILL_API_KEY`) — the key; it is never printed. You can also paste it into the
#   password field below instead.
#
# The simulator here plays today's gateway in front of a simulated model server. It signs and attests exactly like
# the real services, but with **simulated roots of trust**: a pass
# against it shows that phalanb's checks work, not that real Intel or NVIDIA hardware answered. Every verdict
# says so.

# %%
from IPython.display import display

from phalanb.session import Session
from phalanb.widgets import SettingsPanel, table

panel = SettingsPanel(protocol="aci")  # the embedded simulator plays today's ACI gateway
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
# `chat_and_verify` does what `phalanb demo` does: send the prompt and keep the exact bytes (and the `X-Receipt-Id`
# the gateway answers with), fetch a *fresh* ACI report (we send a random nonce), fetch the reply's signed receipt
# and the attested session it cites, fetch Intel's collateral and NVIDIA's appraisal when available, and verify
# everything. The reply streams in as it arrives.

# %%
result = session.chat_and_verify("In one sentence: why does a confidential LLM sign its replies?",
                                 on_text=lambda piece: print(piece, end=""))
print()
print(result.verdict.table())

# %% [markdown]
# Each row is one link of the chain with a stable id: `receipt.*` tie our bytes to the gateway's signed receipt,
# `aci.*` and `tdx.*` tie the receipt's key to the gateway's quote, `session.*` and `upstream.*` follow the receipt
# to the model server and re-verify its own evidence. The verdict is `failed` if any check failed, `verified` when
# every *required* check passed (or held with a warning), and `incomplete` when a required check could not be made.
# An *optional* check (informative; it does not decide the verdict) may be skipped in a `verified` verdict: the
# table's last lines and the summary name it and say why it was skipped.

# %%
verdict = result.verdict
assert verdict["receipt.request_hash"].passed and verdict["receipt.response_hash"].passed, "not our bytes"
assert verdict["receipt.signature"].passed, "the receipt was not signed by the attested keyset"
assert verdict["aci.report_data"].passed and verdict["aci.nonce_fresh"].passed, "the keyset is not bound, fresh"
assert verdict["upstream.tdx.quote_signature"].passed, "the model server's own quote did not verify"
assert verdict.status == "verified", verdict.summary()

# %% [markdown]
# ## 3. The trust chain as a picture
#
# Read it top to bottom: our bytes are hashed into the receipt, the receipt is signed by a key of the keyset, the
# keyset's digest and our fresh nonce make the statement whose hash is the quote's `report_data`, the gateway's TDX
# quote chains to Intel's root and measures the gateway we expect; then the receipt says the gateway verified the
# model server, cites the attested session, and phalanb re-verifies the model server's own quote and GPUs. Green
# holds, red failed, amber holds with a caveat (here: simulated roots), grey was not shown — under a grey or amber
# box each check that did not pass is named with its reason.
#
# Over plain `http://` (the embedded simulator) no TLS key is observed, so the link "TLS key ∈ keyset" is grey:
# `channel.tls_spki` was skipped. It is an *optional* check — the receipt binds the reply whatever connection
# carried it — so the verdict can still be `verified`, but the picture does not pretend the link was shown.

# %%
from phalanb.widgets import TrustChainView

chain = TrustChainView(verdict)
display(chain)
not_shown = {link for link, status in chain.links.items() if status not in ("pass", "warning")}
skipped = {c.id for c in verdict if c.status.value == "skipped"}
assert not_shown <= {"channel"} and (("channel" in not_shown) == ("channel.tls_spki" in skipped)), chain.links

# %% [markdown]
# ## 4. Break one byte
#
# The reply we hold is just bytes. Change one of them — as a proxy or a man in the middle could — and verify again
# with the same receipt, report and session. Only the response link should go red.

# %%
import dataclasses

from phalanb.gateway import verify_aci


def verify_again(exchange):
    """The same verification as above, on other bytes: same report, receipt, sessions, collateral and clock."""
    return verify_aci(exchange, receipt=result.receipt.raw, report=result.attestation.raw,
                      nonce=result.attestation.nonce, sessions=result.sessions, policy=session.policy,
                      collateral=result.online.collateral, upstream=result.online.upstream_dict(),
                      at=result.verified_at)


flipped = bytearray(result.exchange.response_bytes)
flipped[len(flipped) // 2] ^= 0x01
tampered_verdict = verify_again(dataclasses.replace(result.exchange, response_bytes=bytes(flipped)))
display(TrustChainView(tampered_verdict, title="The same reply with one byte flipped"))
assert [c.id for c in tampered_verdict.failed] == ["receipt.response_hash"]
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
# 2. Why does a valid receipt signature prove nothing until `receipt.keyset` and `aci.report_data` pass too?
# 3. Flip a byte of the *request* instead of the response (`result.exchange.request_bytes`): which link goes red?
#
# Try them first. Then, to compare with a worked answer, type `solution()` in a new cell: the collapsed cell below
# only *defines* it, so Run All never gives the answer away.

# %% jupyter={"source_hidden": true} tags=["solution"]
def solution():
    """Question 3 worked out: change the request's bytes and verify again with the same signature."""
    flipped_request = dataclasses.replace(
        result.exchange, request_bytes=result.exchange.request_bytes.replace(b"one", b"two"))
    v = verify_again(flipped_request)
    display(TrustChainView(v, title="The same reply with its request changed"))
    assert v["receipt.request_hash"].status.value == "fail" and v["receipt.response_hash"].passed
    print("receipt.request_hash fails, and only that link: the signed receipt records sha256(request) too, so a "
          "changed prompt is caught even though the reply is untouched.")


# %%
session.close()
