"""``tiered``: offload a preempted request's KV to host DRAM, spill to SSD when host memory is full,
and prefetch it back before the request resumes.

Models: the decisions of a GPU -> host DRAM -> SSD hierarchy (the mechanism,
    ``simulator.serving.kv_tiers.TieredOffload``, moves the bytes over PCIe and the SSD model):
    ``place`` puts a preempted request's KV in host DRAM when it fits (after spilling older
    entries), else directly on the SSD, else it is recomputed; ``victims`` picks the host entries
    to spill, least recently offloaded first, among idle entries only (an entry being copied is
    never a victim); ``prefetch`` picks the SSD entries to bring back to host DRAM, the most
    recently preempted first (the order in which vLLM-style schedulers resume them).
Ignores: idle multi-turn sessions (only preempted requests are offloaded here; the ``prefix``
    policy's ``offload_idle_sessions`` saves them to host DRAM between turns); compression; partial
    (per-block) offload of a request.
Sources: FlexGen (Sheng et al., ICML 2023) and InfiniGen/AttentionStore-style (Gao et al.,
    USENIX ATC 2024) hierarchical KV storage with layer/request-ahead prefetch; vLLM swap space.
"""

from __future__ import annotations

from pydantic import Field

from simulator.config.quantities import Bytes, PositiveBytes, StrictConfig
from simulator.core.registry import register_cache_policy


class TieredConfig(StrictConfig):
    host: str = Field(default="DGX-A100-host", description="host preset (kind host): PCIe link to the GPU")
    host_capacity: Bytes = Field(default="4GiB", description="host DRAM for offloaded KV, per GPU")
    ssd: str = Field(default="DC-NVMe-PCIe4", description="SSD preset (kind ssd)")
    ssd_capacity: Bytes | None = Field(default=None, description="SSD space for KV per GPU (default: the drive)")
    io_size: PositiveBytes = Field(default="256KiB", description="size of one SSD command")
    queue_depth: int = Field(default=32, gt=0, description="SSD commands kept outstanding per transfer")
    prefetch_depth: int = Field(default=2, ge=0, description="preempted requests prefetched from SSD ahead")


@register_cache_policy("tiered", config=TieredConfig)
class TieredPolicy:
    """Offload preempted KV to host DRAM, spilling to SSD when host memory is full."""
    mechanism = "tiered"

    def __init__(self, config: TieredConfig) -> None:
        self.config = config

    @staticmethod
    def place(nbytes: float, host_free: float, host_reclaimable: float, ssd_free: float) -> str:
        """``host`` when the KV fits in host DRAM (spilling idle entries if needed), else ``ssd``
        when it fits on the drive, else ``recompute``."""
        if nbytes <= host_free + host_reclaimable:
            return "host"
        return "ssd" if nbytes <= ssd_free else "recompute"

    @staticmethod
    def victims(candidates: list[tuple[int, float]], need: float) -> list[int]:
        """Idle host entries ``(rid, bytes)`` (oldest offload first) to spill until ``need`` bytes
        are freed: the least recently offloaded first; [] when they cannot free enough."""
        out, freed = [], 0.0
        for rid, nbytes in candidates:
            if freed >= need:
                break
            out.append(rid)
            freed += nbytes
        return out if freed >= need else []

    def prefetch(self, newest_first: list[int]) -> list[int]:
        """Offloaded requests (newest offload first) whose KV should be in host DRAM next."""
        return newest_first[:self.config.prefetch_depth]
