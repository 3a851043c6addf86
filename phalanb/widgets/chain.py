"""The trust chain drawn as linked boxes that light up pass / fail / skipped (SPEC §1).

Each link names the checks that establish it; its colour is derived from those checks' statuses and never says
more than they do: a link whose checks were all skipped (optional ones too) is drawn "not shown", one with an
optional check skipped beside checks that held is "partly shown", and under every box that is not a plain pass
each check that did not pass is named with its own status and reason. Nothing is decided here that the verdict
did not decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ipywidgets as W
import traitlets

from ..verdict import Status, Verdict
from ._style import COLOURS, esc

__all__ = ["LINKS", "ACI_LINKS", "OPTIONAL_LINKS", "TrustChainView", "chain_html", "link_statuses", "links_for"]

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

#: The chain of today's gateway protocol (ACI): our bytes → the signed receipt → the keyset a verified report
#: established → the gateway's quote; then the receipt's upstream session → the model server's own evidence.
ACI_LINKS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("request", "request bytes → receipt", "the receipt's request.received is the hash of the exact bytes we sent",
     ("receipt.request_hash",)),
    ("response", "response bytes → receipt", "its response.returned is the hash of every byte we received",
     ("receipt.response_hash",)),
    ("receipt", "receipt → keyset key", "Ed25519 over the canonical receipt by a receipt key of the keyset",
     ("receipt.signature", "receipt.api_version")),
    ("keyset", "keyset → digest", "the receipt cites the keyset whose canonical digest the report binds; not "
     "expired; its keys held by the dstack KMS", ("receipt.keyset", "aci.keyset_digest", "aci.keyset_header",
                                                  "aci.keyset_expiry", "aci.key_custody", "aci.workload_id",
                                                  "aci.keyset_endorsement", "aci.report")),
    ("report_data", "statement → report_data", "sha256 of the statement (our nonce, the digest) is in the quote's "
     "report_data", ("aci.shape", "aci.report_data", "aci.nonce_fresh", "aci.quote_slot")),
    ("quote", "gateway quote → Intel root", "quote signature, QE report and PCK chain up to the pinned root",
     ("tdx.quote_signature", "tdx.qe_report", "tdx.pck_chain", "tdx.trust_root")),
    ("tcb", "TCB status, no debug", "Intel's collateral says the platform is up to date; the TD is not debuggable",
     ("tdx.tcb_status", "tdx.debug_disabled")),
    ("app", "event log → gateway app", "a published TDX module and OS image; the event log replays and names the "
     "gateway's compose", ("tdx.measurements", "tdx.event_log", "app.*", "aci.provenance", "policy.measurements")),
    ("channel", "TLS key ∈ keyset", "the TLS connection we used ended at a key the keyset lists", ("channel.*",)),
    ("e2ee", "E2EE to the attested key", "the prompt was sealed to a keyset key; the reply opened under its AAD",
     ("e2ee.*",)),
    ("upstream", "receipt → upstream verified", "the gateway says it verified the model server, and cites a session",
     ("receipt.upstream", "receipt.rewrite")),
    ("session", "session → its id and evidence", "the cited session hashes to its id, its evidence to its digest; "
     "its claims meet the policy", ("session.*",)),
    ("model", "model server's TEE (deep audit)", "phalanb re-verified the model server's own quote and GPU evidence",
     ("upstream.*",)),
)

#: Links drawn only when the verdict has checks for them (a hop that only some services have).
OPTIONAL_LINKS = ("gateway", "channel", "e2ee", "upstream", "session", "model")


def links_for(verdict: Verdict | None) -> tuple[tuple[str, str, str, tuple[str, ...]], ...]:
    """The chain that fits the verdict: ACI's when it has receipt checks, else the model servers' (SPEC §1)."""
    if verdict is not None and any(c.id.startswith("receipt.") for c in verdict):
        return ACI_LINKS
    return LINKS


def _matches(check_id: str, patterns: Sequence[str]) -> bool:
    return any(check_id == p or (p.endswith(".*") and check_id.startswith(p[:-1])) for p in patterns)


def _link_checks(verdict: Verdict | None, patterns: Sequence[str]) -> list[Any]:
    return [c for c in (verdict or ()) if _matches(c.id, patterns)]


def link_statuses(verdict: Verdict | None) -> dict[str, str]:
    """link key → ``pass`` / ``fail`` / ``warning`` / ``partial`` / ``skipped``, from the verdict's checks.

    The link shows what its checks showed, never more: a failing check fails it; a link none of whose checks was
    made (all skipped, required or optional, or no check at all) is ``skipped`` — drawn "not shown"; a link where
    some checks held but an optional one was skipped is ``partial``; only a link whose every check passed (or
    held with a warning) is ``pass`` (``warning``). An optional hop the verdict has no check for is left out.
    """
    out: dict[str, str] = {}
    for key, _label, _what, patterns in links_for(verdict):
        checks = _link_checks(verdict, patterns)
        if not checks and key in OPTIONAL_LINKS:
            continue
        skipped = [c for c in checks if c.status is Status.SKIPPED]
        if any(c.status is Status.FAIL for c in checks):
            out[key] = "fail"
        elif not checks or len(skipped) == len(checks) or any(c.required for c in skipped):
            out[key] = "skipped"
        elif skipped:
            out[key] = "partial"
        elif any(c.status is Status.WARNING for c in checks):
            out[key] = "warning"
        else:
            out[key] = "pass"
    return out


#: What a box says beside its label, for each link status (so the words, not only the colour, carry it).
_STATUS_WORDS = {"pass": "", "warning": "held with a caveat", "partial": "partly shown",
                 "skipped": "not shown", "fail": "failed"}


def chain_html(verdict: Verdict | None, *, title: str | None = None) -> str:
    """The chain as an HTML diagram (a column of boxes joined by arrows), usable without a widget manager.

    Each box is one link; under a link that is not a plain pass, every check of it that did not pass is listed
    with its own status and reason, so a reader sees *which* check kept the link from holding.
    """
    statuses = link_statuses(verdict)
    parts = ['<div style="font-family:sans-serif;font-size:13px;max-width:640px">']
    if title:
        parts.append(f"<div style='font-weight:bold;margin-bottom:4px'>{esc(title)}</div>")
    simulated = verdict is not None and verdict.get("trust.simulated") is not None
    for i, (key, label, what, patterns) in enumerate(link for link in links_for(verdict) if link[0] in statuses):
        status = statuses[key]
        bg, fg, sym = COLOURS[status]
        word = _STATUS_WORDS[status]
        if i:
            parts.append('<div style="text-align:center;color:#57606a;line-height:1">▼</div>')
        notes = "".join(
            f'<div data-check="{esc(c.id)}" data-check-status="{c.status.value}" style="font-size:12px;'
            f'margin-left:1.2em">{COLOURS[c.status.value][2]} {esc(c.id)} <b>{c.status.value}</b>'
            f'{"" if c.required else " (optional)"} — {esc(c.reason)}</div>'
            for c in _link_checks(verdict, patterns) if c.status is not Status.PASS)
        if not notes and status == "skipped":
            notes = '<div style="font-size:12px;margin-left:1.2em">no check was made for this link</div>'
        parts.append(f'<div data-link="{key}" data-status="{status}" style="background:{bg};color:{fg};'
                     f'padding:4px 10px;border-radius:6px"><b>{sym} {esc(label)}</b>'
                     + (f' <i>({word})</i>' if word else "")
                     + f' <span style="opacity:.9">— {esc(what)}</span>{notes}</div>')
    if verdict is not None:
        parts.append(f"<div style='margin-top:6px'>verdict: <b>{esc(verdict.status)}</b> — "
                     f"{esc(verdict.summary().split(': ', 1)[-1])}"
                     + (" — against SIMULATED roots: this shows the checks work, not that real hardware answered"
                        if simulated else "") + "</div>")
    parts.append("</div>")
    return "".join(parts)


class TrustChainView(W.HTML):
    """``TrustChainView(verdict)``: the diagram; assign ``view.verdict = v`` (or call ``show``) to relight it.

    ``links`` (a trait) maps link key → status, for code and tests to read.
    """

    links = traitlets.Dict(help="link key → pass / fail / warning / partial / skipped")

    def __init__(self, verdict: Verdict | None = None, *, title: str | None = "The trust chain", **kwargs: Any):
        super().__init__(**kwargs)
        self._title = title
        self.show(verdict)

    def show(self, verdict: Verdict | None) -> None:
        self.verdict = verdict
        self.links = link_statuses(verdict)
        self.value = chain_html(verdict, title=self._title)
