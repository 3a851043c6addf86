"""Helpers shared by the TDX tests: the ground-truth table and quote loading, straight from the fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
from tests.conftest import FIXTURES  # noqa: E402  (found, or fetched and checked, once per run)
TDX = FIXTURES / "tdx"
# Read at collection time so each quote is its own test case (tests/conftest.py fails the run if absent).
GROUND_TRUTH = json.loads((TDX / "ground_truth.json").read_text()) if (TDX / "ground_truth.json").is_file() else []


def gt_params(predicate=lambda e: True):
    return [pytest.param(e, id=e["file"]) for e in GROUND_TRUTH if predicate(e)]


@pytest.fixture(scope="session")
def tdx_dir(fixtures):
    return fixtures / "tdx"


@pytest.fixture(scope="session")
def load(tdx_dir):
    def read(rel: str) -> bytes:
        return (tdx_dir / rel).read_bytes()
    return read
