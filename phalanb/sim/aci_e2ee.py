"""The simulated ACI gateway terminates E2EE v2 (ACI.md §6) with :class:`phalanb.sim.e2ee.E2EEService`.

This is the adapter between the gateway's :class:`~phalanb.sim.aci_gateway.E2eeHook` and the E2EE service:

- a request without any of the five E2EE headers stays plaintext (``open_request`` returns None);
- a request with any of them is opened or refused: every ``e2ee_*`` refusal is a 400 with the ACI error body
  (the gateway's middleware adds ``X-ACI-Version`` / ``X-ACI-Keyset-Digest`` to it like to every answer);
- an opened request gives the gateway its restored body (what ``request.received`` hashes and what goes upstream),
  the ``X-E2EE-Applied/Version/Algo`` response headers, and the sealers for the reply (buffered or event by event).

The service holds exactly the keys the keyset publishes (:func:`service_for_keys`), so a client that encrypts to the
attested ``e2ee_public_keys`` reaches it, and nothing else does.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from starlette.responses import Response

from ..aci.e2ee_crypto import CHAT, SECP256K1, X25519
from .aci_docs import E2EE_KEY_ID, E2EE_X25519_KEY_ID, GatewayKeys
from .e2ee import E2EEService, OpenedRequest, ServiceE2EEKey, SimE2EEError

__all__ = ["GatewayE2EE", "OpenedE2EE", "service_for_keys", "refusal"]


def service_for_keys(keys: GatewayKeys, *, clock: Callable[[], float], preview: bool = False) -> E2EEService:
    """The E2EE service holding the gateway's own E2EE private keys: the secp256k1 key of ``dstack-kms-e2ee-v1``
    and, in the current shape, the X25519 key of ``dstack-kms-e2ee-x25519-v1`` — the very keys the keyset lists.
    The preview keyset lists only the secp256k1 v2 key (its ``ecdsa``/``ed25519`` entries are not v2 suites)."""
    service_keys = [ServiceE2EEKey.from_seed(keys.e2ee_secret, algo=SECP256K1, key_id=E2EE_KEY_ID)]
    if not preview:
        service_keys.insert(0, ServiceE2EEKey.from_seed(keys.x25519_secret, algo=X25519, key_id=E2EE_X25519_KEY_ID))
    return E2EEService(service_keys, clock=clock)


class OpenedE2EE:
    """One opened request, as the gateway's :class:`~phalanb.sim.aci_gateway.E2eeContext` wants it."""

    def __init__(self, service: E2EEService, opened: OpenedRequest):
        self.service = service
        self.opened = opened
        self.restored = opened.body
        self.response_headers = opened.context.response_headers()
        self._stream = service.stream_sealer(opened.context)

    def seal_body(self, data: bytes) -> bytes:
        return self.service.seal_response(data, self.opened.context)

    def seal_event(self, event: bytes) -> bytes:
        # The gateway hands over whole events ("...\n\n"); the sealer re-frames each as the reference does.
        return self._stream.push(event) + self._stream.finish()


class GatewayE2EE:
    """The gateway's E2EE hook. ``endpoint`` is the path the gateway serves (chat completions)."""

    def __init__(self, service: E2EEService, *, endpoint: str = CHAT):
        self.service = service
        self.endpoint = endpoint

    def open_request(self, headers: Mapping[str, str], wire: bytes) -> OpenedE2EE | Response | None:
        if not self.service.requested(headers):
            return None
        try:
            opened = self.service.open_request(headers, wire, self.endpoint)
        except SimE2EEError as exc:
            return refusal(exc)
        return OpenedE2EE(self.service, opened)

    def refuse_endpoint(self, headers: Mapping[str, str], path: str) -> Response | None:
        """An endpoint E2EE v2 does not cover (``/v1/responses``): refused when E2EE was asked for."""
        if not self.service.requested(headers):
            return None
        try:
            self.service.open_request(headers, b"", path)
        except SimE2EEError as exc:
            return refusal(exc)
        return None  # pragma: no cover - open_request refuses every path outside ENDPOINTS first


def refusal(exc: SimE2EEError, headers: dict[str, Any] | None = None) -> Response:
    """The 400 the gateway answers an ``e2ee_*`` refusal with (``SimE2EEError.body()``: the ACI error shape)."""
    return Response(exc.body(), status_code=exc.status, media_type="application/json", headers=headers)
