"""Host kind: host DRAM (a memory tier) and the PCIe link between it and one GPU.

Models: host DRAM as a capacity and a bandwidth; PCIe as generation x lanes (per-lane rate after
    line encoding: Gen3 0.985, Gen4 1.969, Gen5 3.938, Gen6 7.563 GB/s per direction), an
    achievable share of it for large DMA copies, and a fixed per-transfer overhead (driver, DMA
    descriptor setup, completion), so the effective bandwidth of one copy of S bytes is
    S / (overhead + S / rate): small copies are overhead-bound, large ones approach the rate.
    Pageable (non-pinned) host memory is staged through a pinned bounce buffer by a CPU copy
    that runs in series with the DMA, so its rate is 1 / (1/pcie + 1/staging). Each direction
    is its own link (PCIe is full duplex); concurrent copies share it (processor sharing,
    :class:`simulator.core.resources.SharedBandwidth`). The host CPU's FLOP rate is given for
    studies that compute on it (FlexGen-style CPU attention, LLM in a flash on CPU).
Ignores: NUMA placement, PCIe switch oversubscription between GPUs, IOMMU costs, TLP size
    tuning, GPUDirect Storage paths (modelled by studies as SSD -> GPU over the same link).
Sources: PCI-SIG base specifications 3.0-6.0 for the lane rates; NVIDIA CUDA C++ Best Practices
    Guide (pinned vs pageable transfers); per-preset numbers cited in ``presets/host/*.yaml``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from simulator.config.quantities import FlopsPerS, PositiveBytes, PositiveBytesPerS, Seconds, StrictConfig
from simulator.core.registry import register_hardware

# bytes/s per lane per direction after line encoding (128b/130b for Gen3-5; Gen6 PAM4 FLIT 242/256)
PCIE_LANE_BYTES_PER_S = {3: 8e9 * 128 / 130 / 8, 4: 16e9 * 128 / 130 / 8, 5: 32e9 * 128 / 130 / 8,
                         6: 64e9 * 242 / 256 / 8}


class HostConfig(StrictConfig):
    name: str
    dram_bytes: PositiveBytes
    dram_bw_bytes_per_s: PositiveBytesPerS
    pcie_generation: Literal[3, 4, 5, 6] = 4
    pcie_lanes: Literal[1, 2, 4, 8, 16] = 16
    pcie_efficiency: float = Field(default=0.8, gt=0, le=1, description="share of the lane rate large DMA copies reach")
    transfer_overhead_s: Seconds = Field(default="10us", description="fixed cost of one host<->device copy")
    pinned: bool = Field(default=True, description="host buffers are page-locked (pinned)")
    pageable_copy_bw_bytes_per_s: PositiveBytesPerS = Field(default="10GB/s",
                                                            description="CPU staging copy for pageable memory")
    cpu_flops_per_s: FlopsPerS | None = Field(default=None, description="host CPU peak, for CPU-side compute")

    @property
    def pcie_bw_bytes_per_s(self) -> float:
        """Per direction, after line encoding, before packet overhead."""
        return PCIE_LANE_BYTES_PER_S[self.pcie_generation] * self.pcie_lanes

    def copy_rate(self, pinned: bool | None = None) -> float:
        """Asymptotic bytes/s of one large copy."""
        pcie = self.pcie_bw_bytes_per_s * self.pcie_efficiency
        if self.pinned if pinned is None else pinned:
            return pcie
        return 1.0 / (1.0 / pcie + 1.0 / self.pageable_copy_bw_bytes_per_s)


@register_hardware("host", config=HostConfig, presets="presets/host")
class Host:
    """Host DRAM as a memory tier and the PCIe link between it and one GPU."""
    def __init__(self, config: HostConfig) -> None:
        self.config = config

    def transfer_s(self, size_bytes: float, pinned: bool | None = None) -> float:
        """One host<->device copy of ``size_bytes`` alone on the link."""
        if size_bytes <= 0:
            return 0.0
        return self.config.transfer_overhead_s + size_bytes / self.config.copy_rate(pinned)

    def effective_bw(self, size_bytes: float, pinned: bool | None = None) -> float:
        return size_bytes / self.transfer_s(size_bytes, pinned)

    def chunked_transfer_s(self, total_bytes: float, chunk_bytes: float, pinned: bool | None = None) -> float:
        """``total_bytes`` moved as copies of ``chunk_bytes`` one after another (e.g. per KV block)."""
        if total_bytes <= 0:
            return 0.0
        n = -(-total_bytes // chunk_bytes)
        return n * self.config.transfer_overhead_s + total_bytes / self.config.copy_rate(pinned)

    def shared_link(self, env, name: str = "pcie"):
        """A contended link (one direction) for a simulation: processor sharing at the copy rate,
        the per-transfer overhead as its latency."""
        from simulator.core.clock import s_to_ps
        from simulator.core.resources import SharedBandwidth

        c = self.config
        return SharedBandwidth(env, c.copy_rate(), latency_ps=s_to_ps(c.transfer_overhead_s), name=name)
