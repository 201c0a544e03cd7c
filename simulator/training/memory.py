"""Memory per GPU of a training job: weights, gradients, optimizer state, activations.

Models: mixed-precision training as in ZeRO (Rajbhandari et al., SC20): per parameter ``w`` bytes of
    16-bit weights (fp8 adds a 1-byte cast copy), ``g`` bytes of gradients and K = 12 bytes of Adam
    state (fp32 master weight, two moments; 8 for SGD with momentum). ZeRO over the N = dp x cp
    GPUs of a parameter shard: stage 1 shards the optimizer state (w + g + K/N), stage 2 also the
    gradients (w + (g + K)/N), stage 3 also the weights ((w + g + K)/N). Activations: the bytes one
    (micro-batch, chunk) unit keeps times the most units the schedule holds at once (from the
    simulated order), plus the last stage's logits; with activation offload, two units stay on
    the GPU (the one computing and the one being copied). A fixed reserve covers the CUDA context,
    NCCL buffers and allocator slack. Routed experts spread over data-parallel ranks are sharded over
    their smaller expert-data-parallel group.
Ignores: allocator fragmentation beyond the reserve, ZeRO-3's gathered-parameter buffers (one
    chunk's weights, small beside the rest), temporary GEMM workspaces.
Sources: Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models"
    (SC20), section 3.1; Korthikanti et al. (2022) for activations (``workloads.training``).
"""

from __future__ import annotations

from dataclasses import dataclass

from workloads.training import ADAM_STATE_BYTES, SGD_STATE_BYTES


@dataclass(frozen=True)
class MemoryBreakdown:
    weights: float
    grads: float
    optimizer: float
    activations: float
    reserve: float

    @property
    def total(self) -> float:
        return self.weights + self.grads + self.optimizer + self.activations + self.reserve

    def as_dict(self) -> dict[str, float]:
        return {"weights_bytes": self.weights, "grads_bytes": self.grads, "optimizer_bytes": self.optimizer,
                "activations_bytes": self.activations, "reserve_bytes": self.reserve, "total_bytes": self.total}


def bytes_per_param(precision: str, grad_dtype: str, optimizer: str) -> tuple[float, float, float]:
    """(weights, gradients, optimizer state) bytes per parameter before sharding."""
    w = 2.0 + (1.0 if precision == "fp8" else 0.0)
    g = 2.0 if grad_dtype == "bf16" else 4.0
    k = ADAM_STATE_BYTES if optimizer == "adam" else SGD_STATE_BYTES
    return w, g, k


def model_states(params: float, zero: int, shards: int, precision: str = "bf16", grad_dtype: str = "bf16",
                 optimizer: str = "adam") -> tuple[float, float, float]:
    """(weights, grads, optimizer) bytes per GPU for ``params`` parameters at ZeRO ``zero`` over ``shards``."""
    w, g, k = bytes_per_param(precision, grad_dtype, optimizer)
    n = max(1, shards)
    return (params * w / (n if zero >= 3 else 1), params * g / (n if zero >= 2 else 1),
            params * k / (n if zero >= 1 else 1))


def breakdown(params: float, zero: int, shards: int, unit_act: float, in_flight: int, extra_act: float,
              reserve: float, offload: bool, precision: str = "bf16", grad_dtype: str = "bf16",
              optimizer: str = "adam", experts: float = 0.0, expert_shards: int = 0) -> MemoryBreakdown:
    """``experts`` of the ``params`` are sharded by ZeRO over ``expert_shards`` GPUs (default ``shards``)."""
    w, g, k = model_states(params - experts, zero, shards, precision, grad_dtype, optimizer)
    ew, eg, ek = model_states(experts, zero, expert_shards or shards, precision, grad_dtype, optimizer)
    units = min(in_flight, 2) if offload else in_flight
    return MemoryBreakdown(w + ew, g + eg, k + ek, unit_act * units + extra_act, reserve)


def gib(x: float) -> str:
    return f"{x / 2**30:.1f} GiB"
