"""What a newcomer sees (issue 14 items 1 and 4): hints that reproduce what they promise, and messages that are
sentences — no exception class names, no Rust debug text, usage mistakes are usage errors (exit 2)."""

import re
import shlex
import shutil
import subprocess
import sys

import pytest

CLASS_NAMES = re.compile(r"\b(InputError|ParseError|UnsupportedError|PhalanbError|TransportError|ServiceError|"
                         r"ValueError|KeyError|Traceback)\b")


def phalanb(*args, timeout=120):
    exe = shutil.which("phalanb")
    cmd = [exe] if exe else [sys.executable, "-m", "phalanb.cli"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout)


def test_the_demo_save_hint_reproduces_the_printed_verdict(tmp_path):
    bundle = tmp_path / "demo.phalanb.json"
    demo = phalanb("demo", "--max-tokens", "5", "--save", str(bundle))
    assert demo.returncode == 0, demo.stdout + demo.stderr
    printed = re.search(r"^verdict: (\w+)", demo.stdout, re.M).group(1)
    hint = re.search(r"re-verify offline: (phalanb verify [^)]+)\)", demo.stderr).group(1)
    assert "--trust simulated" in hint  # simulator evidence: the hint must say which roots reproduce it
    again = phalanb(*shlex.split(hint)[1:])  # the hint, verbatim
    assert again.returncode == demo.returncode, again.stdout + again.stderr
    assert re.search(r"^verdict: (\w+)", again.stdout, re.M).group(1) == printed
    assert "same verdict as recorded" in again.stdout


def test_errors_are_sentences_without_class_names(tmp_path):
    missing = phalanb("report", str(tmp_path / "nope.json"))
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr and not CLASS_NAMES.search(missing.stderr)
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    bad = phalanb("report", str(garbage))
    assert bad.returncode == 2 and not CLASS_NAMES.search(bad.stderr), bad.stderr


def test_a_node_that_does_not_exist_is_a_usage_error(fixtures):
    report = fixtures / "reports" / "nanogpt-gemma-2026-03" / "attestation_report.json"
    r = phalanb("report", str(report), "--node", "5")
    assert r.returncode == 2
    assert "node 5 does not exist" in r.stderr and "numbered 0 to 0" in r.stderr
    assert not CLASS_NAMES.search(r.stderr)


@pytest.mark.parametrize("raw, expected", [
    ("Verification failed: CrlExpired { time: UnixTime(1795799865), next_update: UnixTime(1775215317) }",
     "the collateral's CRL expired on 2026-04-03"),
    ("Verification failed: TCBInfo issue date is in the future", "TCB info was issued after the time"),
])
def test_dcap_qvl_debug_text_is_translated(raw, expected):
    from phalanb.tdx.collateral import plain_dcap_error

    text = plain_dcap_error(raw)
    assert expected in text and "--at" in text
    assert "UnixTime" not in text and "{" not in text


def test_expired_collateral_says_which_time_to_pass(fixtures):
    tdx = fixtures / "tdx" / "dcap-qvl"
    r = phalanb("quote", str(tdx / "tdx_quote"), "--collateral", str(tdx / "tdx_quote_collateral.json"))
    assert r.returncode == 3
    at = re.search(r"--at (\d+)", r.stdout).group(1)
    assert "UnixTime" not in r.stdout + r.stderr
    again = phalanb("quote", str(tdx / "tdx_quote"), "--collateral", str(tdx / "tdx_quote_collateral.json"),
                    "--at", at)
    assert again.returncode == 0, again.stdout + again.stderr


def test_at_now_is_accepted_wherever_at_is():
    import argparse

    from phalanb.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    with_at = []
    for name, parser in sub.choices.items():
        for action in parser._actions:
            if "--at" in action.option_strings:
                with_at.append(name)
                value = action.type("now") if action.type else None
                assert isinstance(value, float) and value > 1.7e9, name
    assert {"verify", "report", "audit", "quote", "gpu", "receipt", "session"} <= set(with_at)


def test_report_on_bare_gpu_evidence_says_use_phalanb_gpu(fixtures, tmp_path):
    import json

    d = json.loads((fixtures / "reports" / "nanogpt-gemma-2026-06" / "attestation_report.json").read_text())
    payload = tmp_path / "payload.json"
    payload.write_text(d["nvidia_payload"] if isinstance(d["nvidia_payload"], str) else json.dumps(d["nvidia_payload"]))
    for f in (payload, fixtures / "nvidia" / "chutes_api" / "evidence.json"):
        r = phalanb("report", str(f))
        assert r.returncode == 2 and f"phalanb gpu {f}" in r.stderr, r.stderr
        assert not CLASS_NAMES.search(r.stderr)
