"""Fetching the online evidence a verdict can use: Intel collateral (TCB status), NVIDIA's NRAS answer, and the
signed reference manifests (RIMs) and OCSP answers phalanb appraises the GPU measurements with itself.

Fetching is kept apart from verifying: these functions only download; :func:`~phalanb.vllm.verify.verify_exchange`
judges what they return, and an audit bundle stores it so the same verdict is reached offline later. A fetch
that fails is recorded with its reason (the verdict then says what was not checked), never silently dropped.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..errors import PhalanbError
from ..vllm.report import parse_report

__all__ = ["OnlineEvidence", "AciOnlineEvidence", "RimSources", "DEFAULT_PCCS_URL", "CollateralCache",
           "fetch_online_evidence", "fetch_aci_online_evidence"]

#: dcap-qvl's default collateral source (a public PCCS that mirrors Intel PCS).
DEFAULT_PCCS_URL = "https://pccs.phala.network"


class CollateralCache:
    """Collateral by (PCCS, FMSPC, CA kind, CA certificate), kept only while it is valid.

    Collateral is per platform type, not per quote, and stays valid for weeks; a session that verifies every
    reply would otherwise refetch it each time. An entry is used only while ``now`` is inside its validity
    window (latest issue date .. earliest next update), so a cached copy never outlives what dcap-qvl accepts.
    Only the per-platform items are kept, never a machine's PCK chain (see :meth:`Collateral.platform`).
    The collateral itself is still verified (signatures to the pinned root, CRLs) every time it is used.
    """

    def __init__(self, clock: Callable[[], float] = time.time):
        self._items: dict[tuple[str, ...], Any] = {}
        self._clock = clock
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...]) -> Any:
        with self._lock:
            col = self._items.get(key)
            if col is None:
                return None
            start, end, _ = col.window()
            if not start <= self._clock() <= end:
                del self._items[key]
                return None
            return col

    def put(self, key: tuple[str, ...], collateral: Any) -> None:
        with self._lock:
            self._items[key] = collateral

    def __len__(self) -> int:
        return len(self._items)


#: The process-wide cache :func:`fetch_online_evidence` uses unless given another one.
COLLATERAL_CACHE = CollateralCache()


def _collateral(quote: Any, pccs_url: str, timeout: float, cache: CollateralCache | None) -> Any:
    from ..tdx import fetch_collateral_sync, pck_extension

    key = None
    if cache is not None:
        try:
            pck, ca = pck_extension(quote)
            # The PCK CRL in the collateral is the CRL of the CA that issued this quote's PCK certificate, so the
            # key names that CA's certificate itself, not only its kind.
            issuer = quote.pck_chain_pem[1] if len(quote.pck_chain_pem) > 1 else ""
            key = (pccs_url, pck.fmspc.hex(), ca, hashlib.sha256(issuer.encode()).hexdigest())
        except PhalanbError:
            key = None  # no readable PCK extension: fetch without caching; verification will say what is wrong
        if key is not None:
            hit = cache.get(key)
            if hit is not None:
                return hit
    col = fetch_collateral_sync(quote, pccs_url, timeout=timeout)
    if cache is not None and key is not None:
        # Only the per-platform items are kept: the PCCS's answer also carries this machine's PCK chain, which
        # is not another machine's (see Collateral.platform).
        col = col.platform()
        cache.put(key, col)
    return col


@dataclass
class OnlineEvidence:
    collateral: dict[str, Any] | None = None
    gateway_collateral: dict[str, Any] | None = None  # a NEAR AI Cloud gateway's own platform
    nras_response: Any = None
    jwks: Any = None
    # The RIMs and OCSP answers the node's GPUs need (a phalanb.gpu.appraise.RimStore) when they were asked for;
    # empty when the fetch failed, so the appraisal names what is missing instead of silently not running.
    rims: Any = None
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RimSources:
    """Where to fetch RIMs (``rim_url``, NVIDIA's RIM service or the simulator's) and OCSP answers (``ocsp_url``;
    None: none are fetched, so revocation stays unchecked), and the folder that caches them (``cache_dir``;
    None: memory only)."""

    rim_url: str
    ocsp_url: str | None = None
    cache_dir: Any = None


def fetch_online_evidence(report: Mapping[str, Any], *, signing_address: str | None, nonce: bytes | None,
                          pccs_url: str | None = DEFAULT_PCCS_URL, nras_url: str | None = None,
                          timeout: float = 60.0, cache: CollateralCache | None = COLLATERAL_CACHE,
                          trust: str | None = None, rims: RimSources | None = None) -> OnlineEvidence:
    """Collateral for the node's quote from ``pccs_url`` and, when ``nras_url`` is given, NRAS's appraisal of
    its GPU evidence with the JWKS to check it; with ``rims``, the RIMs and OCSP answers its GPUs need (fetched
    only: the appraisal verifies them). ``None`` skips a source. Collateral comes from ``cache`` while
    valid (pass ``cache=None`` to always fetch). With ``trust="simulated"`` (what the evidence will be judged
    under) every URL must be loopback: :class:`InputError` otherwise."""
    from ..trust import require_loopback_for_simulated

    require_loopback_for_simulated(pccs_url, trust=trust, what="the PCCS URL")
    require_loopback_for_simulated(nras_url, trust=trust, what="the NRAS URL")
    if rims is not None:
        require_loopback_for_simulated(rims.rim_url, trust=trust, what="the RIM service URL")
        require_loopback_for_simulated(rims.ocsp_url, trust=trust, what="the OCSP responder URL")
    from ..gpu import parse_payload
    from ..gpu.nras import build_nras_request, fetch_jwks, fetch_nras
    from ..tdx import parse_quote

    out = OnlineEvidence()
    try:
        parsed = parse_report(report)
        node = parsed.select(signing_address)
    except PhalanbError as exc:
        out.problems.append(f"report: {exc}")
        return out
    if pccs_url and node.intel_quote:
        try:
            out.collateral = _collateral(parse_quote(node.intel_quote), pccs_url, timeout, cache).to_dict()
        except PhalanbError as exc:
            out.problems.append(f"collateral from {pccs_url}: {exc}")
    gateway = parsed.gateway
    if pccs_url and gateway is not None and gateway.intel_quote:
        try:
            out.gateway_collateral = _collateral(parse_quote(gateway.intel_quote), pccs_url, timeout,
                                                 cache).to_dict()
        except PhalanbError as exc:
            out.problems.append(f"the gateway's collateral from {pccs_url}: {exc}")
    source = node.gpu_evidence if node.binding in ("chutes", "chutes-client") else node.nvidia_payload
    if nras_url and source:
        try:
            payload = parse_payload(source)
            server_hashed = node.binding in ("chutes", "chutes-client")  # the GPUs carry a derived nonce
            request = build_nras_request(payload, nonce=None if nonce is None or server_hashed else nonce.hex())
            out.nras_response = fetch_nras(request, base_url=nras_url, timeout=timeout)
            out.jwks = fetch_jwks(base_url=nras_url, timeout=timeout)
        except PhalanbError as exc:
            out.problems.append(f"NRAS at {nras_url}: {exc}")
    if rims is not None:
        out.rims = _fetch_rims(source, rims, timeout, out.problems)
    return out


def _fetch_rims(source: Any, where: RimSources, timeout: float, problems: list[str]) -> Any:
    """The RIMs (and OCSP answers) the GPUs of ``source`` need; an empty store when there is no evidence or the
    fetch failed (the appraisal then names each missing RIM, and ``problems`` says why it is missing)."""
    from ..gpu import parse_payload
    from ..gpu.appraise import RimStore
    from ..gpu.rim_fetch import OCSP_URL, fetch_rims_for

    if source in (None, "", []):
        return RimStore()
    try:
        payload = parse_payload(source)
    except PhalanbError:
        return RimStore()  # the GPU checks say why the evidence cannot be read
    try:
        return fetch_rims_for(payload, cache_dir=where.cache_dir, rim_url=where.rim_url,
                              ocsp_url=where.ocsp_url or OCSP_URL, with_ocsp=where.ocsp_url is not None,
                              timeout=timeout)
    except PhalanbError as exc:
        problems.append(f"RIMs from {where.rim_url}: {exc}")
        return RimStore()


@dataclass
class AciOnlineEvidence:
    """What an ACI verification fetched online: collateral for the gateway's quote, and per attested session the
    collateral / NRAS answer of the upstream model server's own report (its quote is another platform's)."""

    collateral: dict[str, Any] | None = None
    upstream: dict[str, OnlineEvidence] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def rims(self) -> Any:
        """One RimStore with every upstream's RIMs and OCSP answers (RIMs are looked up by id, so one store serves
        every session's GPUs); None when RIMs were not asked for."""
        stores = [o.rims for o in self.upstream.values() if o.rims is not None]
        if not stores:
            return None
        from ..gpu.appraise import RimStore

        merged = RimStore()
        for store in stores:
            for rim_id, items in store.rims.items():
                for data, where in items:
                    merged.add(rim_id, data, where)
            for raw in store.ocsp_raw:
                if raw not in merged.ocsp_raw:
                    merged.add_ocsp(raw)
        return merged

    def upstream_dict(self) -> dict[str, dict[str, Any]]:
        return {sid: {"collateral": o.collateral, "nras_response": o.nras_response, "jwks": o.jwks}
                for sid, o in self.upstream.items()}


def fetch_aci_online_evidence(report: Mapping[str, Any], sessions: Mapping[str, bytes], *,
                              pccs_url: str | None = DEFAULT_PCCS_URL, nras_url: str | None = None,
                              timeout: float = 60.0, cache: CollateralCache | None = COLLATERAL_CACHE,
                              rims: RimSources | None = None, trust: str | None = None) -> AciOnlineEvidence:
    """Collateral for an ACI report's gateway quote, and for every session's upstream report what
    :func:`fetch_online_evidence` fetches (its RIMs too, with ``rims``). Only downloads:
    :func:`phalanb.gateway.verify_aci` judges."""
    from ..aci.session import parse_session
    from ..gateway.deep import upstream_report
    from ..tdx import parse_quote

    out = AciOnlineEvidence()
    evidence = ((report.get("attestation") or {}).get("evidence") or {}) if isinstance(report, Mapping) else {}
    quote = evidence.get("quote") if isinstance(evidence, Mapping) else None
    if pccs_url and isinstance(quote, str) and quote:
        try:
            out.collateral = _collateral(parse_quote(quote), pccs_url, timeout, cache).to_dict()
        except PhalanbError as exc:
            out.problems.append(f"gateway collateral from {pccs_url}: {exc}")
    for sid, raw in sessions.items():
        try:
            found = upstream_report(parse_session(raw))
        except PhalanbError as exc:
            out.problems.append(f"session {sid[:16]}…: {exc}")
            continue
        if found is None:
            continue
        online = fetch_online_evidence(found.document, signing_address=found.signer, nonce=found.nonce,
                                       pccs_url=pccs_url, nras_url=nras_url, timeout=timeout, cache=cache,
                                       rims=rims, trust=trust)
        out.problems.extend(f"session {sid[:16]}…: {p}" for p in online.problems)
        out.upstream[sid] = online
    return out
