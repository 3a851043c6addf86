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
# [Index](00_start_here.ipynb) · [← Back: the reseller chain](10_reseller_chain.ipynb) · (last notebook)
#
# # 11 · What the wire sees: end-to-end encryption (ACI E2EE v2, then v3)
#
# Attestation proves *which* machine holds a key. It is only worth something if your prompt goes **to** that
# machine and nowhere else: not to a proxy, a load balancer or a log on the way. The ACI gateway offers E2EE v2:
# each prompt field is encrypted to an `e2ee_public_keys` entry of the attested keyset, the reply comes back
# encrypted to a key only you hold, and the signed receipt hashes both what the gateway decrypted and the
# ciphertext it sent. This notebook puts the bytes that travel next to the text they hide.
#
# **What you will learn**
# - *verify before you send*: the only key phalanb encrypts to comes from a keyset it has just verified;
# - the same prompt in clear and encrypted, byte for byte, and what still shows (lengths, the model, the headers);
# - one sealed field taken apart: ephemeral public key ‖ GCM nonce ‖ ciphertext ‖ tag;
# - the associated data (AAD) built by hand, and why changing the model, nonce or timestamp breaks decryption;
# - a reply field decrypted by hand with `cryptography` (X25519, HKDF-SHA256, AES-256-GCM);
# - how the receipt ties it together (the *restored* request, the ciphertext reply), and the three `e2ee.*` checks;
# - what the gateway refuses (a key outside the keyset, a replayed nonce, a stale timestamp), and why a key taken
#   on trust can never give a `verified` verdict.
#
# Like notebooks 08-10, this one always runs its own ACI simulator, whatever `PHALANB_BASE_URL` says: it moves
# the gateway's clock in section 9, which cannot be done to a real service. Its roots are phalanb's *simulated*
# ones.

# %%
import base64
import hashlib
import json
import os
import time
from itertools import zip_longest

import httpx
from IPython.display import display

from phalanb.wire.client import Client
from phalanb.policy import Policy
from phalanb.sim import SimConfig, Simulator
from phalanb.widgets import table as show_table  # left-aligned, wrapped, nothing cut

API_KEY = "sk-notebook-11-not-a-real-key"
# Sections 1-10 walk through E2EE v2, which the August 2026 gateway speaks (aci_shape "aug-2026"); section 11
# shows E2EE v3, the whole-body seal of the v3 revision that the simulator serves by default.
sim = Simulator(SimConfig(seed=11, ttft_ms=0, tokens_per_second=0, protocol="aci", api_key=API_KEY,
                          aci_shape="aug-2026")).start()
client = Client(base_url=sim.base_url, api_key=API_KEY, model=sim.model)
policy = Policy.for_simulator()  # the simulated Intel root and the simulated dstack-KMS root are trusted
PROMPT = "My bank PIN is 4417. Keep it secret."
print(sim)


def table(rows, columns):
    """Rows as a table: text left-aligned, every value in full, wrapped."""
    display(show_table(rows, columns=columns))


# %% [markdown]
# ## 1. Verify before you send
#
# The key to encrypt to is read from the gateway's report — but a report anyone could have written is worth
# nothing. So we do notebook 09's work first: ask for the report with a fresh nonce, verify the binding and the
# quote, and only then take the key, from the **established** keyset `verify_aci_report` returns (it is `None`
# when anything required failed).

# %%
from phalanb.aci import AttestedE2EEKey, verify_aci_report
from phalanb.tdx import fetch_collateral_sync, parse_quote

att = client.aci_attestation()  # a fresh random nonce
collateral = fetch_collateral_sync(parse_quote(att.document["attestation"]["evidence"]["quote"]),
                                   sim.base_url.removesuffix("/v1") + "/pccs")
attested = verify_aci_report(att.raw, nonce=att.nonce, policy=policy, collateral=collateral)
print("report:", attested.verdict.summary())
assert attested.keyset is not None, attested.reason
table([(k["key_id"], k["algo"], k["public_key"][:32] + "…") for k in attested.keyset.e2ee_keys],
      ["key_id", "algo", "public_key"])
key = AttestedE2EEKey.from_established_keyset(attested.keyset)  # X25519 preferred, the spec's recommended suite
print(key)
assert key.attested and key.public_key_hex in {k["public_key"] for k in attested.keyset.e2ee_keys}

# %% [markdown]
# There is no other door. A key string, the attestation object itself, or a hand-made key are all refused:

# %%
from phalanb.errors import E2EEError, InputError

for attempt in (lambda: client.chat(PROMPT, e2ee=key.public_key_hex),        # a bare key string
                lambda: AttestedE2EEKey.from_established_keyset(attested),   # not its verified keyset
                lambda: AttestedE2EEKey(key.public_key_hex)):                # built by hand
    try:
        attempt()
        raise AssertionError("this key should have been refused")
    except (E2EEError, InputError, TypeError) as refused:
        print("refused:", refused)

# %% [markdown]
# ## 2. The same prompt, in clear and encrypted
#
# Two chats, same prompt, same settings. The second passes `e2ee=key`: phalanb seals every prompt field and adds
# five headers. `request_bytes` are the exact bytes that left this notebook.

# %%
clear = client.chat(PROMPT, stream=False, max_tokens=24)
sealed = client.chat(PROMPT, stream=False, max_tokens=24, e2ee=key)


def lines(b, width=64):
    text = b.decode()
    return [text[i:i + width] for i in range(0, len(text), width)]


side_by_side = list(zip_longest(lines(clear.request_bytes), lines(sealed.request_bytes), fillvalue=""))
table(side_by_side, ["request bytes in clear", "request bytes encrypted (E2EE v2)"])

# %%
def reply_field(exchange):
    return json.loads(exchange.response_bytes)["choices"][0]["message"]["content"]


e2ee_headers = {k: v for k, v in sealed.request_headers.items() if k.lower().startswith("x-e2ee")
                or k.lower() in ("x-client-pub-key", "x-model-pub-key")}
table([("body length", len(clear.request_bytes), len(sealed.request_bytes)),
       ("messages.0.content", json.loads(clear.request_bytes)["messages"][0]["content"],
        json.loads(sealed.request_bytes)["messages"][0]["content"][:60] + "…"),
       ("model, max_tokens, stream", "in clear", "in clear (not encrypted by E2EE v2)"),
       *[(name, "—", value) for name, value in e2ee_headers.items()],
       ("reply on the wire: choices.0.message.content", reply_field(clear)[:60] + "…",
        reply_field(sealed)[:60] + "…"),
       ("reply we read", clear.text, sealed.text)],
      ["", "in clear", "encrypted"])

escaped = json.dumps(PROMPT)[1:-1].encode()  # the prompt as it appears inside a JSON string
assert PROMPT.encode() in clear.request_bytes
assert PROMPT.encode() not in sealed.request_bytes and escaped not in sealed.request_bytes
assert b"PIN is 4417" not in sealed.request_bytes  # (four digits alone can turn up by chance in the hex)
assert sealed.text and sealed.text.encode() not in sealed.response_bytes  # the reply travelled sealed too

# %% [markdown]
# What the wire still sees: the model, the other parameters, the headers (the client's one-time public key, the
# gateway key it chose, a nonce and a timestamp) — and the **length** of the prompt, as the next section shows.
#
# ## 3. One sealed field, taken apart
#
# A sealed value is lowercase hex of four pieces: a fresh **ephemeral public key** (32 bytes for X25519), a
# fresh 12-byte **GCM nonce**, the **ciphertext**, and GCM's 16-byte authentication **tag**. The ephemeral key
# and the gateway's key agree on a secret (ECDH) that only the ephemeral private key — thrown away after
# sealing — and the gateway's private key can compute.

# %%
value = json.loads(sealed.request_bytes)["messages"][0]["content"]
raw = bytes.fromhex(value)
n = len(raw)
pieces = [("ephemeral public key", 0, 32), ("GCM nonce", 32, 44), ("ciphertext", 44, n - 16), ("tag", n - 16, n)]
table([(what, f"{a}..{b}", b - a, raw[a:b].hex()[:48] + ("…" if b - a > 24 else "")) for what, a, b in pieces],
      ["piece", "bytes", "size", "hex"])
ephemeral, gcm_nonce, ciphertext, tag = (raw[a:b] for _, a, b in pieces)
assert len(ciphertext) == len(PROMPT.encode())  # GCM does not pad: the length of the prompt shows
assert ephemeral.hex() not in (key.public_key_hex, sealed.request_headers["x-client-pub-key"])  # fresh per field

# %% [markdown]
# ## 4. The associated data, by hand
#
# GCM authenticates more than the ciphertext: *associated data* (AAD) that is not sent in the field but that both
# sides must rebuild identically. E2EE v2's request AAD is the canonical JSON (JCS: no spaces, sorted members) of
# six members: a purpose, the suite, the model, the field's path, and the request's `X-E2EE-Nonce` and
# `X-E2EE-Timestamp` (an integer). A sealed prompt therefore cannot be moved to another model, field or request.

# %%
from phalanb.aci.e2ee_crypto import request_aad

record = sealed.e2ee  # what phalanb kept of this encrypted exchange (never the client's private key)
aad_by_hand = json.dumps({"purpose": "aci.e2ee.request.v2", "algo": record.algo, "model": record.model,
                          "field": "messages.0.content", "nonce": record.nonce, "ts": record.timestamp},
                         separators=(",", ":"), sort_keys=True).encode()
print(aad_by_hand.decode())
assert record.nonce == sealed.request_headers["x-e2ee-nonce"] and str(record.timestamp) == \
    sealed.request_headers["x-e2ee-timestamp"]
assert aad_by_hand == request_aad(record.algo, record.model, "messages.0.content", record.nonce, record.timestamp)

# %% [markdown]
# ## 5. A reply field, decrypted by hand
#
# `Client.chat` throws its one-time client key away after use, so to decrypt by hand we do its work ourselves:
# `prepare_request` seals the body to the attested key with a client secret *we* hold, we POST the exact bytes with
# the five headers, and open the reply with nothing but `cryptography`:
#
# 1. the reply field is again ephemeral key ‖ nonce ‖ ciphertext ‖ tag, this time sealed to *our* client key;
# 2. X25519(our secret, the gateway's ephemeral key) → a shared secret;
# 3. HKDF-SHA256 (no salt, info `aci.e2ee.v2.x25519`) → a 32-byte AES key;
# 4. AES-256-GCM opens ciphertext ‖ tag under the *response* AAD: the request's model, nonce and timestamp, plus
#    the reply's `id` and the field's path.

# %%
from phalanb.aci.e2ee import prepare_request

secret = os.urandom(32)  # our client private key for this one request
mine = prepare_request({"model": sim.model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 24},
                       model_key=key, client_secret=secret)
answer = httpx.post(f"{sim.base_url}/chat/completions", content=mine.body, timeout=30,
                    headers={**mine.headers, "Content-Type": "application/json",
                             "Authorization": f"Bearer {API_KEY}"})
assert answer.status_code == 200, answer.text
reply = json.loads(answer.content)
sealed_reply = reply["choices"][0]["message"]["content"]
print("reply id     :", reply["id"])
print("on the wire  :", sealed_reply[:96], "…")

# %%
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

r = bytes.fromhex(sealed_reply)
server_ephemeral, reply_nonce, reply_sealed = r[:32], r[32:44], r[44:]
shared = X25519PrivateKey.from_private_bytes(secret).exchange(X25519PublicKey.from_public_bytes(server_ephemeral))
aes_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"aci.e2ee.v2.x25519").derive(shared)


def response_aad(**change):
    """The JCS response AAD of this reply's first field, with some members changed."""
    members = {"purpose": "aci.e2ee.response.v2", "algo": mine.algo, "model": mine.model, "id": reply["id"],
               "field": "choices.0.message.content", "nonce": mine.nonce, "ts": mine.timestamp}
    members.update(change)
    return json.dumps(members, separators=(",", ":"), sort_keys=True).encode()


plaintext = AESGCM(aes_key).decrypt(reply_nonce, reply_sealed, response_aad())
print("decrypted    :", plaintext.decode())
assert plaintext.decode() == mine.decrypt_response(answer.content).text  # phalanb's own decryption agrees

# %% [markdown]
# ## 6. Change one member of the AAD, and decryption fails
#
# Same key, same ciphertext, same tag — one member of the associated data changed. GCM's tag no longer matches,
# and `decrypt` raises instead of returning anything: a reply cannot be passed off as the answer to another
# model, another request (nonce) or another moment (timestamp).

# %%
def opens(aad):
    try:
        AESGCM(aes_key).decrypt(reply_nonce, reply_sealed, aad)
        return True
    except InvalidTag:
        return False


changes = {"model": {"model": "another-model"}, "nonce": {"nonce": "00" * 32},
           "timestamp": {"ts": mine.timestamp + 1}, "response id": {"id": "chatcmpl-someone-else"},
           "field path": {"field": "choices.1.message.content"}}
results = {what: opens(response_aad(**change)) for what, change in changes.items()}
table([(what, json.dumps(change), "decrypts" if ok else "InvalidTag: refused") for (what, change), ok in
       zip(changes.items(), results.values())], ["AAD member changed", "to", "result"])
assert opens(response_aad())
assert not results["model"] and not results["nonce"] and not results["timestamp"]
assert not any(results.values())

# %% [markdown]
# ## 7. The receipt ties it together
#
# The gateway's signed receipt hashes what it saw. Under E2EE it cannot hash the bytes we sent for
# `request.received`: it hashes the body **after decryption** — re-serialised compactly in **our key order**
# (ACI.md §6: serde_json, *not* JCS). phalanb rebuilds those bytes as it seals (`exchange.e2ee.restored_request`).
# `response.returned` hashes the wire bytes it sent us, ciphertext included.

# %%
receipt = client.receipt(sealed.receipt_id)
events = {e["type"]: e for e in receipt.document["event_log"]}
restored = record.restored_request
jcs = json.dumps(json.loads(restored), separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def h(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


print("restored (our key order):", restored.decode())
print("JCS of the same JSON     :", jcs.decode())
table([("request.received", events["request.received"]["body_hash"], "restored body", h(restored)),
       ("", "", "JCS of the restored body", h(jcs)),
       ("", "", "the wire bytes we sent", h(sealed.request_bytes)),
       ("response.returned", events["response.returned"]["body_hash"], "the wire bytes we received",
        h(sealed.response_bytes))], ["event", "logged", "our bytes", "sha256"])
assert events["request.received"]["body_hash"] == h(restored)
assert json.loads(jcs) == json.loads(restored) and h(jcs) != h(restored)  # same JSON, other bytes, other hash
assert events["request.received"]["body_hash"] != h(sealed.request_bytes)
assert events["response.returned"]["body_hash"] == h(sealed.response_bytes)

# %% [markdown]
# ## 8. The whole verdict, with the three `e2ee.*` checks
#
# `verify_aci` joins every link of notebooks 09 and 10, and with an E2EE exchange adds three checks:
# `e2ee.key_attested` (the key in the headers is in the keyset the verified report established),
# `e2ee.request_encrypted` (every prompt field left sealed, and no plaintext is in the sent bytes) and
# `e2ee.response_authenticated` (every reply field opened under its AAD).

# %%
from phalanb.aci import E2EE_CHECK_IDS, parse_receipt
from phalanb.gateway import verify_aci


def verify(exchange):
    """verify_aci over one exchange of this notebook: its receipt, the sessions it cites, our verified report."""
    fetched = client.receipt(exchange.receipt_id)
    sessions = {sid: client.session(sid).raw for sid in parse_receipt(fetched.raw).cited_session_ids}
    return verify_aci(exchange, receipt=fetched.raw, report=att.raw, nonce=att.nonce, sessions=sessions,
                      policy=policy, collateral=collateral)


verdict = verify(sealed)
table([(c.id, c.status.value, c.reason) for c in verdict.checks if c.id.startswith(("e2ee.", "receipt."))],
      ["check", "status", "reason"])
print(verdict.summary())
assert verdict.status == "verified"
assert all(verdict[c].passed for c in E2EE_CHECK_IDS) and "restored" in verdict["receipt.request_hash"].reason

# %% [markdown]
# ## 9. What the gateway refuses
#
# The gateway checks the five headers before it decrypts anything, and answers HTTP 400 with an `e2ee_*` code;
# phalanb's error names the code.
#
# **A key outside the keyset.** Someone hands us a key "for the gateway" — theirs. Only the override accepts it
# (section 10), and the gateway refuses: it holds no private key for it.

# %%
from phalanb.errors import ServiceError

stranger = X25519PrivateKey.generate().public_key().public_bytes_raw().hex()
try:
    client.chat(PROMPT, stream=False, e2ee=AttestedE2EEKey.UNVERIFIED_override(stranger, key.algo))
    raise AssertionError("a key outside the keyset was accepted")
except ServiceError as refused:
    print(refused)
    assert refused.status == 400 and "e2ee_model_key_mismatch" in str(refused)

# %% [markdown]
# **A replayed nonce.** A relay between us and the gateway records our sealed request and later sends it again
# in place of a new one. It cannot read it, but could it make the gateway run it twice? The gateway remembers
# each (client key, service key, nonce) and refuses the second one.

# %%
class ReplayingRelay(httpx.BaseTransport):
    """Forwards the first request as is; every later one is replaced by the first one's exact bytes."""

    def __init__(self):
        self.inner, self.first = httpx.HTTPTransport(), None

    def handle_request(self, request):
        request.read()
        if self.first is None:
            self.first = request
        else:
            request = httpx.Request("POST", self.first.url, headers=self.first.headers, content=self.first.content)
        return self.inner.handle_request(request)


with Client(base_url=sim.base_url, api_key=API_KEY, model=sim.model, transport=ReplayingRelay()) as relayed:
    relayed.chat(PROMPT, stream=False, max_tokens=8, e2ee=key)  # the original: answered
    try:
        relayed.chat("Another question", stream=False, max_tokens=8, e2ee=key)
        raise AssertionError("a replayed request was accepted")
    except ServiceError as refused:
        print(refused)
        assert refused.status == 400 and "e2ee_replay_detected" in str(refused)

# %% [markdown]
# **A stale timestamp.** `X-E2EE-Timestamp` must be within 300 s of the gateway's clock, so a recorded request
# cannot be replayed after the gateway has forgotten its nonce. We move the simulated gateway's clock an hour
# ahead of ours (a request held back that long looks the same):

# %%
sim.aci.clock = lambda: time.time() + 3600
try:
    client.chat(PROMPT, stream=False, max_tokens=8, e2ee=key)
    raise AssertionError("a stale request was accepted")
except ServiceError as refused:
    print(refused)
    assert refused.status == 400 and "e2ee_invalid_timestamp" in str(refused)
finally:
    sim.aci.clock = time.time

# %% [markdown]
# ## 10. A key taken on trust is never `verified`
#
# `AttestedE2EEKey.UNVERIFIED_override` exists for the day you knowingly skip attestation. Here we give it the
# *very same* key bytes the verified keyset lists: the chat works and the reply decrypts, and `verify_aci` still
# will not say `verified`. The reason is not in the bytes but in *how we came by the key*: at the moment we
# encrypted, nothing we had verified said the key's private half lives in the attested TEE. The exchange
# remembers that (`key_attested=False`), `e2ee.key_attested` is *skipped*, and a skipped required check keeps the
# verdict `incomplete`. A saved exchange cannot argue its way up either: on re-verification the recorded flag
# only ever lowers trust, and the key is checked against the keyset the re-verified report establishes.

# %%
trusted_blindly = AttestedE2EEKey.UNVERIFIED_override(key.public_key_hex, key.algo)
blind = client.chat(PROMPT, stream=False, max_tokens=8, e2ee=trusted_blindly)
v = verify(blind)
print(trusted_blindly)
print(v["e2ee.key_attested"].status.value, "—", v["e2ee.key_attested"].reason)
print(v.summary())
assert blind.text and blind.e2ee.key_attested is False
assert v["e2ee.key_attested"].status.value == "skipped" and v.status != "verified"
assert v["e2ee.request_encrypted"].passed and v["e2ee.response_authenticated"].passed

# %% [markdown]
# ## 11. E2EE v3: the whole body sealed (the v3 gateway)
#
# The v3 revision of the protocol (ACI-v3.md in the project notes; what phalanb's simulator serves by default) seals the
# **entire request body** instead of single fields: the wire carries `{"model": …, "sealed_b64": …}` and three
# headers (`X-E2EE-Version: 3`, the client's one-time X25519 key, the attested model key). The AAD is plain bytes,
# not JSON: `"aci.e2ee.v3.request" 0x00 model 0x00 client_key_hex`. A unit is `ephemeral key (32) ‖ GCM nonce
# (12) ‖ ciphertext ‖ tag (16)`. The reply body (or each stream event's data) comes back as `{"sealed_b64": …}`.
# The same rule holds: the key comes from a keyset phalanb verified — here a v3 keyset, whose digest covers the
# keyset's exact bytes (`workload_keyset_b64`).

# %%
from phalanb.aci import e2ee_v3

v3sim = Simulator(SimConfig(seed=12, ttft_ms=0, tokens_per_second=0, protocol="aci", api_key=API_KEY)).start()
v3client = Client(base_url=v3sim.base_url, api_key=API_KEY, model=v3sim.model)
att3 = v3client.aci_attestation()
collateral3 = fetch_collateral_sync(parse_quote(att3.document["attestation"]["evidence"]["quote"]),
                                    v3sim.base_url.removesuffix("/v1") + "/pccs")
attested3 = verify_aci_report(att3.raw, nonce=att3.nonce, policy=policy, collateral=collateral3)
assert attested3.keyset is not None and attested3.keyset.shape == "v3", attested3.reason
key3 = AttestedE2EEKey.from_established_keyset(attested3.keyset)  # v3: X25519 only, compared verbatim
clear3 = v3client.chat(PROMPT, stream=False, max_tokens=24)
sealed3 = v3client.chat(PROMPT, stream=False, max_tokens=24, e2ee=key3)
print(key3)
table(list(zip_longest(lines(clear3.request_bytes), lines(sealed3.request_bytes), fillvalue="")),
      ["request bytes in clear", "request bytes sealed (E2EE v3)"])
table([(k, v) for k, v in sealed3.request_headers.items()
       if k.lower().startswith(("x-e2ee", "x-client", "x-model"))], ["header", "value"])
assert PROMPT.encode() not in sealed3.request_bytes and b"messages" not in sealed3.request_bytes
assert sorted(json.loads(sealed3.request_bytes)) == ["model", "sealed_b64"]

# %% [markdown]
# The AAD rebuilt by hand from the headers, the unit's layout, and the reply opened again with the per-unit key
# phalanb recorded (it opens that one unit only; the client's private key is never kept):

# %%
rec3 = sealed3.e2ee
aad3_by_hand = b"aci.e2ee.v3.request" + b"\0" + rec3.model.encode() + b"\0" + rec3.client_public_key.lower().encode()
assert aad3_by_hand == e2ee_v3.request_aad(rec3.model, rec3.client_public_key)
unit3 = base64.b64decode(json.loads(sealed3.request_bytes)["sealed_b64"])
table([("ephemeral X25519 key", 32), ("GCM nonce", 12), ("ciphertext = the whole plaintext body",
                                                          len(rec3.restored_request)), ("GCM tag", 16),
       ("unit", len(unit3))], ["part", "bytes"])
assert len(unit3) == 32 + 12 + len(rec3.restored_request) + 16
reply_unit = e2ee_v3.reply_units(sealed3.response_bytes, stream=False)[0]
reopened = e2ee_v3.open_unit_with_key(bytes.fromhex(rec3.reply_keys[0]), reply_unit,
                                      e2ee_v3.response_aad(rec3.model))
assert reopened.decode() == rec3.reply and sealed3.text.encode() not in sealed3.response_bytes
print("reply on the wire:", sealed3.response_bytes[:80].decode(), "…")
print("reply we read    :", sealed3.text)

# %% [markdown]
# The receipt (a v3 *envelope*: the signature covers the decoded `payload_b64` bytes) hashes the plaintext we
# sealed in `request.received` and the sealed envelope in `response.returned`; the verdict's three v3 checks are
# `e2ee.model_key`, `e2ee.request_sealed` and `e2ee.open`.

# %%
fetched3 = v3client.receipt(sealed3.receipt_id)
payload3 = parse_receipt(fetched3.raw)
events3 = {e["type"]: e for e in payload3.events}
assert events3["request.received"]["body_hash"] == h(rec3.restored_request)
assert events3["response.returned"]["body_hash"] == h(sealed3.response_bytes)
sessions3 = {sid: v3client.session(sid).raw for sid in payload3.cited_session_ids}
verdict3 = verify_aci(sealed3, receipt=fetched3.raw, report=att3.raw, nonce=att3.nonce, sessions=sessions3,
                      policy=policy, collateral=collateral3)
table([(c.id, c.status.value, c.reason) for c in verdict3.checks if c.id.startswith("e2ee.")],
      ["check", "status", "reason"])
print(verdict3.summary())
assert verdict3.status == "verified" and all(verdict3[c].passed for c in e2ee_v3.E2EE_V3_CHECK_IDS)

# %% [markdown]
# ## Check yourself
#
# 1. The wire never shows the prompt. Name three things about the request it *does* show.
# 2. Why does the receipt's `request.received` hash the restored body rather than the bytes you sent — and why in
#    *your* key order rather than JCS?
# 3. Someone records a sealed reply and swaps it into the answer to your *next* request (same model, same field).
#    Which AAD member makes decryption fail? Try it with `opens(response_aad(...))`.
# 4. Seal the prompt with secp256k1 instead (`AttestedE2EEKey.from_established_keyset(attested.keyset,
#    algo="secp256k1-aes-256-gcm-hkdf-sha256")`): how long is the ephemeral key now, and does the verdict change?
#
# Type `solution()` in a new cell after trying: the collapsed cell below only *defines* it, so Run All never gives
# the answer away.

# %% jupyter={"source_hidden": true} tags=["solution"]
def solution():
    """Questions 3 and 4 worked out."""
    nxt = prepare_request({"model": sim.model, "messages": [{"role": "user", "content": PROMPT}]},
                          model_key=key, client_secret=secret)
    assert not opens(response_aad(nonce=nxt.nonce, ts=nxt.timestamp))
    print("3. The next request has another X-E2EE-Nonce (and usually another timestamp): the reply's AAD binds "
          "the request's nonce, so the recorded reply does not open as the answer to it.")
    k1 = AttestedE2EEKey.from_established_keyset(attested.keyset, algo="secp256k1-aes-256-gcm-hkdf-sha256")
    ex = client.chat(PROMPT, stream=False, max_tokens=8, e2ee=k1)
    field = bytes.fromhex(json.loads(ex.request_bytes)["messages"][0]["content"])
    assert field[0] == 4 and len(field) == 65 + 12 + len(PROMPT.encode()) + 16
    v1 = verify(ex)
    assert v1.status == "verified" and all(v1[c].passed for c in E2EE_CHECK_IDS)
    print(f"4. The ephemeral key is 65 bytes (04 ‖ X ‖ Y, uncompressed secp256k1); the field is {len(field)} "
          f"bytes; the verdict is still {v1.status}: both suites are attested keys of the same keyset.")


# %%
assert opens(response_aad()) and not opens(response_aad(ts=mine.timestamp - 1))
# The simulators and clients stay up for solution(); they end with the kernel (or: client.close(); sim.stop()).
