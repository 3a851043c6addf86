"""Online evidence: collateral is fetched from the simulator's PCCS once and reused only while valid."""

from phalanb.vllm.signatures import fetch_signature
from phalanb.audit.evidence import CollateralCache, fetch_online_evidence
from phalanb.policy import Policy
from phalanb.vllm.verify import verify_exchange


def test_collateral_is_cached_while_valid_and_refetched_after(fresh_sim, client_for, monkeypatch):
    import phalanb.tdx

    fetches = []
    real = phalanb.tdx.fetch_collateral_sync
    monkeypatch.setattr(phalanb.tdx, "fetch_collateral_sync", lambda *a, **k: fetches.append(1) or real(*a, **k))
    sim = fresh_sim(seed=41)
    client = client_for(sim)
    root = sim.base_url.removesuffix("/v1")
    now = [0.0]
    cache = CollateralCache(clock=lambda: now[0])

    def fetch():
        att = client.attestation()
        return att, fetch_online_evidence(att.report, signing_address=att.report["signing_address"],
                                          nonce=att.nonce, pccs_url=f"{root}/pccs", nras_url=None, cache=cache)

    att, first = fetch()
    assert first.problems == [] and first.collateral is not None and len(cache) == 1 and len(fetches) == 1
    key = next(iter(cache._items))
    start, end, _ = cache._items[key].window()
    now[0] = start + 1
    _, again = fetch()
    assert again.collateral == first.collateral and len(fetches) == 1  # the cached copy, inside its window
    now[0] = end + 1  # expired: dropped and fetched afresh
    _, later = fetch()
    assert later.collateral is not None and len(fetches) == 2
    # Cached or not, the collateral is verified when used: it still yields an UpToDate TCB for this quote.
    ex = client.chat("x", max_tokens=2)
    sig = fetch_signature(client, ex.chat_id)
    v = verify_exchange(ex, sig, att.report, nonce=att.nonce, policy=Policy(trust="simulated"),
                        collateral=again.collateral)
    assert v["tdx.tcb_status"].status.value == "pass"


def test_fetch_problems_are_reported_not_raised(sim, client_for):
    att = client_for(sim).attestation()
    out = fetch_online_evidence(att.report, signing_address=att.report["signing_address"], nonce=att.nonce,
                                pccs_url="http://127.0.0.1:9/pccs", nras_url=None, cache=None, timeout=2)
    assert out.collateral is None and out.problems and "collateral" in out.problems[0]
