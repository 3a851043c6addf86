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
# [Index](00_start_here.ipynb) · [← Back: start here](00_start_here.ipynb) · [Next: hashing and signatures →](02_hashing_and_signatures.ipynb)
#
# # 01 · Chat and exact bytes
#
# The service signs `sha256(request bytes):sha256(response bytes)`. *Bytes* — not the JSON they encode, not the
# text of the reply. This notebook looks at those bytes.
#
# **What you will learn**
# - what a streaming (SSE) reply looks like on the wire, and how it differs from a non-streaming one;
# - why the hash must be taken over the bytes as they arrived, and how re-serialising breaks it;
# - how to keep the OpenAI SDK and still capture the exact bytes underneath.
#
# Runs against phalanb's simulator unless `PHALANB_MODEL_SERVER_URL` is set (see [00](00_start_here.ipynb)).

# %% tags=["parameters"]
# What we hash as "the response". The lesson only holds for "received bytes"; try "rebuilt lines" and watch the
# assertion below fail.
HASH_OVER = "received bytes"

# %%
import hashlib
import json

from IPython.display import display

from phalanb.session import Session, Settings
from phalanb.vllm.signatures import fetch_signature, parse_signed_text
from phalanb.widgets import table

session = Session(Settings.from_env(model_server=True))
client = session.client
print(session.settings.describe())

# %% [markdown]
# ## 1. A streaming reply, byte for byte
#
# With `stream: true` the reply is *server-sent events*: each event is a line `data: {json}` followed by a blank
# line, and the stream ends with `data: [DONE]`. phalanb's client records every byte as it comes off the socket.

# %%
exchange = client.chat("Name the three parts of a TDX quote.", stream=True)
print(exchange)
print("request bytes :", exchange.request_bytes.decode())
print("first 300 response bytes:")
print(exchange.response_bytes[:300].decode(errors="replace"))
print("…")
print("last 60 bytes:", exchange.response_bytes[-60:])

# %%
from phalanb.wire.sse import parse_sse

events = parse_sse(exchange.response_bytes)
print(f"{len(events)} events; the last one is [DONE]: {events[-1].done}")
print("the reply text, assembled from the events:", exchange.text)
assert events[-1].done and exchange.response_bytes.endswith(b"data: [DONE]\n\n")

# %% [markdown]
# ## 2. The signature names two hashes
#
# After the stream has ended, the service keeps a signature for the chat id (for 20 minutes on current servers).
# Its `text` is `request_hash:response_hash`.

# %%
signature = fetch_signature(client, exchange.chat_id)
signed = parse_signed_text(signature.text)
print("signed text  :", signature.text)
print("request hash :", signed.request_hash)
print("response hash:", signed.response_hash)

# %% [markdown]
# ## 3. Hash what arrived
#
# Below, `bytes_to_hash` is the one decision that matters. The right answer is the bytes exactly as received —
# `data: ` prefixes, blank lines, `[DONE]` and all. A tempting wrong answer is to parse the events and write them
# out again ("rebuilt lines"): the JSON is the same, the bytes are not.

# %%
def rebuilt_lines(raw: bytes) -> bytes:
    """What a client that re-serialises each event would hash (json.dumps spacing, one newline style)."""
    out = b""
    for event in parse_sse(raw):
        data = event.data if event.done else json.dumps(event.json())
        out += b"data: " + data.encode() + b"\n\n"
    return out


def bytes_to_hash(ex) -> bytes:
    return ex.response_bytes if HASH_OVER == "received bytes" else rebuilt_lines(ex.response_bytes)


ours = hashlib.sha256(bytes_to_hash(exchange)).hexdigest()
print("sha256 of what we hash:", ours)
assert hashlib.sha256(exchange.request_bytes).hexdigest() == signed.request_hash
assert ours == signed.response_hash, f"hashing {HASH_OVER!r} does not give the signed response hash"

# %% [markdown]
# ## 4. Watch re-serialising break the hash
#
# The rebuilt stream carries the same events with the same content — yet one different space is enough.

# %%
from phalanb.vllm.signatures import first_difference

rebuilt = rebuilt_lines(exchange.response_bytes)
at = first_difference(exchange.response_bytes, rebuilt)
print("first differing byte at offset", at)
print("received:", exchange.response_bytes[max(0, at - 20):at + 20])
print("rebuilt :", rebuilt[max(0, at - 20):at + 20])
print("sha256(rebuilt) =", hashlib.sha256(rebuilt).hexdigest())
assert [e.data for e in parse_sse(rebuilt)][-1] == "[DONE]"  # the same events…
assert hashlib.sha256(rebuilt).hexdigest() != signed.response_hash  # …but not the signed bytes

# %% [markdown]
# ## 5. A non-streaming reply
#
# Without streaming the reply is one JSON body. Two server generations hashed it differently: newer ones hash the
# body bytes (candidate A); older ones hashed `json.dumps(json.loads(body))` (candidate B). phalanb computes both,
# accepts either, and reports which one matched.

# %%
from phalanb.vllm.signatures import response_hash_candidates

plain = client.chat("Say hello.", stream=False)
plain_signed = parse_signed_text(fetch_signature(client, plain.chat_id).text)
print(plain.response_bytes[:200].decode(), "…")
display(table([(c.name, c.sha256, "← signed" if c.sha256 == plain_signed.response_hash else "")
               for c in response_hash_candidates(plain.response_bytes, stream=False)],
              columns=["candidate", "sha256", ""], title="What the service may have hashed"))
assert plain_signed.response_hash in {c.sha256 for c in response_hash_candidates(plain.response_bytes, stream=False)}

# %% [markdown]
# ## 6. Keep the OpenAI SDK, capture the bytes
#
# If your code already uses the `openai` package, give it phalanb's recording HTTP client. The SDK works as
# before; the recorder keeps each exchange's exact bytes for verification. (The key goes only into the request's
# `Authorization` header, which the recorder stores redacted.)

# %%
import openai

from phalanb.wire.capture import Recorder
from phalanb.vllm.verify import chat_checks

recorder = Recorder()
key = session.settings.api_key
oai = openai.OpenAI(base_url=client.base_url, api_key=key.reveal() if key and not session.sim else "not-needed",
                    http_client=recorder.http_client(), max_retries=0)
chunks = oai.chat.completions.create(model=client.model, stream=True,
                                     messages=[{"role": "user", "content": "What is an RTMR?"}])
sdk_text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
captured = recorder.last
checks, signer = chat_checks(captured, fetch_signature(client, captured.chat_id))
display(table([("exchange", repr(captured)),
               ("authorization header, as stored", captured.request_headers.get("authorization"))],
              columns=["captured under the SDK", ""]))
display(table([(c.id, c.status.value, c.reason) for c in checks], columns=["check", "status", "reason"]))
assert captured.text == sdk_text and all(c.passed for c in checks)

# %% [markdown]
# ## Check yourself
#
# 1. Why can two byte strings carry "the same" JSON and still hash differently?
# 2. Where does a streaming reply's signed byte string end?
# 3. Set `HASH_OVER = "rebuilt lines"` in the parameters cell and re-run: which assertion fails, and why is that the
#    right outcome?
#
# Try them first. Then, to compare with a worked answer, type `solution()` in a new cell: the collapsed cell below
# only *defines* it, so Run All never gives the answer away.

# %% jupyter={"source_hidden": true} tags=["solution"]
def solution():
    """Worked answers, from the bytes this notebook holds (no service is asked again)."""
    same = json.loads(b'{"a": 1, "b": 2}') == json.loads(b'{"b":2,"a":1}')
    print("1. Same JSON, other bytes:", same, "— but the hashes differ:",
          hashlib.sha256(b'{"a": 1, "b": 2}').hexdigest()[:12], "≠", hashlib.sha256(b'{"b":2,"a":1}').hexdigest()[:12],
          "\n   A hash sees bytes, not meaning: spacing, key order, escapes and a final newline all change it.")
    tail = exchange.response_bytes[-14:]
    print("2. The streamed reply's signed bytes end with", tail, "— everything the server sent, up to and",
          "including the blank line after data: [DONE].")
    print("3. With HASH_OVER = 'rebuilt lines' the hash of section 3 no longer equals the signed response hash, so",
          "its assertion fails: bytes rebuilt from parsed events are not the bytes that were signed, and a verifier",
          "that hashed them would report a tampered reply where there was none — or miss one that was.")
    assert same and tail.endswith(b"data: [DONE]\n\n")


# %%
assert exchange.stream and not plain.stream
assert hashlib.sha256(exchange.response_bytes).hexdigest() == signed.response_hash
session.close()
