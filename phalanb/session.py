"""One place that turns settings into a connected session, and one function for "chat, then verify everything".

The CLI's ``demo``, the widgets and the notebooks all go through :class:`Session`, so a reply is verified the same
way wherever it is shown.

>>> with Session(Settings.from_env()) as s:          # no PHALANB_BASE_URL: the embedded simulator
...     result = s.chat_and_verify("Hello")          # doctest: +SKIP
...     print(result.verdict.table())                # doctest: +SKIP

Settings come from arguments or the environment:

- ``PHALANB_BASE_URL`` — the service (unset: phalanb's embedded simulator on 127.0.0.1, playing today's ACI
  gateway in front of a simulated model server);
- ``PHALANB_MODEL_SERVER_URL`` — a model server speaking the vllm-proxy protocol, for
  ``Settings.from_env(model_server=True)`` (unset: an embedded simulated model server);
- ``PHALANB_MODEL`` — the model id (unset: the first one the service lists);
- ``PHALANB_API_KEY`` or ``REDPILL_API_KEY`` — the key (never printed);
- ``PHALANB_TRUST`` — ``production`` (default for a real URL) or ``simulated`` (a simulator started elsewhere,
  e.g. by ``phalanb lab`` or the test suite).

Online evidence: Intel collateral from a PCCS and NVIDIA's NRAS appraisal of the GPU evidence are fetched by
default (``Settings.online``; ``ask_nras=False`` stops asking NRAS). Production policy requires NVIDIA's appraisal
of the GPU measurements — NRAS's, or phalanb's own against NVIDIA's signed RIMs — so a real service verified with
neither is *incomplete*, never *verified*.

RIMs: ``Settings(rims="fetch")`` makes phalanb appraise the GPU measurements itself too: the RIMs and OCSP answers
the GPUs need are fetched from NVIDIA's RIM service and OCSP responder (from the simulator's own, for the embedded
or a loopback simulator under simulated trust) and kept in memory; ``rims="DIR"`` uses the folder as a cache (RIMs
found there are used, missing ones fetched and written there; offline, the folder alone). For an ACI gateway the
RIMs are those of the upstream model servers' GPUs, appraised in the deep audit. Saved bundles keep the RIMs, so
``phalanb verify`` repeats the appraisal offline. The default (``rims=None``) asks NRAS only, as before RIMs
existed: fetching RIMs costs a round trip to two more NVIDIA services per reply, and NRAS alone already completes
the verdict.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .wire.apikey import ApiKey, resolve_api_key
from .audit.bundle import Bundle, make_bundle, save_bundle
from .wire.client import AttestationFetch, Client
from .errors import InputError, NotFoundError, ServiceError
from .audit.evidence import DEFAULT_PCCS_URL, OnlineEvidence, RimSources, fetch_online_evidence
from .wire.exchange import Exchange
from .gpu.nras import NRAS_URL
from .policy import Policy
from .vllm.signatures import SignatureRecord, fetch_signature
from .trust import require_loopback_for_simulated
from .verdict import Verdict
from .gateway import verify_exchange

__all__ = ["Settings", "Session", "VerifiedChat", "VerifiedAciChat"]


@dataclass
class Settings:
    """Where to connect and what to trust. ``base_url=None`` means phalanb's embedded simulator."""

    base_url: str | None = None
    model: str | None = None
    api_key: ApiKey | None = field(default=None, repr=False)
    signing_algo: str = "ecdsa"
    trust: str | None = None  # None: "simulated" for the embedded simulator, else "production"
    online: bool = True  # fetch Intel collateral and ask NRAS
    pccs_url: str | None = None  # None: the simulator's PCCS, or dcap-qvl's default for real services
    nras_url: str | None = None  # None: the simulator's NRAS, or NVIDIA's (NRAS_URL) for real services
    # Asking NRAS is the default: production policy requires NVIDIA's appraisal of the GPU measurements, so
    # without it (ask_nras=False, offline, NRAS unreachable) a real service's verdict is incomplete.
    ask_nras: bool = True
    timeout: float = 60.0
    sim_options: dict[str, Any] = field(default_factory=dict)
    # What the embedded simulator serves: "aci" (today's Redpill/Phala gateway, in front of a simulated model
    # server) or "legacy" (a model server alone: the vllm-proxy protocol notebooks 01-07 open up link by link).
    # A real service is recognised by its answer.
    protocol: str = "aci"
    ca_pem: str | bytes | None = field(default=None, repr=False)  # a service CA to trust besides the system's
    # The service profile the auditor expects (phalanb.services); None: picked from the base URL's host when
    # exactly one profile lists it (the embedded simulator gets its own), else none (unplaced: incomplete).
    service: str | None = None
    # phalanb's own appraisal of the GPU measurements against NVIDIA's signed RIMs: None (default: NRAS only, as
    # before), "fetch" (fetch them, and their OCSP answers, for every reply; kept in memory and in saved bundles),
    # or a folder (a cache: RIMs found there are used, missing ones fetched and written there). See the module doc.
    rims: str | os.PathLike[str] | None = None
    rim_url: str | None = None  # None: the simulator's RIM service, or NVIDIA's (RIM_SERVICE_URL) for real services
    ocsp_url: str | None = None  # None: the simulator's OCSP responder, or NVIDIA's (OCSP_URL) for real services

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, model_server: bool = False,
                 **overrides: Any) -> "Settings":
        """Settings from the environment. ``model_server=True`` asks for a *model server* (the vllm-proxy protocol
        that notebooks 01-07 open up link by link): ``PHALANB_MODEL_SERVER_URL`` (unset: an embedded simulated
        model server) — never ``PHALANB_BASE_URL``, which may name an ACI gateway such as today's Redpill."""
        env = os.environ if environ is None else environ
        if model_server:
            base = env.get("PHALANB_MODEL_SERVER_URL") or None
            model = env.get("PHALANB_MODEL_SERVER_MODEL") or None
        else:
            base, model = env.get("PHALANB_BASE_URL") or None, env.get("PHALANB_MODEL") or None
        s = cls(base_url=base, model=model, api_key=resolve_api_key(None, environ=dict(env)),
                trust=env.get("PHALANB_TRUST") or None, protocol="legacy" if model_server else "aci")
        for k, v in overrides.items():
            if not hasattr(s, k):
                raise InputError(f"unknown setting {k!r}")
            setattr(s, k, v)
        return s

    @property
    def uses_embedded_simulator(self) -> bool:
        return self.base_url is None

    def describe(self) -> str:
        where = "phalanb's embedded simulator" if self.base_url is None else self.base_url
        key = "an API key" if self.api_key is not None else "no API key"
        rims = "" if self.rims is None else f", RIMs {'fetched' if self.rims == 'fetch' else f'cached in {self.rims}'}"
        return f"{where}, model {self.model or '(first listed)'}, {key}, trust {self.trust or 'auto'}{rims}"


@dataclass
class VerifiedChat:
    """Everything one verified reply produced: the exact bytes, the signature, the attestation, what was fetched
    online, and the verdict."""

    exchange: Exchange
    signature: SignatureRecord
    attestation: AttestationFetch
    online: OnlineEvidence
    verdict: Verdict
    policy: Policy
    endpoint: dict[str, Any]
    verified_at: float  # the clock the verdict used; a bundle re-verifies at the same instant

    def bundle(self) -> Bundle:
        return make_bundle(self.exchange, self.signature, self.attestation, policy=self.policy,
                           verdict=self.verdict, collateral=self.online.collateral,
                           gateway_collateral=self.online.gateway_collateral,
                           nras_response=self.online.nras_response, jwks=self.online.jwks, endpoint=self.endpoint,
                           verified_at=self.verified_at, rims=_kept_rims(self.policy))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the audit bundle (re-verifies offline with ``phalanb verify``)."""
        return save_bundle(self.bundle(), path)

    def __repr__(self) -> str:
        return f"<VerifiedChat {self.exchange.chat_id} {self.verdict.status}>"


@dataclass
class VerifiedAciChat:
    """One reply verified through an ACI gateway: the exact bytes, the report fetched with our nonce, the signed
    receipt, the attested sessions it cites, what was fetched online, and the verdict."""

    exchange: Exchange
    attestation: Any  # phalanb.wire.client.AciAttestationFetch
    receipt: Any  # phalanb.wire.client.AciFetch
    sessions: dict[str, bytes]
    online: Any  # phalanb.audit.evidence.AciOnlineEvidence
    verdict: Verdict
    policy: Policy
    endpoint: dict[str, Any]
    verified_at: float
    host: str | None = None
    protocol: str = "aci"

    def bundle(self) -> Bundle:
        from .audit.bundle import make_aci_bundle

        return make_aci_bundle(self.exchange, attestation=self.attestation, receipt=self.receipt,
                               sessions=self.sessions, policy=self.policy, verdict=self.verdict, online=self.online,
                               host=self.host, verified_at=self.verified_at, endpoint=self.endpoint,
                               rims=_kept_rims(self.policy))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the audit bundle (schema 2; re-verifies offline with ``phalanb verify``)."""
        return save_bundle(self.bundle(), path)

    def __repr__(self) -> str:
        return f"<VerifiedAciChat {self.exchange.receipt_id} {self.verdict.status}>"


def _kept_rims(policy: Policy) -> Any:
    """The RIM store a verdict was appraised with, for its bundle (None when RIMs were not asked for)."""
    from .gpu.appraise import RimStore

    return policy.rims if isinstance(policy.rims, RimStore) else None


def _service_kw(service: str | None, base_url: str | None = None, trust: str | None = None) -> dict[str, Any]:
    """The profile the auditor named, or the one the base URL's host picks unambiguously (a profile for other
    roots than ``trust`` is never picked by host)."""
    if service:
        return {"service": service}
    from .services import profile_for_url

    found = profile_for_url(base_url) if base_url else None
    return {"service": found.name} if found is not None and found.trust == (trust or "production") else {}


class Session:
    """A connected client (and the embedded simulator when no URL is set), with the policy that fits it."""

    def __init__(self, settings: Settings | None = None, *, allow_insecure_http: bool = False):
        self.settings = settings = settings or Settings.from_env()
        self.sim = None
        if settings.base_url is None:
            from .sim import SimConfig, Simulator

            if settings.protocol not in ("legacy", "aci"):
                raise InputError(f"protocol must be 'aci' or 'legacy', got {settings.protocol!r}")
            opts = {"ttft_ms": 50.0, "tokens_per_second": 200.0, "protocol": settings.protocol,
                    **settings.sim_options}
            self.sim = Simulator(SimConfig(**opts)).start()
            base_url = self.sim.base_url
        else:
            base_url = settings.base_url
        try:
            # The embedded simulator needs no key: never send the user's real key to it.
            self.client = Client(base_url=base_url, model=settings.model or (self.sim.model if self.sim else None),
                                 api_key=None if self.sim else settings.api_key, api_key_env=False,
                                 signing_algo=settings.signing_algo, timeout=settings.timeout,
                                 allow_insecure_http=allow_insecure_http,
                                 **({"ca_pem": settings.ca_pem} if settings.ca_pem is not None else {}))
            trust = settings.trust or ("simulated" if self.sim is not None else "production")
            # Where the URL and the trust meet: simulated roots never vouch for a service elsewhere, nor for
            # collateral or NRAS answers fetched from elsewhere.
            require_loopback_for_simulated(base_url, trust=trust)
            require_loopback_for_simulated(settings.pccs_url, trust=trust, what="the PCCS URL")
            require_loopback_for_simulated(settings.nras_url, trust=trust, what="the NRAS URL")
            require_loopback_for_simulated(settings.rim_url, trust=trust, what="the RIM service URL")
            require_loopback_for_simulated(settings.ocsp_url, trust=trust, what="the OCSP responder URL")
            if settings.rims is not None and not isinstance(settings.rims, (str, os.PathLike)):
                raise InputError(f"rims is 'fetch' or a folder that caches RIMs, got {type(settings.rims).__name__}")
            if settings.rims == "fetch" and not settings.online:
                raise InputError("rims='fetch' needs the network: give a folder of RIMs offline")
            self.policy = (Policy.for_simulator(self.sim, **_service_kw(settings.service)) if self.sim is not None
                           else Policy(trust=trust, **_service_kw(settings.service, base_url, trust)))
            if self.client.model is None:
                models = self.client.models()
                if not models:
                    raise InputError("the service lists no models; set the model explicitly")
                self.client.model = models[0]
        except BaseException:
            self.close()
            raise

    @property
    def simulated(self) -> bool:
        return self.policy.simulated

    @property
    def service_root(self) -> str:
        return self.client.base_url.removesuffix("/v1")

    def _online_sources(self) -> tuple[str | None, str | None]:
        s = self.settings
        if not s.online:
            return None, None
        if self.simulated:
            nras = (s.nras_url or f"{self.service_root}/nras") if s.ask_nras else None
            return s.pccs_url or f"{self.service_root}/pccs", nras
        return s.pccs_url or DEFAULT_PCCS_URL, (s.nras_url or NRAS_URL) if s.ask_nras else None

    def chat_and_verify(self, prompt: str | list[dict[str, Any]], *, stream: bool = True,
                        max_tokens: int | None = None, on_text: Callable[[str], None] | None = None,
                        e2ee: bool = False) -> VerifiedChat | VerifiedAciChat:
        """Chat once, fetch the signature and a fresh attestation (and collateral / NRAS when online), verify.

        ``e2ee=True`` (ACI gateways only) *verifies before it sends*: a fresh ACI report is verified first, and the
        prompt is sealed (E2EE v2, ACI.md §6) to an E2EE key of the keyset that report established — never to a
        key that was not verified; the reply is opened, and the verdict adds the ``e2ee.*`` checks."""
        client = self.client
        attestation = None
        key = None
        if e2ee:
            attestation, key = self.attested_e2ee_key()
        try:
            exchange = client.chat(prompt, stream=stream, max_tokens=max_tokens, on_text=on_text, e2ee=key)
        except ServiceError as exc:
            partial = getattr(exc, "partial", None)
            if partial is None or partial.receipt_id is None:
                raise
            # An ACI gateway refused (e.g. 503 upstream_verification_failed) and signed a receipt saying why:
            # verifying it shows the refusal as a checked fact, not just an HTTP error.
            return self.verify_aci(partial, attestation=attestation)
        if exchange.receipt_id is not None:
            # An ACI gateway answered (X-Receipt-Id): its legacy endpoints describe the gateway, so the reply is
            # verified through the receipt, never through /v1/signature and /v1/attestation/report.
            return self.verify_aci(exchange, attestation=attestation)
        signature = fetch_signature(client, exchange.chat_id)
        attestation = client.attestation(signing_algo=signature.signing_algo,
                                         signing_address=signature.signing_address)
        return self.verify(exchange, signature, attestation)

    def _rim_sources(self) -> RimSources | None:
        """Where this session fetches RIMs and OCSP answers (None: it does not, offline or not asked to)."""
        s = self.settings
        if s.rims is None or not s.online:
            return None
        from .gpu.rim_fetch import OCSP_URL, RIM_SERVICE_URL

        cache = None if s.rims == "fetch" else Path(s.rims).expanduser()
        if self.simulated:
            # The simulator signs RIMs under NVIDIA's own ids: they would shadow the real ones in a shared cache.
            cache = cache / "simulated" if cache is not None else None
            return RimSources(s.rim_url or f"{self.service_root}/rim/v1/rim", s.ocsp_url or f"{self.service_root}/ocsp",
                              cache)
        return RimSources(s.rim_url or RIM_SERVICE_URL, s.ocsp_url or OCSP_URL, cache)

    def _policy_with(self, fetched: Any) -> Policy:
        """This session's policy, with the RIMs this reply is appraised against (when RIMs were asked for)."""
        s = self.settings
        if s.rims is None:
            return self.policy
        from dataclasses import replace

        from .gpu.appraise import RimStore

        if fetched is None and not s.online:
            if s.rims == "fetch":
                raise InputError("rims='fetch' needs the network: give a folder of RIMs offline")
            folder = Path(s.rims).expanduser()
            fetched = RimStore.from_dir(folder / "simulated" if self.simulated else folder)
        # Asked for but nothing fetched (no GPU evidence, a failed fetch): an empty store, so the appraisal names
        # every missing RIM rather than silently not running.
        return replace(self.policy, rims=fetched if fetched is not None else RimStore())

    def verify(self, exchange: Exchange, signature: SignatureRecord, attestation: AttestationFetch) -> VerifiedChat:
        """Fetch the online evidence for an attestation (if online) and verify the reply with this session's
        policy."""
        pccs, nras = self._online_sources()
        rims = self._rim_sources()
        online = OnlineEvidence()
        if pccs or nras or rims:
            online = fetch_online_evidence(attestation.report, signing_address=signature.signing_address,
                                           nonce=attestation.nonce, pccs_url=pccs, nras_url=nras,
                                           timeout=self.settings.timeout, trust=self.policy.trust, rims=rims)
        policy = self._policy_with(online.rims)
        at = time.time()
        verdict = verify_exchange(exchange, signature, attestation.report, nonce=attestation.nonce,
                                  policy=policy, collateral=online.collateral,
                                  nras_response=online.nras_response, jwks=online.jwks, at=at,
                                  gateway_collateral=online.gateway_collateral)
        endpoint = {"base_url": self.client.base_url, "model": self.client.model, "simulated": self.simulated,
                    "protocol": "vllm-proxy"}
        return VerifiedChat(exchange, signature, attestation, online, verdict, policy, endpoint, at)

    def attested_e2ee_key(self) -> tuple[Any, Any]:
        """A fresh ACI report, verified now, and the E2EE key its established keyset lists (X25519 first)."""
        from .aci import AttestedE2EEKey, verify_aci_report
        from .audit.evidence import fetch_aci_online_evidence

        try:
            attestation = self.client.aci_attestation()
        except NotFoundError:
            raise InputError(f"E2EE needs an ACI gateway: {self.client.base_url} has no /aci/attestation (a model "
                             "server speaking the vllm-proxy protocol offers no attested E2EE v2 key)") from None
        pccs, _ = self._online_sources()
        collateral = None
        if pccs:
            collateral = fetch_aci_online_evidence(attestation.report, {}, pccs_url=pccs, nras_url=None,
                                                   timeout=self.settings.timeout).collateral
        verified = verify_aci_report(attestation.raw, nonce=attestation.nonce, policy=self.policy,
                                     collateral=collateral)
        if verified.keyset is None:
            raise InputError(f"refusing to encrypt: the gateway's report did not establish a keyset "
                             f"({verified.reason}); phalanb encrypts only to a key it has just verified")
        return attestation, AttestedE2EEKey.from_established_keyset(verified.keyset)

    def verify_aci(self, exchange: Exchange, *, attestation: Any = None) -> VerifiedAciChat:
        """Fetch a fresh ACI report (our nonce) unless ``attestation`` is the one fetched (and verified) just before
        the chat, the reply's receipt and the sessions it cites (and collateral / NRAS when online), then verify
        with this session's policy."""
        from urllib.parse import urlsplit

        from .gateway import verify_aci
        from .aci.receipt import parse_receipt
        from .errors import PhalanbError
        from .audit.evidence import AciOnlineEvidence, fetch_aci_online_evidence

        client = self.client
        attestation = attestation if attestation is not None else client.aci_attestation()
        receipt = client.receipt(exchange.receipt_id)
        sessions: dict[str, bytes] = {}
        problems: list[str] = []
        try:
            cited = parse_receipt(receipt.document).cited_session_ids
        except PhalanbError:
            cited = []  # the verdict says the receipt cannot be read
        for sid in cited:
            try:
                sessions[sid] = client.session(sid).raw
            except PhalanbError as exc:
                problems.append(f"session {sid[:16]}…: {exc}")  # verify_aci skips its checks with the reason
        pccs, nras = self._online_sources()
        rims = self._rim_sources()
        online = AciOnlineEvidence()
        if pccs or nras or rims:
            online = fetch_aci_online_evidence(attestation.report, sessions, pccs_url=pccs, nras_url=nras,
                                               timeout=self.settings.timeout, rims=rims, trust=self.policy.trust)
        online.problems[:0] = problems
        # The upstream model servers' GPUs are appraised in the deep audit, with the RIMs fetched for them.
        policy = self._policy_with(online.rims)
        at = time.time()
        host = urlsplit(client.base_url).hostname
        verdict = verify_aci(exchange, receipt=receipt.raw, report=attestation.raw, nonce=attestation.nonce,
                             sessions=sessions, policy=policy, collateral=online.collateral, at=at,
                             upstream=online.upstream_dict(), tls_spki_sha256=exchange.tls_spki_sha256,
                             keyset_digest_header=exchange.aci_keyset_digest, host=host)
        endpoint = {"base_url": client.base_url, "model": client.model, "simulated": self.simulated,
                    "protocol": "aci"}
        return VerifiedAciChat(exchange, attestation, receipt, sessions, online, verdict, policy, endpoint, at, host)

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
        if self.sim is not None:
            self.sim.stop()
            self.sim = None

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Session {self.client.base_url} model={self.client.model!r} trust={self.policy.trust}>"
