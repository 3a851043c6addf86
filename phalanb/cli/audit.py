"""``phalanb verify`` (re-verify a bundle offline), ``phalanb report`` (check a saved attestation report) and
``phalanb audit`` (verify many bundles at once).

Exit codes: 0 verified, 1 failed, 3 incomplete, 2 usage or input errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from . import COMMANDS
from .. import _json
from .._term import verdict_table
from ..errors import InputError, ParseError
from ..policy import Policy
from ..timeutil import at_argument
from .options import service_args, service_policy

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="re-verify an audit bundle offline",
                       description="Re-verify an audit bundle with no network. By default the clock is the time of "
                       "the original verification, so the same evidence gives the same verdict; the output says "
                       "when the verdict differs from the recorded one and why.")
    p.add_argument("bundle", type=Path, help="an audit bundle JSON (phalanb demo --save, VerifiedChat.save)")
    p.add_argument("--at", type=at_argument, default=None, metavar="UNIX_TIME",
                   help="verify as of this time instead (e.g. now, to see what has expired)")
    p.add_argument("--trust", choices=("production", "simulated"), default="production",
                   help="roots to trust (default production; the bundle's own trust settings are never used)")
    _policy_args(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--verbose", action="store_true",
                   help="every check with its reason, even when a one-line cause explains the verdict")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("report", help="check a saved attestation report on its own",
                       description="Check an attestation report JSON: its shape, the binding of the signing key, "
                       "freshness against the nonce you sent, the TDX quote, the event log and the GPU evidence.")
    p.add_argument("file", type=Path, help="an attestation report JSON, as GET /attestation/report returns it")
    p.add_argument("--nonce", help="the 64-hex nonce you sent when fetching the report (freshness)")
    p.add_argument("--signing-address", help="pick the node holding this key when the report lists several")
    p.add_argument("--node", type=int, default=None, help="or pick the node by index")
    p.add_argument("--collateral", type=Path, help="Intel collateral JSON for the TCB status")
    p.add_argument("--gateway-collateral", type=Path, help="Intel collateral JSON for a NEAR AI Cloud gateway's "
                   "quote (default: --collateral, which fits only when both run on the same platform)")
    p.add_argument("--e2e-instances", type=Path, help="the Chutes /e2e/instances/<chute> answer, whose e2e public "
                   "keys the evidence API's quotes commit to")
    p.add_argument("--nras-response", type=Path, help="a saved NRAS answer")
    p.add_argument("--jwks", type=Path, help="the NRAS JWKS to check the answer's signatures")
    p.add_argument("--at", type=at_argument, default=None, metavar="UNIX_TIME",
                   help="the clock for certificates, collateral and tokens (default now)")
    p.add_argument("--trust", choices=("production", "simulated"), default="production",
                   help="roots to trust: production (Intel's and NVIDIA's pinned roots, default) or simulated "
                   "(phalanb's simulator only)")
    _policy_args(p)
    p.add_argument("--kms-root", action="append", default=[], metavar="HEX",
                   help="ACI reports: a dstack-kms root key you accept for key custody (repeatable)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("audit", help=COMMANDS["audit"][1],
                       description="Verify audit bundles (ACI or model-server replies), folders of them, or batches "
                       "of replies sharing one attestation (.jsonl, or framed .pbatch). One row per reply. Exit 0 only "
                       "if every reply is verified.")
    p.add_argument("paths", nargs="+", type=Path,
                   help="audit bundles, folders of them, or batches of replies (.jsonl, .pbatch)")
    p.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    p.add_argument("--trust", choices=("production", "simulated"), default="production",
                   help="roots to trust (default production; the files' own trust settings are never used)")
    p.add_argument("--at", type=at_argument, default=None, metavar="UNIX_TIME",
                   help="verify as of this time (default: the time each file records it was verified at)")
    p.add_argument("--csv", type=Path, help="also write the table as CSV")
    p.add_argument("--json", action="store_true", help="print the table as JSON (one record per reply)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _policy_args(p)
    p.set_defaults(func=cmd_audit)


def _policy_args(p: argparse.ArgumentParser) -> None:
    """The auditor's own choices beyond the default policy (README, "What is checked")."""
    p.add_argument("--accept-measurement", action="append", default=[], metavar="REGISTER=HEX",
                   help="accept this MRSEAM/MRTD value besides the published lists (repeatable), e.g. "
                   "mr_td=<96 hex digits>")
    p.add_argument("--relax-measurement", action="append", default=[], metavar="REGISTER",
                   choices=("mr_seam", "mr_td"), help="do not judge this register (the verdict shows a warning)")
    p.add_argument("--no-require-nras", action="store_true",
                   help="accept GPU evidence verified offline, without NVIDIA's appraisal (NRAS)")
    p.add_argument("--rims", type=Path, metavar="DIR", help="a folder of NVIDIA's signed RIMs (OCSP answers in "
                   "DIR/ocsp): appraise the GPU measurements offline; either this or NRAS passing suffices")
    service_args(p)


def _policy(args: argparse.Namespace) -> Policy:
    accept: dict[str, list[str]] = {}
    for item in args.accept_measurement:
        reg, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"--accept-measurement takes REGISTER=HEX, got {item!r:.60}")
        accept.setdefault(reg.strip(), []).append(value.strip())
    return Policy(trust=args.trust, accept_measurements=accept, relax_measurements=tuple(args.relax_measurement),
                  require_nras=False if args.no_require_nras else None,
                  rims=_rim_folder(args.rims), **service_policy(args))


def _rim_folder(path: Path | None) -> str | None:
    if path is not None and not path.is_dir():
        raise InputError(f"--rims {path}: not a folder (give the folder that holds the RIM .xml / .swidtag files)")
    return str(path) if path is not None else None


def _read_json(path: Path | None, what: str) -> Any:
    if path is None:
        return None
    try:
        return _json.loads(path.read_text())
    except OSError as exc:
        raise InputError(f"cannot read the {what} {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ParseError(f"{path} is not JSON ({exc})", field=what) from None


#: How a quote chained to phalanb's simulator root fails under production trust (phalanb.tdx.verify).
_SIMULATED_CHAIN = "the chain ends at phalanb's simulated root CA"


def simulator_evidence(verdict: Any) -> bool:
    """Whether a verdict failed because its quotes chain to phalanb's simulator root under production trust.

    Only a hint for the reader (which flag checks such evidence as what it is); it never changes a check.
    """
    return any(c.id.endswith("tdx.pck_chain") and c.reason.startswith(_SIMULATED_CHAIN) for c in verdict.failed)


def simulator_hint(path: Any, command: str | None = None) -> str:
    return (f"{path} holds evidence from phalanb's simulator: its quotes chain to the simulator's root, not "
            f"Intel's, so under production trust it fails, as it must. To check it as simulator evidence: "
            f"phalanb {command or f'verify {path}'} --trust simulated")


def cmd_verify(args: argparse.Namespace) -> int:
    from ..audit.bundle import load_bundle, reverify

    bundle = load_bundle(args.bundle)
    result = reverify(bundle, at=args.at, policy=_policy(args))
    if args.json:
        print(json.dumps({"bundle": str(args.bundle), "at": result.at, "recorded": result.recorded_status,
                          "same_as_recorded": result.same, "differences": result.differences,
                          "verdict": result.verdict.to_dict()}, indent=2))
    elif args.trust == "production" and simulator_evidence(result.verdict) and not args.verbose:
        # The cause and the one flag first; the 50 checks that follow from it only under --verbose / --json.
        v = result.verdict
        print(f"phalanb: {simulator_hint(args.bundle)}")
        print(v.tally())
        print(f"verdict: {v.status} ({len(v.skipped)} not checked; --verbose lists every check and its reason, "
              "--json everything)")
        print(f"  failed: {', '.join(c.id for c in v.failed)}")
    else:
        print(verdict_table(result.verdict))
        print(result.explain())
    return result.verdict.exit_code()


def _not_gpu_evidence(doc: Any, path: Path) -> None:
    """NVIDIA evidence on its own (an ``nvidia_payload``, or a list of per-GPU items) is not a report: say which
    command reads it, rather than failing it as a report."""
    items = doc.get("evidence_list") if isinstance(doc, dict) else doc if isinstance(doc, list) else None
    if isinstance(items, list) and items and all(isinstance(i, dict) and "evidence" in i for i in items):
        raise InputError(f"{path} holds NVIDIA GPU evidence ({len(items)} GPU(s)), not an attestation report: "
                         f"check it with `phalanb gpu {path}`")
    if not isinstance(doc, dict):
        raise InputError(f"{path} holds a JSON {type(doc).__name__}, not an attestation report (a JSON object)")


def cmd_report(args: argparse.Namespace) -> int:
    from ..gateway import identify, verify_legacy_gateway_report
    from ..vllm.verify import verify_report

    report = _read_json(args.file, "report")
    _not_gpu_evidence(report, args.file)
    if args.e2e_instances:
        from ..vllm.report import merge_chutes_instances

        report = merge_chutes_instances(report, _read_json(args.e2e_instances, "e2e_instances"))
    shape = identify(report)  # explicit fields only; no known shape: exit 2, naming the fields found
    if shape.protocol == "aci" and shape.name != "aci-legacy-gateway":
        return _cmd_aci_report(args)
    legacy_gateway = shape.name in ("aci-legacy-gateway", "reseller-aci-gateway")
    if legacy_gateway:
        print("phalanb: note: this is the ACI gateway's legacy /v1/attestation/report answer"
              + (" served by a reseller" if shape.name == "reseller-aci-gateway" else "") + ": it attests the "
              "GATEWAY (not the model) and its quote does not bind the keyset printed in it; fetch "
              "/v1/aci/attestation for the ACI keyset", file=sys.stderr)
        if args.signing_address or args.node is not None or args.nras_response or args.jwks:
            raise InputError("--signing-address, --node, --nras-response and --jwks do not apply to an ACI "
                             "gateway's legacy report")
    nonce = None
    if args.nonce:
        try:
            nonce = bytes.fromhex(args.nonce.removeprefix("0x"))
        except ValueError:
            raise InputError("--nonce must be hex") from None
        if len(nonce) != 32:
            raise InputError(f"--nonce must be 32 bytes (64 hex digits), got {len(nonce)}")
    if args.collateral and args.at is None:
        print("phalanb: note: collateral is checked at the current time; stored collateral is valid for ~30 days "
              "(pass --at to verify as of another time)", file=sys.stderr)
    if bool(args.nras_response) != bool(args.jwks):
        raise InputError("--nras-response and --jwks go together")
    if shape.name == "near-gateway-evidence":
        from ..gateway import verify_any_report

        verdict = verify_any_report(report, nonce=nonce, policy=_policy(args), at=args.at,
                                    collateral=_read_json(args.collateral, "collateral"))
    elif legacy_gateway:
        verdict = verify_legacy_gateway_report(report, nonce=nonce, policy=_policy(args),
                                               collateral=_read_json(args.collateral, "collateral"), at=args.at)
    else:
        verdict = verify_report(report, nonce=nonce, signing_address=args.signing_address, node=args.node,
                                policy=_policy(args), collateral=_read_json(args.collateral, "collateral"),
                                nras_response=_read_json(args.nras_response, "nras_response"),
                                jwks=_read_json(args.jwks, "jwks"), at=args.at,
                                gateway_collateral=_read_json(args.gateway_collateral, "gateway_collateral"))
    if nonce is None:
        print("phalanb: note: no --nonce given, so freshness cannot be shown", file=sys.stderr)
    if args.json:
        print(json.dumps(verdict.to_dict(), indent=2))
    else:
        print(verdict_table(verdict))
    return verdict.exit_code()


def _cmd_aci_report(args: argparse.Namespace) -> int:
    """An ``aci/1`` report: routed to :func:`phalanb.aci.verify_aci_report` (strict ACI parsing of the raw bytes)."""
    from .aci import parse_nonce, print_verdict
    from ..aci.report import parse_aci_report
    from ..aci.verify import verify_aci_report

    if args.signing_address or args.node is not None or args.nras_response or args.jwks:
        raise InputError("--signing-address, --node, --nras-response and --jwks do not apply to an ACI report")
    try:
        raw = args.file.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the report {args.file}: {exc.strerror}") from None
    report = parse_aci_report(raw)  # unreadable input is a usage/input error (exit 2), not a failed verdict
    nonce = parse_nonce(args.nonce, shape=report.shape)
    policy = dataclasses.replace(_policy(args), aci_kms_roots=tuple(args.kms_root))
    att = verify_aci_report(report, nonce=nonce, policy=policy,
                            collateral=_read_json(args.collateral, "collateral"), at=args.at)
    if nonce is None:
        print("phalanb: note: no --nonce given, so freshness cannot be shown", file=sys.stderr)
    print(f"phalanb: {'keyset established: ' + att.keyset.digest if att.keyset else att.reason}", file=sys.stderr)
    return print_verdict(att.verdict, args.json)


def _simulator_bundle(df: Any) -> str | None:
    """The first failed bundle file whose quotes chain to phalanb's simulator root (re-verified once, for the hint
    only), or None. Rows of batches (``path:LINE``, ``path#RECORD``) are not re-read."""
    from ..audit.bundle import load_bundle, reverify
    from ..errors import PhalanbError

    for source, failing in df.loc[df["verdict"] == "failed", ["source", "failing"]].itertuples(index=False):
        if "pck_chain" in str(failing) and Path(str(source)).is_file():
            try:
                if simulator_evidence(reverify(load_bundle(Path(source))).verdict):
                    return str(source)
            except PhalanbError:
                continue
            return None
    return None


def cmd_audit(args: argparse.Namespace) -> int:
    from ..audit.batch import audit

    if args.workers < 1:
        raise InputError("--workers must be at least 1")
    df = audit(args.paths, workers=args.workers, at=args.at, progress=not args.no_progress, policy=_policy(args))
    if df.empty:
        print(f"phalanb: found no audit bundles or batches in {', '.join(str(p) for p in args.paths)} (an audit "
              "reads *.json bundles, *.jsonl and *.pbatch batches, and folders of them)", file=sys.stderr)
        return 3
    if args.csv:
        df.to_csv(args.csv, index=False)
    if args.json:
        print(df.to_json(orient="records", indent=2))
    else:
        with_cols = ["source", "chat_id", "verdict", "failing", "skipped", "recorded"]
        shown = df[with_cols].astype(object)
        # an unreadable file has no chat id and no recorded verdict: a dash, never Python's "None"
        print(shown.where(shown.notna() & (shown != ""), "—").to_string(index=False, max_colwidth=48))
        counts = df["verdict"].value_counts().to_dict()
        print("\n" + ", ".join(f"{k}: {v}" for k, v in counts.items()) + f"  ({len(df)} replies)")
        if "error" in df:
            for source, why in df.loc[df["error"].notna(), ["source", "error"]].itertuples(index=False):
                print(f"could not read {source}: {why}")
        hint = _simulator_bundle(df) if args.trust == "production" else None
        if hint:
            print(f"phalanb: {simulator_hint(hint, 'audit ' + ' '.join(str(p) for p in args.paths))}")
    if df.empty:
        return 3
    if (df["verdict"] == "failed").any():
        return 1
    return 0 if (df["verdict"] == "verified").all() else 3
