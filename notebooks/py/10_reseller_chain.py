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
# [Index](00_start_here.ipynb) · [← Back: the ACI gateway](09_aci_gateway.ipynb) · [Next: what the wire sees →](11_what_the_wire_sees.ipynb)
#
# # 10 · The reseller chain: receipt → session → the model server's own evidence
#
# Redpill and Phala *resell* inference: their attested gateway (notebook 09) forwards your prompt to an upstream
# model server that runs in its own TEE. The gateway verifies that upstream, records how in an **attested session**,
# and cites the session in every receipt. This notebook follows that chain to its end and re-verifies the upstream
# model server's own report with phalanb's TDX and GPU code.
#
# **What you will learn**
# - how a receipt's `upstream.verified` event names a session, and what `required` means;
# - why a session's id *is* its content: sha256 of its canonical (JCS) bytes;
# - how to decode the session's evidence (a `data:` URI) and check its digest;
# - the deep audit: the model server's vllm-proxy report inside the session, verified link by link (`upstream.*`);
# - what this chain binds — and the one thing it cannot: the gateway, not the model server, signs your reply;
# - which single check goes red for an edited session, a failed upstream and an expired session.
#
# Like notebooks 08 and 09, this one always runs its own ACI simulator (faults cannot be injected into a real
# service), whatever `PHALANB_BASE_URL` says; its roots are phalanb's *simulated* ones.

# %%
import base64
import hashlib
import json

from IPython.display import display

from phalanb.aci import canonicalize, parse_receipt, verify_aci_report
from phalanb.gateway import verify_aci
from phalanb.wire.client import Client
from phalanb.policy import Policy
from phalanb.sim import SimConfig, Simulator
from phalanb.widgets import table as show_table  # left-aligned, wrapped, nothing cut
from phalanb.tdx import fetch_collateral_sync, parse_quote

API_KEY = "sk-notebook-10-not-a-real-key"
# The August 2026 shape (aci_shape "aug-2026"): its sessions hash as JCS and its report still states `serving`.
# The v3 revision (notebook 11, section 11) hashes a session's served bytes and drops `serving`.
sim = Simulator(SimConfig(seed=10, ttft_ms=0, tokens_per_second=0, protocol="aci", aci_mode="aggregator",
                          api_key=API_KEY, aci_shape="aug-2026")).start()
client = Client(base_url=sim.base_url, api_key=API_KEY, model=sim.model)
policy = Policy.for_simulator()
service_root = sim.base_url.removesuffix("/v1")
print(sim)


def table(checks, prefix=()):
    """Checks as a small table (optionally only the ids starting with ``prefix``): text left-aligned, every
    reason in full, wrapped."""
    rows = [(c.id, c.status.value, c.reason) for c in checks if c.id.startswith(prefix or c.id)]
    display(show_table(rows, columns=["check", "status", "reason"]))


# %% [markdown]
# ## 1. The starting point: an established keyset and one receipt
#
# Notebook 09 in three lines: a fresh report, verified (with the simulator's PCCS collateral), establishes the
# gateway's keyset; one chat; its receipt. Everything below hangs from this receipt.

# %%
att = client.aci_attestation()
gateway_quote = parse_quote(att.document["attestation"]["evidence"]["quote"])
collateral = fetch_collateral_sync(gateway_quote, service_root + "/pccs")
attested = verify_aci_report(att.raw, nonce=att.nonce, policy=policy, collateral=collateral)
exchange = client.chat("Who verified the machine that wrote this?", max_tokens=24)
fetched = client.receipt(exchange.receipt_id)
receipt = parse_receipt(fetched.raw)
print("keyset established:", attested.keyset is not None, "| serving:", attested.keyset.serving)
print("receipt:", receipt.receipt_id, "events:", [e["type"] for e in receipt.events])
assert attested.keyset is not None and attested.keyset.serving == "aggregator"

# %% [markdown]
# ## 2. `upstream.verified`: the gateway says it checked the model server
#
# The link: *receipt → session*. Behind an aggregator, the receipt's event log carries `upstream.verified`:
# `result` (`verified` or `failed`), `required` (true when a failed verification must refuse the request rather
# than forward the prompt anyway), the model, and the `session_id` that records *how* the upstream was verified.
# The event is inside the signed receipt, so the gateway's attested key vouches for it.

# %%
upstream = receipt.event("upstream.verified")
print(json.dumps(upstream, indent=1))
session_id = upstream["session_id"]
assert upstream["result"] == "verified" and upstream["required"] is True
assert session_id in receipt.cited_session_ids

# %% [markdown]
# ## 3. The session list is an index, not evidence
#
# `GET /v1/aci/sessions` lists the gateway's sessions. Each entry *adds* `session_id` and *drops* the evidence
# data, so an entry cannot hash to its own id: it only tells you what to fetch.

# %%
listing = client.sessions()
entries = listing.document["sessions"]
print(len(entries), "session(s):", [e["session_id"][:16] + "…" for e in entries])
entry = next(e for e in entries if e["session_id"] == session_id)
print("evidence in the list entry:", entry["evidence"])
stripped = {k: v for k, v in entry.items() if k != "session_id"}
assert "data" not in entry["evidence"] and hashlib.sha256(canonicalize(stripped)).hexdigest() != session_id

# %% [markdown]
# ## 4. Fetch the session: its id is sha256(JCS(document))
#
# The link: *session id → session document*. The id is not a name the gateway picks: it is the hash of the
# document's canonical bytes, so the receipt's signature covers the document's whole content. We check it twice —
# on the exact bytes served, and on the document re-canonicalised after parsing (what a verifier must do, since
# bytes can be re-indented on the way).

# %%
session = client.session(session_id)
session_doc = session.document
computed = hashlib.sha256(canonicalize(session_doc)).hexdigest()
print("cited by the receipt   :", session_id)
print("sha256(served bytes)   :", hashlib.sha256(session.raw).hexdigest())
print("sha256(JCS(document))  :", computed)
assert computed == session_id

# %% [markdown]
# What the session says: which upstream, through which verifier, for which window, and the claims the gateway's
# verifier derived.

# %%
print({k: session_doc[k] for k in ("upstream_name", "endpoint", "verifier_id", "established_at", "expires_at",
                                   "identity", "channel_binding")})
claims = {k: v for k, v in session_doc["claims"].items() if k != "extra"}
display(show_table([(k, v["status"], v.get("source", ""), v.get("reason", "")) for k, v in claims.items()],
            columns=["claim", "status", "source", "reason"]))
print("extra:", session_doc["claims"].get("extra"))
assert session_doc["established_at"] <= receipt.served_at <= session_doc["expires_at"]
assert claims["tee_attested"] == {**claims["tee_attested"], "status": "asserted", "source": "hardware_proven"}

# %% [markdown]
# Claims are the gateway's words. The policy decides which it needs (`tee_attested`, asserted as
# `hardware_proven`, by default) — and the deep audit below checks the evidence behind them instead of believing
# them.
#
# ## 5. Decode the evidence and check its digest
#
# The link: *document → evidence bytes*. `evidence.data` is a `data:` URI (`data:<media type>;base64,<bytes>`),
# `evidence.digest` is sha256 of the decoded bytes.

# %%
uri = session_doc["evidence"]["data"]
header, _, payload = uri.partition(",")
evidence = base64.b64decode(payload, validate=True)
media_type = header.removeprefix("data:").removesuffix(";base64")
print(f"{media_type}: {len(evidence)} bytes; starts {evidence[:80]!r}")
print("sha256:", hashlib.sha256(evidence).hexdigest())
print("digest:", session_doc["evidence"]["digest"])
assert header.startswith("data:") and header.endswith(";base64")
assert "sha256:" + hashlib.sha256(evidence).hexdigest() == session_doc["evidence"]["digest"]

# %% [markdown]
# phalanb's parser does the same (and splits `multipart/*` evidence into its parts):

# %%
from phalanb.aci import decode_data_uri, parse_session

parsed_session = parse_session(session.raw)
assert decode_data_uri(uri)[1] == evidence == parsed_session.evidence_bytes
assert parsed_session.id == session_id and parsed_session.evidence_sha256 == session_doc["evidence"]["digest"]

# %% [markdown]
# ## 6. Inside: the model server's own vllm-proxy report
#
# The link: *evidence → the upstream's TEE*. The evidence is the very report the model server served the gateway
# — the same shape notebooks 03–05 verify: a signing address, a TDX quote whose `report_data` binds that address
# and a nonce, an event log, NVIDIA GPU evidence. The nonce is the **gateway's**, not ours: the gateway asked.

# %%
from phalanb.vllm.report import parse_report

upstream_report = json.loads(evidence)
node = parse_report(upstream_report).nodes[0]
upstream_quote = parse_quote(node.intel_quote)
rd = upstream_quote.body.report_data
print("signing address    :", node.signing_address)
print("session identity   :", session_doc["identity"]["signing_address"])
print("report_data[:32]   :", rd[:32].hex())
print("report_data[32:]   :", rd[32:].hex(), "(the gateway's nonce)")
print("our nonce (gateway):", att.nonce.hex())
assert rd[:20] == bytes.fromhex(node.signing_address.removeprefix("0x")) and rd[20:32] == bytes(12)
assert rd[32:].hex() == node.request_nonce != att.nonce.hex()
assert node.signing_address.lower() == session_doc["identity"]["signing_address"].lower()

# %% [markdown]
# ## 7. The deep audit
#
# The link: *the upstream's evidence → Intel's and NVIDIA's roots*. `verify_session` checks the session (id,
# evidence digest, claims by policy, window) and then hands the evidence to phalanb's own report verifier: the
# upstream's TDX quote, event log and compose hash, its GPUs' SPDM evidence and certificate chains, NVIDIA's NRAS
# appraisal — each shown with an `upstream.` prefix. We fetch the upstream quote's collateral and the NRAS answer
# (the simulator serves both) for *this session's* evidence, as phalanb does for a model server.

# %%
from phalanb.gateway import verify_session
from phalanb.audit.evidence import fetch_online_evidence


def online_evidence(session_bytes):
    """Collateral and NVIDIA's (NRAS) appraisal for the upstream report inside one session."""
    inner = json.loads(parse_session(session_bytes).evidence_bytes)
    first = parse_report(inner).nodes[0]
    return fetch_online_evidence(inner, signing_address=first.signing_address,
                                 nonce=bytes.fromhex(first.request_nonce), pccs_url=service_root + "/pccs",
                                 nras_url=service_root + "/nras")


online = online_evidence(session.raw)
assert not online.problems, online.problems
deep = verify_session(session.raw, expected_id=session_id, served_at=receipt.served_at, policy=policy,
                      collateral=online.collateral, nras_response=online.nras_response, jwks=online.jwks)
table(deep)
assert {c.id for c in deep if c.status.value not in ("pass", "warning")} == set()
assert any(c.id.startswith("upstream.gpu.") for c in deep) and any(c.id.startswith("upstream.tdx.") for c in deep)

# %% [markdown]
# ## 8. What binds, and what cannot
#
# **Binds**, each by a hash or a signature you checked:
# your bytes → the receipt (signed by the gateway's attested key) → `upstream.verified` → the session id =
# sha256(JCS(session)) → `evidence.digest` → the model server's report → its quote (Intel's root) binding its
# signing address → the session's `identity` (`upstream.identity`); its GPUs (NVIDIA's root) signed the same nonce.
#
# **Cannot:** *that this reply came from that model server.* The gateway signs the reply (`response.returned`),
# not the model server; `response.received` — the bytes the upstream sent — is the gateway's word about them,
# trustworthy exactly as far as the gateway's measured code is. The upstream report answers the gateway's nonce,
# so its freshness is shown only by the session's window, which the gateway states. And `channel_binding` (the TLS
# or E2EE key the gateway used to reach the upstream) is empty here: that the gateway's connection ended inside
# the attested upstream is not shown either.

# %%
returned, received = receipt.body_hash("response.returned"), receipt.body_hash("response.received")
print("response.received (upstream → gateway):", received)
print("response.returned (gateway → us)      :", returned)
print("channel_binding:", session_doc["channel_binding"])
print(deep[-1].id, "—", deep[-1].reason)
assert returned == "sha256:" + hashlib.sha256(exchange.response_bytes).hexdigest()
assert "signature" not in receipt.event("response.received")  # no model-server signature travels with the reply

# %% [markdown]
# ## 9. The whole chain in one verdict
#
# `verify_aci` with the session: report, receipt, session and deep audit together. It takes one collateral for
# both quotes (here gateway and upstream share the simulated platform, so one fits both) and one NRAS answer,
# which belongs to the GPU evidence of the one session the receipt cites.

# %%
def check(ex, fetched_receipt, *, sessions=None):
    """verify_aci for a reply: our established report and nonce, the receipt, and the sessions it cites."""
    if sessions is None:
        sessions = {sid: client.session(sid).raw for sid in parse_receipt(fetched_receipt.raw).cited_session_ids}
    nras = online_evidence(next(iter(sessions.values()))) if len(sessions) == 1 else None
    return verify_aci(ex, receipt=fetched_receipt.raw, report=att.raw, nonce=att.nonce, sessions=sessions,
                      policy=policy, collateral=collateral, nras_response=nras and nras.nras_response,
                      jwks=nras and nras.jwks)


verdict = check(exchange, fetched)
table(verdict, ("receipt.", "session.", "upstream.identity", "upstream.evidence"))
print(verdict.summary())
assert verdict.status == "verified"

# %% [markdown]
# ## 10. Break a link
#
# The simulator can misbehave on purpose. Each fault below breaks one link of the reseller chain; `red()` lists the
# checks that *failed*, and it must be exactly that link's check.

# %%
from phalanb.errors import ServiceError


def red(v):
    return {c.id for c in v.failed}


def with_fault(fault):
    """Chat once with ``fault`` injected and verify: the exchange (a refusal's too), its receipt and the sessions it
    cites are all fetched while the fault is on."""
    sim.set_faults([fault])
    try:
        try:
            ex = client.chat("Who verified the machine that wrote this?", max_tokens=24)
        except ServiceError as refused:      # the gateway refused: its error body and X-Receipt-Id are kept
            print("refused:", refused)
            ex = refused.partial
        rcpt = client.receipt(ex.receipt_id)
        cited = {sid: client.session(sid).raw for sid in parse_receipt(rcpt.raw).cited_session_ids}
    finally:
        sim.set_faults([])
    return ex, rcpt, check(ex, rcpt, sessions=cited)


# %% [markdown]
# **An edited session document** (`aci_edit_session`): the gateway serves a session that differs from the one its
# id hashes — say, a claim upgraded after the fact. `session.id` fails; the session's other checks are demoted to
# "only its own claim", because the document is no longer the one the receipt vouches for.

# %%
ex, rcpt, v = with_fault("aci_edit_session")
print(red(v))
print(v["session.claims"].status.value, "—", v["session.claims"].reason)
assert red(v) == {"session.id"} and v["session.claims"].status.value == "skipped"

# %% [markdown]
# **A failed upstream** (`aci_upstream_failed`): the gateway could not verify the model server. Because the
# verification was *required*, it refuses with HTTP 503 and never forwards the prompt — and it still signs a
# receipt saying so. `receipt.upstream` fails; the hashes of what we sent and the refusal we got still hold.

# %%
ex, rcpt, v = with_fault("aci_upstream_failed")
failed_receipt = parse_receipt(rcpt.raw)
print([e["type"] for e in failed_receipt.events])
print(failed_receipt.event("upstream.verified"))
print(red(v))
assert red(v) == {"receipt.upstream"} and v["receipt.response_hash"].passed
assert "request.forwarded" not in [e["type"] for e in failed_receipt.events]  # the prompt never left the gateway

# %% [markdown]
# **An expired session** (`aci_session_expired`): the receipt cites a session whose window had ended when the
# reply was served — the verification it relies on was stale. `session.window` fails.

# %%
ex, rcpt, v = with_fault("aci_session_expired")
print(red(v))
print(v["session.window"].evidence)
assert red(v) == {"session.window"}

# %% [markdown]
# ## Check yourself
#
# 1. Why can a session list entry never be evidence, even though it carries the same claims?
# 2. The upstream's report passes every `upstream.*` check. What does it still *not* prove about the reply you hold?
# 3. Which of the three faults above would a verifier that only checks the receipt's signature miss?
# 4. Re-serialise the session (`json.dumps(session_doc, indent=1)`) before hashing in section 4: what happens, and
#    why does the rule say *canonical* bytes? Edit the cell below and run it.
#
# Try them first. Then, to compare with a worked answer, type `solution()` in a new cell: the collapsed cell below
# only *defines* it, so Run All never gives the answer away.

# %%
# Question 4: replace the right-hand side with another serialisation of session_doc (e.g. json.dumps(..., indent=1)
# encoded), then run.
reserialised = canonicalize(session_doc)
print("hashes to the session id:", hashlib.sha256(reserialised).hexdigest() == session_id)

# %% jupyter={"source_hidden": true} tags=["solution"]
def solution():
    """Worked answers, from the session and receipt this notebook fetched (no service is asked again)."""
    print("1. A list entry is the gateway's summary, outside any hash: nothing ties it to a session id. Only the",
          "full document, whose canonical bytes hash to the id the signed receipt cites, is evidence.")
    print("2. That the model server produced *this reply*: the upstream's report binds its own signing key and the",
          "gateway's nonce; the reply is bound by the gateway's receipt. The model server's TEE is proven, the",
          "reply's path through it only as far as the gateway says.")
    print("3. The edited session and the expired session window: the receipt's signature stays valid in both;",
          "only hashing the session to its id and comparing the window with served_at catch them. (The failed",
          "upstream is written into the signed receipt itself: a verifier that reads what it verified sees it.)")
    pretty = json.dumps(session_doc, indent=1).encode()
    print("4. indent=1:", hashlib.sha256(pretty).hexdigest() == session_id, "— other bytes, another hash. The id is",
          "sha256 of the JCS (canonical) bytes, which any verifier can rebuild exactly from the parsed document:",
          hashlib.sha256(canonicalize(json.loads(pretty))).hexdigest() == session_id)
    assert hashlib.sha256(pretty).hexdigest() != session_id
    assert hashlib.sha256(canonicalize(json.loads(pretty))).hexdigest() == session_id


# %%
# The simulator and the client stop with the kernel; solution() above needs neither.
assert sim.base_url.startswith("http://127.0.0.1")
