"""Audit bundles: everything needed to re-verify one reply offline, in one JSON document.

A bundle holds the exact request and response bytes, the signature record, the attestation report and the
nonce we sent, any collateral / NRAS answer / JWKS that was fetched, the trust settings, the time of the original
verification, phalanb's version and the verdict it reached. It never holds the API key or an Authorization header.

Re-verifying runs the very same :func:`~phalanb.vllm.verify.verify_exchange` with no network, at the original time by
default. The recorded verdict is shown beside the new one and never believed: a bundle edited to say
"verified" changes nothing.

Schema (``schema_version`` 1)::

    {"kind": "phalanb.audit-bundle", "schema_version": 1, "phalanb_version": "0.1.0",
     "created_at": 1795600000.0,          # Unix seconds, when the bundle was written
     "verified_at": 1795600000.0,         # the clock the original verification used
     "endpoint": {"base_url": "...", "model": "...", "simulated": false},
     "exchange": {... Exchange.to_dict(): request_b64, response_b64, stream, chat_id, timings ...},
     "signature": {"text": "...", "signature": "...", "signing_address": "...", "signing_algo": "ecdsa"},
     "attestation": {"report": {...}, "nonce": "<64 hex>", "fetched_at": 1795600000.0},
     "collateral": {...} | null,          # Intel PCS/PCCS collateral as dcap-qvl reads it
     "gateway_collateral": {...} | null,  # the same for a NEAR AI Cloud gateway's platform (optional key)
     "nras": {"response": [...], "jwks": {...}} | null,
     "policy": {... Policy.to_dict() ...},
     "verdict": {"status": "...", "checks": [...]}}

Schema 2 (ACI, :mod:`phalanb.aci`) adds ``"protocol": "aci"`` and an ``"aci"`` object, and ``signature`` may be
null (an ACI reply is bound by its signed receipt, not a signature record)::

     "aci": {"report_b64": "...",         # the exact bytes of GET /v1/aci/attestation (fetched with "nonce")
             "nonce": "<64 hex>", "fetched_at": 1795600000.0,
             "receipt_b64": "...",        # the exact bytes of GET /v1/aci/receipts/{id}
             "sessions": {"<session id>": "<b64 of GET /v1/aci/sessions/{id}>"},
             "collateral": {...} | null,  # for the gateway's quote
             "upstream": {"<session id>": {"collateral": ..., "nras_response": ..., "jwks": ...}},
             "tls_spki_sha256": "<hex>" | null, "keyset_digest_header": "sha256:..." | null, "host": "..."}

Schema 1 bundles (the model servers' protocol) still load and re-verify.

>>> bundle = make_bundle(exchange, signature, attestation, policy=policy, verdict=verdict)   # doctest: +SKIP
>>> save_bundle(bundle, "reply.phalanb.json"); reverify(load_bundle("reply.phalanb.json")).verdict.status  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from .. import __version__, _json
from ..errors import InputError, ParseError
from ..aci import e2ee_wire as _e2ee_wire  # noqa: F401  (registers the E2EE record reader Exchange.from_dict uses)
from ..wire.exchange import Exchange, redact_headers
from ..policy import Policy
from ..vllm.signatures import SignatureRecord
from ..timeutil import parse_optional_time, parse_time
from ..verdict import Verdict

__all__ = ["BUNDLE_KIND", "SCHEMA_VERSION", "MAX_BUNDLE_BYTES", "Bundle", "Reverification", "make_bundle",
           "save_bundle", "load_bundle", "parse_bundle", "reverify", "make_aci_bundle", "verify_bundle"]

BUNDLE_KIND = "phalanb.audit-bundle"
SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)
#: Bundles larger than this are refused before parsing (an 8-GPU report with collateral is ~2 MB).
MAX_BUNDLE_BYTES = 64 * 1024 * 1024


@dataclass
class Bundle:
    exchange: Exchange | None
    signature: SignatureRecord | None
    report: dict[str, Any] | None
    nonce: bytes | None
    policy: Policy
    verified_at: float
    collateral: Any = None
    nras_response: Any = None
    jwks: Any = None
    endpoint: dict[str, Any] = field(default_factory=dict)
    recorded_verdict: dict[str, Any] | None = None
    created_at: float = 0.0
    phalanb_version: str = __version__
    fetched_at: float | None = None
    gateway_collateral: Any = None  # a NEAR AI Cloud gateway's own platform collateral
    aci: dict[str, Any] | None = None  # schema 2: the ACI artifacts (exact bytes in base64), see the module doc
    rims: dict[str, Any] | None = None  # NVIDIA RIMs + OCSP answers (base64) the GPU appraisal used, or None

    @property
    def protocol(self) -> str:
        return "aci" if self.aci is not None else "vllm-proxy"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": BUNDLE_KIND,
            "schema_version": SCHEMA_VERSION,
            "phalanb_version": self.phalanb_version,
            "created_at": self.created_at,
            "verified_at": self.verified_at,
            "endpoint": dict(self.endpoint),
            "exchange": self.exchange.to_dict() if self.exchange is not None else None,
            "protocol": self.protocol,
            "signature": _without_secrets(self.signature.to_dict()) if self.signature is not None else None,
            "attestation": {"report": self.report, "nonce": self.nonce.hex() if self.nonce else None,
                            "fetched_at": self.fetched_at},
            "collateral": self.collateral,
            "gateway_collateral": self.gateway_collateral,
            "nras": ({"response": self.nras_response, "jwks": self.jwks}
                     if self.nras_response is not None or self.jwks is not None else None),
            "policy": self.policy.to_dict(),
            "verdict": self.recorded_verdict,
            **({"aci": self.aci} if self.aci is not None else {}),
            **({"rims": self.rims} if self.rims is not None else {}),
        }

    def __repr__(self) -> str:
        chat = self.exchange.chat_id if self.exchange else None
        status = (self.recorded_verdict or {}).get("status")
        return f"<Bundle chat={chat} recorded={status} verified_at={self.verified_at:.0f}>"


def _without_secrets(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k.lower() not in ("authorization", "api_key")}


def make_bundle(exchange: Exchange | None, signature: SignatureRecord, attestation: Any = None, *,
                policy: Policy, verdict: Verdict | None, report: Mapping[str, Any] | None = None,
                nonce: bytes | None = None, collateral: Any = None, nras_response: Any = None, jwks: Any = None,
                verified_at: float | None = None, endpoint: Mapping[str, Any] | None = None,
                gateway_collateral: Any = None, rims: Any = None) -> Bundle:
    """Collect the evidence of one verification. ``attestation`` is a :class:`~phalanb.wire.client.AttestationFetch`
    (or give ``report`` and ``nonce`` directly). ``rims``: a RimStore to keep (default: the RIMs ``policy.rims``
    names that the report's GPUs need, with every saved OCSP answer), so the appraisal re-runs offline."""
    fetched_at = None
    if attestation is not None:
        report = attestation.report
        nonce = attestation.nonce
        fetched_at = attestation.fetched_at
    if hasattr(collateral, "to_dict"):
        collateral = collateral.to_dict()
    if hasattr(gateway_collateral, "to_dict"):
        gateway_collateral = gateway_collateral.to_dict()
    now = time.time()
    return Bundle(exchange=exchange, signature=signature, report=dict(report) if report is not None else None,
                  nonce=nonce, policy=policy, verified_at=verified_at if verified_at is not None else now,
                  collateral=collateral, nras_response=nras_response, jwks=jwks, endpoint=dict(endpoint or {}),
                  recorded_verdict=verdict.to_dict() if verdict is not None else None, created_at=now,
                  fetched_at=fetched_at, gateway_collateral=gateway_collateral,
                  rims=_bundle_rims(rims, policy, report))


def _bundle_rims(rims: Any, policy: Policy, report: Any) -> dict[str, Any] | None:
    from ..gpu.appraise import RimStore, needed_rims

    if rims is None and policy.rims is not None and not policy.simulated:
        rims = policy.rims if isinstance(policy.rims, RimStore) else RimStore.from_dir(policy.rims)
        payloads = _gpu_payloads(report)
        rims = needed_rims(rims, payloads) if payloads is not None else rims
    return rims.to_dict() if rims is not None else None


def _gpu_payloads(report: Any) -> list[Any] | None:
    """The GPU evidence of every node of a model server's report; None when it cannot be read (the bundle then
    keeps every RIM rather than guess, and the appraisal says what is wrong)."""
    from ..errors import PhalanbError
    from ..vllm.report import parse_report

    try:
        return [node.gpu_evidence or node.nvidia_payload for node in parse_report(report).nodes]
    except PhalanbError:
        return None


def save_bundle(bundle: Bundle, path: str | os.PathLike[str]) -> Path:
    """Write the bundle as JSON (never pickle). Returns the path."""
    data = bundle.to_dict()
    if data["exchange"] is not None:
        # Belt and braces: headers are redacted when recorded, and again here.
        for key in ("request_headers", "response_headers"):
            data["exchange"][key] = redact_headers(data["exchange"].get(key) or {})
    text = json.dumps(data, indent=1, sort_keys=False)
    p = Path(path)
    try:
        p.write_text(text)
    except OSError as exc:
        raise InputError(f"cannot write the bundle to {p}: {exc.strerror}") from None
    return p


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Read a bundle file. Size-limited, JSON only; never touches the network."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_BUNDLE_BYTES:
            raise ParseError(f"{size} bytes exceeds the {MAX_BUNDLE_BYTES}-byte limit for bundles", field="bundle")
        raw = p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {p}: {exc.strerror}") from None
    return parse_bundle(raw)


def parse_bundle(raw: bytes | str | Mapping[str, Any]) -> Bundle:
    if isinstance(raw, (bytes, str)):
        if len(raw) > MAX_BUNDLE_BYTES:
            raise ParseError(f"{len(raw)} bytes exceeds the bundle size limit", field="bundle")
        try:
            data = _json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ParseError(f"not JSON ({exc})", field="bundle") from None
    else:
        data = raw
    if not isinstance(data, Mapping):
        raise ParseError("a bundle must be a JSON object", field="bundle")
    if data.get("kind") == "phalanb.exchange":
        raise ParseError("this is a chat record from an older `phalanb chat --save`: it holds the exact bytes and "
                         "signature but no attestation, so it cannot be verified. Run `phalanb chat PROMPT --save "
                         "FILE` again: it now writes an audit bundle", field="kind")
    if data.get("kind") != BUNDLE_KIND:
        said = "has no \"kind\"" if data.get("kind") is None else f"says \"kind\": {data.get('kind')!r}"
        raise ParseError(f"not a phalanb audit bundle: it {said}, and a bundle says \"kind\": \"{BUNDLE_KIND}\" "
                         "(phalanb chat --save FILE or phalanb demo --save FILE write one)", field="kind")
    version = data.get("schema_version")
    if version not in READABLE_SCHEMAS or isinstance(version, bool):
        raise ParseError(f"schema_version {version!r} is not supported (this phalanb reads "
                         f"{', '.join(map(str, READABLE_SCHEMAS))})", field="schema_version")
    aci = _aci_part(data.get("aci"))
    if aci is not None and version < 2:
        raise ParseError("ACI artifacts need schema_version 2", field="aci")
    att = data.get("attestation") or {}
    if not isinstance(att, Mapping):
        raise ParseError("must be an object", field="attestation")
    nonce_hex = att.get("nonce")
    try:
        nonce = bytes.fromhex(nonce_hex) if nonce_hex else None
    except (TypeError, ValueError):
        raise ParseError("not hex", field="attestation.nonce") from None
    if nonce is not None and len(nonce) != 32:
        raise ParseError(f"{len(nonce)} bytes; expected 32", field="attestation.nonce")
    signature = data.get("signature")
    if signature is None and aci is None:
        raise ParseError("missing (a bundle without ACI artifacts needs the signature record)", field="signature")
    if signature is not None and not isinstance(signature, Mapping):
        raise ParseError("must be an object", field="signature")
    nras = data.get("nras") or {}
    if not isinstance(nras, Mapping):
        raise ParseError("must be an object", field="nras")
    verified_at = parse_time(data.get("verified_at"), field="verified_at")
    policy_d = data.get("policy") or {}
    if not isinstance(policy_d, Mapping):
        raise ParseError("must be an object", field="policy")
    try:
        policy = Policy.from_dict(dict(policy_d))
    except (InputError, TypeError, ValueError, AttributeError) as exc:
        raise ParseError(f"unusable trust settings: {exc}", field="policy") from None
    report = att.get("report")
    if report is not None and not isinstance(report, Mapping):
        raise ParseError("must be an object", field="attestation.report")
    recorded = data.get("verdict")
    if recorded is not None:
        # Read now, so re-verifying a bundle with a damaged recorded verdict reports that instead of crashing.
        try:
            Verdict.from_dict(recorded)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ParseError(f"the recorded verdict is malformed ({exc!r:.100})", field="verdict") from None
    collateral = data.get("collateral")
    gateway_collateral = data.get("gateway_collateral")
    for name, value in (("collateral", collateral), ("gateway_collateral", gateway_collateral)):
        if value is not None and not isinstance(value, Mapping):
            # Only an object: a string would be taken as a *path* by load_collateral, and a bundle from elsewhere
            # must never make the verifier read a local file (or /dev/zero).
            raise ParseError("must be an object (dcap-qvl collateral) or null", field=name)
    endpoint = data.get("endpoint") or {}
    if not isinstance(endpoint, Mapping):
        raise ParseError("must be an object", field="endpoint")
    created_at = parse_time(data.get("created_at") or 0.0, field="created_at")
    fetched_at = parse_optional_time(att.get("fetched_at"), field="attestation.fetched_at")
    return Bundle(
        exchange=Exchange.from_dict(data["exchange"]) if data.get("exchange") is not None else None,
        signature=SignatureRecord.from_dict(signature) if signature is not None else None,
        report=dict(report) if report is not None else None,
        nonce=nonce, policy=policy, verified_at=verified_at,
        collateral=collateral, nras_response=nras.get("response"), jwks=nras.get("jwks"),
        endpoint=dict(endpoint),
        recorded_verdict=dict(recorded) if isinstance(recorded, Mapping) else None,
        created_at=created_at, phalanb_version=str(data.get("phalanb_version", "?")),
        fetched_at=fetched_at, gateway_collateral=gateway_collateral,
        aci=aci, rims=_rims_part(data.get("rims")),
    )


def _rims_part(value: Any) -> dict[str, Any] | None:
    """The bundle's RIMs, checked for shape now (their signatures are checked when the appraisal runs)."""
    if value is None:
        return None
    from ..gpu.appraise import RimStore

    RimStore.from_dict(value)
    return dict(value)


def _b64(value: Any, field_name: str, *, limit: int = MAX_BUNDLE_BYTES) -> bytes:
    if not isinstance(value, str):
        raise ParseError("must be base64 text", field=field_name)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ParseError("not base64", field=field_name) from None
    if len(raw) > limit:
        raise ParseError(f"{len(raw)} bytes exceeds the limit", field=field_name)
    return raw


def _aci_part(value: Any) -> dict[str, Any] | None:
    """The ``aci`` object of a schema-2 bundle, checked for shape (its content is verified, never believed)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ParseError("must be an object", field="aci")
    _b64(value.get("report_b64"), "aci.report_b64")
    _b64(value.get("receipt_b64"), "aci.receipt_b64")
    nonce = value.get("nonce")
    if nonce is not None:
        try:
            if len(bytes.fromhex(nonce)) != 32:
                raise ValueError
        except (TypeError, ValueError):
            raise ParseError("must be 64 hex digits or null", field="aci.nonce") from None
    sessions = value.get("sessions") or {}
    if not isinstance(sessions, Mapping):
        raise ParseError("must be an object (session id → base64)", field="aci.sessions")
    for sid, raw in sessions.items():
        _b64(raw, f"aci.sessions.{sid}")
    upstream = value.get("upstream") or {}
    if not isinstance(upstream, Mapping) or not all(isinstance(v, Mapping) for v in upstream.values()):
        raise ParseError("must be an object of objects", field="aci.upstream")
    for sid, ev in upstream.items():
        col = ev.get("collateral")
        if col is not None and not isinstance(col, Mapping):
            # As for the top-level collateral: a string would be read as a *path* by load_collateral.
            raise ParseError("must be an object or null", field=f"aci.upstream.{sid}.collateral")
    col = value.get("collateral")
    if col is not None and not isinstance(col, Mapping):
        raise ParseError("must be an object or null", field="aci.collateral")
    for key in ("tls_spki_sha256", "keyset_digest_header", "host"):
        if value.get(key) is not None and not isinstance(value.get(key), str):
            raise ParseError("must be a string or null", field=f"aci.{key}")
    return dict(value)


def make_aci_bundle(exchange: Exchange | None, *, attestation: Any, receipt: Any, sessions: Mapping[str, bytes],
                    policy: Policy, verdict: Verdict | None, online: Any = None, host: str | None = None,
                    verified_at: float | None = None, endpoint: Mapping[str, Any] | None = None,
                    rims: Any = None) -> Bundle:
    """Collect the evidence of one ACI verification: ``attestation`` an :class:`~phalanb.wire.client.AciAttestationFetch`,
    ``receipt`` an :class:`~phalanb.wire.client.AciFetch`, ``sessions`` session id → exact bytes, ``online`` an
    :class:`~phalanb.audit.evidence.AciOnlineEvidence`, ``rims`` the RimStore the upstream GPUs were appraised
    with (kept, so the deep audit's appraisal re-runs offline)."""
    now = time.time()
    aci = {
        "report_b64": base64.b64encode(attestation.raw).decode(),
        "nonce": attestation.nonce.hex() if attestation.nonce else None,
        "fetched_at": attestation.fetched_at,
        "receipt_b64": base64.b64encode(receipt.raw).decode(),
        "sessions": {sid: base64.b64encode(raw).decode() for sid, raw in sessions.items()},
        "collateral": getattr(online, "collateral", None),
        "upstream": online.upstream_dict() if online is not None else {},
        "tls_spki_sha256": getattr(exchange, "tls_spki_sha256", None),
        "keyset_digest_header": getattr(exchange, "aci_keyset_digest", None),
        "host": host,
    }
    return Bundle(exchange=exchange, signature=None, report=None, nonce=None, policy=policy,
                  verified_at=verified_at if verified_at is not None else now, endpoint=dict(endpoint or {}),
                  recorded_verdict=verdict.to_dict() if verdict is not None else None, created_at=now,
                  fetched_at=attestation.fetched_at, aci=aci, rims=rims.to_dict() if rims is not None else None)


def verify_bundle(bundle: Bundle, *, policy: Policy, at: float) -> Verdict:
    """The verdict a bundle's evidence gives now: :func:`phalanb.gateway.verify_aci` for ACI bundles,
    :func:`phalanb.gateway.verify_exchange` for the model servers' protocol."""
    if bundle.rims is not None and policy.rims is None:
        # RIMs and OCSP answers are signed evidence: the ones the bundle kept are used (and verified against the
        # pinned NVIDIA root) unless the auditor names their own.
        from ..gpu.appraise import RimStore

        policy = replace(policy, rims=RimStore.from_dict(bundle.rims))
    if bundle.aci is not None:
        from ..gateway import verify_aci

        a = bundle.aci
        nonce = bytes.fromhex(a["nonce"]) if a.get("nonce") else None
        sessions = {sid: _b64(v, f"aci.sessions.{sid}") for sid, v in (a.get("sessions") or {}).items()}
        return verify_aci(bundle.exchange, receipt=_b64(a["receipt_b64"], "aci.receipt_b64"),
                          report=_b64(a["report_b64"], "aci.report_b64"), nonce=nonce, sessions=sessions,
                          policy=policy, collateral=a.get("collateral"), at=at, upstream=a.get("upstream") or {},
                          tls_spki_sha256=a.get("tls_spki_sha256"), keyset_digest_header=a.get("keyset_digest_header"),
                          host=a.get("host"))
    from ..gateway import verify_exchange

    return verify_exchange(bundle.exchange, bundle.signature, bundle.report, nonce=bundle.nonce, policy=policy,
                           collateral=bundle.collateral, nras_response=bundle.nras_response, jwks=bundle.jwks, at=at,
                           gateway_collateral=bundle.gateway_collateral)


@dataclass
class Reverification:
    """The verdict reached now, the one recorded, and what differs between them."""

    verdict: Verdict
    recorded: Verdict | None
    recorded_status: str | None
    at: float
    differences: list[str]

    @property
    def same(self) -> bool:
        return not self.differences

    def explain(self) -> str:
        if self.recorded_status is None:
            return "the bundle records no verdict"
        if self.same:
            return f"same verdict as recorded: {self.verdict.status}"
        return (f"the verdict differs from the recorded one ({self.recorded_status} → {self.verdict.status}): "
                + "; ".join(self.differences))


def reverify(bundle: Bundle, *, at: float | None = None, policy: Policy | None = None,
             trust: str = "production") -> Reverification:
    """Verify the bundle's evidence again, offline, at ``at`` (default: the original verification time).

    The *auditor's* policy decides what is trusted, never the bundle's: by default Intel's and NVIDIA's pinned
    production roots (``trust="simulated"`` accepts phalanb's simulator roots, and says so in the verdict).
    Whoever wrote the bundle could have written any roots and any TCB tolerance into it; its recorded policy is
    only compared, and a difference is reported.
    """
    policy = policy or Policy(trust=trust)
    when = parse_time(bundle.verified_at if at is None else at, field="verified_at" if at is None else "at",
                      allow_now=at is not None)
    verdict = verify_bundle(bundle, policy=policy, at=when)
    recorded = Verdict.from_dict(bundle.recorded_verdict) if bundle.recorded_verdict else None
    recorded_status = (bundle.recorded_verdict or {}).get("status")
    differences: list[str] = []
    if recorded is not None:
        if recorded_status != recorded.status:
            differences.append(f"the bundle claims {recorded_status!r} but its own recorded checks give "
                               f"{recorded.status!r} (the bundle was edited)")
        old = {c.id: c for c in recorded}
        for c in verdict:
            before = old.pop(c.id, None)
            if before is None:
                differences.append(f"{c.id} is new: {c.status.value} ({c.reason})")
            elif before.status != c.status:
                differences.append(f"{c.id}: recorded {before.status.value}, now {c.status.value} ({c.reason})")
        for cid in old:
            differences.append(f"{cid} was recorded but is not checked now")
        if recorded_status == recorded.status and recorded.status != verdict.status and not differences:
            differences.append(f"overall {recorded.status} → {verdict.status}")
    if bundle.policy.trust != policy.trust:
        differences.insert(0, f"the bundle was verified with {bundle.policy.trust} trust and is re-verified with "
                              f"{policy.trust} trust" + (" (pass trust='simulated' / --trust simulated to check "
                                                          "simulator evidence as such)"
                                                          if bundle.policy.trust == "simulated" else ""))
    return Reverification(verdict, recorded, recorded_status, when, differences)

