"""Time one iteration, or a stretch of identical decode iterations, on one replica.

``step`` lowers an iteration to ops and asks the timing backend; ``decode_segment`` times ``k``
decode iterations of the same rows in one call: every op but decode attention is the same each
iteration (memoised per row count), and attention is evaluated for all ``k`` context sums at
once, so a long decode stretch costs one numpy call, not one SimPy event per token.
"""

from __future__ import annotations

import numpy as np

from simulator.core.clock import PS_PER_S
from workloads.llm import BatchShape, attention_ops, decode_attention, dense_ops


class StepTimer:
    def __init__(self, model, tp: int, backend, quant=None) -> None:
        self.model = model
        self.quant = quant  # a quantization scheme (policies.quantization) or None
        self.tp = tp
        self.backend = backend
        self._fixed: dict[tuple[int, int], tuple[float, float]] = {}
        self._attn_template = {}
        self.attn_flops_per_kv = 4.0 * max(1, model.num_heads // tp) * model.head_dim * model.num_layers

    def _dense(self, tokens: int, emitting: int) -> tuple[float, float]:
        key = (tokens, emitting)
        hit = self._fixed.get(key)
        if hit is None:
            ops = dense_ops(tokens, emitting, self.model, self.tp, self.quant)
            hit = self._fixed[key] = (self.backend.ops_s(ops), sum(op.flops() for op in ops))
        return hit

    def step(self, shape: BatchShape) -> tuple[int, float]:
        """(picoseconds, FLOPs per GPU) of one iteration."""
        tokens = sum(t for t, _ in shape.prefill) + shape.decode_rows
        t, flops = self._dense(tokens, shape.emitting)
        for op in attention_ops(shape, self.model, self.tp, self.quant):
            t += self.backend.op_s(op)
            flops += op.flops()
        return int(round(t * PS_PER_S)), flops

    def _decode_fixed(self, rows: int) -> tuple[float, float]:
        if rows not in self._attn_template:
            self._attn_template[rows] = decode_attention(self.model, self.tp, rows, 0, self.quant)
        return self._dense(rows, rows)

    def decode_segment(self, rows: int, kv0: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-iteration picoseconds (int64) and FLOPs of ``k`` decode iterations of ``rows``
        rows whose summed context is ``kv0`` in the first iteration and grows by ``rows``."""
        fixed_s, fixed_flops = self._decode_fixed(rows)
        kv = kv0 + rows * np.arange(k, dtype=np.int64)
        attn_s = self.backend.decode_attention_s(self._attn_template[rows], kv)
        ps = np.rint((fixed_s + attn_s) * PS_PER_S).astype(np.int64)
        flops = fixed_flops + self.attn_flops_per_kv * kv.astype(np.float64)
        return ps, flops
