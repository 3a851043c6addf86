"""Attestation reports: every shape a service publishes (SPEC §5), normalised; and the binding and freshness
checks of SPEC §6.

Services changed their report format several times and resellers wrap it further. :func:`parse_report` accepts
each shape, says which one it saw, and returns the attested *nodes* (one per signing key) in one form:
:class:`NodeAttestation`. :func:`binding_checks` then asks the two questions that tie a signature to hardware:

- ``report.report_data``: does the TDX quote's ``report_data`` commit to this signing key (and nonce)?
- ``report.nonce_fresh``: is the report an answer to *our* random nonce (request_nonce, report_data[32:] and
  the GPU payload's nonce all equal to what we sent)?

>>> report = parse_report(json.loads(text))           # doctest: +SKIP
>>> report.shape, [n.signing_address for n in report.nodes]   # doctest: +SKIP
('dstack-v1.1', ['0x96a9…'])
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from eth_utils import keccak

from . import _json
from .errors import ParseError, PhalanbError
from .signatures import same_address
from .verdict import Check, Status

__all__ = [
    "SHAPES",
    "NodeAttestation",
    "AttestationReport",
    "parse_report",
    "expected_report_data",
    "binding_checks",
    "check_signing_public_key",
]

#: Shapes phalanb recognises, with what they can prove.
SHAPES = {
    "dstack-v1": "dstack vllm-proxy (2025-10 →): client nonce echoed as request_nonce",
    "dstack-v1.1": "dstack vllm-proxy (2025-12 →): adds signing_public_key and vm_config",
    "near-model-node": "NEAR AI model node: report_data commits to the signing key and the TLS certificate",
    "near-cloud-gateway": "NEAR AI Cloud gateway: a gateway attestation plus model attestations",
    "chutes": "Chutes behind api.redpill.ai: the server chooses the nonce (not fresh)",
    "tinfoil": "Tinfoil behind api.redpill.ai: a quote only, no binding to the signing key",
    "legacy": "static attestation made at boot (2024-12 → 2025-09): no client nonce, cannot be bound",
}

_MAX_REPORT_BYTES = 64 * 1024 * 1024


@dataclass
class NodeAttestation:
    """One attested node: the key it signs with and the evidence that binds the key.

    ``binding`` names the report_data layout: ``"address"`` (dstack), ``"tls"`` (NEAR/Phala TLS variant),
    ``"chutes"``, or ``None`` when the shape cannot bind (tinfoil, legacy).
    """

    shape: str
    signing_address: str | None = None
    signing_algo: str | None = None
    signing_public_key: str | None = None
    request_nonce: str | None = None
    nonce_source: str = "client"  # "client": echoes our nonce; "server": the server chose it; "none"
    intel_quote: str | None = None
    nvidia_payload: Any = None
    gpu_evidence: list[Any] | None = None  # Chutes: a list of evidence items instead of nvidia_payload
    event_log: Any = None
    info: dict[str, Any] = field(default_factory=dict)
    vm_config: Any = None
    tls_cert_fingerprint: str | None = None
    e2e_pubkey: str | None = None
    model_name: str | None = None
    instance_id: str | None = None
    binding: str | None = "address"
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def app_compose(self) -> str | None:
        tcb = self.info.get("tcb_info") if isinstance(self.info, dict) else None
        if isinstance(tcb, str):
            try:
                tcb = _json.loads(tcb)
            except json.JSONDecodeError:
                tcb = None
        if isinstance(tcb, dict) and isinstance(tcb.get("app_compose"), str):
            return tcb["app_compose"]
        return None

    @property
    def effective_event_log(self) -> Any:
        """The event log: the report's own, or the one inside ``info.tcb_info`` (older reports)."""
        if self.event_log not in (None, "", []):
            return self.event_log
        tcb = self.info.get("tcb_info") if isinstance(self.info, dict) else None
        if isinstance(tcb, str):
            try:
                tcb = _json.loads(tcb)
            except json.JSONDecodeError:
                return None
        return tcb.get("event_log") if isinstance(tcb, dict) else None


@dataclass
class AttestationReport:
    shape: str
    nodes: list[NodeAttestation]
    gateway: NodeAttestation | None = None
    server_nonce: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def description(self) -> str:
        return SHAPES[self.shape]

    def select(self, signing_address: str | None) -> NodeAttestation:
        """The node that holds this signing key (several nodes: pick by address; one node: that one)."""
        if signing_address:
            for node in self.nodes:
                if same_address(node.signing_address, signing_address):
                    return node
        if len(self.nodes) == 1:
            return self.nodes[0]
        known = ", ".join(str(n.signing_address) for n in self.nodes)
        raise PhalanbError(f"no attested node has signing address {signing_address}; the report lists {known}. "
                           "Ask the service with &signing_address= to reach the node that signed.")


def _str(d: Mapping[str, Any], key: str, where: str) -> str | None:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ParseError(f"expected a string, got {type(value).__name__}", field=f"{where}{key}")
    return value


def _info(d: Mapping[str, Any], where: str) -> dict[str, Any]:
    info = d.get("info")
    if info is None:
        return {}
    if isinstance(info, str):
        try:
            info = _json.loads(info)
        except json.JSONDecodeError as exc:
            raise ParseError(f"info is a string but not JSON ({exc.msg})", field=f"{where}info") from None
    if not isinstance(info, dict):
        raise ParseError("info must be an object", field=f"{where}info")
    return info


def _node(d: Mapping[str, Any], shape: str, where: str) -> NodeAttestation:
    if not isinstance(d, Mapping):
        raise ParseError("an attestation entry must be a JSON object", field=where.rstrip(".") or "report")
    quote = _str(d, "intel_quote", where) or _str(d, "quote", where)
    tls = _str(d, "tls_cert_fingerprint", where)
    node = NodeAttestation(
        shape=shape,
        signing_address=_str(d, "signing_address", where),
        signing_algo=_str(d, "signing_algo", where),
        signing_public_key=_str(d, "signing_public_key", where),
        request_nonce=_str(d, "request_nonce", where),
        intel_quote=quote,
        nvidia_payload=d.get("nvidia_payload"),
        event_log=d.get("event_log"),
        info=_info(d, where),
        vm_config=d.get("vm_config"),
        tls_cert_fingerprint=tls,
        model_name=_str(d, "model_name", where),
        raw=dict(d),
    )
    if tls is not None:
        node.binding = "tls"
    if node.request_nonce is None:
        node.nonce_source = "none"
    return node


def _classify(d: Mapping[str, Any]) -> str:
    if d.get("tls_cert_fingerprint") or d.get("model_name"):
        return "near-model-node"
    if "signing_public_key" in d or "vm_config" in d:
        return "dstack-v1.1"
    if "request_nonce" in d:
        return "dstack-v1"
    return "legacy"


def parse_report(data: Mapping[str, Any] | str | bytes) -> AttestationReport:
    """Recognise the shape of an attestation report and normalise it. Raises :class:`ParseError` on garbage."""
    if isinstance(data, (str, bytes)):
        if len(data) > _MAX_REPORT_BYTES:
            raise ParseError(f"{len(data)} bytes is larger than any attestation report", field="report")
        try:
            data = _json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ParseError(f"not JSON ({exc})", field="report") from None
    if not isinstance(data, Mapping):
        raise ParseError("an attestation report must be a JSON object", field="report")
    raw = dict(data)
    kind = data.get("attestation_type")

    if kind == "chutes":
        server_nonce = _str(data, "nonce", "")
        entries = data.get("all_attestations")
        if not isinstance(entries, list) or not entries:
            raise ParseError("a Chutes report needs a non-empty all_attestations list", field="all_attestations")
        nodes = []
        for i, e in enumerate(entries):
            where = f"all_attestations[{i}]."
            if not isinstance(e, Mapping):
                raise ParseError("must be an object", field=where.rstrip("."))
            ev = e.get("gpu_evidence")
            if ev is not None and not isinstance(ev, list):
                raise ParseError("gpu_evidence must be a list", field=f"{where}gpu_evidence")
            nodes.append(NodeAttestation(
                shape="chutes", signing_address=None, signing_algo=None,
                request_nonce=_str(e, "nonce", where) or server_nonce, nonce_source="server",
                intel_quote=_str(e, "intel_quote", where), gpu_evidence=ev, e2e_pubkey=_str(e, "e2e_pubkey", where),
                instance_id=_str(e, "instance_id", where), binding="chutes", raw=dict(e)))
        return AttestationReport("chutes", nodes, server_nonce=server_nonce, raw=raw)

    if kind == "tinfoil":
        node = NodeAttestation(shape="tinfoil", intel_quote=_str(data, "intel_quote", ""), nonce_source="none",
                               binding=None, raw=raw)
        return AttestationReport("tinfoil", [node], raw=raw)

    if "model_attestations" in data or "gateway_attestation" in data:
        models = data.get("model_attestations")
        if not isinstance(models, list) or not models:
            raise ParseError("a gateway report needs a non-empty model_attestations list", field="model_attestations")
        nodes = [_node(m, _classify(m) if isinstance(m, Mapping) else "legacy", f"model_attestations[{i}].")
                 for i, m in enumerate(models)]
        gw = data.get("gateway_attestation")
        gateway = _node(gw, _classify(gw), "gateway_attestation.") if isinstance(gw, Mapping) else None
        return AttestationReport("near-cloud-gateway", nodes, gateway=gateway, raw=raw)

    shape = _classify(data)
    entries = data.get("all_attestations")
    if isinstance(entries, list) and entries:
        nodes = [_node(e, _classify(e) if isinstance(e, Mapping) else shape, f"all_attestations[{i}].")
                 for i, e in enumerate(entries)]
        # The top level repeats one entry; if it is not in the list (an older proxy), keep it too.
        top = _node(data, shape, "")
        if top.signing_address and not any(same_address(n.signing_address, top.signing_address) for n in nodes):
            nodes.insert(0, top)
    else:
        nodes = [_node(data, shape, "")]
    if shape == "legacy":
        for n in nodes:
            n.binding = "address" if n.signing_address else None
            n.nonce_source = "none"
    return AttestationReport(shape, nodes, raw=raw)


# -- binding ------------------------------------------------------------------------------------------------

def _key_bytes(node: NodeAttestation) -> bytes:
    if not node.signing_address:
        raise PhalanbError("the report names no signing address")
    try:
        return bytes.fromhex(node.signing_address.removeprefix("0x"))
    except ValueError:
        raise ParseError("signing_address is not hex", field="signing_address") from None


def expected_report_data(node: NodeAttestation) -> tuple[bytes | None, str]:
    """The first 32 bytes ``report_data`` must have for this node, and how they were derived.

    Returns ``(None, why)`` when the shape cannot bind a key.
    """
    if node.binding == "address":
        key = _key_bytes(node)
        return key.ljust(32, b"\0"), "signing address right-padded to 32 bytes"
    if node.binding == "tls":
        key = _key_bytes(node)
        try:
            fp = bytes.fromhex(node.tls_cert_fingerprint or "")
        except ValueError:
            raise ParseError("tls_cert_fingerprint is not hex", field="tls_cert_fingerprint") from None
        return hashlib.sha256(key + fp).digest(), "sha256(signing key ‖ TLS certificate fingerprint)"
    if node.binding == "chutes":
        if not node.request_nonce or not node.e2e_pubkey:
            return None, "the Chutes entry lacks its nonce or e2e_pubkey"
        return (hashlib.sha256((node.request_nonce + node.e2e_pubkey).encode("utf-8", "surrogatepass")).digest(),
                "sha256(server nonce hex ‖ e2e_pubkey)")
    return None, f"a {node.shape} report carries no signing key binding ({SHAPES.get(node.shape, '')})"


def check_signing_public_key(node: NodeAttestation) -> Check | None:
    """``report.signing_key``: where the report publishes the public key, it must match the address."""
    pub, addr = node.signing_public_key, node.signing_address
    if not pub or not addr:
        return None
    ev = {"signing_public_key": pub, "signing_address": addr}
    try:
        pub_b = bytes.fromhex(pub.removeprefix("0x"))
    except ValueError:
        return Check("report.signing_key", Status.FAIL, "signing_public_key is not hex", ev, required=False)
    if (node.signing_algo or "ecdsa") == "ecdsa":
        if len(pub_b) == 65 and pub_b[0] == 4:
            pub_b = pub_b[1:]
        if len(pub_b) != 64:
            return Check("report.signing_key", Status.FAIL, f"an ecdsa public key is 64 bytes x‖y, got {len(pub_b)}",
                         ev, required=False)
        derived = "0x" + keccak(pub_b)[-20:].hex()
        ok = same_address(derived, addr)
        return Check("report.signing_key", Status.PASS if ok else Status.FAIL,
                     "keccak256(signing_public_key)[-20:] is the signing address" if ok else
                     f"signing_public_key derives {derived}, not the signing address {addr}",
                     {**ev, "derived": derived}, required=False)
    ok = same_address(pub, addr)
    return Check("report.signing_key", Status.PASS if ok else Status.FAIL,
                 "the ed25519 public key is the signing address" if ok else
                 "signing_public_key differs from signing_address", ev, required=False)


def _payload_nonce(node: NodeAttestation) -> str | None:
    p = node.nvidia_payload
    if isinstance(p, str):
        try:
            p = _json.loads(p)
        except json.JSONDecodeError:
            return None
    return p.get("nonce") if isinstance(p, Mapping) and isinstance(p.get("nonce"), str) else None


def binding_checks(node: NodeAttestation, report_data: bytes | None, nonce: bytes | None) -> list[Check]:
    """``report.report_data`` and ``report.nonce_fresh`` for one node.

    ``report_data`` is the 64 bytes from the (parsed) TDX quote, or None if the quote could not be read.
    ``nonce`` is the 32 bytes we sent, or None if we sent none.
    """
    checks: list[Check] = []
    ev: dict[str, Any] = {"layout": node.binding, "shape": node.shape}
    # report.report_data — does the quote commit to the signing key?
    if report_data is None:
        checks.append(Check("report.report_data", Status.SKIPPED, "no readable TDX quote to take report_data from",
                            ev))
    else:
        ev["report_data"] = report_data.hex()
        try:
            want, how = expected_report_data(node)
        except PhalanbError as exc:
            want, how = None, str(exc)
        ev["derivation"] = how
        if want is None:
            checks.append(Check("report.report_data", Status.SKIPPED, f"cannot bind: {how}", ev))
        elif report_data[:32] == want:
            checks.append(Check("report.report_data", Status.PASS, f"report_data[:32] = {how}",
                                {**ev, "expected": want.hex()}))
        else:
            checks.append(Check("report.report_data", Status.FAIL, f"report_data[:32] is not the {how}: the quote "
                                "does not vouch for this signing key", {**ev, "expected": want.hex()}))

    # report.nonce_fresh — is this report an answer to our nonce?
    fev: dict[str, Any] = {"sent": nonce.hex() if nonce else None, "request_nonce": node.request_nonce,
                           "nonce_source": node.nonce_source}
    if node.nonce_source == "server":
        checks.append(Check("report.nonce_fresh", Status.FAIL, "the server chose the nonce itself "
                            f"({(node.request_nonce or '')[:16]}…): a replayed report would look the same", fev))
        return checks
    if node.nonce_source == "none":
        checks.append(Check("report.nonce_fresh", Status.SKIPPED, f"{SHAPES[node.shape]}: no client nonce is "
                            "echoed, so the report cannot be shown to be fresh", fev))
        return checks
    if nonce is None:
        checks.append(Check("report.nonce_fresh", Status.SKIPPED, "we sent no nonce, so freshness cannot be shown",
                            fev))
        return checks
    problems = []
    if (node.request_nonce or "").lower() != nonce.hex():
        problems.append("request_nonce is not our nonce")
    if report_data is not None and node.binding in ("address", "tls") and report_data[32:] != nonce:
        problems.append("report_data[32:] is not our nonce")
        fev["report_data_nonce"] = report_data[32:].hex()
    pn = _payload_nonce(node)
    fev["nvidia_payload_nonce"] = pn
    if pn is not None and pn.lower() != nonce.hex():
        problems.append("nvidia_payload.nonce is not our nonce")
    if problems:
        checks.append(Check("report.nonce_fresh", Status.FAIL, "; ".join(problems) + ": the server ignored our "
                            "nonce or replayed an old report", fev))
    elif report_data is None:
        checks.append(Check("report.nonce_fresh", Status.SKIPPED, "request_nonce echoes our nonce, but without a "
                            "readable quote report_data[32:] cannot be compared", fev))
    else:
        checks.append(Check("report.nonce_fresh", Status.PASS, "request_nonce, report_data[32:]"
                            + (" and nvidia_payload.nonce" if pn is not None else "") + " all equal our nonce", fev))
    return checks
