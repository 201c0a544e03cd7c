"""Send each request to the replica with the fewest prefill + decode tokens still to process."""

from __future__ import annotations

from policies.api import ClusterView, EmptyConfig, RequestView, register_router


@register_router("least_outstanding", config=EmptyConfig)
class LeastOutstandingRouter:
    """Send each request to the replica with the fewest tokens still to process."""
    def __init__(self, config: EmptyConfig) -> None:
        pass

    def route(self, request: RequestView, view: ClusterView) -> int:
        best = min(view.replicas, key=lambda r: (r.outstanding_tokens, r.index))
        return best.index
