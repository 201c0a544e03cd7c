"""Expert-cache policies for MoE expert offload: which routed experts a GPU keeps, and the predictor
that prefetches the next layer's experts.

``policies.expert_offload: {kind: lfu | lru, cache_experts: 16, tier: host, prefetch: {accuracy: 0.9}}``
selects one. A policy is a class with ``resident(p_active, capacity) -> np.ndarray``: given the chance
that each expert of a layer is needed in an iteration, and the experts the cache holds per layer, the
steady-state chance that each is cached when needed. The mechanism (``workloads.expert_offload``)
turns that into copies over the host link. Kinds are files of this package named after the kind
(``lru.py``, ``lfu.py``); third-party policies plug in through the ``hwsim.expert_caches`` entry-point
group or as ``module:Class``.
"""

from __future__ import annotations

from typing import Literal, Protocol

import numpy as np
from pydantic import Field, model_validator

from simulator.config.quantities import Bytes, PositiveBytes, StrictConfig
from simulator.core.registry import Registry

EXPERT_CACHES = Registry("expert cache policy", "hwsim.expert_caches", ("policies.expert_caches",))
register_expert_cache = EXPERT_CACHES.register


class PrefetchConfig(StrictConfig):
    accuracy: float = Field(ge=0, le=1, description="share of a layer's needed experts the predictor names one "
                                                    "layer ahead (an input: ExpertFlow, Pre-gated MoE report it)")


class ExpertOffloadConfig(StrictConfig):
    """Where the routed experts live and how much of them the GPU caches."""

    cache_experts: int | None = Field(default=None, ge=0, description="experts kept on the GPU per MoE layer")
    cache_bytes: Bytes | None = Field(default=None, description="GPU memory for the expert cache, per GPU "
                                                                "(whole experts, spread evenly over the layers)")
    tier: Literal["host", "ssd"] = Field(default="host", description="where the routed experts live")
    host: str = Field(default="DGX-A100-host", description="host preset (kind host): the PCIe link to the GPU")
    ssd: str = Field(default="DC-NVMe-PCIe4", description="SSD preset (kind ssd), read when tier is ssd")
    # source: estimate, the same SSD command size and depth as the tiered KV policy's defaults
    io_size: PositiveBytes = Field(default="256KiB", description="size of one SSD read command")
    queue_depth: int = Field(default=32, gt=0, description="SSD reads outstanding per expert copy")
    prefetch: PrefetchConfig | None = Field(default=None, description="predicted prefetch of the next layer's "
                                                                      "experts; none: fetched on demand")

    @model_validator(mode="after")
    def _size(self) -> ExpertOffloadConfig:
        if (self.cache_experts is None) == (self.cache_bytes is None):
            raise ValueError("give exactly one of cache_experts (per MoE layer) or cache_bytes (per GPU)")
        return self


class ExpertCachePolicy(Protocol):
    def resident(self, p_active: np.ndarray, capacity: float) -> np.ndarray: ...


__all__ = ["EXPERT_CACHES", "ExpertCachePolicy", "ExpertOffloadConfig", "PrefetchConfig", "register_expert_cache"]
