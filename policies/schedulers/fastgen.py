"""DeepSpeed-FastGen's Dynamic SplitFuse: every forward pass is filled to a fixed token budget.

Models (DeepSpeed-MII's ragged-batching scheduler, one forward pass per iteration):
    1. decode tokens first: one for each running request past its prefill, oldest first, each
       taking a block when it needs one. A decode that finds no free block is deferred to a later
       pass (MII skips it), it is not preempted;
    2. then prompts — the unfinished ones of running requests, then waiting requests in arrival
       order — each taking ``min(prompt left, budget left, tokens that fit in the free KV
       blocks)``: a long prompt is split at the budget edge and continued in the next passes,
       short prompts are composed until the budget of ``token_budget`` tokens is filled exactly.
       A prompt that gets no tokens is skipped and the next one is tried (MII's ``continue``), so
       a short prompt may overtake a long one that does not fit;
    3. KV blocks are allocated per chunk as it runs, never for the whole prompt up front, and no
       watermark is kept;
    4. at most ``max_ragged_sequence_count`` sequences share one pass.
    A prompt longer than max_model_len or than the whole cache is rejected. When nothing at all
    can run (every decode deferred, no chunk fits) the newest running request is preempted by
    recompute so the replica cannot deadlock — a departure: MII has no preemption and stalls.
How it differs from ``sarathi``: Sarathi-Serve allocates KV for a whole prompt when it admits it
    (with a watermark) and admits strictly first come, first served, stopping at the first
    request that does not fit; it preempts the newest request when a decode has no block. FastGen
    fills the budget from any prompt that fits (skipping ones that do not), allocates KV chunk by
    chunk, and defers a decode that has no block instead of preempting. Its default budget is
    MII's ``max_ragged_batch_size`` (768 tokens), not Sarathi's 512.
Ignores: MII's sequence-descriptor limits other than the sequence count, the blocked-KV layout
    details, and its host-side overheads (the Python scheduling loop), which the paper reports as
    small.
Sources: Holmes et al., "DeepSpeed-FastGen: High-throughput Text Generation for LLMs via MII and
    DeepSpeed-Inference", arXiv:2401.08671 (2024), section 3 (Dynamic SplitFuse); DeepSpeed-MII
    ``mii/batching/ragged_batching.py`` (decode-first, then prompt requests; defaults
    max_ragged_batch_size=768, max_ragged_sequence_count=512).

``steady_decode`` holds: a decode-only plan over every running request means no decode was
deferred and no prompt got a token — the budget or the sequence count is used up by decodes (fixed
while nothing changes) or no free block is left (free blocks never grow during decode progress).
"""

from __future__ import annotations

from pydantic import Field

from policies.api import BatchPlan, PrefillChunk, SchedulerView, StrictConfig, register_scheduler
from policies.schedulers._common import decode_blocks, never_fits


class FastGenConfig(StrictConfig):
    block_size: int = Field(default=16, gt=0, description="tokens per KV block")
    token_budget: int = Field(default=768, gt=0, description="tokens per forward pass (MII max_ragged_batch_size)")
    max_ragged_sequence_count: int = Field(default=512, gt=0, description="most sequences in one forward pass")


@register_scheduler("fastgen", config=FastGenConfig)
class FastGenScheduler:
    """DeepSpeed-FastGen Dynamic SplitFuse: every forward pass filled to a fixed token budget."""
    steady_decode = True

    def __init__(self, config: FastGenConfig) -> None:
        self.config = config

    def token_budget(self, view: SchedulerView) -> int:
        return self.config.token_budget

    def plan(self, view: SchedulerView) -> BatchPlan:
        cfg = self.config
        kv = view.kv
        bs = kv.block_size
        free = kv.free_blocks
        budget = cfg.token_budget
        seqs = 0
        decode: list[int] = []
        for r in view.running:
            if r.in_prefill:
                continue
            if budget <= 0 or seqs >= cfg.max_ragged_sequence_count:
                break
            need = decode_blocks(r, kv)
            if need > free:
                continue  # deferred: no block for its next token this pass
            decode.append(r.rid)
            free -= need
            budget -= 1
            seqs += 1
        chunks: list[PrefillChunk] = []
        reject: list[int] = []
        prompts = [(r, False) for r in view.running if r.in_prefill] + [(r, True) for r in view.waiting]
        for r, waiting in prompts:
            if budget <= 0 or seqs >= cfg.max_ragged_sequence_count:
                break
            if waiting and never_fits(r, view, kv.total_blocks):
                reject.append(r.rid)
                continue
            # tokens that fit in KV now (cached blocks another request maps already cost nothing)
            mapped = kv.blocks_for(r.num_computed) - kv.blocks_to_admit(r, 0) if waiting else 0
            room = (r.kv_blocks + mapped) * bs - r.num_computed + free * bs
            t = min(r.prefill_remaining, budget, room)
            if t <= 0:
                continue
            chunks.append(PrefillChunk(r.rid, t))
            free -= kv.blocks_to_admit(r, t) if waiting else kv.blocks_to_grow(r, t)
            budget -= t
            seqs += 1
        preempt: tuple[int, ...] = ()
        if not decode and not chunks and view.running:
            preempt = (view.running[-1].rid,)  # liveness: nothing can run, free the newest request's KV
        return BatchPlan(prefill=tuple(chunks), decode=tuple(decode), preempt=preempt, reject=tuple(reject))
