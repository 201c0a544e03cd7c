"""Priority scheduling with preemption, on vLLM v0's prefill-first continuous batching.

Models:
    Each request gets a priority key from ``rule`` (a smaller key is served first):
        fcfs             -- arrival time (the vLLM default order; useful as the control);
        shortest_prompt  -- prompt tokens (known at arrival: an honest shortest-job proxy);
        oracle_output    -- output tokens (an *oracle*: a real server only has a prediction;
                            gives the upper bound of length-aware scheduling);
        prefix_class / session_class -- the request's ``prefix_id`` / ``session_id`` used as a
                            priority class (lower id = more urgent; -1 gets ``default_class``);
                            traces carry no priority column, so a class id stands in for one.
    Fairness (``aging``, key units per second): the effective key is ``key - aging x (now -
    arrival)``. Every request ages at the same rate, so this orders requests by ``key + aging x
    arrival_s``: a request that has waited long enough overtakes a better-keyed later arrival,
    which bounds starvation, and the order never changes while requests wait — so a preempted
    request cannot preempt the one that displaced it (no thrashing).
    Each iteration, as vLLM v0 with ``policy="priority"``:
    1. if requests wait, admit them in key order as a prefill-only batch within the token budget,
       ``max_num_seqs`` and the KV cache (whole prompt, ``watermark`` kept free), stopping at the
       first that does not fit. When it does not fit for lack of KV or sequence slots and
       ``preempt`` is on, running requests with a strictly worse key are preempted by recompute,
       worst first, but only if evicting all of them would make room (no useless evictions);
    2. otherwise one decode step for every running request; when the cache has no block for a
       new token, the running request with the worst key is preempted (vLLM v0 priority mode
       evicts the lowest priority, not the newest).
    A prompt longer than max_model_len, the budget or the usable cache is rejected.
Ignores: swap-based preemption; vLLM's priority mode with chunked prefill; per-tenant quotas.
Sources: vLLM v0 ``core/scheduler.py`` (``_schedule_priority_preemption``, vLLM 0.6.2-0.7),
    aging as in classic priority schedulers (Silberschatz, Operating System Concepts, ch. 5).

``steady_decode`` holds: a decode-only plan over every running request means the best-keyed
waiting request cannot be admitted even after evicting every worse-keyed running request; keys
are fixed, the budget and sequence count do not change, and decode progress only shrinks the free
blocks plus the blocks of those candidates, so the plan repeats until something arrives or ends.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from policies.api import BatchPlan, PrefillChunk, RequestView, SchedulerView, StrictConfig, register_scheduler
from policies.schedulers._common import never_fits, preempt_for_decodes

PS_PER_S = 10**12

Rule = Literal["fcfs", "shortest_prompt", "oracle_output", "prefix_class", "session_class"]


class PriorityConfig(StrictConfig):
    block_size: int = Field(default=16, gt=0, description="tokens per KV block")
    rule: Rule = Field(default="shortest_prompt", description="how a request's priority key is computed")
    default_class: int = Field(default=0, description="class of a request without a prefix/session id")
    aging: float = Field(default=0.0, ge=0, description="key units gained per second since arrival (fairness)")
    preempt: bool = Field(default=True, description="evict worse-keyed running requests for a better waiting one")
    max_num_seqs: int = Field(default=256, gt=0, description="most requests in one batch")
    max_num_batched_tokens: int | None = Field(
        default=None, gt=0, description="token budget per iteration; default max(max_model_len, 2048)")
    watermark: float = Field(default=0.01, ge=0, lt=1, description="share of KV blocks kept free at admission")


@register_scheduler("priority", config=PriorityConfig)
class PriorityScheduler:
    """Priority scheduling with preemption, on vLLM v0's prefill-first continuous batching."""
    steady_decode = True

    def __init__(self, config: PriorityConfig) -> None:
        self.config = config

    def token_budget(self, view: SchedulerView) -> int:
        return self.config.max_num_batched_tokens or max(view.max_model_len, 2048)

    def key(self, r: RequestView) -> float:
        """Priority key (smaller is served first), aging folded in as a fixed per-request order."""
        cfg = self.config
        rule = cfg.rule
        if rule == "fcfs":
            base = r.arrival_ps / PS_PER_S
        elif rule == "shortest_prompt":
            base = float(r.prompt_tokens)
        elif rule == "oracle_output":
            base = float(r.max_new_tokens)
        else:
            cls = r.prefix_id if rule == "prefix_class" else r.session_id
            base = float(cls if cls >= 0 else cfg.default_class)
        return base + cfg.aging * r.arrival_ps / PS_PER_S

    def plan(self, view: SchedulerView) -> BatchPlan:
        cfg = self.config
        kv = view.kv
        key = self.key
        if view.waiting:
            budget = self.token_budget(view)
            watermark = int(cfg.watermark * kv.total_blocks)
            free = kv.free_blocks
            seqs = len(view.running)
            victims = sorted(view.running, key=lambda v: (key(v), v.first_scheduled_ps, v.rid))
            tokens = 0
            chunks: list[PrefillChunk] = []
            reject: list[int] = []
            preempt: list[int] = []
            for r in sorted(view.waiting, key=key):
                need = r.prefill_remaining
                blocks = kv.blocks_to_admit(r, need)
                if never_fits(r, view, kv.total_blocks - watermark) or need > budget:
                    reject.append(r.rid)
                    continue
                if tokens + need > budget:
                    break
                if seqs >= cfg.max_num_seqs or free - blocks < watermark:
                    kr = key(r)
                    worse = [v for v in victims if key(v) > kr]
                    if (not cfg.preempt or seqs - len(worse) >= cfg.max_num_seqs
                            or free + sum(kv.blocks_freed_by(v, False) for v in worse) - blocks < watermark):
                        break
                    while seqs >= cfg.max_num_seqs or free - blocks < watermark:
                        v = victims.pop()  # the worst key still running
                        preempt.append(v.rid)
                        free += kv.blocks_freed_by(v, False)  # its cached blocks may be mapped again here
                        seqs -= 1
                chunks.append(PrefillChunk(r.rid, need))
                tokens += need
                free -= blocks
                seqs += 1
            if chunks or reject:
                return BatchPlan(prefill=tuple(chunks), reject=tuple(reject), preempt=tuple(preempt))
        worst_first = {r.rid: (key(r), r.first_scheduled_ps, r.rid) for r in view.running}
        running, preempt_d, _ = preempt_for_decodes(
            view.running, kv, lambda kept: max(kept, key=lambda v: worst_first[v.rid]))
        decode = tuple(r.rid for r in running if not r.in_prefill)
        prefill = tuple(PrefillChunk(r.rid, r.prefill_remaining) for r in running if r.in_prefill)
        return BatchPlan(prefill=prefill, decode=decode, preempt=tuple(preempt_d))
