"""Session affinity: every request of a session goes to the same replica.

Models: a request with ``session_id >= 0`` goes to ``hash(session_id) mod replicas``, using the
    splitmix64 finaliser as the hash so that consecutive session ids spread evenly and the
    mapping is the same on every run and platform (Python's ``hash`` of an int is the int). A
    request without a session (-1) goes to the replica with the fewest outstanding tokens, as
    ``least_outstanding`` does. Keeping a session on one replica is what lets a prefix cache
    reuse the conversation's KV; hwsim's cache does not share prefixes yet, so here it shows
    the load-imbalance cost of affinity.
Ignores: replica failures and rebalancing (a consistent-hash ring would move fewer sessions when
    the replica count changes; with a fixed count, modulo is equivalent).
Sources: sticky sessions / prefix-aware routing as in SGLang's router and Preble (Srivatsa et al.,
    2024).
"""

from __future__ import annotations

from policies.api import ClusterView, EmptyConfig, RequestView, register_router

MASK64 = (1 << 64) - 1


def splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


@register_router("session_affinity", config=EmptyConfig)
class SessionAffinityRouter:
    """Every request of a session goes to the same replica."""
    def __init__(self, config: EmptyConfig) -> None:
        pass

    def route(self, request: RequestView, view: ClusterView) -> int:
        n = len(view.replicas)
        if request.session_id >= 0:
            return splitmix64(request.session_id) % n
        return min(view.replicas, key=lambda r: (r.outstanding_tokens, r.index)).index
