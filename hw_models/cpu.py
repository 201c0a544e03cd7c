"""CPU hardware kind and its timing model for numpy/BLAS kernels.

Models: a multi-core CPU as SIMD FMA throughput (cores x FMA pipes x SIMD lanes x clock) and a
    cache hierarchy (per-core L1d and L2, shared L3, DRAM) with a bandwidth per level.
    GEMM (BLAS, cache-blocked, Goto): packing A and B into panels (each operand read and written
    once at the bandwidth of the level the operands live in) + FLOPs / (peak x gemm_efficiency x
    shape factor x threads) + fork/join when threaded + one BLAS call overhead. The shape factor
    is Hockney's half-performance length per dimension, d / (d + gemm_half_dim): edge micro-tiles
    and loop overheads cost more for small dims. m or n == 1 is a memory-bound gemv sweep.
    BLAS uses one thread below ``gemm_thread_min_work`` = m*n*k (OpenBLAS's rule), all cores above.
    Streaming and elementwise kernels (single-threaded numpy ufuncs): each call costs the call
    overhead plus max(bytes read+written / bandwidth, elements x cycles per element / clock).
    numpy matmul on stacked matrices calls BLAS once per matrix (gemm_s's batch).
    Which level serves the bytes is a smooth step in the working set: level i holds a share
    1 / (1 + (W / (C_i x cache_usable_fraction))^cache_edge_sharpness) of it.
    Attention (QK^T, softmax, PV) is two batched GEMMs and a softmax.
Ignores: turbo/thermal clock changes, SMT, NUMA, TLB misses, prefetcher detail, write-allocate
    traffic (absorbed by the fitted per-level bandwidth efficiencies), non-temporal stores, BLAS
    kernel choice per shape beyond the half-performance length, other tenants of a shared VM.
Sources: per-preset datasheet/optimisation-guide numbers cited in ``presets/cpu/*.yaml``;
    Hockney & Jesshope, "Parallel Computers 2" (1988) for n_1/2; Goto & van de Geijn, "Anatomy
    of high-performance matrix multiplication" (TOMS 2008) for cache blocking; OpenBLAS
    interface/gemm.c (GEMM_MULTITHREAD_THRESHOLD x SMP_THRESHOLD_MIN = 4 x 65536) for the
    threading rule. The efficiencies, overheads and per-element cycle counts are free
    parameters fitted by ``hwsim calibrate fit``.
"""

from __future__ import annotations

from pydantic import Field

from simulator.config.quantities import (
    Hz,
    PositiveBytes,
    PositiveBytesPerS,
    Seconds,
    StrictConfig,
    UsdPerHour,
    Watts,
)
from simulator.core.errors import ConfigError
from simulator.core.registry import register_hardware

DTYPE_BYTES = {"float32": 4, "fp32": 4, "float64": 8, "fp64": 8}
LEVELS = ("l1", "l2", "l3", "dram")

# The numpy call sequences the capture runs (simulator/calibration/capture.py), as passes:
# (arrays read, arrays written, kind): kind None = array ufunc, "scalar" = ufunc with a Python
# scalar operand, "exp" = np.exp, "reduce" = a sum/max along the last axis.
STREAM_PASSES = {
    "copy": [(1, 1, None)],  # np.copyto(c, a)
    "scale": [(1, 1, "scalar")],  # np.multiply(a, s, out=c)
    "add": [(2, 1, None)],  # np.add(a, b, out=c)
    "triad": [(1, 1, "scalar"), (2, 1, None)],  # np.multiply(b, s, out=c); np.add(c, a, out=c)
}
STREAM_ARRAYS = {"copy": 2, "scale": 2, "add": 3, "triad": 3}
SOFTMAX_PASSES = [(1, 0, "reduce"), (1, 1, None), (1, 1, "exp"), (1, 0, "reduce"), (1, 1, None)]
LAYERNORM_PASSES = [(1, 0, "reduce"), (1, 1, None), (1, 1, None), (1, 0, "reduce"),
                    (1, 1, None), (1, 1, None), (1, 1, None)]
LAYERNORM_ROW_CALLS = 4  # mu *= 1/cols; var *= 1/cols; var += eps; sqrt(var): one value per row


class BandwidthEfficiency(StrictConfig):
    """Share of each level's bandwidth a single numpy call reaches (fitted)."""

    l1: float = Field(default=0.4, gt=0, le=1)
    l2: float = Field(default=0.5, gt=0, le=1)
    l3: float = Field(default=0.5, gt=0, le=1)
    dram: float = Field(default=0.7, gt=0, le=1)


class CpuConfig(StrictConfig):
    name: str = Field(description="marketing name, e.g. 'AMD EPYC 9654'")
    microarchitecture: str = Field(description="zen4, zen5, sapphire-rapids, ...")
    cores: int = Field(gt=0, description="physical cores available to the process")
    threads_per_core: int = Field(default=1, gt=0)
    freq_hz: Hz = Field(description="sustained all-core clock used for the peaks")
    simd_bits: int = Field(description="SIMD datapath width used by BLAS: 128, 256 or 512")
    fma_units: int = Field(gt=0, description="FMA pipes per core")
    l1d_bytes: PositiveBytes = Field(description="L1 data cache per core")
    l2_bytes: PositiveBytes = Field(description="L2 cache per core")
    l3_bytes: PositiveBytes = Field(description="L3 (last-level) cache, shared")
    l1_bw_bytes_per_s: PositiveBytesPerS = Field(description="L1 load+store bandwidth per core")
    l2_bw_bytes_per_s: PositiveBytesPerS = Field(description="L2<->L1 bandwidth per core (fill + write-back)")
    l3_bw_bytes_per_s: PositiveBytesPerS = Field(description="L3<->L2 bandwidth per core (fill + write-back)")
    dram_bw_bytes_per_s: PositiveBytesPerS = Field(description="DRAM peak bandwidth of the socket / VM")
    dram_bw_per_core_bytes_per_s: PositiveBytesPerS = Field(
        description="DRAM bandwidth one core can sustain (limited by its outstanding misses)")
    memory_bytes: PositiveBytes
    # -- free parameters, fitted by `hwsim calibrate fit` ------------------------------------
    gemm_efficiency: float = Field(default=0.7, gt=0, le=1, description="share of FMA peak BLAS reaches")
    gemm_half_dim: float = Field(default=24.0, gt=0, description="Hockney n_1/2 per GEMM dimension")
    gemm_thread_min_work: float = Field(default=262144.0, gt=0,
                                        description="m*n*k at or below which BLAS runs single-threaded")
    gemm_fork_join_s: Seconds = Field(default="5us", description="cost of waking and joining BLAS threads")
    call_overhead_s: Seconds = Field(default="0.5us", description="numpy ufunc dispatch cost per call")
    scalar_overhead_s: Seconds = Field(default="0.3us", description="extra cost of a Python scalar operand")
    reduce_overhead_s: Seconds = Field(default="0.6us", description="extra dispatch cost of a reduction")
    blas_call_overhead_s: Seconds = Field(default="1us", description="numpy matmul + BLAS entry cost per call")
    bw_efficiency: BandwidthEfficiency = Field(default_factory=BandwidthEfficiency)
    cache_usable_fraction: float = Field(default=0.75, gt=0, le=1,
                                         description="share of each cache a streaming working set can use")
    cache_edge_sharpness: float = Field(default=4.0, gt=0, description="steepness of the fit/no-fit step")
    exp_cycles_per_element: float = Field(default=1.0, gt=0, description="numpy exp cost per element")
    reduce_cycles_per_element: float = Field(default=0.5, gt=0, description="numpy sum/max cost per element")
    tdp_w: Watts | None = None
    price: UsdPerHour | None = None

    def simd_lanes(self, dtype: str) -> int:
        return self.simd_bits // (8 * dtype_bytes(dtype))

    def peak_flops_per_core(self, dtype: str) -> float:
        """FMA peak of one core for ``dtype`` (2 FLOP per FMA lane per pipe per cycle)."""
        return 2.0 * self.fma_units * self.simd_lanes(dtype) * self.freq_hz


def dtype_bytes(dtype: str) -> int:
    try:
        return DTYPE_BYTES[dtype]
    except KeyError:
        raise ConfigError(f"CPU model has no dtype {dtype!r}; known: {', '.join(DTYPE_BYTES)}",
                          where="dtype") from None


@register_hardware("cpu", config=CpuConfig, presets="presets/cpu")
class Cpu:
    """A CPU device; its methods give the time in seconds of the kernels the calibration runs."""

    def __init__(self, config: CpuConfig) -> None:
        self.config = config

    # -- memory hierarchy ---------------------------------------------------------------
    def bandwidth(self, working_set_bytes: float, threads: int = 1) -> float:
        """Effective bytes/s of a kernel sweeping ``working_set_bytes`` repeatedly on ``threads`` cores."""
        c = self.config
        eff = c.bw_efficiency
        u = c.cache_usable_fraction
        caps = (c.l1d_bytes * threads * u, c.l2_bytes * threads * u, c.l3_bytes * u)
        w = max(float(working_set_bytes), 1.0)
        fits = [1.0 / (1.0 + (w / cap) ** c.cache_edge_sharpness) for cap in caps]
        shares = (fits[0], max(fits[1] - fits[0], 0.0), max(fits[2] - fits[1], 0.0), max(1.0 - fits[2], 0.0))
        dram = min(c.dram_bw_per_core_bytes_per_s * threads, c.dram_bw_bytes_per_s)
        bws = (c.l1_bw_bytes_per_s * threads * eff.l1, c.l2_bw_bytes_per_s * threads * eff.l2,
               c.l3_bw_bytes_per_s * threads * eff.l3, dram * eff.dram)
        inv = sum(s / b for s, b in zip(shares, bws))
        return 1.0 / inv

    # -- kernels ------------------------------------------------------------------------
    def gemm_threads(self, m: int, n: int, k: int, threads: int = 0) -> int:
        """Threads BLAS uses: one for small work, else all it may use (``threads``, 0 = every core)."""
        avail = min(threads, self.config.cores) if threads > 0 else self.config.cores
        return 1 if avail == 1 or m * n * k <= self.config.gemm_thread_min_work else avail

    def gemm_core_s(self, m: int, n: int, k: int, dtype: str, threads: int = 0) -> float:
        """One BLAS GEMM C[m,n] = A[m,k] @ B[k,n], without the call overhead.

        m or n == 1 is a matrix-vector product (numpy calls gemv): one memory-bound sweep.
        Otherwise (Goto): packing A and B into cache-sized panels (read + write each operand once
        at the bandwidth of the level the operands live in), then the micro-kernel at the FMA peak
        x gemm_efficiency x d / (d + gemm_half_dim) per dimension, split over the BLAS threads.
        """
        c = self.config
        b = dtype_bytes(dtype)
        ws = b * (m * k + k * n + m * n)
        if m == 1 or n == 1:
            return ws / self.bandwidth(ws, 1)
        threads = self.gemm_threads(m, n, k, threads)
        h = c.gemm_half_dim
        shape = (m / (m + h)) * (n / (n + h)) * (k / (k + h))
        t_compute = 2.0 * m * n * k / (c.peak_flops_per_core(dtype) * c.gemm_efficiency * shape * threads)
        t_pack = 2.0 * b * (m * k + k * n) / self.bandwidth(ws, threads)
        return t_compute + t_pack + (c.gemm_fork_join_s if threads > 1 else 0.0)

    def gemm_s(self, m: int, n: int, k: int, dtype: str, batch: int = 1, threads: int = 0) -> float:
        """``batch`` independent GEMMs from one numpy matmul call on at most ``threads`` BLAS threads."""
        return batch * (self.gemm_core_s(m, n, k, dtype, threads) + self.config.blas_call_overhead_s)

    def passes_s(self, passes: list[tuple[int, int, str | None]], elements: int, dtype: str,
                 working_set_bytes: float) -> float:
        """A sequence of single-threaded numpy calls, each sweeping ``elements`` values."""
        c = self.config
        b = dtype_bytes(dtype)
        bw = self.bandwidth(working_set_bytes, 1)
        cycles = {"exp": c.exp_cycles_per_element, "reduce": c.reduce_cycles_per_element}
        extra = {"scalar": c.scalar_overhead_s, "reduce": c.reduce_overhead_s}
        total = 0.0
        for reads, writes, work in passes:
            t_mem = (reads + writes) * elements * b / bw
            t_compute = elements * cycles.get(work, 0.0) / c.freq_hz
            total += c.call_overhead_s + extra.get(work, 0.0) + max(t_mem, t_compute)
        return total

    def stream_s(self, kernel: str, elements: int, dtype: str) -> float:
        """STREAM kernel (copy, scale, add, triad) over arrays of ``elements`` values."""
        if kernel not in STREAM_PASSES:
            raise ConfigError(f"unknown stream kernel {kernel!r}; known: {', '.join(STREAM_PASSES)}", where="op")
        ws = STREAM_ARRAYS[kernel] * elements * dtype_bytes(dtype)
        return self.passes_s(STREAM_PASSES[kernel], elements, dtype, ws)

    def softmax_s(self, rows: int, cols: int, dtype: str) -> float:
        """Row softmax: max, subtract, exp, sum, divide (five numpy calls, in place)."""
        ws = 2 * rows * cols * dtype_bytes(dtype)
        return self.passes_s(SOFTMAX_PASSES, rows * cols, dtype, ws)

    def layernorm_s(self, rows: int, cols: int, dtype: str) -> float:
        """Row layer norm: mean, centre, square, mean, (eps, sqrt per row), divide, scale, shift."""
        ws = 3 * rows * cols * dtype_bytes(dtype)
        row_calls = LAYERNORM_ROW_CALLS * self.config.call_overhead_s
        return self.passes_s(LAYERNORM_PASSES, rows * cols, dtype, ws) + row_calls

    def attention_s(self, heads: int, q_len: int, kv_len: int, head_dim: int, dtype: str, threads: int = 0) -> float:
        """softmax(Q K^T) V per head: batched GEMM, softmax over heads x q_len rows, batched GEMM."""
        return (self.gemm_s(q_len, kv_len, head_dim, dtype, batch=heads, threads=threads)
                + self.softmax_s(heads * q_len, kv_len, dtype)
                + self.gemm_s(q_len, head_dim, kv_len, dtype, batch=heads, threads=threads))

    def kernel_s(self, op: str, dtype: str, m: int = 0, n: int = 0, k: int = 0, batch: int = 1,
                 elements: int = 0, threads: int = 0) -> float:
        """Dispatch on the op name of a calibration record (see docs/calibration.md); ``threads``
        is the BLAS thread count the capture pinned (0 = every core)."""
        if op == "matmul":
            return self.gemm_s(m, n, k, dtype, batch=max(batch, 1), threads=threads)
        if op in STREAM_PASSES:
            return self.stream_s(op, elements, dtype)
        if op == "softmax":
            return self.softmax_s(m, n, dtype)
        if op == "layernorm":
            return self.layernorm_s(m, n, dtype)
        if op == "attention":
            return self.attention_s(batch, m, n, k, dtype, threads)
        raise ConfigError(f"CPU model cannot time op {op!r}", where="op")
