"""Contracts between the framework and policies: read-only views, decisions, protocols.

Policies decide; mechanisms act; the framework checks every decision. A scheduler receives a
:class:`SchedulerView` (a snapshot it must treat as read-only) and returns a :class:`BatchPlan`;
a router receives the arriving request and a :class:`ClusterView` and returns a replica index.
``policies/api.py`` re-exports everything here as the authoring API.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from simulator.core.errors import PolicyError


class RequestView(Protocol):
    """What a policy may read about a request (attributes of the live request; do not assign)."""

    rid: int
    arrival_ps: int
    prompt_tokens: int
    max_new_tokens: int  # the request's output length limit (the trace's output tokens)
    session_id: int
    prefix_id: int
    num_computed: int  # tokens whose K/V is cached
    num_generated: int  # output tokens emitted so far
    prefill_target: int  # tokens to compute before the next token (prompt, or prompt+generated)
    kv_blocks: int
    kv_reserve_tokens: int
    num_preemptions: int
    first_scheduled_ps: int

    @property
    def in_prefill(self) -> bool: ...

    @property
    def prefill_remaining(self) -> int: ...

    @property
    def remaining_tokens(self) -> int: ...

    @property
    def kv_location(self) -> str: ...  # gpu, host (swapped out), partly (GPU blocks and a host copy), none


@dataclass(frozen=True, slots=True)
class KvView:
    block_size: int
    total_blocks: int
    free_blocks: int

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

    @staticmethod
    def location(req: RequestView) -> str:
        """Where ``req``'s KV lives (``req.kv_location``): gpu, host, partly or none."""
        return req.kv_location

    def blocks_to_grow(self, req: RequestView, new_tokens: int, reserve_tokens: int = 0) -> int:
        """Extra blocks ``req`` needs to hold ``new_tokens`` more tokens (and a reservation)."""
        bs = self.block_size  # blocks_for() inline: this runs per running request per step
        target = -(-(req.num_computed + new_tokens) // bs)
        reserve = req.kv_reserve_tokens if req.kv_reserve_tokens > reserve_tokens else reserve_tokens
        if reserve > 0 and -(-reserve // bs) > target:
            target = -(-reserve // bs)
        held = req.kv_blocks
        return target - held if target > held else 0

    def blocks_to_admit(self, req: RequestView, tokens: int, reserve_tokens: int = 0) -> int:
        """Free blocks admitting waiting ``req`` with a first chunk of ``tokens`` takes. Here every
        block is private (``blocks_to_grow``); a cache that shares blocks answers less: a cached
        block another running request maps already costs nothing."""
        return self.blocks_to_grow(req, tokens, reserve_tokens)

    def blocks_freed_by(self, req: RequestView, mapped: bool = True) -> int:
        """Free blocks preempting running ``req`` gives back. Here all its blocks; a cache that
        shares blocks counts only those no other request maps (cached ones stay, evictable).
        ``mapped=False`` leaves out the cached blocks ``req`` maps, which a request admitted in the
        same plan may map again (the count to use when preempting to admit)."""
        return req.kv_blocks

    @property
    def used_blocks(self) -> int:
        return self.total_blocks - self.free_blocks


@dataclass(frozen=True, slots=True)
class SchedulerView:
    """Snapshot handed to ``Scheduler.plan``. ``waiting`` is in service order (preempted requests
    first, then by arrival); ``running`` in admission order."""

    now_ps: int
    replica: int
    waiting: Sequence[RequestView]
    running: Sequence[RequestView]
    kv: KvView
    max_model_len: int


def _slot_setters(cls: type, names: tuple[str, ...]) -> tuple:
    """The slot descriptors' ``__set__`` of frozen slots dataclass ``cls``, whose fields must be ``names``."""
    got = tuple(cls.__dataclass_fields__)
    if got != names:
        raise TypeError(f"{cls.__name__} fields are {got}, not {names}")
    return tuple(cls.__dict__[n].__set__ for n in names)


_SCHEDULER_VIEW_SET = _slot_setters(SchedulerView, ("now_ps", "replica", "waiting", "running", "kv", "max_model_len"))


def scheduler_view(now_ps: int, replica: int, waiting: Sequence[RequestView], running: Sequence[RequestView],
                   kv: KvView, max_model_len: int) -> SchedulerView:
    """``SchedulerView(now_ps, replica, waiting, running, kv, max_model_len)``, the same object, its slots set
    directly (what the generated ``__init__`` does through one ``object.__setattr__`` call a field); the
    framework builds one for every plan."""
    v = object.__new__(SchedulerView)
    a, b, c, d, e, f = _SCHEDULER_VIEW_SET
    a(v, now_ps)
    b(v, replica)
    c(v, waiting)
    d(v, running)
    e(v, kv)
    f(v, max_model_len)
    return v


@dataclass(frozen=True, slots=True)
class PrefillChunk:
    rid: int
    tokens: int
    reserve_tokens: int = 0  # hold KV for this many tokens from admission on (Orca, static)


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """One iteration's decision.

    prefill: chunks of prompt (or recompute) to process; a chunk that completes its request's
        prefill emits that request's next token.
    decode: running requests (in decode phase) that generate one token each.
    preempt: running requests to evict (KV freed; recomputed later) before this batch runs.
    reject: waiting requests that can never be served (e.g. longer than max_model_len).
    padding_rows: idle rows computed anyway (request-level batching pads finished sequences).
    """

    prefill: tuple[PrefillChunk, ...] = ()
    decode: tuple[int, ...] = ()
    preempt: tuple[int, ...] = ()
    reject: tuple[int, ...] = ()
    padding_rows: int = 0

    @property
    def empty(self) -> bool:
        return not (self.prefill or self.decode or self.preempt or self.reject)

    @property
    def num_tokens(self) -> int:
        return sum(c.tokens for c in self.prefill) + len(self.decode)


IDLE = BatchPlan()


@runtime_checkable
class Scheduler(Protocol):
    """Decides each iteration's batch.

    ``steady_decode``: True promises that while nothing changes but decode progress (no arrival,
    no request finishing, no KV block shortage), a decode-only plan over all running requests
    would be returned again; the framework then runs such stretches as one event. Leave it False
    (the default) and ``plan`` is called every iteration.
    """

    steady_decode: bool

    def plan(self, view: SchedulerView) -> BatchPlan: ...


@dataclass(frozen=True, slots=True)
class ReplicaLoad:
    index: int
    waiting: int
    running: int
    outstanding_tokens: int  # prefill + decode tokens still to process for its requests
    kv_used_fraction: float


@dataclass(frozen=True, slots=True)
class ClusterView:
    now_ps: int
    replicas: Sequence[ReplicaLoad]


@runtime_checkable
class Router(Protocol):
    def route(self, request: RequestView, view: ClusterView) -> int: ...


__all__ = [
    "BatchPlan", "ClusterView", "IDLE", "KvView", "PolicyError", "PrefillChunk", "ReplicaLoad",
    "RequestView", "Router", "Scheduler", "SchedulerView",
]
