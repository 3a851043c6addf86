"""ACI attested sessions (``GET /v1/aci/sessions/{id}``), parsed: the aggregator's record of how it verified an
upstream model server, which a receipt cites by id (ACI.md §5).

- **current**: the id is *not* inside: ``session_id = hex(sha256(JCS(document)))``.
- **preview**: ``session_id = "as_" + hex(sha256(JCS({provider, endpoint, verifier_id, identity,
  channel_binding, claims, evidence_digest})))`` — timestamps and evidence data excluded.

``evidence`` is ``{digest, data}`` with ``data`` a ``data:`` URI (base64; ``multipart/*`` bodies are split into
their parts). Entries of the session *list* drop ``evidence.data`` and add ``session_id``, so they never hash to
their id: :func:`parse_session_list` says so and the full record must be fetched.

>>> s = parse_session(served_bytes)                 # doctest: +SKIP
>>> s.id, s.claims["tee_attested"].status           # doctest: +SKIP
('95ad1cb4…', 'asserted')
"""

from __future__ import annotations

import base64
import binascii
import email.parser
import email.policy
import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import unquote_to_bytes

from ..errors import ParseError
from . import jcs
from ._util import obj, opt_int, opt_str, read_document

__all__ = ["AttestedSession", "Claim", "EvidencePart", "SessionListEntry", "parse_session",
           "parse_session_list", "decode_data_uri", "CLAIM_NAMES", "CLAIM_STATUSES",
           "CLAIM_SOURCES", "MAX_SESSION_BYTES", "BINDING_TYPES"]

#: Sessions carry the upstream's evidence (a report with GPU evidence: a few MB at most).
MAX_SESSION_BYTES = 16 * 1024 * 1024

CLAIM_NAMES = ("tee_attested", "gpu_attested", "tcb_up_to_date", "os_known_good", "serving_software_known_good",
               "model_weights_provenance")
CLAIM_STATUSES = ("asserted", "refuted", "unknown")
CLAIM_SOURCES = ("hardware_proven", "verifier_derived", "provider_asserted", "operator_asserted")


@dataclass(frozen=True)
class Claim:
    status: str
    source: str | None = None
    reason: str | None = None


@dataclass
class EvidencePart:
    media_type: str
    data: bytes


@dataclass
class AttestedSession:
    shape: str                         # "current" or "preview"
    id: str                            # computed, never read from the document
    declared_id: str | None            # preview: the session_id the document states (compared, not trusted)
    upstream_name: str | None          # current upstream_name; preview provider
    endpoint: str | None
    verifier_id: str | None
    established_at: int | None
    expires_at: int | None
    identity: dict[str, Any] | None
    channel_binding: list[Any]
    claims: dict[str, Claim]
    extra_claims: dict[str, Any]
    evidence_digest: str | None        # as claimed
    evidence_data_uri: str | None
    evidence_media_type: str | None
    evidence_bytes: bytes | None       # decoded data URI
    evidence_parts: list[EvidencePart] = field(default_factory=list)   # multipart/* split; else one part
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def evidence_sha256(self) -> str | None:
        return None if self.evidence_bytes is None else "sha256:" + hashlib.sha256(self.evidence_bytes).hexdigest()


@dataclass
class SessionListEntry:
    session_id: str | None
    document: dict[str, Any]
    note: str = ("a list entry drops evidence.data and adds session_id, so it does not hash to its id: fetch "
                 "GET /v1/aci/sessions/{id} for the full record")


def decode_data_uri(uri: str, *, field_name: str = "evidence.data") -> tuple[str, bytes, list[EvidencePart]]:
    """``data:<type>[;params][;base64],<payload>`` → (media type with params, bytes, parts). ``multipart/*`` bodies
    are split into their parts; any other type is one part."""
    if not uri.startswith("data:") or "," not in uri:
        raise ParseError("is not a data: URI", field=field_name)
    head, payload = uri[5:].split(",", 1)
    params = head.split(";")
    is_b64 = params[-1].strip().lower() == "base64"
    if is_b64:
        params = params[:-1]
    media = ";".join(params) or "text/plain;charset=US-ASCII"
    if is_b64:
        try:
            raw = base64.b64decode(payload.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise ParseError("is not valid base64", field=field_name) from None
    else:
        raw = unquote_to_bytes(payload)
    mtype = params[0].strip().lower() if params else "text/plain"
    if mtype.startswith("multipart/"):
        return media, raw, _multipart(media, raw, field_name)
    return media, raw, [EvidencePart(mtype, raw)]


def _multipart(media: str, raw: bytes, field_name: str) -> list[EvidencePart]:
    if "boundary=" not in media.replace(" ", ""):
        raise ParseError(f"{media!r} has no boundary parameter", field=field_name)
    header = f"Content-Type: {media}\r\nMIME-Version: 1.0\r\n\r\n".encode("ascii", "replace")
    msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(header + raw)
    if not msg.is_multipart():
        raise ParseError("claims multipart but its body has no parts", field=field_name)
    parts = []
    for p in msg.get_payload():
        body = p.get_payload(decode=True)
        parts.append(EvidencePart(p.get_content_type(), body if isinstance(body, bytes) else b""))
    if not parts:
        raise ParseError("claims multipart but its body has no parts", field=field_name)
    return parts


def _claims(doc: Mapping[str, Any]) -> tuple[dict[str, Claim], dict[str, Any]]:
    raw = obj(doc, "claims", "", required=False) or {}
    claims: dict[str, Claim] = {}
    extra: dict[str, Any] = {}
    for name, value in raw.items():
        if name == "extra":
            if not isinstance(value, Mapping):
                raise ParseError("must be an object", field="claims.extra")
            extra = dict(value)
            continue
        if not isinstance(value, Mapping):
            raise ParseError("must be an object {status, source?, reason?}", field=f"claims.{name}")
        status = opt_str(value, "status", f"claims.{name}.")
        if status not in CLAIM_STATUSES:
            # Docs show "Asserted"; the wire is lower snake_case. An unknown status is not guessed at.
            raise ParseError(f"status is {status!r}; one of {', '.join(CLAIM_STATUSES)} expected",
                             field=f"claims.{name}.status")
        claims[name] = Claim(status, opt_str(value, "source", f"claims.{name}."),
                             opt_str(value, "reason", f"claims.{name}."))
    return claims, extra


def _preview_id(doc: Mapping[str, Any], evidence_digest: str | None) -> str:
    subset = {"provider": doc.get("provider"), "endpoint": doc.get("endpoint"), "verifier_id": doc.get("verifier_id"),
              "identity": doc.get("identity"), "channel_binding": doc.get("channel_binding"),
              "claims": doc.get("claims"), "evidence_digest": evidence_digest}
    return "as_" + hashlib.sha256(jcs.canonicalize(subset)).hexdigest()


#: Channel binding types a session may carry (ACI-v3.md §7) and the members each needs; others are not enforceable.
BINDING_TYPES = {"tls_spki_sha256": ("origin", "spki_sha256"),
                 "tls_certificate_sha256": ("origin", "certificate_sha256"),
                 "e2ee_public_key_sha256": ("provider", "algorithm", "public_key_sha256")}


def _check_bindings(binding: list[Any]) -> None:
    for i, b in enumerate(binding):
        if not isinstance(b, Mapping):
            raise ParseError("must be an object {type, …}", field=f"channel_binding[{i}]")
        kind = opt_str(b, "type", f"channel_binding[{i}].")
        for member in BINDING_TYPES.get(kind or "", ()):
            value = opt_str(b, member, f"channel_binding[{i}].")
            if value is None:
                raise ParseError(f"a {kind} binding needs {member}", field=f"channel_binding[{i}].{member}")
            if member.endswith("sha256") and not (len(value) == 64 and all(c in "0123456789abcdef" for c in value)):
                raise ParseError("must be 64 lowercase hex (a bare sha256)", field=f"channel_binding[{i}].{member}")


def parse_session(data: bytes | str | Mapping[str, Any], *, cited: str | None = None) -> AttestedSession:
    """Parse a full session record and compute its id by its shape's rule. Raises
    :class:`~phalanb.errors.ParseError` on malformed input (incl. an undecodable evidence URI).

    ``cited``: the id the receipt cites. A v3 session document is shaped exactly like a current one (ACI-v3.md
    §9), so the id rule comes from the citing id's form: ``sha256:<hex>`` (v3) hashes the exact bytes served, which
    must then be given as bytes; without ``cited`` the document's own markers decide (current or preview)."""
    from . import v3

    if cited is not None and v3.session_id_shape(cited) == v3.SHAPE:
        if not isinstance(data, (bytes, bytearray, memoryview, str)):
            raise ParseError("a v3 session id is sha256 of the exact bytes served: pass those bytes, not a parsed "
                             "document", field="session")
        served = bytes(data) if not isinstance(data, str) else data.encode("utf-8")
        doc = read_document(served, what="session", max_bytes=MAX_SESSION_BYTES)
        if "session_id" in doc or "provider" in doc:
            raise ParseError("a v3 session (cited by a sha256: id) carries neither session_id nor provider (preview "
                             "members): the shapes are mixed, or this is a session list entry", field="session")
        return _build(doc, shape=v3.SHAPE, sid=v3.served_sha256(served), declared=None)
    doc = read_document(data, what="session", max_bytes=MAX_SESSION_BYTES)
    if doc.get("api_version") != "aci/1":
        said = "is missing" if doc.get("api_version") is None else f"is {doc.get('api_version')!r}"
        raise ParseError(f"{said}: an ACI session document (GET /v1/aci/sessions/ID) says \"aci/1\"",
                         field="api_version")
    declared = opt_str(doc, "session_id", "")
    preview = declared is not None or "provider" in doc
    if preview and "upstream_name" in doc:
        raise ParseError("mixes the preview shape (session_id/provider) with the current one (upstream_name)",
                         field="session")
    if declared is not None and not declared.startswith("as_"):
        raise ParseError("a session document carrying its own session_id is the preview shape, whose ids start "
                         "with 'as_' (a session *list* entry? fetch the full record)", field="session_id")
    # The preview id covers the evidence digest; everything else is read (and refused) once, by _build.
    ev = obj(doc, "evidence", "", required=False) or {}
    digest = opt_str(ev, "digest", "evidence.") or (opt_str(doc, "evidence_digest", "") if preview else None)
    sid = _preview_id(doc, digest) if preview else hashlib.sha256(jcs.canonicalize(doc)).hexdigest()
    return _build(doc, shape="preview" if preview else "current", sid=sid, declared=declared)


def _build(doc: dict[str, Any], *, shape: str, sid: str, declared: str | None) -> AttestedSession:
    preview = shape == "preview"
    if doc.get("api_version") != "aci/1":
        said = "is missing" if doc.get("api_version") is None else f"is {doc.get('api_version')!r}"
        raise ParseError(f"{said}: an ACI session document (GET /v1/aci/sessions/ID) says \"aci/1\"",
                         field="api_version")
    ev = obj(doc, "evidence", "", required=False) or {}
    digest = opt_str(ev, "digest", "evidence.") or (opt_str(doc, "evidence_digest", "") if preview else None)
    uri = opt_str(ev, "data", "evidence.")
    media = body = None
    parts: list[EvidencePart] = []
    if uri is not None:
        media, body, parts = decode_data_uri(uri)
    claims, extra = _claims(doc)
    binding = doc.get("channel_binding") or []
    if not isinstance(binding, list):
        raise ParseError("must be a list", field="channel_binding")
    if shape == "v3":
        _check_bindings(binding)
    return AttestedSession(
        shape=shape, id=sid, declared_id=declared,
        upstream_name=opt_str(doc, "provider" if preview else "upstream_name", ""),
        endpoint=opt_str(doc, "endpoint", ""), verifier_id=opt_str(doc, "verifier_id", ""),
        established_at=opt_int(doc, "established_at", ""), expires_at=opt_int(doc, "expires_at", ""),
        identity=obj(doc, "identity", "", required=False), channel_binding=list(binding), claims=claims,
        extra_claims=extra, evidence_digest=digest, evidence_data_uri=uri, evidence_media_type=media,
        evidence_bytes=body, evidence_parts=parts, raw=doc)


def parse_session_list(data: bytes | str | Mapping[str, Any]) -> list[SessionListEntry]:
    """``{"api_version":"aci/1","sessions":[…]}`` → entries. Entries are summaries: they do not hash to their id."""
    doc = read_document(data, what="session list", max_bytes=MAX_SESSION_BYTES)
    sessions = doc.get("sessions")
    if not isinstance(sessions, list):
        raise ParseError("must be a list", field="sessions")
    out = []
    for i, s in enumerate(sessions):
        if not isinstance(s, Mapping):
            raise ParseError("must be an object", field=f"sessions[{i}]")
        out.append(SessionListEntry(opt_str(s, "session_id", f"sessions[{i}]."), dict(s)))
    return out
