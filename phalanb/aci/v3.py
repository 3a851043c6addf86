"""ACI "v3", the served-bytes revision of ``aci/1`` (``../shared/ACI-v3.md``): the rules that differ from the June
("preview") and August ("current") shapes, and the explicit markers that tell the three apart.

Upstream still calls all three ``aci/1``, so a document's shape is read from its *fields*, never guessed
(ACI-v3.md §9). Each marker function names the shape or refuses the document, naming the fields it found:

- report: v3 has ``attestation.workload_keyset_b64`` (a string) and no ``workload_keyset``; current has a
  ``workload_keyset`` object with ``not_after``; preview has ``workload_id`` / ``keyset_endorsement`` /
  ``keyset_epoch`` / ``workload_identity``. Both keyset forms, or b64 with a preview marker → refused.
- receipt: v3 is an envelope of exactly ``payload_b64, key_id, algo, signature``; current a document with a string
  ``signature``; preview a document whose ``signature`` is an object.
- cited session id: ``sha256:``+64 lowercase hex (v3), 64 lowercase hex (current), ``as_``+64 hex (preview).

v3 hashes and signs **the bytes served** (after strict base64 decoding), never a re-serialisation: the keyset
digest is ``sha256(decoded workload_keyset_b64)``, the receipt signature covers the decoded ``payload_b64``, and a
session id is ``sha256`` of the exact session bytes. Nonces are 1-128 characters of ``[0-9A-Za-z_-]``.

>>> report_shape({"api_version": "aci/1", "attestation": {"workload_keyset_b64": "e30="}})
'v3'
>>> check_nonce("test-nonce")
'test-nonce'
>>> session_id_shape("sha256:" + "0" * 64)
'v3'
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Any, Mapping

from ..errors import ParseError

__all__ = ["SHAPE", "SOURCE", "NONCE_RULE", "check_nonce", "nonce_ok", "strict_b64decode", "served_sha256",
           "report_shape", "is_v3_report", "receipt_shape", "session_id_shape", "session_fetch_id",
           "ENVELOPE_MEMBERS", "TEE_TYPES", "UNVERIFIABLE_TEE_TYPES", "certificate_sha256", "binding_holds"]

#: Where the v3 shape is defined (for a registry of shapes: markers, parser, checks, source).
SOURCE = ("Dstack-TEE/private-ai-gateway spec/aci.md @2b412cf6ba8b4a8ddb536cbb0e90fee169b3e297, vectors "
          "spec/test-vectors.md @9827446b81805389ddd453234a3ae9a0cfa0d892 (../shared/ACI-v3.md)")

#: The name phalanb gives this revision (upstream: still ``aci/1``; E2EE version 3).
SHAPE = "v3"

#: ACI-v3.md §4: the service rejects any other nonce, and a verifier must refuse to build a statement from one.
NONCE_RULE = "1-128 characters of [0-9A-Za-z_-]"
_NONCE = re.compile(r"[0-9A-Za-z_-]{1,128}")

#: The receipt envelope's members, exactly (ACI-v3.md §6).
ENVELOPE_MEMBERS = ("payload_b64", "key_id", "algo", "signature")

#: ``attestation.tee_type`` values v3 defines (§5); any other needs a published verifier extension.
TEE_TYPES = ("tdx", "sev_snp")
#: Defined by v3 but not verified by phalanb yet: named as such, never passed.
UNVERIFIABLE_TEE_TYPES = {"sev_snp": "AMD SEV-SNP attestation report: phalanb does not verify SEV-SNP evidence yet "
                                     "(its verification comes later), so this report's hardware link is unproven"}

_HEX64 = re.compile(r"[0-9a-f]{64}")


def nonce_ok(nonce: Any) -> bool:
    return isinstance(nonce, str) and _NONCE.fullmatch(nonce) is not None


def check_nonce(nonce: Any, *, field: str = "nonce") -> str:
    """``nonce`` when it is a legal v3 nonce; else a :class:`ParseError` saying what is wrong with it."""
    if not isinstance(nonce, str):
        raise ParseError(f"must be a string of {NONCE_RULE}, is a {type(nonce).__name__}", field=field)
    if not nonce:
        raise ParseError(f"is empty; a v3 nonce is {NONCE_RULE}", field=field)
    if len(nonce) > 128:
        raise ParseError(f"is {len(nonce)} characters; a v3 nonce is at most 128 ({NONCE_RULE})", field=field)
    bad = next((i for i, c in enumerate(nonce) if not _NONCE.fullmatch(c)), None)
    if bad is not None:
        raise ParseError(f"has {nonce[bad]!r} at offset {bad}; a v3 nonce is {NONCE_RULE}: no statement is built "
                         "from it", field=field, offset=bad)
    return nonce


def strict_b64decode(text: Any, *, field: str) -> bytes:
    """RFC 4648 standard base64 with padding, decoded strictly (ACI-v3.md trap 2): no stray characters, no
    non-zero pad bits (Python accepts both; the reference refuses them). The result re-encodes to ``text``."""
    if not isinstance(text, str):
        raise ParseError(f"must be a base64 string, is a {type(text).__name__}", field=field)
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise ParseError(f"is not standard base64 ({exc})", field=field) from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise ParseError("is not canonical base64 (non-zero pad bits or missing padding): the reference decoder "
                         "refuses it, and two spellings of the same bytes must not both verify", field=field)
    return raw


def served_sha256(data: bytes) -> str:
    """``sha256:`` + hex over exact served bytes: the v3 form of keyset digests, session ids and body hashes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- markers (ACI-v3.md §9): explicit fields only ------------------------------------------------------------------

def _found(doc: Mapping[str, Any]) -> str:
    att = doc.get("attestation")
    names = sorted(doc)
    if isinstance(att, Mapping):
        names += [f"attestation.{k}" for k in sorted(att)]
    return ", ".join(names) or "no members"


def report_shape(doc: Any) -> str:
    """``"v3"``, ``"current"`` or ``"preview"`` from a report's explicit markers; a :class:`ParseError` naming the
    fields found for anything else (another api_version, both keyset forms, a b64 keyset with preview markers,
    neither keyset form)."""
    if not isinstance(doc, Mapping):
        raise ParseError(f"an ACI report is a JSON object, got {type(doc).__name__}", field="report")
    version = doc.get("api_version")
    if version != "aci/1":
        said = "is missing" if version is None else f"is {version!r}"
        raise ParseError(f"{said}: an ACI report says \"aci/1\", the only version phalanb reads (found: "
                         f"{_found(doc)})", field="api_version")
    att = doc.get("attestation")
    if not isinstance(att, Mapping):
        raise ParseError(f"must be a JSON object (found: {_found(doc)})", field="attestation")
    has_b64 = "workload_keyset_b64" in att
    has_obj = "workload_keyset" in att
    keyset = att.get("workload_keyset") if isinstance(att.get("workload_keyset"), Mapping) else {}
    preview = [n for n, present in (("workload_id", "workload_id" in doc),
                                    ("attestation.keyset_endorsement", "keyset_endorsement" in att),
                                    ("attestation.vendor", "vendor" in att),
                                    ("attestation.freshness", "freshness" in att),
                                    ("workload_keyset.keyset_epoch", "keyset_epoch" in keyset),
                                    ("workload_keyset.workload_identity", "workload_identity" in keyset))
               if present]
    if has_b64 and has_obj:
        raise ParseError("carries both workload_keyset_b64 (v3) and workload_keyset (current/preview): the shapes "
                         "are mixed and no single set of rules applies", field="attestation")
    if has_b64:
        if preview:
            raise ParseError(f"carries workload_keyset_b64 (v3) and preview markers ({', '.join(preview)}): the "
                             "shapes are mixed", field="report")
        return SHAPE
    if not has_obj:
        raise ParseError(f"has neither workload_keyset_b64 (v3) nor workload_keyset (current/preview) (found: "
                         f"{_found(doc)})", field="attestation.workload_keyset_b64")
    return "preview" if preview else "current"


def is_v3_report(doc: Any) -> bool:
    """The v3 report marker as a yes/no: ``attestation.workload_keyset_b64`` present, no other shape's markers."""
    try:
        return report_shape(doc) == SHAPE
    except ParseError:
        return False


def receipt_shape(doc: Any) -> str:
    """``"v3"`` for an envelope of exactly :data:`ENVELOPE_MEMBERS`, ``"current"`` for a document with a string
    signature, ``"preview"`` for one whose signature is an object; a :class:`ParseError` for anything else."""
    if not isinstance(doc, Mapping):
        raise ParseError(f"an ACI receipt is a JSON object, got {type(doc).__name__}", field="receipt")
    if "payload_b64" in doc:
        extra = sorted(set(doc) - set(ENVELOPE_MEMBERS))
        if extra:
            raise ParseError(f"a v3 receipt envelope has only {', '.join(ENVELOPE_MEMBERS)}; this one also carries "
                             f"{', '.join(extra)}: the shapes are mixed", field="receipt")
        if not isinstance(doc.get("signature"), str):
            raise ParseError("a v3 receipt envelope's signature must be a hex string", field="signature")
        return SHAPE
    sig = doc.get("signature")
    if isinstance(sig, Mapping):
        return "preview"
    if isinstance(sig, str) and "api_version" in doc:
        return "current"
    raise ParseError(f"is neither a v3 envelope (payload_b64…) nor a current/preview receipt document (found: "
                     f"{', '.join(sorted(doc)) or 'no members'})", field="receipt")


def session_id_shape(cited: Any) -> str:
    """The shape a cited session id belongs to, from its form alone; a :class:`ParseError` for any other form
    (upper case, wrong length). The id rule of the cited document follows from it, never from the document."""
    if isinstance(cited, str):
        if cited.startswith("sha256:") and _HEX64.fullmatch(cited[7:]):
            return SHAPE
        if _HEX64.fullmatch(cited):
            return "current"
        if cited.startswith("as_") and _HEX64.fullmatch(cited[3:]):
            return "preview"
    raise ParseError(f"{str(cited)[:80]!r} is not a session id of any ACI shape (sha256:<64 lowercase hex> in v3, "
                     "64 lowercase hex in current, as_<64 hex> in preview)", field="session_id")


def session_fetch_id(cited: str) -> str:
    """What goes into ``GET /v1/aci/sessions/{id}``: v3 drops the ``sha256:`` prefix (ACI-v3.md §2)."""
    return cited[7:] if session_id_shape(cited) == SHAPE else cited


# -- channel bindings (ACI-v3.md §7) -------------------------------------------------------------------------------

def certificate_sha256(der_leaf: bytes) -> str:
    """What a ``tls_certificate_sha256`` binding names: bare hex sha256 of the DER-encoded leaf certificate (the
    spec does not say; the DER leaf is what both ends can hash byte for byte, ACI-v3.md §12.6). Unlike an SPKI
    binding it changes with every renewal."""
    return hashlib.sha256(bytes(der_leaf)).hexdigest()


def binding_holds(binding: Mapping[str, Any], *, certificate_der: bytes | None = None,
                  spki_sha256: str | None = None) -> bool | None:
    """Whether an observed TLS leaf (its DER, or its SPKI sha256) is the one a session binding names; None when the
    binding is of a type the observation cannot decide (another type, or nothing observed of that kind)."""
    kind = binding.get("type")
    if kind == "tls_certificate_sha256" and certificate_der is not None:
        return binding.get("certificate_sha256") == certificate_sha256(certificate_der)
    if kind == "tls_spki_sha256" and spki_sha256 is not None:
        return binding.get("spki_sha256") == spki_sha256.lower().removeprefix("sha256:")
    return None
