"""Fetch the RIMs and OCSP answers a payload needs from NVIDIA's services (or the simulator's), with a cache.

Nothing fetched is believed: the RIMs and answers land in a :class:`~phalanb.gpu.appraise.RimStore` and are
verified by the appraisal like any others. The cache is a folder in the layout ``--rims`` reads (RIM service
answers as ``<id>.json``, OCSP answers as ``ocsp/<serial>.der``), so a fetched set can be appraised offline again
— ``phalanb gpu … --rims CACHE`` — and kept in an audit bundle.

- RIMs: ``GET {rim_url}/{id}`` → ``{"id", "rim": base64 SWID, "sha256"}`` (NVIDIA: ``https://rim.attestation.
  nvidia.com/v1/rim``; its current documentation also shows a Bearer API key, passed as ``api_key``). A 404 leaves
  the id missing, which the appraisal names.
- OCSP: ``POST {ocsp_url}`` with an ``application/ocsp-request`` (SHA-384 CertID, as NVIDIA's verifiers send) for
  every certificate below the root of each RIM chain and of each GPU's device chain (its FMC leaf excepted:
  NVIDIA's responder does not answer for it). Cached answers are reused while the clock is inside their window.

>>> store = fetch_rims_for(payload, cache_dir="~/.cache/phalanb/rims")                     # doctest: +SKIP
>>> appraise_payload(payload, store).check("gpu.measurements").status                     # doctest: +SKIP
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hashlib
import json
import re
from pathlib import Path
from typing import Iterable

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from ..errors import ParseError, ServiceError, TransportError
from .appraise import RimStore
from .ocsp import MAX_OCSP_BYTES, load_ocsp
from .payload import GpuPayload
from .rim import MAX_RIM_BYTES, rim_ids
from .rim_verify import rim_certificates

__all__ = ["RIM_SERVICE_URL", "OCSP_URL", "fetch_rim", "fetch_ocsp", "fetch_rims_for"]

RIM_SERVICE_URL = "https://rim.attestation.nvidia.com/v1/rim"
OCSP_URL = "https://ocsp.ndis.nvidia.com"
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


def _limited(resp: httpx.Response, limit: int, what: str) -> bytes:
    from ..wire.client import read_limited

    return read_limited(resp, limit, what=what)


def fetch_rim(rim_id: str, *, client: httpx.Client, rim_url: str = RIM_SERVICE_URL,
              api_key: str | None = None) -> bytes | None:
    """One RIM service answer (the JSON bytes, checked for shape and id), or None when the service has none."""
    if not _SAFE_ID.match(rim_id):
        raise ParseError(f"{rim_id!r:.80} is not a RIM id", field="rim id")
    url = f"{rim_url.rstrip('/')}/{rim_id}"
    headers = {"Accept-Encoding": "identity", **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
    try:
        with client.stream("GET", url, headers=headers) as resp:
            body = _limited(resp, 2 * MAX_RIM_BYTES, "the RIM service")
    except httpx.HTTPError as exc:
        raise TransportError(f"could not reach the RIM service at {url}: {exc}", url=url) from None
    if resp.status_code == 404:
        return None
    if resp.status_code >= 400:
        text = body[:300].decode("utf-8", "replace")
        raise ServiceError(f"the RIM service answered HTTP {resp.status_code} at {url}: {text}",
                           status=resp.status_code, server_message=text, url=url)
    try:
        doc = json.loads(body)
        rim = base64.b64decode(doc["rim"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ParseError(f"the RIM service's answer for {rim_id} is not {{id, rim: base64}}", field="rim") from None
    if doc.get("id") != rim_id:
        raise ParseError(f"asked for {rim_id} but the service answered id {doc.get('id')!r:.80}", field="rim.id")
    if doc.get("sha256") not in (None, hashlib.sha256(rim).hexdigest()):
        raise ParseError(f"the answer's sha256 does not match the RIM it carries ({rim_id})", field="rim.sha256")
    return body


def fetch_ocsp(cert: x509.Certificate, issuer: x509.Certificate, *, client: httpx.Client,
               ocsp_url: str = OCSP_URL) -> bytes:
    """The DER OCSP answer for ``cert`` (not verified here: :mod:`phalanb.gpu.ocsp` judges it)."""
    req = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA384()).build().public_bytes(Encoding.DER)
    try:
        with client.stream("POST", ocsp_url, content=req,
                           headers={"Content-Type": "application/ocsp-request"}) as resp:
            body = _limited(resp, MAX_OCSP_BYTES, "the OCSP responder")
    except httpx.HTTPError as exc:
        raise TransportError(f"could not reach the OCSP responder at {ocsp_url}: {exc}", url=ocsp_url) from None
    if resp.status_code >= 400:
        raise ServiceError(f"the OCSP responder answered HTTP {resp.status_code} at {ocsp_url}",
                           status=resp.status_code, url=ocsp_url)
    load_ocsp(body, source="the OCSP responder's answer")  # readable, or a ParseError now
    return body


def _cached_answer(path: Path | None, rim_id: str) -> bytes | None:
    """A cached RIM service answer for ``rim_id``, or None when there is none or it is not one (then refetched)."""
    if path is None or not path.is_file():
        return None
    body = path.read_bytes()
    try:
        doc = json.loads(body)
        base64.b64decode(doc["rim"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    return body if doc.get("id") == rim_id else None


def _fresh(answer: bytes, at: _dt.datetime) -> bool:
    try:
        resp = load_ocsp(answer)
        single = next(iter(resp.responses))
        return single.this_update_utc <= at <= (single.next_update_utc or single.this_update_utc)
    except (ParseError, ValueError, StopIteration):
        return False


def _pairs(certs: list[x509.Certificate], root: x509.Certificate | None, *, skip_leaf: bool) -> Iterable[tuple]:
    chain = [c for c in certs if c.subject != c.issuer]
    issuers = chain[1:] + ([root] if root is not None else [c for c in certs if c.subject == c.issuer][:1])
    for i, (cert, issuer) in enumerate(zip(chain, issuers)):
        if skip_leaf and i == 0:
            continue
        yield cert, issuer


def fetch_rims_for(payload: GpuPayload, *, cache_dir: str | Path | None = None, client: httpx.Client | None = None,
                   rim_url: str = RIM_SERVICE_URL, ocsp_url: str = OCSP_URL, api_key: str | None = None,
                   with_ocsp: bool = True, at: _dt.datetime | None = None, timeout: float = 30.0) -> RimStore:
    """Every RIM the payload's GPUs need and the OCSP answers for their chains, from ``cache_dir`` when there,
    else fetched (and written there). Returns the store to appraise with."""
    own = client is None
    client = client or httpx.Client(timeout=timeout)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else None
    at = at or _dt.datetime.now(_dt.timezone.utc)
    store = RimStore()
    try:
        ids = sorted({i for g in payload.gpus for i in rim_ids(g.spdm, g.arch).values()})
        for rim_id in ids:
            if not _SAFE_ID.match(rim_id):
                # The id is built from the evidence's version strings: one that is no file name (a "/", "..") is
                # neither looked up in the cache nor fetched; the appraisal names the RIM missing.
                continue
            cached = cache / f"{rim_id}.json" if cache is not None else None
            body = _cached_answer(cached, rim_id)
            if body is None:
                body = fetch_rim(rim_id, client=client, rim_url=rim_url, api_key=api_key)
                if body is not None and cached is not None:
                    cache.mkdir(parents=True, exist_ok=True)
                    cached.write_bytes(body)
            if body is not None:
                store.add(rim_id, base64.b64decode(json.loads(body)["rim"]), f"{rim_id} ({rim_url})")
        if not with_ocsp:
            return store
        pairs: dict[int, tuple] = {}
        from .rim import parse_rim

        for rim_id, items in store.rims.items():
            for data, _ in items:
                certs = rim_certificates(parse_rim(data))
                if isinstance(certs, list):
                    for cert, issuer in _pairs(certs, None, skip_leaf=False):
                        pairs.setdefault(cert.serial_number, (cert, issuer))
        for g in payload.gpus:
            for cert, issuer in _pairs(list(g.certificates), None, skip_leaf=True):
                pairs.setdefault(cert.serial_number, (cert, issuer))
        for serial, (cert, issuer) in sorted(pairs.items()):
            cached = cache / "ocsp" / f"{serial:x}.der" if cache is not None else None
            answer = cached.read_bytes() if cached is not None and cached.is_file() else None
            if answer is None or not _fresh(answer, at):
                try:
                    answer = fetch_ocsp(cert, issuer, client=client, ocsp_url=ocsp_url)
                except (ServiceError, ParseError):
                    continue  # no answer for this one: its status stays unknown, and the appraisal says so
                if cached is not None:
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    cached.write_bytes(answer)
            try:
                store.add_ocsp(answer, f"OCSP answer for serial {serial:x}")
            except ParseError:
                continue
        return store
    finally:
        if own:
            client.close()
