"""The model servers' protocol (vllm-proxy): chat signatures, every report shape, and their verification.

Beside :mod:`phalanb.aci`, never importing it (known debt: see README "Architecture").

>>> from phalanb.vllm import fetch_signature, verify_exchange                        # doctest: +SKIP
>>> signature = fetch_signature(client, exchange.chat_id)                           # doctest: +SKIP
>>> verdict = verify_exchange(exchange, signature, att.report, nonce=att.nonce)     # doctest: +SKIP
"""

from .report import parse_report
from .signatures import SignatureRecord, fetch_signature
from .verify import verify_exchange, verify_report

__all__ = ["SignatureRecord", "fetch_signature", "parse_report", "verify_exchange", "verify_report"]
