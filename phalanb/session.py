"""One place that turns settings into a connected session, and one function for "chat, then verify everything".

The CLI's ``demo``, the widgets and the notebooks all go through :class:`Session`, so a reply is verified the same
way wherever it is shown.

>>> with Session(Settings.from_env()) as s:          # no PHALANB_BASE_URL: the embedded simulator
...     result = s.chat_and_verify("Hello")          # doctest: +SKIP
...     print(result.verdict.table())                # doctest: +SKIP

Settings come from arguments or the environment:

- ``PHALANB_BASE_URL`` — the service (unset: phalanb's embedded simulator on 127.0.0.1);
- ``PHALANB_MODEL`` — the model id (unset: the first one the service lists);
- ``PHALANB_API_KEY`` or ``REDPILL_API_KEY`` — the key (never printed);
- ``PHALANB_TRUST`` — ``production`` (default for a real URL) or ``simulated`` (a simulator started elsewhere,
  e.g. by ``phalanb lab`` or the test suite).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .apikey import ApiKey, resolve_api_key
from .audit import Bundle, make_bundle, save_bundle
from .client import AttestationFetch, Client
from .errors import InputError
from .evidence import DEFAULT_PCCS_URL, OnlineEvidence, fetch_online_evidence
from .exchange import Exchange
from .policy import Policy
from .signatures import SignatureRecord
from .trust import require_loopback_for_simulated
from .verdict import Verdict
from .verify import verify_exchange

__all__ = ["Settings", "Session", "VerifiedChat"]


@dataclass
class Settings:
    """Where to connect and what to trust. ``base_url=None`` means phalanb's embedded simulator."""

    base_url: str | None = None
    model: str | None = None
    api_key: ApiKey | None = field(default=None, repr=False)
    signing_algo: str = "ecdsa"
    trust: str | None = None  # None: "simulated" for the embedded simulator, else "production"
    online: bool = True  # fetch Intel collateral (and NRAS when nras_url is set)
    pccs_url: str | None = None  # None: the simulator's PCCS, or dcap-qvl's default for real services
    nras_url: str | None = None  # None: the simulator's NRAS; for real services NRAS is asked only if set
    timeout: float = 60.0
    sim_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        env = os.environ if environ is None else environ
        s = cls(base_url=env.get("PHALANB_BASE_URL") or None, model=env.get("PHALANB_MODEL") or None,
                api_key=resolve_api_key(None, environ=dict(env)), trust=env.get("PHALANB_TRUST") or None)
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
        return f"{where}, model {self.model or '(first listed)'}, {key}, trust {self.trust or 'auto'}"


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
                           nras_response=self.online.nras_response, jwks=self.online.jwks, endpoint=self.endpoint,
                           verified_at=self.verified_at)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the audit bundle (re-verifies offline with ``phalanb verify``)."""
        return save_bundle(self.bundle(), path)

    def __repr__(self) -> str:
        return f"<VerifiedChat {self.exchange.chat_id} {self.verdict.status}>"


class Session:
    """A connected client (and the embedded simulator when no URL is set), with the policy that fits it."""

    def __init__(self, settings: Settings | None = None, *, allow_insecure_http: bool = False):
        self.settings = settings = settings or Settings.from_env()
        self.sim = None
        if settings.base_url is None:
            from .sim import SimConfig, Simulator

            opts = {"ttft_ms": 50.0, "tokens_per_second": 200.0, **settings.sim_options}
            self.sim = Simulator(SimConfig(**opts)).start()
            base_url = self.sim.base_url
        else:
            base_url = settings.base_url
        try:
            # The embedded simulator needs no key: never send the user's real key to it.
            self.client = Client(base_url=base_url, model=settings.model or (self.sim.model if self.sim else None),
                                 api_key=None if self.sim else settings.api_key, api_key_env=False,
                                 signing_algo=settings.signing_algo, timeout=settings.timeout,
                                 allow_insecure_http=allow_insecure_http)
            trust = settings.trust or ("simulated" if self.sim is not None else "production")
            # Where the URL and the trust meet: simulated roots never vouch for a service elsewhere, nor for
            # collateral or NRAS answers fetched from elsewhere.
            require_loopback_for_simulated(base_url, trust=trust)
            require_loopback_for_simulated(settings.pccs_url, trust=trust, what="the PCCS URL")
            require_loopback_for_simulated(settings.nras_url, trust=trust, what="the NRAS URL")
            self.policy = Policy.for_simulator(self.sim) if self.sim is not None else Policy(trust=trust)
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
            return s.pccs_url or f"{self.service_root}/pccs", s.nras_url or f"{self.service_root}/nras"
        return s.pccs_url or DEFAULT_PCCS_URL, s.nras_url

    def chat_and_verify(self, prompt: str | list[dict[str, Any]], *, stream: bool = True,
                        max_tokens: int | None = None, on_text: Callable[[str], None] | None = None) -> VerifiedChat:
        """Chat once, fetch the signature and a fresh attestation (and collateral / NRAS when online), verify."""
        client = self.client
        exchange = client.chat(prompt, stream=stream, max_tokens=max_tokens, on_text=on_text)
        signature = client.signature(exchange.chat_id)
        attestation = client.attestation(signing_algo=signature.signing_algo,
                                         signing_address=signature.signing_address)
        return self.verify(exchange, signature, attestation)

    def verify(self, exchange: Exchange, signature: SignatureRecord, attestation: AttestationFetch) -> VerifiedChat:
        """Fetch the online evidence for an attestation (if online) and verify the reply with this session's
        policy."""
        pccs, nras = self._online_sources()
        online = OnlineEvidence()
        if pccs or nras:
            online = fetch_online_evidence(attestation.report, signing_address=signature.signing_address,
                                           nonce=attestation.nonce, pccs_url=pccs, nras_url=nras,
                                           timeout=self.settings.timeout, trust=self.policy.trust)
        at = time.time()
        verdict = verify_exchange(exchange, signature, attestation.report, nonce=attestation.nonce,
                                  policy=self.policy, collateral=online.collateral,
                                  nras_response=online.nras_response, jwks=online.jwks, at=at)
        endpoint = {"base_url": self.client.base_url, "model": self.client.model, "simulated": self.simulated}
        return VerifiedChat(exchange, signature, attestation, online, verdict, self.policy, endpoint, at)

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
