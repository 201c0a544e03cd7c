"""Expert offload: a MoE model's routed experts in host memory (or on an SSD), a GPU cache of C experts
per layer, and the time an iteration waits for the experts it needs that are not cached.

Models: per iteration of T tokens and per MoE layer, each expert e is needed when at least one of the
    T tokens routes to it: P_e = 1 - (1 - s_e)^T, with s_e = k x (its share of the (token, expert)
    pairs, capped at 1 / k as in :mod:`workloads.moe`) the chance one token picks it under top-k over
    E experts and the model's popularity law. The cache policy (``policies.expert_caches``) gives the
    steady-state chance r_e that expert e is resident when needed; the expected experts fetched per
    layer are m = sum_e P_e (1 - r_e), each one copy of ``expert_bytes`` (one GPU's share: the
    expert's weights over the tensor-parallel GPUs, each GPU fetching its slice over its own link)
    taking ``copy_overhead_s`` + bytes / ``rate``. Without prefetch, a layer's grouped GEMM waits for
    all m copies: the stall is m x copy time per MoE layer. With a predictor of accuracy a (the share
    of the needed experts it names one layer ahead: ExpertFlow's routing-path predictor, Pre-gated
    MoE's pre-gate), it names as many experts as the layer misses, a of them right; they are copied
    while the previous layer computes (a window w, one layer's share of the iteration's GPU time),
    right and wrong names interleaved, so a share min(1, w / f) of each is done when the layer's
    router decides (f = m x copy time). Then the copies still in flight for wrong names are dropped
    (ExpertFlow's real-time correction) and the layer waits for the right names not yet copied and
    the (1 - a) x m experts the predictor missed: stall = (1 - a) f + a max(0, f - w) per MoE layer.
    A wrong name costs only the link time it took inside the window, so a prefetch is never slower
    than none.
Ignores: the randomness of one iteration's routing (expected values); per-layer popularity
    differences and routing correlation across layers (the predictor's accuracy is the input that
    stands for it); cache pollution by wrong prefetches; contention of the expert copies with other
    host traffic on the same link (KV swaps: the step timer adds the stall without occupying the
    replica's PCIe resource); the staging buffer an expert fetched past a full cache passes through;
    ExpertFlow's token re-batching (it lowers the distinct experts per batch; not modelled).
Sources: Che, Tung and Wang, "Hierarchical Web caching systems: modeling, design and experimental
    results" (IEEE JSAC 2002) and Fricker, Robert and Roberts (ITC 2012) for the LRU characteristic
    time; Eliseev and Mazur, "Fast Inference of Mixture-of-Experts Language Models with Offloading"
    (2023) for the LRU expert cache; Hwang et al., "Pre-gated MoE" (ISCA 2024) and He et al.,
    "ExpertFlow" (2024) for predicted prefetch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from simulator.core.errors import ConfigError
from workloads.moe import RoutingConfig, _distinct, popularity

GiB = 2**30


def active_probability(tokens: int, experts: int, top_k: int, routing: RoutingConfig) -> np.ndarray:
    """Chance that each expert (in popularity order) receives at least one of ``tokens`` tokens."""
    if tokens <= 0:
        return np.zeros(experts)
    per_token = np.minimum(1.0, top_k * _distinct(popularity(routing, experts, tokens, top_k), top_k))
    return 1.0 - (1.0 - per_token) ** tokens


def expected_active(tokens: int, experts: int, top_k: int, routing: RoutingConfig) -> float:
    """Expected distinct experts a MoE layer runs for ``tokens`` tokens."""
    return float(active_probability(tokens, experts, top_k, routing).sum())


@dataclass
class ExpertOffload:
    """One replica's expert offload: what a GPU holds and how long a MoE layer waits for the rest.

    ``resident(p_active, capacity)`` is the cache policy (chance each expert is cached when needed);
    ``rate_bytes_per_s`` and ``copy_overhead_s`` are one GPU's host link (and, from an SSD, the drive);
    ``accuracy`` is None without prefetch."""

    experts: int
    top_k: int
    moe_layers: int
    num_layers: int
    routing: RoutingConfig
    expert_bytes: float  # one expert's weight bytes on one GPU
    cache_experts: float  # experts per MoE layer held on the GPU (a byte budget: an average over layers)
    resident: Callable[[np.ndarray, float], np.ndarray]
    rate_bytes_per_s: float
    copy_overhead_s: float = 0.0
    accuracy: float | None = None
    _misses: dict[int, float] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.accuracy is not None and not 0.0 <= self.accuracy <= 1.0:
            raise ConfigError(f"prefetch accuracy must be within [0, 1], got {self.accuracy:g}",
                              where="policies.expert_offload.prefetch.accuracy")
        if self.cache_experts < 0 or self.rate_bytes_per_s <= 0:
            raise ConfigError("cache_experts must be >= 0 and the link rate > 0", where="policies.expert_offload")

    # -- memory ----------------------------------------------------------------------------------
    @property
    def routed_bytes(self) -> float:
        """Every routed expert of every MoE layer, one GPU's share."""
        return self.expert_bytes * self.experts * self.moe_layers

    @property
    def cache_bytes(self) -> float:
        return self.expert_bytes * min(self.cache_experts, self.experts) * self.moe_layers

    def resident_weight_bytes(self, weights: float, room: float, where: str = "policies.expert_offload") -> float:
        """GPU weight bytes with the routed experts offloaded: ``weights`` (one GPU's, all on the GPU)
        less the routed experts plus the cache. ``room`` is the memory the weights may use (usable
        memory less the activation reserve); a cache that does not fit beside the other weights is an
        error."""
        other = weights - self.routed_bytes
        if self.cache_bytes > room - other:
            raise ConfigError(
                f"an expert cache of {self.cache_experts:g} experts x {self.moe_layers} layers "
                f"({self.cache_bytes / GiB:.1f} GiB per GPU) exceeds the {max(0.0, room - other) / GiB:.1f} GiB "
                f"left after the other weights; lower cache_experts", where=where)
        return other + self.cache_bytes

    # -- time ------------------------------------------------------------------------------------
    def misses(self, tokens: int) -> float:
        """Expected experts fetched per MoE layer in an iteration of ``tokens`` tokens."""
        hit = self._misses.get(tokens)
        if hit is None:
            p = active_probability(tokens, self.experts, self.top_k, self.routing)
            r = np.clip(self.resident(p, float(min(self.cache_experts, self.experts))), 0.0, 1.0)
            hit = self._misses[tokens] = float((p * (1.0 - r)).sum())
        return hit

    def hit_rate(self, tokens: int) -> float:
        """Share of the needed experts found in the cache."""
        need = expected_active(tokens, self.experts, self.top_k, self.routing)
        return 1.0 - self.misses(tokens) / need if need > 0 else 1.0

    def fetch_s(self, tokens: int) -> float:
        """Seconds to copy one MoE layer's missed experts, alone on the link."""
        m = self.misses(tokens)
        return m * (self.copy_overhead_s + self.expert_bytes / self.rate_bytes_per_s)

    def copy_bytes(self, tokens: int) -> float:
        """Bytes one GPU copies in an iteration of ``tokens`` tokens: every MoE layer's missed experts."""
        return self.moe_layers * self.misses(tokens) * self.expert_bytes

    def stall_s(self, tokens: int, gpu_s):
        """Seconds an iteration of ``tokens`` tokens waits for experts, given its GPU time ``gpu_s``
        (a float or a numpy array of per-iteration times)."""
        f = self.fetch_s(tokens)
        if f == 0.0:
            return 0.0 * gpu_s
        if self.accuracy is None:
            return self.moe_layers * f + 0.0 * gpu_s
        window = gpu_s / self.num_layers
        a = self.accuracy
        return self.moe_layers * ((1.0 - a) * f + a * np.maximum(0.0, f - window))


__all__ = ["ExpertOffload", "active_probability", "expected_active"]
