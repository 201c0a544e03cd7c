"""Accelerator timing backend: GEMMs mapped onto a systolic PE array by dataflow (hw_models/accelerator.py).

Models: a GEMM C[m,n] = A[m,k] B[k,n] (B the weights) on ``arrays`` arrays of R x C PEs.
    Weight stationary: the weights are cut into ceil(k/R) x ceil(n/C) tiles; each tile is loaded
    into the PEs one row per cycle (R cycles, double-buffered behind the previous tile's stream)
    and the m activation rows stream through, so a tile occupies the array max(m, R) cycles and
    the last result leaves R + C - 1 cycles after the last tile: cycles = tiles x max(m, R) / arrays
    + R + C - 1 (a decode GEMV, m << R, is bound by feeding weights C per cycle). Output
    stationary: the outputs are cut into ceil(m/R) x ceil(n/C) tiles, each accumulating k
    streamed values: cycles = tiles x k / arrays + R + C - 1. DRAM traffic: every weight once; the activations
    once if they fit in half the SRAM, else once per column of weight tiles; output stationary
    re-reads the weights once per row of output tiles when they do not fit in the other half;
    outputs written once. Time = max(cycles / clock / MACs per PE per cycle, DRAM bytes /
    (bandwidth x memory_efficiency)) + the per-op launch. Attention runs as its two GEMMs per head
    (QK^T, PV) on the same array; elementwise ops stream at the memory bandwidth.
Ignores: bank conflicts in the SRAM, the host link, sparsity support, pipelining across ops.
Sources: Kung (1982); Eyeriss (ISCA 2016) for weight/output stationary; Samajdar et al.,
    "SCALE-Sim" (ISPASS 2020) for the fill + stream + drain cycle count of a systolic tile.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field

from hw_models.timing.base import TimingBackend
from simulator.config.quantities import StrictConfig
from simulator.core.registry import register_timing


class AcceleratorTimingConfig(StrictConfig):
    launch_overhead: bool = Field(default=True, description="add the device's per-op launch cost")


@register_timing("accelerator", config=AcceleratorTimingConfig)
class AcceleratorBackend(TimingBackend):
    """Systolic-array GEMMs by dataflow (see module docstring)."""

    name = "accelerator"

    def __init__(self, config: AcceleratorTimingConfig, device: Any, link: Any = None) -> None:
        super().__init__(config, device, link)
        self._bw = device.memory_bw_bytes_per_s * device.memory_efficiency
        self._launch = device.launch_overhead_s if config.launch_overhead else 0.0

    def gemm_cycles(self, m: int, n: int, k: int, dtype: str) -> float:
        d = self.device
        rate = d.macs_per_pe_per_cycle.get(dtype)
        if not rate:
            d.tensor_peak(dtype)  # raises, naming the device and the dtype
        r, c = d.pe_rows, d.pe_cols
        if d.dataflow == "weight_stationary":
            cycles = math.ceil(k / r) * math.ceil(n / c) * max(m, r) / d.arrays
        else:
            cycles = math.ceil(m / r) * math.ceil(n / c) * k / d.arrays
        return (cycles + r + c - 1) / rate

    def gemm_bytes(self, m: int, n: int, k: int, a_b: float, w_b: float, o_b: float) -> float:
        d = self.device
        half = d.sram_bytes / 2
        a, w = m * k * a_b, k * n * w_b
        a_reads = 1 if a <= half else math.ceil(n / d.pe_cols)
        w_reads = 1 if (d.dataflow == "weight_stationary" or w <= half) else math.ceil(m / d.pe_rows)
        return a * a_reads + w * w_reads + m * n * o_b

    def _gemm_s(self, m: int, n: int, k: int, dtype: str, a_b: float, w_b: float, o_b: float) -> float:
        t_c = self.gemm_cycles(m, n, k, dtype) / self.device.clock_hz
        return max(t_c, self.gemm_bytes(m, n, k, a_b, w_b, o_b) / self._bw)

    def _op_s(self, op: Any) -> float:
        kind = op.kind
        b = op.dtype_bytes
        if kind in ("gemm", "grouped_gemm"):
            t = sum(self._gemm_s(g if kind == "grouped_gemm" else op.m, op.n, op.k, op.dtype, b, op.w_bytes or b,
                                 op.out_bytes or b) for g in (op.groups or (op.m,)))
        elif kind == "attn_prefill":
            per_seq = max(op.q_tokens // max(op.seqs, 1), 1)
            ctx = max(op.kv_tokens // max(op.seqs, 1), 1)
            one = (self._gemm_s(per_seq, ctx, op.head_dim, op.dtype, b, b, b)
                   + self._gemm_s(per_seq, op.head_dim, ctx, op.dtype, b, b, b))
            t = one * op.heads * max(op.seqs, 1)
        elif kind == "attn_decode":
            return float(self.decode_attention_s(op, np.array([op.kv_tokens]))[0])
        elif kind == "elementwise":
            t = op.bytes / self._bw
        elif kind in ("allreduce", "alltoall"):
            return 0.0
        else:
            raise ValueError(f"accelerator backend cannot time op kind {kind!r}")
        return (t + self._launch) * op.count

    def decode_attention_s(self, op: Any, kv_tokens: np.ndarray) -> np.ndarray:
        """Per head and sequence two GEMVs over the context: compute on one array row / column
        (a GEMV fills one row of the array) against the K/V bytes at the memory bandwidth."""
        kv = np.asarray(kv_tokens, dtype=np.float64)
        d = self.device
        rate = d.macs_per_pe_per_cycle.get(op.dtype) or d.tensor_peak(op.dtype)
        lanes = (d.pe_cols if d.dataflow == "weight_stationary" else d.pe_rows) * d.arrays * rate
        macs = 2.0 * op.heads * op.head_dim * kv
        t_c = macs / lanes / d.clock_hz
        nbytes = op.head_dim * (2.0 * op.seqs * op.heads * op.dtype_bytes + 2.0 * op.kv_heads * op.kv_elem_bytes(kv))
        return (np.maximum(t_c, nbytes / self._bw) + self._launch) * op.count
