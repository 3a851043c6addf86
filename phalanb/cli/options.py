"""Options more than one command group takes: the service the auditor expects (``--service``, ``--expect-compose``).

They live below the command modules so that ``audit``, ``aci`` and ``service`` share them without importing each
other.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import InputError

__all__ = ["service_args", "service_policy"]


def service_args(p: argparse.ArgumentParser, *, compose: bool = True) -> None:
    from ..services import profiles

    p.add_argument("--service", metavar="NAME", choices=tuple(profiles()),
                   help="the service you expect (its profile: protocol, shapes, upstream, KMS roots, app ids): "
                   f"{', '.join(profiles())}. Without one (or a pinned compose) a deployment phalanb cannot place "
                   "is incomplete")
    if not compose:
        return
    p.add_argument("--expect-compose", metavar="HEX", default=None,
                   help="the compose hash (sha256 of app_compose) the deployment must have")


def service_policy(args: argparse.Namespace) -> dict[str, Any]:
    """``--service`` / ``--expect-compose`` as Policy keywords (the auditor's word, never the evidence's)."""
    kw: dict[str, Any] = {}
    if getattr(args, "service", None):
        kw["service"] = args.service
    compose = getattr(args, "expect_compose", None)
    if compose:
        h = compose.lower().removeprefix("0x")
        if len(h) != 64 or any(ch not in "0123456789abcdef" for ch in h):
            raise InputError(f"--expect-compose takes the 64-hex sha256 of app_compose, got {compose!r:.70}")
        kw["expected"] = {"compose_hash": h}
    return kw
