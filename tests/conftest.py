"""Shared test fixtures: the real captured data and a running simulator.

The real fixtures are required: ``$PHALANB_FIXTURES``, else ``../shared/fixtures`` beside the checkout (CI: used as
it is, nothing fetched), else the cache that :mod:`phalanb.fixtures` fills on first use from each file's original
public source (or a mirror, ``$PHALANB_FIXTURES_URL``), every file checked against the manifest's sha256. Fetching
is set-up, before any test: the tests themselves stay offline. If the fixtures are missing and cannot be fetched —
files with no public source are named — the whole run fails (never skips), because a verifier that is only tested
against its own simulator proves little.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from phalanb.fixtures import FixturesError, ensure

REPO = Path(__file__).resolve().parent.parent
try:
    FIXTURES = ensure(start=REPO)
except FixturesError as exc:
    raise pytest.UsageError(f"phalanb's tests need the real fixtures: {exc}") from None

TEST_API_KEY = "sk-phalanb-test-" + "k3y" * 8  # a recognisable fake key, grepped for in everything tests write


@pytest.fixture(scope="session")
def api_key() -> str:
    """The fake API key the simulator requires in tests; no file, log or repr may ever contain it."""
    return TEST_API_KEY


@pytest.fixture
def client_for(api_key):
    """``client_for(sim, **kw)``: a phalanb Client pointed at a simulator, with the test key."""
    from phalanb.wire.client import Client

    made = []

    def make(sim, **kw):
        c = Client(base_url=sim.base_url, model=sim.model, api_key=api_key, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def sim():
    """One fast simulator for the session (no artificial latency). Tests that inject faults use their own."""
    from phalanb.sim import SimConfig, Simulator

    with Simulator(SimConfig(seed=1234, ttft_ms=0, tokens_per_second=0, api_key=TEST_API_KEY)) as s:
        yield s


@pytest.fixture
def fresh_sim():
    """A simulator of its own, for tests that change faults or the signature TTL."""
    from phalanb.sim import SimConfig, Simulator

    def start(**kw):
        cfg = dict(seed=99, ttft_ms=0, tokens_per_second=0, api_key=TEST_API_KEY)
        cfg.update(kw)
        s = Simulator(SimConfig(**cfg)).start()
        started.append(s)
        return s

    started: list = []
    yield start
    for s in started:
        s.stop()


@pytest.fixture(scope="session", autouse=True)
def no_key_in_anything_written(tmp_path_factory):
    """After the whole run: no file any test wrote (saved exchanges, logs, CLI output, bundles, CSVs, executed
    notebooks) contains the test API key. Tests that write put their files under tmp_path."""
    yield
    base = tmp_path_factory.getbasetemp()
    needle = TEST_API_KEY.encode()
    leaks = [p for p in base.rglob("*") if p.is_file() and needle in p.read_bytes()]
    assert not leaks, f"the API key was written to: {[str(p) for p in leaks]}"
    artifacts = REPO / "test-artifacts"
    if artifacts.is_dir():
        leaks = [p for p in artifacts.rglob("*") if p.is_file() and needle in p.read_bytes()]
        assert not leaks, f"the API key was written to: {[str(p) for p in leaks]}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so fixtures can act on failure (browser screenshots)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
