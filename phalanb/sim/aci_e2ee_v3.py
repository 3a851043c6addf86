"""The simulated v3 gateway terminates E2EE v3 (ACI-v3.md §8) with the X25519 key its keyset lists.

Validation in the reference's order: version missing → ``e2ee_header_missing``; version ≠ ``3`` (after trimming)
→ ``e2ee_invalid_version``; a key header missing → ``e2ee_header_missing``; a key not 32-byte hex →
``e2ee_invalid_public_key``; the model key not verbatim an attested X25519 entry → ``e2ee_model_key_mismatch``;
envelope, base64 or AEAD failure → ``e2ee_decryption_failed``.
The client key is lower-cased into the AAD. No replay cache, no timestamp.

The reply: a buffered body becomes ``{"sealed_b64":…}``; a stream keeps its framing and seals each event's data
(CRLF becomes LF, ``event:``/``id:``/comment lines stay in place, multi-line data is joined with LF, comment-only
events and ``data: [DONE]`` pass unsealed).
"""

from __future__ import annotations

import base64
import json
import re
from typing import Mapping

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from starlette.responses import Response

from .. import _json
from ..aci.e2ee_v3 import (
    CONTEXT_REQUEST, CONTEXT_RESPONSE, VERSION, open_unit, request_aad, response_aad, seal_unit,
)
from ..aci.v3 import strict_b64decode
from ..errors import E2EEError, ParseError
from .aci_docs import GatewayKeys

__all__ = ["GatewayE2EEv3", "OpenedV3", "seal_sse_event"]

_ANY_E2EE = ("x-e2ee-version", "x-client-pub-key", "x-model-pub-key", "x-e2ee-nonce", "x-e2ee-timestamp")
_HEX32 = re.compile(r"[0-9a-fA-F]{64}")


def _refuse(err_type: str, message: str) -> Response:
    body = json.dumps({"error": {"message": message, "type": err_type, "code": None, "param": None}},
                      separators=(",", ":")).encode()
    return Response(body, status_code=400, media_type="application/json")


def _envelope(unit: bytes) -> bytes:
    return json.dumps({"sealed_b64": base64.b64encode(unit).decode("ascii")}, separators=(",", ":")).encode()


def seal_sse_event(event: bytes, client_public: bytes, model: str) -> bytes:
    """One SSE event re-framed and sealed as the reference transformer does (ACI-v3.md §8)."""
    lines = [ln[:-1] if ln.endswith(b"\r") else ln for ln in event.split(b"\n")]
    kept: list[bytes] = []
    data: list[bytes] = []
    at = None
    for ln in lines:
        if ln.startswith(b"data:"):
            value = ln[5:]
            data.append(value[1:] if value.startswith(b" ") else value)
            at = len(kept) if at is None else at
        elif ln:
            kept.append(ln)
    if at is None:
        return b"".join(ln + b"\n" for ln in kept) + b"\n" if kept else b""
    payload = b"\n".join(data)
    if payload == b"[DONE]":
        line = b"data: [DONE]"
    else:
        unit = seal_unit(client_public, payload, response_aad(model), CONTEXT_RESPONSE)
        line = b"data: " + _envelope(unit)
    kept.insert(at, line)
    return b"".join(ln + b"\n" for ln in kept) + b"\n"


class OpenedV3:
    """One opened request: ``restored`` is the plaintext (what ``request.received`` hashes and what goes upstream)."""

    def __init__(self, restored: bytes, client_public: bytes, model: str):
        self.restored = restored
        self.client_public = client_public
        self.model = model
        self.response_headers = {"X-E2EE-Applied": "true", "X-E2EE-Version": VERSION}

    def seal_body(self, data: bytes) -> bytes:
        return _envelope(seal_unit(self.client_public, data, response_aad(self.model), CONTEXT_RESPONSE))

    def seal_event(self, event: bytes) -> bytes:
        return seal_sse_event(event, self.client_public, self.model)


class GatewayE2EEv3:
    """The v3 gateway's E2EE hook (see :class:`phalanb.sim.aci_gateway.E2eeHook`)."""

    def __init__(self, keys: GatewayKeys):
        self._private = X25519PrivateKey.from_private_bytes(keys.x25519_secret)
        self.public_hex = keys.x25519_public.hex()

    @staticmethod
    def requested(headers: Mapping[str, str]) -> bool:
        return any(h in headers for h in _ANY_E2EE)

    def open_request(self, headers: Mapping[str, str], wire: bytes) -> OpenedV3 | Response | None:
        if not self.requested(headers):
            return None
        version = headers.get("x-e2ee-version")
        if version is None:
            return _refuse("e2ee_header_missing", "X-E2EE-Version is required with E2EE headers")
        if version.strip() != VERSION:
            return _refuse("e2ee_invalid_version", f"E2EE version {version.strip()[:16]!r} is not supported; this "
                           "service speaks E2EE v3")
        client, model_key = headers.get("x-client-pub-key"), headers.get("x-model-pub-key")
        if client is None or model_key is None:
            return _refuse("e2ee_header_missing", "X-Client-Pub-Key and X-Model-Pub-Key are both required")
        if not _HEX32.fullmatch(client) or not _HEX32.fullmatch(model_key):
            return _refuse("e2ee_invalid_public_key", "E2EE keys are 32 bytes of hex")
        if model_key != self.public_hex:
            return _refuse("e2ee_model_key_mismatch", "X-Model-Pub-Key is not an attested X25519 key of this "
                           "service's keyset")
        try:
            doc = _json.loads_signed(wire, what="request")
            if not isinstance(doc, dict) or not isinstance(doc.get("model"), str) \
                    or not isinstance(doc.get("sealed_b64"), str):
                raise E2EEError("the body is not {model, sealed_b64}")
            unit = strict_b64decode(doc["sealed_b64"], field="sealed_b64")
            plain = open_unit(self._private, unit, request_aad(doc["model"], client), CONTEXT_REQUEST)
        except (E2EEError, ParseError) as exc:
            return _refuse("e2ee_decryption_failed", f"the sealed request could not be opened: {exc}")
        return OpenedV3(plain, bytes.fromhex(client), doc["model"])

    def refuse_endpoint(self, headers: Mapping[str, str], path: str) -> Response | None:
        if not self.requested(headers):
            return None
        return _refuse("e2ee_unsupported_endpoint", f"E2EE is not available on {path}")
