"""``phalanb gpu``: decode and verify NVIDIA GPU evidence offline, and optionally a saved NRAS answer.

    phalanb gpu payload.json --nonce 541b…500b
    phalanb gpu hopperAttestationReport.txt --chain hopperCertChain.txt
    phalanb gpu report.json --nonce … --nras-response nras_response.json --jwks jwks.json --at 1782698794
    phalanb gpu sim_payload.json --nonce … --root sim       a simulator's evidence: trust its simulated root
    phalanb gpu hopperAttestationReport.txt --chain hopperCertChain.txt --rims rims/ --at 1761307200
    phalanb gpu report.json --nonce … --rims ~/.cache/phalanb/rims --fetch-rims    fetch from NVIDIA, then appraise
    phalanb gpu switchAttestationReport.txt --chain switchCertChain.txt --nonce … --rims rims/ --at 1782864000

FILE is an ``nvidia_payload`` (any variant), a whole attestation report holding one, a Chutes attestation entry,
or a bare evidence file (hex, base64 or binary) given with ``--chain``. Exit codes: 0 every check passed, 1 a check
failed, 3 incomplete (no ``--nonce``: freshness cannot be shown; neither an NRAS answer nor ``--rims``: the
measurements were not appraised), 2 unreadable input. With ``--rims DIR`` phalanb compares every active reference
index of NVIDIA's signed driver and VBIOS RIMs with the GPU's measurements itself, judging each RIM at ``--at``.

NVSwitch (LS10) evidence — a chain whose leaf names an LS_10 switch, or NVIDIA's serialized switch evidence with
``arch: LS10`` — is verified as a switch's, the same steps under its own checks (``nvswitch.*``), and with
``--rims DIR`` appraised against its switch BIOS RIM; NRAS answers are for GPUs only. Without ``--rims`` the
switch's measurements are not appraised and the result is incomplete (exit 3).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .. import _json
from .._term import plain_help, verdict_table
from ..errors import InputError, ParseError
from ..timeutil import at_argument
from ..verdict import Check, Status, Verdict
from ..gpu.nras import NRAS_ISSUER, nvidia_nras_anchor, verify_nras
from ..gpu.payload import (GpuPayload, SwitchEvidenceRefused, is_switch_chain, parse_files, parse_payload,
                           parse_switch_files, parse_switch_payload)
from ..gpu.switch import appraise_switch_payload, verify_switch_payload
from ..gpu.verify import TrustRoot, nvidia_device_identity_ca, verify_payload

__all__ = ["register", "cmd_gpu", "load_payload"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gpu", help="decode and verify NVIDIA GPU evidence offline (SPDM, chain, FWID, NRAS tokens)",
                       description=plain_help(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", type=Path, metavar="FILE", help="nvidia_payload JSON, an attestation report, or a bare "
                   "evidence file (with --chain)")
    p.add_argument("--chain", type=Path, metavar="PEM", help="PEM certificate chain for a bare evidence file")
    p.add_argument("--nonce", metavar="HEX", help="the nonce you sent (64 hex digits); without it freshness is "
                   "not checked and the result is incomplete")
    p.add_argument("--root", default="nvidia", metavar="nvidia|sim|PEM", help="device root to trust: 'nvidia' "
                   "(default, the pinned NVIDIA Device Identity CA), 'sim' (phalanb's simulated root, and the result "
                   "says so) or a PEM file")
    p.add_argument("--at", type=at_argument, metavar="UNIX_TIME", help="validate certificates and tokens at this "
                   "time: Unix seconds or 'now' (archived NRAS answers: the token's iat)")
    p.add_argument("--nras-response", type=Path, metavar="FILE", help="a saved NRAS answer to verify as well")
    p.add_argument("--jwks", type=Path, metavar="FILE", help="the NRAS JWKS to verify the answer with")
    p.add_argument("--nras-issuer", default=NRAS_ISSUER, help=f"expected token issuer (default {NRAS_ISSUER})")
    p.add_argument("--rims", type=Path, metavar="DIR", help="a folder of NVIDIA's signed reference manifests (RIMs, "
                   "saved OCSP answers in DIR/ocsp): phalanb appraises the GPU measurements itself, at --at")
    p.add_argument("--fetch-rims", action="store_true", help="first fetch the RIMs and OCSP answers the evidence "
                   "needs into --rims DIR (kept there: the next run is offline)")
    p.add_argument("--rim-url", default=None, metavar="URL", help="the RIM service (default NVIDIA's "
                   "https://rim.attestation.nvidia.com/v1/rim)")
    p.add_argument("--ocsp-url", default=None, metavar="URL", help="the OCSP responder (default NVIDIA's "
                   "https://ocsp.ndis.nvidia.com)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_gpu)


def _read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the {what} {path}: {exc.strerror}") from None
    try:
        return _json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ParseError(f"{path} is not JSON: {exc}", field=what) from None


def load_payload(path: Path, chain: Path | None = None) -> GpuPayload:
    """Read FILE as the CLI does: bare evidence with a chain, or JSON in any of the shapes described above.
    NVSwitch evidence (its chain's leaf names an LS_10 switch) is read as a switch's (``payload.device``)."""
    if chain is not None:
        return parse_switch_files(path, chain) if is_switch_chain(chain) else parse_files(path, chain)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    try:
        obj = _json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{path} is not JSON; a bare evidence file needs its certificate chain: --chain PEM") \
            from None
    if isinstance(obj, dict) and "nvidia_payload" in obj:
        if obj["nvidia_payload"] is None:
            raise InputError(f"{path} is an attestation report without GPU evidence (nvidia_payload is null)")
        obj = obj["nvidia_payload"]
    elif isinstance(obj, dict) and isinstance(obj.get("all_attestations"), list) and obj["all_attestations"] \
            and isinstance(obj["all_attestations"][0], dict) and "gpu_evidence" in obj["all_attestations"][0]:
        obj = obj["all_attestations"][0]
    try:
        return parse_payload(obj)
    except SwitchEvidenceRefused:
        # The GPU reader refused switch evidence: read it as a switch's (which in turn refuses a GPU entry, so a
        # payload mixing both is refused rather than half-read).
        return parse_switch_payload(obj)


def _root(spec: str) -> TrustRoot:
    if spec == "nvidia":
        return nvidia_device_identity_ca()
    if spec == "sim":
        from ..gpu.sim import simulated_root  # the fixed root every phalanb simulator uses

        return simulated_root()
    try:
        return TrustRoot.from_pem(Path(spec).read_bytes())
    except OSError as exc:
        raise InputError(f"--root is 'nvidia', 'sim' or a PEM file; cannot read {spec}: {exc.strerror}") from None


def cmd_gpu(args: argparse.Namespace) -> int:
    if (args.nras_response is None) != (args.jwks is None):
        raise InputError("--nras-response and --jwks go together: the answer is verified with that JWKS")
    if args.nonce is not None:
        # A shorter nonce is a typo (or a prefix copied from a listing), not a nonce that fails to match.
        try:
            size = len(bytes.fromhex(args.nonce.removeprefix("0x")))
        except ValueError:
            raise InputError(f"--nonce must be hex, got {args.nonce!r}") from None
        if size != 32:
            raise InputError(f"--nonce must be the 32-byte nonce you sent (64 hex digits), got {size} bytes")
    payload = load_payload(args.file, args.chain)
    root = _root(args.root)
    if payload.device == "NVSwitch" and args.nras_response is not None:
        raise InputError("this is NVSwitch evidence: phalanb verifies NRAS answers for GPUs only; appraise the "
                         "switch's measurements with --rims DIR")
    if args.fetch_rims:
        if args.rims is None:
            raise InputError("--fetch-rims stores what it fetches in --rims DIR: give that folder")
        from ..gpu.rim_fetch import OCSP_URL, RIM_SERVICE_URL, fetch_rims_for

        fetch_rims_for(payload, cache_dir=args.rims, rim_url=args.rim_url or RIM_SERVICE_URL,
                       ocsp_url=args.ocsp_url or OCSP_URL)
    if payload.device == "NVSwitch":
        return _cmd_switch(args, payload, root)
    result = verify_payload(payload, root=root, expected_nonce=args.nonce, at=args.at)
    checks = list(result.checks)
    nras_claims = None
    if args.nras_response is not None:
        # The --jwks file is only a claim: its keys count when they chain to NVIDIA's pinned NRAS intermediate
        # (or, with --root sim, the simulator's).
        from ..gpu.sim import simulated_nras_anchor

        anchor = simulated_nras_anchor() if root.simulated else nvidia_nras_anchor()
        nras = verify_nras(_read_json(args.nras_response, "nras_response"), jwks=_read_json(args.jwks, "jwks"),
                           expected_nonce=args.nonce, at=args.at, issuer=args.nras_issuer, gpu_facts=result.facts,
                           anchor=anchor)
        checks += nras.checks
        nras_claims = {name: tok.claims for name, tok in nras.response.tokens()}
    elif not result.root.simulated and args.rims is None:
        # Signature, chain and nonce show whose GPU said what, not that its firmware and driver are good or its
        # certificates not revoked: that takes NVIDIA's appraisal (NVIDIA's SDK rejects evidence phalanb's offline
        # checks accept, e.g. fixtures/field/nvidia-sdk-hopper-cert-hold). Without it the result is incomplete.
        checks.append(Check("nras.result", Status.SKIPPED, "the GPU measurements were not appraised: no NRAS answer "
                            "(--nras-response with --jwks) and no RIMs (--rims DIR: NVIDIA's signed reference "
                            "measurements, appraised by phalanb); the "
                            "evidence was verified offline only (signature, chain, nonce)"))
    appraisal = None
    if args.rims is not None:
        from ..gpu.appraise import RimStore, appraise_payload
        from ..vllm.verify import combine_appraisals

        from ..gpu.rim_sim import simulated_rim_root
        from ..gpu.rim_verify import nvidia_rim_root

        rim_root = simulated_rim_root() if result.root.simulated else nvidia_rim_root()
        appraisal = appraise_payload(payload, RimStore.from_dir(args.rims), root=rim_root, at=args.at)
        nras_part = [c for c in checks if c.id.startswith("nras.")]
        if not nras_part:
            nras_part = [Check("nras.result", Status.SKIPPED, "no NRAS answer (--nras-response with --jwks)",
                               required=not result.root.simulated)]
        checks = [c for c in checks if not c.id.startswith("nras.")] + combine_appraisals(appraisal.checks,
                                                                                          nras_part)
    verdict = Verdict(checks)
    if args.json:
        out = result.to_dict()
        # The decoded measurement blocks (index → value hex): the values an appraisal (NRAS, RIMs) compares.
        blocks = {g.index: {str(i): v.hex() for i, v in sorted(g.spdm.measurements.items())} for g in payload.gpus}
        for row in out["gpus"]:
            row["measurements"] = blocks.get(row["index"], {})
        out["verdict"] = verdict.to_dict()
        if nras_claims is not None:
            out["nras_claims"] = nras_claims
        if appraisal is not None:
            out["rim_appraisal"] = appraisal.to_dict()
        print(json.dumps(out, indent=2, default=str))
    else:
        print(f"payload: {payload.description}")
        print(f"root:    {result.root.name} (SHA-256 {result.root.sha256[:16]}…)"
              + ("  [SIMULATED]" if result.root.simulated else ""))
        print()
        print(f"{'gpu':<6} {'arch':<10} {'hwmodel':<20} {'driver':<12} {'vbios':<15} ueid (leaf serial)")
        for f in result.facts:
            print(f"GPU-{f.index:<2} {f.arch or '?':<10} {f.hwmodel or '?':<20} {f.driver_version or '?':<12} "
                  f"{f.vbios_version or '?':<15} {f.ueid}")
        print(f"requester nonce: {', '.join(sorted({f.requester_nonce for f in result.facts}))}")
        print()
        if appraisal is not None:
            _print_rims(appraisal, "GPU")
            print()
        print(verdict_table(verdict))
    sys.stdout.flush()
    return verdict.exit_code()


def _print_rims(appraisal: Any, device: str) -> None:
    """Each device's RIMs (trusted or not) and every mismatched index with both values."""
    state = {True: "trusted", False: "NOT trusted", None: "missing"}
    for g in appraisal.gpus:
        bad = g.mismatches
        print(f"{device}-{g.index} RIMs: " + ", ".join(f"{v.role} {v.rim_id} ({state[v.trusted]})" for v in g.rims)
              + f"; {len(g.rows)} active indices, {len(bad)} mismatch(es)"
              + "".join(f"\n  index {r.index} ({r.owner}): measured {r.measured}, expected "
                        f"{' or '.join(r.expected)}" for r in bad))


def _rim_root(simulated: bool) -> Any:
    from ..gpu.rim_sim import simulated_rim_root
    from ..gpu.rim_verify import nvidia_rim_root

    return simulated_rim_root() if simulated else nvidia_rim_root()


def _cmd_switch(args: argparse.Namespace, payload: GpuPayload, root: TrustRoot) -> int:
    """NVSwitch evidence: the switch's own checks (``nvswitch.*``), appraised against its switch RIM with --rims."""
    result = verify_switch_payload(payload, root=root, expected_nonce=args.nonce, at=args.at)
    checks = list(result.checks)
    appraisal = None
    if args.rims is not None:
        from ..gpu.appraise import RimStore

        appraisal = appraise_switch_payload(payload, RimStore.from_dir(args.rims), root=_rim_root(root.simulated),
                                            at=args.at)
        checks += appraisal.checks
    else:
        # Signature, chain and nonce show which switch said what, not that its firmware is NVIDIA's published one.
        checks.append(Check("nvswitch.measurements", Status.SKIPPED, "the NVSwitch measurements were not appraised: "
                            "no RIMs (--rims DIR with the switch BIOS RIM NVIDIA signed); the evidence was verified "
                            "offline only (signature, chain, nonce)"))
    verdict = Verdict(checks)
    if args.json:
        out = result.to_dict()
        out["device"] = "NVSwitch"
        blocks = {g.index: {str(i): v.hex() for i, v in sorted(g.spdm.measurements.items())} for g in payload.gpus}
        for row in out["gpus"]:
            row["measurements"] = blocks.get(row["index"], {})
        out["verdict"] = verdict.to_dict()
        if appraisal is not None:
            out["rim_appraisal"] = appraisal.to_dict()
        print(json.dumps(out, indent=2, default=str))
    else:
        print(f"payload: {payload.description}  [NVSwitch evidence: checks nvswitch.*, never a GPU's]")
        print(f"root:    {result.root.name} (SHA-256 {result.root.sha256[:16]}…)"
              + ("  [SIMULATED]" if result.root.simulated else ""))
        print()
        print(f"{'switch':<11} {'arch':<6} {'hwmodel':<20} {'bios':<15} ueid (leaf serial)")
        for f in result.facts:
            print(f"NVSwitch-{f.index:<2} {f.arch or '?':<6} {f.hwmodel or '?':<20} {f.vbios_version or '?':<15} "
                  f"{f.ueid}")
        print(f"requester nonce: {', '.join(sorted({f.requester_nonce for f in result.facts}))}")
        print()
        if appraisal is not None:
            _print_rims(appraisal, "NVSwitch")
            print()
        print(verdict_table(verdict))
    sys.stdout.flush()
    return verdict.exit_code()
