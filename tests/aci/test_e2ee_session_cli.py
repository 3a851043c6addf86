"""E2EE as a user meets it (issue 13 item 4): `phalanb demo --e2ee`, `phalanb chat --e2ee --save`, the chat panel's
encrypt toggle — each verifies the keyset before it sends, keeps the prompt off the wire, and its bundle
re-verifies offline without any private key."""

import base64
import json
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from phalanb.session import Session, Settings


def phalanb(*args):
    exe = shutil.which("phalanb")
    return subprocess.run(([exe] if exe else [sys.executable, "-m", "phalanb.cli"]) + list(args),
                          capture_output=True, text=True, timeout=120)


E2EE_IDS = {"v3": ("e2ee.model_key", "e2ee.request_sealed", "e2ee.open"),
            "aug-2026": ("e2ee.key_attested", "e2ee.request_encrypted", "e2ee.response_authenticated")}


@pytest.mark.parametrize("shape", sorted(E2EE_IDS))
def test_demo_e2ee_is_verified_with_the_e2ee_ids(tmp_path, shape):
    r = phalanb("demo", "--e2ee", "--json", "--max-tokens", "6", "--save", str(tmp_path / "b.json"),
                "--aci-shape", shape)
    assert r.returncode == 0, r.stdout + r.stderr
    checks = {c["id"]: c["status"] for c in json.loads(r.stdout)["verdict"]["checks"]}
    for cid in (*E2EE_IDS[shape], "receipt.request_hash", "receipt.response_hash"):
        assert checks[cid] == "pass", cid
    hint = re.search(r"re-verify offline: (phalanb verify [^)]+)\)", r.stderr).group(1)
    again = phalanb(*shlex.split(hint)[1:])
    assert again.returncode == 0 and "same verdict as recorded: verified" in again.stdout


@pytest.mark.parametrize("shape", ["v3", "aug-2026"])
@pytest.mark.parametrize("stream", [True, False])
def test_chat_e2ee_keeps_the_prompt_off_the_wire_and_the_bundle_holds_no_private_key(tmp_path, stream, shape):
    prompt = "the quick brown fox keeps its secrets"
    path = tmp_path / "chat.json"
    r = phalanb("chat", prompt, "--e2ee", "--max-tokens", "5", "--save", str(path), "--aci-shape", shape,
                *([] if stream else ["--no-stream"]))
    assert r.returncode == 0, r.stderr
    saved = json.loads(path.read_text())
    wire = base64.b64decode(saved["exchange"]["request_b64"])
    assert prompt.encode() not in wire
    if shape == "v3":  # the whole body is sealed: not even the field names travel
        assert "left sealed" in r.stderr and b"messages" not in wire and b"sealed_b64" in wire
    else:  # E2EE v2 seals fields in place
        assert "left encrypted" in r.stderr and b"messages" in wire
    assert "private" not in json.dumps(saved["exchange"].get("e2ee", {})).lower()


def test_e2ee_against_a_model_server_is_a_clear_refusal():
    r = phalanb("chat", "hi", "--e2ee", "--protocol", "legacy", "--max-tokens", "3")
    assert r.returncode == 2 and "E2EE needs an ACI gateway" in r.stderr


def test_the_chat_panel_encrypt_toggle_shows_the_ciphertext_beside_the_plaintext():
    from phalanb.widgets import ChatPanel

    with Session(Settings(protocol="aci", sim_options={"aci_shape": "aug-2026"})) as session:
        panel = ChatPanel(session=session, max_tokens=5)
        panel.encrypt.value = True
        result = panel.ask("a prompt only the attested key may read")
        assert result is not None and result.verdict.status == "verified"
        assert result.verdict["e2ee.request_encrypted"].passed
        assert "on the wire" in panel.wire.value and "left encrypted" in panel.wire.value
        assert b"only the attested key" not in result.exchange.request_bytes
        panel.encrypt.value = False
        panel.ask("in clear")
        assert panel.wire.value == ""
