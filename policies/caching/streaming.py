"""``streaming``: StreamingLLM — keep a few attention-sink tokens and a window of recent tokens.

Models: a request's resident KV is ``min(context, sink_tokens + window_tokens)`` tokens: the first
    ``sink_tokens`` (attention sinks) and the most recent ``window_tokens``; older tokens are
    evicted as the sequence grows. KV blocks are held for the resident tokens only and decode
    attention reads only them, so a long request costs a bounded amount of KV memory and
    bandwidth and more requests fit in the same cache (mechanism:
    ``simulator.serving.kv_cache.CappedKvCache``). The quality effect is an input: ``accuracy_delta``
    and ``quality_note`` are reported in ``summary.json`` and never computed.
Ignores: the transient KV of a prefill chunk before its oldest tokens are evicted; position
    re-indexing inside the cache; the one extra block a rolling window holds while it slides is
    not allocated (schedulers keep one free block of headroom per running request anyway).
Sources: Xiao et al., "Efficient Streaming Language Models with Attention Sinks" (ICLR 2024):
    4 sink tokens, cache sizes of 256-4096 tokens, perplexity close to the full cache.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from simulator.config.quantities import StrictConfig
from simulator.core.registry import register_cache_policy


class StreamingConfig(StrictConfig):
    sink_tokens: int = Field(default=4, ge=0, description="initial tokens always kept (attention sinks)")
    window_tokens: int = Field(default=2044, gt=0, description="most recent tokens kept")
    accuracy_delta: float = Field(default=0.0, description="quality change versus the full cache (an input, "
                                                           "reported only)")
    quality_note: str = Field(default="", description="where the accuracy delta comes from (reported only)")


@register_cache_policy("streaming", config=StreamingConfig)
class StreamingPolicy:
    """StreamingLLM: keep a few attention-sink tokens and a window of recent tokens."""
    mechanism = "capped"

    def __init__(self, config: StreamingConfig) -> None:
        self.config = config
        self.cap_tokens = config.sink_tokens + config.window_tokens

    def resident(self, context: int) -> int:
        """Tokens of a ``context``-token sequence whose KV stays in the cache."""
        return context if context < self.cap_tokens else self.cap_tokens

    def resident_array(self, context: np.ndarray) -> np.ndarray:
        return np.minimum(context, self.cap_tokens)

    def report(self) -> dict:
        c = self.config
        return {"policy": "streaming", "resident_cap_tokens": self.cap_tokens,
                "accuracy_delta": c.accuracy_delta, "quality_note": c.quality_note}
