"""Orca: iteration-level scheduling with selective batching; KV reserved per request.

Each iteration runs one decode step for every running request and, in the same batch, the whole
prompt of newly admitted requests (first come, first served) while the batch size limit and the
KV cache allow. Admission reserves KV for the request's maximum length up front (``reservation``
selects the rule), so no request is ever preempted — and memory is wasted on reservations.
"""

from __future__ import annotations

from pydantic import Field

from policies.api import BatchPlan, PrefillChunk, SchedulerView, StrictConfig, register_scheduler
from policies.schedulers._reservation import Reservation, reserve_tokens


class OrcaConfig(StrictConfig):
    block_size: int = Field(default=16, gt=0)
    max_batch_size: int = Field(default=64, gt=0, description="most requests in one batch")
    max_num_batched_tokens: int | None = Field(default=None, gt=0,
                                               description="token budget per iteration; none by default")
    reservation: Reservation = "max_len"


@register_scheduler("orca", config=OrcaConfig)
class OrcaScheduler:
    """Orca: iteration-level scheduling with selective batching; KV reserved per request."""
    steady_decode = True

    def __init__(self, config: OrcaConfig) -> None:
        self.config = config

    def plan(self, view: SchedulerView) -> BatchPlan:
        cfg = self.config
        kv = view.kv
        decode = tuple(r.rid for r in view.running if not r.in_prefill)
        tokens = len(decode)
        budget = cfg.max_num_batched_tokens
        chunks = [PrefillChunk(r.rid, r.prefill_remaining) for r in view.running if r.in_prefill]
        reject: list[int] = []
        free = kv.free_blocks
        size = len(view.running)
        for r in view.waiting:
            reserve = reserve_tokens(cfg.reservation, r, view.max_model_len)
            blocks = kv.blocks_to_admit(r, r.prefill_remaining, reserve)
            if r.prompt_tokens + r.max_new_tokens > view.max_model_len or blocks > kv.total_blocks or \
                    (budget is not None and r.prefill_remaining > budget):
                reject.append(r.rid)
                continue
            if size >= cfg.max_batch_size or blocks > free or \
                    (budget is not None and tokens + r.prefill_remaining > budget):
                break
            chunks.append(PrefillChunk(r.rid, r.prefill_remaining, reserve))
            free -= blocks
            size += 1
            tokens += r.prefill_remaining
        return BatchPlan(prefill=tuple(chunks), decode=decode, reject=tuple(reject))
