"""GPU hardware kind: SMs, tensor cores per dtype, on-chip memories, HBM, power and price.

Models: a GPU as the numbers a timing backend needs — its architecture generation (one of
    ``ARCHITECTURES``), SM count and clock, dense tensor-core throughput per dtype (incl.
    Blackwell's block-scaled ``nvfp4``/``mxfp4``/``mxfp8``), CUDA-core FP32 throughput, register
    file / shared memory per SM, L2 size, HBM capacity and bandwidth, kernel launch overhead,
    board power and hourly price.
    Power: TDP, idle power, an optional power cap (clock throttling: hw_models.energy).
Ignores: ECC overheads, MIG partitioning, structured
    sparsity (peaks are dense), FP6 (runs at the FP8 rate on Blackwell; no dtype of its own).
Sources: vendor datasheets and whitepapers, cited per number in ``presets/gpu/*.yaml``.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, model_validator

from hw_models.energy import EnergyConfig
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

DTYPES = ("fp64", "tf32", "fp16", "bf16", "fp8", "int8", "int4", "mxfp8", "fp4", "nvfp4", "mxfp4")
# Stored bytes per element of each tensor-core dtype, block scales included: NVFP4 is e2m1 with one
# e4m3 scale per 16 elements (4 + 8/16 bits), MXFP4 / MXFP8 one e8m0 scale per 32 elements (OCP
# Microscaling Formats v1.0, 2023; NVIDIA Blackwell architecture technical brief, 2024).
DTYPE_BYTES = {"fp64": 8.0, "tf32": 4.0, "fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5,
               "mxfp8": 1.0 + 1 / 32, "fp4": 0.5, "nvfp4": 0.5 + 1 / 16, "mxfp4": 0.5 + 1 / 32}
# GPU generations the timing backends know; the ones a backend treats specially are named there.
Architecture = Literal["volta", "turing", "ampere", "ada", "hopper", "blackwell"]
ARCHITECTURES = get_args(Architecture)


class GpuConfig(StrictConfig):
    name: str = Field(description="marketing name, e.g. 'NVIDIA H100 SXM5 80GB'")
    architecture: Architecture = Field(description="GPU generation: " + ", ".join(ARCHITECTURES))
    sm_count: int = Field(gt=0)
    clock_hz: Hz = Field(description="boost clock used for the datasheet peaks")
    tensor_flops_per_s: dict[str, FlopsPerS] = Field(
        description="dense tensor-core peak per dtype; a dtype missing here is not supported")
    vector_flops_per_s: PositiveFlopsPerS = Field(description="FP32 CUDA-core peak (non-tensor)")
    memory_bytes: PositiveBytes = Field(description="HBM/GDDR capacity")
    memory_bw_bytes_per_s: PositiveBytesPerS = Field(description="HBM/GDDR peak bandwidth")
    l2_bytes: PositiveBytes
    smem_per_sm_bytes: PositiveBytes = Field(description="max shared memory per SM (configurable L1/SMEM)")
    registers_per_sm_bytes: PositiveBytes
    l2_bw_bytes_per_s: PositiveBytesPerS | None = Field(default=None, description="L2 bandwidth if known")
    launch_overhead_s: Seconds = Field(default="4us", description="host-side kernel launch cost")
    hbm_latency_cycles: float = Field(default=480.0, gt=0, description="load latency of an HBM access, SM cycles")
    l2_latency_cycles: float = Field(default=260.0, gt=0, description="load latency of an L2 hit, SM cycles")
    smem_latency_cycles: float = Field(default=30.0, gt=0, description="shared-memory load latency, SM cycles")
    mma_sync_peak_fraction: float = Field(default=1.0, gt=0, le=1,
                                          description="share of the tensor peak legacy mma.sync can reach "
                                                      "(Hopper: the peak needs wgmma)")
    sfu_ops_per_clk_per_sm: float = Field(default=16.0, gt=0, description="exp2/rcp throughput per SM per clock")
    sms_per_gpc: list[int] | None = Field(default=None,
                                          description="SMs in each GPC, summing to sm_count; a thread-block cluster "
                                                      "runs inside one GPC (sm90+; unset: no clusters)")
    tdp_w: Watts
    idle_w: Watts | None = None
    power_cap_w: Watts | None = Field(default=None, description="board power limit (DVFS: a step demanding more "
                                                                  "runs at a lower clock); at most tdp_w")
    energy: EnergyConfig | None = Field(default=None, description="energy coefficient overrides (hw_models.energy)")
    price: UsdPerHour | None = Field(default=None, description="typical cloud on-demand price")
    default_interconnect: str | None = Field(default=None,
                                             description="link preset used for tensor parallelism")
    pcie: str | None = Field(default=None, description="host link preset, e.g. PCIe5")
    extra_memory_bytes: Bytes = Field(default="0B", description="memory not usable by the engine")

    @model_validator(mode="after")
    def _check_dtypes(self) -> GpuConfig:
        unknown = sorted(set(self.tensor_flops_per_s) - set(DTYPES))
        if unknown:
            raise ValueError(f"tensor_flops_per_s has unknown dtype(s) {unknown}; known: {list(DTYPES)}")
        if not self.tensor_flops_per_s:
            raise ValueError("tensor_flops_per_s must name at least one dtype")
        if self.power_cap_w is not None and self.power_cap_w > self.tdp_w:
            raise ValueError(f"power_cap_w {self.power_cap_w:g} W is above tdp_w {self.tdp_w:g} W")
        if self.sms_per_gpc is not None and (min(self.sms_per_gpc, default=0) <= 0
                                             or sum(self.sms_per_gpc) != self.sm_count):
            raise ValueError(f"sms_per_gpc {self.sms_per_gpc} must be positive and sum to sm_count {self.sm_count}")
        return self

    def tensor_peak(self, dtype: str) -> float:
        """Dense tensor-core FLOP/s for ``dtype``; a clear error if the GPU lacks it."""
        from hw_models.peaks import peak_or_refuse

        return peak_or_refuse(self.name, self.tensor_flops_per_s, dtype, "tensor-core path")


@register_hardware("gpu", config=GpuConfig, presets="presets/gpu")
class Gpu:
    """A GPU device built from its config (the timing backends read the config directly)."""

    def __init__(self, config: GpuConfig) -> None:
        self.config = config
