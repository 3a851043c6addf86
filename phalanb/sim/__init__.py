"""phalanb's local service: the confidential-inference API, simulated faithfully on 127.0.0.1.

The real services cannot be reached from a test machine (and cost money to reach anywhere), so every test,
notebook and demo runs against this simulator. It speaks the same HTTP API (SPEC §2), hashes and signs exactly as
the real proxy does, and its attestation report has the real shape. With ``SimConfig(protocol="aci")`` an ACI
gateway (:mod:`phalanb.sim.aci_gateway`, documents in :mod:`phalanb.sim.aci_docs`) stands in front of it, as
api.redpill.ai and inference.phala.com do now.

>>> from phalanb.sim import Simulator, SimConfig
>>> with Simulator(SimConfig(seed=1, ttft_ms=0, tokens_per_second=0)) as sim:   # doctest: +SKIP
...     print(sim.base_url)
http://127.0.0.1:54321/v1
"""

from .config import FAULTS, SimConfig
from .keys import SimKeys
from .server import Simulator

__all__ = ["FAULTS", "SimConfig", "SimKeys", "Simulator"]
