"""Which simulated TDX and GPU back the simulator's attestation report."""

from __future__ import annotations

from .attest import GpuProvider, TdxProvider
from .config import SimConfig

__all__ = ["default_providers"]


def default_providers(config: SimConfig) -> tuple[TdxProvider | None, GpuProvider | None]:
    """The simulated TDX module and ``config.gpus`` simulated GPUs.

    Filled in by the TDX and GPU simulators (phalanb.tdx.sim, phalanb.gpu.sim); until a provider exists its
    report fields stay null and verification reports them as missing, never as passed.
    """
    from ..tdx.sim import SimulatedTdx  # imported here so importing phalanb.sim stays light
    tdx: TdxProvider | None = SimulatedTdx(seed=config.seed)
    from ..gpu.sim import SimulatedGpus  # imported here so importing phalanb.sim stays light
    gpu: GpuProvider | None = SimulatedGpus(seed=config.seed, count=config.gpus) if config.gpus else None
    return tdx, gpu
