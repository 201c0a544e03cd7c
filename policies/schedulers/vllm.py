"""vLLM-style continuous batching with a paged KV cache (vLLM v0 default scheduler).

Each iteration: if requests wait, admit them first-come-first-served as a prefill-only batch
while the sequence limit, the token budget and the KV cache (keeping a watermark of free blocks)
allow; otherwise run one decode step for every running request. The decode step checks the
running requests in admission order as vLLM v0 does (``_schedule_running`` with
``can_append_slots``): each needs one free block at its turn, whether or not its new token opens
a block, and while there is none the most recently admitted request still unchecked is preempted
by recompute (the request itself when none is left). A prompt that can never fit (longer than
max_model_len, the token budget or the whole cache) is rejected.
Sources: vLLM v0 ``vllm/core/scheduler.py`` (``_schedule_running``) and
``vllm/core/block_manager_v1.py`` (``can_append_slots``: "If there is at least one free block for
each sequence, we can append").

``steady_decode`` holds with ``steady_min_free_blocks = 1``: a stretch of decodes keeps the same
plan while at least one block stays free after each iteration.
"""

from __future__ import annotations

from pydantic import Field

from policies.api import BatchPlan, KvView, PrefillChunk, SchedulerView, StrictConfig, register_scheduler
from policies.schedulers._common import preempt_in_turn


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
    steady_min_free_blocks = 1  # the decode check wants a free block at every request's turn

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
        """One decode step for every running request; vLLM v0's block check, preempting the newest."""
        kv = view.kv
        bs = kv.block_size
        running = view.running
        if type(kv) is KvView:  # common case first: every row decodes and a block stays free throughout
            opens = 0  # rows whose new token opens a block
            for r in running:
                c = r.num_computed
                if c < r.prefill_target:
                    break
                if c >= r.kv_blocks * bs:
                    opens += 1
            else:
                if opens < kv.free_blocks:
                    return BatchPlan(decode=tuple([r.rid for r in running]))
        kept, preempt, _ = preempt_in_turn(running, kv)
        decode = tuple(r.rid for r in kept if not r.in_prefill)
        prefill = tuple(PrefillChunk(r.rid, r.prefill_remaining) for r in kept if r.in_prefill)
        return BatchPlan(prefill=prefill, decode=decode, preempt=tuple(preempt))
