"""Shared helpers for the GPU tests: the nvidia fixture table of fixtures/README.md, as data."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

# The suite runs with --import-mode=importlib, where test modules cannot import their neighbours; the GPU tests
# share one data module (the fixture table), so this folder goes on the path once, here.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_table import CHUTES, NEARDIRECT  # noqa: E402
from phalanb.gpu import nvidia_device_identity_ca  # noqa: E402


@pytest.fixture(scope="session")
def nvidia_root():
    return nvidia_device_identity_ca()


@pytest.fixture(scope="session")
def neardirect(fixtures):
    base = fixtures / NEARDIRECT
    report = json.loads((base / "attestation_report.json").read_text())
    return {
        "report": report,
        "nonce": json.loads((base / "manifest.json").read_text())["nonce_hex"],
        "nras_request": json.loads((base / "nras_request.json").read_text()),
        "nras_response": json.loads((base / "nras_response.json").read_text()),
        "jwks": json.loads((base / "nras_jwks_at_capture.json").read_text()),
    }


@pytest.fixture(scope="session")
def chutes(fixtures):
    base = fixtures / CHUTES
    return {
        "report": json.loads((base / "attestation_report.json").read_text()),
        "manifest": json.loads((base / "manifest.json").read_text()),
        "nras_request": json.loads((base / "nras_request.json").read_text()),
        "nras_response": json.loads((base / "nras_response.json").read_text()),
        "jwks": json.loads((base / "nras_jwks_at_capture.json").read_text()),
    }


@pytest.fixture(scope="session")
def sim_gpus():
    from phalanb.gpu.sim import SimulatedGpus

    return SimulatedGpus(seed=7, count=2)
