"""Builders for the ACI tests: the spec's vectors, receipts and sessions signed with the vector keys, and a
*simulated* gateway report (phalanb's simulated TDX) that binds the spec keyset, so the whole chain can be driven
to "verified" under ``trust="simulated"`` and then broken one link at a time."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from functools import lru_cache
from pathlib import Path

import coincurve
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_utils import keccak

REPO = Path(__file__).resolve().parents[2]
from tests.conftest import FIXTURES  # noqa: E402  (found, or fetched and checked, once per run)
ACI = FIXTURES / "aci"
VECTORS = json.loads((ACI / "test_vectors.json").read_text())
A = VECTORS["aci"]
REAL = ACI / "real" / "phala-gateway-aci1-report-2026-06-28.json"
STUB = ACI / "verifier_ts_stub_report.json"
REAL_NONCE = bytes.fromhex(VECTORS["real_capture_phala_2026_06_28"]["nonce"])
REAL_AT = 1782664738  # the capture's fetched_at
STUB_NONCE = bytes.fromhex(VECTORS["verifier_ts_stub_report"]["nonce"])
REAL_KMS_ROOT = "0334c76e0c3f52ec64cbf9bbf5c910c272330166fd656c0a86bb330963e46910e1"

NONCE = bytes.fromhex(A["statements"][0]["nonce"])
RECEIPT_KEY = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(A["keys"]["receipt-1"]["seed_hex"]))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
REQUEST = A["receipt"]["request_body"].encode()
RESPONSE = A["receipt"]["response_body"].encode()
SESSION_ID = A["session"]["session_id"]
T0 = 1750000000          # the vectors' served_at / established_at; inside the simulated collateral window
AT = T0 + 100
KMS_ROOT = coincurve.PrivateKey(b"\x09" * 32)
APP_KEY = coincurve.PrivateKey(b"\x0a" * 32)
KMS_DERIVED = coincurve.PrivateKey(b"\x0b" * 32)


def jcs(v) -> bytes:
    return json.dumps(v, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def receipt_doc(**changes) -> dict:
    """The spec's receipt document (unsigned), with top-level members replaced."""
    doc = json.loads(A["receipt"]["document_jcs"])
    doc.pop("signature")
    doc.update(changes)
    return doc


def sign_receipt(doc: dict, key=RECEIPT_KEY) -> bytes:
    doc = {k: v for k, v in doc.items() if k != "signature"}
    return jcs({**doc, "signature": key.sign(jcs(doc)).hex()})


def session_doc(evidence: bytes | None = b"example-evidence", media: str = "text/plain", **changes) -> dict:
    doc = json.loads(A["session"]["document_jcs"])
    if evidence is None:
        doc["evidence"] = {}
    else:
        uri = f"data:{media};base64," + base64.b64encode(evidence).decode()
        doc["evidence"] = {"digest": sha(evidence), "data": uri}
    doc.update(changes)
    return doc


def session_id(doc: dict) -> str:
    return hashlib.sha256(jcs(doc)).hexdigest()


@lru_cache(maxsize=1)
def sim_tdx():
    from phalanb.tdx.sim import SimulatedTdx

    return SimulatedTdx(seed=11, now=T0)


def custody_entry(app_id: bytes, *, role="receipt", purpose="aci.receipt.ed25519.v1", root=KMS_ROOT) -> dict:
    kms_pub = KMS_DERIVED.public_key.format(compressed=True)
    sig0 = APP_KEY.sign_recoverable(keccak(f"{purpose}:{kms_pub.hex()}".encode()), hasher=None)
    sig1 = root.sign_recoverable(keccak(b"dstack-kms-issued:" + app_id + APP_KEY.public_key.format(compressed=True)),
                                 hasher=None)
    return {"role": role, "path": "aci/receipt/v1", "purpose": purpose, "algo": "ed25519",
            "public_key": A["keys"]["receipt-1"]["public_key"],
            "kms_public_key": KMS_DERIVED.public_key.format(compressed=False).hex(),
            "signature_chain": [sig0.hex(), sig1.hex()]}


def sim_report(*, nonce: bytes | None = NONCE, keyset: dict | None = None, quote_rd: bytes | None = None,
               serving: str = "aggregator", statement_nonce: str | None = "same", app_compose: str | None = "sim",
               **att_changes) -> dict:
    """A current-shape report for the spec keyset, quoted by phalanb's simulated TDX."""
    sim = sim_tdx()
    keyset = copy.deepcopy(keyset or A["keyset"]["object"])
    digest = sha(jcs(keyset))
    n = nonce.hex() if statement_nonce == "same" and nonce is not None else (
        None if statement_nonce == "same" else statement_nonce)
    stmt = ('{"keyset_digest":"%s","nonce":%s,"purpose":"aci.report_data.v1"}'
            % (digest, "null" if n is None else '"%s"' % n)).encode()
    rd = hashlib.sha256(stmt).digest()
    slot = (quote_rd if quote_rd is not None else rd).ljust(64, b"\0")
    att = {"tee_type": "tdx", "workload_keyset": keyset, "report_data": rd.hex(),
           "evidence": {"quote": sim.quote(slot).hex(), "quote_report_data": slot.hex(),
                        "event_log": json.dumps(sim.event_log), "vm_config": sim.vm_config,
                        "app_compose": sim.app_compose if app_compose == "sim" else app_compose,
                        "key_custody": {"provider": "dstack-kms",
                                        "keys": [custody_entry(bytes.fromhex(sim.app_id))]}},
           "source_provenance": {"repo_url": "https://example.invalid/gw", "repo_commit": "abc",
                                 "image_digest": None, "image_provenance": None}}
    att.update(att_changes)
    return {"api_version": "aci/1", "workload_keyset_digest": digest, "attestation": att,
            "service_capabilities": {"supported_e2ee_versions": ["2"], "serving": serving}}


def sim_policy(**kw):
    from phalanb.policy import Policy

    return Policy(trust="simulated", aci_kms_roots=(KMS_ROOT.public_key.format(compressed=True).hex(),), **kw)


def sim_collateral():
    return sim_tdx().collateral()


@lru_cache(maxsize=1)
def upstream_report() -> bytes:
    """A dstack vllm-proxy report from phalanb's simulator (what an aggregator's session evidence can hold)."""
    from phalanb.gpu.sim import SimulatedGpus
    from phalanb.sim.attest import build_report
    from phalanb.sim.keys import SimKeys

    report = build_report(keys=SimKeys(5), algo="ecdsa", nonce=b"\x0c" * 32, tdx=sim_tdx(), gpu=SimulatedGpus(5))
    return json.dumps(report).encode()


def cite(doc: dict, sid: str) -> dict:
    """The receipt document with its upstream.verified event citing ``sid``."""
    doc = copy.deepcopy(doc)
    for e in doc["event_log"]:
        if e["type"] == "upstream.verified":
            e["session_id"] = sid
    return doc


def upstream_session() -> tuple[str, bytes]:
    """A session whose evidence is the simulated upstream report, and its id."""
    up = upstream_report()
    doc = session_doc(up, "application/json", identity={"signing_address": json.loads(up)["signing_address"]})
    return session_id(doc), jcs(doc)
