"""ACI receipts (``GET /v1/aci/receipts/{id}``) and the legacy ``/v1/signature/{id}`` wrapper, parsed.

A receipt is the gateway's signed account of one request: the hash of the exact bytes it received, what it
forwarded, the upstream verification it relied on, and the hash of the exact bytes it returned (ACI.md §3).

- **current**: ``signature`` is hex; the signed bytes are ``JCS(document minus "signature")`` (``key_id`` stays).
- **preview**: ``signature`` is ``{algo, key_id, value}``; the signed bytes are ``JCS(document with only
  signature.value removed)``.

Verification (which key may sign, whose digest it must cite) is in :mod:`phalanb.aci.verify`.

>>> r = parse_receipt(served_bytes)                        # doctest: +SKIP
>>> r.shape, r.body_hash("request.received")               # doctest: +SKIP
('current', 'sha256:94d809bf…')
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import ParseError
from . import jcs
from ._util import obj, opt_int, opt_str, read_document, req_str

__all__ = ["Receipt", "SignatureWrapper", "parse_receipt", "parse_signature_wrapper", "is_signature_wrapper",
           "MAX_RECEIPT_BYTES"]

#: Receipts are a few KB (hashes and ids); a megabyte is already absurd.
MAX_RECEIPT_BYTES = 1024 * 1024


@dataclass
class Receipt:
    shape: str                       # "current" or "preview"
    api_version: str | None
    receipt_id: str | None
    workload_keyset_digest: str | None
    events: list[dict[str, Any]]
    key_id: str | None               # current: top-level key_id; preview: signature.key_id
    signature: str                   # hex (current: the member; preview: signature.value)
    signature_algo: str | None = None  # preview only: signature.algo as the receipt states it
    chat_id: str | None = None
    model: str | None = None
    workload_id: str | None = None   # preview
    endpoint: str | None = None
    method: str | None = None
    served_at: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    payload_bytes: bytes | None = field(default=None, repr=False)   # v3: the decoded payload_b64, as signed
    envelope: dict[str, Any] | None = field(default=None, repr=False)  # v3: the envelope as served

    def signing_input(self) -> bytes:
        """The exact bytes the signature covers. v3: the decoded ``payload_b64`` as served (never re-encoded);
        current/preview: re-canonicalized from what was parsed (any re-encoding gives the same bytes)."""
        if self.shape == "v3":
            return bytes(self.payload_bytes or b"")
        doc = copy.deepcopy(self.raw)
        if self.shape == "preview":
            doc["signature"] = {k: v for k, v in doc["signature"].items() if k != "value"}
        else:
            doc.pop("signature", None)
        return jcs.canonicalize(doc)

    def events_of(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == type_]

    def event(self, type_: str) -> dict[str, Any] | None:
        """The first event of this type (receipts carry each spec event once), or None."""
        found = self.events_of(type_)
        return found[0] if found else None

    def body_hash(self, type_: str) -> str | None:
        """``body_hash`` of an event; for preview's ``response.returned`` the ``wire_hash`` (the bytes on the wire,
        what a client compares)."""
        e = self.event(type_)
        if e is None:
            return None
        if self.shape == "preview" and type_ == "response.returned":
            return e.get("wire_hash")
        return e.get("body_hash")

    @property
    def cited_session_ids(self) -> list[str]:
        return [e["session_id"] for e in self.events_of("upstream.verified") if isinstance(e.get("session_id"), str)]


@dataclass
class SignatureWrapper:
    """The legacy ``/v1/signature/{id}`` answer: ``text`` = ``<received hex>:<returned hex>`` signed by the legacy
    key, with the full receipt beside it (ACI.md §4)."""

    api_version: str | None
    text: str
    signature: str
    signing_address: str | None
    signing_algo: str
    receipt: Receipt
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def _events(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    log = doc.get("event_log")
    if not isinstance(log, list):
        raise ParseError("must be a list of events", field="event_log")
    out = []
    for i, e in enumerate(log):
        if not isinstance(e, Mapping):
            raise ParseError("must be an object", field=f"event_log[{i}]")
        req_str(e, "type", f"event_log[{i}].")
        for k in ("body_hash", "wire_hash", "cleartext_hash", "session_id", "result", "reason"):
            opt_str(e, k, f"event_log[{i}].")
        if "required" in e and not isinstance(e["required"], bool):
            raise ParseError("must be true or false", field=f"event_log[{i}].required")
        out.append(dict(e))
    return out


def parse_receipt(data: bytes | str | Mapping[str, Any]) -> Receipt:
    """Parse a receipt of either shape. Raises :class:`~phalanb.errors.ParseError` on malformed input (oversized,
    duplicate member names, floats, non-ASCII names, missing signature, a mixture of both shapes)."""
    doc = read_document(data, what="receipt", max_bytes=MAX_RECEIPT_BYTES)
    from . import v3

    if "payload_b64" in doc and v3.receipt_shape(doc) == v3.SHAPE:
        return _parse_envelope(doc)
    sig = doc.get("signature")
    if isinstance(sig, Mapping):
        if "key_id" in doc:
            raise ParseError("a preview receipt (signature object) must not also carry the current shape's "
                             "top-level key_id: the shapes are mixed", field="key_id")
        shape = "preview"
        key_id = req_str(sig, "key_id", "signature.")
        value = req_str(sig, "value", "signature.")
        algo = req_str(sig, "algo", "signature.")
    elif isinstance(sig, str):
        if "workload_id" in doc:
            raise ParseError("a current receipt (hex signature) must not carry the preview shape's workload_id: "
                             "the shapes are mixed", field="workload_id")
        shape, key_id, value, algo = "current", opt_str(doc, "key_id", ""), sig, None
    else:
        raise ParseError("is missing or neither a hex string (current) nor an object (preview)", field="signature")
    return Receipt(shape=shape, api_version=opt_str(doc, "api_version", ""),
                   receipt_id=opt_str(doc, "receipt_id", ""),
                   workload_keyset_digest=opt_str(doc, "workload_keyset_digest", ""), events=_events(doc),
                   key_id=key_id, signature=value, signature_algo=algo, chat_id=opt_str(doc, "chat_id", ""),
                   model=opt_str(doc, "model", ""), workload_id=opt_str(doc, "workload_id", ""),
                   endpoint=opt_str(doc, "endpoint", ""), method=opt_str(doc, "method", ""),
                   served_at=opt_int(doc, "served_at", ""), raw=doc)


def _parse_envelope(env: dict[str, Any]) -> Receipt:
    """A v3 receipt envelope ``{payload_b64, key_id, algo, signature}`` (ACI-v3.md §6): the payload is read from
    its decoded bytes, which the signature covers as they are."""
    from . import v3

    key_id, algo, sig = req_str(env, "key_id", ""), req_str(env, "algo", ""), req_str(env, "signature", "")
    payload = v3.strict_b64decode(env.get("payload_b64"), field="payload_b64")
    doc = jcs.loads(payload, what="payload_b64 (decoded receipt payload)", max_bytes=MAX_RECEIPT_BYTES)
    if not isinstance(doc, Mapping):
        raise ParseError(f"decodes to a {type(doc).__name__}, not a receipt payload object", field="payload_b64")
    doc = dict(doc)
    for name in ("key_id", "signature", "seq"):
        if name in doc:
            raise ParseError(f"a v3 receipt payload carries no {name} (it lives in the envelope): the shapes are "
                             "mixed", field=f"payload_b64→{name}")
    w = "payload_b64→"
    return Receipt(shape=v3.SHAPE, api_version=opt_str(doc, "api_version", w), receipt_id=opt_str(doc, "receipt_id", w),
                   workload_keyset_digest=opt_str(doc, "workload_keyset_digest", w), events=_events(doc),
                   key_id=key_id, signature=sig, signature_algo=algo, chat_id=opt_str(doc, "chat_id", w),
                   model=opt_str(doc, "model", w), endpoint=opt_str(doc, "endpoint", w),
                   method=opt_str(doc, "method", w), served_at=opt_int(doc, "served_at", w), raw=doc,
                   payload_bytes=payload, envelope=env)


def is_signature_wrapper(obj_: Any) -> bool:
    return isinstance(obj_, Mapping) and "text" in obj_ and isinstance(obj_.get("receipt"), Mapping)


def parse_signature_wrapper(data: bytes | str | Mapping[str, Any]) -> SignatureWrapper:
    """Parse the legacy ``{api_version, text, signature, signing_address, signing_algo, receipt}`` answer."""
    doc = read_document(data, what="signature", max_bytes=MAX_RECEIPT_BYTES)
    inner = obj(doc, "receipt", "")
    return SignatureWrapper(api_version=opt_str(doc, "api_version", ""), text=req_str(doc, "text", ""),
                            signature=req_str(doc, "signature", ""),
                            signing_address=opt_str(doc, "signing_address", ""),
                            signing_algo=opt_str(doc, "signing_algo", "") or "ecdsa",
                            receipt=parse_receipt(inner), raw=doc)
