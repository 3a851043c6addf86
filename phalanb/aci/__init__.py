"""ACI (Attested Confidential Inference): the gateway protocol api.redpill.ai and inference.phala.com speak since
mid-2026 (``../shared/ACI.md``), in three wire shapes: v3 (``../shared/ACI-v3.md``, :mod:`.v3`), current (Aug 2026)
and preview (June 2026). Parsing (:mod:`.report`, :mod:`.receipt`, :mod:`.session`), verification
(:mod:`.verify`, :mod:`.custody`) and judgement (the :class:`~phalanb.policy.Policy`) are kept apart, as in
:mod:`phalanb.tdx` and :mod:`phalanb.gpu`.

>>> verdict = verify_aci(exchange, receipt=receipt_bytes, report=report_bytes, nonce=nonce,
...                      sessions={session_id: session_bytes})                  # doctest: +SKIP
"""

from .custody import KNOWN_KMS_ROOTS, custody_chain
from .e2ee import AttestedE2EEKey
from .e2ee_wire import E2EE_CHECK_IDS, E2EERecord, e2ee_checks
from .jcs import canonicalize, sha256_digest
from .receipt import Receipt, SignatureWrapper, is_signature_wrapper, parse_receipt, parse_signature_wrapper
from . import v3
from .report import AciEvidence, AciReport, is_aci_report, is_legacy_gateway_report, parse_aci_report, parse_v3_report
from .session import AttestedSession, Claim, decode_data_uri, parse_session, parse_session_list
from .verify import (
    AciAttestation,
    EstablishedKeyset,
    report_data_for,
    statement,
    verify_aci,
    verify_aci_report,
    verify_legacy_gateway,
    verify_receipt,
    verify_session,
    workload_id_of,
)

__all__ = [
    "canonicalize", "sha256_digest",
    "AciReport", "AciEvidence", "parse_aci_report", "parse_v3_report", "is_aci_report", "is_legacy_gateway_report",
    "v3",
    "Receipt", "SignatureWrapper", "parse_receipt", "parse_signature_wrapper", "is_signature_wrapper",
    "AttestedSession", "Claim", "parse_session", "parse_session_list", "decode_data_uri",
    "KNOWN_KMS_ROOTS", "custody_chain",
    "EstablishedKeyset", "AciAttestation", "verify_aci_report", "verify_receipt", "verify_session", "verify_aci",
    "verify_legacy_gateway", "statement", "report_data_for", "workload_id_of",
    "AttestedE2EEKey", "E2EERecord", "e2ee_checks", "E2EE_CHECK_IDS",
]
