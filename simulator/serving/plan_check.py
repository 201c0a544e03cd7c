"""The framework's check of a scheduler's plan before the mechanism applies it.

A plan may only reject waiting requests of this replica, preempt running ones, prefill chunks of
waiting or running requests within their remaining prompt, decode running requests past their
prefill, name each request once, fit the free KV blocks (counting blocks the preemptions free and
shared blocks once) and stay within the scheduler's token budget. A violation is a PolicyError
naming the scheduler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from simulator.core.contracts import BatchPlan, SchedulerView
from simulator.core.errors import PolicyError
from simulator.core.request import FINISHED, RUNNING, WAITING, Request

PREEMPT_MODES = ("recompute", "swap", "drop")


def preempt_entry(entry) -> tuple[int, str | None]:
    """(request id, mode) of a ``BatchPlan.preempt`` entry: a request id (the KV policy's global
    choice) or a ``policies.api.Preempt`` (rid, mode: recompute | swap | drop)."""
    if isinstance(entry, int):
        return entry, None
    return getattr(entry, "rid", entry), getattr(entry, "mode", None)


class PlanContext(Protocol):
    """What the check reads of a replica (the replica satisfies it; no import of the replica)."""

    index: int
    scheduler_name: str
    by_id: dict[int, Request]
    kvm: object  # serving.kv_manager.KVManager
    budget_fn: Callable | None


def check_plan(rep: PlanContext, plan: BatchPlan, view: SchedulerView) -> None:
    name = rep.scheduler_name
    by_id = rep.by_id
    kv = rep.kvm
    if not (plan.reject or plan.preempt or plan.prefill):
        need = _decode_need(rep, plan.decode)
        if need is not None:  # every decode is valid: only the blocks are left to check
            if need > kv.free:
                raise PolicyError(name, f"plan needs {need} KV blocks but only {kv.free} are free")
            _check_budget(rep, plan, view)
            return
    seen: set[int] = set()
    idx = rep.index
    for rid in plan.reject:
        r = by_id.get(rid)
        if r is None or r.state != WAITING or r.replica != idx:
            raise PolicyError(name, f"rejects request {rid}, which is not waiting on replica {idx}")
        seen.add(rid)
    freed = 0
    for entry in plan.preempt:
        rid, mode = preempt_entry(entry)
        r = by_id.get(rid)
        if r is None or r.state != RUNNING or rid in seen:
            raise PolicyError(name, f"preempts request {rid}, which is not running on replica {idx}")
        if mode is not None and mode not in PREEMPT_MODES:
            raise PolicyError(name, f"preempts request {rid} by {mode!r}; modes: {', '.join(PREEMPT_MODES)}")
        if mode == "swap" and not kv.can_swap:
            raise PolicyError(name, f"preempts request {rid} by swap, but the KV policy keeps no host copies "
                                    f"(policies.kv_cache kind swap or tiered)")
        seen.add(rid)
        freed += kv.freed_by(r)  # shared blocks: only those no other request maps
    need = 0
    tokens = len(plan.decode)  # the plan's tokens (BatchPlan.num_tokens), summed as the chunks are checked
    admitted = []
    for c in plan.prefill:
        r = by_id.get(c.rid)
        if r is None or r.state not in (WAITING, RUNNING) or c.rid in seen:
            state = "finished" if r is not None and r.state == FINISHED else "not waiting or running here"
            raise PolicyError(name, f"schedules prefill of request {c.rid}, which is {state}")
        if c.tokens <= 0 or c.tokens > r.prefill_remaining:
            raise PolicyError(name, f"prefill chunk of {c.tokens} tokens for request {c.rid}, "
                                    f"which has {r.prefill_remaining} prompt tokens left")
        seen.add(c.rid)
        tokens += c.tokens
        need += kv.admit_need(r, c.tokens, c.reserve_tokens)  # kv.need() for a running request
        if r.state == WAITING:
            admitted.append(r)
    if plan.preempt:
        need += kv.overlap([by_id[preempt_entry(e)[0]] for e in plan.preempt], admitted)
    bs = kv.block_size
    for rid in plan.decode:
        r = by_id.get(rid)
        if r is None or r.state != RUNNING or rid in seen:
            state = "finished" if r is not None and r.state == FINISHED else "not running here"
            if rid in seen:
                state = "scheduled twice in one plan"
            raise PolicyError(name, f"decodes request {rid}, which is {state}")
        if r.num_computed < r.prefill_target:
            raise PolicyError(name, f"decodes request {rid}, which has not finished its prefill")
        seen.add(rid)
        if r.num_computed >= r.kv_blocks * bs:  # the new token opens a block (unless capped)
            need += kv.need(r, 1) if kv.capped else 1
    if need > kv.free + freed:
        raise PolicyError(name, f"plan needs {need} KV blocks but only {kv.free + freed} are free")
    _check_budget(rep, plan, view, tokens)


def _decode_need(rep: PlanContext, decode: tuple[int, ...]) -> int | None:
    """Blocks a decode-only plan needs, or None when some decode is invalid (the full check then
    finds it and says which). One pass over the rows, no per-row set insertions."""
    rows = list(map(rep.by_id.get, decode))
    if None in rows or len(set(decode)) != len(decode):
        return None
    kv = rep.kvm
    bs = kv.block_size
    need = 0
    running = RUNNING
    for r in rows:
        c = r.num_computed
        if r.state != running or c < r.prefill_target:
            return None
        if c >= r.kv_blocks * bs:
            need += 1
    if need and kv.capped:  # a cache with its own accounting answers per row
        need = sum(kv.need(r, 1) for r in rows if r.num_computed >= r.kv_blocks * bs)
    return need


def _check_budget(rep: PlanContext, plan: BatchPlan, view: SchedulerView, tokens: int | None = None) -> None:
    """``tokens``: the plan's ``num_tokens`` where the caller summed it (a decode plan: one token a row)."""
    if rep.budget_fn is not None:
        budget = rep.budget_fn(view)
        if (len(plan.decode) if tokens is None else tokens) > budget:
            raise PolicyError(rep.scheduler_name, f"plan has {plan.num_tokens} tokens, over its budget of {budget}")
