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
# [Index](00_start_here.ipynb) · [← Back: attestation and the TDX quote](03_attestation_and_tdx_quote.ipynb) · [Next: GPU evidence →](05_gpu_evidence.ipynb)
#
# # 04 · The event log and the application
#
# The quote proves *a* TDX machine signed. Which software is it running? The quote carries five measurement
# registers: MRTD (the initial memory) and RTMR0-3, which start at zero and are *extended* with a hash for each thing
# loaded: `RTMR = sha384(RTMR ‖ digest)`. The machine ships an event log listing those digests; we replay it and
# must land on the quoted values.
#
# **What you will learn**
# - to replay an event log into RTMR0-3, register by register, and compare with the quote;
# - why runtime events must be recomputed from their payload (never trusting the shipped digest);
# - how dstack names the application: the compose hash, and `mr_config_id = 01 ‖ compose_hash`;
# - what an auditor reads in the app compose: a dev OS image, unpinned container images, injectable SSH keys.

# %%
import hashlib

import pandas as pd
from IPython.display import display

from phalanb.lab import fixtures_path
from phalanb.vllm.report import parse_report
from phalanb.session import Session, Settings
from phalanb.tdx import derive, parse_event_log, parse_quote, replay
from phalanb.widgets import table

FIXTURES = fixtures_path()
assert FIXTURES is not None, ("the real fixtures were not found: run `python -m phalanb.fixtures` in a terminal "
                              "(it fetches what their public sources hold, each checked by sha256, and names the rest), or set "
                              "PHALANB_FIXTURES to a copy")
with Session(Settings.from_env(model_server=True)) as session:
    print(session.settings.describe())
    attestation = session.client.attestation()
node = parse_report(attestation.report).nodes[0]
quote = parse_quote(node.intel_quote)
log = parse_event_log(node.effective_event_log)
print(f"{len(log)} events ({log.format})")

# %% [markdown]
# ## 1. Replay, one register at a time
#
# Each table lists the events extending one register and the register's value after each step. The last value
# must equal the register in the quote.

# %%
def replay_table(log, imr):
    value = bytes(48)
    rows = []
    for e in log.events:
        if e.imr != imr:
            continue
        digest = e.computed_digest()
        value = hashlib.sha384(value + digest).digest()
        rows.append({"#": e.index, "event": e.event or e.type_name, "digest": digest.hex()[:24] + "…",
                     f"RTMR{imr} after": value.hex()[:24] + "…"})
    return pd.DataFrame(rows), value


for imr in range(4):
    frame, final = replay_table(log, imr)
    quoted = quote.body.rtmrs[imr]
    display(table(frame, title=f"RTMR{imr}: {len(frame)} events; replayed value "
                               f"{'equals' if final == quoted else 'differs from'} the quote's"))
    assert final == quoted

# %% [markdown]
# phalanb's `replay` does the same in one call (`check_event_log` turns it into the `tdx.event_log` check):

# %%
assert replay(log).rtmrs == quote.body.rtmrs

# %% [markdown]
# ## 2. Runtime events: recompute, never trust
#
# dstack's runtime events (app id, compose hash, instance id, OS image hash, key provider…) are extended into RTMR3
# as `sha384(le32(0x08000001) ‖ ":" ‖ name ‖ ":" ‖ payload)`. A log could ship a digest that does not match its
# payload — so the digest is recomputed from the payload the auditor reads. A real 2026-06 report even ships these
# digests *empty*: trusting them makes the replay fail.

# %%
import json

real = parse_report(json.loads((FIXTURES / "reports/nanogpt-gemma-2026-06/attestation_report.json").read_text()))
real_node = real.nodes[0]
real_quote = parse_quote(real_node.intel_quote)
real_log = parse_event_log(real_node.effective_event_log)
empty = [e.event for e in real_log.runtime_events() if not e.digest]
trusting = replay(real_log, recompute_runtime=False).rtmrs[3] == real_quote.body.rt_mr3
recomputing = replay(real_log).rtmrs[3] == real_quote.body.rt_mr3
display(table([("runtime events shipping an empty digest", f"{len(empty)}: {', '.join(empty)}"),
               ("RTMR3 matches, trusting the shipped digests", trusting),
               ("RTMR3 matches, recomputing them from the payloads", recomputing)],
              columns=["nanogpt 2026-06", ""], title="Recompute, never trust"))
assert empty and not trusting and recomputing

# %% [markdown]
# ## 3. Which application? The compose hash
#
# A dstack app is described by one JSON document, the *app compose* (its docker-compose file, allowed environment
# variables, options). Its sha256 is the **compose hash**; it is measured into RTMR3 as the `compose-hash` event,
# and dstack also sets the quote's `mr_config_id` to `01 ‖ compose_hash ‖ 15 zero bytes`.

# %%
from phalanb.tdx import compose_hash, expected_mr_config_id

facts = derive(log, info=node.info, vm_config=node.vm_config)
display(table([("app id", facts.app_id), ("compose hash (from the event log)", facts.compose_hash),
               ("sha256(app compose)", compose_hash(facts.app_compose)),
               ("mr_config_id (in the quote)", quote.body.mr_config_id.hex())],
              columns=["", "value"], title="Which application"))
assert compose_hash(facts.app_compose) == facts.compose_hash
assert quote.body.mr_config_id == expected_mr_config_id(facts.compose_hash)

# %% [markdown]
# Change one character of the app compose and its hash no longer matches what was measured:

# %%
assert compose_hash(facts.app_compose.replace("}", " }", 1)) != facts.compose_hash

# %% [markdown]
# ## 4. What the app compose tells an auditor
#
# Measurements prove *what* runs; whether that is acceptable is a judgement. phalanb reports facts, not verdicts:
#
# - an OS image whose name contains `-dev` is a development image (debug tooling, maybe an SSH daemon);
# - container images referenced by tag (`vllm:v0.10`) rather than digest (`@sha256:…`) can change under the same
#   measurement — the compose hash pins the *name*, not the bytes pulled;
# - `DSTACK_AUTHORIZED_KEYS` among the allowed environment variables lets the operator inject SSH keys.
#
# The simulator's app and a real deployment side by side:

# %%
real_facts = derive(real_log, info=real_node.info, vm_config=real_node.vm_config)
audit = pd.DataFrame({"simulator": facts.audit, "nanogpt 2026-06": real_facts.audit}).T
display(table(audit[["os_image", "os_image_is_dev", "ssh_keys_injectable", "images_not_pinned"]].reset_index(
    names="deployment"), title="What the app compose tells an auditor"))
assert real_facts.audit["os_image_is_dev"] and real_facts.audit["ssh_keys_injectable"]
assert real_facts.audit["images_not_pinned"]
assert replay(real_log).rtmrs == real_quote.body.rtmrs  # …and yet every measurement checks out

# %% [markdown]
# The last line is the lesson: a deployment can pass every cryptographic check and still be one an auditor would
# question. Verification tells you *what* is running; the policy (`Policy(expected={...})`) says what you accept.
#
# ## 5. A real log from a published sample
#
# Phala's private-ml-sdk ships a dstack quote with its event log; replaying it must reproduce RTMR0-3.

# %%
sample = FIXTURES / "tdx/private-ml-sdk"
sample_quote = parse_quote((sample / "dstack_quote.hex").read_text().strip())
sample_log = parse_event_log((sample / "dstack_event_log.json").read_text())
replayed = replay(sample_log).rtmrs
display(table([(f"RTMR{i}", replayed[i] == sample_quote.body.rtmrs[i]) for i in range(4)],
              columns=["register", "replayed = quoted"], title=f"private-ml-sdk sample: {len(sample_log)} events"))
assert replayed == sample_quote.body.rtmrs

# %% [markdown]
# ## Check yourself
#
# 1. Why can't an attacker remove an event from the log and still match the quote?
# 2. What does `mr_config_id` add, if the compose hash is already in RTMR3?
# 3. Edit section 1 to use `e.digest` instead of `e.computed_digest()` and run it on `real_log`: which register
#    stops matching?
#
# Try them first. Then, to compare with a worked answer, type `solution()` in a new cell: the collapsed cell below
# only *defines* it, so Run All never gives the answer away.

# %% jupyter={"source_hidden": true} tags=["solution"]
def solution():
    """Questions 1 and 3 worked out."""
    dropped = parse_event_log(node.effective_event_log)
    dropped.events = [e for e in dropped.events if e.event != "compose-hash"]
    assert replay(dropped).rtmrs[3] != quote.body.rt_mr3
    print("1. Without its compose-hash event the log replays to another RTMR3: every event is folded into the "
          "register in order, and the register is signed inside the quote.")
    shipped = replay(real_log, recompute_runtime=False).rtmrs
    display(table([(f"RTMR{i}", shipped[i] == real_quote.body.rtmrs[i]) for i in range(4)],
                  columns=["register", "matches with shipped digests"], title="3. Trusting e.digest on real_log"))
    assert shipped[3] != real_quote.body.rt_mr3
    print("3. RTMR3: the runtime events live there, and this log ships their digests empty.")


# %%
assert replay(log).rtmrs == quote.body.rtmrs
