"""Intel TDX: parse quotes, verify them offline and with collateral, replay event logs, derive dstack values.

Layers kept apart (parse → verify → judge): :mod:`.quote` (bytes to fields), :mod:`.verify` (signatures and the
chain to the pinned root), :mod:`.collateral` (dcap-qvl TCB status and the policy), :mod:`.eventlog` and
:mod:`.dstack` (measurements and what they mean), :mod:`.sim` (the simulator's TDX).
"""

from .collateral import (
    TCB_STATUSES,
    Collateral,
    DcapResult,
    TdxPolicy,
    debug_check,
    fetch_collateral,
    fetch_collateral_sync,
    judge,
    load_collateral,
    TdxResult,
    verify_tdx,
    verify_with_collateral,
)
from .dstack import DstackFacts, audit_app_compose, check_compose_hash, compose_hash, derive, expected_mr_config_id
from .eventlog import Event, EventLog, check_event_log, parse_ccel_log, parse_dstack_log, parse_event_log, replay, runtime_event_digest
from .quote import EnclaveReport, Field, Quote, QuoteHeader, TdAttributes, TdReport, decode_quote_input, parse_quote
from .verify import (
    INTEL_SGX_ROOT_CA_SHA256,
    OfflineResult,
    PckExtension,
    Step,
    TrustRoot,
    parse_sgx_extension,
    pck_extension,
    verify_pck_chain,
    verify_qe_report_data,
    verify_qe_report_signature,
    verify_quote_offline,
    verify_quote_signature,
)

__all__ = [
    # quote
    "parse_quote", "decode_quote_input", "Quote", "QuoteHeader", "TdReport", "TdAttributes", "EnclaveReport", "Field",
    # verify
    "verify_quote_offline", "verify_quote_signature", "verify_qe_report_signature", "verify_qe_report_data",
    "verify_pck_chain", "pck_extension", "parse_sgx_extension", "TrustRoot", "PckExtension", "Step",
    "OfflineResult", "INTEL_SGX_ROOT_CA_SHA256",
    # collateral and policy
    "Collateral", "load_collateral", "fetch_collateral", "fetch_collateral_sync", "verify_with_collateral",
    "DcapResult", "TdxPolicy", "judge", "debug_check", "TCB_STATUSES", "verify_tdx", "TdxResult",
    # event log and dstack values
    "parse_event_log", "parse_dstack_log", "parse_ccel_log", "replay", "runtime_event_digest", "check_event_log",
    "Event", "EventLog", "derive", "DstackFacts", "compose_hash", "expected_mr_config_id", "check_compose_hash",
    "audit_app_compose",
]
