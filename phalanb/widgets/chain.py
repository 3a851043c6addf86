"""The trust chain drawn as linked boxes that light up pass / fail / skipped (SPEC §1).

Each link names the checks that establish it; its colour is derived from those checks' statuses (a link with no
check at all is *skipped*: nothing was verified there). Nothing is decided here that the verdict did not decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ipywidgets as W
import traitlets

from ..verdict import Status, Verdict
from ._style import COLOURS, esc

__all__ = ["LINKS", "OPTIONAL_LINKS", "TrustChainView", "chain_html", "link_statuses"]

#: (key, label, what it means, check ids or ``prefix.*``) in the order the chain is read.
LINKS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("request", "request bytes → sha256", "the hash of the exact bytes we sent is the one signed",
     ("request.hash",)),
    ("response", "response bytes → sha256", "the hash of every byte received is the one signed",
     ("response.hash",)),
    ("signature", "signature → signer", "the signed text recovers (or verifies with) a key", ("signature.valid",)),
    ("bound", "signer = attested key", "the signer is the key named in the attestation report",
     ("signature.bound", "report.signing_key", "report.node")),
    ("report_data", "report_data: key ‖ our nonce", "the TDX report data binds that key and our fresh nonce",
     ("report.shape", "report.report_data", "report.nonce_fresh")),
    ("quote", "TDX quote → Intel root", "quote signature, QE report and PCK chain up to the pinned root",
     ("tdx.quote_signature", "tdx.qe_report", "tdx.pck_chain", "tdx.trust_root")),
    ("tcb", "TCB status, no debug", "Intel's collateral says the platform is up to date; the TD is not debuggable",
     ("tdx.tcb_status", "tdx.debug_disabled")),
    ("app", "event log → RTMRs → app", "a published TDX module and OS image; the event log replays to the "
     "measured registers and names the app", ("tdx.measurements", "tdx.event_log", "app.*", "policy.measurements")),
    ("gpu", "GPU evidence → NVIDIA root", "every GPU signed our nonce with a key chained to NVIDIA's root",
     ("gpu.*",)),
    ("nras", "NRAS appraisal", "NVIDIA's attestation service signed its judgement of the same evidence",
     ("nras.*",)),
    ("gateway", "gateway TD → Intel root", "the gateway every request passes through (NEAR AI Cloud) is a verified "
     "TD bound to its key and our nonce", ("gateway.*",)),
)

#: Links drawn only when the verdict has checks for them (a hop that only some services have).
OPTIONAL_LINKS = ("gateway",)


def _matches(check_id: str, patterns: Sequence[str]) -> bool:
    return any(check_id == p or (p.endswith(".*") and check_id.startswith(p[:-1])) for p in patterns)


def link_statuses(verdict: Verdict | None) -> dict[str, str]:
    """link key → ``pass`` / ``fail`` / ``warning`` / ``skipped``, from the verdict's checks.

    A failing check fails its link; a skipped *required* check (or no check at all) leaves it skipped.
    """
    out: dict[str, str] = {}
    for key, _label, _what, patterns in LINKS:
        checks = [c for c in (verdict or ()) if _matches(c.id, patterns)]
        if not checks and key in OPTIONAL_LINKS:
            continue
        if any(c.status is Status.FAIL for c in checks):
            out[key] = "fail"
        elif not checks or any(c.status is Status.SKIPPED and c.required for c in checks):
            out[key] = "skipped"
        elif any(c.status is Status.WARNING for c in checks):
            out[key] = "warning"
        else:
            out[key] = "pass"
    return out


def chain_html(verdict: Verdict | None, *, title: str | None = None) -> str:
    """The chain as an HTML diagram (a column of boxes joined by arrows), usable without a widget manager."""
    statuses = link_statuses(verdict)
    parts = ['<div style="font-family:sans-serif;font-size:13px;max-width:640px">']
    if title:
        parts.append(f"<div style='font-weight:bold;margin-bottom:4px'>{esc(title)}</div>")
    simulated = verdict is not None and verdict.get("trust.simulated") is not None
    for i, (key, label, what, _patterns) in enumerate(link for link in LINKS if link[0] in statuses):
        bg, fg, sym = COLOURS[statuses[key]]
        if i:
            parts.append('<div style="text-align:center;color:#57606a;line-height:1">▼</div>')
        parts.append(f'<div data-link="{key}" data-status="{statuses[key]}" style="background:{bg};color:{fg};'
                     f'padding:4px 10px;border-radius:6px"><b>{sym} {esc(label)}</b> '
                     f'<span style="opacity:.9">— {esc(what)}</span></div>')
    if verdict is not None:
        parts.append(f"<div style='margin-top:6px'>verdict: <b>{esc(verdict.status)}</b>"
                     + (" — against SIMULATED roots: this shows the checks work, not that real hardware answered"
                        if simulated else "") + "</div>")
    parts.append("</div>")
    return "".join(parts)


class TrustChainView(W.HTML):
    """``TrustChainView(verdict)``: the diagram; assign ``view.verdict = v`` (or call ``show``) to relight it.

    ``links`` (a trait) maps link key → status, for code and tests to read.
    """

    links = traitlets.Dict(help="link key → pass / fail / warning / skipped")

    def __init__(self, verdict: Verdict | None = None, *, title: str | None = "The trust chain", **kwargs: Any):
        super().__init__(**kwargs)
        self._title = title
        self.show(verdict)

    def show(self, verdict: Verdict | None) -> None:
        self.verdict = verdict
        self.links = link_statuses(verdict)
        self.value = chain_html(verdict, title=self._title)
