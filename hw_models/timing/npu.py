"""NPU timing backend: the roofline at the device's own efficiencies (hw_models/npu.py).

Models: each op takes max(FLOPs / (peak of its dtype x compute_efficiency), bytes / (memory
    bandwidth x memory_efficiency)) + the device's launch overhead, exactly as the roofline
    backend, with the efficiencies the device preset cites for its software stack (ROCm, SynapseAI,
    Metal, QNN/OpenCL) instead of a scenario-wide setting.
Ignores: what the roofline ignores (tiling, wave quantisation, caches, occupancy).
Sources: Williams, Waterman, Patterson, "Roofline" (CACM 2009); the presets for the efficiencies.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from hw_models.timing.roofline import RooflineBackend, RooflineConfig
from simulator.config.quantities import StrictConfig
from simulator.core.registry import register_timing


class NpuTimingConfig(StrictConfig):
    launch_overhead: bool = Field(default=True, description="add the device's launch cost per kernel")


@register_timing("npu", config=NpuTimingConfig)
class NpuBackend(RooflineBackend):
    """Roofline at the device preset's compute and memory efficiencies."""

    name = "npu"

    def __init__(self, config: NpuTimingConfig, device: Any, link: Any = None) -> None:
        roof = RooflineConfig(compute_efficiency=device.compute_efficiency,
                              memory_efficiency=device.memory_efficiency, launch_overhead=config.launch_overhead)
        super().__init__(roof, device, link)
        self.npu_config = config
