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

import base64
import binascii
import hashlib
import json
import zlib
from dataclasses import dataclass, field
from typing import Any, Mapping

from eth_utils import keccak

from .. import _json
from ..errors import ParseError, PhalanbError, UnsupportedError
from .signatures import same_address
from ..verdict import Check, Status

__all__ = [
    "SHAPES",
    "NodeAttestation",
    "AttestationReport",
    "parse_report",
    "expected_report_data",
    "binding_checks",
    "check_signing_public_key",
    "merge_chutes_instances",
    "inflate_bounded",
    "WRAPPERS",
    "names_amd",
]

#: Shapes phalanb recognises, with what they can prove.
SHAPES = {
    "dstack-v1": "dstack vllm-proxy (2025-10 →): client nonce echoed as request_nonce",
    "dstack-v1.1": "dstack vllm-proxy (2025-12 →): adds signing_public_key and vm_config",
    "near-model-node": "NEAR AI model node: report_data commits to the signing key and the TLS certificate",
    "dstack-tls": "dstack model server with a TLS-bound report_data (Phala direct ?version=2; the layout NEAR's "
                  "model nodes use too): report_data commits to the signing key and the TLS certificate",
    "near-cloud-gateway": "NEAR AI Cloud gateway: a gateway attestation plus model attestations",
    "chutes": "Chutes behind api.redpill.ai: the server chooses the nonce (not fresh)",
    "chutes-evidence": "Chutes evidence API (api.chutes.ai/chutes/<id>/evidence): per-instance quotes whose "
                       "report_data commits to sha256(client nonce hex ‖ e2e_pubkey); no chat-signing key",
    "tinfoil": "Tinfoil behind api.redpill.ai: a quote only, no binding to the signing key",
    "tinfoil-v2": "Tinfoil attestation v2 (tdx-guest/v2): a gzip-compressed TDX quote whose report_data holds "
                  "Tinfoil's TLS key fingerprint and HPKE key; no client nonce and no chat-signing key",
    "tinfoil-v3": "Tinfoil attestation v3 (TDX): report_data = sha256(TLS key fingerprint ‖ HPKE key ‖ client "
                  "nonce ‖ sha256(GPU evidence)); binds the nonce and the GPUs, but no chat-signing key",
    "venice": "Venice TEE attestation served by a NEAR AI node: dstack fields (signing address ‖ nonce in "
              "report_data) plus Venice's extras, whose own 'verified' claims are not believed",
    "legacy": "static attestation made at boot (2024-12 → 2025-09): no client nonce, cannot be bound",
}

#: Services that wrap another shape and add fields of their own (shown after the shape's description).
WRAPPERS = {
    "nanogpt": "wrapped by a reseller (NanoGPT): its top-level nonce is the wrapper's echo, not attested, and "
               "is ignored",
}

#: A gzip-compressed Tinfoil body decompresses to a TDX quote (about 5 KB); anything far larger is refused.
_MAX_INFLATED_BYTES = 1 << 20

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
    wrapper: str | None = None  # a reseller's wrapping (see WRAPPERS), when recognised

    @property
    def description(self) -> str:
        text = SHAPES[self.shape]
        return f"{text}; {WRAPPERS[self.wrapper]}" if self.wrapper else text

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
    # NEAR's model nodes name their model; Phala's direct servers (?version=2) use the same TLS-bound layout
    # without it. The label follows the explicit field, never the operator phalanb guesses it to be.
    if d.get("model_name"):
        return "near-model-node"
    if d.get("tls_cert_fingerprint"):
        return "dstack-tls"
    if "signing_public_key" in d or "vm_config" in d:
        return "dstack-v1.1"
    if "request_nonce" in d:
        return "dstack-v1"
    return "legacy"


def _is_legacy(d: Mapping[str, Any]) -> bool:
    """The 2024-12 → 2025-09 vllm-proxy answer: a TDX quote (and usually GPU evidence and the signing address),
    made once at boot, with none of the later markers. Its real marker is the quote itself."""
    return "intel_quote" in d or "quote" in d


def _keys(d: Mapping[str, Any]) -> str:
    keys = [str(k)[:40] for k in list(d)[:12]]
    more = f" and {len(d) - 12} more" if len(d) > 12 else ""
    return (", ".join(repr(k) for k in keys) + more) if keys else "no keys at all"


def _unknown(d: Mapping[str, Any]) -> UnsupportedError:
    return UnsupportedError(
        f"this JSON object is not an attestation report shape phalanb knows (it has {_keys(d)}). phalanb reads "
        "the dstack/vllm-proxy reports (request_nonce, intel_quote, nvidia_payload…), NEAR AI Cloud gateway "
        "reports, Chutes, Tinfoil (tdx-guest/v2, attestation/v3) and the legacy boot-time report (intel_quote "
        "without request_nonce). Check that you saved the answer of /v1/attestation/report itself.")


def _refuse_foreign(d: Mapping[str, Any]) -> None:
    """Well-formed attestations of other kinds: named for what they are, never read as a TDX report."""
    if d.get("api_version") == "aci/1":
        raise UnsupportedError("an ACI gateway document (api_version aci/1), not a model server's report: `phalanb "
                               "report FILE` and phalanb.gateway.verify_any_report verify it by its shape (an ACI "
                               "report; the gateway's legacy report, bare or in a reseller's wrapper), "
                               "phalanb.gateway.verify_exchange a reply signed through its legacy endpoints")
    for key in ("tee_hardware", "tee_type", "platform"):
        value = d.get(key)
        if isinstance(value, str) and value.lower().replace("_", "-") in ("amd-sev-snp", "sev-snp", "snp"):
            raise UnsupportedError(f"an AMD SEV-SNP attestation; phalanb verifies Intel TDX ({key} is {value!r})")
    att = d.get("attestation")
    if isinstance(att, str) and set(d) <= {"attestation", "vm_config", "nonce"} and names_amd(att):
        raise UnsupportedError("an AMD SEV-SNP attestation; phalanb verifies Intel TDX (a dstack attestation whose "
                               "certificates are AMD's ARK/ASK/VCEK chain)")


def names_amd(text: str) -> bool:
    """Whether a hex blob (dstack's versioned attestation) carries AMD's SEV certificates. Bounded: only the first
    megabyte is looked at, and only for PEM blocks whose issuer is AMD."""
    from cryptography import x509

    try:
        blob = bytes.fromhex(text[:2 << 20])
    except ValueError:
        return False
    begin = b"-----BEGIN CERTIFICATE-----"
    end = b"-----END CERTIFICATE-----"
    pos = 0
    for _ in range(8):
        i = blob.find(begin, pos)
        if i < 0:
            return False
        j = blob.find(end, i)
        if j < 0:
            return False
        pos = j + len(end)
        try:
            cert = x509.load_pem_x509_certificate(blob[i:pos])
            org = cert.issuer.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
        except (ValueError, TypeError, KeyError, x509.InvalidVersion, x509.DuplicateExtension):
            continue  # not a readable certificate: it names nobody
        if any("Advanced Micro Devices" in str(a.value) for a in org):
            return True
    return False


# -- Tinfoil -------------------------------------------------------------------------------------------------

_TINFOIL = "https://tinfoil.sh/predicate/"


def _b64_field(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise ParseError(f"expected base64 text, got {type(value).__name__}", field=name)
    if len(value) > 4 * _MAX_INFLATED_BYTES:
        raise ParseError(f"{len(value)} characters is far larger than any quote", field=name)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ParseError("not base64", field=name) from None


def inflate_bounded(data: bytes, name: str, limit: int = _MAX_INFLATED_BYTES) -> bytes:
    """gzip-decompress ``data`` to at most ``limit`` bytes; a bomb, a truncated or a corrupt stream is a
    :class:`ParseError` naming ``name``, never ``zlib.error`` or unbounded memory."""
    d = zlib.decompressobj(wbits=31)  # gzip framing only
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as exc:
        raise ParseError(f"not a valid gzip stream ({exc})", field=name) from None
    if len(out) > limit or d.unconsumed_tail:
        raise ParseError(f"decompresses to more than {limit} bytes: refusing a compression bomb", field=name)
    if not d.eof:
        raise ParseError("the gzip stream is truncated", field=name)
    return out


def _tinfoil(d: Mapping[str, Any], raw: dict[str, Any], wrapper: str | None) -> AttestationReport:
    fmt = d.get("format")
    kind = fmt[len(_TINFOIL):] if isinstance(fmt, str) else ""
    if "sev-snp" in kind or "snp" in kind.split("/")[0]:
        raise UnsupportedError(f"an AMD SEV-SNP attestation; phalanb verifies Intel TDX (a Tinfoil {fmt} document)")
    if kind == "tdx-guest/v2":
        quote = inflate_bounded(_b64_field(d.get("body"), "body"), "body")
        node = NodeAttestation(shape="tinfoil-v2", intel_quote=quote.hex(), nonce_source="none", binding=None,
                               raw=dict(d))
        return AttestationReport("tinfoil-v2", [node], raw=raw, wrapper=wrapper)
    if kind == "attestation/v3":
        cpu = d.get("cpu")
        if not isinstance(cpu, Mapping):
            raise ParseError("a Tinfoil v3 document needs a cpu object", field="cpu")
        platform = cpu.get("platform")
        if isinstance(platform, str) and "snp" in platform.lower():
            raise UnsupportedError(f"an AMD SEV-SNP attestation; phalanb verifies Intel TDX (a Tinfoil v3 document, "
                                   f"cpu.platform {platform!r})")
        if platform != "tdx":
            raise UnsupportedError(f"a Tinfoil v3 document for platform {str(platform)[:60]!r}; phalanb reads only "
                                   "'tdx'")
        if "nvswitch" in d:
            raise UnsupportedError("a Tinfoil v3 document with NVSwitch evidence: phalanb does not verify NVSwitch "
                                   "evidence, so its report_data (which commits to it) cannot be recomputed")
        quote = _b64_field(cpu.get("report"), "cpu.report")
        rd = d.get("report_data")
        if not isinstance(rd, Mapping):
            raise ParseError("a Tinfoil v3 document needs a report_data object", field="report_data")
        for key in ("tls_key_fp", "hpke_key", "nonce"):
            value = rd.get(key)
            if not isinstance(value, str) or len(value) != 64 or not _is_hex(value):
                raise ParseError("expected 32 bytes as 64 hex digits", field=f"report_data.{key}")
        gpu = d.get("gpu")
        payload = None
        if gpu is not None:
            if not isinstance(gpu, Mapping) or not isinstance(gpu.get("evidences"), list):
                raise ParseError("must be an object with an evidences list", field="gpu")
            arches = {e["arch"] for e in gpu["evidences"] if isinstance(e, Mapping) and isinstance(e.get("arch"), str)}
            payload = {"nonce": rd["nonce"], "evidence_list": gpu["evidences"],
                       "arch": arches.pop() if len(arches) == 1 else None}
        node = NodeAttestation(shape="tinfoil-v3", request_nonce=rd["nonce"], nonce_source="client",
                               intel_quote=base64.b64encode(quote).decode(), nvidia_payload=payload,
                               binding="tinfoil-v3", raw=dict(d))
        return AttestationReport("tinfoil-v3", [node], raw=raw, wrapper=wrapper)
    raise UnsupportedError(f"a Tinfoil attestation document of format {str(fmt)[:120]!r}; phalanb reads "
                           "tdx-guest/v2 and attestation/v3 (TDX) documents")


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


def _tinfoil_v3_report_data(node: NodeAttestation) -> tuple[bytes | None, str]:
    rd = node.raw.get("report_data") or {}
    gpu = node.raw.get("gpu")
    if gpu is None:
        return None, "a Tinfoil v3 document without GPU evidence: phalanb knows only the GPU layout of its report_data"
    # The GPU hash is recomputed from the evidence itself (compact JSON, the document's key order), never taken
    # from the document's own gpu_evidence_hash claim.
    try:
        text = json.dumps(gpu, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        return None, "the gpu evidence of this Tinfoil v3 document is not plain JSON, so its hash cannot be taken"
    gpu_hash = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    parts = b"".join(bytes.fromhex(rd[k]) for k in ("tls_key_fp", "hpke_key", "nonce")) + gpu_hash
    return (hashlib.sha256(parts).digest(),
            "sha256(tls_key_fp ‖ hpke_key ‖ nonce ‖ sha256(compact JSON of the gpu evidence))")


# -- Chutes ----------------------------------------------------------------------------------------------------

def merge_chutes_instances(evidence: Mapping[str, Any], instances: Mapping[str, Any]) -> dict[str, Any]:
    """The Chutes evidence API answer with each entry's ``e2e_pubkey`` taken from the ``/e2e/instances/<chute>``
    answer (matched by ``instance_id``). The keys are claims too: the quote's report_data must commit to them."""
    if not isinstance(evidence, Mapping) or not isinstance(evidence.get("evidence"), list):
        raise ParseError("expected the Chutes evidence API answer, an object with an evidence list", field="evidence")
    listed = instances.get("instances") if isinstance(instances, Mapping) else None
    if not isinstance(listed, list):
        raise ParseError("expected the Chutes e2e instances answer, an object with an instances list",
                         field="instances")
    keys = {i["instance_id"]: i.get("e2e_pubkey") for i in listed
            if isinstance(i, Mapping) and isinstance(i.get("instance_id"), str)}

    def key_of(e: Any) -> Any:
        ident = e.get("instance_id") if isinstance(e, Mapping) else None
        return keys.get(ident) if isinstance(ident, str) else None

    out = dict(evidence)
    out["evidence"] = [{**e, "e2e_pubkey": key_of(e)} if isinstance(key_of(e), str) else e
                       for e in evidence["evidence"]]
    return out


def _gpu_entries(entries: list[Any], field: str):
    """``(where, entry, gpu_evidence)`` for each per-instance entry of a Chutes answer, each checked to be an object
    whose ``gpu_evidence``, when present, is a list."""
    for i, e in enumerate(entries):
        where = f"{field}[{i}]."
        if not isinstance(e, Mapping):
            raise ParseError("must be an object", field=where.rstrip("."))
        ev = e.get("gpu_evidence")
        if ev is not None and not isinstance(ev, list):
            raise ParseError("gpu_evidence must be a list", field=f"{where}gpu_evidence")
        yield where, e, ev


def _chutes_evidence(d: Mapping[str, Any], raw: dict[str, Any]) -> AttestationReport:
    entries = d.get("evidence")
    if not isinstance(entries, list) or not entries:
        raise ParseError("the Chutes evidence API answer lists no evidence", field="evidence")
    nodes = []
    for where, e, ev in _gpu_entries(entries, "evidence"):
        # The nonce is the one we asked with (?nonce=), bound only through the report_data hash: the answer does
        # not echo it, so request_nonce is filled in by the verifier from the nonce it sent.
        nodes.append(NodeAttestation(
            shape="chutes-evidence", nonce_source="client", intel_quote=_str(e, "quote", where), gpu_evidence=ev,
            e2e_pubkey=_str(e, "e2e_pubkey", where), instance_id=_str(e, "instance_id", where),
            binding="chutes-client", raw=dict(e)))
    return AttestationReport("chutes-evidence", nodes, raw=raw)


def parse_report(data: Mapping[str, Any] | str | bytes) -> AttestationReport:
    """Recognise the shape of an attestation report and normalise it. Raises :class:`ParseError` on garbage and
    :class:`UnsupportedError` for a JSON object of no known shape (naming its keys) or an attestation of another
    kind (AMD SEV-SNP, an ACI gateway report)."""
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
    _refuse_foreign(data)
    kind = data.get("attestation_type")
    # NanoGPT passes the upstream document through and adds a top-level "nonce" echoing the client's.
    wrapper = "nanogpt" if "nonce" in data and "request_nonce" not in data else None

    if kind == "chutes":
        server_nonce = _str(data, "nonce", "")
        entries = data.get("all_attestations")
        if not isinstance(entries, list) or not entries:
            raise ParseError("a Chutes report needs a non-empty all_attestations list", field="all_attestations")
        nodes = []
        for where, e, ev in _gpu_entries(entries, "all_attestations"):
            nodes.append(NodeAttestation(
                shape="chutes", signing_address=None, signing_algo=None,
                request_nonce=_str(e, "nonce", where) or server_nonce, nonce_source="server",
                intel_quote=_str(e, "intel_quote", where), gpu_evidence=ev, e2e_pubkey=_str(e, "e2e_pubkey", where),
                instance_id=_str(e, "instance_id", where), binding="chutes", raw=dict(e)))
        # Redpill's own top-level nonce is the entries' one; a different one is a wrapper's echo (NanoGPT).
        echoed = server_nonce is not None and any(n.request_nonce != server_nonce for n in nodes)
        return AttestationReport("chutes", nodes, server_nonce=server_nonce, raw=raw,
                                 wrapper="nanogpt" if echoed else None)

    if kind == "tinfoil":
        node = NodeAttestation(shape="tinfoil", intel_quote=_str(data, "intel_quote", ""), nonce_source="none",
                               binding=None, raw=raw)
        return AttestationReport("tinfoil", [node], raw=raw)

    if isinstance(data.get("format"), str) and data["format"].startswith(_TINFOIL):
        return _tinfoil(data, raw, wrapper)

    if isinstance(data.get("evidence"), list) and "failed_instance_ids" in data:
        return _chutes_evidence(data, raw)

    if "model_attestations" in data or "gateway_attestation" in data:
        models = data.get("model_attestations")
        if not isinstance(models, list) or not models:
            raise ParseError("a gateway report needs a non-empty model_attestations list", field="model_attestations")
        nodes = [_node(m, _classify(m) if isinstance(m, Mapping) else "legacy", f"model_attestations[{i}].")
                 for i, m in enumerate(models)]
        gw = data.get("gateway_attestation")
        if gw is not None and not isinstance(gw, Mapping):
            raise ParseError("the gateway attestation must be an object", field="gateway_attestation")
        gateway = _node(gw, _classify(gw), "gateway_attestation.") if gw is not None else None
        return AttestationReport("near-cloud-gateway", nodes, gateway=gateway, raw=raw, wrapper=wrapper)

    venice = "tee_provider" in data or "server_verification" in data
    shape = "venice" if venice else _classify(data)
    if shape == "legacy" and not _is_legacy(data):
        raise _unknown(data)
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
    if node.binding in ("chutes", "chutes-client"):
        if node.binding == "chutes-client" and not node.e2e_pubkey:
            return None, ("the Chutes evidence answer does not carry the instance's e2e_pubkey: merge the "
                          "/e2e/instances/<chute> answer (merge_chutes_instances, or phalanb report --e2e-instances)")
        if not node.request_nonce or not node.e2e_pubkey:
            return None, "the Chutes entry lacks its nonce or e2e_pubkey"
        return (hashlib.sha256((node.request_nonce + node.e2e_pubkey).encode("utf-8", "surrogatepass")).digest(),
                "sha256(server nonce hex ‖ e2e_pubkey)" if node.binding == "chutes" else
                "sha256(our nonce hex ‖ e2e_pubkey)")
    if node.binding == "tinfoil-v3":
        return _tinfoil_v3_report_data(node)
    if node.shape == "tinfoil-v2":
        return None, ("Tinfoil v2's report_data is its TLS key fingerprint ‖ HPKE key: it binds no chat-signing key "
                      "and no client nonce")
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


#: Layouts whose report_data commits to the client nonce inside a hash rather than in report_data[32:].
_NONCE_IN_HASH = ("tinfoil-v3", "chutes-client")


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
    if node.binding in _NONCE_IN_HASH and report_data is not None:
        # Our nonce is one of the hashed inputs of report_data[:32]: fresh exactly when that hash holds.
        bound = checks[0]
        fev["report_data_check"] = bound.status.value
        if bound.status is Status.SKIPPED:
            checks.append(Check("report.nonce_fresh", Status.SKIPPED, "our nonce is bound only through the "
                                f"report_data hash, which could not be checked ({bound.reason})", fev))
            return checks
        if bound.status is not Status.PASS:
            problems.append("report_data[:32] is not the hash over our nonce")
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
        gpu = " and nvidia_payload.nonce" if pn is not None else ""
        reason = (f"report_data[:32] is a hash over our nonce (request_nonce{gpu} carry it too)"
                  if node.binding in _NONCE_IN_HASH else
                  f"request_nonce, report_data[32:]{gpu} all equal our nonce")
        checks.append(Check("report.nonce_fresh", Status.PASS, reason, fev))
    return checks
