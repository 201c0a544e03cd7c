"""GEMM kernel model: the CTA tile a cuBLAS/CUTLASS-style library would launch, and its time.

Models: C[m,n] = A[m,k] @ B[k,n] run as a grid of CTA tiles BM x BN (64x64 up to 256x128, the
    CUTLASS/cuBLAS Ampere/Hopper tensor-op tiles) with split-K when the (m, n) grid cannot fill the
    GPU. Per candidate: occupancy from shared memory (stages x (BM+BN) x BK operand tiles), registers
    (fp32 accumulators + a fixed per-thread overhead) and threads; waves = ceil(CTAs / (SMs x CTAs
    per SM)); the busiest SM runs ceil(CTAs / SMs) tiles back to back, each K-loop iteration costing
    max(tensor-core cycles at the SM's share of the dtype peak x mma efficiency, shared-memory
    fragment reads at 128 B/clk). Operand traffic: HBM bytes = A x (re-reads when A does not stay
    in L2) + B once + C (+ split-K partials), over the achievable HBM bandwidth; a CTA's own
    bandwidth is capped by its bytes in flight over the HBM latency (Little's law), which is what
    makes a too-small grid slow: no CTA ends before it has streamed its own operand tiles (the
    activation rows it shares included) and the HBM bytes take at least their share over every
    resident CTA (``latency_bound_s``; so no GEMM gets faster as it grows); every CTA also streams
    its (BM + BN) x K operand tiles out of L2, bounded by the L2 -> SM rate (mma.sync kernels;
    small tiles move more bytes per FLOP).
    Time = max(compute, memory) + per-wave prologue/epilogue cycles +
    a fixed in-GPU kernel cost (+ a second reduction kernel for split-K). Mixed-input GEMMs (int4
    weights x fp16/int8 activations) read B at its packed width (scales included) and spend
    ``deq_ops`` CUDA-core instructions per B element per K step to widen it, pipelined under the
    MMAs (Marlin) or serialised with them (older AWQ kernels). The library heuristic
    picks the candidate with the smallest modelled time (as cuBLAS's heuristics rank kernels by a
    performance model), never the measured answer.
    Hopper (sm90, wgmma + TMA) thread-block clusters, when the GPU preset gives its SMs per GPC:
    a cluster of c CTAs is co-resident on one GPC, so a wave holds sum over GPCs of
    floor(SMs x CTAs per SM / c) clusters (cudaOccupancyMaxActiveClusters) and SMs on a GPC's
    remainder idle; the grid is padded to whole clusters. TMA multicast in a (cm x cn) cluster
    loads each A tile once per cn CTAs and each B tile once per cm CTAs (TMA loads in-bounds rows
    only), which shortens the L2 -> SM term; Hopper has that bound only with clusters on (the
    preset's L2 bandwidth, else the per-SM-clock rate fitted on A100 mma.sync kernels). DSMEM
    split-K: the splits of a tile form one cluster (<= 8 CTAs) and reduce their fp32 partials over
    the SM-to-SM network (bytes at the DSMEM rate + one latency per wave) instead of HBM partials
    and a second kernel. Candidates: 1x1 with HBM split-K as before, multicast 2x1 / 1x2 / 2x2
    at split 1, DSMEM split-K 2 / 4 / 8 when ``dsmem_split_k`` (the tile backend's default is off:
    libraries do not ship it and the H200 aic GEMMs fit better without it; the plan reports the
    cluster shape).
Ignores: stream-K's fractional tiles (modelled as split-K with an in-kernel fixup), CTA
    rasterisation/swizzle beyond the A re-read rule, bank conflicts, clock throttling under power
    limits (absorbed in the fitted mma efficiency), tensor-core pipeline latency within a K step;
    for clusters: multicast with split-K, clusters larger than 4 CTAs for multicast, the cluster
    launch cost, DSMEM contention between clusters, and the per-chip GPC split (floorsweeping
    differs per die; the presets hold one estimate). The wgmma efficiency per dtype, per-wave and
    fixed costs are fitted on the H200 aic GEMM tables (FIDELITY.md); the cluster choices
    themselves are not checked one by one (the tables give times, not the kernels picked).
Sources: MARLIN kernel configurations (Frantar et al., PPoPP 2025; marlin_cuda_kernel.cu:
    thread_m_blocks 1-4, 128x128 / 64x256 thread tiles, 4 stages); CUTLASS default GEMM
    configurations (cutlass/gemm/device/default_gemm_configuration.h,
    sm80 tensor-op 128x256x64 .. 64x64x64; sm90 128x256x64 warp-specialised); NVIDIA "Matrix
    Multiplication Background User's Guide" (wave and tile quantisation); Osama et al., "Stream-K"
    (PPoPP 2023); CUDA C++ Programming Guide tables (CTA / thread limits per SM); shared-memory
    bandwidth 32 banks x 4 B per clock (CUDA Programming Guide, "Shared Memory"); thread-block
    clusters, GPC co-residency and the portable cluster size 8 (CUDA C++ Programming Guide,
    "Thread Block Clusters"; NVIDIA H100 Tensor Core GPU Architecture whitepaper, 2022: GPCs, TPCs,
    TMA multicast, DSMEM); GPC counts per preset (whitepaper; per-GPC split an estimate); DSMEM
    rate and latency: estimates of the order Luo et al., "Benchmarking and Dissecting the Nvidia
    Hopper GPU Architecture" (IPDPS 2024) report for the H800, not checked against its tables.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

# (BM, BN, BK, stages, warps): Ampere (sm80) tensor-op tiles of CUTLASS/cuBLAS for 16-bit inputs.
TILES_SM80 = (
    (256, 128, 32, 3, 8), (128, 256, 32, 3, 8), (128, 128, 32, 4, 4), (128, 128, 64, 3, 8),
    (128, 64, 32, 6, 4), (64, 128, 32, 6, 4), (64, 64, 64, 5, 4), (64, 64, 32, 6, 4),
)
# Hopper (sm90) warp-specialised wgmma tiles (TMA loads; one producer + consumer warp groups).
TILES_SM90 = (
    (128, 256, 64, 4, 12), (256, 128, 64, 4, 12), (128, 128, 64, 5, 8), (128, 64, 64, 7, 8),
    (64, 128, 64, 7, 8), (64, 64, 64, 8, 8),
)
# Mixed-input (weight-only quantized) tiles, MARLIN-style: 16..64-row m-blocks (thread_m_blocks 1-4
# of mma m16n8k16), thread tiles 128x128 or 64x256 along (K, N), 256 threads, 4 pipeline stages.
TILES_MIXED = (
    (16, 256, 64, 4, 8), (32, 256, 64, 4, 8), (64, 256, 64, 4, 8),
    (16, 128, 128, 4, 8), (32, 128, 128, 4, 8), (64, 128, 128, 4, 8),
) + TILES_SM80
SMEM_BYTES_PER_CLK = 128  # 32 banks x 4 B per clock per SM (CUDA C++ Programming Guide, Shared Memory)
MAX_THREADS_PER_SM = 2048  # compute capability 8.0 / 9.0 (CUDA C++ Programming Guide, Table 21)
MAX_CTAS_PER_SM = 32  # compute capability 8.0 / 9.0 (CUDA C++ Programming Guide, Table 21)
# registers beyond the accumulators (addresses, fragments): estimate from cuobjdump of CUTLASS sm80 kernels
REG_OVERHEAD_PER_THREAD = 40
SPLITS = (1, 2, 3, 4, 6, 8, 12, 16)
# Hopper thread-block clusters (sm90): (CTAs along M, CTAs along N) sharing operand tiles by TMA
# multicast, and the split-K counts whose splits form one cluster and reduce through DSMEM (<= 8,
# the portable cluster size of the CUDA C++ Programming Guide, "Thread Block Clusters").
CLUSTERS = ((2, 1), (1, 2), (2, 2))
DSMEM_SPLITS = (2, 4, 8)
# SM-to-SM (DSMEM) network, per SM: estimate of the order Luo et al. (IPDPS 2024) report for H800
# (about 3.3 TB/s over 132 SMs, i.e. ~13.7 B per SM clock at 1.83 GHz; not checked against the paper's
# table) and about 180 cycles of latency per remote access (estimate; between shared memory, 29, and
# L2, 263).
DSMEM_BYTES_PER_CLK_SM = 13.7
DSMEM_LATENCY_CYCLES = 180.0


@dataclass(frozen=True, slots=True)
class GemmParams:
    """Kernel-library constants (fitted once; see TileConfig) and GPU numbers (datasheet)."""

    sms: int
    clock_hz: float
    flop_per_clk_sm: float  # dense tensor FLOP per clock per SM for the dtype
    hbm_bw: float  # achievable HBM bytes/s (datasheet x library HBM efficiency)
    hbm_latency_s: float
    l2_bytes: float
    smem_per_sm: float
    regs_per_sm: float
    mma_eff: float  # share of the tensor peak a large-tile main loop sustains
    cta_overhead_cycles: float  # prologue (pipeline fill) + epilogue (C write) per tile in series
    kernel_fixed_s: float  # in-GPU cost of a kernel: grid launch, first loads, drain
    frag_cost: float = 0.0  # warp-tile fragment-load cost relative to MMA work (0: none; 64x64 warp tile = 1)
    hopper: bool = False
    vec_per_clk_sm: float = 64.0  # FP32 FMA instructions per clock per SM (CUDA cores; dequantization)
    l2_bw: float = 0.0  # achievable L2 -> SM bytes/s for operand tiles (0: not a bound)
    sms_per_gpc: tuple[int, ...] | None = None  # SMs per GPC (None: no thread-block clusters, 1x1 only)
    dsmem_bytes_per_clk_sm: float = DSMEM_BYTES_PER_CLK_SM
    dsmem_latency_cycles: float = DSMEM_LATENCY_CYCLES
    dsmem_split_k: bool = True  # DSMEM split-K candidates (False: clusters for TMA multicast only)


@dataclass(frozen=True, slots=True)
class GemmPlan:
    time_s: float
    tile: tuple[int, int, int]
    split_k: int
    ctas: int
    ctas_per_sm: int
    waves: int
    compute_s: float
    memory_s: float
    hbm_bytes: float
    cta_cycles: float = 0.0  # main-loop cycles of one CTA alone on an SM
    stages: int = 0
    cluster: tuple[int, int, int] = (1, 1, 1)  # CTAs per cluster along M, N, K (K > 1: DSMEM split-K)
    l2_bytes: float = 0.0  # operand bytes streamed L2 -> SM (after TMA multicast)

    @property
    def tile_name(self) -> str:
        bm, bn, bk = self.tile
        cm, cn, ck = self.cluster
        name = f"{bm}x{bn}x{bk}" + (f" split-K {self.split_k}" if self.split_k > 1 else "")
        if ck > 1:
            return name + f" (DSMEM reduction, cluster 1x1x{ck})"
        return name + (f" cluster {cm}x{cn}" if cm * cn > 1 else "")

    @property
    def dsmem(self) -> bool:
        return self.cluster[2] > 1


@functools.lru_cache(maxsize=1024)
def resident_clusters(sms_per_gpc: tuple[int, ...], ctas_per_sm: int, size: int) -> int:
    """Clusters of ``size`` CTAs resident at once: a cluster is placed inside one GPC, so each GPC
    holds floor(its SMs x CTAs per SM / size) (the cudaOccupancyMaxActiveClusters count)."""
    return sum(g * ctas_per_sm // size for g in sms_per_gpc)


def cluster_slots(sms_per_gpc: tuple[int, ...], ctas_per_sm: int, size: int) -> int:
    """CTA slots of one wave of ``size``-CTA clusters (SMs on a GPC's remainder stay idle)."""
    return resident_clusters(sms_per_gpc, ctas_per_sm, size) * size


def occupancy(bm: int, bn: int, bk: int, stages: int, warps: int, elem_bytes: float, p: GemmParams,
              b_bytes: float | None = None) -> int:
    """Resident CTAs per SM: the tightest of shared memory, registers, threads and the CTA cap."""
    smem = stages * (bm * elem_bytes + bn * (elem_bytes if b_bytes is None else b_bytes)) * bk
    threads = 32 * warps
    acc_regs = bm * bn / threads if not p.hopper else bm * bn / (threads - 128)  # producer WG holds none
    regs = threads * 4 * min(255.0, acc_regs + REG_OVERHEAD_PER_THREAD)
    return max(0, min(int(p.smem_per_sm // smem), int(p.regs_per_sm // regs), MAX_THREADS_PER_SM // threads,
                      MAX_CTAS_PER_SM))


@functools.lru_cache(maxsize=4096)
def _tile_constants(tile: tuple, elem_bytes: float, wb: float, deq_ops: float, deq_overlap: bool,
                    p: GemmParams) -> tuple[int, float, float]:
    """What a candidate tile costs independent of the GEMM's shape: (resident CTAs per SM, cycles
    of one K step, operand bytes a CTA keeps in flight)."""
    bm, bn, bk, stages, warps = tile
    occ = occupancy(bm, bn, bk, stages, warps, elem_bytes, p, wb)
    # one K step: tensor-core cycles vs shared-memory fragment reads (warp grid wm x wn)
    wm = 2 if warps <= 4 else 4
    wn = max(1, warps // wm) if not p.hopper else 1
    wtm, wtn = bm / wm, bn / wn  # warp tile: fragment loads per MMA scale with 1/intensity
    frag = (1.0 + p.frag_cost / (wtm * wtn / (wtm + wtn))) / (1.0 + p.frag_cost / 32.0)
    mma_cyc = bm * bn * bk * 2.0 / (p.flop_per_clk_sm * p.mma_eff) * frag
    smem_cyc = 0.0 if p.hopper else bk * (elem_bytes * bm * wn + wb * bn * wm) / SMEM_BYTES_PER_CLK
    step = max(mma_cyc, smem_cyc)
    if deq_ops:  # widen the B tile on the CUDA cores
        deq_cyc = bn * bk * deq_ops / p.vec_per_clk_sm
        step = max(step, deq_cyc) if deq_overlap else step + deq_cyc
    # Little's law: a CTA keeps (stages-1) operand stages in flight over the memory latency
    in_flight = (stages - 1) * (bm * elem_bytes + bn * wb) * bk
    return occ, step, in_flight


def plan_tile(m: int, n: int, k: int, elem_bytes: float, p: GemmParams, tile: tuple, split: int,
              w_bytes: float = 0.0, out_bytes: float = 0.0, deq_ops: float = 0.0, deq_overlap: bool = True,
              cluster: tuple[int, int] = (1, 1), dsmem: bool = False) -> tuple | None:
    """(time, tile, split, ctas, ctas/SM, waves, compute s, memory s, HBM bytes, CTA cycles, stages,
    cluster (cm, cn, ck), L2 operand bytes) of one candidate, or None when it does not fit.
    ``w_bytes`` / ``out_bytes``: B and C bytes per element (0: ``elem_bytes``); ``cluster`` /
    ``dsmem``: as ``_best_split`` (clusters need ``p.sms_per_gpc``)."""
    wb = w_bytes or elem_bytes
    occ, step, in_flight = _tile_constants(tile, elem_bytes, wb, deq_ops, deq_overlap, p)
    if occ == 0:
        return None
    if min(m, n, k) <= 0:
        return _empty(m, n, k, out_bytes or elem_bytes, p, tile)
    args = (m, n, k, elem_bytes, wb, out_bytes or elem_bytes, p, tile, occ, step, in_flight)
    if cluster != (1, 1) or dsmem:
        return _cluster_candidate(*args, split, cluster, dsmem)
    return _best_split(*args, (split,), None, prune=False)


def _best_split(m: int, n: int, k: int, elem_bytes: float, wb: float, cb: float, p: GemmParams, tile: tuple,
                occ: int, step: float, in_flight: float, splits: tuple, best: tuple | None,
                prune: bool = True, pending: list | None = None) -> tuple | None:
    """The fastest 1x1 (no cluster) candidate of ``splits`` for one tile, or ``best`` when none beats
    it. ``prune``: split counts past the first that overfills the grid (> 4 CTAs per SM) or leaves
    < 4 K steps per CTA (of its ceil(K / split) slice, so a longer K never loses a candidate) are not
    candidates. ``pending``: with GPC data on Hopper, collects the cluster variants of each candidate
    whose lower bound is below ``best`` (``_cluster_variants``)."""
    bm, bn, bk, stages, _ = tile
    tm, tn = -(-m // bm), -(-n // bn)
    grid = tm * tn
    sms, clock = p.sms, p.clock_hz
    slots = sms * occ
    clusters = pending is not None and p.sms_per_gpc is not None and p.hopper
    # HBM traffic: B (weights) once, A once if it stays in L2 else once per sweep over N, C once
    a_bytes, b_bytes, c_bytes = m * k * elem_bytes, k * n * wb, m * n * cb
    in_l2 = a_bytes <= 0.5 * p.l2_bytes
    tile_bytes = bm * elem_bytes + bn * wb  # operand bytes of one K column of the tile
    cta_bytes = min(bm, m) * elem_bytes + min(bn, n) * wb  # what one (full) CTA loads per K column
    l2_tma = a_bytes * tn + b_bytes * tm if p.hopper else 0.0  # TMA loads in-bounds rows only
    cap = 4 * sms
    hbm_bw, lat, l2_bw, ovh, fixed = p.hbm_bw, p.hbm_latency_s, p.l2_bw, p.cta_overhead_cycles, p.kernel_fixed_s
    for split in splits:
        if prune and split > 1 and (grid * split > cap or -(-k // split) < 4 * bk):
            break
        k_split = -(-k // split)
        ctas = grid * split
        waves = -(-ctas // slots)
        per_sm = -(-ctas // sms)  # tiles the busiest SM runs (co-resident CTAs share its tensor cores)
        cta_cyc = -(-k_split // bk) * step
        compute_s = per_sm * cta_cyc / clock
        a_reads = 1 if in_l2 else max(1, min(tn, waves))
        partial = (split - 1) * m * n * 4.0 * 2 if split > 1 else 0.0  # fp32 partials written and read back
        hbm = a_bytes * a_reads + b_bytes + c_bytes + partial
        lat_s = latency_bound_s(cta_bytes * k_split, hbm, slots, in_flight, lat)
        memory_s = max(hbm / hbm_bw, lat_s)
        l2 = l2_tma or ctas * tile_bytes * k_split  # operand bytes every CTA streams out of L2
        if l2_bw:  # small tiles move more bytes per FLOP
            memory_s = max(memory_s, l2 / l2_bw)
        overhead_s = waves * ovh / clock + fixed * (2 if split > 1 else 1)
        t = max(compute_s, memory_s) + overhead_s
        if best is None or t < best[0]:
            best = (t, (bm, bn, bk), split, ctas, occ, waves, compute_s, memory_s, hbm, cta_cyc, stages, (1, 1, 1), l2)
        if clusters and (split == 1 or (split in DSMEM_SPLITS and p.dsmem_split_k)):
            l2_s = l2 / p.l2_bw if p.l2_bw else 0.0
            if split > 1:  # DSMEM: one kernel, its reduction, and never fewer waves or tiles per SM
                lat_d = latency_bound_s(cta_bytes * k_split, hbm - partial, slots, in_flight, lat)
                lower = max(compute_s, (hbm - partial) / hbm_bw, lat_d, l2_s) + overhead_s - p.kernel_fixed_s
                if lower < best[0]:
                    lower += _dsmem_s(p, tile, split, per_sm, waves)
                    if lower < best[0]:
                        pending.append((lower, tile, occ, step, in_flight, split, (1, 1), True))
            elif l2_s > max(compute_s, hbm / hbm_bw, lat_s):  # multicast only shortens the L2 term
                for cm, cn in CLUSTERS:
                    l2_c = (a_bytes * -(-tn // cn) + b_bytes * -(-tm // cm)) / p.l2_bw
                    lower = max(compute_s, hbm / hbm_bw, lat_s, l2_c) + overhead_s
                    if lower < best[0]:
                        pending.append((lower, tile, occ, step, in_flight, 1, (cm, cn), False))
    return best


def _cluster_variants(m: int, n: int, k: int, elem_bytes: float, wb: float, cb: float, p: GemmParams,
                      pending: list, best: tuple) -> tuple:
    """The cluster variants of the 1x1 candidates, most promising first: DSMEM split-K at each split
    count of ``DSMEM_SPLITS``, the multicast shapes (``CLUSTERS``) beside split 1 when its L2 term
    binds. A cluster variant never computes faster, moves fewer HBM bytes or runs fewer waves than
    its 1x1 counterpart, so its lower bound (those terms, its own L2 time or DSMEM reduction, one
    kernel) is known before it is costed; once a bound reaches ``best`` no later variant can win,
    and the pick is the one costing every candidate would make."""
    pending.sort(key=lambda v: v[0])
    for lower, tile, occ, step, in_flight, split, cluster, dsmem in pending:
        if lower >= best[0]:
            break
        c = _cluster_candidate(m, n, k, elem_bytes, wb, cb, p, tile, occ, step, in_flight, split, cluster, dsmem)
        if c is not None and c[0] < best[0]:
            best = c
    return best


def _cluster_candidate(m: int, n: int, k: int, elem_bytes: float, wb: float, cb: float, p: GemmParams,
                       tile: tuple, occ: int, step: float, in_flight: float, split: int,
                       cluster: tuple[int, int] = (1, 1), dsmem: bool = False) -> tuple | None:
    """One thread-block-cluster candidate (Hopper, ``p.sms_per_gpc`` set): (cm, cn) CTAs along M and
    N share operand tiles by TMA multicast; ``dsmem``: the ``split`` K-slices of a tile form one
    cluster and reduce their fp32 partials through DSMEM (no partials in HBM, no second kernel).
    As ``_best_split`` otherwise, with the grid padded to whole clusters and cluster occupancy
    (``cluster_slots``) in place of every SM x CTAs per SM; None when no cluster fits a GPC."""
    bm, bn, bk, stages, _ = tile
    cm, cn = cluster
    size = cm * cn * (split if dsmem else 1)
    slots = cluster_slots(p.sms_per_gpc, occ, size)
    if not slots:
        return None
    tm, tn = -(-m // bm), -(-n // bn)
    ctas = -(-tm // cm) * cm * -(-tn // cn) * cn * split
    clock = p.clock_hz
    k_split = -(-k // split)
    waves = -(-ctas // slots)
    per_sm = -(-ctas * occ // slots)  # slots / occ SMs hold the clusters; the rest of a GPC idles
    cta_cyc = -(-k_split // bk) * step
    compute_s = per_sm * cta_cyc / clock
    a_bytes, b_bytes = m * k * elem_bytes, k * n * wb
    a_reads = 1 if a_bytes <= 0.5 * p.l2_bytes else max(1, min(tn, waves))
    partial = (split - 1) * m * n * 4.0 * 2 if split > 1 and not dsmem else 0.0
    hbm = a_bytes * a_reads + b_bytes + m * n * cb + partial
    # Little's law over the CTAs that load (padding CTAs of a partial cluster load nothing); a multicast
    # tile still lands in every CTA's shared memory, so each CTA waits for its whole operand tiles
    cta_bytes = (min(bm, m) * elem_bytes + min(bn, n) * wb) * k_split
    lat_s = latency_bound_s(cta_bytes, hbm, slots, in_flight, p.hbm_latency_s)
    l2 = a_bytes * -(-tn // cn) + b_bytes * -(-tm // cm)  # each tile loaded once per cluster sharing it
    memory_s = max(hbm / p.hbm_bw, lat_s, l2 / p.l2_bw if p.l2_bw else 0.0)
    overhead_s = waves * p.cta_overhead_cycles / clock + p.kernel_fixed_s * (2 if split > 1 and not dsmem else 1)
    if dsmem:
        overhead_s += _dsmem_s(p, tile, split, per_sm, waves)
    t = max(compute_s, memory_s) + overhead_s
    return (t, (bm, bn, bk), split, ctas, occ, waves, compute_s, memory_s, hbm, cta_cyc, stages,
            (cm, cn, split if dsmem else 1), l2)


def _empty(m: int, n: int, k: int, cb: float, p: GemmParams, tile: tuple) -> tuple:
    """The plan of an empty GEMM: M = 0 or N = 0 has no output and launches nothing (zero time);
    K = 0 has an all-zero M x N output, written once at the HBM bandwidth by one kernel (as torch's
    matmul fills it with zeros). A negative dimension is a ValueError naming the shape."""
    if min(m, n, k) < 0:
        raise ValueError(f"GEMM {m}x{n}x{k}: a dimension is negative")
    c = m * n * cb
    t = c / p.hbm_bw + p.kernel_fixed_s if c else 0.0
    return (t, tuple(tile[:3]), 1, 0, 0, 0, 0.0, t - p.kernel_fixed_s if c else 0.0, c, 0.0, tile[3], (1, 1, 1),
            0.0)


def latency_bound_s(cta_bytes: float, hbm_bytes: float, slots: int, in_flight: float, latency_s: float) -> float:
    """Little's law: a CTA keeps ``in_flight`` operand bytes outstanding over the memory latency. No CTA
    finishes before it has streamed its own ``cta_bytes`` (both operand tiles over its K range, the
    activation rows it shares with other CTAs included: the CTAs of a wave walk K in step and ask for
    the same activation lines at about the same time, so each waits the HBM latency for its copy,
    though L2 fetches it from HBM once), and the grid's ``hbm_bytes`` (each byte once) take at least
    their share over all ``slots`` resident CTAs. Both terms grow with the GEMM, never shrink."""
    if cta_bytes <= 0:
        return 0.0
    return max(cta_bytes, hbm_bytes / slots) * latency_s / in_flight


def _dsmem_s(p: GemmParams, tile: tuple, split: int, per_sm: int, waves: int) -> float:
    """DSMEM reduction of split-K in one cluster: each CTA ships (split-1)/split of its fp32 C tile
    to its peers over the SM-to-SM network, then one hop of latency per wave."""
    return (per_sm * (split - 1) / split * tile[0] * tile[1] * 4.0 / p.dsmem_bytes_per_clk_sm
            + waves * p.dsmem_latency_cycles) / p.clock_hz


def _tile_lower_bound(m: int, n: int, k: int, elem_bytes: float, wb: float, p: GemmParams, tile: tuple,
                      step: float, share: int, hbm_s: float) -> float:
    """A time no split or cluster of ``tile`` beats (less rounding): the longer of the busiest SM's
    tiles when split-K is pruned (else perfectly balanced K steps), ``hbm_s`` (every operand from HBM
    once at full bandwidth) and the L2 term with operand tiles shared by ``share`` CTAs per side
    (the largest multicast of ``CLUSTERS``), plus one wave and one kernel."""
    bm, bn, bk = tile[0], tile[1], tile[2]
    tm, tn = -(-m // bm), -(-n // bn)
    grid = tm * tn
    if 2 * grid > 4 * p.sms or -(-k // 2) < 4 * bk:  # as _best_split's prune: split 1 only
        lower = max(-(-grid // p.sms) * -(-k // bk) * step / p.clock_hz, hbm_s)
    else:
        lower = max(grid * k * step / (bk * p.sms * p.clock_hz), hbm_s)
    if p.l2_bw:
        l2 = (m * k * elem_bytes * -(-tn // share) + k * n * wb * -(-tm // share) if p.hopper
              else grid * (bm * elem_bytes + bn * wb) * k)
        lower = max(lower, l2 / p.l2_bw)
    return (lower + p.cta_overhead_cycles / p.clock_hz + p.kernel_fixed_s) * (1.0 - 1e-9)


@functools.lru_cache(maxsize=256)
def _tile_table(tiles: tuple, elem_bytes: float, wb: float, deq_ops: float, deq_overlap: bool,
                p: GemmParams) -> tuple:
    """The candidates that fit on an SM, with their shape-independent constants."""
    out = []
    for tile in tiles:
        occ, step, in_flight = _tile_constants(tile, elem_bytes, wb, deq_ops, deq_overlap, p)
        if occ:
            out.append((tile, occ, step, in_flight))
    return tuple(out)


def plan_gemm(m: int, n: int, k: int, elem_bytes: float, p: GemmParams, w_bytes: float = 0.0,
              out_bytes: float = 0.0, deq_ops: float = 0.0, deq_overlap: bool = True) -> GemmPlan:
    """The candidate the library heuristic picks (smallest modelled time)."""
    tiles = TILES_MIXED if deq_ops else TILES_SM90 if p.hopper else TILES_SM80
    wb, cb = w_bytes or elem_bytes, out_bytes or elem_bytes
    if min(m, n, k) <= 0:
        return GemmPlan(*_empty(m, n, k, cb, p, tiles[0]))
    best: tuple | None = None
    pending: list | None = [] if p.sms_per_gpc and p.hopper else None  # cluster variants, costed last
    hbm_s = (m * k * elem_bytes + k * n * wb + m * n * cb) / p.hbm_bw
    share = 2 if pending is not None else 1
    for tile, occ, step, in_flight in _tile_table(tiles, elem_bytes, wb, deq_ops, deq_overlap, p):
        if best is not None and _tile_lower_bound(m, n, k, elem_bytes, wb, p, tile, step, share, hbm_s) > best[0]:
            continue  # no split or cluster of this tile can win: the pick is unchanged
        best = _best_split(m, n, k, elem_bytes, wb, cb, p, tile, occ, step, in_flight, SPLITS, best, pending=pending)
    if best is None:
        raise ValueError(f"no GEMM tile fits the GPU's shared memory / registers for {m}x{n}x{k}")
    if pending:
        best = _cluster_variants(m, n, k, elem_bytes, wb, cb, p, pending, best)
    return GemmPlan(*best)


@functools.lru_cache(maxsize=4096)
def gemm_roofline_s(m: int, n: int, k: int, elem_bytes: float, peak_flops: float, bw: float) -> float:
    """The bound no kernel beats: datasheet tensor peak and HBM bandwidth, every operand once."""
    return max(2.0 * m * n * k / peak_flops, elem_bytes * (m * k + k * n + m * n) / bw)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


__all__ = ["GemmParams", "GemmPlan", "plan_gemm", "plan_tile", "occupancy",
           "gemm_roofline_s",
           "ceil_div",
           "resident_clusters", "cluster_slots", "TILES_SM80", "TILES_SM90", "TILES_MIXED", "CLUSTERS",
           "DSMEM_SPLITS"]
