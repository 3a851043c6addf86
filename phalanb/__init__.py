"""phalanb: verify confidential LLM inference (Intel TDX + NVIDIA confidential GPUs) from Python and Jupyter."""

__version__ = "0.1.0"

from .errors import (
    E2EEError,
    InputError,
    NotFoundError,
    ParseError,
    PhalanbError,
    SecretLeakError,
    ServiceError,
    SignatureExpiredError,
    SignatureFormatError,
    TransportError,
    UnsupportedError,
)
from .verdict import Check, Status, Verdict

__all__ = [
    "__version__",
    "Check", "Status", "Verdict",
    "E2EEError", "InputError", "NotFoundError", "ParseError", "PhalanbError", "SecretLeakError", "ServiceError",
    "SignatureExpiredError", "SignatureFormatError", "TransportError", "UnsupportedError",
]
