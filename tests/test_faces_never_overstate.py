"""Faces never overstate (issue 21, items 1 and 2): the trust-chain picture, the badges' summary, the CLI's table
and the one-line summary show each check's own status. A skipped check — optional ones too — is never drawn or
worded as passed; ``verified`` names what was skipped and why it still does not decide the verdict.

These read what is rendered (the chain's HTML, the badges' summary HTML, the CLI's printed text), not only the
numbers behind it."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from phalanb.session import Session, Settings
from phalanb.verdict import Check, Status, Verdict
from phalanb.widgets import ChatPanel, TrustChainView, VerdictBadges, link_statuses
from phalanb.widgets.chain import chain_html

TLS_SKIPPED = Check("channel.tls_spki", Status.SKIPPED, "no TLS key observed (plain http or not captured)",
                    required=False)


def _box(html: str, link: str) -> str:
    """The rendered box of one link (its opening tag up to the next box or the verdict line)."""
    start = html.index(f'data-link="{link}"')
    end = html.find("data-link=", start + 10)
    return html[start:end if end > 0 else len(html)]


@pytest.fixture(scope="module")
def aci_plain_http():
    """The ACI simulator over plain http, as notebook 00 and the ChatPanel use it: no TLS key is observed."""
    with Session(Settings(protocol="aci")) as session:
        yield session.chat_and_verify("Which links were shown?", max_tokens=6)


def test_a_link_made_only_of_skipped_optional_checks_is_drawn_not_shown(aci_plain_http):
    v = aci_plain_http.verdict
    assert v["channel.tls_spki"].status is Status.SKIPPED and not v["channel.tls_spki"].required
    assert v.status == "verified"  # the optional check does not decide the verdict ...
    html = chain_html(v)
    box = _box(html, "channel")
    assert link_statuses(v)["channel"] == "skipped"  # ... but the picture does not claim it
    assert 'data-status="skipped"' in box and "not shown" in box and "✓" not in box
    assert 'data-check="channel.tls_spki" data-check-status="skipped"' in box and "no TLS key observed" in box
    assert "✓ TLS key ∈ keyset" not in html


def test_a_link_with_an_optional_check_skipped_beside_held_ones_is_partial_not_passed():
    v = Verdict([Check("tdx.tcb_status", Status.PASS, "UpToDate"),
                 Check("tdx.debug_disabled", Status.SKIPPED, "not decoded", required=False)])
    assert link_statuses(v)["tcb"] == "partial"
    box = _box(chain_html(v), "tcb")
    assert "partly shown" in box and "✓" not in box and "tdx.debug_disabled <b>skipped</b> (optional)" in box


def test_every_non_passing_check_of_a_link_is_named_under_it_with_its_own_status():
    v = Verdict([Check("tdx.tcb_status", Status.WARNING, "SWHardeningNeeded, accepted"),
                 Check("tdx.debug_disabled", Status.PASS, "off")])
    box = _box(chain_html(v), "tcb")
    assert 'data-status="warning"' in box
    assert 'data-check="tdx.tcb_status" data-check-status="warning"' in box and "SWHardeningNeeded" in box
    assert 'data-check="tdx.debug_disabled"' not in box  # a plain pass needs no note


def test_the_chat_panel_shows_the_skipped_channel_and_a_truthful_summary():
    panel = ChatPanel(Settings(protocol="aci"), max_tokens=6)
    try:
        result = panel.ask("Show me the chain.")
    finally:
        panel.close_session()
    assert result is not None and panel.status == "verified"
    box = _box(panel.chain.value, "channel")
    assert 'data-status="skipped"' in box and "not shown" in box
    summary = panel.badges.summary.value
    n = len(result.verdict)
    assert f"all {n} checks held" not in summary
    assert f"{n - 1} of {n} checks held" in summary and "channel.tls_spki" in summary
    assert "does not decide the verdict" in summary
    assert panel.badges.buttons["channel.tls_spki"].button_style == ""  # grey, not green


def test_verified_with_an_optional_check_skipped_says_so_and_never_all_held():
    v = Verdict([Check("receipt.signature", Status.PASS, "ok"),
                 Check("trust.simulated", Status.WARNING, "simulated roots", required=False), TLS_SKIPPED])
    assert v.status == "verified"
    s = v.summary()
    assert "all 3 checks held" not in s
    assert s.startswith("verified: 2 of 3 checks held (1 with warnings), every required one among them")
    assert "skipped, optional (does not decide the verdict): channel.tls_spki (no TLS key observed" in s
    table = v.table()
    assert "3 checks: 1 pass, 1 skipped, 1 warning" in table
    assert "skipped, optional: channel.tls_spki" in table and "do not decide the verdict" in table


def test_a_verdict_with_every_check_held_may_say_all_held():
    v = Verdict([Check("a", Status.PASS, ""), Check("b", Status.WARNING, "caveat")])
    assert v.summary() == "verified: all 2 checks held (1 with warnings)"


def test_incomplete_also_names_skipped_optional_checks():
    v = Verdict([Check("a", Status.PASS, ""), Check("tdx.tcb_status", Status.SKIPPED, "offline"), TLS_SKIPPED])
    assert v.summary() == ("incomplete: not checked: tdx.tcb_status (offline); skipped, optional (does not decide "
                           "the verdict): channel.tls_spki (no TLS key observed (plain http or not captured)); "
                           "channel.tls_spki is optional (the check does not record which policy made it so)")


def test_the_summary_says_which_policy_made_a_skipped_check_optional(fixtures):
    """Issue 21, item 2: beside what was skipped, the line says why that still allows `verified` — the rule or
    policy the verifier recorded when it made the check optional (ACI's TLS link; NRAS under require_nras=False)."""
    from phalanb.aci.verify import TLS_OPTIONAL
    from phalanb.policy import Policy
    from phalanb.vllm.verify import gpu_checks
    from phalanb.vllm.report import parse_report

    tls = Check("channel.tls_spki", Status.SKIPPED, "no TLS key observed", required=False,
                optional_because=TLS_OPTIONAL)
    s = Verdict([Check("receipt.signature", Status.PASS, "ok"), tls]).summary()
    assert s.startswith("verified: 1 of 2 checks held, every required one among them")
    assert "; channel.tls_spki is optional under every policy: the receipt's signature" in s
    # NRAS left out under a policy that does not require it: the line names that policy
    node = parse_report((fixtures / "reports" / "neardirect-qwen-2026-04" / "attestation_report.json").read_bytes()
                        ).nodes[0]
    loose = [c for c in gpu_checks(node, nonce=None, policy=Policy(require_nras=False)) if c.id == "nras.result"]
    strict = [c for c in gpu_checks(node, nonce=None, policy=Policy()) if c.id == "nras.result"]
    assert loose[0].status is Status.SKIPPED and not loose[0].required
    line = Verdict([Check("a", Status.PASS, ""), *loose]).summary()
    assert "nras.result is optional under this policy (require_nras=False, trust='production'" in line
    assert strict[0].required and strict[0].optional_because == ""
    # the reason survives a bundle's round trip, and a required check carries none
    assert Check.from_dict(tls.to_dict()).optional_because == TLS_OPTIONAL
    assert "optional_because" not in Check("x", Status.PASS, "", optional_because="ignored").to_dict()


def test_badges_summary_reads_the_same_truthful_line():
    v = Verdict([Check("a", Status.PASS, ""), TLS_SKIPPED])
    html = VerdictBadges(v).summary.value
    assert "all 2 checks held" not in html and "1 of 2 checks held" in html and "channel.tls_spki" in html


def test_the_cli_chat_save_prints_what_was_skipped(tmp_path):
    out = subprocess.run([sys.executable, "-m", "phalanb.cli", "chat", "Hello", "--max-tokens", "4", "--save",
                          str(tmp_path / "r.phalanb.json")], capture_output=True, text=True, timeout=180)
    text = out.stdout + out.stderr
    line = next((ln for ln in text.splitlines() if ln.startswith("verdict: ")), "")
    m = re.fullmatch(r"verdict: verified: (\d+) of (\d+) checks held .*", line)
    assert m and int(m.group(1)) == int(m.group(2)) - 1, text[-2000:]
    assert "channel.tls_spki (no TLS key observed" in line and "does not decide the verdict" in line


def test_the_readme_defines_verified_as_the_code_decides():
    from pathlib import Path

    readme = " ".join(Path(__file__).resolve().parent.parent.joinpath("README.md").read_text().split())
    assert "anything skipped makes it `incomplete`" not in readme  # untrue: optional checks may be skipped
    definition = ("The verdict is `failed` when any check failed, required or optional; `verified` when none failed, "
                  "at least one check is required, and every required check passed or held with a warning; "
                  "`incomplete` otherwise")
    assert definition in readme
    # ... and the code decides exactly that:
    opt_fail = Verdict([Check("a", Status.PASS, ""), Check("o", Status.FAIL, "x", required=False)])
    assert opt_fail.status == "failed"
    assert Verdict([Check("a", Status.WARNING, ""), TLS_SKIPPED]).status == "verified"
    assert Verdict([TLS_SKIPPED]).status == "incomplete"  # no required check at all
    assert Verdict([Check("a", Status.PASS, ""), Check("b", Status.SKIPPED, "offline")]).status == "incomplete"
