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
# [Index](00_start_here.ipynb) · [← Back: hashing and signatures](02_hashing_and_signatures.ipynb) · [Next: event log and the application →](04_event_log_and_application.ipynb)
#
# # 03 · Attestation and the TDX quote
#
# A signature names an address. The attestation report says which machine holds the key behind it: an Intel TDX
# *quote* — a signed statement by the CPU — whose `report_data` carries the key and our nonce.
#
# **What you will learn**
# - why we send a fresh random nonce, and how `report_data` binds the signing key and that nonce;
# - the quote byte by byte: header, TD report body, signature data — a map and a field table;
# - the signature chain, step by step, up to Intel's pinned root; then collateral and the TCB status;
# - real quotes from Intel, Google, Phala and NEAR beside the simulator's.
#
# The live part asks the simulator (or the model server in `PHALANB_MODEL_SERVER_URL`); the real quotes come from
# the fixtures.

# %%
import pandas as pd
from IPython.display import display

from phalanb.lab import fixtures_path
from phalanb.vllm.report import parse_report
from phalanb.session import Session, Settings
from phalanb.tdx import parse_quote
from phalanb.widgets import table

FIXTURES = fixtures_path()
assert FIXTURES is not None, ("the real fixtures were not found: run `python -m phalanb.fixtures` in a terminal "
                              "(it fetches what their public sources hold, each checked by sha256, and names the rest), or set "
                              "PHALANB_FIXTURES to a copy")
session = Session(Settings.from_env(model_server=True))
print(session.settings.describe())

# %% [markdown]
# ## 1. A fresh nonce
#
# We ask for a report with 32 random bytes of our own. A report made for *our* nonce cannot have been recorded
# earlier and replayed: that is freshness.

# %%
result = session.chat_and_verify("What does a TDX quote prove?")
nonce = result.attestation.nonce
report = parse_report(result.attestation.report)
node = report.select(result.signature.signing_address)
display(table([("our nonce", nonce.hex()), ("report shape", f"{report.shape} — {report.description}"),
               ("signing address", node.signing_address), ("request_nonce in the report", node.request_nonce)],
              columns=["", "value"], title="The report we asked for"))
assert node.request_nonce == nonce.hex()

# %% [markdown]
# ## 2. report_data binds the key and the nonce
#
# The TD chooses 64 bytes of `report_data` and the CPU signs them inside the quote. dstack puts the signing
# address (right-padded to 32 bytes) in the first half and our nonce in the second.

# %%
from phalanb.vllm.report import expected_report_data

quote = parse_quote(node.intel_quote)
rd = quote.body.report_data
first_half, how = expected_report_data(node)
display(table([("report_data[:32]", rd[:32].hex(), how), ("report_data[32:]", rd[32:].hex(), "our nonce")],
              columns=["bytes", "value", "holds"], title="report_data, signed inside the quote"))
assert rd[:32] == first_half and rd[32:] == nonce
assert result.verdict["report.report_data"].passed and result.verdict["report.nonce_fresh"].passed

# %% [markdown]
# ## 3. The quote, byte by byte
#
# A v4 quote is a 48-byte header, a 584-byte TD report (the body), then the signature data: the quote signature,
# the attestation key, and the certification data (the Quoting Enclave's report, its signature, and the PCK
# certificate chain). Everything before the signature data is what the attestation key signs.

# %%
from phalanb.timing import plots

rows = list(quote.fields())
# phalanb's figure: the quote's regions, then every field of the TD report and of the signature data.
display(plots.quote_byte_map(quote))

# %%
fields = pd.DataFrame([(f.name, f.offset, f.size, f.meaning) for f in rows],
                      columns=["field", "offset", "size", "meaning"])
display(table(fields, title="Every field of the quote (offsets and sizes in bytes)"))
assert fields.loc[fields.field == "report_data", "offset"].item() == 568  # v4: 48 + 520
assert quote.raw[568:632] == rd

# %% [markdown]
# Pick a field to see exactly which bytes it occupies:

# %%
from phalanb.widgets import QuoteExplorer

explorer = QuoteExplorer(quote)
explorer.select("report_data")
display(explorer)
assert explorer.highlight == (568, 632)

# %% [markdown]
# ## 4. The signature chain, step by step
#
# 1. the attestation key signed the header and the TD report;
# 2. the PCK leaf certificate's key signed the Quoting Enclave's report;
# 3. that QE report's data is sha256(attestation key ‖ QE auth data): the QE vouches for the attestation key;
# 4. the PCK chain ends at the **pinned** root (Intel's SGX Root CA; here the simulator's root, because the policy
#    says `simulated`). The root is pinned by its key, never by its name.

# %%
from phalanb.tdx import verify_quote_offline
from phalanb.tdx.roots import tdx_root

root = tdx_root(session.policy)
offline = verify_quote_offline(quote, root=root)
display(table([(f"{'✓' if s.ok else '✗'} {s.name}", s.reason) for s in offline.steps], columns=["step", "why"],
              title="Offline verification of the simulator's quote"))
assert offline.ok

# %% [markdown]
# The chain inside the quote, leaf first, and the root it must end at (identified by the sha256 of its key):

# %%
from cryptography import x509

from phalanb.tdx import TrustRoot

chain = [x509.load_pem_x509_certificate(pem.encode()) for pem in quote.pck_chain_pem]
display(table([(c.subject.rfc4514_string(), c.issuer.rfc4514_string()) for c in chain],
              columns=["certificate (leaf first)", "issued by"], title="The PCK chain inside the quote"))
display(table([("pinned root (this policy)", root.subject, root.key_sha256[:16] + "…"),
               ("Intel's SGX Root CA", TrustRoot.intel().subject, TrustRoot.intel().key_sha256[:16] + "…")],
              columns=["root", "subject", "key sha256"], title="Roots, identified by their key"))
assert chain[-1].issuer == root.cert.subject

# %% [markdown]
# Flip one bit inside the signed region — say, in `report_data` — and step 1 fails: nobody can move a quote onto
# another key or nonce.

# %%
raw = bytearray(quote.raw)
raw[570] ^= 0x01
broken = verify_quote_offline(bytes(raw), root=root)
display(table([(s.name, "holds" if s.ok else "fails") for s in broken.steps], columns=["step", "after the flip"]))
assert not broken.step("quote_signature").ok and broken.step("pck_chain").ok

# %% [markdown]
# ## 5. Collateral and TCB status
#
# Signatures say *who* signed; they do not say whether that platform is patched. Intel publishes *collateral*
# (TCB info, QE identity, revocation lists; valid for about a month) through its PCS or a caching PCCS. With it,
# dcap-qvl computes the platform's TCB status: `UpToDate`, `SWHardeningNeeded`, `OutOfDate`, … The policy decides
# which statuses pass. The session fetched collateral from the simulator's PCCS:

# %%
from phalanb.tdx import TdxPolicy, verify_tdx

tdx = verify_tdx(quote, collateral=result.online.collateral, policy=TdxPolicy(trust_root=root))
display(table([(c.id, c.status.value, c.reason) for c in tdx.checks], columns=["check", "status", "reason"],
              title=f"With collateral: TCB status {tdx.dcap.status}"))
assert tdx.dcap.status == "UpToDate"

# %% [markdown]
# ## 6. Real quotes beside the simulator's
#
# The fixtures hold quotes from real machines with the collateral Intel published at the time. Verified at the time
# they were captured (`verify_now`), against Intel's pinned root, their TCB status must match what dcap-qvl said
# independently (`ground_truth.json`). One of them is Intel's own *synthetic* sample: its root has Intel's name
# but another key, so the chain must fail.

# %%
import json

from phalanb.tdx import load_collateral

truth = {e["file"]: e for e in json.loads((FIXTURES / "tdx" / "ground_truth.json").read_text())}


def load(rel):
    path = FIXTURES / "tdx" / rel
    data = path.read_bytes()
    return parse_quote(data.decode().strip() if path.suffix in (".hex", ".txt") else data)


lineup = [("simulator", quote, result.online.collateral, None, root)]
for rel in ("dcap-qvl/tdx_quote", "go-tdx-guest/quote_v5_sample.dat", "private-ml-sdk/dstack_quote.hex",
            "dcap-qvl/tdx-quote.hex"):
    e = truth[rel]
    lineup.append((rel, load(rel), load_collateral(FIXTURES / "tdx" / e["collateral"]), e["verify_now"], None))
lineup.append(("intel-qvl/quote.dat (synthetic)", load("intel-qvl/quote.dat"), None, None, None))

lineup_rows = []
for name, q, col, at, r in lineup:
    res = verify_tdx(q, collateral=col, at=at, policy=TdxPolicy(trust_root=r))
    checks = {c.id: c.status.value for c in res.checks}
    lineup_rows.append({"quote": name, "version": q.version, "body": q.report_class, "bytes": len(q.raw),
                  "mr_td": q.body.mr_td.hex()[:16] + "…", "signature": checks["tdx.quote_signature"],
                  "chain": checks["tdx.pck_chain"],
                  "tcb": (res.dcap.status or res.dcap.error) if res.dcap else "no collateral"})
lineup_table = pd.DataFrame(lineup_rows)
display(table(lineup_table, title="Real quotes beside the simulator's, verified when they were captured"))
assert lineup_table.loc[1, "tcb"] == truth["dcap-qvl/tdx_quote"]["verify_status"] == "UpToDate"
assert lineup_table.loc[2, "version"] == 5 and lineup_table.loc[2, "tcb"] == "UpToDate"
assert "No matching TCB level" in lineup_table.loc[4, "tcb"] and lineup_table.loc[4, "signature"] == "pass"
assert lineup_table.loc[5, "chain"] == "fail"  # a look-alike root is not Intel's root

# %% [markdown]
# ## Check yourself
#
# 1. Which bytes of a v4 quote does the attestation key sign, and where inside them is `report_data`?
# 2. Why is a root certificate identified by its key and not by its subject name?
# 3. A quote verifies but its TCB status is `OutOfDate`. Which step passed, which did not, and who decides?
# 4. Edit section 4 to flip a byte *after* the signed region (in the PCK chain): which step fails now?
#
# Try them first. Then, to compare with a worked answer, type `solution()` in a new cell: the collapsed cell below
# only *defines* it, so Run All never gives the answer away.

# %% jupyter={"source_hidden": true} tags=["solution"]
def solution():
    """Questions 1 and 4 worked out."""
    print(f"1. The attestation key signs bytes 0..{quote.signed_length}: the {quote.body_offset}-byte header and the "
          f"TD report; report_data is bytes 568..632, the last 64 of them.")
    assert quote.signed_length == 632 and quote.body_offset == 48
    at = quote.raw.index(b"-----BEGIN CERTIFICATE-----") + 100  # inside the first certificate's base64
    raw = bytearray(quote.raw)
    raw[at] = ord("A") if raw[at] != ord("A") else ord("B")
    steps = verify_quote_offline(bytes(raw), root=root).steps
    display(table([(s.name, "holds" if s.ok else "fails", s.reason) for s in steps],
                  columns=["step", "result", "why"], title=f"4. One base64 character changed at byte {at}"))
    assert steps[0].ok and not verify_quote_offline(bytes(raw), root=root).step("pck_chain").ok
    print("4. The quote signature still holds (the chain lies outside the bytes it signs), but the PCK leaf no "
          "longer reads as a certificate: the QE report signature and the chain steps fail. The chain protects "
          "itself.")


# %%
assert verify_quote_offline(quote, root=root).ok and not verify_quote_offline(quote).ok  # Intel's root ≠ simulator's
session.close()
