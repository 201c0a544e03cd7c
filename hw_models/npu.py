"""NPU / SoC / non-NVIDIA accelerator hardware kind: a device described by its peaks, its memory
and its power (AMD Instinct, Intel Gaudi, Apple-M-class and phone SoCs).

Models: compute units and clock, dense matrix-engine peak per dtype, vector FP32 peak, device
    memory (capacity, bandwidth, technology) that may be unified with the host (the OS and other
    apps keep ``host_reserved_bytes`` of it), on-chip SRAM / last-level cache, per-kernel launch
    overhead, the share of the peaks a serving stack reaches (``compute_efficiency``,
    ``memory_efficiency``: a property of the device's software stack, cited per preset), board /
    package power (TDP, idle, an optional cap). Timed by the ``npu`` backend (a roofline at those
    efficiencies, hw_models/timing/npu.py).
Ignores: the micro-architecture below the peaks (CU/MME tiling, wave quantisation), on-chip SRAM
    reuse across kernels, the host CPU's share of a unified memory's bandwidth while it serves,
    thermal throttling of passively cooled SoCs (a power cap models a sustained limit).
Sources: vendor datasheets and whitepapers, cited per number in ``presets/npu/*.yaml``.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from hw_models.energy import EnergyConfig, MemoryType
from simulator.config.quantities import (
    Bytes,
    FlopsPerS,
    Hz,
    PositiveBytes,
    PositiveBytesPerS,
    PositiveFlopsPerS,
    Seconds,
    StrictConfig,
    UsdPerHour,
    Watts,
)
from simulator.core.registry import register_hardware

NPU_DTYPES = ("fp64", "fp32", "tf32", "fp16", "bf16", "fp8", "int8", "int4", "fp4", "mxfp4", "mxfp8")


class NpuConfig(StrictConfig):
    name: str = Field(description="marketing name, e.g. 'AMD Instinct MI300X'")
    architecture: str = Field(description="cdna3, gaudi2, apple-m2, adreno-750, ...")
    compute_units: int = Field(gt=0, description="CUs / TPCs+MMEs / GPU cores / NPU cores")
    clock_hz: Hz = Field(description="clock of the quoted peaks")
    tensor_flops_per_s: dict[str, FlopsPerS] = Field(
        description="dense matrix-engine peak per dtype; a dtype missing here is not supported")
    vector_flops_per_s: PositiveFlopsPerS = Field(description="FP32 vector peak (non-matrix)")
    memory_bytes: PositiveBytes = Field(description="device memory, or the SoC's unified memory")
    memory_bw_bytes_per_s: PositiveBytesPerS
    memory_type: MemoryType = Field(description="memory technology (energy per byte)")
    unified_memory: bool = Field(default=False, description="memory shared with the host CPU (SoC)")
    host_reserved_bytes: Bytes = Field(default="0B", description="unified memory the OS and other apps keep")
    sram_bytes: Bytes = Field(default="0B", description="on-chip SRAM / last-level cache")
    launch_overhead_s: Seconds = Field(default="5us", description="per-kernel launch / dispatch cost")
    compute_efficiency: float = Field(default=0.7, gt=0, le=1, description="share of the matrix peak GEMMs reach")
    memory_efficiency: float = Field(default=0.7, gt=0, le=1, description="share of memory bandwidth streams reach")
    tdp_w: Watts
    idle_w: Watts | None = None
    power_cap_w: Watts | None = Field(default=None, description="power limit (DVFS throttling); at most tdp_w")
    energy: EnergyConfig | None = Field(default=None, description="energy coefficient overrides (hw_models.energy)")
    price: UsdPerHour | None = None
    default_interconnect: str | None = Field(default=None, description="link preset for tensor parallelism")
    pcie: str | None = None

    timing_kind: ClassVar[str] = "npu"

    @model_validator(mode="after")
    def _check(self) -> NpuConfig:
        unknown = sorted(set(self.tensor_flops_per_s) - set(NPU_DTYPES))
        if unknown:
            raise ValueError(f"tensor_flops_per_s has unknown dtype(s) {unknown}; known: {list(NPU_DTYPES)}")
        if not self.tensor_flops_per_s:
            raise ValueError("tensor_flops_per_s must name at least one dtype")
        if self.power_cap_w is not None and self.power_cap_w > self.tdp_w:
            raise ValueError(f"power_cap_w {self.power_cap_w:g} W is above tdp_w {self.tdp_w:g} W")
        if self.host_reserved_bytes >= self.memory_bytes:
            raise ValueError("host_reserved_bytes leaves no memory to the device")
        return self

    @property
    def extra_memory_bytes(self) -> float:
        """Memory the engine cannot use: what the host keeps of a unified memory."""
        return float(self.host_reserved_bytes)

    def tensor_peak(self, dtype: str) -> float:
        """Dense matrix peak of ``dtype``; a clear error naming the device if it lacks it."""
        from hw_models.peaks import peak_or_refuse

        return peak_or_refuse(self.name, self.tensor_flops_per_s, dtype)


@register_hardware("npu", config=NpuConfig, presets="presets/npu")
class Npu:
    """An NPU / SoC / non-NVIDIA accelerator built from its config."""

    def __init__(self, config: NpuConfig) -> None:
        self.config = config
