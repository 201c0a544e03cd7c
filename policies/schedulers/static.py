"""Request-level (static) batching, as in FasterTransformer-style serving.

A batch of up to ``batch_size`` waiting requests is formed only when the previous batch has
completely finished; its prompts are prefilled together, then it decodes until its longest
request is done. Finished requests keep occupying their row (padding rows are computed but emit
nothing), and KV is reserved for each request's maximum length.
"""

from __future__ import annotations

from pydantic import Field

from policies.api import BatchPlan, PrefillChunk, SchedulerView, StrictConfig, register_scheduler
from policies.schedulers._reservation import Reservation, reserve_tokens


class StaticConfig(StrictConfig):
    block_size: int = Field(default=16, gt=0)
    batch_size: int = Field(default=8, gt=0)
    reservation: Reservation = "max_len"
    pad_finished: bool = Field(default=True, description="finished rows keep being computed")


@register_scheduler("static", config=StaticConfig)
class StaticScheduler:
    """Request-level (static) batching: a batch runs until all its requests finish."""
    steady_decode = True

    def __init__(self, config: StaticConfig) -> None:
        self.config = config
        self.batch_rows = 0

    def plan(self, view: SchedulerView) -> BatchPlan:
        cfg = self.config
        if view.running:
            pad = self.batch_rows - len(view.running) if cfg.pad_finished else 0
            return BatchPlan(decode=tuple(r.rid for r in view.running if not r.in_prefill),
                             prefill=tuple(PrefillChunk(r.rid, r.prefill_remaining)
                                           for r in view.running if r.in_prefill),
                             padding_rows=max(0, pad))
        kv = view.kv
        free = kv.free_blocks
        chunks: list[PrefillChunk] = []
        reject: list[int] = []
        for r in view.waiting:
            reserve = reserve_tokens(cfg.reservation, r, view.max_model_len)
            blocks = kv.blocks_to_admit(r, r.prefill_remaining, reserve)
            if r.prompt_tokens + r.max_new_tokens > view.max_model_len or blocks > kv.total_blocks:
                reject.append(r.rid)
                continue
            if len(chunks) >= cfg.batch_size or blocks > free:
                break
            chunks.append(PrefillChunk(r.rid, r.prefill_remaining, reserve))
            free -= blocks
        self.batch_rows = len(chunks)
        return BatchPlan(prefill=tuple(chunks), reject=tuple(reject))
