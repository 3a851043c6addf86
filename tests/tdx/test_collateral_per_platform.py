"""Collateral belongs to a platform type; a PCK chain belongs to one machine.

A PCCS answers a collateral request with the PCK chain of the machine whose quote asked, and dcap-qvl prefers
that chain to the one inside the quote it verifies. Reused for another machine, or sent by a liar, it would make
dcap-qvl judge a chain other than the quote's: a genuine quote failing "Signature is invalid for qe_report", or a
verdict resting on a chain phalanb's own checks never saw.
"""

from __future__ import annotations

import time

import dcap_qvl
import pytest

from phalanb.vllm.signatures import fetch_signature
from phalanb.audit.evidence import CollateralCache, fetch_online_evidence
from phalanb.policy import Policy
from phalanb.sim import SimConfig, Simulator
from phalanb.tdx import Collateral, parse_quote, verify_with_collateral
from phalanb.tdx.sim import SimulatedTdx, simulated_root
from phalanb.vllm.verify import verify_exchange

from tests.conftest import TEST_API_KEY


def test_the_quotes_own_chain_is_judged_not_one_that_travels_with_the_collateral():
    a, b = SimulatedTdx(seed=61), SimulatedTdx(seed=62)
    quote = parse_quote(a.quote(b"\1" * 64))
    other = parse_quote(b.quote(b"\2" * 64))
    root, now = simulated_root(), int(time.time())
    lying = Collateral({**a.collateral().data, "pck_certificate_chain": "".join(other.pck_chain_pem)})
    # dcap-qvl alone takes the chain handed to it and refuses this genuine quote.
    with pytest.raises(ValueError):
        dcap_qvl.verify_with_root_ca(quote.raw, lying.dcap(), root.der, now)
    res = verify_with_collateral(quote, lying, root=root, at=now)
    assert res.status == "UpToDate" and res.error is None
    # And the other way round: another machine's quote is not rescued by collateral naming a good chain.
    honest = Collateral({**a.collateral().data, "pck_certificate_chain": "".join(quote.pck_chain_pem)})
    res = verify_with_collateral(other, honest, root=root, at=now)
    assert res.status is None and res.error


def test_platform_drops_only_the_machines_chain():
    col = SimulatedTdx(seed=61).collateral()
    with_chain = Collateral({**col.data, "pck_certificate_chain": "PEM"}, "pccs:x", 5)
    plain = with_chain.platform()
    assert plain.data == col.data and (plain.source, plain.fetched_at) == ("pccs:x", 5)
    assert col.platform() is col


def _evidence(sim, cache):
    from phalanb.wire.client import Client

    with Client(base_url=sim.base_url, model=sim.model, api_key=TEST_API_KEY) as client:
        att = client.attestation()
        ex = client.chat("x", max_tokens=2)
        sig = fetch_signature(client, ex.chat_id)
    root = sim.base_url.removesuffix("/v1")
    online = fetch_online_evidence(att.report, signing_address=att.report["signing_address"], nonce=att.nonce,
                                   pccs_url=f"{root}/pccs", nras_url=None, cache=cache)
    assert online.problems == []
    return verify_exchange(ex, sig, att.report, nonce=att.nonce, policy=Policy(trust="simulated"),
                           collateral=online.collateral)


def test_a_simulator_restarted_on_the_same_port_as_another_machine_still_verifies():
    # What broke a CI run: a later simulator got an earlier one's port, and the process-wide cache served it the
    # earlier machine's collateral, PCK chain included.
    cache = CollateralCache()
    with Simulator(SimConfig(seed=71, ttft_ms=0, tokens_per_second=0, api_key=TEST_API_KEY)) as first:
        port = int(first.base_url.rsplit(":", 1)[1].split("/")[0])
        assert _evidence(first, cache)["tdx.tcb_status"].status.value == "pass"
    with Simulator(SimConfig(seed=72, ttft_ms=0, tokens_per_second=0, api_key=TEST_API_KEY), port=port) as second:
        v = _evidence(second, cache)
    assert v["tdx.tcb_status"].status.value == "pass", v.table()
    assert len(cache) == 2  # another PCK CA: its own collateral
    assert all("pck_certificate_chain" not in col.data for col in cache._items.values())
