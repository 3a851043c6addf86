"""The ACI attestation report (``GET /v1/aci/attestation``), parsed: no crypto, no judgement.

Three wire shapes are all called ``aci/1`` (ACI.md §0, §2; ACI-v3.md): **v3** (``workload_keyset_b64``: the
keyset's exact bytes, hashed as served; :func:`parse_v3_report`), **current** (Aug 2026: keyset object with
``not_after``, no ``workload_id``) and **preview** (the June 2026 build: ``workload_id``, ``workload_identity``,
``keyset_epoch``, ``keyset_endorsement``). :func:`parse_aci_report` says which it saw, from explicit markers only
(:func:`phalanb.aci.v3.report_shape`); a report carrying markers of two is refused, because every binding is
computed by one shape's rules and a mixture has no single meaning.

The legacy ``/v1/attestation/report`` answer of the same gateway carries the keyset fields next to
``signing_address``/``intel_quote``/``nvidia_payload`` (ACI.md §4): its quote binds a *legacy* report_data, not
the keyset, so :func:`is_legacy_gateway_report` tells it apart and it is never parsed as an ACI report.

>>> report = parse_aci_report(open("report.json", "rb").read())       # doctest: +SKIP
>>> report.shape, report.claimed_keyset_digest[:15]                   # doctest: +SKIP
('preview', 'sha256:46cdea44')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import ParseError
from . import jcs
from ._util import obj, opt_str, read_document, req_int, req_str

__all__ = ["AciReport", "AciEvidence", "parse_aci_report", "parse_v3_report", "parse_v3_keyset", "is_aci_report",
           "is_legacy_gateway_report", "MAX_REPORT_BYTES", "SHAPES"]

#: A real report (quote + event log + custody) is ~30 KB; a few MB is already absurd.
MAX_REPORT_BYTES = 4 * 1024 * 1024

SHAPES = {
    "v3": "aci/1 v3, the served-bytes revision (workload_keyset_b64 hashed as served; receipt envelopes; E2EE v3)",
    "current": "aci/1 of August 2026 (aug-2026: keyset object hashed as JCS, not_after, no workload_id)",
    "preview": "aci/1 preview build of June 2026 (preview-2026-06: workload_id, keyset_epoch, keyset endorsement)",
}

_LEGACY_MARKERS = ("signing_address", "intel_quote", "nvidia_payload")


@dataclass
class AciEvidence:
    """``attestation.evidence``: the gateway's TDX evidence and what ties its keys to the measured code."""

    quote: str | None = None
    quote_report_data: str | None = None
    event_log_text: str | None = None          # as served: a JSON *string* of the RTMR event array
    event_log: list[Any] | None = None         # that string, parsed
    vm_config: Any = None                      # a JSON string (kept as served; parsed leniently by derive)
    app_compose: str | None = None
    key_custody: dict[str, Any] | None = None
    downstream_tls_binding: dict[str, Any] | None = None


@dataclass
class AciReport:
    """One parsed ACI report. ``keyset`` is the ``workload_keyset`` object exactly as parsed (unknown members kept:
    the digest covers them)."""

    shape: str
    api_version: str
    claimed_keyset_digest: str
    keyset: dict[str, Any]
    report_data: str
    evidence: AciEvidence
    tee_type: str | None = None
    source_provenance: dict[str, Any] | None = None
    serving: str = "aggregator"
    serving_raw: str | None = None
    supported_e2ee_versions: list[Any] = field(default_factory=list)
    workload_id: str | None = None             # preview
    keyset_endorsement: dict[str, Any] | None = None   # preview
    freshness: dict[str, Any] | None = None    # preview (advisory, not bound)
    keyset_bytes: bytes | None = field(default=None, repr=False)   # v3: the decoded workload_keyset_b64, as served
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def description(self) -> str:
        return SHAPES[self.shape]

    @property
    def not_after(self) -> int:
        if self.shape == "preview":
            return self.keyset["keyset_epoch"]["not_after"]
        return self.keyset["not_after"]

    @property
    def receipt_signing_keys(self) -> list[dict[str, Any]]:
        return list(self.keyset.get("receipt_signing_keys") or [])

    @property
    def e2ee_public_keys(self) -> list[dict[str, Any]]:
        return list(self.keyset.get("e2ee_public_keys") or [])

    @property
    def tls_public_keys(self) -> list[dict[str, Any]]:
        return list(self.keyset.get("tls_public_keys") or [])

    @property
    def identity_public_key(self) -> dict[str, Any] | None:
        """Preview: ``workload_identity.public_key`` (``{algo, public_key}``), whose JCS hash is the workload_id."""
        ident = self.keyset.get("workload_identity")
        return ident.get("public_key") if isinstance(ident, dict) else None


def _markers(doc: Mapping[str, Any], att: Mapping[str, Any], keyset: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    preview = [name for name, present in (
        ("workload_id", "workload_id" in doc),
        ("workload_keyset.keyset_epoch", "keyset_epoch" in keyset),
        ("workload_keyset.workload_identity", "workload_identity" in keyset),
        ("attestation.keyset_endorsement", "keyset_endorsement" in att),
    ) if present]
    current = [name for name, present in (
        ("workload_keyset.not_after", "not_after" in keyset),
        ("workload_keyset.subject", "subject" in keyset),
    ) if present]
    return preview, current


def is_legacy_gateway_report(obj_: Any) -> bool:
    """True for the gateway's legacy ``/v1/attestation/report`` answer: ACI keyset fields *alongside*
    ``signing_address``/``intel_quote``/``nvidia_payload``. Its quote binds the legacy report_data, not the keyset."""
    if not isinstance(obj_, Mapping):
        return False
    att = obj_.get("attestation")
    has_keyset = "workload_keyset_digest" in obj_ or (isinstance(att, Mapping) and "workload_keyset" in att)
    return has_keyset and any(k in obj_ for k in _LEGACY_MARKERS)


def is_aci_report(obj_: Any) -> bool:
    """True for an ``aci/1`` attestation report (either shape), False for anything else — including the legacy
    gateway answer, which looks similar but must not establish a keyset."""
    return (isinstance(obj_, Mapping) and obj_.get("api_version") == "aci/1"
            and isinstance(obj_.get("attestation"), Mapping) and not is_legacy_gateway_report(obj_))


def _keys_list(keyset: Mapping[str, Any], name: str, where: str, needed: tuple[str, ...]) -> None:
    value = keyset.get(name)
    if value is None:
        if name == "receipt_signing_keys":
            raise ParseError("is missing (a list of keys is required)", field=f"{where}{name}")
        return
    if not isinstance(value, list):
        raise ParseError(f"must be a list, is a {type(value).__name__}", field=f"{where}{name}")
    for i, entry in enumerate(value):
        if not isinstance(entry, Mapping):
            raise ParseError("must be an object", field=f"{where}{name}[{i}]")
        for k in needed:
            req_str(entry, k, f"{where}{name}[{i}].")


def _evidence(att: Mapping[str, Any]) -> AciEvidence:
    ev = obj(att, "evidence", "attestation.", required=False)
    if ev is None:
        return AciEvidence()
    w = "attestation.evidence."
    log_text = ev.get("event_log")
    log = None
    if isinstance(log_text, str):
        log = jcs.loads(log_text, what="attestation.evidence.event_log")
        if not isinstance(log, list):
            raise ParseError("must be a JSON string holding a list of events", field=f"{w}event_log")
    elif isinstance(log_text, list):  # tolerated: some tools store it unwrapped
        log, log_text = log_text, None
    elif log_text is not None:
        raise ParseError(f"must be a JSON string of the event list, is a {type(log_text).__name__}",
                         field=f"{w}event_log")
    custody = obj(ev, "key_custody", w, required=False)
    if custody is not None:
        keys = custody.get("keys")
        if not isinstance(keys, list) or not all(isinstance(k, Mapping) for k in keys):
            raise ParseError("must be a list of objects", field=f"{w}key_custody.keys")
    return AciEvidence(
        quote=opt_str(ev, "quote", w), quote_report_data=opt_str(ev, "quote_report_data", w),
        event_log_text=log_text if isinstance(log_text, str) else None, event_log=log,
        vm_config=ev.get("vm_config"), app_compose=opt_str(ev, "app_compose", w), key_custody=custody,
        downstream_tls_binding=obj(ev, "downstream_tls_binding", w, required=False))


def parse_aci_report(data: bytes | str | Mapping[str, Any], *, legacy_body: bool = False) -> AciReport:
    """Parse an ``aci/1`` report (bytes, text or a parsed object) and name its shape.

    Raises :class:`~phalanb.errors.ParseError` for anything malformed: not aci/1, oversized, duplicate member
    names, floats, non-ASCII member names, missing or mistyped fields, a mixture of the two shapes, or the legacy
    gateway answer (which must not be read as an ACI report).

    ``legacy_body=True`` reads the ACI fields *printed inside* that legacy answer (to recompute its keyset digest
    and check its endorsement); its quote binds the legacy report_data, so such a report never establishes a keyset.
    """
    doc = read_document(data, what="report", max_bytes=MAX_REPORT_BYTES)
    version = doc.get("api_version")
    if version != "aci/1":
        said = "is missing" if version is None else f"is {version!r}"
        raise ParseError(f"{said}: an ACI report (the answer of GET /v1/aci/attestation) says \"aci/1\", the only "
                         "version phalanb reads", field="api_version")
    if is_legacy_gateway_report(doc) and not legacy_body:
        raise ParseError("this is the gateway's legacy /v1/attestation/report answer (signing_address, "
                         "intel_quote…): its quote does not bind the keyset; fetch /v1/aci/attestation instead",
                         field="report")
    from . import v3

    if v3.report_shape(doc) == v3.SHAPE:
        return parse_v3_report(doc)
    att = obj(doc, "attestation", "")
    keyset = obj(att, "workload_keyset", "attestation.")
    preview, current = _markers(doc, att, keyset)
    if preview and current:
        raise ParseError(f"mixes the preview shape ({', '.join(preview)}) with the current one "
                         f"({', '.join(current)}); no single set of rules applies", field="report")
    shape = "preview" if preview else "current"
    kw = "attestation.workload_keyset."
    workload_id = endorsement = freshness = None
    if shape == "preview":
        missing = [m for m in ("workload_id", "workload_keyset.keyset_epoch", "workload_keyset.workload_identity")
                   if m not in preview]
        if missing:
            raise ParseError(f"a preview-shape report needs {', '.join(missing)}", field="report")
        workload_id = req_str(doc, "workload_id", "")
        epoch = obj(keyset, "keyset_epoch", kw)
        req_int(epoch, "not_after", f"{kw}keyset_epoch.")
        ident = obj(keyset, "workload_identity", kw)
        pk = obj(ident, "public_key", f"{kw}workload_identity.")
        req_str(pk, "algo", f"{kw}workload_identity.public_key.")
        req_str(pk, "public_key", f"{kw}workload_identity.public_key.")
        endorsement = obj(att, "keyset_endorsement", "attestation.", required=False)
        freshness = obj(att, "freshness", "attestation.", required=False)
    else:
        if not current:
            raise ParseError("has neither not_after (current shape) nor keyset_epoch (preview shape)",
                             field="attestation.workload_keyset")
        req_int(keyset, "not_after", kw)
        if keyset.get("subject") is not None:
            opt_str(keyset, "subject", kw)
    _keys_list(keyset, "receipt_signing_keys", kw, ("key_id", "algo", "public_key"))
    _keys_list(keyset, "e2ee_public_keys", kw, ("key_id", "algo", "public_key"))
    _keys_list(keyset, "tls_public_keys", kw, ("spki_sha256",))
    caps = obj(doc, "service_capabilities", "", required=False) or {}
    serving_raw = opt_str(caps, "serving", "service_capabilities.")
    # Unknown serving (the verifier-ts stub says "upstream") is treated as an aggregator: the stricter reading.
    serving = "direct" if serving_raw == "direct" else "aggregator"
    versions = caps.get("supported_e2ee_versions")
    return AciReport(
        shape=shape, api_version=version, claimed_keyset_digest=req_str(doc, "workload_keyset_digest", ""),
        keyset=keyset, report_data=req_str(att, "report_data", "attestation."), evidence=_evidence(att),
        tee_type=opt_str(att, "tee_type", "attestation."),
        source_provenance=obj(att, "source_provenance", "attestation.", required=False),
        serving=serving, serving_raw=serving_raw,
        supported_e2ee_versions=list(versions) if isinstance(versions, list) else [],
        workload_id=workload_id, keyset_endorsement=endorsement, freshness=freshness, raw=doc)


def parse_v3_keyset(data: bytes, *, field_name: str = "attestation.workload_keyset_b64") -> dict[str, Any]:
    """The v3 keyset from its exact bytes (ACI-v3.md §3): strict JSON (a duplicate member would let the digest
    cover content nobody read), ``not_after`` an integer, the key lists well formed."""
    keyset = jcs.loads(data, what=f"{field_name} (decoded keyset)")
    if not isinstance(keyset, Mapping):
        raise ParseError(f"decodes to a {type(keyset).__name__}, not a keyset object", field=field_name)
    keyset = dict(keyset)
    kw = f"{field_name}→"
    req_int(keyset, "not_after", kw)
    if keyset.get("subject") is not None:
        opt_str(keyset, "subject", kw)
    _keys_list(keyset, "receipt_signing_keys", kw, ("key_id", "algo", "public_key"))
    _keys_list(keyset, "e2ee_public_keys", kw, ("key_id", "algo", "public_key"))
    _keys_list(keyset, "tls_public_keys", kw, ("spki_sha256",))
    return keyset


def parse_v3_report(data: bytes | str | Mapping[str, Any]) -> AciReport:
    """A v3 report (ACI-v3.md §5), the parser of the ``v3`` shape (its marker: :func:`phalanb.aci.v3.is_v3_report`).
    The keyset is read from ``workload_keyset_b64``'s exact bytes, kept for the digest;
    ``service_capabilities.serving`` no longer exists (an old one is ignored, never used)."""
    from . import v3

    doc = read_document(data, what="report", max_bytes=MAX_REPORT_BYTES)
    if v3.report_shape(doc) != v3.SHAPE:
        raise ParseError("is not a v3 report (no workload_keyset_b64)", field="attestation.workload_keyset_b64")
    att = obj(doc, "attestation", "")
    raw = v3.strict_b64decode(att.get("workload_keyset_b64"), field="attestation.workload_keyset_b64")
    keyset = parse_v3_keyset(raw)
    caps = obj(doc, "service_capabilities", "", required=False) or {}
    versions = caps.get("supported_e2ee_versions")
    return AciReport(
        shape=v3.SHAPE, api_version="aci/1", claimed_keyset_digest=req_str(doc, "workload_keyset_digest", ""),
        keyset=keyset, report_data=req_str(att, "report_data", "attestation."), evidence=_evidence(att),
        tee_type=opt_str(att, "tee_type", "attestation."),
        source_provenance=obj(att, "source_provenance", "attestation.", required=False),
        serving="not stated", serving_raw=None,
        supported_e2ee_versions=list(versions) if isinstance(versions, list) else [], keyset_bytes=raw, raw=doc)
