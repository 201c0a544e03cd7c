"""CPU hardware kind and its timing model for numpy/BLAS kernels.

Models: a multi-core CPU as SIMD FMA throughput (cores x FMA pipes x SIMD lanes x clock) and a
    cache hierarchy (per-core L1d and L2, shared L3, DRAM) with a bandwidth per level.
    GEMM (BLAS, cache-blocked, Goto): packing A and B into panels (each operand read and written
    once at the bandwidth of the level the operands live in) + FLOPs / (peak x gemm_efficiency x
    shape factor x threads) + fork/join when threaded + one BLAS call overhead. The shape factor
    is Hockney's half-performance length per dimension, d / (d + gemm_half_dim): edge micro-tiles
    and loop overheads cost more for small dims. m or n == 1 is a memory-bound gemv sweep.
    BLAS uses one thread below ``gemm_thread_min_work`` = m*n*k (OpenBLAS's rule), all cores above.
    Streaming and elementwise kernels (single-threaded numpy calls, the exact sequences the
    capture runs, as passes over named arrays): each call costs its overhead (ufunc, np.copyto,
    + Python scalar / reduction set-up) plus max(memory time, elements x cycles per element /
    clock). Memory time counts, per array a pass touches, 1 transfer per read and per write, plus
    write_allocate_fraction for an array written without being read (read for ownership) beyond
    L1; which level serves an array is a smooth step in its LRU reuse distance when the sequence
    is repeated (e.g. triad's second pass re-reads c at distance 2 arrays, not 3): level i holds a
    share 1 / (1 + (D / (C_i x cache_usable_fraction))^cache_edge_sharpness).
    numpy matmul on stacked matrices calls BLAS once per matrix (gemm_s's batch).
    Attention (QK^T, softmax, PV) is two batched GEMMs and a softmax.
Ignores: turbo/thermal clock changes, SMT, NUMA, TLB misses, prefetcher detail, cache
    associativity (power-of-two leading dimensions), non-temporal stores, a GEMV's own kernel
    efficiency (it is modelled as one sweep of the matrix), BLAS
    kernel choice per shape beyond the half-performance length, other tenants of a shared VM.
Sources: per-preset datasheet/optimisation-guide numbers cited in ``presets/cpu/*.yaml``;
    Hockney & Jesshope, "Parallel Computers 2" (1988) for n_1/2; Goto & van de Geijn, "Anatomy
    of high-performance matrix multiplication" (TOMS 2008) for cache blocking; OpenBLAS
    interface/gemm.c (GEMM_MULTITHREAD_THRESHOLD x SMP_THRESHOLD_MIN = 4 x 65536) for the
    threading rule. The efficiencies, overheads and per-element cycle counts are free
    parameters fitted by ``hwsim calibrate fit``.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from hw_models.energy import EnergyConfig, MemoryType
from simulator.config.quantities import (
    FlopsPerS,
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
# bits per element of the dtypes a CPU may compute when serving
SERVING_BITS = {"fp64": 64, "fp32": 32, "fp16": 16, "bf16": 16, "int8": 8, "fp8": 8}
LEVELS = ("l1", "l2", "l3", "dram")

# The numpy call sequences the capture runs (simulator/calibration/capture.py), as passes over
# equal-sized arrays named by letters: (arrays read, arrays written, kind). An array both read and
# written is updated in place. kind None = array ufunc, "scalar" = ufunc with a Python scalar
# operand, "exp" = np.exp, "reduce" = a sum/max along the last axis (its output, one value per
# row, is not an array here), "copy" = np.copyto (a memmove, not a ufunc).
Pass = tuple[str, str, str | None]
STREAM_PASSES: dict[str, list[Pass]] = {
    "copy": [("a", "c", "copy")],  # np.copyto(c, a)
    "scale": [("a", "c", "scalar")],  # np.multiply(a, s, out=c)
    "add": [("ab", "c", None)],  # np.add(a, b, out=c)
    "triad": [("b", "c", "scalar"), ("ca", "c", None)],  # np.multiply(b, s, out=c); np.add(c, a, out=c)
}
SOFTMAX_PASSES: list[Pass] = [("x", "", "reduce"), ("x", "y", None), ("y", "y", "exp"), ("y", "", "reduce"),
                              ("y", "y", None)]
LAYERNORM_PASSES: list[Pass] = [("x", "", "reduce"), ("x", "y", None), ("y", "t", None), ("t", "", "reduce"),
                                ("y", "y", None), ("y", "y", None), ("y", "y", None)]
LAYERNORM_ROW_CALLS = 4  # mu *= 1/cols; var *= 1/cols; var += eps; sqrt(var): one value per row


def reuse_distances(passes: list[Pass]) -> list[dict[str, float]]:
    """Per pass, per array touched: the reuse distance, in arrays, of its elements when the pass
    sequence is called over and over (the steady state a repeated timing measures).

    The distance of an element is the number of distinct bytes touched since the previous access
    to it (LRU stack distance), counted in array sizes: every array touched by a pass strictly
    between the previous access and this one counts whole; an array touched in both the previous
    pass and this one counts whole (the rest of it after the element, then the part before it);
    an array touched in only one of the two counts half on average over the elements.
    """
    touched = [set(r) | set(w) for r, w, _ in passes]
    n = len(passes)
    out = []
    for p in range(n):
        dist = {}
        for x in touched[p]:
            q = next((p - d) % n for d in range(1, n + 1) if x in touched[(p - d) % n])
            between = set().union(*(touched[(q + d) % n] for d in range(1, (p - q) % n or n)))
            arrays = touched[q] | touched[p] | between
            dist[x] = sum(1.0 if (y in between or (y in touched[q] and y in touched[p])) else 0.5 for y in arrays)
        out.append(dist)
    return out


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
    copy_overhead_s: Seconds = Field(default="0.3us", description="np.copyto dispatch cost per call (not a ufunc)")
    scalar_overhead_s: Seconds = Field(default="0.3us", description="extra cost of a Python scalar operand")
    reduce_overhead_s: Seconds = Field(default="0.6us", description="extra dispatch cost of a reduction")
    blas_call_overhead_s: Seconds = Field(default="1us", description="numpy matmul + BLAS entry cost per call")
    bw_efficiency: BandwidthEfficiency = Field(default_factory=BandwidthEfficiency)
    cache_usable_fraction: float = Field(default=0.75, gt=0, le=1,
                                         description="share of each cache a streaming working set can use")
    cache_edge_sharpness: float = Field(default=4.0, gt=0, description="steepness of the fit/no-fit step")
    write_allocate_fraction: float = Field(default=1.0, ge=0, le=1, description=(
        "share of lines written without being read that are first read for ownership beyond L1 "
        "(1: every store miss allocates; less when the core detects full-line streaming stores)"))
    exp_cycles_per_element: float = Field(default=1.0, gt=0, description="numpy exp cost per float32 element")
    reduce_cycles_per_element: float = Field(default=0.5, gt=0, description="numpy sum/max cost per float32 element")
    tdp_w: Watts | None = None
    price: UsdPerHour | None = None
    # -- serving: a CPU as an LLM serving device (timing: hw_models/timing/cpu.py) ----------------
    simd_dtypes: list[str] = Field(default_factory=lambda: ["fp32", "fp64"], description=(
        "dtypes the SIMD units compute natively (dot-product / FMA instructions): fp64, fp32, fp16, bf16, int8; "
        "peak = cores x fma_units x 2 x simd_bits / bits x freq_hz"))
    matrix_flops_per_s: dict[str, FlopsPerS] = Field(default_factory=dict, description=(
        "matrix-extension peak per dtype over all cores (Intel AMX, Arm SME); used where above the SIMD peak"))
    lut_kernels: bool = Field(default=False, description=(
        "table-lookup GEMV for low-bit weights (T-MAC): byte shuffles replace multiplies, cost ~ weight bits"))
    shuffle_units: int = Field(default=1, gt=0, description="SIMD byte-shuffle (pshufb / tbl) issues per cycle")
    idle_w: Watts | None = Field(default=None, description="package power at idle (default 10% of tdp_w)")
    power_cap_w: Watts | None = Field(default=None, description="package power limit (RAPL PL1); at most tdp_w")
    memory_type: MemoryType = Field(default="ddr5", description="DRAM technology (energy per byte)")
    energy: EnergyConfig | None = Field(default=None, description="energy coefficient overrides (hw_models.energy)")

    @model_validator(mode="after")
    def _check_serving(self) -> CpuConfig:
        bad = sorted((set(self.simd_dtypes) | set(self.matrix_flops_per_s)) - set(SERVING_BITS))
        if bad:
            raise ValueError(f"unknown dtype(s) {bad}; known: {list(SERVING_BITS)}")
        if self.power_cap_w is not None and self.tdp_w is None:
            raise ValueError("power_cap_w needs the CPU's tdp_w (the board power the cap is below)")
        if self.power_cap_w is not None and self.power_cap_w > self.tdp_w:
            raise ValueError(f"power_cap_w {self.power_cap_w:g} W is above tdp_w {self.tdp_w:g} W")
        return self

    # the serving interface a timing backend, the memory plan and the metrics read (as of a GpuConfig)
    @property
    def tensor_flops_per_s(self) -> dict[str, float]:
        """Peak FLOP/s per dtype over all cores: the SIMD peak, or the matrix extension's if higher."""
        out = {d: 2.0 * self.fma_units * (self.simd_bits / SERVING_BITS[d]) * self.freq_hz * self.cores
               for d in self.simd_dtypes}
        for d, p in self.matrix_flops_per_s.items():
            out[d] = max(out.get(d, 0.0), p)
        return out

    def tensor_peak(self, dtype: str) -> float:
        """Peak FLOP/s of ``dtype`` over all cores; a clear error naming the CPU if it lacks it."""
        from hw_models.peaks import peak_or_refuse

        return peak_or_refuse(self.name, self.tensor_flops_per_s, dtype)

    @property
    def architecture(self) -> str:
        return self.microarchitecture

    @property
    def memory_bw_bytes_per_s(self) -> float:
        return self.dram_bw_bytes_per_s

    @property
    def vector_flops_per_s(self) -> float:
        return 2.0 * self.fma_units * (self.simd_bits / 32) * self.freq_hz * self.cores

    @property
    def launch_overhead_s(self) -> float:
        """Per-op cost of a serving engine's thread barrier: the fitted BLAS fork/join."""
        return self.gemm_fork_join_s

    @property
    def extra_memory_bytes(self) -> float:
        return 0.0

    default_interconnect: ClassVar[None] = None
    timing_kind: ClassVar[str] = "cpu"  # the backend that times it where a GPU backend (tile, detailed) is asked for

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
        shares = self.level_shares(working_set_bytes, threads)
        return 1.0 / sum(s / b for s, b in zip(shares, self.level_bandwidths(threads)))

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

    def level_shares(self, distance_bytes: float, threads: int = 1) -> tuple[float, float, float, float]:
        """Share of accesses with reuse distance ``distance_bytes`` served by L1, L2, L3, DRAM.

        Level i holds a share 1 / (1 + (D / (C_i x cache_usable_fraction))^cache_edge_sharpness).
        """
        c = self.config
        u = c.cache_usable_fraction
        caps = (c.l1d_bytes * threads * u, c.l2_bytes * threads * u, c.l3_bytes * u)
        w = max(float(distance_bytes), 1.0)
        fits = [1.0 / (1.0 + (w / cap) ** c.cache_edge_sharpness) for cap in caps]
        return fits[0], max(fits[1] - fits[0], 0.0), max(fits[2] - fits[1], 0.0), max(1.0 - fits[2], 0.0)

    def level_bandwidths(self, threads: int = 1) -> tuple[float, float, float, float]:
        c = self.config
        eff = c.bw_efficiency
        dram = min(c.dram_bw_per_core_bytes_per_s * threads, c.dram_bw_bytes_per_s)
        return (c.l1_bw_bytes_per_s * threads * eff.l1, c.l2_bw_bytes_per_s * threads * eff.l2,
                c.l3_bw_bytes_per_s * threads * eff.l3, dram * eff.dram)

    def passes_s(self, passes: list[Pass], elements: int, dtype: str) -> float:
        """A sequence of single-threaded numpy calls, each sweeping ``elements`` values per array,
        repeated back to back (as the capture times them).

        Memory time of a pass: for each array it touches, its bytes x the transfers per byte at
        the level that serves it / that level's bandwidth, the level following the array's reuse
        distance (:func:`reuse_distances`). Transfers per byte: 1 per read and 1 per write; an
        array written without being read costs ``write_allocate_fraction`` more beyond L1
        (write-allocate: the line is read for ownership before it is written back). Compute
        time: cycles per element for exp and reductions (per float32 value; a float64 value costs
        twice as many, with half the SIMD lanes). A pass costs its call overhead + max(memory,
        compute).
        """
        c = self.config
        b = dtype_bytes(dtype)
        size = elements * b
        bws = self.level_bandwidths(1)
        lanes = 4.0 / b  # the per-element cycles are per float32 value; float64 has half the SIMD lanes
        cycles = {"exp": c.exp_cycles_per_element / lanes, "reduce": c.reduce_cycles_per_element / lanes}
        extra = {"scalar": c.scalar_overhead_s, "reduce": c.reduce_overhead_s}
        total = 0.0
        for (reads, writes, work), dist in zip(passes, reuse_distances(passes)):
            t_mem = 0.0
            for x, d in dist.items():
                r, w = int(x in reads), int(x in writes)
                shares = self.level_shares(d * size, 1)
                rfo = c.write_allocate_fraction if (w and not r) else 0.0
                t_mem += size * sum(s * (r + w + (rfo if i > 0 else 0)) / bw
                                    for i, (s, bw) in enumerate(zip(shares, bws)))
            t_compute = elements * cycles.get(work, 0.0) / c.freq_hz
            base = c.copy_overhead_s if work == "copy" else c.call_overhead_s
            total += base + extra.get(work, 0.0) + max(t_mem, t_compute)
        return total

    def stream_s(self, kernel: str, elements: int, dtype: str) -> float:
        """STREAM kernel (copy, scale, add, triad) over arrays of ``elements`` values."""
        if kernel not in STREAM_PASSES:
            raise ConfigError(f"unknown stream kernel {kernel!r}; known: {', '.join(STREAM_PASSES)}", where="op")
        return self.passes_s(STREAM_PASSES[kernel], elements, dtype)

    def softmax_s(self, rows: int, cols: int, dtype: str) -> float:
        """Row softmax: max, subtract, exp, sum, divide (five numpy calls, in place)."""
        return self.passes_s(SOFTMAX_PASSES, rows * cols, dtype)

    def layernorm_s(self, rows: int, cols: int, dtype: str) -> float:
        """Row layer norm: mean, centre, square, mean, (eps, sqrt per row), divide, scale, shift."""
        row_calls = LAYERNORM_ROW_CALLS * self.config.call_overhead_s
        return self.passes_s(LAYERNORM_PASSES, rows * cols, dtype) + row_calls

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
