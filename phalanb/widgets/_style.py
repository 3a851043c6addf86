"""Colours and small HTML helpers shared by the widgets (no verification logic)."""

from __future__ import annotations

import html
import json
from typing import Any

#: status → (background, text colour, symbol). Colour is never the only signal: every badge also has a symbol.
COLOURS = {
    "pass": ("#1a7f37", "#ffffff", "✓"),
    "fail": ("#cf222e", "#ffffff", "✗"),
    "warning": ("#bf8700", "#ffffff", "!"),
    "skipped": ("#8c959f", "#ffffff", "–"),
    # a trust-chain link where some checks held and an optional one was skipped: neither green nor grey
    "partial": ("#6e7781", "#ffffff", "◐"),
}

#: ipywidgets Button styles for the same statuses.
BUTTON_STYLES = {"pass": "success", "fail": "danger", "warning": "warning", "skipped": ""}


def esc(value: Any) -> str:
    """Escape anything for HTML (model text, reasons, evidence): nothing from a service is ever markup."""
    return html.escape(str(value), quote=True)


def pretty(value: Any) -> str:
    """Evidence as indented JSON text (escaped by the caller)."""
    try:
        return json.dumps(value, indent=2, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)
