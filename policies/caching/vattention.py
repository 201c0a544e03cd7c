"""``vattention``: contiguous virtual KV per request and layer, physical pages mapped on demand.

Models: each layer's K and V of a request is one virtually contiguous buffer; physical pages of
    ``page_size`` are mapped as the sequence grows, so the allocation unit is
    page_size / (KV heads x head_dim x dtype bytes) tokens (2 MiB pages: 256 tokens for a
    Llama-2-7B layer; 64 KiB pages: 8). Internal fragmentation is the unused tail of each
    request's last page. Mapping a page costs ``mapping_latency``; vAttention hides it behind
    compute (``overlap: true``); with ``overlap: false`` the iteration that grows into new pages
    waits for the mappings (and the steady-decode fast path is turned off).
Ignores: the non-paged attention kernel speedup (a kernel property; see the vAttention study),
    page pre-allocation heuristics, deferred reclamation.
Sources: Prabhu et al., "vAttention: Dynamic Memory Management for Serving LLMs without
    PagedAttention" (ASPLOS 2025): 2 MiB CUDA VMM pages, 64 KiB with a driver extension,
    cuMemMap/cuMemSetAccess costs of tens of microseconds per page.
"""

from __future__ import annotations

from pydantic import Field

from simulator.config.quantities import PositiveBytes, Seconds, StrictConfig
from simulator.core.registry import register_cache_policy


class VattentionConfig(StrictConfig):
    page_size: PositiveBytes = Field(default="2MiB", description="physical page (CUDA VMM granularity)")
    mapping_latency: Seconds = Field(default="40us", description="cost of mapping one page (per layer buffer)")
    overlap: bool = Field(default=True, description="mapping runs in the background, hidden by compute")


@register_cache_policy("vattention", config=VattentionConfig)
class VattentionPolicy:
    """vAttention: contiguous virtual KV per request, physical pages mapped on demand."""
    mechanism = "vattention"

    def __init__(self, config: VattentionConfig) -> None:
        self.config = config

    def tokens_per_page(self, kv_bytes_per_token_per_layer_buffer: float) -> int:
        return max(1, int(self.config.page_size // kv_bytes_per_token_per_layer_buffer))
