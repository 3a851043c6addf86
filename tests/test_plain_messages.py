"""Messages a person can act on (issue 21, item 6): the cause and the one flag first, CLI flags in hints, a typo
reads as the 404 it is, sentences instead of ``is None``, and ``audit`` that says what it saw."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "phalanb.cli", *args], capture_output=True, text=True, timeout=240,
                          cwd=cwd)


@pytest.fixture(scope="module")
def sim_bundle(tmp_path_factory):
    """An audit bundle of the embedded simulator (ACI), as `phalanb chat --save` writes it."""
    path = tmp_path_factory.mktemp("bundles") / "reply.phalanb.json"
    out = _cli("chat", "Hello", "--max-tokens", "4", "--save", str(path))
    assert out.returncode == 0, out.stderr
    return path


def test_verify_of_a_simulator_bundle_says_the_cause_and_the_flag_first(sim_bundle):
    out = _cli("verify", str(sim_bundle))
    assert out.returncode == 1
    first = out.stdout.splitlines()[0]
    assert first.startswith(f"phalanb: {sim_bundle} holds evidence from phalanb's simulator")
    assert first.endswith(f"phalanb verify {sim_bundle} --trust simulated")
    assert len(out.stdout) < 1200 and max(len(line) for line in out.stdout.splitlines()) < 400, out.stdout
    assert "CRL" not in out.stdout and "--verbose" in out.stdout
    assert "\n  failed: tdx.pck_chain, " in out.stdout  # the ids only; their reasons under --verbose
    full = _cli("verify", str(sim_bundle), "--verbose")
    assert full.returncode == 1 and "tdx.pck_chain" in full.stdout and "simulated root CA" in full.stdout
    assert json.loads(_cli("verify", str(sim_bundle), "--json").stdout)["verdict"]["status"] == "failed"
    assert _cli("verify", str(sim_bundle), "--trust", "simulated").returncode == 0


def test_audit_counts_aci_bundles_shows_no_none_and_gives_the_simulator_hint(sim_bundle, tmp_path):
    folder = tmp_path / "audit"
    folder.mkdir()
    (folder / "reply.phalanb.json").write_bytes(sim_bundle.read_bytes())
    (folder / "broken.phalanb.json").write_text("{not json")
    out = _cli("audit", str(folder))
    assert out.returncode == 1
    assert "2/2" in out.stderr  # the progress counted the ACI bundle and the unreadable file
    assert "None" not in out.stdout and "could not read" in out.stdout
    assert f"phalanb audit {folder} --trust simulated" in out.stdout


def test_audit_of_an_empty_folder_says_so(tmp_path):
    out = _cli("audit", str(tmp_path), "--no-progress")
    assert out.returncode == 3 and "Empty DataFrame" not in out.stdout
    assert f"found no audit bundles or batches in {tmp_path}" in out.stderr


def test_a_model_name_typo_against_the_aci_simulator_is_a_404_not_a_security_failure():
    out = _cli("demo", "--model", "phalanb/sim-llama-3-8")
    assert out.returncode == 2, out.stdout[-800:]
    assert "HTTP 404" in out.stderr and "does not exist" in out.stderr and "phalanb/sim-llama-3-8b" in out.stderr
    assert "receipt.upstream" not in out.stdout + out.stderr


def test_a_short_nonce_is_a_usage_error(fixtures):
    nv = fixtures / "nvidia" / "nvtrust"
    out = _cli("gpu", str(nv / "hopperAttestationReport.txt"), "--chain", str(nv / "hopperCertChain.txt"),
               "--nonce", "931d")
    assert out.returncode == 2 and "--nonce must be the 32-byte nonce you sent (64 hex digits), got 2 bytes" in out.stderr


def test_hints_name_the_cli_flags(fixtures):
    from phalanb.wire.apikey import ApiKey, check_key_transport
    from phalanb.errors import SecretLeakError
    from phalanb.vllm.verify import verify_report
    from tests.test_default_policy import UNLISTED_MRTD_QUOTE, _capture

    with pytest.raises(SecretLeakError, match="--allow-insecure-http"):
        check_key_transport("http://example.com/v1", ApiKey("sk-x"), allow_insecure_http=False)
    unlisted = verify_report(json.loads((fixtures / UNLISTED_MRTD_QUOTE).read_text()))["tdx.measurements"]
    assert "--accept-measurement mr_td=<hex>" in unlisted.reason and "--relax-measurement mr_td" in unlisted.reason
    kw = _capture(fixtures, "venice-qwen35-2026-06")
    del kw["nras_response"], kw["jwks"]
    assert "--no-require-nras" in verify_report(**kw)["nras.result"].reason


def test_internal_texts_are_sentences(tmp_path):
    (tmp_path / "x.json").write_text('{"x": 1}')
    out = _cli("verify", str(tmp_path / "x.json"))
    assert out.returncode == 2 and "kind is None" not in out.stderr
    assert 'it has no "kind", and a bundle says "kind": "phalanb.audit-bundle"' in out.stderr
    (tmp_path / "s.json").write_text('{"api_version": null}')
    out = _cli("session", str(tmp_path / "s.json"), "--id", "aa")
    assert "is None" not in out.stderr and "api_version: is missing: an ACI session document" in out.stderr
