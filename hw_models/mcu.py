"""Microcontroller hardware kind: a Cortex-M core, on-chip SRAM, execute-in-place flash, optional DMA.

Models: the time of one CNN layer run by CMSIS-NN-style int8 kernels (TinyEngine uses the same
    inner loops), built from instruction counts rather than fitted:
    - MACs issue as SIMD dual 16-bit multiply-accumulates (``SMLAD``: ``int8_macs_per_cycle``
      = 2); fp32 MACs at the FPU's fused multiply-add rate.
    - Operand traffic: the 1x1 / im2col matrix kernel computes 2 output channels x 2 pixels per
      inner iteration, so each weight byte is loaded once per 2 pixels and each (int16-extended)
      activation once per 2 channels: 1/8 + 1/4 words per MAC, plus one ``SXTB16`` per two weight
      bytes. Depthwise has no channel reuse: 1/4 + 1/4 words and 1/2 extends per MAC. Loads cost
      ``load_cycles`` + SRAM wait states; a dual-issue core (Cortex-M7) overlaps loads with
      arithmetic (time = max of the two streams) instead of adding them.
    - im2col for kxk (k > 1) convolutions: every input byte of each output pixel's window is
      loaded, sign-extended and stored as int16 (1 load + 2 extends + 2 stores per 4 bytes).
    - Requantisation of every output element (``requant_cycles``) and a fixed per-call overhead.
    - Sub-byte weights/activations cost ``unpack_cycles`` per packed value (they are unpacked to
      int16 for SMLAD: they save memory and BitOPs, not cycles).
    - Weights stream from flash (execute-in-place). Weight bytes demanded = weight reads that miss
      the data cache (a layer whose weights fit in the cache reads them once). With prefetch or
      DMA the stream overlaps compute (layer time = max); without, each flash line read stalls
      the core for ``wait_states`` cycles.
    - Energy: active power (run-mode current x supply voltage, datasheet) per cycle; the derived
      energy per MAC is reported, not assumed.
Ignores: cache conflict misses on activations, interrupt/RTOS activity, bus contention between
    SRAM banks (``banks`` is recorded, not used), clock-tree/peripheral power, DMA set-up cost,
    sleep states between inferences, the Cortex-M55/Helium vector extension.
Sources: ARM Cortex-M4/M7/M33 Technical Reference Manuals (instruction timings), ARMv7-M
    Architecture Reference Manual (SMLAD, SXTB16), CMSIS-NN (Lai et al., arXiv:1801.06601) kernel
    structure, vendor datasheets and reference manuals per preset in ``presets/mcu/*.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from simulator.config.quantities import Bytes, Hz, PositiveBytes, PositiveBytesPerS, StrictConfig
from simulator.core.registry import register_hardware


class CoreConfig(StrictConfig):
    arch: Literal["cortex-m4", "cortex-m7", "cortex-m33"]
    clock_hz: Hz
    int8_macs_per_cycle: float = Field(gt=0, description="SIMD MAC peak (SMLAD: 2 x 16-bit per cycle)")
    fp32_macs_per_cycle: float = Field(gt=0, description="single-precision FMA throughput")
    load_cycles: float = Field(gt=0, description="cycles per 32-bit load in an inner loop")
    store_cycles: float = Field(gt=0, description="cycles per 32-bit store")
    dual_issue: bool = Field(description="loads issue beside arithmetic (Cortex-M7)")
    requant_cycles: float = Field(default=10.0, ge=0, description="per output element")
    unpack_cycles: float = Field(default=1.0, ge=0, description="per sub-byte value unpacked to int16")
    call_overhead_cycles: float = Field(default=2000.0, ge=0, description="per kernel call")


class SramConfig(StrictConfig):
    size_bytes: PositiveBytes = Field(description="SRAM usable as the activation arena")
    reserved_bytes: Bytes = Field(default="0B", description="stack, runtime buffers: not for activations")
    banks: int = Field(default=1, ge=1)
    wait_states: int = Field(default=0, ge=0)


class FlashConfig(StrictConfig):
    size_bytes: PositiveBytes
    reserved_bytes: Bytes = Field(default="0B", description="code and runtime: not for weights")
    wait_states: int = Field(ge=0, description="at the preset's clock")
    read_width_bytes: int = Field(gt=0, description="bytes per flash read (a flash line)")
    prefetch: bool = Field(description="sequential prefetch overlaps flash reads with execution")
    data_cache_bytes: Bytes = Field(default="0B", description="L1 D-cache (or ART data lines) size")
    xip_read_bw_bytes_per_s: PositiveBytesPerS = Field(description="sustained execute-in-place read rate")


class DmaConfig(StrictConfig):
    bw_bytes_per_s: PositiveBytesPerS


class McuEnergyConfig(StrictConfig):
    run_current_a: float = Field(gt=0, description="run-mode current at clock_hz, amperes")
    supply_v: float = Field(gt=0, description="supply voltage, volts")
    idle_current_a: float = Field(default=0.0, ge=0, description="current with the core stopped (static share "
                                                                 "of the run current), amperes; 0: not given")

    @model_validator(mode="after")
    def _idle_below_run(self) -> McuEnergyConfig:
        if self.idle_current_a > self.run_current_a:  # else the dynamic energy would be negative
            raise ValueError(f"idle_current_a {self.idle_current_a:g} A is above run_current_a "
                             f"{self.run_current_a:g} A")
        return self


class McuConfig(StrictConfig):
    name: str
    core: CoreConfig
    sram: SramConfig
    flash: FlashConfig
    dma: DmaConfig | None = None
    energy: McuEnergyConfig

    @property
    def sram_budget_bytes(self) -> int:
        return int(self.sram.size_bytes - self.sram.reserved_bytes)

    @property
    def flash_budget_bytes(self) -> int:
        return int(self.flash.size_bytes - self.flash.reserved_bytes)

    @property
    def energy_per_cycle_j(self) -> float:
        return self.energy.run_current_a * self.energy.supply_v / self.core.clock_hz


@dataclass(frozen=True)
class McuOp:
    """What the timing model needs of one layer (built by the caller from its layer graph)."""

    op: str  # conv, dwconv, fc, add, maxpool, avgpool, gap
    macs: int  # multiply-accumulates actually computed (recompute included)
    other_ops: int  # adds / compares / pooling sums
    out_elems: int  # output elements computed
    weight_bytes: int  # packed weights + bias of the layer
    window: int  # kernel rows x cols (im2col window), 1 for pointwise / fc
    im2col_bytes: int  # input bytes copied by im2col (0 where no im2col)
    w_bits: int = 8
    a_bits: int = 8
    fp32: bool = False
    calls: int = 1  # kernel invocations (patches)


@dataclass(frozen=True)
class McuCost:
    cycles: float
    compute_cycles: float
    memory_cycles: float
    flash_cycles: float
    overhead_cycles: float
    energy_j: float


@register_hardware("mcu", config=McuConfig, presets="presets/mcu")
class Mcu:
    """A Cortex-M microcontroller: per-layer cycles and energy of CNN kernels (see module docstring)."""

    def __init__(self, config: McuConfig) -> None:
        self.config = config

    def layer_cost(self, op: McuOp) -> McuCost:
        core, flash = self.config.core, self.config.flash
        load = core.load_cycles + self.config.sram.wait_states
        overhead = core.call_overhead_cycles * op.calls + core.requant_cycles * op.out_elems
        if op.op in ("conv", "fc", "dwconv"):
            dw = op.op == "dwconv"
            if op.fp32:
                mac = op.macs / core.fp32_macs_per_cycle
                words = op.macs * (2.0 if dw else 1.5)  # activation + weight word per MAC, weights reused x2
                ext = 0.0
            else:
                mac = op.macs / core.int8_macs_per_cycle
                words = op.macs * (0.5 if dw else 0.375)
                ext = op.macs * (0.5 if dw else 0.25)
            unpack = 0.0
            if op.w_bits < 8:
                unpack += core.unpack_cycles * op.macs / (1 if dw else 2)
            if op.a_bits < 8:
                unpack += core.unpack_cycles * op.macs / (1 if dw else 2)
            im2col = op.im2col_bytes * (load + 2 + 2 * core.store_cycles) / 4 if op.window > 1 and not dw else 0.0
            alu, mem = mac + ext + unpack, words * load + im2col
            # weight bytes read from flash: once if they fit in the D-cache, else once per 2 pixels
            cache = flash.data_cache_bytes
            if dw or op.weight_bytes <= cache or op.op == "fc":
                flash_bytes = float(op.weight_bytes * op.calls)
            else:
                flash_bytes = op.macs / 2 * (op.w_bits / 8) * (4 if op.fp32 else 1)
        else:
            # element-wise / pooling: one load, one op and (amortised) one store per element
            alu = float(op.other_ops)
            mem = (op.other_ops + op.out_elems) * load / 4 + op.out_elems * core.store_cycles / 4
            flash_bytes = 0.0
        flash_stream = flash_bytes * core.clock_hz / flash.xip_read_bw_bytes_per_s
        core_cycles = max(alu, mem) if core.dual_issue else alu + mem
        if flash.prefetch or self.config.dma is not None:
            body = max(core_cycles, flash_stream)
            stall = body - core_cycles
        else:
            stall = flash_bytes / flash.read_width_bytes * flash.wait_states
            body = core_cycles + stall
        cycles = body + overhead
        return McuCost(cycles=cycles, compute_cycles=alu, memory_cycles=mem, flash_cycles=stall,
                       overhead_cycles=overhead, energy_j=cycles * self.config.energy_per_cycle_j)

    def cycles_to_s(self, cycles: float) -> float:
        return cycles / self.config.core.clock_hz
