"""Round-robin routing: replica i, i+1, ... in turn, ignoring load."""

from __future__ import annotations

from policies.api import ClusterView, EmptyConfig, RequestView, register_router


@register_router("round_robin", config=EmptyConfig)
class RoundRobinRouter:
    """Round-robin routing: replica i, i+1, ... in turn, ignoring load."""
    def __init__(self, config: EmptyConfig) -> None:
        self.next = 0

    def route(self, request: RequestView, view: ClusterView) -> int:
        i = self.next % len(view.replicas)
        self.next = i + 1
        return i
