"""``phalanb receipt`` and ``phalanb session``: verify saved ACI documents offline.

Exit codes: 0 verified, 1 failed, 3 incomplete, 2 usage or input errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..policy import Policy
from ..timeutil import at_argument
from ..verdict import Verdict
from .options import service_args, service_policy

__all__ = ["register", "print_verdict"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("receipt", help="verify a saved ACI receipt (with its report, bytes and sessions)",
                       description="Verify an ACI receipt offline: its signature by a key of the keyset a verified "
                       "report established, the keyset digest it cites, the hashes of your exact request and "
                       "response bytes, the upstream verification and the sessions it cites. A keyset given "
                       "directly (--keyset) is NOT established: the verdict is then at best incomplete.")
    p.add_argument("receipt", type=Path, help="the receipt JSON (or the legacy /v1/signature answer)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--report", type=Path, help="the /v1/aci/attestation answer fetched with --nonce")
    src.add_argument("--keyset", type=Path, help="a workload_keyset JSON: the receipt's signature and hashes are "
                     "judged under it (a forged or edited receipt fails), but it establishes nothing (at best "
                     "incomplete)")
    p.add_argument("--nonce", help="the nonce you sent when fetching the report: 64 hex digits, or for a v3 report "
                   "the exact string (1-128 characters of [0-9A-Za-z_-])")
    p.add_argument("--request", type=Path, help="the exact request body bytes you sent")
    p.add_argument("--response", type=Path, help="the exact response bytes you received (the whole stream)")
    p.add_argument("--session", type=Path, action="append", default=[], metavar="FILE",
                   help="a session document (GET /v1/aci/sessions/{id}) the receipt cites (repeatable)")
    p.add_argument("--collateral", type=Path, help="Intel collateral JSON for the gateway quote's TCB status")
    p.add_argument("--kms-root", action="append", default=[], metavar="HEX",
                   help="a dstack-kms root key you accept for key custody (repeatable; none: custody is skipped)")
    _common(p)
    p.set_defaults(func=cmd_receipt)

    p = sub.add_parser("session", help="verify a saved ACI attested session",
                       description="Verify an attested session document offline: its id, evidence digest, claims "
                       "and, when the evidence is a report phalanb knows, that report (upstream.* checks).")
    p.add_argument("file", type=Path, help="the exact bytes of GET /v1/aci/sessions/{id} (a session document)")
    p.add_argument("--id", help="the session id a receipt cited (without it the id is only computed)")
    p.add_argument("--served-at", type=int, default=None, metavar="UNIX_TIME",
                   help="the citing receipt's served_at, to check the session's window")
    p.add_argument("--collateral", type=Path, help="Intel collateral for the upstream report's quote")
    _common(p)
    p.set_defaults(func=cmd_session)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--at", type=at_argument, default=None, metavar="UNIX_TIME",
                   help="the clock for expiry, certificates and collateral (default now)")
    p.add_argument("--trust", choices=("production", "simulated"), default="production",
                   help="roots to trust: production (Intel's and NVIDIA's pinned roots, default) or simulated "
                   "(phalanb's simulator only)")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    service_args(p)


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the {what} {path}: {exc.strerror}") from None


def parse_nonce(text: str | None, *, shape: str | None = None) -> bytes | str | None:
    """64 hex digits → the 32 bytes sent (every shape); any other legal v3 nonce (1-128 characters of
    [0-9A-Za-z_-], ACI-v3.md §4) → the exact string, which only a v3 report's statement can carry (``shape``:
    the report's, when known: another shape's nonce is 32 bytes)."""
    if not text:
        return None
    try:
        nonce = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        nonce = None
    if nonce is not None and len(nonce) == 32:
        return nonce
    from ..aci.v3 import NONCE_RULE, nonce_ok

    if shape not in (None, "v3"):
        raise InputError(f"--nonce must be 32 bytes (64 hex digits) for a {shape}-shape report, got "
                         + (f"{len(nonce)} bytes" if nonce is not None else f"{text[:40]!r}"))
    if nonce_ok(text):
        return text
    raise InputError(f"--nonce must be 64 hex digits (the 32 bytes sent) or, for a v3 report, the exact nonce "
                     f"string sent ({NONCE_RULE}); got {text[:40]!r}")


def _collateral(path: Path | None) -> Any:
    raw = _read(path, "collateral")
    if raw is None:
        return None
    from .. import _json

    try:
        return _json.loads(raw)
    except ValueError as exc:
        raise InputError(f"{path} is not JSON ({exc})") from None


def print_verdict(verdict: Verdict, as_json: bool, extra: dict[str, Any] | None = None) -> int:
    if as_json:
        print(json.dumps({**(extra or {}), "verdict": verdict.to_dict()}, indent=2))
    else:
        from .._term import verdict_table

        print(verdict_table(verdict))
    return verdict.exit_code()


def cmd_receipt(args: argparse.Namespace) -> int:
    from ..aci.receipt import is_signature_wrapper, parse_receipt, parse_signature_wrapper
    from ..aci.session import parse_session
    from ..gateway import verify_aci
    from ..aci import jcs

    policy = Policy(trust=args.trust, aci_kms_roots=tuple(args.kms_root), **service_policy(args))
    doc = jcs.loads(_read(args.receipt, "receipt"), what="receipt")
    receipt = parse_signature_wrapper(doc).receipt if is_signature_wrapper(doc) else parse_receipt(doc)
    sessions = {}
    from ..aci.v3 import served_sha256

    for path in args.session:
        raw = _read(path, "session")
        # A v3 receipt cites its sessions by sha256 of their exact bytes; the older shapes by their own id rules.
        sessions[served_sha256(raw) if receipt.shape == "v3" else parse_session(raw).id] = raw
    report = _read(args.report, "report")
    keyset = None
    if args.keyset is not None:
        # Judged under the given keyset (a forged or edited receipt fails), never established by it. A v3 receipt's
        # keyset is its exact bytes (their sha256 is the digest it cites).
        keyset = _read(args.keyset, "keyset")
        if receipt.shape != "v3":
            keyset = jcs.loads(keyset, what="keyset")
            if not isinstance(keyset, dict):
                raise InputError(f"{args.keyset} is not a workload_keyset JSON object")
    elif report is None:
        print("phalanb: note: no --report given: no keyset is established, so the receipt's signature cannot be "
              "trusted (verdict at best incomplete)", file=sys.stderr)
    verdict = verify_aci(None, receipt=receipt, report=report, nonce=parse_nonce(args.nonce), sessions=sessions,
                         policy=policy, collateral=_collateral(args.collateral), at=args.at,
                         request_bytes=_read(args.request, "request"), response_bytes=_read(args.response, "response"),
                         keyset=keyset)
    return print_verdict(verdict, args.json, {"receipt_id": receipt.receipt_id, "shape": receipt.shape})


def cmd_session(args: argparse.Namespace) -> int:
    from ..aci.session import parse_session
    from ..gateway import verify_session

    # A v3 session's id rule comes from the id that cites it (sha256: over the bytes served), never from the file.
    v3_id = isinstance(args.id, str) and args.id.startswith("sha256:")
    session = parse_session(_read(args.file, "session"), cited=args.id if v3_id else None)
    policy = Policy(trust=args.trust, **service_policy(args))
    checks = verify_session(session, expected_id=args.id, served_at=args.served_at, policy=policy, at=args.at,
                            collateral=_collateral(args.collateral))
    return print_verdict(Verdict(checks), args.json, {"session_id": session.id, "shape": session.shape})
