"""Send each request to the replica whose KV cache is least full.

Models: the lowest ``kv_used_fraction`` wins; ties (idle replicas all at 0) go to the replica with
    the fewest requests waiting + running, then the fewest outstanding tokens, then the lowest
    index, so an idle cluster still spreads requests instead of piling them on replica 0.
Ignores: requests already queued but not yet holding KV (the tie-breaks only see them on a tie) —
    a replica with a long queue and an empty cache looks attractive; that is the policy's known
    weakness against least_outstanding.
Sources: memory-aware load balancing as in Llumnix (Sun et al., OSDI 2024), without migration.
"""

from __future__ import annotations

from policies.api import ClusterView, EmptyConfig, RequestView, register_router


@register_router("least_kv", config=EmptyConfig)
class LeastKvRouter:
    """Send each request to the replica whose KV cache is least full."""
    def __init__(self, config: EmptyConfig) -> None:
        pass

    def route(self, request: RequestView, view: ClusterView) -> int:
        best = min(view.replicas, key=lambda r: (r.kv_used_fraction, r.waiting + r.running,
                                                 r.outstanding_tokens, r.index))
        return best.index
