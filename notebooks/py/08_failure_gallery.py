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
# [Index](00_start_here.ipynb) · [← Back: reproduce an audit](07_reproduce_an_audit.ipynb) · [Next: the ACI gateway →](09_aci_gateway.ipynb)
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
# This notebook always runs its own simulators (faults cannot be injected into a real service), whatever
# `PHALANB_BASE_URL` says: one model server speaking the vllm-proxy protocol, and one ACI gateway (plus an HTTPS
# one for the fault that lies about the TLS key). Each fault runs against the protocol it belongs to — an `aci_*`
# fault changes nothing on a model server, and the simulator refuses it there rather than pretend.

# %%
import logging

import pandas as pd
from IPython.display import display

from phalanb.errors import InputError, PhalanbError
from phalanb.session import Session, Settings
from phalanb.sim import FAULTS, SimConfig, Simulator
from phalanb.sim.config import FAULT_NEEDS
from phalanb.widgets import table

# The simulator logs the connection it cuts on purpose (cut_stream); that traceback is expected, not news.
logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
quick = dict(seed=8, ttft_ms=0, tokens_per_second=0)
sims = {"vllm-proxy": Simulator(SimConfig(protocol="legacy", **quick)).start(),
        "ACI": Simulator(SimConfig(protocol="aci", **quick)).start(),
        "ACI over HTTPS": Simulator(SimConfig(protocol="aci", https=True, **quick)).start()}


def protocol_of(fault):
    """The simulator a fault belongs to (FAULT_NEEDS says what each aci_* fault needs to have any effect)."""
    need = FAULT_NEEDS.get(fault, {})
    return "ACI over HTTPS" if need.get("https") else "ACI" if need.get("protocol") == "aci" else "vllm-proxy"


display(table([(name, protocol_of(name), what) for name, what in FAULTS.items()],
              columns=["fault", "runs against", "what the simulator then does"],
              title="Faults the simulators can inject"))

# %% [markdown]
# A fault the running protocol cannot inject is refused with a message saying what it needs — the model server has
# no receipts to tamper with:

# %%
try:
    sims["vllm-proxy"].set_faults(["aci_tamper_response"])
    raise AssertionError("an ACI fault was accepted by a model server, where it would do nothing")
except InputError as exc:
    print("refused:", exc)

# %% [markdown]
# ## 1. A healthy baseline
#
# First with no fault at all, on each simulator, so every difference below is the fault's doing.

# %%
def rims_for(faults):
    """RIM faults break NVIDIA's reference manifests, which phalanb reads only when asked to appraise the GPU
    measurements itself: those sessions fetch the RIMs (Settings(rims="fetch"), here from the simulator's RIM service
    and OCSP responder). The others ask NRAS alone, the default."""
    return "fetch" if any(f.startswith("rim_") for f in faults) else None


def attempt(faults):
    """Chat and verify once against the simulator the faults belong to, with those faults injected."""
    kinds = {protocol_of(f) for f in faults} or {"vllm-proxy"}
    assert len(kinds) == 1, f"these faults belong to different protocols: {sorted(kinds)}"
    sim = sims[kinds.pop()]
    # A short timeout: one fault makes the service hang, and waiting a minute teaches nothing more than one second.
    try:
        sim.set_faults(faults)  # a fault this simulator cannot inject is refused here: an error, not a verdict
        with Session(Settings(base_url=sim.base_url, model=sim.model, trust="simulated", timeout=1.0,
                              ca_pem=sim.ca_pem, rims=rims_for(faults))) as session:
            return session.chat_and_verify("Tell me something verifiable.")
    except PhalanbError as exc:
        return exc
    finally:
        sim.set_faults([])


baselines = {}
for kind, sim in sims.items():
    with Session(Settings(base_url=sim.base_url, model=sim.model, trust="simulated", ca_pem=sim.ca_pem)) as s:
        baselines[kind] = s.chat_and_verify("Tell me something verifiable.").verdict
    print(f"{kind}: {baselines[kind].tally()}\n    {baselines[kind].summary()}")
    assert not baselines[kind].failed, baselines[kind].table()
assert baselines["vllm-proxy"].status == baselines["ACI"].status == "verified"
assert baselines["ACI over HTTPS"]["channel.tls_spki"].passed  # over HTTPS the TLS key is observed, and listed
# The RIM faults' baseline: the same model server, with phalanb appraising the GPU measurements against the RIMs.
sim = sims["vllm-proxy"]
with Session(Settings(base_url=sim.base_url, model=sim.model, trust="simulated", rims="fetch")) as s:
    with_rims = s.chat_and_verify("Tell me something verifiable.").verdict
print(f"vllm-proxy with RIMs: {with_rims.tally()}\n    {with_rims['gpu.measurements'].reason}")
assert with_rims.status == "verified" and with_rims["gpu.measurements"].passed and with_rims["gpu.revocation"].passed

# %% [markdown]
# Read the three summaries: over plain http the ACI verdict is `verified` with `channel.tls_spki` skipped — an
# optional check, named, not counted as held. Over HTTPS that check passes, but the verdict is `incomplete`: the
# session fetches Intel's collateral from the simulator's PCCS without the simulator's self-signed CA, so the TCB
# status could not be judged — and phalanb says so instead of passing it. The fourth line is the model server again
# with `Settings(rims="fetch")`: phalanb fetched NVIDIA-style signed reference manifests (RIMs) and OCSP answers from
# the simulator and appraised every GPU measurement itself — the baseline the three `rim_*` faults are read against.
# Only failures matter for the gallery.

# %% [markdown]
# ## 2. Every fault

# %%
outcomes = {name: attempt([name]) for name in FAULTS}


def says(name, verdict):
    """The checks that decided: what failed, else what was not checked, else warnings the baseline did not have."""
    usual = {c.id for c in baselines[protocol_of(name)].warnings}
    picked = verdict.failed or verdict.skipped or [c for c in verdict.warnings if c.id not in usual]
    return ", ".join(f"{c.id} {c.status.value}" for c in picked)


rows = []
for name, out in outcomes.items():
    error = isinstance(out, PhalanbError)
    rows.append({"fault": name, "runs against": protocol_of(name), "outcome": "error" if error else out.verdict.status,
                 "what phalanb says": str(out) if error else says(name, out.verdict)})
gallery = pd.DataFrame(rows).set_index("fault")
display(table(gallery.reset_index(), title="Every fault, against its own protocol, and the verdict it earns"))

# Faults that change the evidence (bytes, keys, nonces, measurements, receipts, sessions) must end in "failed",
# and blame exactly the checks of the link they break — nothing else. Transport faults (errors, pauses, retries)
# leave the evidence intact and may end in a verified reply or an error, never in a failed verdict.
OWN_LINK = {
    # the model server's protocol (vllm-proxy)
    "tamper_response": {"response.hash"},
    "tamper_request": {"request.hash"},
    "wrong_signing_key": {"signature.bound"},
    "ignore_nonce": {"report.nonce_fresh", "gpu.nonce", "nras.result"},  # every nonce the report carries
    "stale_quote": {"report.nonce_fresh"},
    "debug_td": {"tdx.debug_disabled"},
    "wrong_compose_hash": {"app.compose_hash"},
    "gpu_nonce_mismatch": {"gpu.nonce", "gpu.agree", "nras.result"},
    # NVIDIA's reference manifests (sessions with rims="fetch"); the simulated NRAS knows nothing of the broken RIM
    # and passes, so phalanb's own appraisal and NRAS disagree: shown as gpu.appraisal_agree, never averaged away
    "rim_mismatch": {"gpu.measurements", "gpu.appraisal_agree"},
    "rim_other_version": {"gpu.measurements", "gpu.appraisal_agree"},
    "rim_revoked": {"gpu.revocation"},
    # the gateway's protocol (ACI)
    "aci_tamper_response": {"receipt.response_hash"},
    "aci_tamper_receipt": {"receipt.signature"},
    "aci_receipt_other_keyset": {"receipt.signature", "receipt.keyset"},
    "aci_upstream_failed": {"receipt.upstream"},
    "aci_session_expired": {"session.window"},
    "aci_edit_session": {"session.id"},
    "aci_expired_keyset": {"aci.keyset_expiry"},
    "aci_ignore_nonce": {"aci.report_data", "aci.nonce_fresh"},
    "aci_tls_key_not_in_keyset": {"channel.tls_spki"},
}
# A rewrite the gateway itself declares (request.forwarded != request.received) is shown, not failed.
DISCLOSED = {"aci_rewrite_request": "receipt.rewrite"}
for name, out in outcomes.items():
    outcome = gallery.outcome[name]
    if name in OWN_LINK:
        assert outcome == "failed", (name, outcome)
        assert {c.id for c in out.verdict.failed} == OWN_LINK[name], (name, [c.id for c in out.verdict.failed])
    elif name in DISCLOSED:
        assert outcome == "verified" and out.verdict[DISCLOSED[name]].status.value == "warning", (name, outcome)
    else:
        assert outcome in ("verified", "error"), (name, outcome)
assert set(OWN_LINK) | set(DISCLOSED) >= {f for f in FAULTS if f.startswith(("aci_", "rim_"))}

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
# - **`rim_mismatch`, `rim_other_version`, `rim_revoked`** — NVIDIA's signed reference manifest (RIM) for the GPUs'
#   driver lists another value for index 7 than the GPUs measured, is signed for another driver version, or is
#   signed by a certificate the OCSP responder says is revoked. Only a session that appraises the measurements
#   itself (`Settings(rims="fetch")`, `phalanb demo --rims fetch`) reads RIMs: `gpu.measurements` names the index
#   with both values, or the two versions; `gpu.revocation` names the revoked signer. NRAS — here the simulator's,
#   which knows nothing of the fault — still passed, so `gpu.appraisal_agree` fails too: when the two appraisals
#   disagree phalanb shows both instead of picking one.
# - **`chat_500`, `signature_500`, `attestation_500`, `signature_missing`** — the service did not answer, so there
#   is nothing to verify: phalanb raises an error naming the endpoint rather than inventing a verdict. A missing
#   signature is common in real life: signatures expire (20 minutes today), and behind a load balancer the node you
#   ask may never have seen your chat.
# - **Transport faults** (`rate_limit`, `flaky_503`, `hang`, `truncated_json`, `slow_drip`, when the simulator
#   offers them) — answers that are late, refused once, cut, or dripped in pieces. The evidence itself is intact, so
#   the right outcome is a verified reply (phalanb retried, or reassembled the pieces byte for byte) or an error
#   that names what went wrong — never a *failed* verdict.
#
# And against the ACI gateway, where the receipt — not the model server — signs the exchange:
#
# - **`aci_tamper_response`** — one byte of the reply changed after the gateway hashed it: `receipt.response_hash`
#   fails, everything else holds.
# - **`aci_tamper_receipt`**, **`aci_receipt_other_keyset`** — the receipt was edited after signing, or signed by
#   another replica's keyset: `receipt.signature` fails (and `receipt.keyset`), so nothing the receipt says is read.
# - **`aci_rewrite_request`** — the gateway forwarded other bytes than it received and *says so* in the receipt:
#   `receipt.rewrite` warns with both hashes; a declared rewrite is shown, not failed.
# - **`aci_upstream_failed`**, **`aci_session_expired`**, **`aci_edit_session`** — the gateway could not vouch for
#   the model server, cites a session whose window had closed, or serves a session that does not hash to its id:
#   `receipt.upstream`, `session.window`, `session.id`.
# - **`aci_expired_keyset`**, **`aci_ignore_nonce`** — the keyset is past its `not_after`, or the statement was
#   built from another nonce: `aci.keyset_expiry`, or `aci.report_data` and `aci.nonce_fresh`.
# - **`aci_tls_key_not_in_keyset`** — the HTTPS certificate's key is not one the keyset lists: the connection ended
#   somewhere the attestation does not describe. `channel.tls_spki` fails (this one needs the HTTPS simulator).

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
    failed = both.verdict.failed
    display(table([(c.id, c.reason) for c in failed], columns=["failed check", "reason"],
                  title="tamper_response + ignore_nonce"))
    assert {"response.hash", "report.nonce_fresh"} <= {c.id for c in failed}
    print("Both faults' checks fail side by side, each blaming its own link: a verdict lists every broken link, "
          "not just the first.")


# %%
# The simulators stop with the kernel (Kernel → Shut Down), so a solution can still use them after Run All.
assert all(sim.base_url.startswith(("http://127.0.0.1", "https://127.0.0.1")) for sim in sims.values())
