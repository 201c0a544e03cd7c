"""``h2o``: Heavy-Hitter Oracle — keep the heavy-hitter tokens and the recent ones within a budget.

Models: a request's resident KV is ``min(context, max(min_tokens, ceil(budget_fraction x context)))``
    tokens: a budget proportional to the context (split between heavy hitters, the tokens with the
    largest accumulated attention, and the most recent tokens; the split does not change the
    count). KV blocks are held for the resident tokens only and decode attention reads only them
    (mechanism: ``simulator.serving.kv_cache.CappedKvCache``). The quality effect is an input:
    ``accuracy_delta`` and ``quality_note`` are reported in ``summary.json``, never computed.
Ignores: the cost of tracking accumulated attention scores; which tokens are heavy hitters (only
    their number matters for memory and time); the transient KV of a prefill chunk.
Sources: Zhang et al., "H2O: Heavy-Hitter Oracle for Efficient Generative Inference of Large
    Language Models" (NeurIPS 2023): a 20% KV budget (half heavy hitters, half recent) keeps
    accuracy close to the full cache on most tasks.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from simulator.config.quantities import StrictConfig
from simulator.core.registry import register_cache_policy


class H2oConfig(StrictConfig):
    budget_fraction: float = Field(default=0.2, gt=0, le=1, description="share of the context kept")
    min_tokens: int = Field(default=128, ge=1, description="smallest budget, in tokens")
    heavy_fraction: float = Field(default=0.5, ge=0, le=1, description="share of the budget given to heavy "
                                                                       "hitters (the rest: recent tokens)")
    accuracy_delta: float = Field(default=0.0, description="quality change versus the full cache (an input, "
                                                           "reported only)")
    quality_note: str = Field(default="", description="where the accuracy delta comes from (reported only)")


@register_cache_policy("h2o", config=H2oConfig)
class H2oPolicy:
    """Heavy-Hitter Oracle: keep heavy-hitter and recent tokens within a KV budget."""
    mechanism = "capped"

    def __init__(self, config: H2oConfig) -> None:
        self.config = config
        self.fraction = config.budget_fraction
        self.min_tokens = config.min_tokens

    def resident(self, context: int) -> int:
        """Tokens of a ``context``-token sequence whose KV stays in the cache (non-decreasing in
        the context, and growing by at most one token per token since the fraction is <= 1)."""
        return min(context, max(self.min_tokens, math.ceil(self.fraction * context)))

    def resident_array(self, context: np.ndarray) -> np.ndarray:
        budget = np.ceil(self.fraction * context).astype(np.int64)
        return np.minimum(context, np.maximum(self.min_tokens, budget))

    def report(self) -> dict:
        c = self.config
        return {"policy": "h2o", "budget_fraction": c.budget_fraction, "heavy_fraction": c.heavy_fraction,
                "accuracy_delta": c.accuracy_delta, "quality_note": c.quality_note}
