"""Issue 19 item 2: one decision for every path. ``audit()`` on JSON lines, framed batches and bundles reaches the
verdict :func:`~phalanb.vllm.verify.verify_exchange` (= ``phalanb verify``) reaches, check by check — the fast path is
only a faster road to it. The legacy-gateway refusal (a report carrying ``workload_keyset_digest``, a signature
record carrying ``receipt``) is asked by one shared preflight (``takes_preflight``) no batch road bypasses.

The differential test runs every fixture, the mutations the batch and fuzz kits generate, and >= 10,000 generated
records through both roads (JSON lines and framed, 1 and 2 workers, bundles) and prints how many it compared."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import random
import sys
from pathlib import Path

import coincurve
import pytest
from eth_hash.auto import keccak

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib: make the kits importable
import batchkit  # noqa: E402
import fuzzkit as fk  # noqa: E402
import phalanb.vllm.verify as verify_module  # noqa: E402
from phalanb.audit.bundle import load_bundle, verify_bundle  # noqa: E402
from phalanb.audit.batch import AuditItem, audit, reframe_batch, write_batch  # noqa: E402
from phalanb.errors import PhalanbError  # noqa: E402
from phalanb.wire.exchange import Exchange  # noqa: E402
from phalanb.policy import Policy  # noqa: E402
from phalanb.vllm.signatures import SignatureRecord  # noqa: E402
from phalanb.sim.keys import _derive  # noqa: E402
from phalanb.gateway import verify_exchange  # noqa: E402  (the single path a user runs)

SEED = 7
GENERATED = 10_000
#: A fixed clock for the real fixtures (their certificates are valid then); collateral is not at hand, so TCB
#: status is skipped alike on both roads.
FIXTURE_AT = 1_767_225_600  # 2026-01-01


# -- the single road ---------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _attestation_once():
    """verify_exchange with each attestation verified once per (report, signer, inputs): a cache in front of
    attest_report, which is deterministic in its inputs, so 10,000 single verifications do not re-verify one quote
    10,000 times. Everything else verify_exchange does runs as it is."""
    real = verify_module.attest_report
    memo: dict = {}

    def once(report, **kw):
        key = (id(report), *(id(v) if isinstance(v, (dict, list, Policy)) or hasattr(v, "__dict__") else v
                              for v in (kw[k] for k in sorted(kw))))
        if key not in memo:
            memo[key] = real(report, **kw)
        return memo[key]

    verify_module.attest_report = once
    try:
        yield
    finally:
        verify_module.attest_report = real


def _statuses(v) -> dict[str, str]:
    return {c.id: c.status.value for c in v.checks}


def _single_of_row(row: dict, ctx: dict):
    ex = Exchange.from_dict(row["exchange"]) if row.get("exchange") is not None else None
    sig = SignatureRecord.from_dict(row["signature"])
    return verify_exchange(ex, sig, ctx["report"], nonce=ctx["nonce"], policy=ctx["policy"],
                           collateral=ctx["collateral"], nras_response=ctx["nras"], jwks=ctx["jwks"], at=ctx["at"])


def _same(df, singles: list, label: str, *, whole: bool = False) -> int:
    """Every row's verdict and failing / skipped / warning check ids equal the single verdict's (with ``whole``, the
    status of every check id too). Returns how many were compared."""
    assert len(df) == len(singles), label
    for (_, row), v in zip(df.iterrows(), singles):
        where = f"{label}: {row['source']}"
        assert row["verdict"] == v.status, where
        assert row["failing"] == ",".join(c.id for c in v.failed), where
        assert row["skipped"] == ",".join(c.id for c in v.skipped), where
        assert row["warnings"] == ",".join(c.id for c in v.warnings), where
        if whole:
            assert _statuses(row["verdict_obj"]) == _statuses(v), where
    return len(singles)


# -- recorded replies and generated records -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    first, replies = batchkit.record_replies(SEED, "one decision")
    tmp = tmp_path_factory.mktemp("decision")
    a, online = first.attestation, first.online
    base = write_batch(tmp / "base.jsonl", report=a.report, nonce=a.nonce, policy=first.policy,
                       verified_at=first.verified_at, collateral=online.collateral,
                       nras_response=online.nras_response, jwks=online.jwks, replies=replies)
    header, *lines = base.read_text().splitlines()
    ctx = {"report": a.report, "nonce": a.nonce, "policy": first.policy, "collateral": online.collateral,
           "nras": online.nras_response, "jwks": online.jwks, "at": first.verified_at}
    return {"tmp": tmp, "header": json.loads(header), "rows": [json.loads(x) for x in lines], "ctx": ctx}


_KEY = coincurve.PrivateKey(_derive(SEED, b"signing/secp256k1"))  # the simulated model server's key (its seed)
_STRANGER = coincurve.PrivateKey(hashlib.sha256(b"a key no report attests").digest())


def _sign(key: coincurve.PrivateKey, text: str) -> str:
    digest = keccak(b"\x19Ethereum Signed Message:\n" + str(len(text)).encode() + text.encode())
    sig = key.sign_recoverable(digest, hasher=None)
    return "0x" + (sig[:64] + bytes([sig[64] + 27])).hex()


def _address(key: coincurve.PrivateKey) -> str:
    from eth_utils import to_checksum_address

    return to_checksum_address(keccak(key.public_key.format(compressed=False)[1:])[12:])


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _generate(rows: list[dict], n: int, rng: random.Random) -> list[dict]:
    """``n`` records made from the recorded ones: each with its own request bytes, signed anew by the attested key,
    and about half of them then broken one way or another (a byte of either body, the signature, the record's
    claims, the algorithm, the signed text, a receipt wrapper, a stranger's key...)."""
    out = []
    for i in range(n):
        row = json.loads(json.dumps(rows[i % len(rows)]))
        ex, sig = row["exchange"], row["signature"]
        request = base64.b64decode(ex["request_b64"]).replace(b'"messages"', b'"user": "u%d", "messages"' % i, 1)
        response = base64.b64decode(ex["response_b64"])
        ex["request_b64"] = _b64(request)
        text = f"{hashlib.sha256(request).hexdigest()}:{hashlib.sha256(response).hexdigest()}"
        sig.update(text=text, signature=_sign(_KEY, text))
        kind = rng.randrange(24)
        if kind == 0:
            ex["request_b64"] = _b64(request[:-2] + bytes([request[-2] ^ 1]) + request[-1:])
        elif kind == 1:
            ex["response_b64"] = batchkit.flip(ex["response_b64"], rng.randrange(len(response)))
        elif kind == 2:
            s = sig["signature"]
            sig["signature"] = s[:20] + ("0" if s[20] != "0" else "1") + s[21:]
        elif kind == 3:
            sig["signature"] = sig["signature"][:-2] + "1d"                       # v = 29
        elif kind == 4:
            sig["signing_address"] = sig["signing_address"].lower()              # the same key, spelled otherwise
        elif kind == 5:
            sig["signing_address"] = "0x" + "12" * 20                              # claims another key
        elif kind == 6:
            sig["text"] = "m:" + text                                              # not a signed text
        elif kind == 7:
            row["exchange"] = None                                                 # a signature alone
        elif kind == 8:
            sig["signing_algo"] = "ed25519"
        elif kind == 9:                                                            # the legacy gateway's wrapper
            sig["receipt"] = {"api_version": "aci/1", "receipt_id": f"r{i}", "event_log": []}
        elif kind == 10:                                                           # a stranger signs, claims itself
            sig.update(signature=_sign(_STRANGER, text), signing_address=_address(_STRANGER))
        elif kind == 11:                                                           # a stranger signs, claims ours
            sig["signature"] = _sign(_STRANGER, text)
        elif kind == 12:
            ex["status"] = 500
        elif kind == 13:
            ex["stream"] = not ex.get("stream")
        elif kind == 14:
            sig["signature"] = sig["signature"][2:].upper()                        # no 0x, upper case
        elif kind == 15:
            sig["text"] = text.upper()                                             # hashes in upper case
        out.append(row)
    return out


def _fuzz_mutations(rows: list[dict], n: int, rng: random.Random) -> list[dict]:
    """The fuzz kit's structure-aware mutations of the recorded lines, those the exact reader reads (a line it
    refuses stops a batch, and a single verification cannot start: both roads refuse it alike)."""
    from phalanb.audit import fastpath as _batchscan

    out = []
    while len(out) < n:
        text = fk.dumps_with_raw(fk.mutate_json(rng, rng.choice(rows)))
        try:
            line = text.encode("utf-8")
            _batchscan._exact_line(line, 0, 0)
        except (UnicodeEncodeError, _batchscan.LineError):
            continue
        out.append(json.loads(line))
    return out


def _write_lines(path: Path, header: dict, rows: list[dict]) -> Path:
    with path.open("w") as fh:
        fh.write(json.dumps(header) + "\n")
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return path


def _bundle(header: dict, row: dict) -> dict:
    return {"kind": "phalanb.audit-bundle", "schema_version": 1, "exchange": row.get("exchange"),
            "signature": row["signature"], **{k: v for k, v in header.items() if k not in ("kind", "framing")}}


# -- the attacks (old code: the batch said verified where verify_exchange did not) ---------------------------------

def _gateway_report(report: dict) -> dict:
    return {**report, "workload_keyset_digest": "sha256:" + "ab" * 32}  # an ACI gateway's legacy answer's marker


def _roads(tmp: Path, name: str, header: dict, rows: list[dict], policy: Policy) -> dict:
    """The same records as JSON lines, framed, and bundles: audit rows for each, 1 and 2 workers."""
    lines = _write_lines(tmp / f"{name}.jsonl", header, rows)
    framed = reframe_batch(lines, tmp / f"{name}.pbatch")
    folder = tmp / f"{name}-bundles"
    folder.mkdir(exist_ok=True)
    bundles = []
    for n, r in enumerate(rows):
        p = folder / f"{n:05d}.json"
        p.write_text(json.dumps(_bundle(header, r)))
        bundles.append(p)
    out = {}
    for road, given in (("lines", [lines]), ("framed", [framed]), ("bundles", bundles)):
        for workers in (1, 2):
            out[f"{road}, {workers} worker(s)"] = audit(given, workers=workers, progress=False, policy=policy)
    out["bundles"] = bundles
    return out


@pytest.mark.parametrize("attack", ["report-carries-keyset-digest", "signature-carries-receipt"])
def test_every_batch_road_runs_the_legacy_gateway_refusal(recorded, attack):
    ctx, header, rows = dict(recorded["ctx"]), json.loads(json.dumps(recorded["header"])), recorded["rows"]
    if attack == "report-carries-keyset-digest":
        header["attestation"]["report"] = ctx["report"] = _gateway_report(ctx["report"])
        given = rows
    else:
        given = json.loads(json.dumps(rows))
        for r in given:
            r["signature"]["receipt"] = {"api_version": "aci/1", "receipt_id": "r-1", "event_log": []}
    singles = [_single_of_row(r, ctx) for r in given]
    assert {v.status for v in singles} <= {"incomplete", "failed"}  # never verified
    roads = _roads(recorded["tmp"], attack, header, given, ctx["policy"])
    for label, df in roads.items():
        if label != "bundles":
            _same(df, singles, label)
    for path, v in zip(roads["bundles"], singles):  # phalanb verify on the bundle: the same verdict
        b = load_bundle(path)
        assert _statuses(verify_bundle(b, policy=ctx["policy"], at=b.verified_at)) == _statuses(v)


# -- the differential test ----------------------------------------------------------------------------------------

def test_batch_and_single_verification_decide_alike(recorded, capsys):
    """≥ 10,000 generated records, the batch kit's mutations and the fuzz kit's: the batch's rows (JSON lines and
    framed, 1 and 2 workers; whole verdicts on one road) equal verify_exchange's, check by check; a sample as
    bundles equals phalanb verify's."""
    rng = random.Random(SEED)
    ctx, header, rows, tmp = recorded["ctx"], recorded["header"], recorded["rows"], recorded["tmp"]
    records = (_generate(rows, GENERATED, rng) + batchkit.mutations(rows) + _fuzz_mutations(rows, 300, rng))
    gateway = dict(header, attestation={**header["attestation"], "report": _gateway_report(ctx["report"])})
    gateway_ctx = dict(ctx, report=gateway["attestation"]["report"])
    with _attestation_once():
        singles = [_single_of_row(r, ctx) for r in records]
        gateway_singles = [_single_of_row(r, gateway_ctx) for r in records[:400]]
    assert len({v.status for v in singles}) == 3  # verified, incomplete and failed all occur
    lines = _write_lines(tmp / "generated.jsonl", header, records)
    framed = reframe_batch(lines, tmp / "generated.pbatch")
    compared = 0
    for path in (lines, framed):
        for workers in (1, 2):
            df = audit([path], workers=workers, progress=False, policy=ctx["policy"])
            compared += _same(df, singles, f"{path.suffix}, {workers} worker(s)")
    df = audit([lines], workers=2, progress=False, policy=ctx["policy"], verdicts=True)
    compared += _same(df, singles, "whole verdicts", whole=True)
    # A legacy gateway's report in the header: every road is verify_exchange's.
    g = _write_lines(tmp / "gateway.jsonl", gateway, records[:400])
    for path in (g, reframe_batch(g, tmp / "gateway.pbatch")):
        compared += _same(audit([path], workers=2, progress=False, policy=ctx["policy"]), gateway_singles,
                          f"gateway {path.suffix}")
    # Bundles: one reply each, read and verified as phalanb verify does.
    folder = tmp / "generated-bundles"
    folder.mkdir()
    sample = list(range(0, len(records), len(records) // 150))
    paths = []
    for n in sample:
        p = folder / f"{n:05d}.json"
        p.write_text(json.dumps(_bundle(header, records[n])))
        paths.append(p)
    for workers in (1, 2):
        compared += _same(audit(paths, workers=workers, progress=False, policy=ctx["policy"]),
                          [singles[n] for n in sample], f"bundles, {workers} worker(s)")
    with _attestation_once():
        for p, n in zip(paths, sample):
            b = load_bundle(p)
            assert _statuses(verify_bundle(b, policy=ctx["policy"], at=b.verified_at)) == _statuses(singles[n]), p
    compared += len(sample)
    with capsys.disabled():
        print(f"\none decision: {len(records)} records ({GENERATED} generated); {compared} batch rows and bundle "
              f"verdicts compared with single verification, every check id")
    assert compared >= 5 * GENERATED


# -- every fixture ------------------------------------------------------------------------------------------------

def _fixture_items(fixtures: Path) -> list[tuple[str, Exchange | None, SignatureRecord, dict | None, bytes | None]]:
    sigs = []
    for p in sorted(fixtures.rglob("signature_vector.json")):
        raw = json.loads(p.read_text())
        try:
            sig = SignatureRecord.from_dict(raw)
        except PhalanbError:
            continue
        ex = None
        req, resp = p.parent / "request_body.json", p.parent / "response_body.sse"
        if req.exists() and resp.exists():
            ex = Exchange(url="", request_bytes=req.read_bytes(), response_bytes=resp.read_bytes(), status=200,
                          stream=True)
        sigs.append((p.parent.name, ex, sig))
    reports = []
    for p in sorted(fixtures.rglob("attestation_report.json")):
        try:
            report = json.loads(p.read_text())
        except ValueError:
            continue
        nonce_file = p.parent / "client_nonce.txt"
        nonce = bytes.fromhex(nonce_file.read_text().strip()) if nonce_file.exists() else None
        reports.append((p.parent.name, report if isinstance(report, dict) else None, nonce))
    items = [(f"{name} alone", ex, sig, None, None) for name, ex, sig in sigs]
    for n, (rname, report, nonce) in enumerate(reports):  # each report once, with a signature of the fixtures
        name, ex, sig = sigs[n % len(sigs)]
        items.append((f"{name} with {rname}", ex, sig, report, nonce))
    return items


def test_batch_and_single_verification_decide_alike_on_every_fixture(fixtures, capsys):
    policy = Policy()
    items, singles = [], []
    for source, ex, sig, report, nonce in _fixture_items(fixtures):
        try:
            v = verify_exchange(ex, sig, report, nonce=nonce, policy=policy, at=FIXTURE_AT)
        except PhalanbError as exc:  # a report of no shape phalanb verifies: the single road refuses it
            v = exc
        items.append(AuditItem(source=source, exchange=ex, signature=sig, report=report, nonce=nonce,
                               policy=policy, at=FIXTURE_AT))
        singles.append(v)
    assert len(items) >= 15
    for workers in (1, 2):
        df = audit(items, workers=workers, progress=False, verdicts=True)
        for (_, row), v in zip(df.iterrows(), singles):
            if isinstance(v, Exception):
                assert row["verdict"] == "failed", (row["source"], v)
                continue
            assert row["verdict"] == v.status, row["source"]
            assert _statuses(row["verdict_obj"]) == _statuses(v), row["source"]
    with capsys.disabled():
        print(f"\nevery fixture: {len(items)} fixture replies compared with single verification, 1 and 2 workers")
