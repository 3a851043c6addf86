"""Where the two protocols meet: above :mod:`phalanb.aci` and :mod:`phalanb.vllm`, which never import each other.

- :mod:`.shapes`: one registry of every attestation shape phalanb knows (markers, parser, checks, source), and
  :func:`identify`, which names a document's shape from explicit fields only;
- :mod:`.deep`: the deep audit of an ACI session's evidence (a model server's report, the NEAR AI gateway's
  attestation…), handed to ACI's verifier as its evidence auditor;
- :mod:`.legacy`: an ACI gateway's legacy answers — its report (bare or inside a reseller's wrapper) verified for
  what it proves, and :func:`verify_exchange` recognising them beside the model servers' chain.

The full entry points are here: :func:`verify_aci` and :func:`verify_session` (ACI with the deep audit),
:func:`verify_exchange` (the model servers' chain with the gateway's legacy answers), :func:`verify_any_report`
(a saved report of any shape, routed by the registry).

>>> from phalanb.gateway import verify_aci                                        # doctest: +SKIP
>>> verdict = verify_aci(exchange, receipt=receipt, report=report, nonce=nonce, sessions=sessions)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from ..verdict import Verdict
from .deep import UpstreamReport, deep_audit, upstream_report
from .legacy import legacy_gateway_checks, takes_preflight, verify_exchange, verify_legacy_gateway_report
from .shapes import REGISTRY, WRAPPERS, Shape, identify, read_document, shape_table

__all__ = ["verify_aci", "verify_session", "verify_exchange", "verify_legacy_gateway_report", "verify_any_report",
           "deep_audit", "upstream_report", "UpstreamReport", "legacy_gateway_checks", "takes_preflight",
           "REGISTRY", "WRAPPERS", "Shape", "identify", "shape_table"]


def verify_aci(*args: Any, **kw: Any) -> Verdict:
    """:func:`phalanb.aci.verify.verify_aci` with every cited session's evidence deep-audited (:func:`deep_audit`).
    Same arguments."""
    from ..aci.verify import verify_aci as aci_verify_aci

    kw.setdefault("auditor", deep_audit)
    return aci_verify_aci(*args, **kw)


def verify_session(*args: Any, **kw: Any) -> list:
    """:func:`phalanb.aci.verify.verify_session` with the session's evidence deep-audited. Same arguments."""
    from ..aci.verify import verify_session as aci_verify_session

    kw.setdefault("auditor", deep_audit)
    return aci_verify_session(*args, **kw)


def verify_any_report(report: Any, *, nonce: bytes | None = None, policy: Any = None, collateral: Any = None,
                      at: float | None = None, **kw: Any) -> Verdict:
    """A saved attestation report of any shape the registry knows, verified by its own verifier: an ACI report
    (:func:`phalanb.aci.verify.verify_aci_report`), an ACI gateway's legacy report bare or in a reseller's
    wrapper (:func:`verify_legacy_gateway_report`), a model server's report (:func:`phalanb.vllm.verify_report`;
    ``kw``: its ``signing_address``, ``node``, ``nras_response``, ``jwks``, ``gateway_collateral``). A document of
    no known shape raises :class:`~phalanb.errors.UnsupportedError` naming its fields."""
    from ..errors import UnsupportedError
    from ..policy import Policy

    policy = policy or Policy()
    doc = read_document(report)
    shape = identify(doc)
    if not shape.verifies:
        shape.parse(doc)  # raises the kind's own UnsupportedError, naming it
        raise UnsupportedError(f"a {shape.title}: phalanb does not verify it")
    if shape.name in ("aci-legacy-gateway", "reseller-aci-gateway"):
        return verify_legacy_gateway_report(doc, nonce=nonce, policy=policy, collateral=collateral, at=at)
    if shape.name == "near-gateway-evidence":
        # A session's record of the NEAR AI gateway: its TD verified on its own (the nonce is the verifier's).
        from ..verdict import Check, Status
        from .deep import near_gateway_checks, parse_near_gateway_evidence

        node = parse_near_gateway_evidence(doc).nodes[0]
        return Verdict([Check("report.shape", Status.PASS, f"{shape.name}: {shape.title}", {"shape": shape.name},
                              required=False)]
                       + near_gateway_checks(node, nonce=nonce, policy=policy, collateral=collateral, at=at))
    if shape.protocol == "aci":
        from ..aci.verify import verify_aci_report

        return verify_aci_report(report, nonce=nonce, policy=policy, collateral=collateral, at=at).verdict
    from ..vllm.verify import verify_report

    return verify_report(doc, nonce=nonce, policy=policy, collateral=collateral, at=at, **kw)
