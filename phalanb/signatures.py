"""Chat signatures (SPEC §3-4): the signed text, the hashes it names, and the key that signed it.

The service signs ``"<sha256(request)>:<sha256(response)>"`` (or ``"<model>:<req>:<resp>"``) with a key born in
the TEE: ecdsa (secp256k1, EIP-191 ``personal_sign``) or ed25519. This module

- parses the text and the signature record (:func:`parse_signed_text`, :class:`SignatureRecord`),
- recomputes the hashes from exact bytes (:func:`response_hash_candidates`),
- recovers or checks the signer (:func:`recover_signer`),
- and turns that into checks (:func:`check_hashes`, :func:`check_signature`).

A valid signature proves nothing on its own: recovery always yields *some* address. It counts only once the
address is bound to a TDX quote (``signature.bound`` and the report checks).

>>> st = parse_signed_text("a" * 64 + ":" + "b" * 64)
>>> st.request_hash[:4], st.model
('aaaa', None)
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from eth_account import Account
from eth_account.messages import encode_defunct

from . import _json
from . import ed25519
from .errors import ParseError, SignatureFormatError
from .verdict import Check, Status

__all__ = [
    "ALGOS",
    "SignedText",
    "SignatureRecord",
    "HashCandidate",
    "parse_signed_text",
    "request_hash",
    "response_hash_candidates",
    "recover_signer",
    "first_difference",
    "check_hashes",
    "check_signature",
    "check_signature_bound",
    "check_record_address",
    "same_address",
]

ALGOS = ("ecdsa", "ed25519")
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class SignedText:
    """The text the service signed, split into its parts."""

    text: str
    request_hash: str
    response_hash: str
    model: str | None = None

    @property
    def parts(self) -> int:
        return 2 if self.model is None else 3


def parse_signed_text(text: str) -> SignedText:
    """Split ``req:resp`` or ``model:req:resp``; hashes must be 64 lowercase hex digits."""
    if not isinstance(text, str):
        raise SignatureFormatError(f"expected a string, got {type(text).__name__}", field="text")
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise SignatureFormatError(
            f"signed text has {len(parts)} ':'-separated part(s); expected 2 (req_hash:resp_hash) or "
            f"3 (model:req_hash:resp_hash)", field="text")
    model = parts[0] if len(parts) == 3 else None
    if model is not None and not model:
        raise SignatureFormatError("the model part of a 3-part signed text is empty", field="text")
    req, resp = parts[-2], parts[-1]
    offset = len(model) + 1 if model is not None else 0
    for name, value, at in (("request hash", req, offset), ("response hash", resp, offset + len(req) + 1)):
        if not _HEX64.fullmatch(value):
            why = "uppercase hex" if _HEX64.fullmatch(value.lower()) else f"{len(value)} characters"
            raise SignatureFormatError(f"the {name} must be 64 lowercase hex digits (sha256), got {why}: "
                                       f"{value[:80]!r}", field="text", offset=at)
    return SignedText(text=text, request_hash=req, response_hash=resp, model=model)


@dataclass(frozen=True)
class SignatureRecord:
    """What ``GET /signature/{chat_id}`` returned.

    ``signing_algo`` defaults to ecdsa (2024 servers sent only ``text`` and ``signature``); ``signing_address``
    is ``None`` then. ``raw`` keeps the response as received for audit bundles.
    """

    text: str
    signature: str
    signing_algo: str = "ecdsa"
    signing_address: str | None = None
    chat_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def signed(self) -> SignedText:
        return parse_signed_text(self.text)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, chat_id: str | None = None) -> "SignatureRecord":
        if not isinstance(data, Mapping):
            raise SignatureFormatError("a signature record must be a JSON object", field="signature_record")
        for key in ("text", "signature"):
            if not isinstance(data.get(key), str):
                raise SignatureFormatError(f"missing or not a string: {key!r}", field=key)
        algo = data.get("signing_algo") or "ecdsa"
        if algo not in ALGOS:
            raise SignatureFormatError(f"unknown signing_algo {algo!r}; expected one of {', '.join(ALGOS)}",
                                       field="signing_algo")
        address = data.get("signing_address")
        if address is not None and not isinstance(address, str):
            raise SignatureFormatError("signing_address must be a string", field="signing_address")
        return cls(text=data["text"], signature=data["signature"], signing_algo=algo, signing_address=address,
                   chat_id=chat_id or data.get("chat_id"), raw=dict(data))

    @classmethod
    def from_json(cls, text: str | bytes, *, chat_id: str | None = None) -> "SignatureRecord":
        try:
            data = _json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SignatureFormatError(f"not JSON ({exc})", field="signature_record") from None
        return cls.from_dict(data, chat_id=chat_id)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.raw) if self.raw else {"text": self.text, "signature": self.signature,
                                             "signing_algo": self.signing_algo,
                                             "signing_address": self.signing_address}
        if self.chat_id is not None:
            d.setdefault("chat_id", self.chat_id)
        return d


def _hex_bytes(value: str, *, field_name: str, expected_len: int) -> bytes:
    if not isinstance(value, str):
        raise SignatureFormatError("must be a hex string", field=field_name)
    body = value[2:] if value[:2] in ("0x", "0X") else value
    if len(body) % 2:
        raise SignatureFormatError(f"odd number of hex digits ({len(body)})", field=field_name)
    try:
        raw = bytes.fromhex(body)
    except ValueError:
        bad = next(i for i, c in enumerate(body) if c not in "0123456789abcdefABCDEF")
        raise SignatureFormatError(f"not hex: character {body[bad]!r} at position {bad}", field=field_name,
                                   offset=bad) from None
    if len(raw) != expected_len:
        raise SignatureFormatError(f"{len(raw)} bytes; expected {expected_len}", field=field_name)
    return raw


def recover_signer(text: str, signature: str, algo: str = "ecdsa", *, public_key: str | None = None) -> str:
    """The signer of ``text``.

    ecdsa: the checksummed address recovered by EIP-191 (``0x`` optional, v must be 27 or 28).
    ed25519: there is no recovery, so the public key (32-byte hex, the report's ``signing_address``) must be given;
    returns it (lowercase hex) when the signature verifies and raises :class:`SignatureFormatError` otherwise.
    """
    if algo == "ecdsa":
        sig = _hex_bytes(signature, field_name="signature", expected_len=65)
        if sig[64] not in (27, 28):
            raise SignatureFormatError(f"recovery byte v is {sig[64]}; EIP-191 signatures use 27 or 28",
                                       field="signature", offset=64)
        try:
            return Account.recover_message(encode_defunct(text=text), signature=sig)
        except Exception as exc:  # eth-keys raises its own types for r/s out of range
            raise SignatureFormatError(f"no public key recovers from this signature ({exc})",
                                       field="signature") from None
    if algo == "ed25519":
        sig = _hex_bytes(signature, field_name="signature", expected_len=64)
        if public_key is None:
            raise SignatureFormatError("ed25519 signatures cannot be recovered: give the public key "
                                       "(the report's signing_address)", field="signing_address")
        pub = _hex_bytes(public_key, field_name="signing_address", expected_len=32)
        try:
            key = ed25519.public_key(pub, field="signing_address")
        except ParseError as exc:
            raise SignatureFormatError(exc.reason, field="signing_address") from None
        ed25519.verify(key, sig, text.encode("utf-8", "surrogatepass"))
        return pub.hex()
    raise SignatureFormatError(f"unknown signing algorithm {algo!r}; expected one of {', '.join(ALGOS)}",
                               field="signing_algo")


def same_address(a: str | None, b: str | None) -> bool:
    """Addresses and ed25519 keys compare case-insensitively, with or without ``0x``."""
    if not a or not b:
        return False
    return a.lower().removeprefix("0x") == b.lower().removeprefix("0x")


# -- hashing ------------------------------------------------------------------------------------------------

def request_hash(request_bytes: bytes) -> str:
    return hashlib.sha256(request_bytes).hexdigest()


@dataclass(frozen=True)
class HashCandidate:
    """One way a server generation computed the response hash."""

    name: str
    sha256: str
    description: str


def response_hash_candidates(response_bytes: bytes, *, stream: bool) -> list[HashCandidate]:
    """Streaming: the raw SSE bytes. Non-streaming: A = body bytes, B = ``json.dumps(json.loads(body))``."""
    body = HashCandidate("body-bytes", hashlib.sha256(response_bytes).hexdigest(),
                         "sha256 of the response bytes as received")
    if stream:
        return [HashCandidate("sse-bytes", body.sha256, "sha256 of every SSE byte as received, [DONE] included")]
    out = [body]
    try:
        redumped = json.dumps(_json.loads(response_bytes)).encode()
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return out  # not JSON: only candidate A can apply
    out.append(HashCandidate("json-dumps", hashlib.sha256(redumped).hexdigest(),
                             "sha256 of json.dumps(json.loads(body)) (older servers re-serialised the body)"))
    return out


def first_difference(a: bytes, b: bytes) -> int | None:
    """Offset of the first differing byte, ``min(len)`` if one is a prefix of the other, None if equal."""
    if a == b:
        return None
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _diff_note(ours: bytes, reference: bytes | None, what: str) -> str:
    if reference is None:
        return ""
    at = first_difference(ours, reference)
    if at is None:
        return f"; the {what} equals the reference body byte for byte"
    return (f"; first differing byte at offset {at} (ours {ours[at:at + 1]!r}, reference {reference[at:at + 1]!r},"
            f" lengths {len(ours)} vs {len(reference)})")


def check_hashes(signed: SignedText, *, request_bytes: bytes | None, response_bytes: bytes | None,
                 stream: bool | None, reference_request: bytes | None = None,
                 reference_response: bytes | None = None) -> list[Check]:
    """``request.hash`` and ``response.hash``: do the exact bytes hash to the halves of the signed text?

    ``reference_*`` are other copies of the bodies (e.g. what a server logged) used only to locate the first
    differing byte when a hash does not match.
    """
    checks = []
    if request_bytes is None:
        checks.append(Check("request.hash", Status.SKIPPED, "the request bytes are not available",
                            {"signed": signed.request_hash}))
    else:
        ours = request_hash(request_bytes)
        ev = {"computed": ours, "signed": signed.request_hash, "bytes": len(request_bytes)}
        if ours == signed.request_hash:
            checks.append(Check("request.hash", Status.PASS, "sha256 of the request bytes equals the signed "
                                "request hash", ev))
        else:
            checks.append(Check("request.hash", Status.FAIL, "the request differs: sha256 of the request bytes "
                                f"is {ours[:16]}…, the signature names {signed.request_hash[:16]}…"
                                + _diff_note(request_bytes, reference_request, "request"), ev))
    if response_bytes is None:
        checks.append(Check("response.hash", Status.SKIPPED, "the response bytes are not available",
                            {"signed": signed.response_hash}))
    else:
        is_stream = stream if stream is not None else response_bytes.lstrip().startswith(b"data:")
        cands = response_hash_candidates(response_bytes, stream=is_stream)
        match = next((c for c in cands if c.sha256 == signed.response_hash), None)
        ev = {"signed": signed.response_hash, "candidates": {c.name: c.sha256 for c in cands},
              "bytes": len(response_bytes)}
        if match is not None:
            ev["matched"] = match.name
            checks.append(Check("response.hash", Status.PASS, f"{match.description} equals the signed response "
                                f"hash (candidate {match.name})", ev))
        else:
            tried = ", ".join(f"{c.name} {c.sha256[:16]}…" for c in cands)
            checks.append(Check("response.hash", Status.FAIL, "the response differs: the signature names "
                                f"{signed.response_hash[:16]}…, the bytes give {tried}"
                                + _diff_note(response_bytes, reference_response, "response"), ev))
    return checks


def check_signature(record: SignatureRecord) -> tuple[Check, str | None]:
    """``signature.valid``: the signature is well-formed and yields a signer. Returns the check and the signer.

    For ecdsa the signer is recovered; for ed25519 it is verified against the record's own ``signing_address``
    (the binding to the attested key is :func:`check_signature_bound`'s job).
    """
    ev: dict[str, Any] = {"algo": record.signing_algo, "text": record.text}
    try:
        signer = recover_signer(record.text, record.signature, record.signing_algo,
                                public_key=record.signing_address)
    except SignatureFormatError as exc:
        return Check("signature.valid", Status.FAIL, f"the signature does not check out: {exc}", ev), None
    ev["signer"] = signer
    if record.signing_algo == "ecdsa":
        note = ""
        if record.signing_address is not None and not same_address(signer, record.signing_address):
            # Not this check's failure: what counts is whether the *recovered* signer is attested
            # (signature.bound). The record's own claim is only reported.
            ev["claimed"] = record.signing_address
            note = f" (the record claims {record.signing_address})"
        return Check("signature.valid", Status.PASS, f"EIP-191 recovery gives {signer}{note}", ev), signer
    return Check("signature.valid", Status.PASS, f"ed25519 signature verifies under {signer[:16]}…", ev), signer


def check_record_address(record: SignatureRecord, signer: str | None) -> Check | None:
    """``signature.record_address`` (a WARNING): the record names a ``signing_address`` that is not the key that
    signed. The verdict rests on the recovered signer (``signature.bound``), but a record that contradicts itself
    is reported, never passed over in silence. None when the record names no address or names the signer."""
    claimed = record.signing_address
    if signer is None or claimed is None or same_address(signer, claimed):
        return None
    return Check("signature.record_address", Status.WARNING, f"the signature record claims signing_address "
                 f"{claimed}, but the signature recovers to {signer}: the record contradicts itself; only the "
                 "recovered signer is judged (signature.bound)", {"claimed": claimed, "signer": signer},
                 required=False)


def check_signature_bound(signer: str | None, attested_address: str | None, *, algo: str) -> Check:
    """``signature.bound``: the signer is the key the attestation report names."""
    ev = {"signer": signer, "attested": attested_address, "algo": algo}
    if signer is None:
        return Check("signature.bound", Status.SKIPPED, "no signer to bind (the signature did not check out)", ev)
    if attested_address is None:
        return Check("signature.bound", Status.SKIPPED, "no attested signing address to compare with", ev)
    if same_address(signer, attested_address):
        return Check("signature.bound", Status.PASS, "the signer is the attested signing address", ev)
    return Check("signature.bound", Status.FAIL, f"the signer {signer} is not the attested signing address "
                 f"{attested_address}", ev)
