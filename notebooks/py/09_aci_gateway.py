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
# [Index](00_start_here.ipynb) · [← Back: failure gallery](08_failure_gallery.ipynb) · [Next: the reseller chain →](10_reseller_chain.ipynb)
#
# # 09 · The ACI gateway: keyset → statement → quote → receipt
#
# Since mid-2026 api.redpill.ai and inference.phala.com answer through an attested **gateway** speaking ACI
# (Attested Confidential Inference). The model server's own signature (notebooks 01–05) no longer reaches you.
# Instead the gateway publishes a *workload keyset* (its receipt-signing and E2EE keys) bound into its own TDX quote,
# and signs a **receipt** for every request whose event log hashes the exact bytes you sent and received.
#
# **What you will learn**
# - the keyset, its canonical bytes and digest — recomputed by hand (JCS, the JSON Canonicalization Scheme of
#   RFC 8785: members sorted, no spaces, one spelling per number, so every verifier hashes the same bytes);
# - the *statement* built from **our** nonce → sha256 → `report_data` → bytes 568..632 of the quote;
# - a receipt's event log next to the exact request and response bytes, and its Ed25519 signature;
# - the whole `verify_aci` verdict, and which single check goes red when one link is broken;
# - the one real capture of Phala's gateway (June 2026): what it proves, and why it cannot be `verified` alone.
#
# This notebook always runs its own ACI simulator (a gateway in front of a simulated model server), whatever
# `PHALANB_BASE_URL` says: its quotes chain to phalanb's *simulated* roots. The real capture in section 11 is checked
# against Intel's pinned root.
#
# ACI documents come in two *shapes*: `current`, as the protocol's specification defines them (the simulator's
# default here), and `preview`, what the gateway's June 2026 build served (a `workload_id`, a `keyset_epoch`, a
# keyset endorsement). phalanb reads both and names the one it saw (`aci.shape`).

# %%
import hashlib
import json

from IPython.display import display

from phalanb.wire.client import Client
from phalanb.policy import Policy
from phalanb.sim import SimConfig, Simulator
from phalanb.widgets import table as show_table  # left-aligned, wrapped, nothing cut

sim = Simulator(SimConfig(seed=9, ttft_ms=0, tokens_per_second=0, protocol="aci", aci_mode="aggregator",
                          aci_shape="current", api_key="sk-notebook-09-not-a-real-key")).start()
client = Client(base_url=sim.base_url, api_key="sk-notebook-09-not-a-real-key", model=sim.model)
policy = Policy.for_simulator()  # the simulated Intel root and the simulated dstack-KMS root are trusted
print(sim)


def table(checks, prefix=()):
    """Checks as a small table (optionally only the ids starting with ``prefix``): text left-aligned, every
    reason in full, wrapped."""
    rows = [(c.id, c.status.value, c.reason) for c in checks if c.id.startswith(prefix or c.id)]
    display(show_table(rows, columns=["check", "status", "reason"]))


# %% [markdown]
# ## 1. Ask for the gateway's report with a fresh nonce
#
# The link: *freshness*. We draw 32 random bytes and send them as 64 lower-case hex (the only form the current
# gateway accepts). A report that commits to *our* nonce cannot have been recorded before we asked.

# %%
att = client.aci_attestation()          # a fresh random nonce unless one is given
report = att.document
print("our nonce          :", att.nonce.hex())
print("api_version        :", report["api_version"])
print("top-level members  :", list(report))
print("attestation members:", list(report["attestation"]))
print("X-ACI-Keyset-Digest:", att.keyset_digest_header)
assert report["api_version"] == "aci/1" and len(att.nonce) == 32

# %% [markdown]
# ## 2. The workload keyset
#
# The link: *which keys speak for the gateway*. `receipt_signing_keys` sign receipts, `e2ee_public_keys` receive
# encrypted prompts, `tls_public_keys` (empty here: plain http) name the TLS keys the gateway terminates with;
# `not_after` ends the keyset's life.

# %%
keyset = report["attestation"]["workload_keyset"]
rows = [(role, k.get("key_id"), k.get("algo"), (k.get("public_key") or k.get("spki_sha256"))[:24] + "…")
        for role in ("receipt_signing_keys", "e2ee_public_keys", "tls_public_keys") for k in keyset[role]]
display(show_table(rows, columns=["list", "key_id", "algo", "public key"]))
print("subject  :", keyset["subject"])
print("not_after:", keyset["not_after"])
assert [k["algo"] for k in keyset["receipt_signing_keys"]] == ["ed25519"]

# %% [markdown]
# ## 3. The keyset's JCS bytes and digest, by hand
#
# The link: *keyset → digest*. The digest is sha256 over the keyset's **canonical** JSON (RFC 8785, JCS): no
# whitespace, member names sorted at every level, integers only. For ACI's documents that is one line of standard
# Python — we compare it with phalanb's `canonicalize` and with what the report claims.

# %%
from phalanb.aci import canonicalize, sha256_digest

by_hand = json.dumps(keyset, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
digest = "sha256:" + hashlib.sha256(by_hand).hexdigest()
print(by_hand[:160].decode(), "…")
print("recomputed:", digest)
print("claimed   :", report["workload_keyset_digest"])
assert by_hand == canonicalize(keyset) and digest == sha256_digest(keyset)
assert digest == report["workload_keyset_digest"] == att.keyset_digest_header

# %% [markdown]
# The same keyset pretty-printed is the same JSON, but other bytes, so another hash: this is why both sides must
# agree on one canonical form.

# %%
pretty = json.dumps(keyset, indent=2).encode()
assert json.loads(pretty) == keyset and hashlib.sha256(pretty).hexdigest() != digest.removeprefix("sha256:")

# %% [markdown]
# ## 4. The statement from OUR nonce → report_data
#
# The link: *digest + our nonce → report_data*. The statement is a tiny JCS document; its sha256 is
# `report_data`. We build it ourselves from the digest **we** recomputed and the nonce **we** sent — never from
# anything the report says about itself.

# %%
from phalanb.aci import report_data_for, statement

ours = att.nonce.hex()
stmt = json.dumps({"keyset_digest": digest, "nonce": ours, "purpose": "aci.report_data.v1"},
                  separators=(",", ":"), sort_keys=True).encode()
print(stmt.decode())
print("sha256(statement):", hashlib.sha256(stmt).hexdigest())
print("report_data      :", report["attestation"]["report_data"])
assert stmt == statement(digest, ours) and hashlib.sha256(stmt).hexdigest() == report_data_for(digest, ours)
assert hashlib.sha256(stmt).hexdigest() == report["attestation"]["report_data"]

# %% [markdown]
# ## 5. Those 32 bytes, at offset 568 of the quote
#
# The link: *report_data → the CPU-signed quote*. A TDX v4 quote is a 48-byte header and a 584-byte TD report; the
# TD report's last 64 bytes (offset 568..632) are `report_data`, chosen by the software inside the TD and signed
# by the CPU. The gateway puts sha256(statement) in the first 32 bytes and zeros in the other 32.

# %%
from phalanb.tdx import parse_quote

quote = parse_quote(report["attestation"]["evidence"]["quote"])
rd = bytes.fromhex(report["attestation"]["report_data"])
byte_map = show_table([
    ("0..48", 48, "quote header", quote.raw[:8].hex() + "…", ""),
    ("48..568", 520, "TD report: TCB, MRTD, RTMRs…", quote.raw[48:56].hex() + "…", ""),
    ("568..600", 32, "report_data[0:32] = sha256(statement)", quote.raw[568:600].hex(), quote.raw[568:600] == rd),
    ("600..632", 32, "report_data[32:64] = zeros", quote.raw[600:632].hex(), quote.raw[600:632] == bytes(32)),
    (f"632..{quote.end}", quote.end - 632, "signature data (signature, keys, PCK chain)",
     quote.raw[632:640].hex() + "…", ""),
], columns=["bytes", "size", "what", "value", "as expected"])
display(byte_map)
assert quote.raw[568:600] == rd and quote.raw[600:632] == bytes(32)
assert report["attestation"]["evidence"]["quote_report_data"] == rd.hex() + "00" * 32

# %% [markdown]
# ## 6. The quote verifies to the (simulated) root
#
# The link: *quote → root of trust*. phalanb verifies the quote's signature chain to the pinned root, fetches the
# platform's collateral from the PCCS (the simulator serves one at `/pccs`) for the TCB status, replays the event
# log, checks the measured app_compose and the keys' *custody*: certificates showing each key was derived by the
# dstack KMS (the key management service that hands keys only to the measured app, so no operator ever held them),
# chained to a KMS root the auditor allow-lists. Only if the binding
# and the quote hold is the keyset **established** — the one set of keys a receipt may be signed by.

# %%
from phalanb.aci import verify_aci_report
from phalanb.tdx import fetch_collateral_sync

pccs = sim.base_url.removesuffix("/v1") + "/pccs"
collateral = fetch_collateral_sync(quote, pccs)
attested = verify_aci_report(att.raw, nonce=att.nonce, policy=policy, collateral=collateral)
table(attested.checks)
assert attested.keyset is not None and attested.keyset.digest == digest
assert all(c.status.value == "pass" for c in attested.checks if c.id.startswith("tdx."))

# %% [markdown]
# ## 7. One chat, and its receipt's event log next to the exact bytes
#
# The link: *our bytes → the receipt*. The gateway answers with an `X-Receipt-Id`; the receipt (fetched with the
# same API key) lists what happened to the request, in order. Each `body_hash` is sha256 of bytes: we hash the
# bytes **we** sent and received and put them side by side.

# %%
exchange = client.chat("In one sentence: what does a receipt prove?", max_tokens=24)
print("X-Receipt-Id:", exchange.receipt_id)
print("request bytes :", exchange.request_bytes[:100], "…")
print("response bytes:", exchange.response_bytes[:100], "…")
fetched = client.receipt(exchange.receipt_id)
receipt = fetched.document
print(json.dumps({k: v for k, v in receipt.items() if k != "event_log"}, indent=1))

# %%
ours_by_event = {"request.received": exchange.request_bytes, "middleware.forwarded": exchange.request_bytes,
                 "request.forwarded": exchange.request_bytes, "response.received": exchange.response_bytes,
                 "response.returned": exchange.response_bytes}
rows = []
for i, event in enumerate(receipt["event_log"]):
    logged = event.get("body_hash")
    mine = ours_by_event.get(event["type"])
    computed = "sha256:" + hashlib.sha256(mine).hexdigest() if mine is not None else None
    shown = logged[:23] + "…" if logged else ", ".join(f"{k}={str(v)[:24]}" for k, v in event.items() if k != "type")
    rows.append((i, event["type"], shown, computed[:23] + "…" if computed else "",
                 (computed == logged) if computed else ""))
display(show_table(rows, columns=["#", "event", "logged", "sha256 of our exact bytes", "equal"]))
events = {e["type"]: e for e in receipt["event_log"]}
assert events["request.received"]["body_hash"] == "sha256:" + hashlib.sha256(exchange.request_bytes).hexdigest()
assert events["response.returned"]["body_hash"] == "sha256:" + hashlib.sha256(exchange.response_bytes).hexdigest()

# %% [markdown]
# (`response.received` is what the upstream model server sent the gateway; `response.returned` what the gateway
# sent us. Here they are equal; a gateway that rewrites the reply shows two different hashes.)
#
# ## 8. The receipt's signature, by hand
#
# The link: *receipt → the established keyset*. The signature is Ed25519 over JCS(receipt without `signature`),
# by the key its `key_id` names **in the keyset the verified report established** — a key listed anywhere else
# proves nothing.

# %%
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

signing_input = canonicalize({k: v for k, v in receipt.items() if k != "signature"})
entry = attested.keyset.receipt_keys[receipt["key_id"]]
print("key_id   :", receipt["key_id"], "→", entry["public_key"])
print("signed   :", len(signing_input), "bytes, sha256", hashlib.sha256(signing_input).hexdigest())
Ed25519PublicKey.from_public_bytes(bytes.fromhex(entry["public_key"])).verify(
    bytes.fromhex(receipt["signature"]), signing_input)  # raises InvalidSignature on any other bytes
print("signature: valid")
assert receipt["workload_keyset_digest"] == attested.keyset.digest

# %% [markdown]
# The same, as phalanb's receipt checks (the receipt against the established keyset and our exact bytes):

# %%
from phalanb.aci import verify_receipt

receipt_checks = verify_receipt(fetched.raw, keyset=attested.keyset, request_bytes=exchange.request_bytes,
                                response_bytes=exchange.response_bytes)
table(receipt_checks)
assert all(c.status.value == "pass" for c in receipt_checks)

# %% [markdown]
# ## 9. The whole verdict
#
# `verify_aci` joins every link: report → established keyset → receipt → the upstream session the receipt cites
# (fetched here; [notebook 10](10_reseller_chain.ipynb) opens it up). The verdict is `verified` only when every
# required check held.

# %%
from phalanb.aci import parse_receipt
from phalanb.gateway import verify_aci

session_id = parse_receipt(fetched.raw).cited_session_ids[0]
sessions = {session_id: client.session(session_id).raw}


def verify(**changes):
    """verify_aci over this notebook's evidence, with some of it replaced."""
    given = dict(receipt=fetched.raw, report=att.raw, nonce=att.nonce, sessions=sessions, policy=policy,
                 collateral=collateral, request_bytes=exchange.request_bytes,
                 response_bytes=exchange.response_bytes)
    given.update(changes)
    return verify_aci(None, **given)


verdict = verify()
table(verdict)
print(verdict.summary())
assert verdict.status == "verified"

# %% [markdown]
# ## 10. Break a link
#
# Each cell changes one thing — as a proxy, a replica or an attacker could — and verifies again with everything
# else unchanged. `red()` lists the checks that *failed*; every other check held or was only skipped because it
# stood on the broken one.

# %%
def red(v):
    return {c.id for c in v.failed}


# One byte of the reply flipped on the way to us: only the response hash goes red.
flipped = bytearray(exchange.response_bytes)
flipped[len(flipped) // 2] ^= 0x01
v = verify(response_bytes=bytes(flipped))
print(red(v))
assert red(v) == {"receipt.response_hash"} and v.status == "failed"

# %% [markdown]
# **Another nonce.** Suppose we check the report against a nonce we did not send (or the gateway answered someone
# else's request): the statement no longer hashes to report_data. The keyset is then *not established*, so the
# receipt's checks are skipped — a receipt is worth nothing without a verified report.

# %%
v = verify(nonce=bytes(32))
print(red(v))
print(v["receipt.signature"].status.value, "—", v["receipt.signature"].reason)
assert red(v) == {"aci.report_data", "aci.nonce_fresh"} and v["receipt.signature"].status.value == "skipped"

# %% [markdown]
# **An edited keyset member.** A liar extends the keyset's life by one second. The keyset no longer hashes to the
# claimed digest, and the statement rebuilt from the *recomputed* digest no longer hashes to the quote's
# report_data (so freshness cannot be shown either).

# %%
edited = json.loads(att.raw)
edited["attestation"]["workload_keyset"]["not_after"] += 1
v = verify(report=json.dumps(edited).encode())
print(red(v))
assert red(v) == {"aci.keyset_digest", "aci.report_data", "aci.nonce_fresh"}

# %% [markdown]
# A smarter liar also rewrites `workload_keyset_digest` to match the edit. The digest check now passes — it only
# says the document is self-consistent — but the quote still vouches for the original keyset:

# %%
edited["workload_keyset_digest"] = sha256_digest(edited["attestation"]["workload_keyset"])
v = verify(report=json.dumps(edited).encode())
print(red(v))
assert "aci.keyset_digest" not in red(v) and "aci.report_data" in red(v) and v.status == "failed"

# %% [markdown]
# **A tampered receipt.** Someone changes which route the gateway says it chose. The signature no longer verifies,
# and every other receipt check is demoted to "only its own claim".

# %%
tampered = json.loads(fetched.raw)
route = next(e for e in tampered["event_log"] if e["type"] == "route.selected")
route["target_route_id"] = "somewhere-cheaper"
v = verify(receipt=json.dumps(tampered).encode())
print(red(v))
print(v["receipt.request_hash"].status.value, "—", v["receipt.request_hash"].reason)
assert red(v) == {"receipt.signature"} and v["receipt.request_hash"].status.value == "skipped"

# %% [markdown]
# ## 11. The real capture: Phala's gateway, 28 June 2026
#
# One real `/v1/aci/attestation` answer exists, fetched from inference.phala.com (gateway build `1b43f76`, the
# *preview* shape: `workload_id`, `keyset_epoch`, a keyset endorsement, secp256k1 keys). Its capturer sent the
# nonce `00…01` (its `SOURCE.md` gives the URL): we check the binding to *that* nonce, which shows the report
# answered the capturer's request — for us, reading a file months later, it is a recording, not a fresh answer.
# We read it through the notebooks' fixture helper, which finds the
# project's fixtures (fetched once on a fresh machine or Binder, each file checked by sha256).

# %%
from phalanb.lab import fixtures_path

FIXTURES = fixtures_path()
assert FIXTURES is not None, ("the real fixtures were not found: run `python -m phalanb.fixtures` in a terminal "
                              "(it fetches what their public sources hold, each checked by sha256, and names the rest), or set "
                              "PHALANB_FIXTURES to a copy")
real_raw = (FIXTURES / "aci" / "real" / "phala-gateway-aci1-report-2026-06-28.json").read_bytes()
real = json.loads(real_raw)
real_nonce = "00" * 31 + "01"
assert real_nonce in (FIXTURES / "aci" / "real" / "SOURCE.md").read_text()
real_keyset = real["attestation"]["workload_keyset"]
print("members of the keyset:", list(real_keyset))
print("keyset_epoch         :", real_keyset["keyset_epoch"],
      "(u64::MAX, the largest unsigned 64-bit integer: in effect 'never expires')")
print("fetched_at           :", real["attestation"]["freshness"]["fetched_at"])

# %% [markdown]
# By hand, as in sections 3–5: the keyset digest; `workload_id` = sha256(JCS of the identity's public key);
# the preview statement (it also names the workload_id); report_data; and its place in the real quote. Python's
# `json` keeps `18446744073709551615` exact (JavaScript would not).

# %%
real_digest = sha256_digest(real_keyset)
workload_id = sha256_digest(real_keyset["workload_identity"]["public_key"])
real_stmt = canonicalize({"nonce": real_nonce, "purpose": "aci.report_data.v1", "workload_id": workload_id,
                          "workload_keyset_digest": real_digest})
real_rd = hashlib.sha256(real_stmt).hexdigest()
real_quote = parse_quote(real["attestation"]["evidence"]["quote"])
display(show_table([
    ("workload_keyset_digest", real_digest, real["workload_keyset_digest"]),
    ("workload_id", workload_id, real["workload_id"]),
    ("report_data = sha256(statement)", real_rd, real["attestation"]["report_data"]),
    ("quote bytes 568..600", real_quote.raw[568:600].hex(), real_rd),
    ("quote bytes 600..632", real_quote.raw[600:632].hex(), "00" * 32),
], columns=["value", "recomputed", "claimed / expected"]))
print(real_stmt.decode())
assert real_digest == real["workload_keyset_digest"] and workload_id == real["workload_id"]
assert real_rd == real["attestation"]["report_data"]
assert real_quote.body.report_data == bytes.fromhex(real_rd) + bytes(32)
assert real_stmt == statement(real_digest, real_nonce, shape="preview", workload_id=workload_id)

# %% [markdown]
# Now phalanb's verifier under the **production** policy (Intel's pinned root), placed at the capture time: the
# PCK certificates must have been valid then. (The time is the capture's own word, used only for that window.)

# %%
at = real["attestation"]["freshness"]["fetched_at"]
real_att = verify_aci_report(real_raw, nonce=bytes.fromhex(real_nonce), policy=Policy(), at=at)
table(real_att.checks)
print(real_att.verdict.status)
assert real_att.verdict["tdx.pck_chain"].passed and "intel" in real_att.verdict["tdx.pck_chain"].reason
assert real_att.verdict["aci.report_data"].passed and real_att.verdict["aci.keyset_endorsement"].passed

# %% [markdown]
# **Why `incomplete`, never `verified`:** the quote's signatures chain to Intel's root, so *some* genuine TDX
# machine produced it — but whether that machine's firmware and microcode were up to date (its TCB status), and
# whether its certificates were revoked, needs Intel's *collateral* for that date, which was not captured. The
# capture also has no `app_compose` (so the measured configuration cannot be read), and the custody chains are only
# judged once the auditor allow-lists a KMS root. Each missing piece is shown as **skipped**, and any skipped
# required check keeps the verdict from `verified`. The u64::MAX `not_after` is a warning (preview builds all sent
# it). And a wrong nonce still fails:

# %%
from phalanb.aci import KNOWN_KMS_ROOTS

assert real_att.verdict["tdx.tcb_status"].status.value == "skipped" and real_att.verdict.status == "incomplete"
wrong = verify_aci_report(real_raw, nonce=bytes(32), policy=Policy(), at=at)
assert {c.id for c in wrong.verdict.failed} == {"aci.report_data", "aci.nonce_fresh"}
# An auditor who accepts Phala's KMS root (recovered from this very capture) lists it; custody then passes.
kms = Policy(aci_kms_roots=tuple(KNOWN_KMS_ROOTS))
assert verify_aci_report(real_raw, nonce=bytes.fromhex(real_nonce), policy=kms, at=at).verdict[
    "aci.key_custody"].passed

# %% [markdown]
# ## Check yourself
#
# 1. Why must the statement be rebuilt from the nonce *you* sent and the digest *you* recomputed, never read from
#    the report?
# 2. The smart liar in section 10 made `aci.keyset_digest` pass. Which bytes stopped them, and who signed those?
# 3. Flip a byte of the *request* instead (`verify(request_bytes=...)`): which check goes red? Edit the cell below.
# 4. The real capture's quote chains to Intel's root. What exactly would you need to fetch to make it `verified`?
#
# Try them first. Then, to compare with a worked answer, type `solution()` in a new cell: the collapsed cell below
# only *defines* it, so Run All never gives the answer away.

# %%
# Question 3: change the request bytes below (a word, one byte…), then run this cell; red(v) lists what failed.
edited_request = exchange.request_bytes
v = verify(request_bytes=edited_request)
print(red(v) or "nothing failed: these are the bytes the receipt hashes")

# %% jupyter={"source_hidden": true} tags=["solution"]
def solution():
    """Worked answers (offline: the evidence fetched above is verified again with one piece changed)."""
    print("1. A statement read from the report would be the gateway's own claim: a replayed report carries the",
          "digest and nonce it was made for. Rebuilt from *your* nonce and *your* recomputed digest, it can only",
          "hash to report_data if the quote was made for this request and this keyset.")
    print("2. The quote's report_data: the TD's hardware signed it (the quote signature, chained to Intel's root),",
          "and it commits to sha256 of the statement, which holds the real digest — a keyset changed to match a",
          "new digest no longer hashes into what the hardware signed.")
    v3 = verify(request_bytes=exchange.request_bytes.replace(b"one sentence", b"two sentences"))
    print("3.", red(v3), "— only the request hash: the receipt still verifies, but not over the bytes you sent.")
    print("4. Intel's collateral for that quote's platform (TCB info and QE identity for its FMSPC, the PCK and root",
          "CRLs, as of the capture time), the app_compose whose hash the event log names, and a KMS root the",
          "auditor allow-lists; then no required check is skipped.")
    assert red(v3) == {"receipt.request_hash"}


# %%
# The simulator and the client stop with the kernel; solution() above needs neither (it re-verifies offline).
assert sim.base_url.startswith("http://127.0.0.1")
