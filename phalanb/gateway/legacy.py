"""An ACI gateway's legacy answers, verified for what they prove — alone or inside a reseller's wrapper.

The gateway's ``/v1/attestation/report`` (ACI.md §4) is the **gateway's** report, re-quoted with a legacy
report_data = signing address ‖ 12 zero bytes ‖ our nonce. Resellers (Venice) serve it with fields of their own.
What it proves, and only that (:func:`verify_legacy_gateway_report`):

- the gateway's own TEE: quote to Intel's root and TCB, debug off, the event log replayed, the measurements, the
  OS image (a development image is named and fails the default policy);
- the legacy binding of the signing key and our nonce (``legacy.report_data``, ``legacy.nonce_fresh``);
- the ACI keyset printed in it: its digest, workload id and (June shape) endorsement verify — but the quote does not
  bind it, so it is **not established** (``aci.keyset_established``, a warning) and never signs anything here;
- GPU evidence: checked, but where ``vm_config.num_gpus`` is 0 it is *not this VM's* (``gpu.scope``);
- a reseller's own verdict fields (``verified``, ``server_verification``…): shown as its claims (``reseller.claims``).

The verdict is scoped to the gateway (``scope``), never "the model's TEE": the model is proven only through an ACI
receipt's upstream session (:func:`phalanb.gateway.verify_aci`).

:func:`verify_exchange` is the model servers' :func:`~phalanb.vllm.verify.verify_exchange` with the gateway's
legacy answers recognised (the signature wrapper of ``/v1/signature/{id}``, the legacy report).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

from .. import _json
from ..errors import ParseError, PhalanbError
from ..policy import Policy
from ..verdict import Check, Status, Verdict

__all__ = ["parse_legacy_gateway_report", "verify_legacy_gateway_report", "verify_exchange", "legacy_gateway_checks",
           "RESELLER_FIELDS"]

#: Fields a reseller adds to the gateway's report: its own verdicts and labels, claims only.
RESELLER_FIELDS = ("verified", "nonce", "nonce_source", "tee_provider", "tee_hardware", "model", "upstream_model",
                   "server_verification", "candidates_evaluated", "candidates_available")


def _vm_config(doc: Mapping[str, Any]) -> Any:
    ev = ((doc.get("attestation") or {}).get("evidence") or {}) if isinstance(doc.get("attestation"), Mapping) else {}
    vm = ev.get("vm_config") if isinstance(ev, Mapping) else None
    if isinstance(vm, str):
        try:
            return _json.loads(vm)
        except json.JSONDecodeError:
            return vm
    return vm


def parse_legacy_gateway_report(doc: Mapping[str, Any]) -> tuple[Any, Any]:
    """``(node, aci_report)``: the gateway as an attested node (signing key, quote, event log, VM config, GPU payload;
    binding ``address``) and the ACI fields printed beside it (:class:`~phalanb.aci.report.AciReport`, read with
    ``legacy_body=True``: for recomputation only, never to establish a keyset)."""
    from ..aci.report import parse_aci_report
    from ..vllm.report import NodeAttestation

    if not isinstance(doc, Mapping):
        raise ParseError("must be a JSON object", field="report")
    aci = parse_aci_report(doc, legacy_body=True)
    ev = aci.evidence

    def text(key: str) -> str | None:
        v = doc.get(key)
        if v is not None and not isinstance(v, str):
            raise ParseError(f"expected a string, got {type(v).__name__}", field=key)
        return v

    node = NodeAttestation(
        shape="aci-legacy-gateway", signing_address=text("signing_address"), signing_algo=text("signing_algo"),
        signing_public_key=text("signing_public_key"), request_nonce=None, nonce_source="client",
        intel_quote=text("intel_quote") or ev.quote, nvidia_payload=doc.get("nvidia_payload"),
        event_log=ev.event_log_text or ev.event_log, info={}, vm_config=ev.vm_config, binding="address",
        raw=dict(doc))
    return node, aci


def _binding(node: Any, report_data: bytes | None, nonce: bytes | None) -> list[Check]:
    """``legacy.report_data`` (bytes 0–31 = the signing key, right-padded) and ``legacy.nonce_fresh`` (bytes
    32–63 = our nonce, raw; ACI.md §4: the gateway hashes a nonce that is not 32 hex bytes)."""
    from ..vllm.report import expected_report_data

    if report_data is None:
        return [Check("legacy.report_data", Status.SKIPPED, "no readable quote to take report_data from"),
                Check("legacy.nonce_fresh", Status.SKIPPED, "no readable quote to take report_data from")]
    ev: dict[str, Any] = {"report_data": report_data.hex(), "signing_address": node.signing_address}
    try:
        want, how = expected_report_data(node)
    except PhalanbError as exc:
        want, how = None, str(exc)
    if want is None:
        key = Check("legacy.report_data", Status.FAIL, f"the report's signing key cannot be bound: {how}", ev)
    elif report_data[:32] == want:
        key = Check("legacy.report_data", Status.PASS, f"report_data[:32] = {how} (the legacy layout)", ev)
    else:
        key = Check("legacy.report_data", Status.FAIL, f"report_data[:32] is not the {how}: the quote does not "
                    "vouch for this signing key", {**ev, "expected": want.hex()})
    if nonce is None:
        fresh = Check("legacy.nonce_fresh", Status.SKIPPED, "no nonce given, so freshness cannot be shown", ev)
    elif report_data[32:] == nonce:
        fresh = Check("legacy.nonce_fresh", Status.PASS, "report_data[32:] is our nonce", {**ev, "sent": nonce.hex()})
    elif report_data[32:] == hashlib.sha256(nonce.hex().encode()).digest():
        fresh = Check("legacy.nonce_fresh", Status.PASS, "report_data[32:] is sha256 of our nonce string",
                      {**ev, "sent": nonce.hex()})
    else:
        fresh = Check("legacy.nonce_fresh", Status.FAIL, "report_data[32:] is not our nonce: the report answers "
                      "another request (or was replayed)", {**ev, "sent": nonce.hex()})
    return [key, fresh]


def _keyset_checks(aci: Any, report_data: bytes | None, nonce: bytes | None) -> list[Check]:
    from ..aci import jcs
    from ..aci.verify import keyset_endorsement_check, report_data_for, workload_id_of

    digest = jcs.sha256_digest(aci.keyset)
    ok = digest == aci.claimed_keyset_digest
    out = [Check("aci.keyset_digest", Status.PASS if ok else Status.FAIL,
                 "sha256(JCS(workload_keyset)) equals workload_keyset_digest" if ok else
                 "the keyset does not hash to the digest the report claims: it was altered",
                 {"recomputed": digest, "claimed": aci.claimed_keyset_digest}, required=False)]
    wid = None
    if aci.shape == "preview":
        wid = workload_id_of(aci)
        ok = wid == aci.workload_id
        out.append(Check("aci.workload_id", Status.PASS if ok else Status.FAIL,
                         "workload_id = sha256(JCS(workload_identity.public_key))" if ok else
                         "workload_id is not the hash of the workload identity key",
                         {"recomputed": wid, "claimed": aci.workload_id}, required=False))
        e = keyset_endorsement_check(aci, digest)
        out.append(Check(e.id, e.status, e.reason, e.evidence, required=False))
    statement_rd = report_data_for(digest, nonce.hex() if nonce else None, shape=aci.shape, workload_id=wid)
    in_quote = report_data[:32].hex() if report_data is not None else None
    out.append(Check("aci.keyset_established", Status.WARNING, "the ACI keyset printed in this legacy answer is NOT "
                     "established: its quote binds the legacy signing address and nonce, not the ACI statement "
                     f"(sha256 of the statement is {statement_rd[:16]}…, the quote's report_data[:32] is "
                     f"{(in_quote or '?')[:16]}…). Fetch /v1/aci/attestation with your nonce to establish it",
                     {"statement_report_data": statement_rd, "quote_report_data": in_quote,
                      "claimed_report_data": aci.report_data}, required=False))
    return out


def _os_image_check(vm: Any) -> Check | None:
    """``tdx.os_image``: a development dstack image (``dstack-dev-…``) allows debug access to the CVM; the default
    policy does not accept it."""
    image = vm.get("image") if isinstance(vm, Mapping) else None
    if not isinstance(image, str):
        return None
    ev = {"image": image, "os_image_hash": vm.get("os_image_hash")}
    if "-dev-" in image or image.endswith("-dev"):
        return Check("tdx.os_image", Status.FAIL, f"vm_config names a DEVELOPMENT OS image ({image}): dev images "
                     "allow access to the CVM that production images close, so the default measurement policy "
                     "refuses it", ev)
    return Check("tdx.os_image", Status.PASS, f"vm_config names a production OS image ({image})", ev, required=False)


def _gpu(node: Any, vm: Any, *, nonce: bytes | None, policy: Policy, at: Any) -> list[Check]:
    from ..vllm.verify import gpu_checks

    checks = [c for c in gpu_checks(node, nonce=nonce, policy=policy, at=at) if c.id != "gpu.count"]
    n = vm.get("num_gpus") if isinstance(vm, Mapping) else None
    if n == 0:
        # Checked (a forged signature still fails), but what passes proves nothing about this VM.
        scoped = [Check(c.id, c.status, f"(not this VM's) {c.reason}", c.evidence,
                        required=c.status is Status.FAIL) for c in checks]
        return scoped + [Check("gpu.scope", Status.WARNING, "vm_config.num_gpus is 0: the GPU evidence in this report "
                               "is NOT this VM's (the gateway has no GPU; it is the upstream's, passed through), and "
                               "nothing in the gateway's quote binds it to the model's TEE",
                               {"vm_config.num_gpus": n}, required=False)]
    return checks


def _reseller_claims(doc: Mapping[str, Any]) -> Check | None:
    claims = {k: doc[k] for k in RESELLER_FIELDS if k in doc}
    if not claims:
        return None
    said = ", ".join(f"{k}={json.dumps(v)[:40]}" for k, v in claims.items() if not isinstance(v, (dict, list)))
    return Check("reseller.claims", Status.WARNING, f"the reseller's own fields are its claims, not evidence "
                 f"phalanb checked ({said}; server_verification shown in the evidence)", {"claims": claims},
                 required=False)


def verify_legacy_gateway_report(report: Mapping[str, Any] | bytes | str, *, nonce: bytes | None = None,
                                 policy: Policy | None = None, collateral: Any = None, at: float | None = None
                                 ) -> Verdict:
    """Verify an ACI gateway's legacy report (bare, or as a reseller serves it) for what it proves: the GATEWAY's
    TEE, the legacy binding of its signing key and our ``nonce``, the keyset it prints (not established), GPU
    evidence scoped by ``vm_config.num_gpus``, a reseller's claims. See the module docstring."""
    from ..tdx.node import attested_ids, node_tdx_checks
    from ..timeutil import parse_optional_time
    from ..vllm.report import check_signing_public_key
    from .shapes import identify, read_document

    policy = policy or Policy()
    at = parse_optional_time(at, field="at")
    doc = read_document(report)
    shape = identify(doc)
    if shape.name not in ("aci-legacy-gateway", "reseller-aci-gateway"):
        raise ParseError(f"this is a {shape.name} document, not an ACI gateway's legacy report", field="report")
    try:
        node, aci = parse_legacy_gateway_report(doc)
    except ParseError as exc:
        return Verdict([Check("report.shape", Status.FAIL, f"the gateway's legacy report cannot be read: {exc}")])
    reseller = shape.name == "reseller-aci-gateway"
    provider = doc.get("tee_provider") if reseller else None
    checks = [Check("report.shape", Status.PASS, f"{shape.name}: {shape.title}", {"shape": shape.name,
                    "aci_shape": aci.shape, "tee_provider": provider}, required=False),
              Check("scope", Status.WARNING, "this verdict is about the GATEWAY's TEE (the Phala/Redpill ACI gateway "
                    "answering on its legacy endpoint), NOT the model's TEE: the model is proven only through an ACI "
                    "receipt's upstream session" + (" — served by a reseller" if reseller else ""), required=False)]
    key = check_signing_public_key(node)
    if key is not None:
        checks.append(key)
    vm = _vm_config(doc)
    tdx, quote = node_tdx_checks(node.intel_quote, event_log=node.event_log, info={}, vm_config=node.vm_config,
                                 policy=policy, collateral=collateral, at=at)
    report_data = quote.body.report_data if quote is not None else None
    checks += _binding(node, report_data, nonce)
    checks += tdx
    image = _os_image_check(vm)
    if image is not None:
        checks.append(image)
    checks += _keyset_checks(aci, report_data, nonce)
    checks += _gpu(node, vm, nonce=nonce, policy=policy, at=at)
    claims = _reseller_claims(doc) if reseller else None
    if claims is not None:
        checks.append(claims)
    app_id, compose_hash = attested_ids(node.event_log, tdx)
    checks.append(_profile(policy, reseller, app_id, compose_hash))
    if policy.simulated:
        checks.append(Check("trust.simulated", Status.WARNING, "verified against phalanb's SIMULATED roots",
                            required=False))
    return Verdict(checks)


def _profile(policy: Policy, reseller: bool, app_id: str | None, compose_hash: str | None) -> Check:
    """``service.profile``. A reseller's profile that says it relays the gateway's legacy answer (its shapes list
    ``aci-legacy-gateway``, as Venice's does) is judged by the profile that owns the attested app id: the reseller
    relays, the gateway's own deployment is what must fit."""
    from dataclasses import replace

    from ..services import profile_check, profile_of_app

    prof = getattr(policy, "service", None)
    owner = profile_of_app(app_id)
    if (reseller and prof is not None and owner is not None and owner.name != prof.name
            and "aci-legacy-gateway" in prof.shapes):
        c = profile_check(replace(policy, service=owner), protocol="aci", shape="aci-legacy-gateway", app_id=app_id,
                          compose_hash=compose_hash)
        return Check(c.id, c.status, f"{prof.title} relays {owner.title}: {c.reason}",
                     {**c.evidence, "relayed_by": prof.name}, c.required)
    return profile_check(policy, protocol="aci", shape="aci-legacy-gateway", app_id=app_id, compose_hash=compose_hash)


# -- the model servers' verify_exchange, with the gateway's legacy answers recognised ------------------------------

def takes_preflight(signature_raw: Any, report: Any) -> bool:
    """Whether :func:`verify_exchange` decides a reply before (and instead of) the model servers' ordinary path: a
    signature record carrying an ACI ``receipt`` or a report that is an ACI gateway's legacy answer (ACI.md §4).
    Looks at shapes only, so it is cheap. Every other road to a verdict (the batch, its fast readers, bundles) asks
    this same question and hands such a reply to :func:`verify_exchange` whole: no road skips the legacy-gateway
    refusal."""
    from ..aci.receipt import is_signature_wrapper
    from ..aci.report import is_legacy_gateway_report

    return is_signature_wrapper(signature_raw) or (isinstance(report, Mapping) and is_legacy_gateway_report(report))


def legacy_gateway_checks(exchange: Any, signature: Any, report: Any, policy: Policy) -> list[Check] | None:
    """An ACI gateway answering on its legacy endpoints (ACI.md §4): its report describes the *gateway* and its
    quote does not bind the keyset printed beside it, so it is never taken as proof about the model's TEE. The
    signer can be tied to the gateway only through a verified ACI report (:func:`phalanb.gateway.verify_aci`), which
    this path does not have: the verdict is at best incomplete, and says why. None: not the gateway's answer."""
    from ..aci.receipt import is_signature_wrapper
    from ..aci.verify import verify_legacy_gateway
    from ..services import profile_check

    if not takes_preflight(signature.raw, report):
        return None
    wrapper = signature.raw if is_signature_wrapper(signature.raw) else None
    prof = profile_check(policy, protocol="aci", shape="aci-legacy-gateway")
    how = ("fetch /v1/aci/attestation with your nonce and verify the reply's receipt (phalanb demo, phalanb chat "
           "--save, phalanb.gateway.verify_aci): that establishes the keyset the signer belongs to")
    if wrapper is None:
        return [Check("legacy.gateway", Status.WARNING, "the report is an ACI gateway's legacy answer: it attests the "
                      "GATEWAY, not the model, and its quote does not bind the keyset printed in it", required=False),
                Check("legacy.signer_bound", Status.SKIPPED, f"the signer cannot be tied to the gateway this way: "
                      f"{how}"), prof]
    verdict = verify_legacy_gateway(report, wrapper, request_bytes=exchange.request_bytes if exchange else None,
                                    response_bytes=exchange.response_bytes if exchange else None, policy=policy)
    return [c if c.id != "legacy.signer_bound" or c.status is not Status.SKIPPED else
            Check(c.id, c.status, f"{c.reason}: {how}", c.evidence, c.required) for c in verdict.checks] + [prof]


def verify_exchange(exchange: Any, signature: Any, report: Mapping[str, Any] | None = None, **kw: Any) -> Verdict:
    """:func:`phalanb.vllm.verify.verify_exchange`, with an ACI gateway's legacy answers (its signature wrapper, its
    legacy report) verified as the gateway's (:func:`legacy_gateway_checks`). Same arguments."""
    from ..vllm.verify import chat_checks, verify_exchange as vllm_verify_exchange

    legacy = legacy_gateway_checks(exchange, signature, report, kw.get("policy") or Policy())
    if legacy is None:
        return vllm_verify_exchange(exchange, signature, report, **kw)
    from ..timeutil import parse_optional_time

    parse_optional_time(kw.get("at"), field="at")
    chat, _ = chat_checks(exchange, signature, reference_request=kw.get("reference_request"),
                          reference_response=kw.get("reference_response"))
    return Verdict(chat + legacy)
