"""Accelerator template: a processing-element array, on-chip SRAM and DRAM/HBM, with a dataflow
choice, for FPGA and ASIC studies (hardware kind ``accelerator``; timed by the ``accelerator``
backend, hw_models/timing/accelerator.py).

Models: ``arrays`` systolic arrays of ``pe_rows`` x ``pe_cols`` PEs at ``clock_hz``, each PE doing
    ``macs_per_pe_per_cycle[dtype]`` multiply-accumulates per cycle (FPGA DSP slices pack two INT8
    MACs; an FP16 MAC takes several DSPs); an on-chip SRAM of ``sram_bytes`` that holds operand
    tiles; device memory (HBM or DDR) with its bandwidth and technology. ``dataflow`` picks how a
    GEMM C[m,n] = A[m,k] B[k,n] maps onto the array (see the backend): weight stationary (a k x n
    weight tile held in the PEs, activation rows streamed through) or output stationary (an m x n
    output tile accumulated in place, k streamed).
Ignores: routing / timing closure (the clock is an input), partial reconfiguration, the host's
    share of the PCIe link, on-chip network contention between arrays.
Sources: Kung, "Why systolic architectures?" (IEEE Computer 1982); Chen, Emer, Sze, "Eyeriss"
    (ISCA 2016) for the dataflow taxonomy; the presets cite the device numbers.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from hw_models.energy import EnergyConfig, MemoryType
from simulator.config.quantities import (
    Bytes,
    Hz,
    PositiveBytes,
    PositiveBytesPerS,
    Seconds,
    StrictConfig,
    UsdPerHour,
    Watts,
)
from simulator.core.registry import register_hardware

ACCEL_DTYPES = ("fp32", "fp16", "bf16", "fp8", "int8", "int4")


class AcceleratorConfig(StrictConfig):
    name: str
    architecture: str = Field(description="fpga or asic, and the family, e.g. 'fpga-ultrascale+'")
    pe_rows: int = Field(gt=0, description="PE array rows (the K side under weight stationary)")
    pe_cols: int = Field(gt=0, description="PE array columns (the N side)")
    arrays: int = Field(default=1, gt=0, description="independent PE arrays")
    clock_hz: Hz
    macs_per_pe_per_cycle: dict[str, float] = Field(
        description="MACs per PE per cycle by dtype; a dtype missing here is not supported")
    dataflow: Literal["weight_stationary", "output_stationary"] = "weight_stationary"
    sram_bytes: PositiveBytes = Field(description="on-chip buffer for operand tiles (BRAM/URAM or SRAM)")
    memory_bytes: PositiveBytes
    memory_bw_bytes_per_s: PositiveBytesPerS
    memory_type: MemoryType
    memory_efficiency: float = Field(default=0.8, gt=0, le=1, description="share of memory bandwidth streams reach")
    launch_overhead_s: Seconds = Field(default="2us", description="per-op instruction dispatch from the host / "
                                                                   "the on-chip controller")
    vector_ops_per_cycle: float = Field(default=256.0, gt=0, description="special-function / elementwise lanes")
    tdp_w: Watts
    idle_w: Watts | None = None
    power_cap_w: Watts | None = None
    energy: EnergyConfig | None = None
    price: UsdPerHour | None = None
    extra_memory_bytes: Bytes = Field(default="0B")

    timing_kind: ClassVar[str] = "accelerator"
    default_interconnect: ClassVar[None] = None

    @model_validator(mode="after")
    def _check(self) -> AcceleratorConfig:
        bad = sorted(set(self.macs_per_pe_per_cycle) - set(ACCEL_DTYPES))
        if bad:
            raise ValueError(f"macs_per_pe_per_cycle has unknown dtype(s) {bad}; known: {list(ACCEL_DTYPES)}")
        if self.power_cap_w is not None and self.power_cap_w > self.tdp_w:
            raise ValueError(f"power_cap_w {self.power_cap_w:g} W is above tdp_w {self.tdp_w:g} W")
        return self

    @property
    def pes(self) -> int:
        return self.pe_rows * self.pe_cols * self.arrays

    @property
    def tensor_flops_per_s(self) -> dict[str, float]:
        return {d: 2.0 * m * self.pes * self.clock_hz for d, m in self.macs_per_pe_per_cycle.items() if m}

    @property
    def vector_flops_per_s(self) -> float:
        return self.vector_ops_per_cycle * self.clock_hz

    def tensor_peak(self, dtype: str) -> float:
        from hw_models.peaks import peak_or_refuse

        return peak_or_refuse(self.name, self.tensor_flops_per_s, dtype, "PE datapath")


@register_hardware("accelerator", config=AcceleratorConfig, presets="presets/accelerator")
class Accelerator:
    """A PE-array accelerator built from its config."""

    def __init__(self, config: AcceleratorConfig) -> None:
        self.config = config
