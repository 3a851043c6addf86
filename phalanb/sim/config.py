"""Settings of the simulated service."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InputError

__all__ = ["ACI_MODES", "ACI_SHAPES", "ACI_SHAPE_ALIASES", "ACI_SHAPE_PARSED", "FAULTS", "FAULT_NEEDS", "fault_refusal", "LATENCY_DISTRIBUTIONS", "PROTOCOLS", "SimConfig"]

#: How a jitter fraction j spreads a base delay b (the TTFT, or one token gap).
LATENCY_DISTRIBUTIONS: dict[str, str] = {
    "uniform": "b * (1 + U(-j, j)): bounded, mean and median b",
    "normal": "b * (1 + N(0, j)), clipped at 0: median b, standard deviation j * b",
    "lognormal": "a long right tail like real queues: TTFT median b (sigma j); token gaps mean b (sigma j)",
}

#: Faults the simulator can inject, each reproducing something a real service (or an attacker) can do.
FAULTS: dict[str, str] = {
    "chat_500": "the chat endpoint answers HTTP 500 with an OpenAI-style error body",
    "signature_500": "the signature endpoint answers HTTP 500",
    "attestation_500": "the attestation endpoint answers HTTP 500",
    "cut_stream": "the stream stops half-way without data: [DONE] (the connection is closed)",
    "tamper_response": "the server signs the bytes it produced but sends one altered byte (a man in the middle)",
    "tamper_request": "the server signs the hash of a different request body (a rewriting gateway)",
    "wrong_signing_key": "signatures are made with a key that the attestation report does not name",
    "ignore_nonce": "the attestation report ignores the client's nonce and uses one of its own",
    "signature_missing": "the signature endpoint answers 404 for every chat id (a node that never saw the chat)",
    "stale_quote": "the TDX quote was made for an older nonce, though the report echoes the client's",
    "debug_td": "the TD runs with the DEBUG attribute set (the host can read its memory)",
    "wrong_compose_hash": "the app_compose shown in the report is not the one that was measured",
    "gpu_nonce_mismatch": "the GPUs signed evidence for another nonce than the client's",
    "rim_mismatch": "the driver RIM served for the GPUs lists another value for index 7 than they measure",
    "rim_revoked": "the OCSP responder answers that the RIM signing certificate is revoked (certificateHold)",
    "rim_other_version": "the RIM served under the GPUs' driver RIM id is signed for another driver version",
    "rate_limit": "the first request to each endpoint answers 429 with Retry-After: 1",
    "flaky_503": "the first request to each endpoint answers 503",
    "hang": "GET endpoints (signature, attestation, models) never answer",
    "truncated_json": "signature and attestation answers are cut in half (invalid JSON)",
    "slow_drip": "stream events leave in small pieces with pauses, lines split mid-way",
    # ACI gateway faults (protocol="aci"): each breaks exactly one link of ACI.md §8.
    "aci_tamper_response": "a man in the middle changes one byte of the reply after the gateway hashed and signed it",
    "aci_tamper_receipt": "a signed receipt field (route.selected's target_route_id) is changed after signing",
    "aci_receipt_other_keyset": "receipts name another replica's keyset digest and are signed by that keyset's key",
    "aci_rewrite_request": "the gateway changes the body it forwards (request.forwarded != request.received)",
    "aci_upstream_failed": "the upstream's verification fails (upstream.verified result failed; required: refused)",
    "aci_session_expired": "receipts cite a session whose window ended before served_at",
    "aci_edit_session": "the served session document differs from the one its id hashes",
    "aci_expired_keyset": "the keyset's not_after lies in the past",
    "aci_ignore_nonce": "the attestation statement is built from another nonce than the client's",
    "aci_tls_key_not_in_keyset": "the HTTPS listener's certificate key (SPKI) is not listed in the keyset",
}

#: What a fault needs of the simulator to have any effect (faults not named here act in both protocols: under ACI
#: they act on the model server behind the gateway). A fault that could not be injected is refused, never accepted
#: silently: a gallery that "injects" it would show an untouched reply as a fault survived.
FAULT_NEEDS: dict[str, dict[str, object]] = {
    **{name: {"protocol": "aci"} for name in FAULTS if name.startswith("aci_")},
    "aci_tls_key_not_in_keyset": {"protocol": "aci", "https": True},
    **{name: {"protocol": "aci", "aci_mode": "aggregator"}
       for name in ("aci_upstream_failed", "aci_session_expired", "aci_edit_session")},
}

#: How to ask for what a fault needs, on the command line.
_FLAGS = {("protocol", "aci"): "--protocol aci", ("https", True): "--https",
          ("aci_mode", "aggregator"): "--aci-mode aggregator"}

PROTOCOLS = ("aci", "legacy")
ACI_MODES = ("aggregator", "direct")
#: The ACI wire shapes the simulator serves (ACI-v3.md, ACI.md §0), named for what they are: ``v3`` (the served-bytes
#: revision, the default), ``aug-2026`` (the August 2026 spec, b6b5c1b) and ``preview-2026-06`` (the June 2026 build).
ACI_SHAPES = ("v3", "aug-2026", "preview-2026-06")
#: Older names, still accepted: what ACI.md called "current" is the August shape; "preview" the June one.
ACI_SHAPE_ALIASES = {"current": "aug-2026", "preview": "preview-2026-06"}
#: The parser's shape name (``AciReport.shape``, check ``aci.shape``) of each simulator shape.
ACI_SHAPE_PARSED = {"v3": "v3", "aug-2026": "current", "preview-2026-06": "preview"}


@dataclass
class SimConfig:
    """Everything the simulator can be told.

    ``ttft_ms`` and ``tokens_per_second`` shape the timing (0 tokens/s means "as fast as possible");
    ``ttft_distribution`` / ``token_distribution`` pick how ``ttft_jitter`` / ``token_jitter`` spread them
    (see :data:`LATENCY_DISTRIBUTIONS`): the median TTFT stays ``ttft_ms`` and the mean token gap stays
    ``1 / tokens_per_second``, so what phalanb measures can be compared with what was configured.
    ``signature_ttl`` and ``max_signatures`` reproduce the real cache (1200 s, 1000 entries).
    ``nonstream_hash`` picks which server generation to imitate for non-streaming replies: ``"body"`` hashes
    the bytes sent (candidate A), ``"json_dumps"`` hashes ``json.dumps(json.loads(body))`` (candidate B).
    ``text_format`` picks the 2-part ``req:resp`` or 3-part ``model:req:resp`` signed text.
    ``protocol``: ``"legacy"`` serves the model server alone (the vllm-proxy API of SPEC §2); ``"aci"`` puts the
    simulated ACI gateway in front of it (ACI.md): ``aci_mode`` ``"aggregator"`` (attested upstream sessions) or
    ``"direct"``, ``aci_shape`` ``"v3"`` (the served-bytes revision, ACI-v3.md), ``"aug-2026"`` (alias
    ``"current"``) or ``"preview-2026-06"`` (alias ``"preview"``), ``receipt_ttl``
    seconds of receipt retention, ``aci_keepalive`` one ``: PROCESSING`` comment before a stream's first event,
    ``aci_e2ee`` the gateway terminates E2EE (v3 in the v3 shape, else v2, ACI.md §6; a request without E2EE
    headers stays plaintext),
    ``https`` a TLS listener with a self-signed certificate generated at start-up.
    ``upstream``: base URL of a real OpenAI-compatible server (e.g. a local llama.cpp, ``http://127.0.0.1:8080/v1``)
    whose replies the simulator forwards byte for byte and signs, as the real proxy signs vLLM's.
    """

    seed: int | None = None
    models: tuple[str, ...] = ("phalanb/sim-llama-3-8b",)
    signature_ttl: float = 1200.0
    max_signatures: int = 1000
    ttft_ms: float = 200.0
    ttft_jitter: float = 0.0
    tokens_per_second: float = 50.0
    token_jitter: float = 0.0
    ttft_distribution: str = "uniform"
    token_distribution: str = "uniform"
    default_max_tokens: int = 24
    nonstream_hash: str = "body"
    text_format: str = "2part"
    gpus: int = 1
    api_key: str | None = field(default=None, repr=False)
    upstream: str | None = None
    reply: str | None = None  # answer every chat with this text instead of generated words
    upstream_api_key: str | None = field(default=None, repr=False)
    faults: set[str] = field(default_factory=set)
    protocol: str = "legacy"
    aci_mode: str = "aggregator"
    aci_shape: str = "v3"
    receipt_ttl: float = 3600.0
    aci_keepalive: bool = False
    aci_e2ee: bool = True
    https: bool = False

    def __post_init__(self) -> None:
        self.aci_shape = ACI_SHAPE_ALIASES.get(self.aci_shape, self.aci_shape)
        self.validate()

    def validate(self) -> None:
        if self.signature_ttl < 0:
            raise InputError(f"signature_ttl must be >= 0 seconds, got {self.signature_ttl}")
        if self.max_signatures < 1:
            raise InputError(f"max_signatures must be >= 1, got {self.max_signatures}")
        if self.ttft_ms < 0 or self.tokens_per_second < 0:
            raise InputError("ttft_ms and tokens_per_second must be >= 0")
        if not 0 <= self.ttft_jitter < 1 or not 0 <= self.token_jitter < 1:
            raise InputError("ttft_jitter and token_jitter are fractions in [0, 1)")
        for name in ("ttft_distribution", "token_distribution"):
            if getattr(self, name) not in LATENCY_DISTRIBUTIONS:
                raise InputError(f"{name} must be one of {', '.join(LATENCY_DISTRIBUTIONS)}, "
                                 f"got {getattr(self, name)!r}")
        if self.nonstream_hash not in ("body", "json_dumps"):
            raise InputError(f"nonstream_hash must be 'body' or 'json_dumps', got {self.nonstream_hash!r}")
        if self.text_format not in ("2part", "3part"):
            raise InputError(f"text_format must be '2part' or '3part', got {self.text_format!r}")
        if not 0 <= self.gpus <= 8:
            raise InputError(f"gpus must be between 0 and 8, got {self.gpus}")
        if self.upstream is not None and not self.upstream.startswith(("http://", "https://")):
            raise InputError(f"upstream must be an http(s) base URL, got {self.upstream!r}")
        if not self.models:
            raise InputError("the simulator needs at least one model name")
        for name, allowed in (("protocol", PROTOCOLS), ("aci_mode", ACI_MODES), ("aci_shape", ACI_SHAPES)):
            if getattr(self, name) not in allowed:
                raise InputError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not self.receipt_ttl >= 0:
            raise InputError(f"receipt_ttl must be >= 0 seconds, got {self.receipt_ttl}")
        unknown = set(self.faults) - set(FAULTS)
        if unknown:
            raise InputError(f"unknown simulator faults {sorted(unknown)}; known: {sorted(FAULTS)}")
        for name in sorted(self.faults):
            problem = fault_refusal(name, self)
            if problem:
                raise InputError(problem)


def fault_refusal(name: str, config: SimConfig) -> str | None:
    """Why ``name`` cannot be injected into a simulator configured as ``config`` (None: it can)."""
    missing = [(k, v) for k, v in FAULT_NEEDS.get(name, {}).items() if getattr(config, k) != v]
    if not missing:
        return None
    what = {"protocol": "an ACI gateway", "https": "an HTTPS listener", "aci_mode": "an aggregator gateway"}
    current = {"protocol": f"the {config.protocol} protocol", "https": "plain http",
               "aci_mode": f"aci_mode {config.aci_mode}"}
    return (f"the fault {name} cannot be injected here: it needs {' and '.join(what[k] for k, _ in missing)}, and "
            f"this simulator runs {', '.join(current[k] for k, _ in missing)} (where the fault would change "
            f"nothing). Start it with {' '.join(_FLAGS[m] for m in missing)}")
