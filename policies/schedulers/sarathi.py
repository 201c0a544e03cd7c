"""Sarathi-Serve: chunked prefill with stall-free batching under a per-iteration token budget.

Models (each iteration, the order of Sarathi-Serve's Algorithm 2 and of its reference scheduler,
``sarathi/core/scheduler/sarathi_scheduler.py``, ``_schedule``):
    1. the running requests are sorted by arrival (its FCFS policy's ``sort_by_priority``) and
       walked in that order; each one past its prefill gets one decode token if the KV cache has
       a free block at its turn (``can_append_slot``: ``num_free_gpu_blocks > 0``, whether or not
       its new token opens a block); while there is none, the *latest-arrived* running request
       not yet walked is preempted by recompute (``self.running.pop(-1)``), or the request itself
       when none is left;
    2. the rest of the budget (``chunk_size`` tokens, decodes included) goes to the next chunks of
       running requests whose prompt is only partly prefilled, in arrival order;
    3. what is still left admits waiting requests first come, first served, each taking a chunk
       of at most the remaining budget. Admission allocates KV for the whole prompt at once
       (``can_allocate`` with the ``watermark`` kept free) and stops at the first request that does
       not fit, at ``max_num_seqs`` or when the budget is spent. Admission runs in an iteration
       that preempted too; the head of the queue is then the last request preempted (recompute
       puts it back at the front, ``self.waiting.insert(0, seq)``), which needs at least the
       blocks it just freed and so stops admission unless the watermark is 0 blocks and nothing
       else took blocks since.
    A prompt longer than max_model_len or than the usable cache is rejected.
Ignores: the SLO-driven choice of the chunk size (give ``chunk_size``; the paper picks 512 for a
    strict TBT SLO and 2048 for a relaxed one), tile-size effects of odd chunk lengths (the
    timing backend sees the exact chunk), swap-based preemption, and Sarathi-Serve's hybrid
    pipeline-parallel scheduling. A preempted request that would fit again at once is re-admitted
    one iteration later than in Sarathi-Serve (a plan cannot preempt and re-prefill a request).
Sources: Agrawal et al., "Taming Throughput-Latency Tradeoff in LLM Inference with
    Sarathi-Serve", OSDI 2024 (Algorithm 2, section 4); the sarathi-serve code (microsoft/
    sarathi-serve: ``sarathi_scheduler.py``, ``policy.py`` FCFS, ``base_block_space_manager.py``
    ``can_append_slot`` / ``can_allocate``). Not vLLM V1's rule of admitting nothing in a step that
    preempted (that is ``vllm_chunked``).

``steady_decode`` holds with ``steady_min_free_blocks = 1``: a decode-only plan over every
running request means no request is in prefill and no waiting request could be admitted — the
budget is used up by decodes or ``max_num_seqs`` is reached (both unchanged by decode progress),
or the head of the queue needs more free blocks than there are (free blocks only shrink as
decodes grow) — so the same plan comes back until a request arrives or finishes or no block is
left free after an iteration.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field

from policies.api import BatchPlan, PrefillChunk, SchedulerView, StrictConfig, register_scheduler
from policies.schedulers._common import never_fits, preempt_in_turn


class SarathiConfig(StrictConfig):
    block_size: int = Field(default=16, gt=0, description="tokens per KV block")
    chunk_size: int = Field(default=512, gt=0, validation_alias=AliasChoices("chunk_size", "token_budget"),
                            description="token budget of one iteration, decodes included (alias token_budget)")
    max_num_seqs: int = Field(default=128, gt=0, description="most requests in one batch (Sarathi-Serve's default)")
    watermark: float = Field(default=0.01, ge=0, lt=1, description="share of KV blocks kept free at admission")


@register_scheduler("sarathi", config=SarathiConfig)
class SarathiScheduler:
    steady_decode = True
    steady_min_free_blocks = 1  # the decode check wants a free block at every request's turn

    def __init__(self, config: SarathiConfig) -> None:
        self.config = config

    def token_budget(self, view: SchedulerView) -> int:
        return self.config.chunk_size

    def plan(self, view: SchedulerView) -> BatchPlan:
        cfg = self.config
        kv = view.kv
        by_arrival = sorted(view.running, key=lambda r: (r.arrival_ps, r.rid))
        running, preempt, free = preempt_in_turn(by_arrival, kv)
        decode = tuple(r.rid for r in running if not r.in_prefill)
        budget = cfg.chunk_size - len(decode)
        chunks: list[PrefillChunk] = []
        for r in running:  # ongoing prefills: their KV was allocated for the whole prompt at admission
            if budget <= 0:
                break
            if r.in_prefill:
                t = min(r.prefill_remaining, budget)
                need = kv.blocks_to_grow(r, t)
                if need > free:
                    continue
                chunks.append(PrefillChunk(r.rid, t))
                budget -= t
                free -= need
        reject: list[int] = []
        watermark = int(cfg.watermark * kv.total_blocks)
        if preempt:  # the last request preempted heads the queue; it cannot be re-admitted in this plan
            return BatchPlan(prefill=tuple(chunks), decode=decode, preempt=tuple(preempt))
        seqs = len(running)
        for r in view.waiting:
            if never_fits(r, view, kv.total_blocks - watermark):
                reject.append(r.rid)
                continue
            blocks = kv.blocks_to_admit(r, 0, r.prefill_target)
            if budget <= 0 or seqs >= cfg.max_num_seqs or free - blocks < watermark:
                break
            t = min(r.prefill_remaining, budget)
            chunks.append(PrefillChunk(r.rid, t, r.prefill_target))
            budget -= t
            free -= blocks
            seqs += 1
        return BatchPlan(prefill=tuple(chunks), decode=decode, preempt=tuple(preempt), reject=tuple(reject))
