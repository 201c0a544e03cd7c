"""Roofline timing backend: the analytic bound, the baseline of every other backend.

Models: each kernel takes max(FLOPs / (tensor peak x compute_efficiency), bytes / (memory bandwidth
    x memory_efficiency)) plus the GPU's launch overhead; bytes count every operand once
    (weights, activations, K/V), the minimum any kernel must move. All-reduce uses the link's
    alpha-beta ring model. Attention with separate Q/K and V widths and MLA's latent K/V (read once
    per token for all heads) count those widths. Non-GEMM FLOPs (softmax, norms) are ignored. Quantized ops: the tensor
    peak of the op's dtype (int8, fp8, int4 MMAs), weights and K/V read at their quantized bytes,
    and CUDA-core dequantization (instructions / the FP32 FMA rate, weights dequantized once)
    overlapped with the MMAs or added to them.
Ignores: tiling and wave quantisation, caches, occupancy, kernel fusion beyond the op list.
Sources: Williams, Waterman, Patterson, "Roofline" (CACM 2009); datasheet peaks from the presets.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from hw_models.attention_kernels import head_dims
from hw_models.block_scaling import promotion_fmas
from hw_models.timing.base import TimingBackend
from simulator.config.quantities import StrictConfig
from simulator.core.registry import register_timing


class RooflineConfig(StrictConfig):
    compute_efficiency: float = Field(default=1.0, gt=0, le=1, description="share of tensor peak reached")
    memory_efficiency: float = Field(default=1.0, gt=0, le=1, description="share of HBM bandwidth reached")
    launch_overhead: bool = Field(default=True, description="add the GPU's launch cost per kernel "
                                                             "(false models CUDA graphs)")


@register_timing("roofline", config=RooflineConfig)
class RooflineBackend(TimingBackend):
    """The analytic roofline bound: max of compute time and memory time per op."""
    name = "roofline"

    def __init__(self, config: RooflineConfig, device: Any, link: Any = None) -> None:
        super().__init__(config, device, link)
        self._bw = device.memory_bw_bytes_per_s * config.memory_efficiency
        self._eff = config.compute_efficiency
        self._launch = device.launch_overhead_s if config.launch_overhead else 0.0
        self._vec = device.vector_flops_per_s / 2.0 * config.compute_efficiency  # FMA instructions per second
        self._peaks: dict[str, float] = {}  # dtype -> FLOP/s (a refusal is raised each time it is asked)
        self._decode_terms: dict[int, tuple] = {}  # id(op) -> (op, its decode-attention scalars)

    def peak(self, dtype: str) -> float:
        p = self._peaks.get(dtype)
        if p is None:
            p = self._peaks[dtype] = self.device.tensor_peak(dtype) * self._eff
        return p

    def _op_s(self, op: Any) -> float:
        kind = op.kind
        b = op.dtype_bytes
        if kind in ("gemm", "grouped_gemm"):
            flops = 2.0 * op.m * op.n * op.k
            if op.w_bytes or op.out_bytes or kind == "grouped_gemm":
                nbytes = op.bytes_moved() / op.count
            else:
                nbytes = b * (op.m * op.k + op.k * op.n + op.m * op.n)
            compute = flops / self.peak(op.dtype)
            if op.deq_ops:
                deq = op.dequant_ops() / self._vec
                compute = max(compute, deq) if op.deq_overlap else compute + deq
            if getattr(op, "scale_block_k", 0):  # block-scaled fp8: promotion FMAs, overlapped (the bound)
                compute = max(compute, promotion_fmas(op.m, op.n, op.k, op.scale_block_k) / self._vec)
            t = max(compute, nbytes / self._bw)
        elif kind == "attn_prefill":
            dk, dv, kvw = head_dims(op)  # separate Q/K and V widths; MLA: one latent per token
            flops = 2.0 * op.heads * (dk + dv) * op.pairs
            if op.kv_bytes:
                nbytes = op.bytes_moved() / op.count
                flops = max(flops / self.peak(op.dtype), op.dequant_ops() / self._vec) * self.peak(op.dtype)
            else:
                nbytes = b * (op.q_tokens * op.heads * (dk + dv) + op.kv_tokens * op.kv_heads * kvw)
            t = max(flops / self.peak(op.dtype), nbytes / self._bw)
        elif kind == "attn_decode":
            return float(self.decode_attention_s(op, np.array([op.kv_tokens]))[0])
        elif kind == "elementwise":
            t = op.bytes / self._bw
        elif kind == "allreduce":
            if self.link is None or op.workers <= 1:
                t = 0.0
            else:
                t = self.link.allreduce_s(op.bytes, op.workers)
            return t * op.count
        elif kind == "alltoall":
            return (self.link.alltoall_s(op.bytes, op.workers) if self.link is not None else 0.0) * op.count
        else:
            raise ValueError(f"roofline backend cannot time op kind {kind!r}")
        return (t + self._launch) * op.count

    def _decode_scalars(self, op: Any) -> tuple | None:
        """Decode attention's FLOPs per context token, peak, and bytes as b0 + b1 x context, when K/V
        are not quantized and the element bytes are whole (None otherwise). FLOPs and bytes are then
        integers below 2**53, so regrouping their factors is exact:
        b * (seqs*heads*(dk+dv) + kv*kvw*kv_heads) == b*seqs*heads*(dk+dv) + (b*kvw*kv_heads)*kv."""
        b = op.dtype_bytes
        if op.kv_bytes or not float(b).is_integer():
            return None
        dk, dv, kvw = head_dims(op)
        b = int(b)
        return (2.0 * op.heads * (dk + dv), self.peak(op.dtype), float(b * op.seqs * op.heads * (dk + dv)),
                float(b * kvw * op.kv_heads), self._launch, op.count)

    def decode_terms(self, op: Any) -> tuple | None:
        """``_decode_scalars(op)``, memoised per op: (FLOPs per context token, peak, b0, b1, launch, count)."""
        hit = self._decode_terms.get(id(op))
        if hit is None or hit[0] is not op:
            hit = self._decode_terms[id(op)] = (op, self._decode_scalars(op))
            if len(self._decode_terms) > 1 << 16:  # bounded: one entry per decode op (row count, timer)
                self._decode_terms.clear()
                self._decode_terms[id(op)] = hit
        return hit[1]

    def decode_attention_s(self, op: Any, kv_tokens: np.ndarray) -> np.ndarray:
        kv = np.asarray(kv_tokens, dtype=np.float64)
        hit = (op, self.decode_terms(op))
        if hit[1] is not None:  # 16-bit K/V of whole bytes: the op's scalars once, then 8 array operations
            c_flops, peak, b0, b1, launch, count = hit[1]
            return (np.maximum(c_flops * kv / peak, (b1 * kv + b0) / self._bw) + launch) * count
        b = op.dtype_bytes
        dk, dv, kvw = head_dims(op)  # MLA: every query head reads the one latent per token
        flops = 2.0 * op.heads * (dk + dv) * kv
        if op.kv_bytes:  # quantized K/V: fewer bytes, dequantized on the CUDA cores
            nbytes = b * op.seqs * op.heads * (dk + dv) + kvw * op.kv_heads * op.kv_elem_bytes(kv)
            compute = np.maximum(flops / self.peak(op.dtype),
                                 op.kv_deq_ops * kvw * op.kv_heads * kv / self._vec)
            return (np.maximum(compute, nbytes / self._bw) + self._launch) * op.count
        nbytes = b * (op.seqs * op.heads * (dk + dv) + kv * kvw * op.kv_heads)
        return (np.maximum(flops / self.peak(op.dtype), nbytes / self._bw) + self._launch) * op.count
