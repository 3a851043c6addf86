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
# [Index](00_start_here.ipynb) · [← Back: chat and exact bytes](01_chat_and_exact_bytes.ipynb) · [Next: attestation and the TDX quote →](03_attestation_and_tdx_quote.ipynb)
#
# # 02 · Hashing and signatures
#
# **What you will learn**
# - to check Phala's own 2024 documentation vector by hand: two sha256 hashes and one signature;
# - the two shapes of signed text (`req:resp` and `model:req:resp`);
# - EIP-191 signature recovery step by step, and what etherscan's "verify signature" page does and does not check;
# - ed25519, where nothing is recovered and the public key must be known;
# - why a valid signature alone proves nothing.
#
# The first half uses real captured data — the project's fixtures, found by `phalanb.lab.fixtures_path()` (on a
# fresh machine `python -m phalanb.fixtures` fetches them once, each file checked against the sha256 the project's
# manifest lists); the ed25519 part asks the simulator (or the service set in `PHALANB_MODEL_SERVER_URL`).

# %%
import hashlib
import json

from IPython.display import display

from phalanb.lab import fixtures_path
from phalanb.vllm.signatures import fetch_signature
from phalanb.widgets import table

FIXTURES = fixtures_path()
assert FIXTURES is not None, ("the real fixtures were not found: run `python -m phalanb.fixtures` in a terminal "
                              "(it fetches what their public sources hold, each checked by sha256, and names the rest), or set "
                              "PHALANB_FIXTURES to a copy")
vector_dir = FIXTURES / "signatures" / "phala-docs-2024"
vector = json.loads((vector_dir / "signature_vector.json").read_text())
request_bytes = (vector_dir / "request_body.json").read_bytes()
response_bytes = (vector_dir / "response_body.sse").read_bytes()
print("signed text:", vector["text"])
print("signature  :", vector["signature"])

# %% [markdown]
# ## 1. The 2024 documentation vector, by hand
#
# The docs published a request body, the whole SSE response, and the signature the service returned for it. The
# text before the colon must be sha256 of the request bytes, the text after it sha256 of the response bytes.

# %%
req_hash = hashlib.sha256(request_bytes).hexdigest()
resp_hash = hashlib.sha256(response_bytes).hexdigest()
print("sha256(request) :", req_hash)
print("sha256(response):", resp_hash)
assert vector["text"] == f"{req_hash}:{resp_hash}"

# %% [markdown]
# ## 2. Two shapes of signed text
#
# Most services sign `req_hash:resp_hash`. Some (NEAR AI, and Redpill for models behind a rewriting gateway) sign
# `model:req_hash:resp_hash`. phalanb accepts both and reports the model part.

# %%
from phalanb.vllm.signatures import parse_signed_text

two = parse_signed_text(vector["text"])
three = parse_signed_text("phala/deepseek-v3.2:" + vector["text"])
display(table([("req_hash:resp_hash", two.parts, two.model), ("model:req_hash:resp_hash", three.parts,
                                                                   three.model)],
              columns=["signed text shape", "parts", "model part"]))
assert (two.request_hash, two.response_hash) == (three.request_hash, three.response_hash) == (req_hash, resp_hash)

# %% [markdown]
# ## 3. EIP-191 recovery, step by step
#
# An Ethereum `personal_sign` signature is made over a *prefixed* message, so a signed message can never be
# mistaken for a transaction:
#
# 1. message = `"\x19Ethereum Signed Message:\n" + str(len(text)) + text`
# 2. digest = keccak256(message)
# 3. the signature is `r ‖ s ‖ v` (32 + 32 + 1 bytes); `v` (27 or 28) says which of two candidate points is the key
# 4. from (digest, r, s, v) the public key is *recovered*; the address is the last 20 bytes of keccak256(public key)

# %%
from eth_keys import keys
from eth_utils import keccak

text = vector["text"].encode()
message = b"\x19Ethereum Signed Message:\n" + str(len(text)).encode() + text
digest = keccak(message)
sig = bytes.fromhex(vector["signature"].removeprefix("0x"))
r, s, v = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64]
print("digest:", digest.hex())
print(f"r = {r:#x}\ns = {s:#x}\nv = {v}")
public_key = keys.Signature(vrs=(v - 27, r, s)).recover_public_key_from_msg_hash(digest)
by_hand = public_key.to_checksum_address()
print("public key:", public_key.to_hex()[:34], "…")
print("address   :", by_hand, "= keccak256(public key)[-20:] =", "0x" + keccak(public_key.to_bytes())[-20:].hex())

# %% [markdown]
# phalanb's `recover_signer` does the same with `eth-account`; both must agree with the address the fixture's
# README records (computed independently of this project).

# %%
from phalanb.vllm.signatures import recover_signer

assert by_hand == recover_signer(vector["text"], vector["signature"]) == vector["recovered_address_eip191"]

# %% [markdown]
# ## 4. What etherscan's "verify signature" checks
#
# Etherscan's page takes an address, a message and a signature and answers one question: does EIP-191 recovery of
# this signature over this message give this address? That is step 3 above — nothing more. It does not know that the
# message is two hashes, it does not hash your bytes, and it cannot tell you whether the address belongs to a TEE.
# Recovery *always* yields some address, even for a corrupted message:

# %%
wrong = recover_signer(vector["text"].replace("b", "c", 1), vector["signature"])
print("recovered from a changed text:", wrong)
assert wrong != vector["recovered_address_eip191"]  # a different, equally "valid-looking" address

# %% [markdown]
# So a signature only counts once its address is *bound* to hardware — the `signature.bound` check, which compares
# it with the signing address inside the attestation report (notebook 03).
#
# ## 5. When the request bytes are not what was hashed
#
# The 2025 docs printed a request body and a signature. The body as printed does **not** hash to the request half
# of the signed text: the gateway of that time rewrote bodies (e.g. the model name) before hashing. A verifier must
# report such a mismatch, not hide it.

# %%
docs25 = FIXTURES / "signatures" / "phala-docs-2025"
v25 = json.loads((docs25 / "signature_vector.json").read_text())
body25 = (docs25 / "request_body_as_documented.json").read_bytes()
print("sha256(documented body):", hashlib.sha256(body25).hexdigest())
print("signed request hash    :", parse_signed_text(v25["text"]).request_hash)
assert hashlib.sha256(body25).hexdigest() != parse_signed_text(v25["text"]).request_hash
assert recover_signer(v25["text"], v25["signature"]) == v25["recovered_address_eip191"]

# %% [markdown]
# ## 6. ed25519
#
# Some services sign with ed25519 instead (ask with `signing_algo=ed25519`). ed25519 has no recovery: the signature
# is checked against a known public key — the report's `signing_address` is then the 32-byte key itself.

# %%
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from phalanb.session import Session, Settings

with Session(Settings.from_env(model_server=True, signing_algo="ed25519")) as session:
    ex = session.client.chat("Sign this with ed25519.")
    ed = fetch_signature(session.client, ex.chat_id, signing_algo="ed25519")
print(ed.signing_algo, "public key:", ed.signing_address)
pub = Ed25519PublicKey.from_public_bytes(bytes.fromhex(ed.signing_address))
pub.verify(bytes.fromhex(ed.signature), ed.text.encode())  # raises if it does not verify
try:
    pub.verify(bytes.fromhex(ed.signature), ed.text.replace("0", "1", 1).encode())
    tampered_ok = True
except InvalidSignature:
    tampered_ok = False
assert not tampered_ok
assert parse_signed_text(ed.text).request_hash == hashlib.sha256(ex.request_bytes).hexdigest()

# %% [markdown]
# ## Check yourself
#
# 1. In the EIP-191 prefix, why is the *length* of the text included?
# 2. You recovered an address from a signature. What must you still check before trusting the reply?
# 3. Change one character of `vector["text"]` and recompute: which of the three assertions in section 1 and 3 fail?
#
# Try them first. Then, to compare with a worked answer, type `solution()` in a new cell: the collapsed cell below
# only *defines* it, so Run All never gives the answer away.

# %% jupyter={"source_hidden": true} tags=["solution"]
def solution():
    """Worked answers, on the documented vector this notebook read."""
    print("1. The prefix is '\\x19Ethereum Signed Message:\\n' + the text's length in decimal, then the text: with the",
          "length fixed, no signed message can be read as a shorter message followed by other bytes, and no",
          "signature over a message can pass for one over a transaction.")
    print("2. Recovery always yields *some* address. Before trusting the reply, check that this address is the",
          "signing key the attestation report binds (signature.bound), and that the report is fresh and its quote",
          "verifies — otherwise anyone's key could have signed.")
    changed = vector["text"].replace(vector["text"][0], "0" if vector["text"][0] != "0" else "1", 1)
    halves = changed.split(":")
    print("3. One character changed:", "request hash still equal" if halves[0] == req_hash else "request hash differs",
          "/", "response hash still equal" if halves[-1] == resp_hash else "response hash differs",
          "/ recovered signer", recover_signer(changed, vector["signature"]),
          "instead of", vector["recovered_address_eip191"], "— the hash comparison of the changed half and the",
          "signer comparison fail; the other half still matches.")
    assert recover_signer(changed, vector["signature"]) != vector["recovered_address_eip191"]

# %%
assert hashlib.sha256(request_bytes + b" ").hexdigest() != req_hash  # one extra byte, another hash
assert recover_signer(vector["text"], vector["signature"]) == vector["recovered_address_eip191"]
