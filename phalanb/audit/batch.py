"""Batch audits: verify thousands of replies, one row each, on any ``concurrent.futures.Executor``.

Replies signed by one node share one attestation report, and verifying it (quote chain, GPU chains, event log)
costs far more than checking one signature. So the work is split: each distinct attestation is verified once
(:func:`~phalanb.vllm.verify.attest_report`), each reply's own links (hashes, signature) are checked in parallel, and
the two are put together as :func:`~phalanb.vllm.verify.assemble` puts them for
:func:`~phalanb.vllm.verify.verify_exchange` — a batch verdict is the same verdict, computed with less repetition.
A reply that the single path decides before the model servers' ordinary path (:func:`~phalanb.gateway.takes_preflight`:
a signature record carrying an ACI receipt, a report that is an ACI gateway's legacy answer) is verified by
:func:`~phalanb.gateway.verify_exchange` itself, whole; and each reply is put together with the attestation verified
for the signer its signature recovers to (the record's claimed address when none does), as verify_exchange does.

A JSONL batch is streamed: the workers read their own spans of the file (no reply is pickled to them) and send
back one compact row per reply (the statuses of its own links and its signer); memory holds rows, never the
replies. The per-reply decisions are :mod:`phalanb.audit.fastpath`'s, which hands every case off the common one to
:func:`~phalanb.vllm.verify.chat_checks` itself. ``verdicts=True`` builds every reply's checks and the very
``assemble`` of a single verification.

Inputs: audit bundle files (``*.json``), or a JSONL file whose first line is a shared header
``{"kind": "phalanb.audit-batch", "attestation": {...}, "policy": {...}, "verified_at": …, "collateral": …,
"gateway_collateral": … (optional), "nras": …}`` followed by one ``{"exchange": {...}, "signature": {...}}``
per line, or a framed batch (``*.pbatch``, :mod:`phalanb.wire.frames`): the same header (with ``"framing"``), then the
same records with their exact bytes stored raw.

>>> df = audit(["a.json", "b.json"], workers=2)            # doctest: +SKIP
>>> df[["chat_id", "verdict", "failing"]]                   # doctest: +SKIP

A Dask cluster's executor works unchanged: ``audit(paths, executor=distributed.Client(cluster).get_executor())``.
"""

from __future__ import annotations

import gc
import hashlib
import io
import json
import os
from collections import deque
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple

import pandas as pd

from . import fastpath as _batchscan
from ..wire import frames as _frames
from .. import _json
from .bundle import Bundle, load_bundle, parse_bundle
from ..errors import InputError, ParseError, PhalanbError
from ..aci import e2ee_wire as _e2ee_wire  # noqa: F401  (registers the E2EE record reader Exchange.from_dict uses)
from ..wire.exchange import Exchange
from ..policy import Policy
from ..vllm.signatures import SignatureRecord, same_address
from ..verdict import FAILED, INCOMPLETE, VERIFIED, Status
from ..vllm.verify import AttestedReport, assemble, attest_report, chat_checks, signer_choice, unattested
from ..gateway import takes_preflight, verify_exchange  # the single path's own preflight and verdict
from ..timeutil import parse_optional_time

__all__ = ["BATCH_KIND", "AuditItem", "audit", "load_items", "reframe_batch", "write_batch"]

BATCH_KIND = "phalanb.audit-batch"
#: Batch files: JSON lines, and the same records framed with their bytes raw (phalanb.wire.frames).
_BATCH_SUFFIXES = (".jsonl", _frames.SUFFIX)
_SUFFIXES = (".json", *_BATCH_SUFFIXES)
#: Spans of a batch sent out before its attestation is verified: one per worker of a two-core machine, each about
#: as much as a worker reads while the attestation is verified (~20 ms; their rows come back compact, finished
#: here).
EARLY_SPANS = 2
EARLY_SPAN_BYTES = 1 << 20
#: Replies sent to a worker at a time: large enough to amortise process hops, small enough for a live progress bar.
CHUNK = 256


@dataclass
class AuditItem:
    """One reply to audit and where it came from."""

    source: str
    exchange: Exchange | None
    signature: SignatureRecord
    report: dict[str, Any] | None
    nonce: bytes | None
    policy: Policy
    at: float | None
    collateral: Any = None
    nras_response: Any = None
    jwks: Any = None
    recorded_status: str | None = None
    gateway_collateral: Any = None  # a NEAR AI Cloud gateway's own platform collateral

    def attestation_key(self) -> str:
        """Replies with equal keys share one attestation verification."""
        h = hashlib.sha256()
        for part in (self.report, self.nonce.hex() if self.nonce else None, self.signature.signing_address,
                     self.policy.to_dict(), self.at, self.collateral, self.nras_response, self.jwks,
                     self.gateway_collateral):
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
            h.update(b"\0")
        return h.hexdigest()


def _from_bundle(bundle: Bundle, source: str, at: float | None, policy: Policy) -> AuditItem:
    if bundle.rims is not None and policy.rims is None:
        # As phalanb verify does (phalanb.audit.bundle.verify_bundle): the RIMs a bundle kept are evidence, re-verified.
        from dataclasses import replace

        from ..gpu.appraise import RimStore

        policy = replace(policy, rims=RimStore.from_dict(bundle.rims))
    return AuditItem(source=source, exchange=bundle.exchange, signature=bundle.signature, report=bundle.report,
                     nonce=bundle.nonce, policy=policy, at=bundle.verified_at if at is None else at,
                     collateral=bundle.collateral, nras_response=bundle.nras_response, jwks=bundle.jwks,
                     recorded_status=(bundle.recorded_verdict or {}).get("status"),
                     gateway_collateral=bundle.gateway_collateral)


def _batch_items(path: Path, at: float | None, policy: Policy) -> Iterator[AuditItem]:
    """The replies of a batch file, JSON lines or framed, read the exact way (no fast reader)."""
    with path.open("rb") as fh:
        shared, offset, framed = _read_header(path, fh)

        def item(source: str, ex: Exchange | None, sig: SignatureRecord) -> AuditItem:
            return AuditItem(source=source, exchange=ex, signature=sig, report=shared.report,
                             nonce=shared.nonce, policy=policy, at=shared.verified_at if at is None else at,
                             collateral=shared.collateral, nras_response=shared.nras_response, jwks=shared.jwks,
                             gateway_collateral=shared.gateway_collateral)

        if framed:
            yield from _framed_items(path, offset, item)
            return
        for lineno, line in enumerate(fh, start=2):
            if not line.strip():
                offset += len(line)
                continue
            try:
                row = _json.loads(line)
                ex = Exchange.from_dict(row["exchange"]) if row.get("exchange") is not None else None
                sig = SignatureRecord.from_dict(row["signature"])
            except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                raise ParseError(f"{path} line {lineno}: not an exchange record ({exc!r})", field="line",
                                 offset=offset) from None
            except ParseError as exc:
                raise ParseError(f"{path} line {lineno}: {exc}", field=exc.field, offset=offset) from None
            offset += len(line)
            yield item(f"{path}:{lineno}", ex, sig)


def _framed_items(path: Path, start: int, item: Any) -> Iterator[AuditItem]:
    number = 1
    for begin, end in _batchscan.spans(str(path), start, framed=True):
        with path.open("rb") as fh:
            fh.seek(begin)
            data = fh.read(end - begin)
        try:
            for _, offset, meta, request, response in _frames.records(data, begin):
                try:
                    ex, sig = _batchscan.framed_exchange(meta, request, response)
                except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                    raise ParseError(f"{path} record {number}: not an exchange record ({exc!r})", field="record",
                                     offset=offset) from None
                except ParseError as exc:
                    raise ParseError(f"{path} record {number}: {exc}", field=exc.field, offset=offset) from None
                yield item(f"{path}#{number}", ex, sig)
                number += 1
        except _frames.FrameError as exc:
            raise ParseError(f"{path} record {number}: {exc.detail}", field=exc.field, offset=exc.offset) from None


def load_items(paths: Iterable[str | os.PathLike[str]], *, at: float | None = None, policy: Policy | None = None,
               trust: str = "production", errors: list[tuple[str, str]] | None = None) -> list[AuditItem]:
    """Bundles (``.json``), batch files (``.jsonl``, ``.pbatch``) and folders of them, to be verified under the
    auditor's ``policy`` (default: production roots; ``trust="simulated"`` for simulator evidence) — never under a
    policy written into the files.

    A file that cannot be read raises its phalanb error, unless ``errors`` is a list: then ``(source, why)`` is
    appended to it and the other files are still loaded (:func:`audit` reports each as a failed row)."""
    policy = policy or Policy(trust=trust)
    at = parse_optional_time(at, field="at", allow_now=True)
    items: list[AuditItem] = []
    for p in map(Path, paths):
        if p.is_dir():
            items.extend(load_items(sorted(q for q in p.iterdir() if q.suffix in _SUFFIXES), at=at,
                                    policy=policy, errors=errors))
            continue
        if not p.exists():
            raise InputError(f"no such file or folder: {p}")
        try:
            if p.suffix in _BATCH_SUFFIXES:
                items.extend(list(_batch_items(p, at, policy)))
            else:
                items.append(_from_bundle(load_bundle(p), str(p), at, policy))
        except PhalanbError as exc:
            if errors is None:
                raise
            errors.append((str(p), str(exc)))
    return items


def write_batch(path: str | os.PathLike[str], *, report: dict[str, Any], nonce: bytes | None, policy: Policy,
                verified_at: float, replies: Iterable[tuple[Exchange, SignatureRecord]], collateral: Any = None,
                nras_response: Any = None, jwks: Any = None, gateway_collateral: Any = None,
                framing: str | None = None) -> Path:
    """Write replies that share one attestation as a batch file.

    ``framing``: ``"lines"`` — JSON lines, the exact bytes in base64 — or ``"frames"`` — the same records with the
    exact bytes stored raw (:mod:`phalanb.wire.frames`), which audits about a quarter faster. By default a path ending in
    ``.pbatch`` is framed and any other is JSON lines."""
    p = Path(path)
    header = {"kind": BATCH_KIND, "attestation": {"report": report, "nonce": nonce.hex() if nonce else None},
              "policy": policy.to_dict(), "verified_at": verified_at, "collateral": collateral,
              "nras": {"response": nras_response, "jwks": jwks} if nras_response is not None else None}
    if gateway_collateral is not None:
        header["gateway_collateral"] = gateway_collateral
    return _write(p, header, replies, framing)


def _write(p: Path, header: dict[str, Any], replies: Iterable[tuple[Exchange | None, SignatureRecord]],
           framing: str | None) -> Path:
    """Write a batch; ``framing`` None: the one ``p``'s suffix names."""
    if framing is None:
        framing = "frames" if p.suffix == _frames.SUFFIX else "lines"
    if framing not in ("lines", "frames"):
        raise InputError(f"framing must be 'lines' or 'frames', not {framing!r}")
    if framing == "frames":
        header = {**header, "framing": _frames.FRAMING}
        with p.open("wb") as fh:
            fh.write(json.dumps(header).encode() + b"\n")
            _frames.write_frames(fh, (_frames.encode_record(*_framed(ex, sig)) for ex, sig in replies))
        return p
    with p.open("w") as fh:
        fh.write(json.dumps(header) + "\n")
        for ex, sig in replies:
            fh.write(json.dumps({"exchange": ex.to_dict() if ex is not None else None,
                                 "signature": sig.to_dict()}) + "\n")
    return p


def reframe_batch(source: str | os.PathLike[str], target: str | os.PathLike[str], *, framing: str | None = None
                  ) -> Path:
    """Rewrite a batch file in the other framing — JSON lines to framed (``.pbatch``) or back — streamed, record by
    record: each record is read the exact way (a record that does not read stops the rewrite with its error) and
    written again, the header copied as it is. ``framing`` as for :func:`write_batch`; by default the one
    ``target``'s suffix names."""
    src, dst = Path(source), Path(target)
    if src.resolve() == dst.resolve():
        raise InputError(f"{src}: the rewritten batch must go to another file")
    with src.open("rb") as fh:
        header_line = fh.readline(_HEADER_MAX + 1)
        _read_header(src, io.BytesIO(header_line))  # the same checks as for an audit
    header = {k: v for k, v in _json.loads(header_line).items() if k != "framing"}
    replies = ((i.exchange, i.signature) for i in _batch_items(src, None, Policy()))
    return _write(dst, header, replies, framing)


#: What Exchange.from_dict works out from the bytes themselves: a framed record does not repeat it.
_DERIVED = ("request_b64", "response_b64", "chat_id", "model", "text", "usage", "finish_reason")


def _framed(ex: Exchange | None, sig: SignatureRecord) -> tuple[dict[str, Any], bytes, bytes]:
    if ex is None:
        return {"exchange": None, "signature": sig.to_dict()}, b"", b""
    meta = {k: v for k, v in ex.to_dict().items() if k not in _DERIVED}
    return {"exchange": meta, "signature": sig.to_dict()}, ex.request_bytes, ex.response_bytes


# -- the work units (module-level so process pools and Dask can ship them) ------------------------------------

def _attest(item: AuditItem) -> AttestedReport:
    if item.report is None:
        return unattested("no attestation report was given")
    try:
        return attest_report(item.report, nonce=item.nonce, signer=item.signature.signing_address,
                             policy=item.policy, collateral=item.collateral, nras_response=item.nras_response,
                             jwks=item.jwks, at=item.at, gateway_collateral=item.gateway_collateral)
    except PhalanbError as exc:  # e.g. a policy naming roots that cannot be loaded
        return unattested(f"the attestation cannot be verified: {exc}", failed=True)


@dataclass
class _Reply:
    """What a worker needs of an item: not the (large, shared) attestation inputs; the caller, which verified
    them once, adds that side to the worker's compact rows."""

    source: str
    exchange: Exchange | None
    signature: SignatureRecord
    recorded_status: str | None


# A compact row, what a worker sends back per reply: (source or line number, chat_id, request.hash,
# response.hash, signature.valid, signer, the record's signing_address, algo, recorded status, ttft_s, total_s,
# the reply's own Checks when whole verdicts were asked for, else None). The attestation side is added by the
# caller, which verified it once.
_Compact = tuple


class _Exact(NamedTuple):
    """In a compact row's last cell: the reply is verify_exchange's to decide whole (takes_preflight), with what
    verify_exchange reads of the exchange (its exact bytes and whether it streamed) and the record."""

    exchange: Exchange | None
    signature: SignatureRecord


def _own(source: Any, chat_id: str | None, request: bytes | None, response: bytes | None, stream: bool,
         sig: SignatureRecord, recorded: str | None, timings: Any, keep: bool) -> _Compact:
    ttft = timings.ttft_s if timings is not None else None
    total = timings.total_s if timings is not None else None
    if takes_preflight(sig.raw, None):  # the report's side of the question is asked where the report is
        ex = None if request is None else Exchange(url="", request_bytes=request, response_bytes=response,
                                                   status=200, stream=stream)
        return (source, chat_id, None, None, None, None, sig.signing_address, sig.signing_algo, recorded, ttft,
                total, _Exact(ex, sig))
    if keep:
        ex = None if request is None else Exchange(url="", request_bytes=request, response_bytes=response,
                                                   status=200, stream=stream)
        checks, signer = chat_checks(ex, sig)
        req, resp, valid = (c.status for c in checks[:3])  # a signature.record_address warning may follow
    else:
        checks = None
        req, resp, valid, signer = _batchscan.decide(request, response, stream, sig)
    return (source, chat_id, req, resp, valid, signer, sig.signing_address, sig.signing_algo, recorded, ttft, total,
            checks)


def _check_replies(replies: list[_Reply], keep: bool) -> tuple[int, list[_Compact]]:
    out = []
    for r in replies:
        ex = r.exchange
        if ex is None:
            out.append(_own(r.source, r.signature.chat_id, None, None, False, r.signature, r.recorded_status, None,
                            keep))
        else:
            out.append(_own(r.source, ex.chat_id, ex.request_bytes, ex.response_bytes, ex.stream, r.signature,
                            r.recorded_status, ex.timings, keep))
    return len(replies), out


def _scan_span(path: str, start: int, end: int, keep: bool, sides: dict[str | None, Any], framed: bool = False
               ) -> tuple[int, list[tuple]]:
    """A worker's share of a batch: it reads the lines (or frames) itself. Returns how many lines (records) the
    span holds and, per reply, numbered by its place in the span, the finished row when ``sides`` holds the
    attestation its record names (the usual case), else the compact row for the caller to finish."""
    # The common row's cells, per attested address a record may name (bound: the same string, so same_address
    # holds); None before the attestation is verified: the reader then gives the common reply's compact row.
    clean = False if keep else None if not sides else \
        {a: _clean_cells(c) for a, c in sides.items() if a is not None and a == c.address}
    count, replies = _batchscan.read_span(path, start, end, clean, framed)
    out = []
    for n, r in replies:
        if type(r) is tuple:  # the common reply, read and checked in one pass (_batchscan._quick)
            out.append(r)
            continue
        chat_id = r.chat_id if r.request_bytes is not None else r.signature.chat_id
        c = _own(n, chat_id, r.request_bytes, r.response_bytes, r.stream, r.signature, None, r.timings, keep)
        if type(c[11]) is _Exact:
            out.append(c)  # verify_exchange's to decide, where the attestation inputs are
            continue
        claimed = c[6]
        tail = clean.get(claimed) if clean else None
        if tail is not None and c[2] is c[3] is c[4] is Status.PASS and c[5] == claimed:
            out.append((n, chat_id, *tail, c[9], c[10]))  # what cells() gives such a row
            continue
        cells = None if keep else sides.get(_side_key(c))
        out.append(c if cells is None else (n, *cells.cells(c)))
    return count, out


def _side_key(c: _Compact) -> str | None:
    """The address whose attestation a compact row is put together with: the signer its signature recovers to,
    else the one its record names — what verify_exchange hands attest_report (``signer or signing_address``)."""
    return c[5] if c[5] is not None else c[6]


def _clean_cells(cells: _Cells) -> tuple:
    """The (verdict, failing, skipped, warnings, recorded) that :meth:`_Cells.cells` gives a reply whose own links
    all pass and whose signature recovers to the attested address its record names — the common row, worked out
    once per span by cells() itself."""
    a = cells.address  # the record names it and the signature recovers to it
    return cells.cells((0, None, Status.PASS, Status.PASS, Status.PASS, a, a, "ecdsa", None, None, None, None))[1:6]


def _run_task(task: tuple) -> tuple[int, list[_Compact]]:
    kind, *args = task
    return _scan_span(*args) if kind == "span" else _check_replies(*args)


# -- putting a reply's own links and its attestation together ---------------------------------------------------

_OWN_IDS = ("request.hash", "response.hash", "signature.valid", "signature.bound")
_HELD = (Status.PASS, Status.WARNING)


class _Cells:
    """One verified attestation reduced to what a row needs: small enough to ship to every worker, so a worker
    sends back finished rows."""

    def __init__(self, attested: AttestedReport):
        node = attested.node
        self.address = node.signing_address if node is not None else None
        checks = attested.checks
        self.failed = [c.id for c in checks if c.status is Status.FAIL]
        self.skipped = [c.id for c in checks if c.status is Status.SKIPPED]
        self.warnings = [c.id for c in checks if c.status is Status.WARNING]
        self.required_held = all(c.status in _HELD for c in checks if c.required)

    def bound(self, signer: str | None) -> Status:
        """``signature.bound``'s status, as :func:`~phalanb.vllm.verify.assemble` decides it."""
        if self.address is None or signer is None:
            return Status.SKIPPED
        return Status.PASS if same_address(signer, self.address) else Status.FAIL

    def cells(self, c: _Compact) -> tuple:
        """(chat_id, verdict, failing, skipped, warnings, recorded, ttft_s, total_s): the verdict's decisions as
        :class:`~phalanb.verdict.Verdict` takes them (failed if any check failed; verified if every required one
        held; otherwise incomplete), without building it."""
        _, chat_id, req, resp, valid, signer, claimed, _, recorded, ttft, total, _ = c
        own = (req, resp, valid, self.bound(signer))
        failed = [i for i, s in zip(_OWN_IDS, own) if s is Status.FAIL] + self.failed
        if failed:
            status = FAILED
        elif self.required_held and all(s in _HELD for s in own):
            status = VERIFIED
        else:
            status = INCOMPLETE
        skipped = [i for i, s in zip(_OWN_IDS, own) if s is Status.SKIPPED] + self.skipped
        warnings = [i for i, s in zip(_OWN_IDS, own) if s is Status.WARNING]
        if signer is not None and claimed is not None and not same_address(signer, claimed):
            warnings.append("signature.record_address")  # as check_record_address: the record contradicts itself
        warnings += self.warnings
        return (chat_id, status, ",".join(failed), ",".join(skipped), ",".join(warnings), recorded, ttft, total)


def _verdict_row(source: str, chat_id: str | None, v: Any, recorded: str | None, ttft: Any, total: Any) -> tuple:
    return (source, chat_id, v.status, ",".join(x.id for x in v.failed), ",".join(x.id for x in v.skipped),
            ",".join(x.id for x in v.warnings), recorded, ttft, total)


class _Side:
    """One verified attestation (computed once per attestation) and its row cells."""

    def __init__(self, attested: AttestedReport):
        self.attested = attested
        self.cells = _Cells(attested)

    def row(self, source: str, c: _Compact) -> tuple[tuple, Any]:
        checks = c[11]
        if checks is not None:  # whole verdicts asked for: the very assemble() of a single verification
            _, chat_id, _, _, _, signer, _, algo, recorded, ttft, total, _ = c
            v = assemble(checks, signer, algo, self.attested)
            return _verdict_row(source, chat_id, v, recorded, ttft, total), v
        return (source, *self.cells.cells(c)), None


class _Batch:
    """A JSONL batch: the shared header, verified once per signing address its lines name (usually one)."""

    def __init__(self, path: Path, at: float | None, policy: Policy):
        self.path = str(path)
        with path.open("rb") as fh:
            self.shared, self.body_start, self.framed = _read_header(path, fh)
        # Rows are named path:line for JSONL (the header is line 1), path#record for a framed batch.
        self.first, self.mark = (1, "#") if self.framed else (2, ":")
        self.at = self.shared.verified_at if at is None else at
        self.policy = policy
        self._sides: dict[str | None, _Side] = {}  # by every address asked for
        self._by_node: dict[str | None, _Side] = {}  # by signer_choice's representative: one per node
        self._choose: Any = None

    def item(self, address: str | None) -> AuditItem:
        s = self.shared
        return AuditItem(source=self.path, exchange=None, signature=SignatureRecord("", "", signing_address=address),
                         report=s.report, nonce=s.nonce, policy=self.policy, at=self.at, collateral=s.collateral,
                         nras_response=s.nras_response, jwks=s.jwks)

    def side(self, address: str | None) -> _Side:
        side = self._sides.get(address)
        if side is None:
            if self._choose is None:
                self._choose = signer_choice(self.shared.report)
            chosen = self._choose(address)
            side = self._by_node.get(chosen)
            if side is None:
                side = self._by_node[chosen] = _Side(_attest(self.item(chosen)))
            self._sides[address] = side
        return side

    def tasks(self, keep: bool, early: bool = True) -> Iterator[tuple]:
        self.line = self.first  # the number of the first line (record) of the span whose rows come back next
        spans = _batchscan.spans(self.path, self.body_start, framed=self.framed,
                                 first=(EARLY_SPANS, EARLY_SPAN_BYTES) if not keep and early else (0, 0))
        if not keep and early:
            # With workers, the first spans go out at once (their rows come back compact and are finished here)
            # and the workers start reading while the attestation is verified; the later spans carry its cells, so
            # the workers finish their rows. (In this process alone there is nothing to overlap.)
            for start, end in islice(spans, EARLY_SPANS):
                yield ("span", self.path, start, end, keep, {}, self.framed)
            self.side(self.first_address())
        for start, end in spans:
            cells = {address: side.cells for address, side in self._sides.items()}
            yield ("span", self.path, start, end, keep, cells, self.framed)

    def first_address(self) -> str | None:
        """The signing address the first reply's record names (a line that does not read: the worker says so)."""
        if self.framed:
            try:
                start, end = next(_batchscan.spans(self.path, self.body_start, size=1, framed=True))
                _, replies = _batchscan.read_span(self.path, start, end, False, True)
                return next(r for _, r in replies).signature.signing_address
            except (StopIteration, ParseError, _batchscan.LineError):
                return None  # no record, or one that does not read: the worker says so
        with open(self.path, "rb") as fh:
            fh.seek(self.body_start)
            for line in fh:
                if line.strip():
                    try:
                        return _batchscan.read_line(line).signature.signing_address
                    except _batchscan.LineError:
                        return None
        return None

    def finish(self, c: tuple) -> tuple[tuple, Any]:
        source = f"{self.path}{self.mark}{self.line + c[0]}"
        if len(c) == 9:  # finished by the worker
            return (source, *c[1:]), None
        if type(c[11]) is _Exact:
            s = self.shared
            v = verify_exchange(c[11].exchange, c[11].signature, s.report, nonce=s.nonce, policy=self.policy,
                                collateral=s.collateral, nras_response=s.nras_response, jwks=s.jwks, at=self.at,
                                gateway_collateral=s.gateway_collateral)
            return _verdict_row(source, c[1], v, c[8], c[9], c[10]), v
        return self.side(_side_key(c)).row(source, c)

    def done(self, lines: int) -> None:
        self.line += lines


class _Items:
    """Replies already in memory (bundles, or AuditItems given): each distinct attestation verified once."""

    def __init__(self, items: list[AuditItem], mapper: Any):
        self.items = items
        self.keys = _attestation_keys(items)
        # verify_exchange's own preflight decides these whole (a legacy gateway's report, a receipt wrapper)
        self.exact = [takes_preflight(i.signature.raw, i.report) for i in items]
        first: dict[str, AuditItem] = {}
        for k, item, exact in zip(self.keys, items, self.exact):
            if not exact:
                first.setdefault(k, item)
        self.sides = {k: _Side(a) for k, a in zip(first, mapper(_attest, first.values()))}
        self.choices: dict[int, Any] = {}
        self.next = 0

    def tasks(self, keep: bool, early: bool = True) -> Iterator[tuple]:
        for n in range(0, len(self.items), CHUNK):
            yield ("items", [_Reply(i.source, i.exchange, i.signature, i.recorded_status)
                             for i in self.items[n:n + CHUNK]], keep)

    def finish(self, c: _Compact) -> tuple[tuple, Any]:
        n = self.next
        self.next += 1
        item = self.items[n]
        if self.exact[n] or type(c[11]) is _Exact:
            v = verify_exchange(item.exchange, item.signature, item.report, nonce=item.nonce, policy=item.policy,
                                collateral=item.collateral, nras_response=item.nras_response, jwks=item.jwks,
                                at=item.at, gateway_collateral=item.gateway_collateral)
            return _verdict_row(c[0], c[1], v, c[8], c[9], c[10]), v
        key = _side_key(c)
        if key != item.signature.signing_address:  # signed by another address than the record names
            choose = self.choices.get(id(item.report))
            if choose is None:
                choose = self.choices[id(item.report)] = signer_choice(item.report)
            memo = (self.keys[n], choose(key))
            side = self.sides.get(memo)  # type: ignore[call-overload]
            if side is None:
                side = self.sides[memo] = _Side(_attest(replace(item, signature=SignatureRecord(
                    "", "", signing_address=memo[1]))))
            return side.row(c[0], c)
        return self.sides[self.keys[n]].row(c[0], c)

    def done(self, lines: int) -> None:
        pass


def _read_header(path: Path, fh: Any) -> tuple[Bundle, int, bool]:
    """The shared header: (its attestation as a bundle, the offset of the first line or frame, framed or not)."""
    header_line = fh.readline(_HEADER_MAX + 1)
    if len(header_line) > _HEADER_MAX:
        raise ParseError(f"{path}: the header line is longer than {_HEADER_MAX} bytes", field="header", offset=0)
    try:
        header = _json.loads(header_line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ParseError(f"{path}: the first line is not JSON ({exc})", field="header", offset=0) from None
    if not isinstance(header, dict) or header.get("kind") != BATCH_KIND:
        raise ParseError(f"{path}: the first line must be a {BATCH_KIND!r} header", field="header", offset=0)
    framing = header.get("framing")
    if framing not in (None, _frames.FRAMING):
        raise ParseError(f"{path}: unknown framing {framing!r}; this phalanb reads JSON lines (no framing) and "
                         f"{_frames.FRAMING!r}", field="header.framing", offset=0)
    if not header_line.endswith(b"\n") and framing is not None:
        raise ParseError(f"{path}: the header line does not end: the file is truncated", field="header",
                         offset=len(header_line))
    shared = parse_bundle({"kind": "phalanb.audit-bundle", "schema_version": 1,
                           "signature": {"text": "", "signature": ""}, **{k: v for k, v in header.items()
                                                                        if k not in ("kind", "framing")}})
    return shared, len(header_line), framing is not None


#: A batch header holds the attestation report, collateral and NRAS answer: a few MB at most.
_HEADER_MAX = 64 << 20


def _aci_row(bundle: Bundle, source: str, at: float | None, policy: Policy, keep: bool) -> dict[str, Any]:
    """One ACI reply's row: :func:`phalanb.audit.bundle.verify_bundle` (report, receipt, sessions, deep audit)."""
    from .bundle import verify_bundle

    verdict = verify_bundle(bundle, policy=policy, at=bundle.verified_at if at is None else at)
    ex = bundle.exchange
    row: dict[str, Any] = {
        "source": source, "chat_id": ex.chat_id if ex else None, "verdict": verdict.status,
        "failing": ",".join(c.id for c in verdict.failed), "skipped": ",".join(c.id for c in verdict.skipped),
        "warnings": ",".join(c.id for c in verdict.warnings),
        "recorded": (bundle.recorded_verdict or {}).get("status"),
        "ttft_s": ex.timings.ttft_s if ex else None, "total_s": ex.timings.total_s if ex else None}
    if keep:
        row["verdict_obj"] = verdict
    return row


def _files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """The files :func:`load_items` would read, in its order."""
    for p in map(Path, paths):
        if p.is_dir():
            yield from _files(sorted(q for q in p.iterdir() if q.suffix in _SUFFIXES))
        elif p.exists():
            yield p
        else:
            raise InputError(f"no such file or folder: {p}")


def _units(given: list[Any], at: float | None, policy: Policy | None, trust: str, mapper: Any, *,
           unreadable: list[tuple[str, str]] | None = None, aci_rows: list[dict[str, Any]] | None = None,
           verdicts: bool = False) -> list[Any]:
    """JSONL batches stay on disk (their workers read them); bundles are read here, a bundle being one reply.

    A file that cannot be read is recorded in ``unreadable`` (source, why) and the audit goes on (without the list,
    its error is raised). ACI bundles (schema 2) are verified here, each with its own report, receipt and
    sessions, into ``aci_rows``."""
    if given and all(isinstance(i, AuditItem) for i in given):
        return [_Items(given, mapper)]
    policy = policy or Policy(trust=trust)
    units: list[Any] = []
    bundles: list[AuditItem] = []
    for p in _files(given):
        try:
            if p.suffix in _BATCH_SUFFIXES:
                batch = _Batch(p, at, policy)
            else:
                bundle = load_bundle(p)
        except PhalanbError as exc:
            if unreadable is None:
                raise
            unreadable.append((str(p), str(exc)))
            continue
        if p.suffix in _BATCH_SUFFIXES:
            if bundles:
                units.append(_Items(bundles, mapper))
                bundles = []
            if takes_preflight(None, batch.shared.report):
                # A legacy gateway's report: verify_exchange decides every reply whole (read the exact way).
                units.append(_Items(list(_batch_items(p, at, policy)), mapper))
            else:
                units.append(batch)
        elif bundle.aci is not None:
            if aci_rows is None:
                raise InputError(f"{p} is an ACI bundle: audit it with phalanb.audit.batch.audit")
            aci_rows.append(_aci_row(bundle, str(p), at, policy, verdicts))
        else:
            bundles.append(_from_bundle(bundle, str(p), at, policy))
    if bundles:
        units.append(_Items(bundles, mapper))
    return units


def audit(paths_or_items: Iterable[Any], *, executor: Executor | None = None, workers: int | None = None,
          progress: bool = True, at: float | None = None, verdicts: bool = False, policy: Policy | None = None,
          trust: str = "production") -> pd.DataFrame:
    """Verify every reply; one row each (source, chat_id, verdict, failing, skipped, warnings, recorded, timings).

    Files are verified under the auditor's ``policy`` (default: ``Policy(trust=trust)``, production roots).
    ``executor``: any ``concurrent.futures.Executor`` (a Dask client's executor too); by default ``workers``
    processes in all: this one and a pool of ``workers - 1`` others (1 = this process alone). With
    ``verdicts=True`` the frame gets a ``verdict_obj`` column holding each :class:`~phalanb.verdict.Verdict`.

    A batch (``.jsonl``, or framed ``.pbatch``) is streamed: its workers read their own spans of the file and send
    back one compact row per reply, so memory holds the rows, not the replies (workers on other machines need the
    same path).
    """
    if isinstance(paths_or_items, (str, os.PathLike)):
        paths_or_items = [paths_or_items]
    unreadable: list[tuple[str, str]] = []
    aci_rows: list[dict[str, Any]] = []
    own = None
    # The objects that exist before the audit are left out of the garbage collector's walks until it ends: the
    # rows it piles up set off full collections, each of which would walk every object of the caller's session
    # (and, in a forked worker, copy every page it touches). Objects the audit makes are collected as usual.
    gc.freeze()
    try:
        if executor is None and (workers or 1) > 1:
            # This process is one of the workers: it takes a span itself whenever the others have enough queued.
            executor = own = ProcessPoolExecutor(max_workers=workers - 1)
        units = _units(list(paths_or_items), at, policy, trust, executor.map if executor is not None else map,
                       unreadable=unreadable, aci_rows=aci_rows, verdicts=verdicts)
        # ACI bundles and unreadable files were handled while the files were read: the bar counts them too
        df = _run(units, executor, progress, verdicts, helping=(workers - 1) if own is not None else 0,
                  already=len(aci_rows) + len(unreadable))
    except BaseException:
        if own is not None:  # a task raised or the audit was interrupted: stop the others' work before leaving
            own.shutdown(wait=True, cancel_futures=True)
        raise
    else:
        if own is not None:  # every result is in: the workers may exit on their own time, not the caller's
            own.shutdown(wait=False)
    finally:
        gc.unfreeze()
    if unreadable:
        # One bad file (a NaN verified_at, a truncated bundle) is a failed row, not the end of the audit.
        bad = pd.DataFrame([{"source": src, "chat_id": None, "verdict": "failed", "failing": "bundle.read",
                             "skipped": "", "warnings": "", "recorded": None, "ttft_s": None, "total_s": None,
                             "error": why} for src, why in unreadable])
        if verdicts:
            bad["verdict_obj"] = None
        df = pd.concat([df, bad], ignore_index=True) if len(df) else bad
    if aci_rows:
        aci = pd.DataFrame(aci_rows)
        df = pd.concat([df, aci], ignore_index=True) if len(df) else aci
    return df


def _attestation_keys(items: list[AuditItem]) -> list[str]:
    """Each item's attestation key, serialising each distinct shared object once (a JSONL batch's replies all
    hold the same report object; hashing a 1 MB report per reply would dominate the whole audit)."""
    memo: dict[tuple, str] = {}
    out = []
    for i in items:
        ident = (id(i.report), id(i.collateral), id(i.gateway_collateral), id(i.nras_response), id(i.jwks),
                 id(i.policy), i.nonce,
                 i.signature.signing_address, i.at)
        key = memo.get(ident)
        if key is None:
            key = memo[ident] = i.attestation_key()
        out.append(key)
    return out


_COLUMNS = ["source", "chat_id", "verdict", "failing", "skipped", "warnings", "recorded", "ttft_s", "total_s"]


#: Tasks handed to an executor ahead of the one whose rows are being put together: enough to keep every worker busy
#: (here too, while the first rows wait for the attestation), few enough that finished rows do not pile up.
WINDOW = 16


class _Here:
    """A task this process runs itself (it has the shape of a future): ahead of its turn while a task ahead of it
    is still with the executor, or when its turn comes. What it raises is kept for its turn, so errors are still
    reported in the file's order."""

    __slots__ = ("task", "outcome")

    def __init__(self, task: tuple):
        self.task, self.outcome = task, None

    def done(self) -> bool:
        return self.outcome is not None

    def run(self) -> None:
        if self.outcome is None:
            try:
                self.outcome = (True, _run_task(self.task))
            except Exception as exc:  # noqa: BLE001 - raised again, unchanged, when its turn comes
                self.outcome = (False, exc)

    def result(self) -> tuple[int, list[_Compact]]:
        self.run()
        ok, value = self.outcome
        if not ok:
            raise value
        return value


def _results(units: list[Any], executor: Executor | None, keep: bool, helping: int = 0
             ) -> Iterator[tuple[Any, Any]]:
    """(unit, future) per task, in output order; an executor gets its tasks as the files are cut.

    ``helping``: the executor's worker count when this process works too. The executor is kept two tasks per
    worker ahead; the other tasks stay here, and this process runs them while the next task in order is still
    being worked on elsewhere — so both sides are busy to the end, and rows still come out in the file's order."""
    pairs = ((unit, task) for unit in units for task in unit.tasks(keep, early=executor is not None))
    if executor is None:
        for unit, task in pairs:
            yield unit, _Here(task)
        return
    window: deque = deque()

    def top_up() -> None:
        waiting = sum(1 for _, f in window if type(f) is not _Here and not f.done())
        for i in range(1, len(window)):  # not the next in order: its turn is now, this process takes it
            if waiting >= 2 * helping:
                return
            unit, f = window[i]
            if type(f) is _Here and not f.done():
                window[i] = unit, executor.submit(_run_task, f.task)
                waiting += 1

    def fill() -> None:
        for unit, task in islice(pairs, WINDOW - len(window)):
            window.append((unit, _Here(task) if helping else executor.submit(_run_task, task)))
            if helping:
                top_up()

    fill()
    while window:
        if helping:
            head = window[0][1]
            if type(head) is not _Here and not head.done():
                ahead = next((f for _, f in window if type(f) is _Here and not f.done()), None)
                if ahead is not None:
                    ahead.run()
                    top_up()
                    continue
        yield window.popleft()
        fill()
        if helping:
            top_up()


def _run(units: list[Any], executor: Executor | None, progress: bool, keep: bool, helping: int = 0,
         already: int = 0) -> pd.DataFrame:
    from tqdm.auto import tqdm

    known = None if any(isinstance(u, _Batch) for u in units) else sum(len(u.items) for u in units) + already
    bar = tqdm(total=known, initial=already, desc="verifying", unit="reply", disable=not progress)
    rows: list[tuple] = []
    kept: list[Any] = []
    for unit, pending in _results(units, executor, keep, helping):
        try:
            lines, done = pending.result()
        except _batchscan.LineError as exc:
            raise exc.parse_error(unit.path, unit.line + exc.line) from None
        for c in done:
            row, verdict = unit.finish(c)
            rows.append(row)
            if keep:
                kept.append(verdict)
        unit.done(lines)
        bar.update(len(done))
    bar.close()
    df = pd.DataFrame.from_records(rows, columns=_COLUMNS) if rows else pd.DataFrame(columns=_COLUMNS)
    if keep:
        df["verdict_obj"] = kept
    return df
