"""``cacheblend``: non-prefix KV reuse -- cached KV chunks (retrieved documents) reused at any position
of the prompt, with a share of their tokens recomputed (CacheBlend).

Models: a share ``reuse_fraction`` of each prompt of at least ``min_prompt_tokens`` tokens is made of
    chunks whose KV is cached (an input: the RAG workload's retrieved-document share); of those
    tokens, ``recompute_fraction`` are recomputed (the tokens whose KV deviates most once the chunks
    are put together), the rest are taken from the cache. The prefill computes the prompt's own
    tokens and the recomputed ones, each attending to the whole context (the reused K/V included);
    every prompt token holds a KV block as usual (mechanism:
    ``simulator.serving.chunk_reuse.ChunkReuseKvCache``). The quality effect is an input:
    ``accuracy_delta`` and ``quality_note`` are reported in ``summary.json``, never computed.
Ignores: loading the chunks' KV (CacheBlend pipelines it from CPU memory or SSD with the
    recompute, layer by layer; the store is taken as large enough and the load as hidden); the first
    layer's full recompute that selects the tokens; which positions the chunks take (only counts
    matter to the kernels); reuse of chunks between requests on the GPU (each request's chunks are
    looked up in the store).
Sources: Yao et al., "CacheBlend: Fast Large Language Model Serving for RAG with Cached Knowledge
    Fusion" (EuroSys 2025): selective recompute of about 15 % of the reused tokens.
"""

from __future__ import annotations

from pydantic import Field

from simulator.config.quantities import StrictConfig
from simulator.core.registry import register_cache_policy


class CacheBlendConfig(StrictConfig):
    reuse_fraction: float = Field(default=0.8, gt=0.0, le=1.0, description="share of each prompt made of cached "
                                                                          "chunks (an input)")
    recompute_fraction: float = Field(default=0.15, gt=0.0, le=1.0, description="share of the reused tokens "
                                                                               "recomputed (CacheBlend: 15 %)")
    min_prompt_tokens: int = Field(default=0, ge=0, description="prompts shorter than this reuse nothing")
    accuracy_delta: float = Field(default=0.0, description="quality change versus full recompute (an input, "
                                                           "reported only)")
    quality_note: str = Field(default="", description="where the accuracy delta comes from (reported only)")


@register_cache_policy("cacheblend", config=CacheBlendConfig)
class CacheBlendPolicy:
    """Non-prefix KV reuse with a partial recompute (CacheBlend)."""
    mechanism = "chunk_reuse"

    def __init__(self, config: CacheBlendConfig) -> None:
        self.config = config

    def skipped_tokens(self, prompt_tokens: int) -> int:
        """Prompt tokens whose KV is taken from the chunk store and not recomputed."""
        c = self.config
        if prompt_tokens < c.min_prompt_tokens:
            return 0
        return int(prompt_tokens * c.reuse_fraction * (1.0 - c.recompute_fraction))

    def report(self) -> dict:
        c = self.config
        return {"policy": "cacheblend", "reuse_fraction": c.reuse_fraction,
                "recompute_fraction": c.recompute_fraction, "accuracy_delta": c.accuracy_delta,
                "quality_note": c.quality_note}
