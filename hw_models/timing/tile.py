"""Tile timing backend: for each op, the kernel a real library would launch, cycle-approximately.

Models: GEMMs as CUTLASS/cuBLAS-style CTA tiles with waves, occupancy, split-K, L2 reuse and a
    library tile heuristic (``hw_models.gemm_tiles``; Hopper-class GPUs run wgmma kernels with their
    own per-dtype efficiency and costs); prefill attention as FlashAttention-2 (fa2, mma.sync) or
    FlashAttention-3-class (fa3, wgmma, softmax overlapped) kernels and decode attention as paged /
    split-KV / stream-K kernels, each with the framework op's preparation cost
    (``hw_models.attention_kernels``);
    memory-bound kernels (embedding gather, norms, rotary, activation, residual add) as their
    bytes x the library kernel's traffic multiplier over the achievable HBM bandwidth, with a
    fixed in-GPU kernel cost and a latency-bound floor when too few bytes are in flight to cover
    the HBM latency (Little's law); all-reduce as NCCL ring/tree with protocol choice (NVLS on
    an NVSwitch Hopper node) or, with ``allreduce``, as a serving framework's own one-/two-shot
    NVLink kernels with NCCL above its size limit (``hw_models.collectives``). Each kernel also
    pays the host launch overhead unless ``cuda_graphs`` is set. Quantized ops run on the tensor
    path of their dtype (int8/fp8/int4 peaks from the GPU preset) with packed weights/K/V and
    CUDA-core dequantization (the two kernel modules above).
Ignores: kernel fusion beyond the op list, overlap of consecutive kernels, clock throttling
    (absorbed in the fitted efficiencies), ECC.
Sources: see the three modules above; constants fitted on the Vidur A100 tables and on the aic
    H200 / A100 kernel tables are marked "fitted" below with the command that produced them
    (FIDELITY.md gives the figures).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from hw_models import attention_kernels as attn
from hw_models import collectives as co
from hw_models.block_scaling import promotion_s
from hw_models.collectives import ArLimits, Fabric, NcclParams
from hw_models.gemm_grouped import plan_grouped, plan_grouped_config
from hw_models.gemm_tiles import GemmParams, GemmPlan, plan_gemm
from hw_models.moe_configs import FAMILY_SETS, has_h200_files, triton_config
from hw_models.moe_contiguous import contiguous
from hw_models.scaled_mm import plan_scaled_mm
from hw_models.timing.base import TimingBackend
from hw_models.timing.tile_config import TileConfig
from hw_models.timing.tile_fits import (  # noqa: F401  (re-exported: the fitting commands read them here)
    DECODE_KERNEL,
    FIT_A2A,
    FIT_ATTN,
    FIT_GEMM,
    FIT_MEM_FIXED,
    FIT_MEM_FLOOR,
    FIT_MEM_MULT,
    FIT_MOE,
    FIT_MOE_MARLIN,
    FIT_MOE_MXFP4,
    FIT_ROW_IN_FLIGHT,
    FIT_WGMMA,
)
from simulator.core.registry import register_timing


def ar_limits(config: TileConfig) -> ArLimits | None:
    """The framework's all-reduce limits with the config's overrides (None for plain NCCL)."""
    if config.allreduce == "nccl":
        return None
    lim = co.AR_LIMITS[config.allreduce_limits or co.FRAMEWORK_DEFAULT[config.allreduce]]
    if config.allreduce_max_bytes is not None:
        lim = dataclasses.replace(lim, max_bytes=dict(config.allreduce_max_bytes), hopper_max_bytes=None,
                                  pre_hopper_max_bytes=None)
    if config.allreduce_oneshot_max_bytes is not None:
        lim = dataclasses.replace(lim, oneshot_bytes=dict(config.allreduce_oneshot_max_bytes))
    return lim


def mem_class(name: str) -> str:
    if name.startswith("embed"):
        return "embed"
    if name.endswith("norm"):
        return "norm"
    if name == "rope":
        return "rope"
    if name.endswith("act"):
        return "act"
    if name.startswith("residual") or name == "add":
        return "add"
    if name.endswith("_quant"):
        return "quant"
    return "other"


@register_timing("tile", config=TileConfig)
class TileBackend(TimingBackend):
    name = "tile"

    def __init__(self, config: TileConfig, device: Any, link: Any = None) -> None:
        super().__init__(config, device, link)
        self._launch = 0.0 if config.cuda_graphs else device.launch_overhead_s
        self._bw = device.memory_bw_bytes_per_s * config.hbm_efficiency
        self._hopper_class = device.architecture in ("hopper", "blackwell")
        self._hopper = self._hopper_class and config.use_wgmma
        self._scaled_mm = self._hopper and config.fp8_gemm_kernel == "cutlass_sm90"
        fam = config.attention_kernel
        self._attn_family = fam if fam != "auto" else "fa3" if self._hopper else "fa2"
        dk = config.decode_kernel
        self._decode_kernel = dk if dk != "auto" else DECODE_KERNEL[self._attn_family]
        self._params: dict[str, GemmParams] = {}
        self._attn: dict[str, attn.AttnParams] = {}
        self._nccl = NcclParams(config.nccl_reduce_eff, config.nccl_copy_eff, reduce_call_s=config.nccl_call_s,
                                reduce_floor_s=config.nccl_floor_s)
        self._fabric = None
        if link is not None:
            nvls = device.architecture in co.NVLS_ARCHS and link.config.technology == "nvswitch"
            self._fabric = Fabric.of(link.config, nvls)
        self._ar_limits = ar_limits(config)

    # -- GEMM --------------------------------------------------------------------------------
    def gemm_params(self, dtype: str, legacy: bool = False) -> GemmParams:
        """Kernel constants for ``dtype``; ``legacy``: mma.sync kernels even on Hopper (MARLIN-style
        mixed-input GEMMs do not use wgmma)."""
        p = self._params.get((dtype, legacy))
        if p is None:
            d, c = self.device, self.config
            hopper = self._hopper and not legacy
            mma = c.wgmma_efficiency.get(dtype, c.mma_efficiency) if hopper else \
                c.mma_efficiency * d.mma_sync_peak_fraction
            l2_bw = c.l2_bytes_per_clk_sm * d.sm_count * d.clock_hz  # fitted on A100 mma.sync kernels
            clusters = hopper and c.use_clusters and d.sms_per_gpc is not None
            if clusters:
                l2_bw = d.l2_bw_bytes_per_s or l2_bw
            p = self._params[(dtype, legacy)] = GemmParams(
                sms=d.sm_count, clock_hz=d.clock_hz, flop_per_clk_sm=d.tensor_peak(dtype) / (d.sm_count * d.clock_hz),
                hbm_bw=self._bw, hbm_latency_s=d.hbm_latency_cycles / d.clock_hz, l2_bytes=d.l2_bytes,
                smem_per_sm=d.smem_per_sm_bytes, regs_per_sm=d.registers_per_sm_bytes, mma_eff=mma,
                cta_overhead_cycles=c.wgmma_cta_overhead_cycles if hopper else c.cta_overhead_cycles,
                kernel_fixed_s=c.wgmma_kernel_fixed_s if self._hopper_class else c.kernel_fixed_s, hopper=hopper,
                frag_cost=c.frag_cost, vec_per_clk_sm=d.vector_flops_per_s / (2.0 * d.sm_count * d.clock_hz),
                l2_bw=0.0 if hopper and not clusters else l2_bw,
                sms_per_gpc=tuple(d.sms_per_gpc) if clusters else None, dsmem_split_k=c.dsmem_split_k)
        return p

    def _scaled_mm_params(self) -> GemmParams:
        """fp8 wgmma constants with the cutlass_sm90 kernels' own efficiency, per-wave cost, HBM share and loaded
        HBM latency (when set)."""
        p = self._params.get("scaled_mm")
        if p is None:
            c, p = self.config, self.gemm_params("fp8")
            if c.scaled_mm_efficiency is not None:
                p = dataclasses.replace(p, mma_eff=c.scaled_mm_efficiency)
            if c.scaled_mm_cta_overhead_cycles is not None:
                p = dataclasses.replace(p, cta_overhead_cycles=c.scaled_mm_cta_overhead_cycles)
            self._params["scaled_mm"] = p = self._scaled_mm_hbm(p)
        return p

    def _scaled_mm_hbm(self, p: GemmParams) -> GemmParams:
        """``p`` with the per-tensor fp8 GEMM's own HBM share and loaded HBM latency (when set)."""
        c = self.config
        if c.scaled_mm_hbm_efficiency is not None:
            p = dataclasses.replace(p, hbm_bw=self.device.memory_bw_bytes_per_s * c.scaled_mm_hbm_efficiency)
        if c.scaled_mm_hbm_latency_s is not None:
            p = dataclasses.replace(p, hbm_latency_s=c.scaled_mm_hbm_latency_s)
        return p

    def _fp8_auto_params(self) -> GemmParams:
        """fp8 constants of a per-tensor fp8 GEMM under the auto family (cuBLASLt's heuristic: TensorRT-LLM's
        cublas_scaled_mm) with the scaled_mm HBM share and loaded latency when set (unset: gemm_params fp8)."""
        p = self._params.get("fp8_auto")
        if p is None:
            p = self._params["fp8_auto"] = self._scaled_mm_hbm(self.gemm_params("fp8"))
        return p

    def gemm_plan(self, m: int, n: int, k: int, dtype: str = "bf16", dtype_bytes: float = 2.0) -> GemmPlan:
        return plan_gemm(m, n, k, dtype_bytes, self.gemm_params(dtype))

    # -- memory-bound ------------------------------------------------------------------------
    def mem_kernel_s(self, nbytes: float, cls: str = "other", rows: int = 0) -> float:
        """``rows`` > 0: a kernel with one CTA per row (per-token quantization), whose bandwidth is
        capped by the rows' bytes in flight over the HBM latency (Little's law)."""
        d, c = self.device, self.config
        moved = nbytes * c.mem_traffic_multiplier.get(cls, 1.0)
        in_flight = d.sm_count * c.bytes_in_flight_per_sm
        latency = d.hbm_latency_cycles / d.clock_hz
        latency_floor = math.ceil(moved / in_flight) * latency
        bw = min(self._bw, rows * c.row_bytes_in_flight / latency) if rows else self._bw
        per_row = -(-rows // d.sm_count) * c.row_cost_s.get(cls, 0.0) if rows else 0.0
        return max(c.mem_kernel_floor_s.get(cls, 0.0), c.mem_kernel_fixed_s + max(moved / bw, latency_floor) + per_row)

    def _moe_family_name(self, op: Any = None) -> str:
        c = self.config  # block-scaled fp8 experts: moe_kernel_fp8_block when the profile names one
        return c.moe_kernel_fp8_block if c.moe_kernel_fp8_block and getattr(op, "scale_block_k", 0) else c.moe_kernel

    def _moe_family(self, op: Any = None) -> dict[str, float]:
        c, name = self.config, self._moe_family_name(op)
        fam = c.moe_kernels.get(name)
        if fam is None:
            raise ValueError(f"unknown moe_kernel {name!r}; known: {', '.join(sorted(c.moe_kernels))}")
        return fam

    def _contiguous(self, op: Any, fam: dict[str, float]) -> tuple[Any, float]:
        """``op`` in the family's contiguous layout and the padding rows' activation seconds
        (``hw_models.moe_contiguous``)."""
        return contiguous(op, int(fam["contiguous_align"]), self._bw, int(fam.get("chunk_tokens", 0)))

    def _triton_config(self, op: Any) -> tuple | None:
        """The Triton fused_moe configuration of a Triton family's grouped GEMM (16-bit or fp8 experts, tokens and
        experts known), else None (the fastest tile); the file's N: the down GEMM's K, half the up GEMM's N (gated)."""
        c = self.config
        family_set = FAMILY_SETS.get(self._moe_family_name(op))  # the family that runs it (not DeepGEMM's)
        if family_set is None or op.deq_ops or op.w_dtype == "mxfp4" or not op.q_tokens or not op.experts:
            return None
        width = op.k if op.name == "moe_down" else max(1, op.n // 2)
        dtype = "fp8_w8a8" if op.dtype == "fp8" else "bf16"
        return triton_config(c.moe_config_set or family_set, op.q_tokens, op.experts, width, dtype,
                             getattr(op, "scale_block_k", 0), op.name == "moe_down", has_h200_files(self.device.name))

    def _pair_cache_bytes(self, op: Any, fam: dict[str, float]) -> float:
        """HBM bytes a fused-MoE kernel family with ``pair_cache`` moves for the (token, expert) pairs
        routed to other GPUs' experts: the Triton fused_moe keeps an intermediate row per pair of the
        whole batch (vLLM / SGLang ``intermediate_cache1..3`` of shape [tokens, top_k, n]); its grouped
        GEMMs write zero rows for the pairs whose expert is elsewhere (``write_zeros_to_output``), the
        activation runs over every row of the up output and the top-k sum reads every row of the down
        output. Charged to the grouped GEMM of each half: up = zero rows + the activation's read and
        write of them; down = zero rows + the sum's read of them."""
        other = max(0, op.pairs - op.m) * fam.get("pair_cache", 0.0)
        if not other:
            return 0.0
        b = op.out_bytes or op.dtype_bytes
        if op.name == "moe_up":  # the activation reads the n = 2 x width row and writes width (gated MLPs)
            return other * 2.5 * op.n * b
        return other * 2 * op.n * b

    def _row_pass_s(self, op: Any, fam: dict[str, float], sfx: str = "") -> float:
        """Time of the family's memory traffic over the GPU's routed [pairs x hidden] rows that the op list
        does not hold, charged once per layer with the up grouped GEMM and not overlapped with the GEMMs:
        ``row_passes`` reads or writes of those rows in 16-bit activations at the family's HBM share (the
        kernels' fixed costs are in the family's ``fixed_s``). Known from the code: CUTLASS MoE (TensorRT-LLM
        ``expandInputRowsKernel``, FlashInfer's copy of it) permutes first, reading each pair's input row
        and writing it in expert order (2 passes); Triton fused_moe gathers its input rows inside the GEMM
        (0). Both families' narrowest-expert rows take about 2 passes more than that (the op list counts
        the up GEMM's read, the down GEMM's write and the top-k sum's read of the rows); not identified in
        the code, so measured (``FIT_MOE``)."""
        passes = fam.get(f"row_passes{sfx}", fam.get("row_passes", 0.0))  # a kernel's own (Marlin's: 0)
        if not passes or op.name != "moe_up":
            return 0.0
        bw = self.device.memory_bw_bytes_per_s * fam.get("hbm_efficiency", self.config.hbm_efficiency)
        return passes * op.m * op.k * 2.0 / bw

    # -- the interface -----------------------------------------------------------------------
    def _op_s(self, op: Any) -> float:
        kind = op.kind
        if kind == "gemm":
            if min(op.m, op.n, op.k) < 0:
                from simulator.core.errors import ConfigError

                raise ConfigError(f"GEMM op {op.name!r}: negative shape m={op.m} n={op.n} k={op.k}")
            if not op.m or not op.n:  # an empty GEMM (e.g. a step without prefill rows) launches nothing
                t = 0.0
            elif self._scaled_mm and op.dtype == "fp8" and not op.deq_ops and not getattr(op, "scale_block_k", 0):
                t = plan_scaled_mm(op.m, op.n, op.k, self._scaled_mm_params(), op.out_bytes or 1.0).time_s
            elif op.w_bytes or op.out_bytes or op.deq_ops:
                p = self.gemm_params(op.dtype, op.deq_ops > 0)
                if op.dtype == "fp8" and not op.deq_ops and not getattr(op, "scale_block_k", 0):
                    p = self._fp8_auto_params()  # per-tensor fp8 under the auto family (cuBLASLt)
                plan = plan_gemm(op.m, op.n, op.k, op.dtype_bytes, p, op.w_bytes, op.out_bytes, op.deq_ops,
                                 op.deq_overlap)
                # block-scaled fp8: CUDA-core promotion of the partial sums (hw_models.block_scaling)
                t = plan.time_s + promotion_s(plan, op.k, getattr(op, "scale_block_k", 0), p)
            elif op.dtype == "fp8" and not getattr(op, "scale_block_k", 0):
                t = plan_gemm(op.m, op.n, op.k, op.dtype_bytes, self._fp8_auto_params()).time_s
            else:
                t = self.gemm_plan(op.m, op.n, op.k, op.dtype, op.dtype_bytes).time_s
        elif kind == "grouped_gemm":
            fam = self._moe_family(op)
            pad_s = 0.0
            if fam.get("contiguous_align"):
                op, pad_s = self._contiguous(op, fam)
            # per-tensor and block-scaled fp8 kernels: their own fit (else the 16-bit one)
            sfx = "_fp8_block" if getattr(op, "scale_block_k", 0) else "_fp8" if op.dtype == "fp8" else ""
            if op.w_dtype == "mxfp4" or op.deq_ops:  # weight-only experts: the family's MXFP4 or Marlin kernel
                sfx = "_mxfp4" if op.w_dtype == "mxfp4" else "_marlin"
            sfx = sfx if f"efficiency{sfx}" in fam else ""
            p = self.gemm_params(op.dtype, op.deq_ops > 0)
            if fam[f"efficiency{sfx}"] != 1.0:  # relative to a dense GEMM; never above the tensor peak
                p = dataclasses.replace(p, mma_eff=min(1.0, p.mma_eff * fam[f"efficiency{sfx}"]))
            if "hbm_efficiency" in fam:  # the family's own share of HBM bandwidth streaming expert weights
                hbm = fam.get(f"hbm_efficiency{sfx}", fam["hbm_efficiency"])  # (its mxfp4 kernel: its own)
                p = dataclasses.replace(p, hbm_bw=self.device.memory_bw_bytes_per_s * hbm)
            cfg = self._triton_config(op)
            if cfg is not None:  # the framework's own tile configuration and padding (hw_models.moe_configs)
                plan = plan_grouped_config(op.groups, op.n, op.k, op.dtype_bytes, p, cfg, op.w_bytes, op.out_bytes,
                                           self._pair_cache_bytes(op, fam))
            else:
                plan = plan_grouped(op.groups, op.n, op.k, op.dtype_bytes, p, op.w_bytes, op.out_bytes, op.deq_ops,
                                    op.deq_overlap, self._pair_cache_bytes(op, fam))
            t = plan.time_s + promotion_s(plan, op.k, getattr(op, "scale_block_k", 0), p)
            if op.name == "moe_up":  # the MoE call's own bookkeeping and permute kernels, once per layer
                t += fam.get(f"fixed_s{sfx}", fam["fixed_s"]) + self._row_pass_s(op, fam, sfx) + pad_s
        elif kind == "attn_prefill":
            t = attn.prefill_s(op, self._attn_params(op.dtype))
        elif kind == "attn_decode":
            return float(self.decode_attention_s(op, np.array([op.kv_tokens]))[0])
        elif kind == "elementwise":
            if op.name in ("moe_up_quant", "moe_down_quant") and not op.scale_block_k and \
                    self._moe_family().get("fused_quant"):
                return 0.0  # per-tensor fp8: the family's permute / activation kernels write the fp8 rows
            t = self.mem_kernel_s(op.bytes, mem_class(op.name), op.m)
        elif kind == "alltoall":
            if self.link is None or op.workers <= 1:
                return 0.0
            c = self.config
            if c.moe_a2a == "allgather_reducescatter" and op.n > 1 and self._fabric is not None:
                # every GPU gathers the n groups' m x k activations (the output of the all-gather), then
                # reduce-scatters the experts' outputs back (vLLM's AgRsAll2AllManager over the DP group)
                size = op.n * op.m * op.k * op.dtype_bytes
                fn = co.allgather_s if op.name == "moe_dispatch" else co.reduce_scatter_s
                return fn(size, op.n, self._fabric, self._nccl) * op.count
            mode = "ll" if op.m <= c.alltoall_ll_max_tokens else "ht"
            return self.link.alltoall_s(op.bytes, op.workers, c.alltoall_efficiency[mode],
                                        c.alltoall_latency_s[mode]) * op.count
        elif kind == "allreduce":
            if self._fabric is None or op.workers <= 1:
                return 0.0
            return co.custom_allreduce_s(op.bytes, op.workers, self._fabric, self.config.allreduce,
                                         self._ar_limits, nccl=self._nccl,
                                         architecture=self.device.architecture) * op.count
        else:
            raise ValueError(f"tile backend cannot time op kind {kind!r}")
        return (t + self._launch) * op.count

    def _attn_params(self, dtype: str) -> attn.AttnParams:
        hit = self._attn.get(dtype)
        if hit is None:
            hit = self._attn[dtype] = self._make_attn_params(dtype)
        return hit

    def _make_attn_params(self, dtype: str) -> attn.AttnParams:
        d, c = self.device, self.config
        g = self.gemm_params(dtype)
        fam = self._attn_family
        # fa3 is a wgmma kernel; fa2 runs mma.sync (a share of the peak on Hopper-class GPUs)
        eff = c.fa3_mma_efficiency if fam == "fa3" else \
            c.attention_mma_efficiency * d.mma_sync_peak_fraction
        return attn.AttnParams(sms=d.sm_count, clock_hz=d.clock_hz, flop_per_clk_sm=g.flop_per_clk_sm, mma_eff=eff,
                               sfu_per_clk_sm=d.sfu_ops_per_clk_per_sm, hbm_bw=self._bw,
                               hbm_latency_s=g.hbm_latency_s, smem_per_sm=d.smem_per_sm_bytes,
                               l2_bytes=d.l2_bytes, in_flight_per_sm=c.bytes_in_flight_per_sm,
                               kernel_fixed_s=c.kernel_fixed_s, overlap_softmax=fam == "fa3",
                               softmax_overlap=c.attention_softmax_overlap.get(fam, 1.0),
                               persistent=c.attention_persistent.get(fam, False),
                               vec_per_clk_sm=g.vec_per_clk_sm, cta_cycles=c.attention_cta_cycles.get(fam, 0.0),
                               prefill_fixed_s=c.attention_prefill_fixed_s.get(fam, 0.0),
                               decode_fixed_s=c.attention_decode_fixed_s.get(fam, 0.0),
                               decode_cta_cycles=c.attention_decode_cta_cycles.get(fam, 0.0),
                               decode_max_group=c.decode_max_group,
                               latent_hbm_bw=d.memory_bw_bytes_per_s * attn.FLASHMLA_HBM_FRACTION
                               if self._hopper_class else 0.0,
                               decode_hbm_bw=d.memory_bw_bytes_per_s * c.attention_decode_hbm_efficiency[fam]
                               if fam in c.attention_decode_hbm_efficiency else 0.0,
                               decode_cta_in_flight=attn.FA3_CTA_IN_FLIGHT
                               if fam == "fa3" and fam in c.attention_decode_hbm_efficiency else 0.0)

    def decode_attention_s(self, op: Any, kv_tokens: np.ndarray) -> np.ndarray:
        t = attn.decode_s(op, np.asarray(kv_tokens, dtype=np.float64), self._attn_params(op.dtype),
                          self._decode_kernel)
        return (t + self._launch) * op.count
