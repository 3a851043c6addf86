"""One registry of every attestation shape phalanb knows: how it is identified, who parses it, what it supports.

Each :class:`Shape` names the **explicit markers** that identify it (fields that must be present, or must hold a
given value), its parser, the checks it supports and the source that defines it. :func:`identify` walks the
registry in order and returns the first shape whose markers all hold: the order puts the more specific shape
first (a reseller's wrapper of an ACI gateway before the bare gateway; an ACI report before anything else). It
never guesses: a document that matches no entry is an :class:`~phalanb.errors.UnsupportedError` (exit 2) naming
the fields it found.

A new shape is one more :class:`Shape` in :data:`REGISTRY` (e.g. ACI v3: markers, ``parse_aci_report``, its
checks, ``ACI-v3.md``). The README's shape table is :func:`shape_table` (a test keeps them equal;
``python -m phalanb.gateway.shapes`` prints it).

>>> identify({"api_version": "aci/1", "attestation": {...}, "signing_address": "0x…", ...}).name  # doctest: +SKIP
'aci-legacy-gateway'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..errors import UnsupportedError

__all__ = ["Marker", "Shape", "REGISTRY", "WRAPPERS", "identify", "shape_named", "shape_table", "found_fields"]


@dataclass(frozen=True)
class Marker:
    """One explicit test on a document's fields, with the words that describe it in the shape table."""

    text: str
    test: Callable[[Mapping[str, Any]], bool] = field(compare=False)

    def __call__(self, doc: Mapping[str, Any]) -> bool:
        try:
            return bool(self.test(doc))
        except (AttributeError, TypeError):
            return False


def has(*names: str) -> Marker:
    """Every one of ``names`` is a top-level member."""
    return Marker(" + ".join(f"`{n}`" for n in names), lambda d: all(n in d for n in names))


def has_any(*names: str) -> Marker:
    return Marker(" or ".join(f"`{n}`" for n in names), lambda d: any(n in d for n in names))


def lacks(*names: str) -> Marker:
    return Marker("no " + " / ".join(f"`{n}`" for n in names), lambda d: not any(n in d for n in names))


def equals(name: str, value: str) -> Marker:
    return Marker(f'`{name}: "{value}"`', lambda d: d.get(name) == value)


def _at(doc: Mapping[str, Any], path: str) -> Any:
    cur: Any = doc
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def has_path(path: str) -> Marker:
    return Marker(f"`{path}`", lambda d: _at(d, path) is not None)


def lacks_path(path: str) -> Marker:
    return Marker(f"no `{path}`", lambda d: _at(d, path) is None)


_TINFOIL = "https://tinfoil.sh/predicate/"
_SNP = ("amd-sev-snp", "sev-snp", "snp")


def _names_snp(doc: Mapping[str, Any]) -> bool:
    for key in ("tee_hardware", "tee_type", "platform"):
        v = doc.get(key)
        if isinstance(v, str) and v.lower().replace("_", "-") in _SNP:
            return True
    fmt = doc.get("format")
    if isinstance(fmt, str) and fmt.startswith(_TINFOIL) and "snp" in fmt[len(_TINFOIL):].split("/")[0]:
        return True
    platform = _at(doc, "cpu.platform")
    if isinstance(platform, str) and "snp" in platform.lower():
        return True
    att = doc.get("attestation")
    if isinstance(att, str) and set(doc) <= {"attestation", "vm_config", "nonce"}:
        from ..vllm.report import names_amd  # dstack's versioned attestation: AMD's ARK/ASK/VCEK certificates

        return names_amd(att)
    return False


_LEGACY = ("signing_address", "intel_quote")
_RESELLER = ("tee_provider", "server_verification", "nonce_source")


@dataclass(frozen=True)
class Shape:
    """One shape: ``markers`` must all hold; ``parser`` reads it (a dotted name, resolved on use, so reading the
    registry loads no verifier); ``checks`` are the check ids (or families) it supports; ``source`` defines it."""

    name: str
    protocol: str          # "aci", "vllm-proxy", "reseller", "session-evidence" or "refused"
    title: str
    markers: tuple[Marker, ...]
    parser: str
    checks: tuple[str, ...]
    source: str
    verifies: bool = True  # False: named for what it is, never verified (refused kinds, verifier summaries)

    def matches(self, doc: Mapping[str, Any]) -> bool:
        return all(m(doc) for m in self.markers)

    def parse(self, doc: Any) -> Any:
        import importlib

        module, _, name = self.parser.rpartition(".")
        return getattr(importlib.import_module(module), name)(doc)


_TDX = "tdx.* (quote, QE, PCK chain, TCB, debug, event log, measurements), app.compose_hash"
_GPU = "gpu.* (SPDM signature, chain, nonce, count), nras.result"

#: Every shape, most specific first. The first entry whose markers all hold is the shape.
REGISTRY: tuple[Shape, ...] = (
    Shape("sev-snp", "refused", "AMD SEV-SNP attestation (dstack, Tinfoil v3 SNP)",
          (Marker("`tee_hardware`/`tee_type`/`platform` names SEV-SNP, a Tinfoil SNP `format`/`cpu.platform`, or a "
                  "dstack `attestation` whose certificates AMD issued",
                  _names_snp),),
          "phalanb.vllm.report.parse_report", (), "fixtures field/tinfoil-cloud-sevsnp-2026-06, dstack-sevsnp-2026",
          verifies=False),
    Shape("reseller-aci-gateway", "reseller", "an ACI gateway's legacy report inside a reseller's wrapper (Venice)",
          (equals("api_version", "aci/1"), has(*_LEGACY), has_any(*_RESELLER)),
          "phalanb.gateway.legacy.parse_legacy_gateway_report",
          ("report.shape", "scope", "legacy.report_data", "legacy.nonce_fresh", "report.signing_key", _TDX,
           "aci.keyset_digest", "aci.workload_id", "aci.keyset_endorsement", "aci.keyset_established",
           "gpu.* (not this VM's where num_gpus is 0)", "reseller.claims", "service.profile"),
          "ACI.md §4; fixture field/venice-aci-gateway-glm52-2026-07"),
    Shape("aci-legacy-gateway", "aci", "an ACI gateway's legacy /v1/attestation/report answer",
          (equals("api_version", "aci/1"), has(*_LEGACY)),
          "phalanb.gateway.legacy.parse_legacy_gateway_report",
          ("report.shape", "scope", "legacy.report_data", "legacy.nonce_fresh", "report.signing_key", _TDX,
           "aci.keyset_digest", "aci.keyset_established", "gpu.*", "service.profile"),
          "ACI.md §4"),
    Shape("aci-v3", "aci", "ACI aci/1 v3 (served bytes): workload_keyset_b64 hashed as served, receipt envelopes, "
          "sha256: session ids, E2EE v3",
          (equals("api_version", "aci/1"), has_path("attestation.workload_keyset_b64"),
           lacks_path("attestation.workload_keyset"), lacks("workload_id"), lacks(*_LEGACY)),
          "phalanb.aci.report.parse_aci_report",
          ("aci.shape", "aci.keyset_b64", "aci.keyset_digest", "aci.report_data", "aci.nonce_fresh", "aci.tee_type",
           "aci.quote_slot", "aci.keyset_expiry", "aci.provenance", "aci.key_custody", _TDX, "channel.tls_spki",
           "aci.keyset_header", "service.profile", "receipt.* (envelopes)", "session.* (sha256: ids)",
           "e2ee.model_key, e2ee.request_sealed, e2ee.open"),
          "ACI-v3.md; Dstack-TEE/private-ai-gateway spec/aci.md @2b412cf6, vectors @9827446b; fixture "
          "aci/v3/upstream/aci_report_fixture.json"),
    Shape("aci-preview", "aci", "ACI aci/1 preview (June 2026): workload_id, keyset_epoch, keyset endorsement",
          (equals("api_version", "aci/1"), has("attestation", "workload_id"), lacks(*_LEGACY)),
          "phalanb.aci.report.parse_aci_report",
          ("aci.keyset_digest", "aci.workload_id", "aci.report_data", "aci.nonce_fresh", "aci.quote_slot",
           "aci.keyset_expiry", "aci.keyset_endorsement", "aci.provenance", "aci.key_custody", _TDX,
           "channel.tls_spki", "service.profile"),
          "ACI.md §2.2; fixture aci/real/phala-gateway-aci1-report-2026-06-28.json"),
    Shape("aci-aug", "aci", "ACI aci/1 as specified in August 2026: keyset not_after, no workload_id",
          (equals("api_version", "aci/1"), has_path("attestation.workload_keyset.not_after"),
           lacks("workload_id"), lacks(*_LEGACY)),
          "phalanb.aci.report.parse_aci_report",
          ("aci.keyset_digest", "aci.report_data", "aci.nonce_fresh", "aci.quote_slot", "aci.keyset_expiry",
           "aci.provenance", "aci.key_custody", _TDX, "channel.tls_spki", "service.profile"),
          "ACI.md §2.1; fixture field/phala-gateway-aci-aug-2026-08-28"),
    Shape("near-gateway-evidence", "session-evidence",
          "an ACI session's evidence of the NEAR AI Cloud gateway (private-ai-verifier near-ai-gateway)",
          (equals("provider", "nearai"), has("gateway_attestation", "request_nonce", "tls_cert_fingerprint"),
           lacks("model_attestations")),
          "phalanb.gateway.deep.parse_near_gateway_evidence",
          ("upstream.report.report_data", "upstream.report.nonce_fresh", "upstream." + _TDX, "upstream.channel"),
          "fixture aci/real/sessions/near-ai-a.json"),
    Shape("tinfoil-verifier-summary", "session-evidence",
          "a Tinfoil verifier's result summary (not hardware evidence: cannot be re-verified)",
          (has("security_verified", "enclave_fingerprint", "code_fingerprint"),),
          "phalanb.gateway.shapes.refuse", (), "fixture aci/real/sessions/tinfoil.json", verifies=False),
    Shape("near-cloud-gateway", "vllm-proxy", "NEAR AI Cloud gateway: a gateway attestation plus model attestations",
          (has("model_attestations"),),
          "phalanb.vllm.report.parse_report",
          ("report.*", _TDX, _GPU, "gateway.* (the gateway's own TD)"), "SPEC.md §5; fixture reports/nearcloud-2026"),
    Shape("chutes", "vllm-proxy", "Chutes behind api.redpill.ai: the server chooses the nonce (not fresh)",
          (equals("attestation_type", "chutes"),), "phalanb.vllm.report.parse_report", ("report.*", _TDX, _GPU),
          "SPEC.md §5; fixture reports/redpill-chutes-deepseek-2026-06"),
    Shape("chutes-evidence", "vllm-proxy", "Chutes evidence API: per-instance quotes bound to sha256(our nonce ‖ "
          "e2e_pubkey)", (has("evidence", "failed_instance_ids"),), "phalanb.vllm.report.parse_report",
          ("report.*", _TDX, _GPU), "fixture field/chutes-direct-glm5-2026-06"),
    Shape("tinfoil", "vllm-proxy", "Tinfoil behind api.redpill.ai: a quote only, no binding",
          (equals("attestation_type", "tinfoil"),), "phalanb.vllm.report.parse_report", ("report.*", _TDX),
          "SPEC.md §5"),
    Shape("tinfoil-v2", "vllm-proxy", "Tinfoil attestation v2 (tdx-guest/v2): gzip quote, no client nonce",
          (equals("format", _TINFOIL + "tdx-guest/v2"),), "phalanb.vllm.report.parse_report", ("report.*", _TDX),
          "fixtures field/tinfoil-verifier-tdx-v2, nanogpt-tinfoil-llama-2026-03"),
    Shape("tinfoil-v3", "vllm-proxy", "Tinfoil attestation v3 (TDX): report_data binds TLS, HPKE, nonce, GPUs",
          (equals("format", _TINFOIL + "attestation/v3"),), "phalanb.vllm.report.parse_report",
          ("report.*", _TDX, _GPU), "fixture field/tinfoil-direct-gemma4-2026-06"),
    Shape("venice", "reseller", "Venice TEE attestation served by a NEAR AI node (its own 'verified' not believed)",
          (has_any("tee_provider", "server_verification"), Marker("no `api_version: \"aci/1\"`",
                                                                  lambda d: d.get("api_version") != "aci/1")),
          "phalanb.vllm.report.parse_report", ("report.*", _TDX, _GPU), "fixture field/venice-qwen35-2026-06"),
    Shape("near-model-node", "vllm-proxy", "NEAR AI model node: report_data = sha256(key ‖ TLS fingerprint) ‖ nonce",
          (has("model_name"),), "phalanb.vllm.report.parse_report", ("report.*", _TDX, _GPU),
          "SPEC.md §5-6; fixtures reports/neardirect-qwen-2026-04/-06"),
    Shape("dstack-tls", "vllm-proxy", "dstack model server, TLS-bound report_data (Phala direct ?version=2)",
          (has("tls_cert_fingerprint"),), "phalanb.vllm.report.parse_report", ("report.*", _TDX, _GPU),
          "SPEC.md §6 (TLS variant); fixture aci/real/sessions/phala-direct-a.json"),
    Shape("dstack-v1.1", "vllm-proxy", "dstack vllm-proxy v1.1: adds signing_public_key, vm_config",
          (has_any("signing_public_key", "vm_config"), has_any("request_nonce", "intel_quote", "quote")),
          "phalanb.vllm.report.parse_report", ("report.*", _TDX, _GPU), "SPEC.md §5; fixture reports/nanogpt-gemma-*"),
    Shape("dstack-v1", "vllm-proxy", "dstack vllm-proxy v1: client nonce echoed as request_nonce",
          (has("request_nonce"),), "phalanb.vllm.report.parse_report", ("report.*", _TDX, _GPU), "SPEC.md §5"),
    Shape("legacy", "vllm-proxy", "static boot-time report (2024-12 → 2025-09): no client nonce, unbound",
          (has_any("intel_quote", "quote"), lacks("request_nonce")), "phalanb.vllm.report.parse_report",
          ("report.* (never fresh)", _TDX, _GPU), "SPEC.md §5; fixture reports/private-ml-sdk-2025-01"),
)

#: Wrappers a reseller puts around another shape (identified beside the shape, by explicit fields).
WRAPPERS: tuple[Shape, ...] = (
    Shape("nanogpt", "reseller", "NanoGPT wrapper: a top-level nonce echo (not attested, ignored)",
          (has("nonce"), lacks("request_nonce")), "phalanb.vllm.report.parse_report", ("report.shape",),
          "fixtures field/nanogpt-*-2026-03"),
)


def read_document(data: Any, what: str = "report") -> Any:
    """A document given as bytes/text parsed as JSON (a :class:`~phalanb.errors.ParseError` naming ``what`` and the
    offset when it is not), or the parsed object itself."""
    import json

    from .. import _json
    from ..errors import ParseError

    if not isinstance(data, (bytes, str)):
        return data
    try:
        return _json.loads(data)
    except UnicodeDecodeError as exc:
        raise ParseError(f"not UTF-8 ({exc.reason})", field=what, offset=exc.start) from None
    except json.JSONDecodeError as exc:
        raise ParseError(f"not JSON ({exc.msg})", field=what, offset=exc.pos) from None


def refuse(doc: Any) -> None:
    raise UnsupportedError("a verifier's result summary, not evidence: phalanb cannot re-verify it")


def found_fields(doc: Mapping[str, Any], limit: int = 16) -> str:
    keys = [str(k)[:40] for k in list(doc)[:limit]]
    more = f" and {len(doc) - limit} more" if len(doc) > limit else ""
    return (", ".join(repr(k) for k in keys) + more) if keys else "no fields at all"


def identify(doc: Any) -> Shape:
    """The registry entry whose explicit markers this document carries. Raises :class:`UnsupportedError` (exit 2)
    naming the fields found when no entry matches."""
    if not isinstance(doc, Mapping):
        raise UnsupportedError(f"an attestation document is a JSON object, not a {type(doc).__name__}")
    for shape in REGISTRY:
        if shape.matches(doc):
            return shape
    raise UnsupportedError(
        f"not an attestation shape phalanb knows: it has {found_fields(doc)}. The shapes phalanb reads, each "
        f"identified by explicit fields, are: {', '.join(s.name for s in REGISTRY)} (see the README's shape table)")


def shape_named(name: str) -> Shape:
    for shape in REGISTRY + WRAPPERS:
        if shape.name == name:
            return shape
    raise KeyError(name)


def shape_table() -> str:
    """The README's shape table (markdown), generated from :data:`REGISTRY` and :data:`WRAPPERS`."""
    rows = ["| shape | protocol | what it is | identified by | source |", "|---|---|---|---|---|"]
    for s in REGISTRY + WRAPPERS:
        what = s.title + ("" if s.verifies else " — named, not verified")
        rows.append(f"| `{s.name}` | {s.protocol} | {what} | {'; '.join(m.text for m in s.markers)} | {s.source} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # pragma: no cover - prints the table for the README
    print(shape_table(), end="")
