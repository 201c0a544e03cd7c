"""``lfu``: keep the most popular experts of each layer (popularity / least-frequently-used caching).

Models: in steady state a frequency-ranked cache of C experts holds the C experts most often needed
    (under independent references, LFU converges to the static most-popular set, the best hit rate
    any cache of that size reaches); a fractional C holds the next expert part of the time.
Ignores: the warm-up before the counts settle; ageing of the counts when popularity drifts.
Sources: King, "Analysis of demand paging algorithms" (IFIP 1971) for LFU under the independent
    reference model; MoE-Infinity (Xue et al., 2024) and ExpertFlow (He et al., 2024) rank experts by
    activation frequency for their caches.
"""

from __future__ import annotations

import numpy as np

from policies.expert_caches import ExpertOffloadConfig, register_expert_cache


@register_expert_cache("lfu", config=ExpertOffloadConfig)
class LfuExpertCache:
    """The C experts most likely to be needed stay on the GPU."""

    def __init__(self, config: ExpertOffloadConfig) -> None:
        self.config = config

    @staticmethod
    def resident(p_active: np.ndarray, capacity: float) -> np.ndarray:
        order = np.argsort(-p_active, kind="stable")
        keep = np.clip(capacity - np.arange(len(p_active)), 0.0, 1.0)  # 1, ..., 1, frac, 0, ...
        out = np.empty(len(p_active))
        out[order] = keep
        return out
