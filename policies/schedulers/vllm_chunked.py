"""vLLM with chunked prefill on (the V1 engine's scheduler, vLLM 0.8-0.10 defaults).

Models (each step, one token budget of ``max_num_batched_tokens`` for everything):
    1. decodes first: one token for each running request past its prefill, in admission order
       (vLLM's docs: "it batches all pending decode requests before scheduling any prefill");
    2. then the next chunk of each running request still in prefill, ``min(prompt left, budget
       left)`` tokens (capped by ``long_prefill_token_threshold`` when set);
    3. KV is allocated on demand for exactly the tokens scheduled (no whole-prompt allocation, no
       watermark); when a running request cannot get its blocks the newest running request is
       preempted by recompute (``self.running.pop()``), repeatedly, and if that victim is the
       request itself it is simply not scheduled;
    4. only in a step that preempted nothing, waiting requests (preempted ones first, then by
       arrival) are admitted with a chunk of the remaining budget while ``max_num_seqs`` and the
       KV cache allow, stopping at the first that does not fit.
    A prompt longer than max_model_len or than the whole cache is rejected (vLLM refuses it at
    the API).
Defaults: ``max_num_batched_tokens=2048`` and ``max_num_seqs=256`` are vLLM 0.8-0.10's V1
    defaults for the OpenAI server on a GPU with less than 70 GiB (on larger GPUs vLLM uses 8192
    and 1024; set them for an H100/H200 comparison).
Differences from the real system: V1's code walks ``self.running`` in admission order rather than
    decodes first; the two differ only when a partly prefilled request was admitted before a
    decoding one, which is rare. Prefix caching, speculative decoding, structured output, the
    encoder cache and async scheduling are not modelled; preemption is by recompute only (V1 has
    no swap either).
Sources: vLLM ``vllm/v1/core/sched/scheduler.py`` and ``engine/arg_utils.py``
    (``_set_default_args_v1``); vLLM docs, "Optimization and Tuning: Chunked Prefill".

``steady_decode`` holds: a decode-only plan over every running request means nothing is in
prefill, nothing was preempted and the queue's head could not be admitted — the budget is used up
by decodes or ``max_num_seqs`` is reached (fixed while nothing changes), or its first chunk needs
more blocks than are free (free blocks only shrink as decodes grow).
"""

from __future__ import annotations

from pydantic import Field

from policies.api import BatchPlan, PrefillChunk, SchedulerView, StrictConfig, register_scheduler
from policies.schedulers._common import never_fits


class VllmChunkedConfig(StrictConfig):
    block_size: int = Field(default=16, gt=0, description="tokens per KV block")
    max_num_seqs: int = Field(default=256, gt=0, description="most requests running at once")
    max_num_batched_tokens: int = Field(default=2048, gt=0, description="token budget of one step")
    long_prefill_token_threshold: int = Field(default=0, ge=0,
                                              description="cap on one request's chunk per step; 0 = no cap")


@register_scheduler("vllm_chunked", config=VllmChunkedConfig)
class VllmChunkedScheduler:
    """vLLM with chunked prefill (the V1 engine's scheduler, vLLM 0.8-0.10 defaults)."""
    steady_decode = True

    def __init__(self, config: VllmChunkedConfig) -> None:
        self.config = config

    def token_budget(self, view: SchedulerView) -> int:
        return self.config.max_num_batched_tokens

    def _chunk(self, remaining: int, budget: int) -> int:
        cap = self.config.long_prefill_token_threshold
        return min(remaining, budget, cap) if cap else min(remaining, budget)

    def plan(self, view: SchedulerView) -> BatchPlan:
        cfg = self.config
        kv = view.kv
        free = kv.free_blocks
        budget = cfg.max_num_batched_tokens
        running = list(view.running)
        prefilling = [r for r in running if r.in_prefill]
        # decodes first, then prefills, each in admission order (a copy: ``running`` loses victims below)
        order = [r for r in running if not r.in_prefill] + prefilling if prefilling else running[:]
        in_prefill = {r.rid for r in prefilling}
        gone: set[int] = set()
        preempt: list[int] = []
        scheduled: dict[int, tuple[int, int]] = {}  # rid -> (tokens, blocks) in this step
        grow = kv.blocks_to_grow
        for r in order:
            if budget <= 0:
                break
            if gone and r.rid in gone:
                continue
            t = self._chunk(r.prefill_remaining, budget) if r.rid in in_prefill else 1
            need = grow(r, t)
            while need > free:
                victim = running.pop()  # the newest running request
                gone.add(victim.rid)
                preempt.append(victim.rid)
                free += kv.blocks_freed_by(victim)
                if victim.rid in scheduled:  # a decode scheduled before this prefill: take it back
                    vt, vneed = scheduled.pop(victim.rid)
                    budget += vt
                    free += vneed
                if victim is r:
                    break
            if r.rid in gone:
                continue
            free -= need
            budget -= t
            scheduled[r.rid] = (t, need)
        decode = [rid for rid in scheduled if rid not in in_prefill]
        chunks = [PrefillChunk(rid, t) for rid, (t, _) in scheduled.items() if rid in in_prefill]
        reject: list[int] = []
        if not preempt:
            seqs = len(running)
            for r in view.waiting:
                if never_fits(r, view, kv.total_blocks):
                    reject.append(r.rid)
                    continue
                if budget <= 0 or seqs >= cfg.max_num_seqs:
                    break
                t = self._chunk(r.prefill_remaining, budget)
                need = kv.blocks_to_admit(r, t)
                if need > free:
                    break
                chunks.append(PrefillChunk(r.rid, t))
                free -= need
                budget -= t
                seqs += 1
        return BatchPlan(prefill=tuple(chunks), decode=tuple(decode), preempt=tuple(preempt), reject=tuple(reject))
