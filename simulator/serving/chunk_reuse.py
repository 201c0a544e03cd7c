"""KV mechanism of non-prefix chunk reuse (policy: ``policies.caching.cacheblend``).

Models: a waiting request is shown with ``num_computed`` = the prompt tokens its policy takes from the
    chunk store without recomputing them (as a prefix cache shows its tentative hit), so the
    scheduler plans, and the step timer times, only the tokens left to compute, each at the whole
    context; the blocks of every prompt token are allocated as the prefill grows. A request
    preempted by recompute takes the same tokens from the store again.
Ignores: see the policy.
Sources: see the policy.
"""

from __future__ import annotations

from simulator.core.request import Request
from simulator.serving.kv_cache import PagedKvCache


class ChunkReuseKvCache(PagedKvCache):
    shares = True  # the replica asks for tentative hits of waiting requests (refresh_hits / attach)
    REFRESH_HEAD = 64  # waiting requests refreshed per iteration (as PrefixKvCache)

    def __init__(self, total_blocks: int, block_size: int, policy) -> None:
        super().__init__(total_blocks, block_size)
        self.policy = policy
        self.private = 0  # rollback bookkeeping of sharing caches (no shared blocks here)
        self.reused_tokens = 0
        self.requests = 0

    def _hit(self, r: Request) -> int:
        if r.kv_blocks or r.num_computed:
            return 0
        n = min(self.policy.skipped_tokens(r.prompt_tokens), r.prefill_target - 1)
        if n <= 0:
            return 0
        r.num_computed = n
        return n

    def refresh_hits(self, waiting) -> int:
        delta = 0
        for i, r in enumerate(waiting):
            if i >= self.REFRESH_HEAD:
                break
            delta += self._hit(r)
        return delta

    def attach(self, r: Request) -> int:
        """Admission: the reused tokens (set now when the request was beyond the refreshed head)."""
        delta = self._hit(r)
        self.reused_tokens += r.num_computed
        self.requests += 1
        return delta

    def publish(self, r: Request) -> None:
        return None

    def stats(self) -> dict:
        return {**self.policy.report(), "reused_tokens": self.reused_tokens, "admissions": self.requests}
