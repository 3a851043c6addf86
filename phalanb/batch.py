"""Batch audits: verify thousands of replies, one row each, on any ``concurrent.futures.Executor``.

Replies signed by one node share one attestation report, and verifying it (quote chain, GPU chains, event log)
costs far more than checking one signature. So the work is split: each distinct attestation is verified once
(:func:`~phalanb.verify.attest_report`), each reply's own links (hashes, signature) are checked in parallel, and
the two are put together with the same :func:`~phalanb.verify.assemble` that :func:`~phalanb.verify.verify_exchange`
uses — a batch verdict is the same verdict, computed with less repetition.

Inputs: audit bundle files (``*.json``), or a JSONL file whose first line is a shared header
``{"kind": "phalanb.audit-batch", "attestation": {...}, "policy": {...}, "verified_at": …, "collateral": …,
"gateway_collateral": … (optional), "nras": …}`` followed by one ``{"exchange": {...}, "signature": {...}}``
per line.

>>> df = audit(["a.json", "b.json"], workers=2)            # doctest: +SKIP
>>> df[["chat_id", "verdict", "failing"]]                   # doctest: +SKIP

A Dask cluster's executor works unchanged: ``audit(paths, executor=distributed.Client(cluster).get_executor())``.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd

from . import _json
from .audit import Bundle, load_bundle, parse_bundle
from .errors import InputError, ParseError, PhalanbError
from .exchange import Exchange
from .policy import Policy
from .signatures import SignatureRecord
from .verify import AttestedReport, assemble, attest_report, chat_checks, unattested
from .timeutil import parse_optional_time

__all__ = ["BATCH_KIND", "AuditItem", "audit", "load_items", "write_batch"]

BATCH_KIND = "phalanb.audit-batch"
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
    return AuditItem(source=source, exchange=bundle.exchange, signature=bundle.signature, report=bundle.report,
                     nonce=bundle.nonce, policy=policy, at=bundle.verified_at if at is None else at,
                     collateral=bundle.collateral, nras_response=bundle.nras_response, jwks=bundle.jwks,
                     recorded_status=(bundle.recorded_verdict or {}).get("status"),
                     gateway_collateral=bundle.gateway_collateral)


def _jsonl_items(path: Path, at: float | None, policy: Policy) -> Iterator[AuditItem]:
    with path.open("rb") as fh:
        header_line = fh.readline()
        try:
            header = _json.loads(header_line)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ParseError(f"{path}: the first line is not JSON ({exc})", field="header", offset=0) from None
        if not isinstance(header, dict) or header.get("kind") != BATCH_KIND:
            raise ParseError(f"{path}: the first line must be a {BATCH_KIND!r} header", field="header", offset=0)
        shared = parse_bundle({"kind": "phalanb.audit-bundle", "schema_version": 1,
                               "signature": {"text": "", "signature": ""}, **{k: v for k, v in header.items()
                                                                            if k != "kind"}})
        offset = len(header_line)
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
            yield AuditItem(source=f"{path}:{lineno}", exchange=ex, signature=sig, report=shared.report,
                            nonce=shared.nonce, policy=policy, at=shared.verified_at if at is None else at,
                            collateral=shared.collateral, nras_response=shared.nras_response, jwks=shared.jwks,
                            gateway_collateral=shared.gateway_collateral)


def load_items(paths: Iterable[str | os.PathLike[str]], *, at: float | None = None, policy: Policy | None = None,
               trust: str = "production", errors: list[tuple[str, str]] | None = None) -> list[AuditItem]:
    """Bundles (``.json``), batch files (``.jsonl``) and folders of either, to be verified under the auditor's
    ``policy`` (default: production roots; ``trust="simulated"`` for simulator evidence) — never under a policy
    written into the files.

    A file that cannot be read raises its phalanb error, unless ``errors`` is a list: then ``(source, why)`` is
    appended to it and the other files are still loaded (:func:`audit` reports each as a failed row)."""
    policy = policy or Policy(trust=trust)
    at = parse_optional_time(at, field="at", allow_now=True)
    items: list[AuditItem] = []
    for p in map(Path, paths):
        if p.is_dir():
            items.extend(load_items(sorted(q for q in p.iterdir() if q.suffix in (".json", ".jsonl")), at=at,
                                    policy=policy, errors=errors))
            continue
        if not p.exists():
            raise InputError(f"no such file or folder: {p}")
        try:
            if p.suffix == ".jsonl":
                items.extend(list(_jsonl_items(p, at, policy)))
            else:
                items.append(_from_bundle(load_bundle(p), str(p), at, policy))
        except PhalanbError as exc:
            if errors is None:
                raise
            errors.append((str(p), str(exc)))
    return items


def write_batch(path: str | os.PathLike[str], *, report: dict[str, Any], nonce: bytes | None, policy: Policy,
                verified_at: float, replies: Iterable[tuple[Exchange, SignatureRecord]], collateral: Any = None,
                nras_response: Any = None, jwks: Any = None, gateway_collateral: Any = None) -> Path:
    """Write replies that share one attestation as a JSONL batch file."""
    p = Path(path)
    header = {"kind": BATCH_KIND, "attestation": {"report": report, "nonce": nonce.hex() if nonce else None},
              "policy": policy.to_dict(), "verified_at": verified_at, "collateral": collateral,
              "nras": {"response": nras_response, "jwks": jwks} if nras_response is not None else None}
    if gateway_collateral is not None:
        header["gateway_collateral"] = gateway_collateral
    with p.open("w") as fh:
        fh.write(json.dumps(header) + "\n")
        for ex, sig in replies:
            fh.write(json.dumps({"exchange": ex.to_dict(), "signature": sig.to_dict()}) + "\n")
    return p


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


def _verify_chunk(task: tuple[AttestedReport, list[tuple[int, _Reply]], bool]) -> list[tuple[int, dict, Any]]:
    """One worker's share: the replies' own links, assembled with their (already verified) attestation."""
    attested, indexed, keep = task
    out = []
    for index, reply in indexed:
        chat, signer = chat_checks(reply.exchange, reply.signature)
        verdict = assemble(chat, signer, reply.signature.signing_algo, attested)
        out.append((index, _row(reply, verdict), verdict if keep else None))
    return out


@dataclass
class _Reply:
    """What a worker needs of an item: not the (large, shared) attestation inputs, which it gets verified."""

    source: str
    exchange: Exchange | None
    signature: SignatureRecord
    recorded_status: str | None


def _row(item: _Reply, verdict: Any) -> dict[str, Any]:
    t = item.exchange.timings if item.exchange is not None else None
    return {
        "source": item.source,
        "chat_id": item.exchange.chat_id if item.exchange is not None else item.signature.chat_id,
        "verdict": verdict.status,
        "failing": ",".join(c.id for c in verdict.failed),
        "skipped": ",".join(c.id for c in verdict.skipped),
        "warnings": ",".join(c.id for c in verdict.warnings),
        "recorded": item.recorded_status,
        "ttft_s": t.ttft_s if t else None,
        "total_s": t.total_s if t else None,
    }


def audit(paths_or_items: Iterable[Any], *, executor: Executor | None = None, workers: int | None = None,
          progress: bool = True, at: float | None = None, verdicts: bool = False, policy: Policy | None = None,
          trust: str = "production") -> pd.DataFrame:
    """Verify every reply; one row each (source, chat_id, verdict, failing, skipped, warnings, recorded, timings).

    Files are verified under the auditor's ``policy`` (default: ``Policy(trust=trust)``, production roots).
    ``executor``: any ``concurrent.futures.Executor`` (a Dask client's executor too); by default a process pool
    with ``workers`` processes (1 = run in this process). With ``verdicts=True`` the frame gets a ``verdict_obj``
    column holding each :class:`~phalanb.verdict.Verdict`.
    """
    if isinstance(paths_or_items, (str, os.PathLike)):
        paths_or_items = [paths_or_items]
    given = list(paths_or_items)
    unreadable: list[tuple[str, str]] = []
    items = (given if given and all(isinstance(i, AuditItem) for i in given)
             else load_items(given, at=at, policy=policy, trust=trust, errors=unreadable))
    own = None
    if executor is None and (workers or 1) > 1:
        executor = own = ProcessPoolExecutor(max_workers=workers)
    try:
        df = _run(items, executor, progress, verdicts)
    finally:
        if own is not None:
            own.shutdown()
    if unreadable:
        # One bad file (a NaN verified_at, a truncated bundle) is a failed row, not the end of the audit.
        bad = pd.DataFrame([{"source": src, "chat_id": None, "verdict": "failed", "failing": "bundle.read",
                             "skipped": "", "warnings": "", "recorded": None, "ttft_s": None, "total_s": None,
                             "error": why} for src, why in unreadable])
        if verdicts:
            bad["verdict_obj"] = None
        df = pd.concat([df, bad], ignore_index=True) if len(df) else bad
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


def _run(items: list[AuditItem], executor: Executor | None, progress: bool, keep: bool) -> pd.DataFrame:
    from tqdm.auto import tqdm

    bar = tqdm(total=len(items), desc="verifying", unit="reply", disable=not progress)
    mapper = executor.map if executor is not None else map
    # 1. each distinct attestation once
    keys = _attestation_keys(items)
    first: dict[str, AuditItem] = {}
    for k, item in zip(keys, items):
        first.setdefault(k, item)
    attested = dict(zip(first, mapper(_attest, first.values())))
    # 2. each reply's own links, in chunks that carry their group's attestation result
    groups: dict[str, list[tuple[int, _Reply]]] = {}
    for index, (k, item) in enumerate(zip(keys, items)):
        reply = _Reply(item.source, item.exchange, item.signature, item.recorded_status)
        groups.setdefault(k, []).append((index, reply))
    tasks = [(attested[k], members[n:n + CHUNK], keep) for k, members in groups.items()
             for n in range(0, len(members), CHUNK)]
    rows: list[dict | None] = [None] * len(items)
    kept: list[Any] = [None] * len(items)
    for done in mapper(_verify_chunk, tasks):
        for index, row, verdict in done:
            rows[index], kept[index] = row, verdict
        bar.update(len(done))
    bar.close()
    df = pd.DataFrame(rows, columns=["source", "chat_id", "verdict", "failing", "skipped", "warnings", "recorded",
                                     "ttft_s", "total_s"])
    if keep:
        df["verdict_obj"] = kept
    return df
