"""Issue 12 item 7: simulated trust (roots whose keys anyone can derive) applies only to loopback URLs."""

from __future__ import annotations

import pytest

from phalanb.cli import main
from phalanb.errors import InputError
from phalanb.policy import Policy
from phalanb.session import Session, Settings
from phalanb.trust import is_loopback_url, require_loopback_for_simulated

REMOTE = "https://api.redpill.ai/v1"


@pytest.mark.parametrize("url, loopback", [
    ("http://127.0.0.1:8000/v1", True), ("http://127.8.9.10/v1", True), ("http://[::1]:9000/v1", True),
    ("http://localhost:8000/v1", True), ("http://LOCALHOST./v1", True), ("http://[::ffff:127.0.0.1]/v1", True),
    (REMOTE, False), ("http://10.0.0.1/v1", False), ("http://localhost.evil.com/v1", False),
    ("http://127.0.0.1.nip.io/v1", False), ("http://0.0.0.0/v1", False), ("not a url", False), ("", False),
])
def test_simulated_trust_loopback_urls(url, loopback):
    assert is_loopback_url(url) is loopback


def test_simulated_trust_is_refused_for_a_remote_url_from_the_environment():
    # What `phalanb lab` leaves behind: PHALANB_TRUST=simulated, then a notebook points at a real service.
    settings = Settings.from_env({"PHALANB_BASE_URL": REMOTE, "PHALANB_TRUST": "simulated"})
    with pytest.raises(InputError) as err:
        Session(settings)
    assert "simulated trust applies only" in str(err.value) and REMOTE in str(err.value)


def test_simulated_trust_is_refused_for_remote_pccs_or_nras():
    for field in ("pccs_url", "nras_url"):
        with pytest.raises(InputError) as err:
            Session(Settings(base_url="http://127.0.0.1:1/v1", trust="simulated", model="m",
                             **{field: "https://nras.attestation.nvidia.com"}))
        assert "simulated trust" in str(err.value)


def test_simulated_trust_online_evidence_only_from_loopback():
    from phalanb.audit.evidence import fetch_online_evidence

    with pytest.raises(InputError):
        fetch_online_evidence({}, signing_address=None, nonce=None, pccs_url=None,
                              nras_url="https://nras.attestation.nvidia.com", trust="simulated")
    require_loopback_for_simulated(REMOTE, trust="production")  # production trust: any URL


def test_simulated_trust_cli_refuses_a_remote_base_url(capsys):
    code = main(["demo", "--base-url", REMOTE, "--trust", "simulated"])
    assert code == 2
    assert "simulated trust applies only" in capsys.readouterr().err


def test_simulated_trust_lab_refuses_a_remote_base_url(tmp_path):
    from phalanb.lab import lab_command

    with pytest.raises(InputError):
        lab_command(REMOTE, notebooks=tmp_path)
    _argv, env, _where = lab_command("http://127.0.0.1:5/v1", notebooks=tmp_path)
    assert env["PHALANB_TRUST"] == "simulated"


def test_simulated_trust_latency_verify_refuses_a_remote_client():
    from phalanb.wire.client import Client
    from phalanb.timing.latency import run_latency

    with Client(base_url=REMOTE, model="m", api_key=None, api_key_env=False) as client:
        with pytest.raises(InputError):
            run_latency(client, n=1, attestation=True, verify=True, policy=Policy(trust="simulated"),
                        progress=False)
