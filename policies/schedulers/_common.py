"""Small helpers shared by the chunked-prefill and priority schedulers (not a registered kind)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from policies.api import KvView, RequestView, SchedulerView


def decode_blocks(r: RequestView, kv: KvView) -> int:
    """Blocks one decode step of ``r`` needs: 1 when its cached tokens fill its blocks (a cache
    with its own accounting, e.g. an eviction cap, is asked through ``blocks_to_grow``)."""
    if r.in_prefill:
        return 0
    if type(kv) is not KvView:
        return kv.blocks_to_grow(r, 1)
    return 1 if r.num_computed >= r.kv_blocks * kv.block_size else 0


def never_fits(r: RequestView, view: SchedulerView, usable_blocks: int) -> bool:
    """A waiting request that can never run: longer than max_model_len or than the usable cache."""
    return r.prefill_target > view.max_model_len or view.kv.blocks_for(r.prefill_target) > usable_blocks


def preempt_for_decodes(running: Sequence[RequestView], kv: KvView,
                        victim_order: Callable[[list[RequestView]], RequestView] | None = None
                        ) -> tuple[list[RequestView], list[int], int]:
    """Evict running requests until every decode step has its block.

    ``victim_order`` picks the victim from the remaining list (default: the newest, i.e. the last
    admitted, as vLLM does). Returns (requests kept, in admission order; preempted ids; free
    blocks left after the decode steps are given their blocks).
    """
    kept = list(running)
    need = sum(decode_blocks(r, kv) for r in kept)
    free = kv.free_blocks
    preempt: list[int] = []
    while need > free and kept:
        victim = kept[-1] if victim_order is None else victim_order(kept)
        kept.remove(victim)
        need -= decode_blocks(victim, kv)
        free += kv.blocks_freed_by(victim)
        preempt.append(victim.rid)
    return kept, preempt, free - need


def preempt_in_turn(order: Sequence[RequestView], kv: KvView) -> tuple[list[RequestView], list[int], int]:
    """The decode block check of vLLM v0 and Sarathi-Serve, one running request at a time.

    Walking ``order``, each request past its prefill needs a free block at its turn, whether or
    not its next token opens a new block (vLLM v0 ``BlockSpaceManagerV1.can_append_slots``: "at
    least one free block for each sequence", i.e. ``num_seqs <= num_free_gpu_blocks`` for a
    one-sequence request; Sarathi-Serve ``can_append_slot``: ``num_free_gpu_blocks > 0``). While
    there is none, the last request of ``order`` not yet walked is preempted
    (``running_queue.pop()`` / ``self.running.pop(-1)``), or the request itself when none is
    left — except a request alone in the batch whose next token fits its blocks, which is kept
    (preempting it would free the cache only to re-admit it into the same blocks, forever). A
    request still in prefill passes: its blocks were allocated at admission. Returns
    (requests kept, in ``order``; preempted ids, in the order preempted; free blocks left after
    the decodes took their blocks).
    """
    rest = list(order)
    kept: list[RequestView] = []
    preempt: list[int] = []
    free = kv.free_blocks
    i = 0
    while i < len(rest):
        r = rest[i]
        i += 1
        if r.in_prefill:
            kept.append(r)
            continue
        need = decode_blocks(r, kv)
        while free < max(1, need) and len(rest) > i:
            victim = rest.pop()
            preempt.append(victim.rid)
            free += kv.blocks_freed_by(victim)
        if free < max(1, need) and (kept or need > free):  # nothing left to preempt: the request itself
            preempt.append(r.rid)
            free += kv.blocks_freed_by(r)
            continue
        free -= need
        kept.append(r)
    return kept, preempt, free
