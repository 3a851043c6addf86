"""One answer per reply: :func:`verify_exchange` runs every link of the chain and returns a :class:`Verdict`.

The links (SPEC §1): the exact bytes hash to the signed text; the signature recovers to a signer; the signer is
the address the attestation report names; the report is fresh (our nonce) and its TDX quote carries that address
and nonce in ``report_data``; the quote verifies to Intel's root; the GPUs' evidence verifies to NVIDIA's root and
carries the same nonce. Anything that cannot be checked is *skipped with a reason*, and the verdict is then
``incomplete`` — never ``verified``.

>>> verdict = verify_exchange(exchange, signature, report, nonce=nonce, policy=Policy())   # doctest: +SKIP
>>> verdict.status                                                                        # doctest: +SKIP
'verified'
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping

from ..wire.exchange import Exchange
from ..policy import Policy
from .signatures import (
    SignatureRecord,
    check_hashes,
    check_record_address,
    check_signature,
    check_signature_bound,
    parse_signed_text,
    same_address,
)
from ..errors import InputError, ParseError, PhalanbError, SignatureFormatError, UnsupportedError
from .report import NodeAttestation, binding_checks, check_signing_public_key, parse_report
from ..timeutil import parse_optional_time
from ..verdict import Check, Status, Verdict

__all__ = ["verify_exchange", "verify_report", "attest_report", "assemble", "AttestedReport", "unattested",
           "chat_checks", "signer_choice", "tdx_checks", "gpu_checks", "gateway_checks",
           "REQUIRED_CHECKS", "measurement_check", "gpu_count_check", "rim_checks", "combine_appraisals"]

#: The checks every full verification reports (more may be added; none may be missing).
REQUIRED_CHECKS = (
    "request.hash", "response.hash", "signature.valid", "signature.bound",
    "report.nonce_fresh", "report.report_data",
    "tdx.quote_signature", "tdx.qe_report", "tdx.pck_chain", "tdx.tcb_status", "tdx.debug_disabled",
    "tdx.event_log", "tdx.measurements", "app.compose_hash",
    "gpu.nonce", "gpu.evidence_signature", "gpu.cert_chain",
    "nras.result",
)


def chat_checks(exchange: Exchange | None, signature: SignatureRecord, *,
                reference_request: bytes | None = None, reference_response: bytes | None = None
                ) -> tuple[list[Check], str | None]:
    """``request.hash``, ``response.hash``, ``signature.valid``; returns the checks and the signer."""
    try:
        signed = parse_signed_text(signature.text)
    except SignatureFormatError as exc:
        bad = [Check("request.hash", Status.FAIL, f"the signed text cannot be read: {exc}"),
               Check("response.hash", Status.FAIL, f"the signed text cannot be read: {exc}")]
        valid, signer = check_signature(signature)
        record = check_record_address(signature, signer)
        return bad + [valid] + ([record] if record else []), signer
    checks = check_hashes(signed, request_bytes=exchange.request_bytes if exchange else None,
                          response_bytes=exchange.response_bytes if exchange else None,
                          stream=exchange.stream if exchange else None,
                          reference_request=reference_request, reference_response=reference_response)
    if signed.model is not None:
        checks[0] = Check(checks[0].id, checks[0].status, checks[0].reason + f" (3-part text, model {signed.model!r})",
                          {**checks[0].evidence, "model": signed.model}, checks[0].required)
    valid, signer = check_signature(signature)
    record = check_record_address(signature, signer)
    return checks + [valid] + ([record] if record else []), signer


def _skipped(ids, reason: str) -> list[Check]:
    return [Check(i, Status.SKIPPED, reason) for i in ids]


_TDX_IDS = ("tdx.quote_signature", "tdx.qe_report", "tdx.pck_chain", "tdx.tcb_status", "tdx.debug_disabled",
            "tdx.event_log", "app.compose_hash", "tdx.measurements")
_GPU_IDS = ("gpu.nonce", "gpu.evidence_signature", "gpu.cert_chain")


def tdx_checks(node: NodeAttestation, *, policy: Policy, collateral: Any = None, at: float | None = None
               ) -> tuple[list[Check], Any]:
    """The TDX links of one node of a model server's report (:func:`phalanb.tdx.node.node_tdx_checks` on the
    node's quote, event log, info and VM config). Returns the checks and the parsed quote (None when absent)."""
    from ..tdx.node import node_tdx_checks  # on first use: reading a batch's rows never loads the TDX code

    return node_tdx_checks(node.intel_quote, event_log=node.effective_event_log, info=node.info,
                           vm_config=node.vm_config, policy=policy, collateral=collateral, at=at)


def measurement_check(quote: Any, policy: Policy) -> Check:
    """``tdx.measurements`` for a parsed quote (:func:`phalanb.tdx.node.measurement_check`)."""
    from ..tdx.node import measurement_check as check

    return check(quote, policy)


def gpu_checks(node: NodeAttestation, *, nonce: bytes | None, policy: Policy, nras_response: Any = None,
               jwks: Any = None, at: float | None = None) -> list[Check]:
    """The GPU links of one node: every GPU's SPDM signature, chain and nonce; NRAS when a saved answer is given.

    NRAS is NVIDIA's online second opinion (reference measurements, revocation); ``nras.result`` is required
    only when ``policy.require_nras`` — but a validly signed NRAS *failure* always fails the verdict. With
    ``policy.rims`` phalanb appraises the measurements itself as well (:func:`combine_appraisals` says how the two
    are weighed).
    """
    from ..gpu import chutes_gpu_nonce, parse_payload, verify_payload
    from ..gpu.roots import gpu_root

    need_nras = policy.require_nras
    chutes = node.binding in ("chutes", "chutes-client")
    source = node.gpu_evidence if chutes else node.nvidia_payload
    if source in (None, "", []):
        return (_skipped(_GPU_IDS, "the report carries no GPU evidence")
                + [Check("nras.result", Status.SKIPPED, "no GPU evidence to appraise", required=need_nras, optional_because=_nras_optional(policy))])
    if chutes:
        expected = (chutes_gpu_nonce(node.request_nonce, node.e2e_pubkey)
                    if node.request_nonce and node.e2e_pubkey else None)
    else:
        expected = nonce.hex() if nonce is not None else None
    try:
        payload = parse_payload(source)
    except UnsupportedError as exc:  # e.g. NVSwitch evidence: named, never verified as a GPU's
        return (_skipped(_GPU_IDS, f"the GPU evidence is not verifiable by phalanb: {exc}")
                + [Check("nras.result", Status.SKIPPED, "no GPU evidence phalanb can appraise", required=need_nras, optional_because=_nras_optional(policy))])
    except ParseError as exc:
        return ([Check("gpu.evidence_signature", Status.FAIL, f"the GPU evidence cannot be decoded: {exc}")]
                + _skipped(("gpu.nonce", "gpu.cert_chain"), "the GPU evidence cannot be decoded")
                + [Check("nras.result", Status.SKIPPED, "the GPU evidence cannot be decoded", required=need_nras, optional_because=_nras_optional(policy))])
    result = verify_payload(payload, root=gpu_root(policy), expected_nonce=expected, at=at)
    checks = list(result.checks)
    count = gpu_count_check(node, len(payload.gpus))
    if count is not None:
        checks.append(count)
    nras: list[Check] = []
    _nras_checks(nras, node, result, expected, policy, need_nras, nras_response, jwks, at)
    return checks + combine_appraisals(rim_checks(payload, policy, at=at), nras)


def _nras_optional(policy: Policy) -> str:
    """Why ``nras.result`` is optional when it is (empty when the policy requires it)."""
    if policy.require_nras:
        return ""
    return (f"under this policy (require_nras=False, trust={policy.trust!r}: --no-require-nras, or the simulated "
            "trust's default): GPU evidence verified offline (signatures, chain, nonce) is accepted without NVIDIA's "
            "remote appraisal")


def combine_appraisals(appraised: list[Check], nras: list[Check]) -> list[Check]:
    """NVIDIA's appraisal (``nras.*``) and phalanb's own (``gpu.measurements``, ``gpu.revocation``), one rule:

    the measurements count as appraised when either passed — the other one is then informative only (a failure
    still fails the verdict); when neither ran, both stay as they are (the verdict incomplete, as without RIMs);
    when both reached a verdict and they differ, ``gpu.appraisal_agree`` fails and shows both reasons."""
    if not appraised:
        return list(nras)
    measured, revoked = appraised[0], appraised[1]
    nras_result = next((c for c in nras if c.id == "nras.result"), None)
    nras_passed = nras_result is not None and nras_result.status is Status.PASS
    out = [replace(c, required=False, optional_because="because phalanb's own appraisal of the GPU measurements "
                   "against NVIDIA's signed RIMs (policy rims) held: NRAS would be a second opinion")
           if measured.status is Status.PASS and c.status is Status.SKIPPED else c
           for c in nras]
    by_nras = "because NVIDIA's NRAS appraisal of the same measurements passed" if nras_passed else ""
    out.append(replace(measured, required=measured.required and not nras_passed,
                       optional_because=measured.optional_because or by_nras))
    out.append(replace(revoked, required=revoked.required and not nras_passed,
                       optional_because=revoked.optional_because or by_nras))
    verdicts = {Status.PASS: "passed", Status.FAIL: "failed"}
    if nras_result is not None and nras_result.status in verdicts and measured.status in verdicts \
            and nras_result.status is not measured.status:
        out.append(Check("gpu.appraisal_agree", Status.FAIL,
                         f"NVIDIA's NRAS {verdicts[nras_result.status]} the GPU measurements but phalanb's own RIM "
                         f"appraisal {verdicts[measured.status]} them — NRAS: {nras_result.reason} / RIMs: "
                         f"{measured.reason}", {"nras": nras_result.to_dict(), "rims": measured.to_dict()}))
    return out


def rim_checks(payload: Any, policy: Policy, *, at: float | None = None) -> list[Check]:
    """``gpu.measurements`` and ``gpu.revocation`` from the RIMs the policy names (empty when it names none),
    their chains judged against NVIDIA's pinned CoRIM root (the simulator's under simulated trust)."""
    if policy.rims is None:
        return []
    from ..gpu.appraise import RimStore, appraise_payload
    from ..gpu.roots import rim_root

    store = policy.rims if isinstance(policy.rims, RimStore) else RimStore.from_dir(policy.rims)
    return appraise_payload(payload, store, root=rim_root(policy), at=at).checks


def _nras_checks(checks: list[Check], node: NodeAttestation, result: Any, expected: Any, policy: Policy,
                 need_nras: bool, nras_response: Any, jwks: Any, at: float | None) -> None:
    from ..gpu.nras import verify_nras
    from ..gpu.roots import nras_anchor

    if nras_response is None:
        checks.append(Check("nras.result", Status.SKIPPED, "no NRAS answer: NVIDIA's remote appraisal (reference "
                            "measurements, revocation) was not consulted; phalanb verified the evidence offline"
                            + (" — your policy requires the appraisal (ask NRAS online, appraise the measurements "
                               "with NVIDIA's signed RIMs: --rims DIR, in Python Policy(rims=DIR), or accept offline "
                               "GPU evidence with --no-require-nras; in Python Policy(require_nras=False))"
                               if need_nras else ""),
                            required=need_nras, optional_because=_nras_optional(policy)))
    elif jwks is None:
        checks.append(Check("nras.result", Status.SKIPPED, "an NRAS answer is present but no JWKS to check its "
                            "signatures", required=need_nras, optional_because=_nras_optional(policy)))
    else:
        try:
            issuer = {"issuer": policy.nras_issuer} if policy.nras_issuer else {}
            if policy.simulated and not issuer:
                from ..gpu.sim import SIM_NRAS_ISSUER

                issuer = {"issuer": SIM_NRAS_ISSUER}
            nv = verify_nras(nras_response, jwks=jwks, expected_nonce=expected, at=at, gpu_facts=result.facts,
                             anchor=nras_anchor(policy), **issuer)
        except ParseError as exc:
            checks.append(Check("nras.result", Status.FAIL, f"the NRAS answer cannot be read: {exc}"))
        else:
            for c in nv.checks:
                required = need_nras or c.status is Status.FAIL
                checks.append(Check(c.id, c.status, c.reason, c.evidence, required=required))


def gpu_count_check(node: NodeAttestation, evidence_count: int) -> Check | None:
    """``gpu.count``: the GPUs in the evidence = ``vm_config.num_gpus`` (the VM's configured GPUs, which dstack
    also measures into RTMR0). None when the report names no GPU count. Fewer GPUs attested than the VM has would
    leave unattested GPUs able to see the model's data; more means the evidence is not this VM's."""
    import json

    from .. import _json

    vm = node.vm_config
    if vm in (None, "") and isinstance(node.info, dict):
        vm = node.info.get("vm_config")
    if isinstance(vm, str):
        try:
            vm = _json.loads(vm)
        except json.JSONDecodeError:
            return Check("gpu.count", Status.FAIL, "vm_config is not JSON, so the VM's GPU count cannot be read")
    if not isinstance(vm, dict) or "num_gpus" not in vm:
        return None
    n = vm["num_gpus"]
    ev = {"vm_config.num_gpus": n, "evidence": evidence_count}
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        return Check("gpu.count", Status.FAIL, f"vm_config.num_gpus is {n!r:.20}, not a GPU count", ev)
    if n != evidence_count:
        why = "some GPUs are not attested" if n > evidence_count else "the evidence is not this VM's alone"
        return Check("gpu.count", Status.FAIL, f"the VM is configured with {n} GPU(s) but the evidence covers "
                     f"{evidence_count}: {why}", ev)
    return Check("gpu.count", Status.PASS, f"{n} GPU(s) configured (vm_config.num_gpus) and {n} attested", ev)


def verify_exchange(exchange: Exchange | None, signature: SignatureRecord, report: Mapping[str, Any] | None = None,
                    *, nonce: bytes | None = None, policy: Policy | None = None, collateral: Any = None,
                    nras_response: Any = None, jwks: Any = None, at: float | None = None,
                    reference_request: bytes | None = None, reference_response: bytes | None = None,
                    gateway_collateral: Any = None) -> Verdict:
    """Verify one reply end to end and say plainly what holds and what could not be checked.

    ``exchange``: the exact bytes (None when only a signature is at hand); ``signature``: the signature record;
    ``report``: the attestation report JSON fetched with ``nonce`` (the 32 bytes we sent); ``policy``: trust
    roots and expectations (default: Intel's and NVIDIA's production roots); ``collateral``: Intel collateral
    for the TCB status; ``nras_response`` + ``jwks``: a saved NRAS answer; ``at``: the clock for certificate,
    collateral and token validity (Unix seconds; default now); ``gateway_collateral``: Intel collateral for a NEAR
    AI Cloud gateway's quote (default ``collateral``).

    An ACI gateway's legacy answers are another protocol's: :func:`phalanb.gateway.verify_exchange` recognises them
    (here such a report fails ``report.shape``, naming what it is).
    """
    at = parse_optional_time(at, field="at")  # NaN, ±inf, negative or past 9999: a clear error, never a crash
    chat, signer = chat_checks(exchange, signature, reference_request=reference_request,
                               reference_response=reference_response)
    if report is None:
        return assemble(chat, signer, signature.signing_algo, unattested("no attestation report was given"))
    attested = attest_report(report, nonce=nonce, signer=signer or signature.signing_address,
                             policy=policy or Policy(), collateral=collateral, nras_response=nras_response,
                             jwks=jwks, at=at, gateway_collateral=gateway_collateral)
    return assemble(chat, signer, signature.signing_algo, attested)


def signer_choice(report: Any) -> Callable[[str | None], str | None]:
    """For a batch: a map from the signer a reply's signature recovers to (or its record names) to a signer that
    :func:`attest_report` treats exactly alike, so a batch verifies each node's attestation once however many
    addresses its signatures recover to. attest_report reads its signer only to pick the node
    (:meth:`~phalanb.vllm.report.AttestationReport.select`): the node's own address picks that node; with one node every
    signer picks it; None and an address no node of several holds are kept as they are."""
    try:
        nodes = parse_report(report).nodes if report is not None else []
    except PhalanbError:
        nodes = []  # attest_report refuses the report whatever the signer
    if not nodes:
        return lambda signer: None

    def choose(signer: str | None) -> str | None:
        if signer:
            for node in nodes:
                if same_address(node.signing_address, signer):
                    return node.signing_address
        if len(nodes) == 1:
            return nodes[0].signing_address
        return signer

    return choose


def verify_report(report: Mapping[str, Any], *, nonce: bytes | None = None, signing_address: str | None = None,
                  node: int | None = None, policy: Policy | None = None, collateral: Any = None,
                  nras_response: Any = None, jwks: Any = None, at: float | None = None,
                  gateway_collateral: Any = None) -> Verdict:
    """Verify a saved attestation report on its own: shape, binding, freshness, quote, event log, GPUs.

    Without a chat signature the ``signature.*`` and hash links are absent, so this verdict speaks for the
    report only. ``signing_address`` (or the index ``node``) picks the node when the report lists several.
    ``gateway_collateral``: Intel collateral for a NEAR AI Cloud gateway's quote (another platform than the
    model node's, as a rule). Raises :class:`UnsupportedError` for a JSON object of no shape phalanb verifies.
    """
    try:
        parse_report(report)
    except UnsupportedError:
        raise  # not a report of a shape phalanb verifies (unknown, SEV-SNP, ACI): an input error, named
    except PhalanbError:
        pass  # malformed: attest_report reports it as a failed report.shape
    attested = attest_report(report, nonce=nonce, signer=signing_address, policy=policy or Policy(),
                             collateral=collateral, nras_response=nras_response, jwks=jwks, at=at, node_index=node,
                             gateway_collateral=gateway_collateral)
    return Verdict(attested.checks)


class _UsageError(PhalanbError):
    """A request the caller made about a report (a node index) that the report cannot satisfy."""


@dataclass
class AttestedReport:
    """The attestation side of a verdict, computed once and shareable by every reply signed by that node."""

    checks: list[Check]
    node: NodeAttestation | None
    shape: str | None
    reason: str | None = None  # why there is no node, when there is none


def unattested(reason: str, *, failed: bool = False) -> AttestedReport:
    """The attestation side when there is no usable report: every link skipped (or the report failed) for
    ``reason``."""
    shape = [Check("report.shape", Status.FAIL, reason)] if failed else []
    return AttestedReport(shape + _skipped(("report.nonce_fresh", "report.report_data"), reason)
                          + _missing_links(reason), None, None, reason)


def attest_report(report: Mapping[str, Any], *, nonce: bytes | None, signer: str | None, policy: Policy,
                  collateral: Any = None, nras_response: Any = None, jwks: Any = None, at: float | None = None,
                  node_index: int | None = None, gateway_collateral: Any = None) -> AttestedReport:
    """Every check of the attestation side for the node that holds ``signer`` (all but ``signature.bound``),
    and, for a NEAR AI Cloud report, the ``gateway.*`` checks of the gateway every request passes through."""
    at = parse_optional_time(at, field="at")
    checks: list[Check] = []
    try:
        parsed = parse_report(report)
        if node_index is not None:
            if not 0 <= node_index < len(parsed.nodes):
                raise _UsageError(f"node {node_index} does not exist; the report lists {len(parsed.nodes)} "
                                  f"node(s), numbered 0 to {len(parsed.nodes) - 1}")
            node = parsed.nodes[node_index]
        elif signer is None and len(parsed.nodes) > 1:
            # Without a signer to pick by, check the first node and say so (each node is a different machine).
            node = parsed.nodes[0]
            checks.append(Check("report.node", Status.WARNING, f"the report lists {len(parsed.nodes)} nodes and no "
                                "signing address was given: checked node 0 only (pick another by index or address)",
                                {"nodes": len(parsed.nodes), "instance_id": node.instance_id}, required=False))
        else:
            node = parsed.select(signer)
    except _UsageError as exc:
        raise InputError(str(exc)) from None  # the user asked for something that is not there: exit 2
    except PhalanbError as exc:
        return unattested(f"the attestation report cannot be used: {exc}", failed=True)
    checks.append(Check("report.shape", Status.PASS, f"{parsed.shape}: {parsed.description}",
                        {"shape": parsed.shape, "nodes": len(parsed.nodes),
                         "signing_address": node.signing_address, "wrapper": parsed.wrapper}, required=False))
    if node.binding == "chutes-client" and nonce is not None:
        # The Chutes evidence API hashes the nonce we asked with into report_data; it does not echo it.
        node = replace(node, request_nonce=nonce.hex())
    key_check = check_signing_public_key(node)
    if key_check is not None:
        checks.append(key_check)
    tdx, quote = tdx_checks(node, policy=policy, collateral=collateral, at=at)
    report_data = quote.body.report_data if quote is not None else None
    checks.extend(binding_checks(node, report_data, nonce))
    checks.extend(tdx)
    checks.append(_profile_check(node, parsed.shape, tdx, policy))
    checks.extend(gpu_checks(node, nonce=nonce, policy=policy, nras_response=nras_response, jwks=jwks, at=at))
    if parsed.shape == "near-cloud-gateway":
        checks.extend(gateway_checks(parsed.gateway, nonce=nonce, policy=policy,
                                     collateral=gateway_collateral if gateway_collateral is not None else collateral,
                                     at=at))
    if policy.simulated:
        checks.append(Check("trust.simulated", Status.WARNING, "verified against phalanb's SIMULATED roots: this "
                            "proves the checks work, not that real Intel/NVIDIA hardware answered", required=False))
    return AttestedReport(checks, node, parsed.shape)


def _profile_check(node: NodeAttestation, shape: str, tdx: list[Check], policy: Policy) -> Check:
    """``service.profile`` for a model server's report: the shape and the attested app id must fit the service the
    auditor expects (:mod:`phalanb.services`)."""
    from ..services import profile_check
    from ..tdx.node import attested_ids

    app_id, compose_hash = attested_ids(node.effective_event_log, tdx)
    return profile_check(policy, protocol="vllm-proxy", shape=shape, app_id=app_id, compose_hash=compose_hash)


def gateway_checks(gateway: NodeAttestation | None, *, nonce: bytes | None, policy: Policy, collateral: Any = None,
                   at: float | None = None) -> list[Check]:
    """The NEAR AI Cloud gateway as a link of its own: every request passes through it, so its TD is verified
    like a model node's — quote to Intel's root, TCB, debug, event log and compose, report_data binding its
    signing key (and TLS fingerprint where present) and our nonce. Ids: ``gateway.report_data``,
    ``gateway.nonce_fresh``, ``gateway.signing_key``, ``gateway.tdx.*``, ``gateway.app.compose_hash``.

    The user's expected measurements describe the model's deployment, not the gateway's, so they are not applied
    here; any other measurement policy is.
    """
    if gateway is None:
        return [Check("gateway.quote", Status.SKIPPED, "the report wraps model attestations but carries no gateway "
                      "attestation: the gateway every request passes through cannot be checked")]
    checks: list[Check] = []
    key_check = check_signing_public_key(gateway)
    if key_check is not None:
        checks.append(key_check)
    tdx, quote = tdx_checks(gateway, policy=replace(policy, expected={}), collateral=collateral, at=at)
    report_data = quote.body.report_data if quote is not None else None
    checks.extend(binding_checks(gateway, report_data, nonce))
    checks.extend(tdx)
    return [_as_gateway(c) for c in checks]


def _as_gateway(c: Check) -> Check:
    cid = c.id.removeprefix("report.")
    return Check(f"gateway.{cid}", c.status, f"gateway: {c.reason}", c.evidence, c.required)


def assemble(chat: list[Check], signer: str | None, algo: str, attested: AttestedReport) -> Verdict:
    """One reply's verdict: its own checks, ``signature.bound`` to the attested node, and the node's checks."""
    node = attested.node
    if node is None:
        bound = Check("signature.bound", Status.SKIPPED, attested.reason or "no usable attestation report",
                      {"signer": signer})
    elif node.signing_address is None:
        bound = Check("signature.bound", Status.SKIPPED, f"the {attested.shape} report names no signing key, so the "
                      "signature cannot be tied to it", {"signer": signer})
    else:
        bound = check_signature_bound(signer, node.signing_address, algo=algo)
    return Verdict(chat + [bound] + attested.checks)


def _missing_links(reason: str) -> list[Check]:
    ids = [i for i in REQUIRED_CHECKS if i.split(".")[0] in ("tdx", "app", "gpu")]
    return _skipped(ids, reason) + [Check("nras.result", Status.SKIPPED, reason, required=False)]
