"""vLLM-style continuous batching with a paged KV cache (vLLM v0 default scheduler).

Each iteration: if requests wait, admit them first-come-first-served as a prefill-only batch
while the sequence limit, the token budget and the KV cache (keeping a watermark of free blocks)
allow; otherwise run one decode step for every running request, preempting the most recently
admitted requests (by recompute) when the cache has no block for a new token. A prompt that can
never fit (longer than max_model_len, the token budget or the whole cache) is rejected.
"""

from __future__ import annotations

from pydantic import Field

from policies.api import BatchPlan, KvView, PrefillChunk, SchedulerView, StrictConfig, register_scheduler


class VllmConfig(StrictConfig):
    block_size: int = Field(default=16, gt=0, description="tokens per KV block")
    max_num_seqs: int = Field(default=256, gt=0, description="most requests in one batch")
    max_num_batched_tokens: int | None = Field(
        default=None, gt=0, description="token budget per iteration; default max(max_model_len, 2048)")
    watermark: float = Field(default=0.01, ge=0, lt=1, description="share of KV blocks kept free at admission")
    preemption: str = Field(default="recompute", pattern="^recompute$")


@register_scheduler("vllm", config=VllmConfig)
class VllmScheduler:
    steady_decode = True

    def __init__(self, config: VllmConfig) -> None:
        self.config = config

    def token_budget(self, view: SchedulerView) -> int:
        return self.config.max_num_batched_tokens or max(view.max_model_len, 2048)

    def plan(self, view: SchedulerView) -> BatchPlan:
        cfg = self.config
        kv = view.kv
        if view.waiting:
            budget = self.token_budget(view)
            watermark = int(cfg.watermark * kv.total_blocks)
            free = kv.free_blocks
            seqs = len(view.running)
            tokens = 0
            chunks: list[PrefillChunk] = []
            reject: list[int] = []
            for r in view.waiting:
                need = r.prefill_remaining
                blocks = kv.blocks_to_admit(r, need)  # cached blocks already mapped cost nothing
                if (r.prefill_target > view.max_model_len or need > budget
                        or blocks > kv.total_blocks - watermark):
                    reject.append(r.rid)
                    continue
                if seqs >= cfg.max_num_seqs or tokens + need > budget or free - blocks < watermark:
                    break
                chunks.append(PrefillChunk(r.rid, need))
                tokens += need
                free -= blocks
                seqs += 1
            if chunks or reject:
                return BatchPlan(prefill=tuple(chunks), reject=tuple(reject))
        return self.decode_plan(view)

    @staticmethod
    def decode_plan(view: SchedulerView) -> BatchPlan:
        """One decode step for every running request, preempting the newest when KV runs out."""
        kv = view.kv
        bs = kv.block_size
        running = view.running
        if type(kv) is KvView:  # common case first: every row decodes and the blocks suffice
            decode = tuple(r.rid for r in running if r.num_computed >= r.prefill_target)
            if len(decode) == len(running):
                if sum(1 for r in running if r.num_computed >= r.kv_blocks * bs) <= kv.free_blocks:
                    return BatchPlan(decode=decode)
        running = list(running)
        # a decode step needs a new block when the cached tokens fill the request's blocks (a cache
        # with its own accounting, e.g. an eviction cap, answers through blocks_to_grow)
        if type(kv) is KvView:
            need = [1 if r.num_computed >= r.kv_blocks * bs and not r.in_prefill else 0 for r in running]
        else:
            need = [0 if r.in_prefill else kv.blocks_to_grow(r, 1) for r in running]
        total = sum(need)
        free = view.kv.free_blocks
        preempt: list[int] = []
        while total > free and running:
            victim = running.pop()
            total -= need.pop()
            free += kv.blocks_freed_by(victim)  # shared blocks stay with the requests mapping them
            preempt.append(victim.rid)
        decode = tuple(r.rid for r in running if not r.in_prefill)
        prefill = tuple(PrefillChunk(r.rid, r.prefill_remaining) for r in running if r.in_prefill)
        return BatchPlan(prefill=prefill, decode=decode, preempt=tuple(preempt))
