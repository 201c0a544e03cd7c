"""Fairness scheduling with frequent context switches (FastSwitch-style), preempting by swap.

Models: every ``rerank_iterations`` iterations each request's priority key is recomputed as its
    attained service (tokens it has processed: prompt computed plus tokens generated), so the
    requests that have received least service come first (a request seen for the first time gets
    its key at once). Each iteration the scheduler walks all requests, running and waiting, in key
    order (ties by arrival) and keeps those that fit: the KV blocks (a running request keeps its
    blocks plus one for its next token; a waiting one needs blocks for its whole prompt, or for
    its last token after a swap), ``max_num_seqs`` and the token budget. Running requests not kept
    are preempted with mode ``preempt_mode`` (a tagged ``Preempt``); waiting ones kept are admitted
    (a swapped-in request recomputes only its last token). The swap mechanism follows the
    scheduler's attributes: ``swap_group_blocks`` blocks per copy and layer buffer (1: vLLM's
    per-block copies; FastSwitch's block groups make them coarse), ``reuse_host_copies`` (a
    resumed request's host copy stays valid: its next swap-out copies only the new tokens) and
    ``overlap_swap`` (swap-outs run on their own copy stream while the next step computes).
Ignores: FastSwitch's dynamic group sizing (one fixed group size is an input); multi-turn
    conversations (each request is a single turn).
Sources: Shen et al., "FastSwitch: Optimizing Context Switching Efficiency in Fairness-aware Large
    Language Model Serving" (2024): priority updates every fixed number of iterations, block groups,
    multithreaded swap manager, KV cache reuse; vLLM v0 priority preemption as its baseline.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from policies.api import BatchPlan, Preempt, PrefillChunk, SchedulerView, StrictConfig, register_scheduler
from policies.schedulers._common import decode_blocks, never_fits


class FastSwitchConfig(StrictConfig):
    block_size: int = Field(default=16, gt=0, description="tokens per KV block")
    max_num_seqs: int = Field(default=256, gt=0, description="most requests in one batch")
    max_num_batched_tokens: int | None = Field(
        default=None, gt=0, description="token budget per iteration; default max(max_model_len, 2048)")
    rerank_iterations: int = Field(default=100, gt=0, description="iterations between priority updates")
    preempt_mode: Literal["swap", "recompute"] = Field(default="swap", description="how a preempted request's "
                                                                                  "KV is kept")
    swap_group_blocks: int | None = Field(default=None, gt=0, description="blocks per swap copy and layer buffer "
                                                                          "(1: vLLM per-block copies; default: one "
                                                                          "copy per request)")
    reuse_host_copies: bool = Field(default=False, description="keep a resumed request's host copy valid")
    overlap_swap: bool = Field(default=False, description="swap-outs overlap the next step (own copy stream)")


@register_scheduler("fastswitch", config=FastSwitchConfig)
class FastSwitchScheduler:
    steady_decode = False  # priorities change every rerank_iterations iterations

    def __init__(self, config: FastSwitchConfig) -> None:
        self.config = config
        self.swap_group_blocks = config.swap_group_blocks
        self.reuse_host_copies = config.reuse_host_copies
        self.overlap_swap = config.overlap_swap
        self.iteration = 0
        self.keys: dict[int, int] = {}

    def token_budget(self, view: SchedulerView) -> int:
        return self.config.max_num_batched_tokens or max(view.max_model_len, 2048)

    @staticmethod
    def _service(r) -> int:
        return r.num_computed + r.num_generated

    def plan(self, view: SchedulerView) -> BatchPlan:
        cfg = self.config
        kv = view.kv
        if self.iteration % cfg.rerank_iterations == 0:
            self.keys = {r.rid: self._service(r) for r in (*view.running, *view.waiting)}
        self.iteration += 1
        keys = self.keys
        for r in (*view.running, *view.waiting):
            if r.rid not in keys:
                keys[r.rid] = self._service(r)
        order = sorted((*view.running, *view.waiting), key=lambda r: (keys[r.rid], r.arrival_ps, r.rid))
        running = {r.rid for r in view.running}
        budget = self.token_budget(view)
        avail = kv.free_blocks + sum(kv.blocks_freed_by(r) for r in view.running)
        tokens = seqs = 0
        kept_run, prefill, reject = [], [], []
        for r in order:
            if r.rid in running:
                need = decode_blocks(r, kv) if not r.in_prefill else kv.blocks_to_grow(r, r.prefill_remaining)
                t = 1 if not r.in_prefill else r.prefill_remaining
                blocks = r.kv_blocks + need
            else:
                t = r.prefill_remaining
                if never_fits(r, view, kv.total_blocks) or t > budget:
                    reject.append(r.rid)
                    continue
                blocks = kv.blocks_to_admit(r, t)
            if seqs >= cfg.max_num_seqs or tokens + t > budget or blocks > avail:
                continue
            avail -= blocks
            tokens += t
            seqs += 1
            if r.rid in running and not r.in_prefill:
                kept_run.append(r.rid)
            else:
                prefill.append(PrefillChunk(r.rid, t))
        kept = set(kept_run) | {c.rid for c in prefill}
        preempt = tuple(Preempt(r.rid, cfg.preempt_mode) for r in view.running if r.rid not in kept)
        for rid in reject:
            keys.pop(rid, None)
        return BatchPlan(prefill=tuple(prefill), decode=tuple(kept_run), preempt=preempt, reject=tuple(reject))
