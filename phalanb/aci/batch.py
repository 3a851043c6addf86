"""Audit many ACI receipts that share one established keyset: the same verdict as :func:`~phalanb.aci.verify_receipt`
row by row, near the cost of the Ed25519 verification itself.

Reproducing an audit means re-checking thousands of receipts against one verified report. Most receipts are
well-formed and hold; for those, everything :func:`~phalanb.aci.verify_receipt` decides can be decided from a
handful of operations: parse (C ``json``), confirm the bytes are *already* canonical (then they hold no duplicate
member, no float and no whitespace — JCS of what was parsed is byte-identical to what was received), Ed25519 over
the canonical bytes without ``signature``, two SHA-256 of the exact bodies, and the event rules. Any receipt that
does not take that path — malformed, not canonical, a failed or skipped check, the preview shape — is handed whole
to :func:`~phalanb.aci.verify_receipt`, so its row carries exactly the single verifier's decision and reasons.

>>> rows = list(audit_receipts(items, keyset=attestation.keyset))     # doctest: +SKIP
>>> rows[0].status, rows[0].failing                                   # doctest: +SKIP
('pass', ())
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Iterable, Iterator, NamedTuple

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .. import ed25519
from ..errors import ParseError, PhalanbError
from ..verdict import Status
from .receipt import parse_receipt
from .verify import EstablishedKeyset, verify_receipt

__all__ = ["ReceiptItem", "ReceiptRow", "audit_receipts"]


@dataclass(frozen=True)
class ReceiptItem:
    """One reply to audit: the receipt's exact bytes (as served) and the exact request and response bytes."""

    receipt: bytes
    request_bytes: bytes | None
    response_bytes: bytes | None
    source: str = ""


class ReceiptRow(NamedTuple):
    """The decision of :func:`~phalanb.aci.verify_receipt` for one receipt, compactly: ``status`` is the receipt
    side's verdict (``pass`` when every required check held, ``fail`` when one failed, else ``skipped``). A tuple:
    thousands are made per second."""

    source: str
    receipt_id: str | None
    status: str
    failing: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


# Without backslashes every '"' opens or closes a string, so the even pieces of ``raw.split(b'"')`` are the
# structure, numbers and literals; a digit followed by ".", "e" or "E" there is a number with a fraction or an
# exponent (a float, which JCS refuses).
_FLOAT = re.compile(rb"[0-9][.eE]")


def _row_from_checks(source: str, receipt_id: str | None, checks: list) -> ReceiptRow:
    failing = tuple(c.id for c in checks if c.status is Status.FAIL)
    skipped = tuple(c.id for c in checks if c.status is Status.SKIPPED and c.required)
    warnings = tuple(c.id for c in checks if c.status is Status.WARNING)
    status = "fail" if failing else "skipped" if skipped else "pass"
    return ReceiptRow(source, receipt_id, status, failing, skipped, warnings)


class _Fast:
    """What the fast path needs from the keyset, computed once per batch."""

    def __init__(self, keyset: EstablishedKeyset, require_upstream: bool, upstream_expected: bool = True):
        self.digest = keyset.digest
        # The auditor's word, never the report's unbound service_capabilities.serving.
        self.direct = not upstream_expected
        self.not_after = keyset.not_after
        self.require_upstream = require_upstream
        self.keys: dict[str, Ed25519PublicKey] = {}
        if keyset.shape == "current":
            for key_id, entry in keyset.receipt_keys.items():
                if entry.get("algo") != "ed25519":
                    continue
                try:  # the one strict helper: a weak key is never taken here (the single verifier words why)
                    self.keys[key_id] = ed25519.public_key(bytes.fromhex(str(entry.get("public_key"))))
                except (ValueError, ParseError):
                    continue

    def row(self, item: ReceiptItem) -> ReceiptRow | None:
        """The row when every check holds on the common path; None to ask the single verifier."""
        raw = item.receipt
        # Non-ASCII text or member names, escapes (whose spelling two serialisers may choose differently) and
        # floats are left to the strict reader.
        if not raw.isascii() or b"\\" in raw or _FLOAT.search(b"".join(raw.split(b'"')[::2])):
            return None
        try:
            doc = orjson.loads(raw)  # NaN, integers beyond 64 bits and bad UTF-8 are refused here
        except (orjson.JSONDecodeError, ValueError):
            return None
        if type(doc) is not dict:
            return None
        sig = doc.get("signature")
        key = self.keys.get(doc.get("key_id"))  # type: ignore[arg-type]
        if type(sig) is not str or key is None or "workload_id" in doc:
            return None
        # One serialisation serves twice: JCS(receipt minus signature) is what was signed, and the received bytes
        # minus their one signature member must be exactly it — so they hold no duplicate member, no whitespace
        # and nothing a strict reader would refuse or read differently.
        member = b',"signature":"' + sig.encode() + b'"'
        if raw.count(member) != 1:
            return None
        del doc["signature"]
        signed = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
        if raw.replace(member, b"", 1) != signed:
            return None  # not the served canonical form (pretty-printed, re-ordered, duplicate members…)
        try:
            ed25519.verify(key, bytes.fromhex(sig), signed)  # strict: S < L, R canonical and not of small order
        except (ParseError, ValueError):
            return None
        if doc.get("api_version") != "aci/1" or doc.get("workload_keyset_digest") != self.digest:
            return None
        events = doc.get("event_log")
        if type(events) is not list:
            return None
        received = forwarded = returned = None
        upstream: list[dict] = []
        for e in events:
            if type(e) is not dict:
                return None
            t = e.get("type")
            if t == "request.received":
                if received is not None:
                    return None
                received = e.get("body_hash")
            elif t == "request.forwarded":
                if forwarded is not None:
                    return None
                forwarded = e.get("body_hash")
            elif t == "response.returned":
                if returned is not None:
                    return None
                returned = e.get("body_hash")
            elif t == "upstream.verified":
                upstream.append(e)
        if item.request_bytes is None or item.response_bytes is None or type(received) is not str:
            return None
        if received.lower() != "sha256:" + hashlib.sha256(item.request_bytes).hexdigest():
            return None
        if type(returned) is not str or returned.lower() != "sha256:" + hashlib.sha256(item.response_bytes).hexdigest():
            return None
        if forwarded is None or forwarded != received:
            return None  # a refusal or a rewrite: the single verifier words it
        served = doc.get("served_at")
        if self.not_after is None or type(served) is not int or served >= self.not_after:
            return None  # the single verifier says why the receipt's time is not shown or not valid
        if upstream or not self.direct:
            if not upstream:
                return None
            for e in upstream:
                if e.get("result") != "verified" or not e.get("session_id"):
                    return None
                if self.require_upstream and e.get("required") is not True:
                    return None
        rid = doc.get("receipt_id")
        return ReceiptRow(item.source, rid if type(rid) is str else None, "pass")


def audit_receipts(items: Iterable[ReceiptItem | tuple[bytes, bytes | None, bytes | None]], *,
                   keyset: EstablishedKeyset, require_upstream: bool = True,
                   upstream_expected: bool = True) -> Iterator[ReceiptRow]:
    """One :class:`ReceiptRow` per item, in order, with the decision :func:`~phalanb.aci.verify_receipt` makes
    against ``keyset`` (an established keyset: from :func:`~phalanb.aci.verify_aci_report` of a verified report).
    Items are consumed as they come (a generator in, a generator out): memory stays bounded however many."""
    fast = _Fast(keyset, require_upstream, upstream_expected)
    for n, item in enumerate(items):
        if not isinstance(item, ReceiptItem):
            item = ReceiptItem(*item, source=str(n))
        row = fast.row(item)
        if row is None:
            checks = verify_receipt(item.receipt, keyset=keyset, request_bytes=item.request_bytes,
                                    response_bytes=item.response_bytes, require_upstream=require_upstream,
                                    upstream_expected=upstream_expected)
            try:
                rid = parse_receipt(item.receipt).receipt_id
            except PhalanbError:
                rid = None  # the row already says the receipt cannot be read
            row = _row_from_checks(item.source, rid, checks)
        yield row
