"""``lru``: keep the experts used most recently (least-recently-used eviction, as Mixtral offloading
and most expert caches do).

Models: Che's approximation for LRU under independent references, at iteration granularity: an expert
    is cached when it was needed in the last tau iterations, where tau (the characteristic time) is
    such that the expected number of distinct experts needed over tau iterations equals the cache
    size C: sum_e 1 - (1 - p_e)^tau = C, with p_e the chance expert e is needed in one iteration.
    Expert e is then resident with chance 1 - (1 - p_e)^tau. tau grows with C, so the hit rate does.
Ignores: correlation of routing between consecutive iterations (the same sequences decode again),
    which makes a real LRU cache hit more often than independent references would.
Sources: Che, Tung and Wang (IEEE JSAC 2002); Fricker, Robert and Roberts, "A versatile and accurate
    approximation for LRU cache performance" (ITC 2012); Eliseev and Mazur (2023) LRU expert cache.
"""

from __future__ import annotations

import numpy as np

from policies.expert_caches import ExpertOffloadConfig, register_expert_cache


@register_expert_cache("lru", config=ExpertOffloadConfig)
class LruExpertCache:
    """Experts needed in the last tau iterations stay on the GPU (Che's approximation)."""

    def __init__(self, config: ExpertOffloadConfig) -> None:
        self.config = config

    @staticmethod
    def resident(p_active: np.ndarray, capacity: float) -> np.ndarray:
        p = np.clip(np.asarray(p_active, dtype=np.float64), 0.0, 1.0)
        if capacity <= 0:
            return np.zeros(len(p))
        if capacity >= np.count_nonzero(p):
            return np.ones(len(p))  # every expert ever needed fits
        if np.any(p >= 1.0) and capacity <= np.count_nonzero(p >= 1.0):
            # experts needed every iteration fill the cache; the rest pass through it
            return np.where(p >= 1.0, capacity / np.count_nonzero(p >= 1.0), 0.0)
        q = np.log1p(-np.minimum(p, 1.0 - 1e-15))  # log(1 - p_e)

        def held(tau: float) -> float:
            return float((1.0 - np.exp(tau * q)).sum())

        lo, hi = 0.0, 1.0
        while held(hi) < capacity:
            hi *= 2.0
        for _ in range(100):  # bisection: held() is increasing in tau
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if held(mid) < capacity else (lo, mid)
        return 1.0 - np.exp(hi * q)
