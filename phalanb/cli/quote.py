"""``phalanb quote``: decode an Intel TDX quote and verify it (offline chain; TCB status with collateral).

    phalanb quote quote.hex                                   decode + offline chain (incomplete: no collateral)
    phalanb quote quote.dat --collateral col.json --at 1752919234
    phalanb quote report.json --root sim                      a simulator's report: trust its simulated root
    phalanb quote quote.hex --json                            keys as in fixtures/tdx/ground_truth.json

FILE is a quote (binary, hex, 0x-hex or base64) or an attestation report JSON holding ``intel_quote``/``quote``
(its ``event_log`` and ``info`` are then checked too). ``--root``: ``intel`` (default, the pinned Intel SGX Root
CA), ``sim`` (phalanb's simulated root — only for the simulator, and said so), or a
PEM/DER file. Exit codes: 0 all checks passed, 1 a check failed, 3 incomplete, 2 unreadable input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .. import _json
from .._term import plain_help, verdict_table
from ..errors import InputError
from ..timeutil import at_argument
from ..verdict import Check, Status, Verdict
from ..tdx.collateral import TdxPolicy, load_collateral, verify_tdx
from ..tdx.quote import Quote, parse_quote
from ..tdx.verify import TrustRoot

__all__ = ["register", "cmd_quote", "quote_json"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quote", help="decode and verify an Intel TDX quote (offline chain, TCB status with "
                       "collateral)", description=plain_help(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", type=Path, metavar="FILE", help="quote (binary/hex/base64) or attestation report JSON")
    p.add_argument("--json", action="store_true", help="print fields and checks as JSON")
    p.add_argument("--collateral", type=Path, metavar="FILE", help="stored collateral (dcap-qvl JSON) for TCB "
                   "status, revocation and QE identity")
    p.add_argument("--at", type=at_argument, metavar="UNIX_TIME", help="verify at this time (default now; stored "
                   "collateral verifies only inside its ~30-day window)")
    p.add_argument("--root", default="intel", metavar="intel|sim|PEM", help="trust root (default: the pinned "
                   "Intel SGX Root CA)")
    p.add_argument("--allow", action="append", default=[], metavar="STATUS", help="also accept this TCB status, "
                   "as a warning (e.g. SWHardeningNeeded); repeatable")
    p.add_argument("--fields", action="store_true", help="print the byte map (every field with offset and size)")
    p.set_defaults(func=cmd_quote)


def _read_input(path: Path) -> tuple[Any, dict[str, Any] | None]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    stripped = data.lstrip()
    if stripped[:1] == b"{":
        try:
            doc = _json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{path} looks like JSON but is not: {exc}") from None
        for key in ("intel_quote", "quote"):
            if isinstance(doc.get(key), str):
                return doc[key], doc
        raise InputError(f"{path} is JSON without an 'intel_quote' or 'quote' field")
    return data, None


def _root(spec: str, quote: Quote) -> TrustRoot:
    if spec == "intel":
        return TrustRoot.intel()
    if spec == "sim":
        from ..tdx.sim import simulated_root  # the fixed root every phalanb simulator uses
        return simulated_root()
    path = Path(spec)
    try:
        return TrustRoot.from_bytes(path.read_bytes(), name=f"custom ({path.name})")
    except OSError as exc:
        raise InputError(f"--root is 'intel', 'sim' or a certificate file; cannot read {path}: "
                         f"{exc.strerror or exc}") from None


def quote_json(q: Quote, offline=None, dcap=None) -> dict[str, Any]:
    """The decoded quote with ``ground_truth.json`` key names (bytes lowercase hex, ints as ints)."""
    out = q.to_dict()
    if offline is not None and offline.pck is not None:
        out["fmspc"] = offline.pck.fmspc.hex()
        out["ca"] = offline.ca
        out["pck_extension"] = offline.pck.to_dict()
    if dcap is not None:
        out["verify_now"] = dcap.at
        out["verify_status"] = dcap.status if dcap.ok else f"ERROR: {dcap.error}"
        out["advisory_ids"] = dcap.advisory_ids
    return out


def cmd_quote(args: argparse.Namespace) -> int:
    if args.at is not None and args.collateral is None:
        raise InputError("--at needs --collateral (it sets the time at which the collateral is checked)")
    text, report = _read_input(args.file)
    q = parse_quote(text)
    root = _root(args.root, q)
    policy = TdxPolicy(trust_root=root).allowing(*args.allow) if args.allow else TdxPolicy(trust_root=root)
    collateral = load_collateral(args.collateral) if args.collateral is not None else None
    event_log = report.get("event_log") or None if report is not None else None
    result = verify_tdx(q, collateral=collateral, at=args.at, policy=policy, event_log=event_log,
                        info=report.get("info") if report is not None else None)
    checks: list[Check] = list(result.checks)
    offline, dcap = result.offline, result.dcap
    if root.name == "simulated":
        checks.append(Check("tdx.trust_root", Status.WARNING, "trusting phalanb's simulated root CA (--root sim): "
                            "this proves the simulator's wiring, not real hardware", required=False))
    verdict = Verdict(checks)
    if args.json:
        out = quote_json(q, offline, dcap)
        if args.fields:
            out["fields"] = [{"name": f.name, "offset": f.offset, "size": f.size, "value": f.value_text(),
                              "meaning": f.meaning} for f in q.fields()]
        out["verdict"] = verdict.to_dict()
        print(json.dumps(out, indent=2))
    else:
        _print_text(q, offline, dcap, verdict, fields=args.fields)
    return verdict.exit_code()


def _print_text(q: Quote, offline, dcap, verdict: Verdict, *, fields: bool) -> None:
    b = q.body
    lines = [f"TDX quote v{q.version} ({q.report_class}, {len(q.raw)} bytes, {q.input_encoding}; "
             f"signed bytes 0..{q.signed_length}; {len(q.trailing)} trailing bytes)"]
    for name in ("mr_td", "rt_mr0", "rt_mr1", "rt_mr2", "rt_mr3", "mr_config_id", "report_data"):
        lines.append(f"  {name:<13} {getattr(b, name).hex()}")
    lines.append(f"  {'td_attributes':<13} {b.td_attributes.hex()} ({b.attributes})")
    if offline.pck is not None:
        lines.append(f"  {'fmspc':<13} {offline.pck.fmspc.hex()} (PCK {offline.ca} CA)")
    if dcap is not None:
        lines.append(f"  {'dcap':<13} {dcap.status or 'ERROR: ' + str(dcap.error)} at {dcap.at}")
    if fields:
        lines.append("")
        lines.append(f"{'offset':>6} {'size':>5}  field")
        for f in q.fields():
            value = f.value_text()
            lines.append(f"{f.offset:>6} {f.size:>5}  {f.name:<32} {value[:64]}{'…' if len(value) > 64 else ''}")
    lines.append("")
    lines.append(verdict_table(verdict))
    print("\n".join(lines))
    sys.stdout.flush()
