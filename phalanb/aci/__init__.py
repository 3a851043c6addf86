"""ACI (Attested Confidential Inference): the gateway protocol api.redpill.ai and inference.phala.com speak since
mid-2026 (``../shared/ACI.md``). Parsing, verification and judgement are kept apart, as in :mod:`phalanb.tdx` and
:mod:`phalanb.gpu`."""

from .jcs import canonicalize, sha256_digest

__all__ = ["canonicalize", "sha256_digest"]
