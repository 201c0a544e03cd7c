"""``swap``: paged KV blocks; a preempted request's KV is copied to host DRAM over PCIe and copied
back when it resumes, instead of being recomputed.

Models: the copies are contended transfers on the replica's PCIe link (one link per direction,
    processor sharing, the host preset's per-copy overhead); the iteration that preempts waits
    for its swap-outs and the iteration that resumes a request waits for its swap-in (vLLM v0
    runs both before the model step). Host swap space per replica is bounded; a preempted request
    that does not fit there is recomputed. A resumed request recomputes only its last token.
Ignores: overlap of swap copies with compute; per-block copy granularity (one copy per request).
Sources: Kwon et al. (SOSP 2023), section 4.5 (swapping vs recomputation); vLLM ``swap_space``
    (4 GiB per GPU by default).
"""

from __future__ import annotations

from pydantic import Field

from simulator.config.quantities import Bytes, StrictConfig
from simulator.core.registry import register_cache_policy


class SwapConfig(StrictConfig):
    host: str = Field(default="DGX-A100-host", description="host preset (kind host): PCIe generation, lanes, overhead")
    swap_space: Bytes = Field(default="4GiB", description="host DRAM for swapped KV, per GPU")


@register_cache_policy("swap", config=SwapConfig)
class SwapPolicy:
    """Paged KV blocks; a preempted request's KV is swapped to host DRAM over PCIe and back."""
    mechanism = "swap"

    def __init__(self, config: SwapConfig) -> None:
        self.config = config

    def choose(self, kv_bytes: float, host_free_bytes: float) -> str:
        """``swap`` when the KV fits in the remaining swap space, else ``recompute``."""
        return "swap" if kv_bytes <= host_free_bytes else "recompute"
