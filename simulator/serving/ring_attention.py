"""Step timing of a context-parallel replica (``cluster.context_parallel``): ring attention in prefill,
split-KV decode with a combine of the partial outputs (the lowering is ``workloads.context_parallel``).

A ring of ``cp`` steps takes, per layer, its first block's attention and then ``cp - 1`` steps of the
longer of the block's attention and the K/V block's send over the replica's link (the send overlaps
the attention of the block in hand). Everything around the kernels (framework host time, CUDA-graph
padding, launch floor, power cap) is the plain :class:`StepTimer`'s.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from simulator.core.clock import PS_PER_S
from simulator.core.errors import ConfigError
from simulator.serving.step_timer import StepTimer
from workloads.context_parallel import cp_attention_ops, decode_combine, dense_tokens, ring_prefill, unsupported
from workloads.llm import BatchShape


def check_context_parallel(model, pool, where: str = "cluster.context_parallel", policies=None, overlap=None,
                           kv_fetch=None) -> None:
    """Bad context-parallel settings as one ConfigError naming ``where``."""
    cp = getattr(pool, "context_parallel", 1)
    if cp <= 1:
        return
    tp = pool.tensor_parallel
    if tp % cp:
        raise ConfigError(f"context_parallel={cp} does not divide the replica's {tp} GPUs (tensor_parallel={tp}; "
                          f"each of the {cp} groups needs tensor_parallel / context_parallel GPUs)", where=where)
    if pool.expert_parallel > 1 or pool.attention_data_parallel > 1 or pool.pipeline_parallel > 1:
        raise ConfigError(f"context_parallel={cp} is not modelled together with expert_parallel, "
                          f"attention_data_parallel or pipeline_parallel > 1", where=where)
    why = unsupported(model)
    if why:
        raise ConfigError(f"context_parallel={cp} is not modelled for {model.name}'s {why}", where=where)
    extras = [name for name in ("expert_offload", "weight_offload")
              if policies is not None and getattr(policies, name, None) is not None]
    if overlap is not None and getattr(overlap, "kind", "none") != "none":
        extras.append("engine.overlap")
    if kv_fetch is not None:
        extras.append("a KV cache policy fetching from host memory")
    if extras:
        raise ConfigError(f"context_parallel={cp} is not modelled together with {', '.join(extras)}", where=where)


def check_prompts(prompt_tokens, cp: int, where: str = "cluster.context_parallel") -> None:
    """Every prompt must give each of the ``cp`` groups at least one token."""
    if cp <= 1 or len(prompt_tokens) == 0:
        return
    shortest = int(np.min(prompt_tokens))
    if shortest < cp:
        raise ConfigError(f"context_parallel={cp} splits each prompt over {cp} GPU groups, but the workload has a "
                          f"prompt of {shortest} tokens (shorter than {cp})", where=where)


class ContextParallelTimer(StepTimer):
    """A :class:`StepTimer` for ``tp`` GPUs in ``cp`` context-parallel groups (its ``tp`` is a group's)."""

    def __init__(self, model, tp: int, cp: int, backend, quant=None, framework=None, launch_s: float = 0.0) -> None:
        super().__init__(model, tp // cp, backend, quant, framework, launch_s)
        self.cp = cp
        self.replica_tp = tp
        self._combine: dict[int, float] = {}

    def _send_s(self, nbytes: float) -> float:
        link = self.backend.link
        return float(link.send_s(nbytes)) if link is not None and nbytes > 0 else 0.0

    def ring_s(self, shape: BatchShape) -> tuple[float, float, int]:
        """(seconds, FLOPs, kernel launches) of the prefill ring attention of ``shape`` on one GPU."""
        ring = ring_prefill(shape, self.model, self.replica_tp, self.cp, self.quant)
        if ring is None:
            return 0.0, 0.0, 0
        a = self.backend.op_s(ring.block)  # one step's attention, all layers
        x = self._send_s(ring.send_bytes) * ring.block.count  # one step's send, all layers
        return a + (ring.steps - 1) * max(a, x), ring.steps * ring.block.flops(), ring.steps * ring.block.count

    def _combine_s(self, rows: int) -> float:
        hit = self._combine.get(rows)
        if hit is None:
            hit = self._combine[rows] = sum(self.backend.op_s(op) for op in
                                            decode_combine(self.model, self.replica_tp, self.cp, rows))
        return hit

    def step(self, shape: BatchShape) -> tuple[int, float]:
        """(picoseconds, FLOPs per GPU) of one iteration."""
        decode_only = not shape.prefill
        rows = shape.decode_rows + len(shape.prefill)
        tokens = dense_tokens(shape, self.cp)
        emitting = shape.emitting
        if self.framework is not None and decode_only:
            tokens = emitting = self.framework.padded_batch(tokens)
        t, flops, kernels = self._dense(tokens, emitting)
        ring_t, ring_fl, ring_k = self.ring_s(shape)
        t, flops, kernels = t + ring_t, flops + ring_fl, kernels + ring_k
        attn = cp_attention_ops(shape, self.model, self.replica_tp, self.cp, self.quant)
        for op in attn:
            if op.kind == "attn_decode":
                t += self.backend.op_s(op)
                flops += op.flops()
                kernels += op.count
        if shape.decode_rows:
            t += self._combine_s(shape.decode_rows)
        if self.energy is not None:  # every ring step's kernel counts
            steps = [replace(op, count=op.count * self.cp) if op.kind == "attn_prefill" else op for op in attn]
            t = self._throttled(t, *self._dense_j(tokens, emitting), self.energy.ops_energy(steps))
        if self.framework is not None:
            t = self._with_host(max(t, self._launch_floor(kernels, decode_only, rows)), rows)
        return int(round(t * PS_PER_S)), flops

    def decode_segment(self, rows: int, kv0: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-iteration picoseconds and FLOPs of ``k`` decode iterations (as :meth:`step` times each):
        each GPU attends to ceil(1 / cp) of the rows' summed context."""
        fixed_s, fixed_flops, kernels = self._decode_fixed(rows)
        kv = kv0 + rows * np.arange(k, dtype=np.int64)
        per = -(-kv // self.cp)
        template = self._attn_template[rows]
        step_s = fixed_s + self.backend.decode_attention_s(template, per) + self._combine_s(rows)
        if self.energy is not None:
            step_s = self._throttled_segment(step_s, rows, template, per)
        if self.framework is not None:
            floor = self._launch_floor(kernels + template.count, True, rows)
            step_s = self._with_host(np.maximum(step_s, floor), rows)
        ps = np.rint(step_s * PS_PER_S).astype(np.int64)
        return ps, fixed_flops + self.attn_flops_per_kv * per.astype(np.float64)


__all__ = ["ContextParallelTimer", "check_context_parallel", "check_prompts"]
