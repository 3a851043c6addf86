"""What the batch tests share: tampered copies of recorded replies (one per rule a row can break) and the row-by-row
comparison of a batch audit with single verification."""

from __future__ import annotations

import base64
import hashlib
import json

from eth_account import Account
from eth_account.messages import encode_defunct
from phalanb.vllm.signatures import fetch_signature


def flip(b64: str, at: int) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[at % len(raw)] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def signed_by_stranger(row: dict, response: bytes) -> None:
    """Give the row a body the json-dumps hash candidate matches, signed by a key no report attests."""
    ex = row["exchange"]
    request = base64.b64decode(ex["request_b64"])
    ex["response_b64"] = base64.b64encode(response).decode()
    text = f"{hashlib.sha256(request).hexdigest()}:" \
           f"{hashlib.sha256(json.dumps(json.loads(response)).encode()).hexdigest()}"
    signed = Account.sign_message(encode_defunct(text=text), Account.create().key)
    row["signature"].update(text=text, signature="0x" + bytes(signed.signature).hex())


def mutations(rows: list[dict]) -> list[dict]:
    """Each rule of chat_checks met once, on copies of recorded rows (index 0 and 2 stream, 1 and 3 do not)."""
    out = []

    def take(i: int) -> dict:
        row = json.loads(json.dumps(rows[i % len(rows)]))
        out.append(row)
        return row

    take(0)                                                                     # untouched, streamed
    take(1)                                                                     # untouched, one JSON body
    r = take(0); r["exchange"]["request_b64"] = flip(r["exchange"]["request_b64"], 5)     # request differs
    r = take(0); r["exchange"]["response_b64"] = flip(r["exchange"]["response_b64"], 40)  # stream differs
    r = take(1); r["exchange"]["response_b64"] = flip(r["exchange"]["response_b64"], 9)   # body differs
    r = take(1)                                                                 # body re-serialised, signed by
    signed_by_stranger(r, json.dumps(json.loads(base64.b64decode(r["exchange"]["response_b64"])),
                                      indent=1).encode())                      # a key not attested
    r = take(2); s = r["signature"]["signature"]; r["signature"]["signature"] = s[:10] + ("0" if s[10] != "0" else "1") + s[11:]
    r = take(2); s = r["signature"]["signature"]; r["signature"]["signature"] = s[:-2] + "1d"   # v = 29
    r = take(3); r["signature"]["signature"] = r["signature"]["signature"][:-1]           # odd hex
    r = take(3); r["signature"]["signature"] = "0X" + r["signature"]["signature"][2:].upper()  # 0X, upper
    r = take(3); r["signature"]["signature"] = "0x" + "ff" * 64 + "1b"                    # r, s out of range
    r = take(0); r["signature"]["text"] = "not:a:signed:text"                             # text unreadable
    r = take(0); r["signature"]["text"] = "m:" + r["signature"]["text"]                   # 3-part text
    r = take(1); r["signature"]["signing_algo"] = "ed25519"                               # other algorithm
    r = take(2); r["exchange"] = None                                                     # signature only
    r = take(3); r["signature"]["signing_address"] = "0x" + "12" * 20                     # claims another key
    r = take(0); r["exchange"]["status"] = 500                                           # error status
    r = take(0)                                                                          # stream without ids
    r["exchange"]["response_b64"] = base64.b64encode(b'data: {"x": 1}\n\ndata: [DONE]\n\n').decode()
    r = take(0)                                                                          # id after a comment
    r["exchange"]["response_b64"] = base64.b64encode(b': hi\n\ndata: {"id": "late"}\n\n').decode()
    r = take(0)                                                                          # \r\n separators
    r["exchange"]["response_b64"] = base64.b64encode(b'data: {"id": "crlf"}\r\n\r\ndata: [DONE]\r\n\r\n').decode()
    r = take(0)                                                                          # an error event first
    r["exchange"]["response_b64"] = base64.b64encode(b'data: {"error": "no"}\n\ndata: {"id": "x"}\n\n').decode()
    r = take(0)                                                                          # not UTF-8 later on
    r["exchange"]["response_b64"] = base64.b64encode(b'data: {"id": "u"}\n\ndata: \xff\n\n').decode()
    r = take(1); r["exchange"]["response_b64"] = base64.b64encode(b"[1, 2]").decode()     # JSON, not an object
    r = take(1); r["exchange"]["timings"]["done_ns"] = None                               # no total time
    r = take(1); r["exchange"]["timings"]["token_ns"] = [None]                            # stamps the slow reader takes
    # Lines orjson reads otherwise than the exact reader (or refuses): the exact reader reads them. (NaN, lone
    # surrogates and duplicate members are refused by both: see refused_lines.)
    r = take(0); r["exchange"]["timings"]["done_ns"] += 2 ** 64                           # > 64 bits: a float to orjson
    r = take(1); r["exchange"]["status"] = 2 ** 64 + 200                                  # > 64 bits, as a status
    r = take(2); r["exchange"] = None; r["signature"]["chat_id"] = 2 ** 70               # > 64 bits, as a chat id
    r = take(1); r["exchange"]["usage"] = {"deep": json.loads("[" * 300 + "]" * 300)}     # deep, but not too deep
    r = take(1); r["exchange"]["usage"] = {"brackets": "[" * 600}                         # brackets inside a string
    return out


def refused_lines(line: bytes) -> dict[str, bytes]:
    """What phalanb's one JSON rule refuses, written into a recorded line (``json.dumps`` spacing): every reader —
    the exact one, the fast one, a single verification — refuses it, naming the line."""
    assert line.startswith(b'{"exchange": {') and b'"signature": {' in line
    return {
        "duplicate-member": line.replace(b'"signature": {', b'"signature": {"text": "a:b", ', 1),
        "duplicate-response": line.replace(b'"response_b64": "', b'"response_b64": "AAAA", "response_b64": "', 1),
        "nan": line.replace(b'"exchange": {', b'"exchange": {"usage": {"cost": NaN}, ', 1),
        "infinite": line.replace(b'"exchange": {', b'"exchange": {"usage": {"cost": 1e400}, ', 1),
        "lone-surrogate": line.replace(b'"exchange": {', b'"exchange": {"text": "\\ud800 lone", ', 1),
    }


def same_rows(df, singles) -> None:
    assert len(df) == len(singles)
    for (_, row), (chat_id, v, (ttft, total)) in zip(df.iterrows(), singles):
        where = row["source"]
        assert row["verdict"] == v.status, where
        assert row["failing"] == ",".join(c.id for c in v.failed), where
        assert row["skipped"] == ",".join(c.id for c in v.skipped), where
        assert row["warnings"] == ",".join(c.id for c in v.warnings), where
        assert same(row["chat_id"], chat_id), where
        assert same(row["ttft_s"], ttft) and same(row["total_s"], total), where


def same(a, b) -> bool:
    return a == b or (a is None or a != a) and b is None  # pandas shows a missing duration as NaN


def record_replies(seed: int, prompt: str):
    """Four replies of a local model server sharing one attestation, the first verified: (VerifiedChat, [(exchange,
    signature), ...]), two streamed and two not."""
    from phalanb.session import Session, Settings

    with Session(Settings(protocol="legacy", sim_options={"seed": seed, "ttft_ms": 0, "tokens_per_second": 0})) as s:
        first = s.chat_and_verify(prompt, max_tokens=6, stream=True)
        replies = [(first.exchange, first.signature)]
        for i in range(3):
            ex = s.client.chat(f"{prompt} {i}", max_tokens=6, stream=i % 2 == 1)
            replies.append((ex, fetch_signature(s.client, ex.chat_id)))
    return first, replies
