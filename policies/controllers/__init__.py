"""Cluster controllers: a policy that sees every replica and moves requests between them.

``cluster.controller: {kind: llumnix | module:Class, interval: 50ms, ...}`` selects one. The
framework calls ``decide(view)`` every ``interval`` of simulated time and on events (a request
arrives, finishes or is preempted, a replica goes idle, a migration ends), with a
:class:`ControllerView`; the controller returns a sequence of actions:

    Migrate(rid, src, dst)  live migration of a running request: its KV is copied to ``dst`` over
                            the inter-replica link in stages while it keeps decoding on ``src``;
                            only the last stage stalls it (Llumnix).
    Steal(rid, dst)         a queued request (no KV computed) moves to ``dst``'s queue.
    Drain(replica)          the router sends no new request to ``replica`` (scale-in, failures).
    Resume(replica)         undoes Drain.

A controller may also dispatch: with a method ``dispatch(request, view) -> int | None`` it is asked
for every arriving request before the router (``view.event == "dispatch"``) and returns the replica
to queue it on (not a draining one), or None to leave the choice to the router.

Every action is checked (a ``PolicyError`` naming the controller and the request or replica): the
request must be where the action says, in the state it needs (running and past its prefill for a
migration, waiting with nothing computed for a steal), not already migrating, and the destination
must differ, not be draining, and (for a migration) have free KV blocks for the request's context.
Controllers are files of this package named after the kind; third-party ones plug in through the
``hwsim.controllers`` entry-point group or as ``module:Class``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pydantic import Field

from simulator.config.quantities import PositiveSeconds, StrictConfig
from simulator.core.contracts import RequestView
from simulator.core.registry import Registry

CONTROLLERS = Registry("cluster controller", "hwsim.controllers", ("policies.controllers",))
register_controller = CONTROLLERS.register


class ControllerConfig(StrictConfig):
    interval: PositiveSeconds = Field(default="100ms", description="simulated time between periodic calls")
    link: str = Field(default="IB-HDR", description="link preset (kind link) each replica receives migrated KV over "
                                                   "(per GPU)")
    on_events: bool = Field(default=True, description="also call on arrivals, finishes, preemptions, idle replicas "
                                                      "and finished migrations")


@dataclass(frozen=True, slots=True)
class ReplicaState:
    """One replica as a controller sees it (read-only).

    waiting / running: the replica's requests (views of the live requests; do not assign).
    free_blocks / total_blocks / block_size: its KV pool.
    batch_tokens: tokens its running batch holds in KV (sum of computed tokens).
    draining: the router sends it nothing new.
    migrating_out / migrating_in: request ids being migrated from / to it.
    waiting_by_priority: priority class (the request's prefix id, -1 none) -> waiting requests.
    cached_prefix_blocks: blocks of its prefix cache (0 without one).
    """

    index: int
    waiting: Sequence[RequestView]
    running: Sequence[RequestView]
    free_blocks: int
    total_blocks: int
    block_size: int
    batch_tokens: int
    draining: bool
    migrating_out: frozenset[int]
    migrating_in: frozenset[int]
    waiting_by_priority: dict[int, int]
    cached_prefix_blocks: int

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)


@dataclass(frozen=True, slots=True)
class ControllerView:
    now_ps: int
    replicas: Sequence[ReplicaState]
    event: str  # "tick", "arrival", "finish", "preempt", "idle", "migrated", "dispatch"


@dataclass(frozen=True, slots=True)
class Migrate:
    rid: int
    src: int
    dst: int


@dataclass(frozen=True, slots=True)
class Steal:
    rid: int
    src: int
    dst: int


@dataclass(frozen=True, slots=True)
class Drain:
    replica: int


@dataclass(frozen=True, slots=True)
class Resume:
    replica: int


Action = Migrate | Steal | Drain | Resume


class Controller(Protocol):
    def decide(self, view: ControllerView) -> Sequence[Action]: ...

    # optional: def dispatch(self, request: RequestView, view: ControllerView) -> int | None


__all__ = ["CONTROLLERS", "Action", "Controller", "ControllerConfig", "ControllerView", "Drain", "Migrate",
           "ReplicaState", "Resume", "Steal", "register_controller"]
