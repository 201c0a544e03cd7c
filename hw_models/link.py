"""Interconnect kind: alpha-beta links for collectives (NVLink, NVSwitch, PCIe, InfiniBand).

Models: a per-GPU link with a unidirectional bandwidth, an achievable fraction of it and a
    per-step latency (alpha); ring all-reduce takes 2(p-1) steps moving 2(p-1)/p of the message
    over each GPU's link; a switch (NVSwitch) topology lets every GPU use its full bandwidth. Over
    Ethernet (host-driven TCP collectives between devices: Gloo, TPI-LLM) the all-reduce is the cheaper of
    the ring and a star (a master gathers, reduces and broadcasts: 2 latencies, 2(p-1) messages over
    the master's link), which wins for latency-bound messages.
    A point-to-point copy may reach a different share of the link than a collective
    (``p2p_efficiency``): over a direct NVLink bridge no switch hop or reduction sits in the way.
Ignores: NCCL protocol choice (LL/LL128/Simple), chunk pipelining, congestion from other jobs.
Sources: NVIDIA NVLink/NVSwitch and PCI-SIG specifications, cited per number in
    ``presets/link/*.yaml``; Thakur, Rabenseifner, Gropp (IJHPCA 2005) for the ring and star costs;
    Li et al., "TPI-LLM" (2024) for the star all-reduce on slow edge links.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from simulator.config.quantities import PositiveBytesPerS, Seconds, StrictConfig
from simulator.core.registry import register_hardware


class LinkConfig(StrictConfig):
    name: str
    technology: Literal["nvlink", "nvswitch", "pcie", "infiniband", "ethernet"]
    bw_bytes_per_s: PositiveBytesPerS = Field(description="per GPU, per direction")
    efficiency: float = Field(default=0.8, gt=0, le=1,
                              description="achievable share of bw for large collectives")
    p2p_efficiency: float | None = Field(
        default=None, gt=0, le=1,
        description="achievable share of bw for a point-to-point copy (send/recv); unset: efficiency")
    latency_s: Seconds = Field(default="5us", description="per collective step (alpha)")
    topology: Literal["ring", "switch"] = "ring"


@register_hardware("link", config=LinkConfig, presets="presets/link")
class Link:
    """An interconnect with alpha-beta collective costs (NVLink, NVSwitch, PCIe, InfiniBand)."""
    def __init__(self, config: LinkConfig) -> None:
        self.config = config

    def allreduce_s(self, size_bytes: float, workers: int) -> float:
        """Ring all-reduce of ``size_bytes`` over ``workers`` GPUs (0 for one worker)."""
        if workers <= 1 or size_bytes <= 0:
            return 0.0
        c = self.config
        steps = 2 * (workers - 1)
        wire = 2.0 * (workers - 1) / workers * size_bytes
        ring = steps * c.latency_s + wire / (c.bw_bytes_per_s * c.efficiency)
        if c.technology == "ethernet":  # star: the master's link carries every message
            return min(ring, 2 * c.latency_s + 2.0 * (workers - 1) * size_bytes / (c.bw_bytes_per_s * c.efficiency))
        return ring

    def alltoall_s(self, size_bytes: float, workers: int, efficiency: float | None = None,
                   latency_s: float | None = None) -> float:
        """All-to-all in which each GPU sends ``size_bytes`` in all to the other GPUs (MoE dispatch /
        combine): every GPU's own link carries its bytes at once, so one latency plus the bytes at the
        per-GPU rate (``efficiency`` / ``latency_s``: an implementation's, default the link's)."""
        if workers <= 1 or size_bytes <= 0:
            return 0.0
        c = self.config
        eff = c.efficiency if efficiency is None else efficiency
        return (c.latency_s if latency_s is None else latency_s) + size_bytes / (c.bw_bytes_per_s * eff)

    def send_s(self, size_bytes: float) -> float:
        """Point-to-point copy of ``size_bytes``: one latency + the bytes at the link's p2p rate."""
        c = self.config
        eff = c.p2p_efficiency if c.p2p_efficiency is not None else c.efficiency
        return c.latency_s + size_bytes / (c.bw_bytes_per_s * eff)
