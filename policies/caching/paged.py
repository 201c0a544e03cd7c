"""``paged``: vLLM-style paged KV blocks, each request owning its blocks; preemption by recompute.

Models: the default mechanism (see ``simulator/serving/kv_cache.py``); this policy has no options.
Ignores: prefix sharing, offload. Sources: Kwon et al., "Efficient Memory Management for Large
    Language Model Serving with PagedAttention" (SOSP 2023).
"""

from __future__ import annotations

from simulator.config.quantities import StrictConfig
from simulator.core.registry import register_cache_policy


class PagedConfig(StrictConfig):
    """No options: blocks of the scheduler's ``block_size`` tokens."""


@register_cache_policy("paged", config=PagedConfig)
class PagedPolicy:
    """vLLM-style paged KV blocks, each request owning its blocks; preemption by recompute."""
    mechanism = "paged"

    def __init__(self, config: PagedConfig) -> None:
        self.config = config
