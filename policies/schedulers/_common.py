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
